import ArgumentParser
import AsyncHTTPClient
import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import SluiceBroker
import SluiceServer
import SluiceTelemetry
import Synchronization

/// `sluice bench sagas`: saga throughput and start-to-end latency with the agent and a participant app in one
/// process on loopback, next to the same hops as plain events without the saga engine.
struct SagaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sagas",
        abstract: "Saga throughput and latency (3 steps, pushed to a loopback participant), against the same hops as plain events."
    )

    @Option(name: .long, help: "Sagas per run.")
    var sagas = 2000
    @Option(name: .long, help: "Sagas in flight at a time (closed loop).")
    var concurrency = 50
    @Option(name: .long, help: "Runs (the table shows each; quote the median).")
    var runs = 3

    func validate() throws {
        guard sagas >= 1, concurrency >= 1, runs >= 1 else { throw ValidationError("--sagas, --concurrency and --runs must be positive") }
    }

    final class Samples: Sendable {
        let values = Mutex<[Double]>([])
    }

    /// Waiters by saga (or chain) id, resumed by the app when the end arrives.
    final class Finish: Sendable {
        let waiters = Mutex<[String: CheckedContinuation<Void, Never>]>([:])
        let early = Mutex<Set<String>>([])

        func wait(_ id: String) async {
            await withCheckedContinuation { continuation in
                let now = early.withLock { $0.remove(id) != nil }
                if now { continuation.resume() } else { waiters.withLock { $0[id] = continuation } }
            }
        }

        func done(_ id: String) {
            let waiter = waiters.withLock { $0.removeValue(forKey: id) }
            if let waiter { waiter.resume() } else { early.withLock { _ = $0.insert(id) } }
        }
    }

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-sagas-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let finish = Finish()
        let apiBox = Mutex<String>("")
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 128
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        @Sendable func post(_ url: String, _ body: String, contentType: String = "application/cloudevents+json") async throws -> Int {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await client.execute(request, timeout: .seconds(30))
            _ = try await response.body.collect(upTo: 1 << 20)
            return Int(response.status.code)
        }
        @Sendable func event(_ id: String, _ type: String, correlation: String, causation: String) -> String {
            "{\"specversion\":\"1.0\",\"id\":\"\(id)\",\"source\":\"/bench\",\"type\":\"\(type)\",\"correlationid\":\"\(correlation)\",\"causationid\":\"\(causation)\",\"partitionkey\":\"\(correlation)\",\"data\":{\"n\":1}}"
        }

        // The participant: answers each command with its success reply; records outcomes; relays the plain chain.
        let router = Router()
        router.post("/commands") { request, _ -> HTTPResponse.Status in
            _ = try await request.body.collect(upTo: 1 << 20)
            guard let id = request.headers[HTTPField.Name("ce-id")!], let type = request.headers[HTTPField.Name("ce-type")!],
                  let saga = request.headers[HTTPField.Name("ce-correlationid")!] else { return .badRequest }
            if type == "saga.completed" {
                finish.done(saga)
            } else if type.hasPrefix("chain.") {
                let step = Int(type.dropFirst(6)) ?? 3
                if step == 3 {
                    finish.done(saga)
                } else {
                    _ = try await post("\(apiBox.withLock { $0 })/v1/topics/chain/events", event("\(saga).\(step + 1)", "chain.\(step + 1)", correlation: saga, causation: id))
                }
            } else {
                _ = try await post("\(apiBox.withLock { $0 })/v1/topics/replies/events", event("reply-\(id)", type + ".done", correlation: saga, causation: id))
            }
            return .ok
        }
        let (appPort, appTask) = await BenchProcesses.startApp(router)
        let endpoint = "http://127.0.0.1:\(appPort)/commands"
        try """
            subscriptions:
              - {name: participant, topics: [commands], endpoint: "\(endpoint)", start_from: earliest, ordering: none, concurrency: 64}
              - {name: outcomes, topics: [outcomes], endpoint: "\(endpoint)", start_from: earliest, ordering: none, concurrency: 64}
              - {name: chain, topics: [chain], endpoint: "\(endpoint)", start_from: earliest, ordering: none, concurrency: 64}
            sagas:
              - type: bench
                outcome_topic: outcomes
                steps:
                  - {name: a, command: {topic: commands, type: step.a}, success: step.a.done, reply_topic: replies, compensation: none}
                  - {name: b, command: {topic: commands, type: step.b}, success: step.b.done, reply_topic: replies, compensation: none}
                  - {name: c, command: {topic: commands, type: step.c}, success: step.c.done, reply_topic: replies}
            """.write(toFile: dir + "/sluice.yaml", atomically: true, encoding: .utf8)
        let config = try SluiceConfig.load(arguments: ["--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                                                       "--linger-ms", "0", "--num-partitions", "4"], file: dir + "/sluice.yaml")
        let (api, agentTask) = try await BenchProcesses.startAgent(config)
        apiBox.withLock { $0 = api }
        _ = try await post("\(api)/v1/sagas/bench?id=warm-up", "{}", contentType: "application/json")
        await finish.wait("warm-up")

        let concurrency = self.concurrency
        /// Runs `count` flows, `concurrency` at a time; returns flows/s and the sorted latencies in ms.
        func measure(_ count: Int, start: @escaping @Sendable (String) async throws -> Void) async throws -> (rate: Double, latencies: [Double]) {
            let latencies = Samples()
            let began = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        for n in stride(from: worker, to: count, by: concurrency) {
                            let id = "\(UUID().uuidString.prefix(8))-\(n)"
                            let t0 = DispatchTime.now().uptimeNanoseconds
                            try await start(id)
                            await finish.wait(id)
                            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                            latencies.values.withLock { $0.append(ms) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = (ContinuousClock.now - began) / .seconds(1)
            return (Double(count) / seconds, latencies.values.withLock { $0 }.sorted())
        }
        func percentile(_ values: [Double], _ p: Double) -> Double { values.isEmpty ? 0 : values[min(values.count - 1, Int(Double(values.count) * p))] }

        writeLine("| run | flows/s | latency p50 | p99 | max |")
        writeLine("|---|---|---|---|---|")
        for run in 1...runs {
            let saga = try await measure(sagas) { id in
                let status = try await post("\(api)/v1/sagas/bench?id=\(id)", "{\"n\": 1}", contentType: "application/json")
                guard status == 201 else { throw CLIError.failure("starting a saga answered \(status)") }
            }
            writeLine("| \(run): sagas of 3 steps (API start → saga.completed pushed to the app) | \(f0(saga.rate)) | \(f2(percentile(saga.latencies, 0.5))) ms | \(f2(percentile(saga.latencies, 0.99))) ms | \(f2(saga.latencies.last ?? 0)) ms |")
            let chain = try await measure(sagas) { id in
                _ = try await post("\(api)/v1/topics/chain/events", event("\(id).1", "chain.1", correlation: id, causation: id))
            }
            writeLine("| \(run): ceiling, the same hops as plain events (publish → push → publish ×3) | \(f0(chain.rate)) | \(f2(percentile(chain.latencies, 0.5))) ms | \(f2(percentile(chain.latencies, 0.99))) ms | \(f2(chain.latencies.last ?? 0)) ms |")
        }

        try await client.shutdown()
        await BenchProcesses.stop(agent: agentTask, app: appTask)
    }
}
