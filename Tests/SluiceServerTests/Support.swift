import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import SluiceBroker
import SluiceServer
import SluiceTelemetry
import Synchronization
import Testing
@_exported import SluiceTestSupport

/// An agent running in this process on ephemeral loopback ports, logging JSON to a file.
struct RunningAgent {
    var api: String
    var metricsAddress: String
    var kafka: String?
    var logPath: String
    var metrics: SluiceMetrics
    var task: Task<Void, any Error>

    var base: String { "http://\(api)" }

    /// Stops the agent the way the service group does on SIGTERM (cancellation), and waits for it.
    func stop() async {
        task.cancel()
        _ = await task.result
    }

    func logLines() throws -> [[String: Any]] {
        try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

func startAgent(_ dir: String, _ arguments: [String] = [], configFile: String? = nil) async throws -> RunningAgent {
    let config = try SluiceConfig.load(arguments: ["--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "127.0.0.1:0"] + arguments,
                                       file: configFile)
    let logPath = dir + "/sluice-\(UUID().uuidString).log"
    let sink = try LogSink.file(path: logPath, maxBytes: 1 << 30, maxFiles: 1)
    var logger = Logger(label: "sluice") { label in JSONLogHandler(label: label, sink: sink, level: .debug) }
    logger.logLevel = .debug
    let metrics = SluiceMetrics()
    let (stream, continuation) = AsyncStream<BoundAddresses>.makeStream()
    let task = Task {
        try await SluiceAgent.run(config: config, logger: logger, metrics: metrics) { continuation.yield($0) }
    }
    var iterator = stream.makeAsyncIterator()
    guard let bound = await iterator.next() else { throw CancellationError() }
    return RunningAgent(api: bound.api, metricsAddress: bound.metrics, kafka: bound.kafka, logPath: logPath, metrics: metrics, task: task)
}

func cloudEvent(_ id: String, type: String = "order.created", key: String? = nil, data: Any = ["n": 1], extra: [String: Any] = [:]) -> [String: Any] {
    var event: [String: Any] = ["specversion": "1.0", "id": id, "source": "/tests", "type": type, "data": data]
    if let key { event["partitionkey"] = key }
    for (k, v) in extra { event[k] = v }
    return event
}

let structured = ["Content-Type": "application/cloudevents+json"]
let batch = ["Content-Type": "application/cloudevents-batch+json"]

extension FileHandle {
    /// Reads up to and excluding the next newline (a byte at a time, so nothing after it is consumed).
    func readLine() -> [UInt8] {
        var line: [UInt8] = []
        while true {
            let byte = readData(ofLength: 1)
            guard let first = byte.first, first != 0x0A else { return line }
            line.append(first)
        }
    }
}
