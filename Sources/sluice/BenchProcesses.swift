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
        let (addresses, ready) = AsyncStream<BoundAddresses>.makeStream()
        let task = Task { try await SluiceAgent.run(config: config, logger: quiet, metrics: SluiceMetrics()) { ready.yield($0) } }
        var iterator = addresses.makeAsyncIterator()
        guard let bound = await iterator.next() else { throw CLIError.failure("the agent did not start") }
        return ("http://\(bound.api)", task)
    }

    /// Stops what ``startApp(_:)`` and ``startAgent(_:)`` started: the agent first, then the app.
    static func stop(agent: Task<Void, any Error>, app: Task<Void, any Error>) async {
        agent.cancel()
        _ = await agent.result
        app.cancel()
        _ = await app.result
    }
}
