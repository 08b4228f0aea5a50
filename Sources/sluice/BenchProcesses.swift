import Foundation
import Hummingbird
import Logging
import SluiceBroker
import SluiceServer
import SluiceTelemetry

/// The loopback app and the in-process agent that the delivery and saga benchmarks run against.
enum BenchProcesses {
    static let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

    /// Serves `router` on an ephemeral loopback port; returns the port and the task to cancel when done.
    static func startApp(_ router: Router<BasicRequestContext>) async -> (port: Int, task: Task<Void, any Error>) {
        let (ports, ready) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { ready.yield($0.localAddress?.port ?? 0) }, logger: quiet)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        return (await iterator.next() ?? 0, task)
    }

    /// Runs an agent with `config` (logging nothing); returns its API base URL once it is ready, and its task.
    static func startAgent(_ config: SluiceConfig) async throws -> (api: String, task: Task<Void, any Error>) {
        let (bound, task) = try await startAgent(config, remote: nil)
        return ("http://\(bound.api)", task)
    }

    /// Runs an agent with `config` on `remote` (a cluster) or its embedded log; returns its bound addresses once
    /// it is ready, and its task.
    static func startAgent(_ config: SluiceConfig, remote: (any RemoteLog)?, metrics: SluiceMetrics = SluiceMetrics()) async throws -> (bound: BoundAddresses, task: Task<Void, any Error>) {
        let (addresses, ready) = AsyncStream<BoundAddresses>.makeStream()
        let task = Task { try await SluiceAgent.run(config: config, logger: quiet, metrics: metrics, remote: remote) { ready.yield($0) } }
        var iterator = addresses.makeAsyncIterator()
        guard let bound = await iterator.next() else { throw CLIError.failure("the agent did not start") }
        return (bound, task)
    }

    /// librdkafka's mock cluster (`sluice-mock-cluster`, built beside `sluice`) with `brokers` brokers; its
    /// bootstrap servers and the process, which ends when its standard input closes.
    static func startMockCluster(brokers: Int = 3) throws -> (servers: String, process: Process, input: Pipe) {
        let process = Process()
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        process.executableURL = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("sluice-mock-cluster")
        process.arguments = [String(brokers)]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw CLIError.failure("cannot start \(process.executableURL!.path) (build it with swift build --product sluice-mock-cluster): \(error)")
        }
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            data += chunk
        }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first ?? ""
        guard line.hasPrefix("bootstrap.servers=") else { throw CLIError.failure("the mock cluster did not start: \(line)") }
        return (String(line.dropFirst("bootstrap.servers=".count)), process, input)
    }

    /// Stops what ``startApp(_:)`` and ``startAgent(_:)`` started: the agent first, then the app.
    static func stop(agent: Task<Void, any Error>, app: Task<Void, any Error>) async {
        agent.cancel()
        _ = await agent.result
        app.cancel()
        _ = await app.result
    }
}
