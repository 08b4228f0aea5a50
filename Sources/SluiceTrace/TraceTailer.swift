public import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// Reads every topic's committed events behind the writers and records those with a correlation id as event hops,
/// with the push subscriptions that will deliver each. Publishing pays nothing for it; HTTP, Kafka, saga and
/// transactional writes are all seen the same way, once committed. It resumes where the index's journal says the
/// reads stopped, so after a restart the events written meanwhile are read from the log.
public final class TraceTailer: Sendable {
    /// Who will deliver an event: the subscriptions of its topic that accept its type and have not committed past it.
    public typealias Deliverers = @Sendable (_ topic: String, _ partition: Int32, _ offset: Int64, _ eventType: String) -> [String]

    let broker: Broker
    let index: TraceIndex
    let deliverers: Deliverers
    let skip: @Sendable (String) -> Bool

    /// - Parameters:
    ///   - skip: topics not to read (dead-letter and poison topics: their records are copies of events already traced).
    public init(broker: Broker, index: TraceIndex, deliverers: @escaping Deliverers, skip: @escaping @Sendable (String) -> Bool) {
        self.broker = broker
        self.index = index
        self.deliverers = deliverers
        self.skip = skip
    }

    /// Reads until cancelled.
    public func run() async {
        while !broker.isReady && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        var positions = index.positions
        var rotation = 0
        while !Task.isCancelled {
            var reads: [(TopicPartition, Int64)] = []
            for name in broker.log.topicNames.sorted() where !name.hasPrefix("__") && !skip(name) {
                guard let topic = broker.topic(name) else { continue }
                for (number, log) in topic.partitions.enumerated() {
                    let tp = TopicPartition(name, Int32(number))
                    let at = min(max(positions[tp] ?? log.logStartOffset, log.logStartOffset), log.logEndOffset)
                    reads.append((tp, at))
                }
            }
            guard !reads.isEmpty else {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            // A different partition first each pass, so that a busy one cannot starve the rest.
            rotation = (rotation + 1) % reads.count
            reads = Array(reads[rotation...] + reads[..<rotation])
            do {
                let result = try await broker.fetch(reads, maxRecords: 2000, maxBytesPerPartition: 1 << 20, maxWaitMs: 200, isolation: .readCommitted)
                let cutoff = currentTimeMillis() - index.settings.retentionMs
                var hops: [(correlationId: String, hop: TraceHop)] = []
                hops.reserveCapacity(result.events.count)
                for fetched in result.events where fetched.timestamp >= cutoff {
                    guard let event = fetched.event, let correlation = event.correlationId, !correlation.isEmpty else { continue }
                    var hop = TraceHop(kind: .event, time: fetched.timestamp)
                    hop.eventId = event.id
                    hop.eventType = event.type
                    hop.source = event.source
                    hop.causationId = event.causationId
                    hop.topic = fetched.topic
                    hop.partition = fetched.partition
                    hop.offset = fetched.offset
                    let expected = deliverers(fetched.topic, fetched.partition, fetched.offset, event.type)
                    if !expected.isEmpty { hop.expected = expected }
                    hops.append((correlation, hop))
                }
                if !hops.isEmpty || !result.next.isEmpty { index.recordEvents(hops, positions: result.next) }
                positions.merge(result.next) { _, new in new }
                // A read answers at once, empty, once shutdown has ended long polls: sleep, so this loop never
                // holds a thread of the cooperative pool until it is cancelled.
                if result.next.isEmpty { try? await Task.sleep(for: .milliseconds(100)) }
            } catch {
                // A topic deleted between listing and reading: the next pass lists again.
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
