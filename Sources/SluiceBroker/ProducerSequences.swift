import Foundation
public import SluiceLog
import Synchronization

/// Producer ids for Kafka's idempotent producers (InitProducerId), handed out durably: before an id is given,
/// the file `DATA/producer-ids` holds a number above it (written atomically and fsynced, a block at a time), and
/// after a restart, ids start at that number. An id is therefore never handed out twice, crash or not.
public final class ProducerIdAllocator: Sendable {
    static let block: Int64 = 1000
    let path: String
    private let state: Mutex<(next: Int64, reserved: Int64)>

    public init(directory: String) throws(BrokerError) {
        path = directory + "/producer-ids"
        var start: Int64 = 0
        if FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let stored = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)), stored >= 0 else {
                throw BrokerError(.unavailable, "\(path) does not hold a producer id; it holds the next free one as a decimal number (restore it from a backup or remove it only when no idempotent producer is running)")
            }
            start = stored
        }
        state = Mutex((start, start))
    }

    /// The next id; throws when the reservation cannot be made durable.
    public func allocate() throws(BrokerError) -> Int64 {
        try state.withLock { state throws(BrokerError) -> Int64 in
            if state.next >= state.reserved {
                let reserved = state.next + Self.block
                do {
                    try writeFileAtomically(path, Array("\(reserved)\n".utf8))
                } catch {
                    throw BrokerError(error)
                }
                state.reserved = reserved
            }
            defer { state.next += 1 }
            return state.next
        }
    }

    /// Whether `id` may have been handed out (by this run or an earlier one).
    public func isKnown(_ id: Int64) -> Bool { id >= 0 && id < state.withLock { $0.next } }
}

/// What an idempotent producer's batch turned out to be.
public enum SequenceCheck: Sendable, Equatable {
    /// New and in order: append it.
    case append
    /// A retry of a batch already written at `baseOffset ... lastOffset`: acknowledge that.
    case duplicate(baseOffset: Int64, lastOffset: Int64)
    /// A sequence gap (`expected` was next).
    case outOfOrder(expected: Int32)
    /// An epoch older than the producer's current one.
    case staleEpoch(current: Int16)
    /// A producer id InitProducerId never handed out.
    case unknownProducer
}

/// One partition's idempotent-producer state: per producer id, its epoch and its last five batches (first and
/// last sequence, offsets), as Kafka keeps them. Built from the batch headers in the log the first time a
/// producer writes to the partition after a start, so that it holds across restarts and `kill -9`.
final class ProducerSequences: Sendable {
    struct Batch: Sendable {
        var firstSequence: Int32
        var lastSequence: Int32
        var baseOffset: Int64
        var lastOffset: Int64
    }

    struct Producer: Sendable {
        var epoch: Int16
        var batches: [Batch] = []
    }

    /// Most batches remembered per producer: Kafka's `max.in.flight.requests.per.connection` limit for idempotence.
    static let remembered = 5
    /// Records read back at most when rebuilding (the newest ones), so that a first produce after a restart
    /// does not read a whole large partition.
    static let rebuildRecords: Int64 = 100_000

    /// nil until rebuilt from the log.
    let state = Mutex<[Int64: Producer]?>(nil)

    static func next(after sequence: Int32) -> Int32 { sequence == .max ? 0 : sequence + 1 }

    static func lastSequence(_ header: RecordBatchHeader) -> Int32 {
        let last = Int64(header.producer.baseSequence) + Int64(header.lastOffsetDelta)
        return Int32(truncatingIfNeeded: last > Int64(Int32.max) ? last - Int64(Int32.max) - 1 : last)
    }

    static func check(_ header: RecordBatchHeader, against producers: [Int64: Producer]) -> SequenceCheck {
        let info = header.producer
        guard let producer = producers[info.producerId] else { return .append }
        if info.producerEpoch < producer.epoch { return .staleEpoch(current: producer.epoch) }
        if info.producerEpoch > producer.epoch {
            return info.baseSequence == 0 ? .append : .outOfOrder(expected: 0)
        }
        let last = lastSequence(header)
        if let seen = producer.batches.first(where: { $0.firstSequence == info.baseSequence && $0.lastSequence == last }) {
            return .duplicate(baseOffset: seen.baseOffset, lastOffset: seen.lastOffset)
        }
        guard let newest = producer.batches.last else { return .append }
        let expected = next(after: newest.lastSequence)
        return info.baseSequence == expected ? .append : .outOfOrder(expected: expected)
    }

    static func record(_ header: RecordBatchHeader, baseOffset: Int64, lastOffset: Int64, in producers: inout [Int64: Producer]) {
        let info = header.producer
        var producer = producers[info.producerId] ?? Producer(epoch: info.producerEpoch)
        if info.producerEpoch != producer.epoch { producer = Producer(epoch: info.producerEpoch) }
        producer.batches.append(Batch(firstSequence: info.baseSequence, lastSequence: lastSequence(header), baseOffset: baseOffset, lastOffset: lastOffset))
        if producer.batches.count > remembered { producer.batches.removeFirst(producer.batches.count - remembered) }
        producers[info.producerId] = producer
    }

    /// Reads the newest batches' headers back from the log: at most the last ``rebuildRecords`` records (by
    /// offset, not by timestamp: producers set their records' timestamps, and their clocks may be off).
    static func rebuild(from log: PartitionLog) throws -> [Int64: Producer] {
        var producers: [Int64: Producer] = [:]
        let end = log.logEndOffset
        var offset = max(log.logStartOffset, end - rebuildRecords)
        while offset < end {
            let batches = try log.read(from: offset, maxBytes: 4 << 20)
            guard let last = batches.last else { break }
            for batch in batches where batch.header.producer.producerId >= 0 && !batch.header.isControl && batch.header.lastOffset >= offset {
                record(batch.header, baseOffset: batch.header.baseOffset, lastOffset: batch.header.lastOffset, in: &producers)
            }
            offset = last.header.nextOffset
        }
        return producers
    }
}
