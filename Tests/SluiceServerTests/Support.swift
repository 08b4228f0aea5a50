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
    return RunningAgent(api: bound.api, metricsAddress: bound.metrics, logPath: logPath, metrics: metrics, task: task)
}

/// Starts `sluice serve` as a child process on ephemeral loopback ports with its data in `dir/data`, and returns
/// it with its API address once `/readyz` answers 200. An agent that does not come up is killed, never left behind.
func startServeProcess(_ dir: String, _ arguments: [String]) async throws -> (Process, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: sluiceBinary)
    process.arguments = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "127.0.0.1:0"] + arguments
    let logPath = dir + "/serve-\(UUID().uuidString).log"
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: logPath, encoding: .utf8), let newline = text.firstIndex(of: "\n"),
           let line = try? JSONSerialization.jsonObject(with: Data(text[..<newline].utf8)) as? [String: Any],
           let api = line["api.address"] as? String, (try? await http("GET", "http://\(api)/readyz"))?.status == 200 {
            return (process, api)
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    Issue.record("the agent did not become ready: \((try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(2000) ?? "")")
    throw CancellationError()
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }
}

func http(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async throws -> HTTPResult {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    request.timeoutInterval = 60
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.httpBody = body
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (key, value) in http.allHeaderFields { fields["\(key)"] = "\(value)" }
    return HTTPResult(status: http.statusCode, headers: fields, body: data)
}

func json(_ object: Any) -> Data {
    try! JSONSerialization.data(withJSONObject: object)
}

func cloudEvent(_ id: String, type: String = "order.created", key: String? = nil, data: Any = ["n": 1], extra: [String: Any] = [:]) -> [String: Any] {
    var event: [String: Any] = ["specversion": "1.0", "id": id, "source": "/tests", "type": type, "data": data]
    if let key { event["partitionkey"] = key }
    for (k, v) in extra { event[k] = v }
    return event
}

let structured = ["Content-Type": "application/cloudevents+json"]
let batch = ["Content-Type": "application/cloudevents-batch+json"]

/// A free loopback port (bound and released; good enough for a test's own helper process).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(fd, $0, length) }
    }
    withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

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
