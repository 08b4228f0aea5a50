import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry

extension SagaEngine {
    /// Follows the watched topics from the reader group's committed offsets and hands triggers, replies and
    /// observed events to the loop, one batch at a time. Offsets are committed after the loop has recorded
    /// what a batch changed, so after a crash only events whose effects were not recorded are read again (and
    /// they are idempotent: a reply that does not match what a saga waits for is ignored).
    ///
    /// A partition without a committed offset starts at the first event appended since the engine was made:
    /// older events must not start sagas, and a topic created after that is read from its start (its first
    /// events may be replies).
    func read() async {
        var positions: [TopicPartition: Int64] = [:]
        var committed: [TopicPartition: Int64] = [:]
        var lastCommit = DispatchTime.now().uptimeNanoseconds
        var rotation = 0
        while !Task.isCancelled {
            for name in watchedTopics {
                guard let topic = broker.topic(name) else { continue }
                for (index, log) in topic.partitions.enumerated() {
                    let tp = TopicPartition(name, Int32(index))
                    var position = positions[tp] ?? {
                        let saved = groups.store.offset(GroupPartition(group: Self.readerGroup, topic: name, partition: Int32(index)))?.offset
                        if let saved { committed[tp] = saved }
                        return saved ?? ((try? log.offset(forTimestamp: startedMillis)) ?? nil) ?? log.logEndOffset
                    }()
                    position = min(max(position, log.logStartOffset), log.logEndOffset)
                    positions[tp] = position
                }
            }
            guard !positions.isEmpty else {
                try? await Task.sleep(for: .milliseconds(250))
                continue
            }
            var ordered = positions.sorted { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }
            rotation = (rotation + 1) % ordered.count
            ordered = Array(ordered[rotation...] + ordered[..<rotation])
            let fetched: FetchedEvents
            do {
                fetched = try await broker.fetch(ordered.map { ($0.key, $0.value) }, maxRecords: 1000, maxBytesPerPartition: 1 << 20, maxWaitMs: 250)
            } catch {
                // A topic deleted under us: forget its positions and look again.
                positions = positions.filter { broker.topic($0.key.topic) != nil }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            let events = fetched.events
            let relevant = events.filter { $0.event.map { interestingTypes.contains($0.type) } ?? false }
            if !relevant.isEmpty {
                let processed = await withCheckedContinuation { continuation in enqueueEvents(relevant, continuation) }
                // Stopping before the batch's effects were recorded: keep the old positions, read it again next time.
                guard processed else { break }
            }
            for (tp, next) in fetched.next { positions[tp] = next }
            let now = DispatchTime.now().uptimeNanoseconds
            if !relevant.isEmpty || now - lastCommit > 1_000_000_000 || Task.isCancelled {
                await commit(positions, committed: &committed)
                lastCommit = now
            }
        }
        await commit(positions, committed: &committed)
    }

    private func commit(_ positions: [TopicPartition: Int64], committed: inout [TopicPartition: Int64]) async {
        let changed = positions.filter { committed[$0.key] != $0.value }
        guard !changed.isEmpty else { return }
        do {
            _ = try await groups.commit(group: Self.readerGroup, member: nil, offsets: changed.map { ($0.key, $0.value, "") })
            committed.merge(changed) { _, new in new }
        } catch {
            logger.warning("the saga reader's offsets could not be committed; they are retried: \(error.message)", metadata: [LogField.group: .string(Self.readerGroup)])
        }
    }

    // MARK: - Gauges

    /// `sluice_sagas_in_flight` and `sluice_saga_oldest_in_flight_age_seconds`, computed at scrape time (every
    /// declared type appears, with 0 when none is in flight).
    func renderGauges() -> [UInt8] {
        let (counts, oldest) = inFlightByType()
        let now = currentTimeMillis()
        let types = Set(catalog.typeNames).union(counts.keys).sorted()
        var writer = ExpositionWriter()
        writer.header(MetricName.sagasInFlight, type: "gauge")
        for type in types { writer.sample(MetricName.sagasInFlight, [type], Double(counts[type] ?? 0)) }
        writer.header(MetricName.sagaOldestInFlight, type: "gauge")
        for type in types { writer.sample(MetricName.sagaOldestInFlight, [type], oldest[type].map { Double(max(now - $0, 0)) / 1000 } ?? 0) }
        return writer.bytes
    }
}

/// The saga families kept as registry handles.
struct SagaMetrics: Sendable {
    let metrics: SluiceMetrics

    /// From 10 ms to an hour: steps answer in milliseconds, sagas with people in them take minutes.
    static let buckets: [Duration] = [
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600), .seconds(1800), .seconds(3600),
    ]

    /// Every declared type starts with zeroes, so dashboards have series from the first scrape.
    func declare(_ catalog: SagaCatalog) {
        for type in catalog.typeNames {
            _ = metrics.counter(MetricName.sagaStarted, type)
            for status in SagaStatus.finals { _ = metrics.counter(MetricName.sagaCompletions, type, status.rawValue) }
        }
    }

    func started(_ type: String) { metrics.counter(MetricName.sagaStarted, type).increment() }

    func finished(_ saga: SagaInstance) {
        metrics.counter(MetricName.sagaCompletions, saga.type, saga.status.rawValue).increment()
        metrics.durationHistogram(MetricName.sagaDuration, saga.type, saga.status.rawValue, buckets: Self.buckets)
            .record(.milliseconds(max((saga.finishedAt ?? saga.startedAt) - saga.startedAt, 0)))
    }

    func step(_ type: String, _ step: String, _ outcome: String, milliseconds: Int64) {
        metrics.durationHistogram(MetricName.sagaStepDuration, type, step, outcome, buckets: Self.buckets).record(.milliseconds(max(milliseconds, 0)))
    }

    func compensation(_ type: String, _ step: String, _ outcome: String) {
        metrics.counter(MetricName.sagaCompensations, type, step, outcome).increment()
    }
}
