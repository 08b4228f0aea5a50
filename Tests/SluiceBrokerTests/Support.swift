import Foundation
import Logging
import SluiceBroker
import SluiceTelemetry
@_exported import SluiceTestSupport
import Testing

/// A broker on a fresh data directory with settings given as flags.
func makeBroker(_ dir: String, _ arguments: [String] = []) throws -> Broker {
    let config = try SluiceConfig.load(arguments: ["--data-dir", dir + "/data"] + arguments)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return try Broker(config: config, metrics: SluiceMetrics(), logger: logger)
}

func event(_ id: String, type: String = "order.created", key: String? = nil, data: String = #"{"n":1}"#) -> CloudEvent {
    var extensions: [String: String] = [:]
    if let key { extensions["partitionkey"] = key }
    return CloudEvent(id: id, source: "/test", type: type, data: Array(data.utf8), datacontenttype: "application/json", extensions: extensions)
}
