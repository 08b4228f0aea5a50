import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import Synchronization

/// Writes dead letters, poison events and resolution records, durably.
struct DeadLetterWriter: Sendable {
    let broker: Broker

    /// Writes `fetched` to the subscription's DLQ topic for its topic (created with the same partition count), with
    /// its failure history and `traceparent` (the trace context of the dead-lettering).
    func write(_ fetched: FetchedEvent, subscription: Subscription, history: FailureHistory, traceparent: String?) async throws(BrokerError) {
        let dlq = subscription.deadLetterTopic(for: fetched.topic)
        let record = DeadLetter.record(for: fetched.record, topic: fetched.topic, partition: fetched.partition, group: subscription.group,
                                       subscription: subscription.name, history: history, correlationId: fetched.event?.correlationId,
                                       traceparent: traceparent)
        let partitions = broker.partitionCount(fetched.topic) ?? 1
        _ = try await broker.appendDurably(topic: dlq, partitions: partitions, [(fetched.partition, record)])
        broker.metrics.counter(MetricName.dlqEvents, fetched.topic, fetched.event?.type ?? "sluice.record", history.errorType.rawValue).increment()
    }

    /// Writes a failed replay back to its DLQ topic with its history, or to `<topic>.poison` once `maxReplays` is
    /// reached; then resolves the old dead letter. Returns the outcome label.
    func requeue(_ letter: DeadLetter, history: FailureHistory, maxReplays: Int) async throws(BrokerError) -> String {
        let poisoned = history.replays >= maxReplays
        let target = poisoned ? Subscription.poisonTopic(for: letter.originalTopic) : letter.topic
        let record = DeadLetter.record(for: letter.originalRecord, topic: letter.originalTopic, partition: letter.originalPartition,
                                       group: letter.group, subscription: letter.subscription, history: history, correlationId: letter.correlationId,
                                       traceparent: letter.traceparent)
        let partitions = broker.partitionCount(letter.topic) ?? 1
        _ = try await broker.appendDurably(topic: target, partitions: partitions, [(letter.originalPartition, record)])
        let outcome = poisoned ? "poisoned" : "dead_lettered_again"
        if poisoned {
            broker.metrics.counter(MetricName.poisonEvents, letter.originalTopic).increment()
        } else {
            broker.metrics.counter(MetricName.dlqEvents, letter.originalTopic, letter.eventType ?? "sluice.record", history.errorType.rawValue).increment()
        }
        try await resolve(letter, outcome: outcome)
        return outcome
    }

    func resolve(_ letter: DeadLetter, outcome: String) async throws(BrokerError) {
        let partitions = broker.partitionCount(letter.topic) ?? 1
        _ = try await broker.appendDurably(topic: letter.topic, partitions: partitions, [
            (letter.partition, DeadLetter.resolution(partition: letter.partition, offset: letter.offset, outcome: outcome, now: currentTimeMillis())),
        ])
    }
}

/// Unresolved dead letters per DLQ topic, kept current by reading the DLQ topics incrementally (dead letters
/// add entries, resolution records remove them). Feeds `sluice_dlq_depth`, `sluice_dlq_oldest_age_seconds`,
/// `GET /v1/dlq…` and replay.
final class DeadLetterIndex: Sendable {
    let broker: Broker
    private let state = Mutex<[String: TopicIndex]>([:])

    struct TopicIndex {
        var cursors: [Int32: Int64] = [:]
        /// (partition, offset) → the dead letter's last failure time and subscription.
        var unresolved: [DeadLetterKey: Unresolved] = [:]
        var resolvedEarly: Set<DeadLetterKey> = []

        /// Indexes one record of the DLQ topic: a dead letter, or the resolution of one.
        mutating func take(_ record: Record, topic: String, partition: Int32) {
            if let (p, o) = DeadLetter.resolved(by: record) {
                let key = DeadLetterKey(partition: p, offset: o)
                if unresolved.removeValue(forKey: key) == nil { resolvedEarly.insert(key) }
            } else if let letter = DeadLetter(topic: topic, partition: partition, record: record) {
                let key = DeadLetterKey(partition: partition, offset: record.offset)
                if !resolvedEarly.contains(key) {
                    unresolved[key] = Unresolved(lastFailureMillis: letter.history.lastFailureMillis, subscription: letter.subscription)
                }
            }
        }

        /// The partition was read up to `offset`; letters before its log start were deleted by retention.
        mutating func advance(_ partition: Int32, to offset: Int64, logStart: Int64) {
            cursors[partition] = offset
            unresolved = unresolved.filter { $0.key.partition != partition || $0.key.offset >= logStart }
        }
    }

    struct Unresolved {
        var lastFailureMillis: Int64
        var subscription: String
    }

    struct DeadLetterKey: Hashable, Sendable, Comparable {
        var partition: Int32
        var offset: Int64
        static func < (a: Self, b: Self) -> Bool { (a.partition, a.offset) < (b.partition, b.offset) }
    }

    init(broker: Broker) { self.broker = broker }

    /// DLQ topics: `*.dlq`, plus those named by subscriptions.
    func dlqTopics(named: Set<String>) -> [String] {
        broker.topicNames.filter { $0.hasSuffix(".dlq") || named.contains($0) }
    }

    /// Reads what was appended to the DLQ topics since the last refresh, and updates the gauges. On a cluster
    /// this is ``refreshFromCluster(named:)``'s work, and here nothing is read.
    func refresh(named: Set<String>) {
        guard !broker.isRemote else { return }
        let topics = dlqTopics(named: named)
        var indexes = state.withLock { $0 }
        for name in topics {
            guard let topic = broker.topic(name) else { continue }
            var index = indexes[name] ?? TopicIndex()
            for log in topic.partitions {
                var offset = max(index.cursors[log.partition] ?? 0, log.logStartOffset)
                while offset < log.logEndOffset, let records = try? log.readRecords(from: offset, maxRecords: 5000), let last = records.last {
                    for record in records { index.take(record, topic: name, partition: log.partition) }
                    offset = last.offset + 1
                }
                index.advance(log.partition, to: offset, logStart: log.logStartOffset)
            }
            indexes[name] = index
        }
        publish(indexes, topics: topics)
    }

    /// ``refresh(named:)`` on a cluster: each DLQ partition is read from where the last refresh ended, through the
    /// broker's reads (which go to the cluster).
    func refreshFromCluster(named: Set<String>) async {
        let topics = dlqTopics(named: named)
        var indexes = state.withLock { $0 }
        for name in topics {
            var index = indexes[name] ?? TopicIndex()
            for partition in 0..<Int32(broker.partitionCount(name) ?? 0) {
                var offset = index.cursors[partition] ?? 0
                // Where retention has passed the cursor, the read starts at the log start; with nothing new, there is no read.
                guard let (start, end) = try? await broker.remote?.offsets(topic: name, partition: partition) else { continue }
                offset = max(offset, start)
                guard offset < end else {
                    index.advance(partition, to: offset, logStart: start)
                    continue
                }
                while true {
                    guard let read = try? await broker.fetch(topic: name, partition: partition, offset: offset, maxRecords: 5000, maxBytes: 4 << 20,
                                                             minBytes: 1, maxWaitMs: 0) else { break }
                    for fetched in read.events { index.take(fetched.record, topic: name, partition: partition) }
                    index.advance(partition, to: max(read.nextOffset, read.logStartOffset), logStart: read.logStartOffset)
                    guard read.nextOffset > offset, read.nextOffset < read.logEndOffset else { break }
                    offset = read.nextOffset
                }
            }
            indexes[name] = index
        }
        publish(indexes, topics: topics)
    }

    /// Keeps the indexes of `topics` (forgetting the rest) and sets the depth and age gauges.
    private func publish(_ indexes: [String: TopicIndex], topics: [String]) {
        var indexes = indexes
        for gone in Set(indexes.keys).subtracting(topics) { indexes.removeValue(forKey: gone) }
        state.withLock { $0 = indexes }
        let now = currentTimeMillis()
        for (name, index) in indexes {
            broker.metrics.gauge(MetricName.dlqDepth, name).set(Double(index.unresolved.count))
            let oldest = index.unresolved.values.lazy.map(\.lastFailureMillis).min()
            broker.metrics.gauge(MetricName.dlqOldestAge, name).set(oldest.map { max(0, Double(now - $0) / 1000) } ?? 0)
        }
    }

    /// Depth and oldest age per DLQ topic.
    func summary() -> [(topic: String, depth: Int, oldestMillis: Int64?)] {
        state.withLock { indexes in
            indexes.keys.sorted().map { ($0, indexes[$0]!.unresolved.count, indexes[$0]!.unresolved.values.lazy.map(\.lastFailureMillis).min()) }
        }
    }

    /// Unresolved dead letters per subscription, over every DLQ topic.
    func depthBySubscription() -> [String: Int] {
        state.withLock { indexes in
            var depths: [String: Int] = [:]
            for index in indexes.values {
                for entry in index.unresolved.values { depths[entry.subscription, default: 0] += 1 }
            }
            return depths
        }
    }

    /// The unresolved dead letters of a DLQ topic, read from the log (the embedded one or the cluster), oldest
    /// offsets first.
    func unresolved(_ topic: String, limit: Int = .max) async throws(BrokerError) -> [DeadLetter] {
        guard let keys = state.withLock({ $0[topic]?.unresolved.keys.sorted() }) else {
            guard broker.partitionCount(topic) != nil else { throw BrokerError(.notFound, "DLQ topic \(topic) does not exist") }
            return []
        }
        var letters: [DeadLetter] = []
        for key in keys.prefix(limit) {
            if let letter = try await letter(topic, partition: key.partition, offset: key.offset) { letters.append(letter) }
        }
        return letters
    }

    func isUnresolved(_ topic: String, partition: Int32, offset: Int64) -> Bool {
        state.withLock { $0[topic]?.unresolved[DeadLetterKey(partition: partition, offset: offset)] != nil }
    }

    /// One dead letter, or nil when the record there is not one. Read through the broker, so from either backend.
    func letter(_ topic: String, partition: Int32, offset: Int64) async throws(BrokerError) -> DeadLetter? {
        let read = try await broker.fetch(topic: topic, partition: partition, offset: offset, maxRecords: 1, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 0)
        guard offset >= read.logStartOffset, offset < read.logEndOffset else {
            throw BrokerError(.notFound, "\(topic)/\(partition) has offsets \(read.logStartOffset)..<\(read.logEndOffset); \(offset) is not there")
        }
        guard let fetched = read.events.first(where: { $0.offset == offset }) else { return nil }
        return DeadLetter(topic: topic, partition: partition, record: fetched.record)
    }
}
