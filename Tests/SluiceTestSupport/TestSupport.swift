public import Foundation
#if canImport(FoundationNetworking)
public import FoundationNetworking
#endif

/// A fresh directory for one test, removed afterwards even when the test fails.
public func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async rethrows -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// The package root, found from this file's path (Tests/SluiceTestSupport/TestSupport.swift).
public let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The `sluice` executable built beside the test bundle.
public let sluiceBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("sluice").path
}()

public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program to completion, capturing its output.
public func runProcess(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes concurrently so a chatty child cannot block on a full pipe.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}


// MARK: - A `sluice serve` child process

/// `sluice serve` running as a child process on ephemeral loopback ports.
public struct ServedAgent: Sendable {
    public var process: Process
    /// The bound addresses from the start log line.
    public var api: String
    public var kafka: String
    public var metrics: String
    public var logPath: String

    public var base: String { "http://\(api)" }

    /// SIGKILL and wait: the crash case.
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM and wait: the graceful case.
    public func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    public func logText() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The process's memory map (`/proc/PID/maps`), read to its end: the file claims a size of 0, and reading it by
    /// its size returns only its first part.
    public func memoryMap() throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(process.processIdentifier)/maps"))
        defer { try? handle.close() }
        return String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
    }
}

extension Process: @retroactive @unchecked Sendable {}

public struct AgentDidNotStart: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Starts `sluice serve` with its data in `dir/data` (and `environment` added to this process's) and returns it
/// once `/readyz` answers 200. An agent that does not come up is killed, never left behind, and the error carries
/// the end of its log.
public func startServed(_ dir: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> ServedAgent {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: sluiceBinary)
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.arguments = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                         "--kafka-address", "127.0.0.1:0"] + arguments
    let logPath = dir + "/serve-\(UUID().uuidString).log"
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline, process.isRunning {
        if let text = try? String(contentsOfFile: logPath, encoding: .utf8), let newline = text.firstIndex(of: "\n"),
           let line = try? JSONSerialization.jsonObject(with: Data(text[..<newline].utf8)) as? [String: Any],
           let api = line["api.address"] as? String, (try? await http("GET", "http://\(api)/readyz"))?.status == 200 {
            return ServedAgent(process: process, api: api, kafka: line["kafka.address"] as? String ?? "off",
                               metrics: line["metrics.address"] as? String ?? api, logPath: logPath)
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    throw AgentDidNotStart(description: "the agent did not become ready: \((try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(2000) ?? "")")
}

/// ``startServed(_:_:)`` as (process, API address).
public func startServeProcess(_ dir: String, _ arguments: [String]) async throws -> (Process, String) {
    let agent = try await startServed(dir, arguments)
    return (agent.process, agent.api)
}

// MARK: - HTTP

public struct HTTPResult: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
    public var text: String { String(decoding: body, as: UTF8.self) }

    public func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }
}

public func http(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async throws -> HTTPResult {
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

public func json(_ object: Any) -> Data {
    try! JSONSerialization.data(withJSONObject: object)
}

/// A free loopback port (bound and released; good enough for a test's own helper process).
public func freePort() -> Int {
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
