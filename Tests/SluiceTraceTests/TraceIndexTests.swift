import Foundation
import SluiceBroker
@_spi(FaultInjection) import SluiceLog
import Logging
import SluiceTelemetry
import Testing
@testable import SluiceTrace
import SluiceTestSupport

/// An event hop at `topic/0@offset` that `expected` subscriptions will deliver.
func eventHop(_ id: String, offset: Int64, time: Int64, type: String = "order.placed", cause: String? = nil, expected: [String] = []) -> TraceHop {
    var hop = TraceHop(kind: .event, time: time)
    hop.eventId = id
    hop.eventType = type
    hop.source = "/tests"
    hop.causationId = cause
    hop.topic = "orders"
    hop.partition = 0
    hop.offset = offset
    if !expected.isEmpty { hop.expected = expected }
    return hop
}

func deliveryHop(offset: Int64, subscription: String, time: Int64, outcome: String, final: Bool) -> TraceHop {
    var hop = TraceHop(kind: .delivery, time: time)
    hop.topic = "orders"
    hop.partition = 0
    hop.offset = offset
    hop.subscription = subscription
    hop.outcome = outcome
    hop.final = final
    hop.attempt = 1
    return hop
}

func sagaHop(_ id: String, time: Int64, status: String, final: Bool) -> TraceHop {
    var hop = TraceHop(kind: .saga, time: time)
    hop.sagaId = id
    hop.sagaType = "order"
    hop.sagaStatus = status
    hop.outcome = final ? "finished" : "started"
    hop.final = final
    return hop
}

@Suite("Trace index")
struct TraceIndexTests {
    @Test("hops survive the binary form: 3,000 random hops with every field present or absent")
    func binaryRoundTrip() throws {
        var generator = SystemRandomNumberGenerator()
        func maybe<T>(_ value: @autoclosure () -> T) -> T? { Bool.random(using: &generator) ? value() : nil }
        func text() -> String { String((0..<Int.random(in: 0...40)).map { _ in "aé/-_.9✓\u{1F}x".randomElement()! }) }
        // A kind's number in journals already written is its place among the cases.
        #expect(TraceHop.Kind.allCases.map(\.code) == Array(0..<UInt8(TraceHop.Kind.allCases.count)))
        for _ in 0..<3000 {
            var hop = TraceHop(kind: TraceHop.Kind.allCases.randomElement()!, time: Int64.random(in: Int64.min...Int64.max))
            hop.eventId = maybe(text()); hop.eventType = maybe(text()); hop.source = maybe(text()); hop.causationId = maybe(text())
            hop.topic = maybe(text()); hop.partition = maybe(Int32.random(in: Int32.min...Int32.max)); hop.offset = maybe(Int64.random(in: Int64.min...Int64.max))
            hop.subscription = maybe(text()); hop.attempt = maybe(Int.random(in: 0...1_000_000)); hop.httpStatus = maybe(Int.random(in: 100...599))
            hop.outcome = maybe(text()); hop.latencyMs = maybe(Double.random(in: 0...100_000)); hop.sagaId = maybe(text()); hop.sagaType = maybe(text())
            hop.sagaStatus = maybe(text()); hop.step = maybe(text()); hop.final = maybe(Bool.random()); hop.expected = maybe((0..<Int.random(in: 0...4)).map { _ in text() })
            var bytes: [UInt8] = []
            hop.encode(into: &bytes)
            var reader = BinaryReader(bytes)
            #expect(try TraceHop.decode(&reader) == hop)
            #expect(reader.isAtEnd)
            // Every cut of it is an error, never a crash.
            let cut = Int.random(in: 0..<bytes.count)
            var short = BinaryReader(Array(bytes[..<cut]))
            #expect(throws: TraceCodingError.self) { try TraceHop.decode(&short) }
        }
    }

    @Test("in flight while a delivery is awaited, whichever comes first; complete when every subscription is done; stale without progress")
    func statuses() throws {
        let index = try TraceIndex(settings: TraceSettings(staleMs: 1000))
        index.recordEvents([("c-1", eventHop("e-1", offset: 7, time: 1_000, expected: ["billing", "mail"]))], positions: [:])
        #expect(index.trace("c-1", now: 1_500)?.status == .inFlight)
        #expect(index.trace("c-1", now: 1_500)?.pendingDeliveries == 2)
        #expect(index.trace("c-1", now: 2_001)?.status == .stale)
        // A retry is progress, not an end.
        index.record(deliveryHop(offset: 7, subscription: "billing", time: 2_100, outcome: "http_error", final: false), correlationId: "c-1")
        #expect(index.trace("c-1", now: 2_200)?.status == .inFlight)
        index.record(deliveryHop(offset: 7, subscription: "billing", time: 2_300, outcome: "delivered", final: true), correlationId: "c-1")
        #expect(index.trace("c-1", now: 2_400)?.pendingDeliveries == 1)
        var dead = deliveryHop(offset: 7, subscription: "mail", time: 2_500, outcome: "rejected", final: false)
        index.record(dead, correlationId: "c-1")
        dead.kind = .deadLetter
        index.record(dead, correlationId: "c-1")
        let done = try #require(index.trace("c-1", now: 99_999))
        #expect(done.status == .complete)
        #expect(done.hops.map(\.kind) == [.event, .delivery, .delivery, .delivery, .deadLetter])
        #expect(done.firstMillis == 1_000 && done.lastMillis == 2_500)

        // The runner can finish before the tailer reads the event: the delivery waits for it.
        index.record(deliveryHop(offset: 9, subscription: "billing", time: 3_000, outcome: "delivered", final: true), correlationId: "c-2")
        index.recordEvents([("c-2", eventHop("e-2", offset: 9, time: 2_990, expected: ["billing"]))], positions: [:])
        let early = try #require(index.trace("c-2", now: 3_001))
        #expect(early.status == .complete)
        #expect(early.hops.map(\.kind) == [.event, .delivery], "ordered by time, not by arrival")
    }

    @Test("a saga keeps its trace in flight until final; events correlated by the saga id join the trace that started it")
    func sagasAndLinks() throws {
        let index = try TraceIndex(settings: TraceSettings())
        index.recordEvents([("order-7", eventHop("e-1", offset: 1, time: 1_000))], positions: [:])
        index.link(sagaId: "saga-1", to: "order-7")
        index.record(sagaHop("saga-1", time: 1_100, status: "running", final: false), correlationId: "order-7")
        index.recordEvents([("saga-1", eventHop("cmd-1", offset: 2, time: 1_200, type: "payment.process", cause: "e-1"))], positions: [:])
        let running = try #require(index.trace("saga-1", now: 1_300))
        #expect(running.correlationId == "order-7")
        #expect(running.status == .inFlight && running.openSagas == ["saga-1"])
        #expect(running.aliases == ["saga-1"])
        index.record(sagaHop("saga-1", time: 1_400, status: "completed", final: true), correlationId: "saga-1")
        let done = try #require(index.trace("order-7", now: 1_500))
        #expect(done.status == .complete)
        #expect(done.hops.count == 4)
        let tree = done.causationTree()
        #expect(tree.count == 1)
        #expect((tree[0]["children"] as? [[String: Any]])?.first?["event_id"] as? String == "cmd-1")
        #expect(index.list(status: .complete, limit: 10).traces.map(\.correlationId) == ["order-7"])
    }

    @Test("bounds: hops past trace.max.hops are counted and still finish deliveries; the oldest traces go past trace.max.traces; retention drops idle ones")
    func bounds() throws {
        let index = try TraceIndex(settings: TraceSettings(maxTraces: 100, retentionMs: 60_000, maxHopsPerTrace: 3))
        index.recordEvents([("big", eventHop("e", offset: 1, time: 10, expected: ["s"]))], positions: [:])
        for n in 0..<5 { index.record(deliveryHop(offset: 1, subscription: "s", time: 20 + Int64(n), outcome: "timeout", final: false), correlationId: "big") }
        index.record(deliveryHop(offset: 1, subscription: "s", time: 30, outcome: "delivered", final: true), correlationId: "big")
        let big = try #require(index.trace("big", now: 40))
        #expect(big.hops.count == 3 && big.droppedHops == 4)
        #expect(big.status == .complete)

        for n in 0..<150 { index.recordEvents([("t-\(n)", eventHop("e-\(n)", offset: Int64(n), time: 1_000 + Int64(n)))], positions: [:]) }
        index.maintain(now: 2_000)
        #expect(index.size.traces == 95, "down to 95% of trace.max.traces")
        #expect(index.trace("big") == nil && index.trace("t-0") == nil && index.trace("t-149") != nil)
        index.maintain(now: 1_100 + 60_000)
        #expect(index.size.traces == 50, "idle for retention.ms: t-55…t-99 went, t-100… stay")
        #expect(index.trace("t-100") != nil && index.trace("t-99") == nil)
    }

    @Test("trace.max.bytes: past it, the least recently active traces go until the hops fit in 95% of it")
    func byteBound() throws {
        let index = try TraceIndex(settings: TraceSettings(maxBytes: 10_000))
        for n in 0..<400 { index.recordEvents([("t-\(n)", eventHop("e-\(n)", offset: Int64(n), time: 1_000 + Int64(n)))], positions: [:]) }
        let perHop = index.size.hopBytes / 400
        index.maintain(now: 2_000)
        #expect(index.size.hopBytes <= 9_500 && index.size.hopBytes > 9_500 - perHop, "\(index.size)")
        #expect(index.trace("t-399") != nil && index.trace("t-0") == nil)
    }

    @Test("the journal brings back every trace, link and read position after a restart, also after compaction and with a torn tail")
    func journal() async throws {
        try await withTemporaryDirectory { dir in
            let settings = TraceSettings(directory: dir + "/traces")
            var index: TraceIndex? = try TraceIndex(settings: settings)
            index!.recordEvents([("c-1", eventHop("e-1", offset: 4, time: 1_000, expected: ["billing"]))], positions: [TopicPartition("orders", 0): 5])
            index!.link(sagaId: "saga-1", to: "c-1")
            index!.record(sagaHop("saga-1", time: 1_100, status: "running", final: false), correlationId: "saga-1")
            index!.record(deliveryHop(offset: 4, subscription: "billing", time: 1_200, outcome: "delivered", final: true), correlationId: "c-1")
            let before = try #require(index!.trace("c-1", now: 1_300))
            index!.close()
            index = nil

            let reopened = try TraceIndex(settings: settings)
            let after = try #require(reopened.trace("saga-1", now: 1_300))
            #expect(after.hops == before.hops)
            #expect(after.status == .inFlight && after.openSagas == ["saga-1"] && after.pendingDeliveries == 0)
            #expect(reopened.positions == [TopicPartition("orders", 0): 5])
            reopened.compactIfDue(force: true)
            reopened.close()

            // A torn last entry (a crash in the middle of a write) is cut off; what was whole stays.
            let path = dir + "/traces/traces.journal"
            let handle = try #require(FileHandle(forWritingAtPath: path))
            handle.seekToEndOfFile()
            handle.write(Data([0, 0, 0, 40, 1, 2, 3]))
            try handle.close()
            let compacted = try TraceIndex(settings: settings)
            #expect(compacted.trace("c-1", now: 1_300)?.hops == before.hops)
            #expect(compacted.positions == [TopicPartition("orders", 0): 5])
            compacted.close()
        }
    }

    @Test("a journal that cannot be written is said once in the log; traces go on in memory")
    func journalFailure() async throws {
        try await withTemporaryDirectory { dir in
            let sink = try LogSink.file(path: dir + "/log", maxBytes: 1 << 20, maxFiles: 1)
            let logger = Logger(label: "sluice") { label in JSONLogHandler(label: label, sink: sink, level: .debug) }
            let index = try TraceIndex(settings: TraceSettings(directory: dir + "/traces"), logger: logger)
            FileFaults.arm(failAt: 1, calls: [.write], under: dir + "/traces/", errno: FileFaults.noSpace, sticky: true)
            defer { FileFaults.disarm() }
            for n in 0..<3 {
                index.record(eventHop("e-\(n)", offset: Int64(n), time: 1_000), correlationId: "c-1")
                index.flush()
            }
            index.compactIfDue(force: true)
            #expect(index.trace("c-1")?.hops.count == 3)
            let lines = try String(contentsOfFile: dir + "/log", encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains("the trace journal cannot be written") && lines[0].contains("traces.journal"), "\(lines)")
        }
    }

    @Test("gauges count statuses, and a trace's duration is observed once when it completes, under its first event's type")
    func metrics() throws {
        let metrics = SluiceMetrics()
        let index = try TraceIndex(settings: TraceSettings(staleMs: 1000), metrics: metrics)
        let now = currentTimeMillis()
        index.recordEvents([("a", eventHop("e-a", offset: 1, time: now - 5_000, expected: ["s"])),
                            ("b", eventHop("e-b", offset: 2, time: now - 100, expected: ["s"])),
                            ("c", eventHop("e-c", offset: 3, time: now - 300, type: "cart.checked_out"))], positions: [:])
        index.record(deliveryHop(offset: 3, subscription: "s", time: now - 50, outcome: "delivered", final: true), correlationId: "c")
        index.maintain(now: now)
        index.maintain(now: now)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("sluice_traces_stale 1"))
        #expect(text.contains("sluice_traces_in_flight 1"))
        #expect(text.contains("sluice_trace_index_traces 3"))
        #expect(text.contains("sluice_trace_duration_seconds_count{event_type=\"cart.checked_out\"} 1"), "\(text.split(separator: "\n").filter { $0.contains("trace") })")
    }
}

@Suite("Trace tailer")
struct TraceTailerTests {
    func traced(_ record: Record) throws -> TraceTailer.Traced? {
        var found: TraceTailer.Traced??
        try RecordBatch.scan(try RecordBatch.encode([record], compression: .gzip())) { found = TraceTailer.traced($0) }
        return try #require(found)
    }

    @Test("takes id, type, source, correlation and causation from a binary-mode record, and from a structured one; a record without a correlation id is not traced")
    func readsEvents() throws {
        var event = CloudEvent(id: "e-1", source: "/shop", type: "order.placed", data: Array("{\"n\":1}".utf8), datacontenttype: "application/json")
        event.extensions = ["correlationid": "c-1", "causationid": "e-0", "partitionkey": "k"]
        let binary = try #require(try traced(event.record(timestamp: 1)))
        #expect(binary.id == "e-1" && binary.type == "order.placed" && binary.source == "/shop" && binary.correlationId == "c-1" && binary.causationId == "e-0")

        var writer = JSONWriter()
        event.writeJSON(into: &writer)
        let structured = Record(timestamp: 1, key: nil, value: writer.bytes, headers: [RecordHeader(key: "content-type", value: Array("application/cloudevents+json".utf8))])
        let fromValue = try #require(try traced(structured))
        #expect(fromValue.id == "e-1" && fromValue.correlationId == "c-1" && fromValue.causationId == "e-0")

        event.extensions = [:]
        #expect(try traced(event.record(timestamp: 1)) == nil)
        #expect(try traced(Record(timestamp: 1, key: nil, value: Array("plain".utf8))) == nil)
    }
}

@Suite("Flow map")
struct FlowMapTests {
    @Test("counts events per topic and source with the latest time; at most 64 sources per topic, later ones under 'other'; topics that are gone are forgotten")
    func bounded() {
        let flows = FlowMap()
        flows.add(["orders": ["/shop": (3, 100), "/admin": (1, 50)], "payments": ["/pay": (2, 70)]])
        flows.add(["orders": ["/shop": (2, 90)]])
        #expect(flows.producers == [
            FlowMap.Producer(source: "/admin", topic: "orders", events: 1, lastSeenMillis: 50),
            FlowMap.Producer(source: "/shop", topic: "orders", events: 5, lastSeenMillis: 100),
            FlowMap.Producer(source: "/pay", topic: "payments", events: 2, lastSeenMillis: 70),
        ])
        var many: [String: (events: Int, last: Int64)] = [:]
        for n in 0..<100 { many["/s\(n)"] = (1, Int64(n)) }
        flows.add(["wide": many])
        let wide = flows.producers.filter { $0.topic == "wide" }
        #expect(wide.count == FlowMap.maxSourcesPerTopic + 1, "64 named sources and 'other'")
        #expect(wide.reduce(0) { $0 + $1.events } == 100, "every event is counted")
        #expect(wide.contains { $0.source == FlowMap.other && $0.events == 100 - FlowMap.maxSourcesPerTopic })
        flows.retain(topics: ["orders"])
        #expect(Set(flows.producers.map(\.topic)) == ["orders"])
    }
}

@Suite("Event spans")
struct EventSpansTests {
    @Test("a traceparent is unsampled when its flags' bit 0 is clear; the sampler follows the parent unless OTEL_TRACES_SAMPLER says otherwise")
    func sampling() {
        #expect(EventSpans.isUnsampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
        #expect(EventSpans.isUnsampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"))
        #expect(!EventSpans.isUnsampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        #expect(!EventSpans.isUnsampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"))
        #expect(!EventSpans.isUnsampled("not a traceparent"))
        #expect(EventSpans.samplerFollowsParent([:]))
        #expect(EventSpans.samplerFollowsParent(["OTEL_TRACES_SAMPLER": "parentbased_traceidratio"]))
        #expect(!EventSpans.samplerFollowsParent(["OTEL_TRACES_SAMPLER": "traceidratio"]))
        #expect(!EventSpans.samplerFollowsParent(["OTEL_TRACES_SAMPLER": "always_on"]))
    }
}
