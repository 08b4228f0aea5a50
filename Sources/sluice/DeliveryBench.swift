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
import SluiceCluster
import SluiceServer
import SluiceTelemetry
import Synchronization

/// `sluice bench delivery`: push-delivery throughput, and the latency added between publishing and the app
/// receiving, with the agent, a receiving app and the publisher in one process on loopback.
struct DeliveryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delivery",
        abstract: "Push-delivery throughput and publish-to-app latency (p50/p99) at fixed rates, against a loopback app."
    )

    @Option(name: .long, help: "Publish rates (events/s) for the latency runs.")
    var rates = "1000,10000"
    @Option(name: .long, help: "Seconds measured per latency run (after 1 s of warm-up).")
    var seconds = 5.0
    @Option(name: .long, help: "Events for the throughput run.")
    var events = 50_000
    @Option(name: .long, help: "Concurrency of the subscription (and of the ceiling run).")
    var concurrency = 32
    @Option(name: .long, help: "Log backends, one after another in this run: embedded, mock (librdkafka's mock cluster, three brokers), listener (a second, embedded agent's Kafka listener as the cluster).")
    var backends = "embedded"

    var backendList: [String] { backends.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        guard seconds > 0, seconds <= 3600, events >= 1, concurrency >= 1 else {
            throw ValidationError("--seconds must be from 0 to 3600 (exclusive of 0), --events and --concurrency positive")
        }
        guard !rateList.isEmpty, rateList.allSatisfy({ (1...10_000_000).contains($0) }) else {
            throw ValidationError("--rates must be integers from 1 to 10000000, e.g. 1000,10000")
        }
        guard !backendList.isEmpty, backendList.allSatisfy({ ["embedded", "mock", "listener"].contains($0) }) else {
            throw ValidationError("--backends must list embedded, mock and listener, e.g. --backends embedded,mock,listener")
        }
    }

    var rateList: [Int] { rates.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    /// The app: counts deliveries and records now − the send time carried in the event id.
    final class Receiver: Sendable {
        let latencies = Mutex<[Double]>([])
        let count = Atomic<Int>(0)
        let recording = Atomic<Bool>(false)
    }

    func run() async throws {
        writeLine("| backend | run | events/s offered | delivered/s | added latency p50 | p99 | max | HTTP publish, batches of 500 |")
        writeLine("|---|---|---|---|---|---|---|---|")
        for backend in backendList { try await run(backend: backend) }
    }

    /// The agent's settings for a run: the same producer path on every backend.
    func settings(_ dir: String, _ extra: [String]) throws -> SluiceConfig {
        try SluiceConfig.load(arguments: ["--data-dir", dir, "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                                          "--acks", "1", "--enable-idempotence", "false", "--linger-ms", "0", "--num-partitions", "4"] + extra)
    }

    func run(backend: String) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-delivery-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var cleanups: [() async -> Void] = []
        let config: SluiceConfig
        var remote: KafkaCluster?
        switch backend {
        case "mock":
            let mock = try BenchProcesses.startMockCluster()
            cleanups.append { try? mock.input.fileHandleForWriting.close(); mock.process.waitUntilExit() }
            config = try settings(dir, ["--log-backend", "kafka", "--cluster-bootstrap-servers", mock.servers, "--kafka-address", "off"])
        case "listener":
            let (cluster, task) = try await BenchProcesses.startAgent(try settings(dir + "-cluster", ["--kafka-address", "127.0.0.1:0"]), remote: nil)
            cleanups.append { task.cancel(); _ = await task.result; try? FileManager.default.removeItem(atPath: dir + "-cluster") }
            config = try settings(dir, ["--log-backend", "kafka", "--cluster-bootstrap-servers", cluster.kafka ?? "", "--kafka-address", "off"])
        default:
            config = try settings(dir, ["--kafka-address", "off"])
        }
        if config.logBackend == .kafka {
            remote = try KafkaCluster(config: config, metrics: SluiceMetrics(), logger: BenchProcesses.quiet)
        }
        let receiver = Receiver()
        let router = Router()
        router.post("/events") { request, _ -> HTTPResponse.Status in
            let now = DispatchTime.now().uptimeNanoseconds
            _ = try await request.body.collect(upTo: 1 << 20)
            receiver.count.wrappingAdd(1, ordering: .relaxed)
            if receiver.recording.load(ordering: .relaxed), let id = request.headers[HTTPField.Name("ce-id")!],
               let sent = id.split(separator: "-").last.flatMap({ UInt64($0) }), now > sent {
                receiver.latencies.withLock { $0.append(Double(now - sent) / 1e6) }
            }
            return .ok
        }
        let (appPort, appTask) = await BenchProcesses.startApp(router)
        let (bound, agentTask) = try await BenchProcesses.startAgent(config, remote: remote)
        let api = "http://\(bound.api)"
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)

        func send(_ method: HTTPMethod, _ url: String, _ body: [UInt8], contentType: String = "application/json") async throws -> Int {
            var request = HTTPClientRequest(url: url)
            request.method = method
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(30))
            _ = try await response.body.collect(upTo: 1 << 20)
            return Int(response.status.code)
        }
        func subscribe(_ name: String, topic: String, from: String) async throws {
            let body = "{\"topics\": [\"\(topic)\"], \"endpoint\": \"http://127.0.0.1:\(appPort)/events\", \"start_from\": \"\(from)\", \"concurrency\": \(concurrency)}"
            _ = try await send(.PUT, "\(api)/v1/subscriptions/\(name)", Array(body.utf8))
        }
        func batch(_ count: Int, prefix: String) -> [UInt8] {
            let now = DispatchTime.now().uptimeNanoseconds
            let events = (0..<count).map { "{\"specversion\":\"1.0\",\"id\":\"\(prefix)\($0)-\(now)\",\"source\":\"/bench\",\"type\":\"bench\",\"data\":{\"n\":\($0)}}" }
            return Array(("[" + events.joined(separator: ",") + "]").utf8)
        }

        // Latency at fixed rates: a batch every millisecond (1 event at 1,000/s, 10 at 10,000/s).
        for rate in rateList {
            let topic = "latency-\(rate)"
            try await subscribe("bench-\(rate)", topic: topic, from: "earliest")
            // The subscriber is in place (on a cluster: its group has settled) once a first event arrives.
            let settled = receiver.count.load(ordering: .relaxed)
            _ = try await send(.POST, "\(api)/v1/topics/\(topic)/events", batch(1, prefix: "settle-"), contentType: "application/cloudevents-batch+json")
            let settleDeadline = ContinuousClock.now + .seconds(60)
            while receiver.count.load(ordering: .relaxed) == settled && ContinuousClock.now < settleDeadline { try await Task.sleep(for: .milliseconds(5)) }
            let perTick = max(1, rate / 1000)
            let tick = Duration.nanoseconds(Int64(1e9 * Double(perTick) / Double(rate)))
            let start = ContinuousClock.now
            let warmUp = start + .seconds(1)
            let end = warmUp + .milliseconds(Int64(seconds * 1000))
            receiver.latencies.withLock { $0 = [] }
            var next = start
            var recordingOn = false
            let before = receiver.count.load(ordering: .relaxed)
            await withTaskGroup(of: Void.self) { group in
                var sequence = 0
                while ContinuousClock.now < end {
                    if !recordingOn && ContinuousClock.now >= warmUp {
                        receiver.recording.store(true, ordering: .relaxed)
                        recordingOn = true
                    }
                    let body = batch(perTick, prefix: "r\(sequence)-")
                    sequence += 1
                    group.addTask { _ = try? await send(.POST, "\(api)/v1/topics/\(topic)/events", body, contentType: "application/cloudevents-batch+json") }
                    next += tick
                    try? await Task.sleep(until: next, clock: .continuous)
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            receiver.recording.store(false, ordering: .relaxed)
            let delivered = receiver.count.load(ordering: .relaxed) - before
            let latencies = receiver.latencies.withLock { $0 }.sorted()
            func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            let elapsed = (ContinuousClock.now - start) / .seconds(1)
            writeLine("| \(backend) | fixed rate | \(rate) | \(f0(Double(delivered) / elapsed)) | \(f2(percentile(0.5))) ms | \(f2(percentile(0.99))) ms | \(f2(latencies.last ?? 0)) ms | |")
        }

        // Throughput: a backlog delivered as fast as the app takes it.
        let publishStart = ContinuousClock.now
        for chunk in 0..<(events / 500) { _ = try await send(.POST, "\(api)/v1/topics/backlog/events", batch(500, prefix: "b\(chunk)-"), contentType: "application/cloudevents-batch+json") }
        let backlog = (events / 500) * 500
        let publishRate = Double(backlog) / ((ContinuousClock.now - publishStart) / .seconds(1))
        let before = receiver.count.load(ordering: .relaxed)
        let started = ContinuousClock.now
        try await subscribe("bench-backlog", topic: "backlog", from: "earliest")
        while receiver.count.load(ordering: .relaxed) - before < backlog { try await Task.sleep(for: .milliseconds(5)) }
        let deliveryRate = Double(backlog) / ((ContinuousClock.now - started) / .seconds(1))
        writeLine("| \(backend) | backlog of \(backlog) | — | \(f0(deliveryRate)) | | | | \(f0(publishRate)) events/s |")

        // Ceiling: the same client posting straight to the app with the same concurrency.
        let ceilingStart = ContinuousClock.now
        let body = Array("{\"n\":1}".utf8)
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    for _ in stride(from: worker, to: backlog, by: concurrency) {
                        _ = try? await send(.POST, "http://127.0.0.1:\(appPort)/events", body)
                    }
                }
            }
        }
        let ceiling = Double(backlog) / ((ContinuousClock.now - ceilingStart) / .seconds(1))
        writeLine("| \(backend) | ceiling: plain POSTs to the app, \(concurrency) at a time | — | \(f0(ceiling)) | | | | |")

        try await client.shutdown()
        await BenchProcesses.stop(agent: agentTask, app: appTask)
        for cleanup in cleanups.reversed() { await cleanup() }
    }
}
