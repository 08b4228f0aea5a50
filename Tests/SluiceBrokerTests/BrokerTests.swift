import Dispatch
import Foundation
@testable import SluiceBroker
import Logging
import SluiceLog
import SluiceTelemetry
import Testing

@Suite("Broker write path")
struct BrokerTests {
    @Test("events of concurrent requests are batched per partition until linger.ms")
    func lingerBatches() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--linger-ms", "200", "--num-partitions", "1", "--acks", "all"])
            let results = try await withThrowingTaskGroup(of: [PublishResult].self) { group in
                for i in 0..<40 { group.addTask { try await broker.publish(topic: "t", events: [event("e\(i)")]) } }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(Set(results.compactMap(\.offset)) == Set(0..<40))
            let batches = try broker.topic("t")!.partitions[0].read(from: 0, maxBytes: 1 << 20)
            #expect(batches.count <= 3, "40 concurrent single-event requests within one linger should share a batch or two, got \(batches.count)")
            #expect(batches.allSatisfy { $0.header.codec == .gzip })
            try await broker.shutdown()
        }
    }

    @Test("full batch.size batches are written before linger.ms; the partial rest waits for it; compression.type none is honoured")
    func batchSizeFlushes() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--linger-ms", "4000", "--batch-size", "2000", "--num-partitions", "1", "--compression-type", "none"])
            let big = String(repeating: "x", count: 300)
            let events = (0..<20).map { event("b\($0)", data: "\"\(big)\"") }
            let started = DispatchTime.now()
            let request = Task { try await broker.publish(topic: "t", events: events) }
            // Full batches appear in the log while the request still waits for the partial last batch's linger.
            var early: Int64 = 0
            while DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds < 3_000_000_000 {
                early = broker.topic("t")?.partitions[0].logEndOffset ?? 0
                if early >= 15 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let log = try #require(broker.topic("t")).partitions[0]
            #expect(early >= 15, "full batches are written at once, not after linger.ms (written: \(early))")
            #expect(early < 20, "the partial last batch waits for linger.ms")
            let results = try await request.value
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            #expect(elapsed >= 3.9)
            #expect(results.map(\.offset) == (0..<20).map { Int64($0) })
            let batches = try log.read(from: 0, maxBytes: 1 << 20)
            #expect(batches.count >= 4)
            #expect(batches.allSatisfy { $0.header.codec == CompressionCodec.none })
            try await broker.shutdown()
        }
    }

    @Test("keyed events land on the murmur2 partition; unkeyed events of one request share a partition")
    func partitioning() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--linger-ms", "0", "--num-partitions", "6"])
            let keyed = (0..<30).map { event("k\($0)", key: "customer-\($0 % 7)") }
            for result in try await broker.publish(topic: "t", events: keyed) {
                let key = keyed.first { $0.id == result.id }!.partitionKey!
                #expect(result.partition == Partitioner.partition(forKey: Array(key.utf8), partitions: 6))
            }
            let unkeyed = try await broker.publish(topic: "t", events: (0..<10).map { event("u\($0)") })
            #expect(Set(unkeyed.map(\.partition)).count == 1)
            try await broker.shutdown()
        }
    }

    @Test("acks=0 answers before the append, acks=1 after it, acks=all after an fsync")
    func acks() async throws {
        try await withTemporaryDirectory { dir in
            let zero = try makeBroker(dir + "/0", ["--acks", "0", "--enable-idempotence", "false", "--linger-ms", "100", "--num-partitions", "1"])
            let r0 = try await zero.publish(topic: "t", events: [event("a")])
            #expect(r0[0].offset == nil)
            #expect(zero.topic("t")!.partitions[0].logEndOffset == 0, "acks=0 returned before the append")
            try await zero.shutdown()
            #expect(try LogManager.open(dataDirectory: dir + "/0/data").topic("t")!.partitions[0].logEndOffset == 1, "accepted under acks=0 and written by shutdown")

            let one = try makeBroker(dir + "/1", ["--acks", "1", "--enable-idempotence", "false", "--linger-ms", "0", "--num-partitions", "1", "--flush-policy", "os"])
            let r1 = try await one.publish(topic: "t", events: [event("a")])
            #expect(r1[0].offset == 0)
            #expect(one.topic("t")!.partitions[0].logEndOffset == 1)
            #expect(one.topic("t")!.partitions[0].durableOffset == 0, "acks=1 does not wait for fsync")
            try await one.shutdown()

            let all = try makeBroker(dir + "/all", ["--acks", "all", "--linger-ms", "0", "--num-partitions", "1", "--flush-policy", "os"])
            let rAll = try await all.publish(topic: "t", events: [event("a"), event("b")])
            #expect(rAll.map(\.offset) == [0, 1])
            #expect(all.topic("t")!.partitions[0].durableOffset == 2, "acks=all answers after the fsync")
            try await all.shutdown()
        }
    }

    @Test("idempotence: a re-sent event (same source and id) gets its original offset, also after a restart")
    func idempotence() async throws {
        try await withTemporaryDirectory { dir in
            var broker = try makeBroker(dir, ["--linger-ms", "0", "--num-partitions", "3"])
            let first = try await broker.publish(topic: "t", events: [event("same", key: "k"), event("other", key: "k")])
            // The same id concurrently and again later: never written twice.
            let current = broker
            async let a = current.publish(topic: "t", events: [event("same", key: "k")])
            async let b = current.publish(topic: "t", events: [event("same", key: "k")])
            let (ra, rb) = try await (a, b)
            #expect(ra[0].duplicate && rb[0].duplicate)
            #expect(ra[0].offset == first[0].offset && rb[0].offset == first[0].offset)
            #expect(ra[0].partition == first[0].partition)
            let p = Int(first[0].partition)
            #expect(broker.topic("t")!.partitions[p].logEndOffset == 2)
            try await broker.shutdown()

            broker = try makeBroker(dir, ["--linger-ms", "0", "--num-partitions", "3"])
            let again = try await broker.publish(topic: "t", events: [event("same", key: "k"), event("new", key: "k")])
            #expect(again[0].duplicate && again[0].offset == first[0].offset)
            #expect(!again[1].duplicate && again[1].offset == 2)
            try await broker.shutdown()

            let off = try makeBroker(dir + "/off", ["--linger-ms", "0", "--num-partitions", "1", "--enable-idempotence", "false"])
            _ = try await off.publish(topic: "t", events: [event("same")])
            let twice = try await off.publish(topic: "t", events: [event("same")])
            #expect(!twice[0].duplicate && twice[0].offset == 1)
            try await off.shutdown()
        }
    }

    @Test("the idempotence window remembers at most idempotence.window.max.events over all topics: the oldest are forgotten and counted, the newest still found, also after a restart; topics do not share ids, nor does a topic made again")
    func idempotenceBound() async throws {
        try await withTemporaryDirectory { dir in
            let arguments = ["--linger-ms", "0", "--num-partitions", "1", "--idempotence-window-max-events", "1000"]
            let logPath = dir + "/broker.log"
            let sink = try LogSink.file(path: logPath, maxBytes: 1 << 20, maxFiles: 1)
            var broker = try Broker(config: SluiceConfig.load(arguments: ["--data-dir", dir + "/data"] + arguments), metrics: SluiceMetrics(),
                                    logger: Logger(label: "sluice") { JSONLogHandler(label: $0, sink: sink, level: .warning) })
            for first in stride(from: 0, to: 1500, by: 100) {
                _ = try await broker.publish(topic: "t", events: (first..<first + 100).map { event("e\($0)") })
            }
            // What each remembered event costs: a 16-byte key and a 32-byte entry in the dictionary, its key and expiry again in the order.
            #expect(MemoryLayout<DedupIndex.Key>.stride == 16 && MemoryLayout<DedupIndex.Entry>.stride == 32)
            #expect(broker.dedup?.usage.entries == 1000)
            #expect(broker.dedup?.usage.evicted == 500)
            let metrics = String(decoding: broker.metrics.render(), as: UTF8.self)
            #expect(metrics.contains("sluice_producer_idempotence_evictions_total 500"))
            #expect(metrics.contains("sluice_producer_idempotence_window_events 1000"))
            #expect(metrics.contains("sluice_producer_idempotence_window_max_events 1000"))
            let covered = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_producer_idempotence_window_covered_seconds ") }
            #expect(covered.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 < 300 } == true, "evictions shorten the window: \(covered ?? "none")")
            // The newest are still found; the oldest is written again.
            let newest = try await broker.publish(topic: "t", events: [event("e1499")])
            #expect(newest[0].duplicate && newest[0].offset == 1499)
            let oldest = try await broker.publish(topic: "t", events: [event("e0")])
            #expect(!oldest[0].duplicate && oldest[0].offset == 1500)
            // Another topic has its own ids.
            let elsewhere = try await broker.publish(topic: "u", events: [event("e1499")])
            #expect(!elsewhere[0].duplicate && elsewhere[0].offset == 0)
            try await broker.shutdown()
            // The first eviction is said once in the log, with the bound and what to do.
            let log = try String(contentsOfFile: logPath, encoding: .utf8)
            #expect(log.components(separatedBy: "the idempotence window is full").count == 2, "\(log)")
            #expect(log.contains("remembers 1000 events") && log.contains("Raise idempotence.window.max.events"))

            // After a restart the newest events are read back, within the bound.
            broker = try makeBroker(dir, arguments)
            let again = try await broker.publish(topic: "t", events: [event("e1498"), event("e1")])
            #expect(again[0].duplicate && again[0].offset == 1498)
            #expect(!again[1].duplicate && again[1].offset == 1501)
            #expect((broker.dedup?.usage.entries ?? 0) <= 1000)
            // A topic deleted and made again starts with no ids.
            try await broker.deleteTopic("t")
            let remade = try await broker.publish(topic: "t", events: [event("e1499")])
            #expect(!remade[0].duplicate && remade[0].offset == 0)
            try await broker.shutdown()
        }
    }

    @Test("buffer.memory full answers 429 with Retry-After, and nothing of that request is written")
    func bufferFull() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--buffer-memory", "4096", "--max-request-size", "4096", "--linger-ms", "1500", "--num-partitions", "1"])
            let payload = String(repeating: "p", count: 2500)
            let waiting = Task { try await broker.publish(topic: "t", events: [event("first", data: "\"\(payload)\"")]) }
            try await Task.sleep(for: .milliseconds(300))
            let error = await #expect(throws: BrokerError.self) { try await broker.publish(topic: "t", events: [event("second", data: "\"\(payload)\"")]) }
            #expect(error?.status == 429)
            #expect(error?.retryAfter == 1)
            let first = try await waiting.value
            #expect(first[0].offset == 0)
            #expect(broker.topic("t")!.partitions[0].logEndOffset == 1)
            // The refused event was not remembered as published: a retry is written.
            let retried = try await broker.publish(topic: "t", events: [event("second", data: "\"\(payload)\"")])
            #expect(!retried[0].duplicate && retried[0].offset == 1)
            try await broker.shutdown()
        }
    }

    @Test("max.in.flight.requests.per.connection=1 still writes every event, in order per partition")
    func inFlightOne() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--max-in-flight-requests-per-connection", "1", "--linger-ms", "1", "--batch-size", "500", "--num-partitions", "1"])
            let results = try await broker.publish(topic: "t", events: (0..<100).map { event("o\($0)") })
            #expect(results.map(\.offset) == (0..<100).map { Int64($0) })
            let records = try broker.topic("t")!.partitions[0].readRecords(from: 0, maxRecords: 200)
            #expect(records.compactMap { CloudEvent(record: $0)?.id } == (0..<100).map { "o\($0)" })
            try await broker.shutdown()
        }
    }

    @Test("a read waits for fetch.min.bytes until an append arrives, or returns empty at fetch.max.wait.ms")
    func longPoll() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--linger-ms", "0", "--num-partitions", "1"])
            try broker.createTopic("t")
            let started = DispatchTime.now()
            let empty = try await broker.fetch(topic: "t", partition: 0, offset: 0, maxRecords: 10, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 300)
            let waited = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            #expect(empty.events.isEmpty)
            #expect(waited >= 0.29)

            let reader = Task { try await broker.fetch(topic: "t", partition: 0, offset: 0, maxRecords: 10, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 20_000) }
            try await Task.sleep(for: .milliseconds(200))
            let t0 = DispatchTime.now()
            _ = try await broker.publish(topic: "t", events: [event("wake")])
            let result = try await reader.value
            #expect(result.events.map(\.event?.id) == ["wake"])
            #expect(Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9 < 5, "woken by the append, not the 20 s timeout")
            try await broker.shutdown()
        }
    }

    @Test("auto.offset.reset decides where a read without an offset starts; out-of-range offsets are clear errors")
    func offsetReset() async throws {
        try await withTemporaryDirectory { dir in
            for (reset, expected) in [("earliest", Int64(0)), ("latest", Int64(3))] {
                let broker = try makeBroker(dir + "/" + reset, ["--linger-ms", "0", "--num-partitions", "1", "--auto-offset-reset", reset])
                _ = try await broker.publish(topic: "t", events: [event("a"), event("b"), event("c")])
                let result = try await broker.fetch(topic: "t", partition: 0, offset: nil, maxRecords: 10, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 0)
                #expect(result.events.first?.offset ?? result.nextOffset == expected)
                let error = await #expect(throws: BrokerError.self) {
                    try await broker.fetch(topic: "t", partition: 0, offset: 99, maxRecords: 10, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 0)
                }
                #expect(error?.status == 404)
                #expect(error?.message.contains("outside t/0's range 0...3") == true)
                try await broker.shutdown()
            }
        }
    }
}
