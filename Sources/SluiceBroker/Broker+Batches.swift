import Dispatch
public import SluiceLog

/// Stored batches of one partition, as a batch-level reader (the Kafka listener's Fetch) gets them.
public struct PartitionBatches: Sendable {
    /// The stored batches, as ranges of the segment files.
    public var ranges: [StoredRange]
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    public var lastStableOffset: Int64 = 0
    /// Aborted transactions overlapping what was read (under read_committed), for the client to skip.
    public var abortedTransactions: [AbortedTransaction] = []
    /// The offset asked for lies outside `logStartOffset...logEndOffset` (nothing was read).
    public var outOfRange = false
}

/// The outcome of ``Broker/appendBatch(_:to:acks:)``.
public enum BatchAppend: Sendable, Equatable {
    case written(AppendInfo)
    /// An idempotent producer's retry of a batch already in the log at these offsets.
    case duplicate(baseOffset: Int64, lastOffset: Int64)
    /// Refused for its producer id, epoch or sequence; nothing was written.
    case refused(SequenceCheck)

    public var baseOffset: Int64? {
        switch self {
        case .written(let info): info.baseOffset
        case .duplicate(let base, _): base
        case .refused: nil
        }
    }
}

/// What a batch-level read of one partition asks for.
public struct BatchRead: Sendable {
    public var partition: TopicPartition
    public var offset: Int64
    public var maxBytes: Int

    public init(partition: TopicPartition, offset: Int64, maxBytes: Int) {
        self.partition = partition
        self.offset = offset
        self.maxBytes = maxBytes
    }
}

/// Whole record batches in and out, as clients of the Kafka protocol send and fetch them: no CloudEvent
/// mapping, no re-encoding, no deduplication by event id.
extension Broker {
    /// Appends one record batch as it was sent, assigning its base offset, and returns once `acks` is met:
    /// `.none` and `.leader` after the append, `.all` after the fsync (group commit). The batch was checked where
    /// it arrived (``CheckedBatch``), so its CRC is not computed again here.
    ///
    /// A batch of an idempotent producer (producer id ≥ 0) is checked against that producer's last five batches
    /// on the partition first: a retry is acknowledged with the offsets it was written at (once those meet
    /// `acks`), a gap or an old epoch is refused, and nothing is written for either.
    public func appendBatch(_ batch: CheckedBatch, to tp: TopicPartition, acks: Acks) async throws(BrokerError) -> BatchAppend {
        let header = batch.header
        try refuseInternal(tp.topic, "produce to")
        let state = try state(for: tp.topic, create: false)
        guard tp.partition >= 0, Int(tp.partition) < state.producers.count else {
            throw BrokerError(.notFound, "topic \(tp.topic) has partitions 0...\(state.producers.count - 1); \(tp.partition) does not exist")
        }
        let log = state.topic.partitions[Int(tp.partition)]
        let outcome: BatchAppend
        if header.producer.producerId >= 0 {
            guard producerIds.isKnown(header.producer.producerId) else { return .refused(.unknownProducer) }
            let sequences = state.sequences[Int(tp.partition)]
            outcome = try sequences.state.withLock { known throws(BrokerError) -> BatchAppend in
                var producers: [Int64: ProducerSequences.Producer]
                if let known {
                    producers = known
                } else {
                    do {
                        producers = try ProducerSequences.rebuild(from: log)
                    } catch {
                        throw BrokerError(error)
                    }
                }
                defer { known = producers }
                switch ProducerSequences.check(header, against: producers) {
                case .append:
                    let info = try append(batch, to: log)
                    ProducerSequences.record(header, baseOffset: info.baseOffset, lastOffset: info.lastOffset, in: &producers)
                    return .written(info)
                case .duplicate(let baseOffset, let lastOffset):
                    return .duplicate(baseOffset: baseOffset, lastOffset: lastOffset)
                case let refusal:
                    return .refused(refusal)
                }
            }
        } else {
            outcome = .written(try append(batch, to: log))
        }
        let lastOffset: Int64
        switch outcome {
        case .written(let info):
            let records = Int(info.lastOffset - info.baseOffset + 1)
            throughput.record(topic: tp.topic, bytes: batch.bytes.count, nowMillis: info.appendTime)
            metrics.eventPublished(topic: tp.topic, eventType: Self.kafkaRecordType, status: "written", count: records)
            metrics.batchWritten(topic: tp.topic, records: records, uncompressedBytes: batch.bytes.count, storedBytes: batch.bytes.count)
            metrics.partitionChanged(topic: tp.topic, partition: tp.partition, startOffset: log.logStartOffset, endOffset: info.lastOffset + 1, lastStableOffset: log.lastStableOffset,
                                     sizeBytes: log.sizeInBytes, lastAppendMillis: info.appendTime)
            state.notifiers[Int(tp.partition)].notify()
            lastOffset = info.lastOffset
        case .duplicate(_, let last):
            metrics.eventPublished(topic: tp.topic, eventType: Self.kafkaRecordType, status: "duplicate", count: Int(header.recordCount))
            lastOffset = last
        case .refused:
            return outcome
        }
        if acks == .all {
            do {
                try await log.waitUntilDurable(lastOffset + 1)
            } catch {
                throw BrokerError(error)
            }
        }
        return outcome
    }

    private func append(_ batch: CheckedBatch, to log: PartitionLog) throws(BrokerError) -> AppendInfo {
        do {
            return try log.appendWithoutFlush(batch)
        } catch {
            throw BrokerError(error)
        }
    }

    /// The `event_type` label of records produced over the Kafka protocol (counted without decoding them), as
    /// deliveries label records that are not CloudEvents.
    public static let kafkaRecordType = "sluice.record"

    /// Reads stored batches of several partitions, each from its own offset (at least one batch where there is
    /// one, then up to its `maxBytes` and the total `maxBytes`), waiting up to `maxWaitMs` until `minBytes` are
    /// there. Each partition has its own outcome, so an unknown one does not fail the rest.
    /// Under read_committed nothing at or after the last stable offset is read (as Kafka's Fetch does).
    public func readBatches(_ reads: [BatchRead], minBytes: Int, maxBytes: Int, maxWaitMs: Int64,
                            isolation: IsolationLevel = .readUncommitted) async -> [Result<PartitionBatches, BrokerError>] {
        var sources: [(log: PartitionLog, notifier: AppendNotifier)?] = []
        var failures: [Int: BrokerError] = [:]
        for (index, read) in reads.enumerated() {
            do {
                let state = try state(for: read.partition.topic, create: false)
                guard read.partition.partition >= 0, Int(read.partition.partition) < state.producers.count else {
                    throw BrokerError(.notFound, "topic \(read.partition.topic) has no partition \(read.partition.partition)")
                }
                sources.append((state.topic.partitions[Int(read.partition.partition)], state.notifiers[Int(read.partition.partition)]))
            } catch {
                sources.append(nil)
                failures[index] = BrokerError(error)
            }
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(maxWaitMs, 0)) * 1_000_000
        while true {
            let generations = sources.compactMap { $0.map { ($0.notifier, $0.notifier.generation) } }
            var results: [Result<PartitionBatches, BrokerError>] = []
            var total = 0
            for (index, read) in reads.enumerated() {
                guard let source = sources[index] else {
                    results.append(.failure(failures[index]!))
                    continue
                }
                let start = source.log.logStartOffset, end = source.log.logEndOffset
                if read.offset < start || read.offset > end {
                    results.append(.success(PartitionBatches(ranges: [], logStartOffset: start, logEndOffset: end, outOfRange: true)))
                    continue
                }
                do {
                    // The total limit counts too, but the first partition with data always gets its first batch.
                    let room = total == 0 ? read.maxBytes : min(read.maxBytes, maxBytes - total)
                    let stable = source.log.lastStableOffset
                    let before = isolation == .readCommitted ? stable : .max
                    let ranges = room > 0 || total == 0 ? try source.log.readRanges(from: read.offset, maxBytes: max(room, 1), before: before) : []
                    total += ranges.reduce(0) { $0 + $1.length }
                    let aborted = isolation == .readCommitted && !ranges.isEmpty ? source.log.abortedTransactions(from: read.offset, upTo: stable) : []
                    results.append(.success(PartitionBatches(ranges: ranges, logStartOffset: source.log.logStartOffset,
                                                             logEndOffset: source.log.logEndOffset, lastStableOffset: stable, abortedTransactions: aborted)))
                } catch {
                    results.append(.failure(BrokerError(error)))
                }
            }
            if total >= max(minBytes, 1) || generations.isEmpty || waitIsOver(deadline) { return results }
            await Self.waitForAppend(on: generations, until: deadline)
        }
    }

    /// The partition's log, creating the topic when it is missing and `autoCreate` (and `auto.create.topics.enable`) allow.
    public func partitionLog(_ tp: TopicPartition, autoCreate: Bool) throws(BrokerError) -> PartitionLog {
        if autoCreate { _ = try ensureTopic(tp.topic) }
        return try partitionLog(tp)
    }
}
