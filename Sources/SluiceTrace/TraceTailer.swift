#if canImport(Glibc)
import Glibc
#endif
public import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// Reads every topic's committed events behind the writers and records those with a correlation id as event hops,
/// with the push subscriptions that will deliver each. Publishing pays nothing for it on its request path; HTTP,
/// Kafka, saga and transactional writes are all seen the same way, once committed. It resumes where the index's
/// journal says the reads stopped, so after a restart the events written meanwhile are read from the log.
///
/// It reads stored batches itself and takes only the headers it needs from each record (``RecordBatch/scan``),
/// without making records or CloudEvents of them.
public final class TraceTailer: Sendable {
    /// The subscriptions reading `topic` that accept `eventType`, with the offset their group committed on the partition.
    public typealias Deliverers = @Sendable (_ topic: String, _ partition: Int32, _ eventType: String) -> [(subscription: String, committed: Int64)]

    let broker: Broker
    let index: TraceIndex
    let deliverers: Deliverers
    let skip: @Sendable (String) -> Bool
    /// Who produces to which topic (the console's event-flow map), from the same reads.
    public let flows: FlowMap

    /// - Parameters:
    ///   - skip: topics not to read (dead-letter and poison topics: their records are copies of events already traced).
    public init(broker: Broker, index: TraceIndex, deliverers: @escaping Deliverers, skip: @escaping @Sendable (String) -> Bool,
                flows: FlowMap = FlowMap()) {
        self.flows = flows
        self.broker = broker
        self.index = index
        self.deliverers = deliverers
        self.skip = skip
    }

    /// Reads until cancelled: a pass over every partition, then a pause of 100 ms when nothing was there.
    public func run() async {
        while !broker.isReady && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        var positions = index.positions
        while !Task.isCancelled {
            let (hops, moved) = pass(from: positions)
            if !hops.isEmpty || !moved.isEmpty { index.recordEvents(hops, positions: moved) }
            positions.merge(moved) { _, new in new }
            if hops.isEmpty { try? await Task.sleep(for: .milliseconds(100)) } else { await Task.yield() }
        }
    }

    /// One read of every partition from `positions` (up to 1 MiB each): the event hops and where each read ended.
    func pass(from positions: [TopicPartition: Int64]) -> (hops: [(correlationId: String, hop: TraceHop)], moved: [TopicPartition: Int64]) {
        let cutoff = currentTimeMillis() - index.settings.retentionMs
        var hops: [(correlationId: String, hop: TraceHop)] = []
        var moved: [TopicPartition: Int64] = [:]
        var seen: [String: [String: (events: Int, last: Int64)]] = [:]
        defer { flows.add(seen) }
        for name in broker.log.topicNames where !name.hasPrefix("__") && !skip(name) {
            guard let topic = broker.topic(name) else { continue }
            // Events per source on this topic, counted in this table and put in `seen` once (if any).
            var sources: [String: (events: Int, last: Int64)] = [:]
            defer { if !sources.isEmpty { seen[name] = sources } }
            for (number, log) in topic.partitions.enumerated() {
                // Who delivers each event type read here (and where their groups have committed), asked once per
                // type and pass; consecutive events of one type (the usual run) reuse the last answer.
                var targets: [String: [(subscription: String, committed: Int64)]] = [:]
                var last: (type: String, targets: [(subscription: String, committed: Int64)])?
                let tp = TopicPartition(name, Int32(number))
                var at: Int64
                if let known = positions[tp], known <= log.logEndOffset {
                    at = max(known, log.logStartOffset)
                } else {
                    // A partition not read before (or recreated, or cut shorter than where the reads were): from the
                    // first event within retention, found through the time index, instead of scanning older ones.
                    at = (try? log.offset(forTimestamp: cutoff)).flatMap { $0 } ?? log.logEndOffset
                    at = max(at, log.logStartOffset)
                }
                let end = log.visibleEnd(.readCommitted)
                defer { if at != positions[tp] { moved[tp] = at } }
                guard at < end, let batches = try? log.read(from: at, maxBytes: 1 << 20) else { continue }
                for batch in batches where batch.header.baseOffset < end {
                    if !log.isHidden(batch.header, isolation: .readCommitted) {
                        let from = at
                        // A batch that cannot be read (a codec error) is passed over: tracing never stops on it.
                        try? RecordBatch.scan(batch.bytes) { record in
                            guard record.offset >= from, record.timestamp >= cutoff, let event = Self.traced(record) else { return }
                            Self.count(&sources[event.source, default: (0, 0)], at: record.timestamp)
                            var hop = TraceHop(kind: .event, time: record.timestamp)
                            hop.eventId = event.id
                            hop.eventType = event.type
                            hop.source = event.source
                            hop.causationId = event.causationId
                            hop.topic = name
                            hop.partition = Int32(number)
                            hop.offset = record.offset
                            if last?.type != event.type {
                                let found = targets[event.type] ?? deliverers(name, Int32(number), event.type)
                                targets[event.type] = found
                                last = (event.type, found)
                            }
                            if let deliverers = last?.targets, !deliverers.isEmpty {
                                let expected = deliverers.filter { $0.committed <= record.offset }.map(\.subscription)
                                if !expected.isEmpty { hop.expected = expected }
                            }
                            hops.append((event.correlationId, hop))
                        }
                    }
                    at = max(at, batch.header.nextOffset)
                }
            }
        }
        return (hops, moved)
    }

    /// One more event of a source on a topic, read in place in the pass's table (one lookup).
    private static func count(_ seen: inout (events: Int, last: Int64), at time: Int64) {
        seen.events += 1
        seen.last = max(seen.last, time)
    }

    /// What a trace needs of an event.
    struct Traced {
        var id: String
        var type: String
        var source: String
        var correlationId: String
        var causationId: String?
    }

    private static let id = Array("ce_id".utf8), type = Array("ce_type".utf8), source = Array("ce_source".utf8)
    private static let correlation = Array("ce_correlationid".utf8), causation = Array("ce_causationid".utf8)
    private static let contentType = Array("content-type".utf8), structuredPrefix = Array("application/cloudevents".utf8)

    /// The record's CloudEvent attributes a trace needs (binary mode: `ce_*` headers; structured mode: the value),
    /// or nil for a record without a correlation id.
    static func traced(_ record: RecordView) -> Traced? {
        var id: String?, type: String?, source: String?, correlationId: String?, causationId: String?
        var structured = false
        func text(_ value: UnsafeRawBufferPointer?) -> String? { value.map { String(decoding: $0, as: UTF8.self) } }
        // Keys are told apart by length first, then compared with memcmp.
        func equal(_ key: UnsafeRawBufferPointer, _ name: [UInt8]) -> Bool {
            key.count == name.count && name.withUnsafeBytes { memcmp(key.baseAddress!, $0.baseAddress!, name.count) == 0 }
        }
        try? record.forEachHeader { key, value in
            switch key.count {
            case 5 where equal(key, Self.id): id = text(value)
            case 7 where equal(key, Self.type): type = text(value)
            case 9 where equal(key, Self.source): source = text(value)
            case 16 where equal(key, Self.correlation): correlationId = text(value)
            case 14 where equal(key, Self.causation): causationId = text(value)
            case 12 where equal(key, Self.contentType):
                // Binary-mode records carry their data's type here: only a structured one is looked at closer.
                guard let value, value.count >= Self.structuredPrefix.count,
                      equal(UnsafeRawBufferPointer(rebasing: value.prefix(Self.structuredPrefix.count)), Self.structuredPrefix) else { return }
                structured = CloudEvent.isStructured(contentType: String(decoding: value, as: UTF8.self))
            default: return
            }
        }
        if let id, let type, let source {
            guard let correlationId, !correlationId.isEmpty else { return nil }
            return Traced(id: id, type: type, source: source, correlationId: correlationId, causationId: causationId)
        }
        guard structured, let value = record.value, let event = try? CloudEvent.parse(json: Array(value)),
              let correlationId = event.correlationId, !correlationId.isEmpty else { return nil }
        return Traced(id: event.id, type: event.type, source: event.source, correlationId: correlationId, causationId: event.causationId)
    }
}
