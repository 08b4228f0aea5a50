#if canImport(Glibc)
import Glibc
#endif

/// What a transaction marker says: Kafka's control record type (the key's second int16).
public enum ControlRecordType: Int16, Sendable, Hashable {
    case abort = 0
    case commit = 1
}

/// Kafka's `isolation.level`: what a reader may see of transactional data.
public enum IsolationLevel: String, Sendable, Hashable, CaseIterable {
    /// Only committed transactions' records, and nothing at or after the last stable offset.
    case readCommitted = "read_committed"
    /// Everything up to the log end offset, aborted records included (control batches are never events).
    case readUncommitted = "read_uncommitted"
}

/// An aborted transaction's span in one partition, as Kafka's Fetch lists it: every transactional batch of
/// `producerId` from `firstOffset` up to the ABORT marker at `lastOffset` is to be skipped.
public struct AbortedTransaction: Sendable, Hashable {
    public var producerId: Int64
    public var firstOffset: Int64
    public var lastOffset: Int64

    public init(producerId: Int64, firstOffset: Int64, lastOffset: Int64) {
        self.producerId = producerId
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
    }
}

/// Transaction markers as Kafka writes them: a control batch (attributes transactional | control) of one record
/// whose key is `version int16 (0), type int16` and whose value is `version int16 (0), coordinator_epoch int32`.
public enum ControlBatch {
    /// Encodes a marker for `producer`'s transaction, stamped `timestamp`.
    public static func encode(_ type: ControlRecordType, producerId: Int64, producerEpoch: Int16, coordinatorEpoch: Int32 = 0,
                              timestamp: Int64) throws -> [UInt8] {
        var key = ByteWriter(capacity: 4)
        key.write(Int16(0))
        key.write(type.rawValue)
        var value = ByteWriter(capacity: 6)
        value.write(Int16(0))
        value.write(coordinatorEpoch)
        return try RecordBatch.encode([Record(timestamp: timestamp, key: key.bytes, value: value.bytes)],
                                      producer: ProducerInfo(producerId: producerId, producerEpoch: producerEpoch, baseSequence: -1),
                                      transactional: true, control: true)
    }

    /// The marker type of a control batch, or nil when the batch is not a well-formed marker.
    public static func type(of batch: [UInt8]) -> ControlRecordType? {
        guard let decoded = try? RecordBatch.decode(batch), decoded.header.isControl, let key = decoded.records.first?.key,
              key.count >= 4, key[0] == 0, key[1] == 0 else { return nil }
        return ControlRecordType(rawValue: Int16(key[2]) << 8 | Int16(key[3]))
    }
}

/// A partition's transactions: the open ones (producer id → offset of its first batch in this partition, or a
/// lower bound of it after a crash) and the aborted ones still in the log.
struct TransactionTable {
    var open: [Int64: Int64] = [:]
    /// By producer id, in offset order.
    var aborted: [Int64: [AbortedTransaction]] = [:]
    var abortedCount = 0

    func lastStableOffset(logEnd: Int64) -> Int64 { open.values.min() ?? logEnd }

    func isAborted(producerId: Int64, offset: Int64) -> Bool {
        guard let spans = aborted[producerId] else { return false }
        return spans.contains { $0.firstOffset <= offset && offset <= $0.lastOffset }
    }

    mutating func add(_ span: AbortedTransaction) {
        aborted[span.producerId, default: []].append(span)
        abortedCount += 1
    }

    /// Forgets spans that retention has deleted entirely.
    mutating func prune(before logStart: Int64) {
        guard abortedCount > 0 else { return }
        var count = 0
        for (id, spans) in aborted {
            let kept = spans.filter { $0.lastOffset >= logStart }
            aborted[id] = kept.isEmpty ? nil : kept
            count += kept.count
        }
        abortedCount = count
    }
}

/// The partition's file of aborted transactions (`aborted.txnindex`): 28-byte entries `producer_id int64,
/// first_offset int64, last_offset int64, crc32c uint32`. An entry is fsynced before its ABORT marker is
/// written, so a marker on disk always has its entry; an entry whose marker never made it (its last offset is
/// at or past the log end after recovery) and a torn last entry are dropped when the partition opens.
enum AbortedIndexFile {
    static let name = "aborted.txnindex"
    static let entrySize = 28

    static func encode(_ span: AbortedTransaction) -> [UInt8] {
        var out = ByteWriter(capacity: entrySize)
        out.write(span.producerId)
        out.write(span.firstOffset)
        out.write(span.lastOffset)
        let crc = out.bytes.withUnsafeBytes { CRC32C.checksum($0) }
        out.write(crc)
        return out.bytes
    }

    static func decode(_ bytes: [UInt8]) -> [AbortedTransaction] {
        var out: [AbortedTransaction] = []
        var position = 0
        while position + entrySize <= bytes.count {
            let entry = Array(bytes[position..<position + entrySize])
            let crc = entry[..<24].withUnsafeBytes { CRC32C.checksum($0) }
            let stored = entry[24..<28].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard crc == stored else { break }
            func int64(_ at: Int) -> Int64 { entry[at..<at + 8].reduce(Int64(0)) { $0 << 8 | Int64($1) } }
            out.append(AbortedTransaction(producerId: int64(0), firstOffset: int64(8), lastOffset: int64(16)))
            position += entrySize
        }
        return out
    }

    /// Appends `span` and fsyncs it.
    static func append(_ span: AbortedTransaction, directory: String) throws {
        let path = directory + "/" + name
        let fd = try FileIO.open(path, flags: O_WRONLY | O_CREAT | O_APPEND)
        defer { FileIO.close(fd) }
        let size = try FileIO.size(fd, path: path)
        // A torn entry at the end (a crash mid-write) is cut off first, so entries stay aligned.
        let aligned = size - size % Int64(entrySize)
        if aligned != size { try FileIO.truncate(fd, to: aligned, path: path) }
        try encode(span).withUnsafeBytes { try FileIO.pwriteAll(fd, $0, at: aligned, path: path) }
        try FileIO.fsync(fd, path: path)
        if size == 0 { try FileIO.fsyncDirectory(directory) }
    }
}

extension PartitionLog {
    // MARK: - Transactions

    /// The first offset a read_committed reader may not see yet: the first batch of the oldest open
    /// transaction, or the log end offset when none is open.
    public var lastStableOffset: Int64 {
        state.withLock { $0.transactions.lastStableOffset(logEnd: $0.nextOffset) }
    }

    /// The end of what a reader at `isolation` may see.
    public func visibleEnd(_ isolation: IsolationLevel) -> Int64 {
        isolation == .readCommitted ? lastStableOffset : logEndOffset
    }

    /// Whether the transactional batch of `producerId` at `offset` belongs to an aborted transaction.
    public func isAborted(producerId: Int64, offset: Int64) -> Bool {
        state.withLock { $0.transactions.isAborted(producerId: producerId, offset: offset) }
    }

    /// Whether a batch is to be skipped by a reader at `isolation`: control batches always, aborted ones under
    /// read_committed.
    public func isHidden(_ header: RecordBatchHeader, isolation: IsolationLevel) -> Bool {
        if header.isControl { return true }
        guard isolation == .readCommitted, header.isTransactional else { return false }
        return isAborted(producerId: header.producer.producerId, offset: header.baseOffset)
    }

    /// The aborted transactions that overlap `from ..< upTo`, oldest first (Kafka's Fetch `aborted_transactions`).
    public func abortedTransactions(from: Int64, upTo: Int64) -> [AbortedTransaction] {
        state.withLock { state in
            state.transactions.aborted.values.joined()
                .filter { $0.lastOffset >= from && $0.firstOffset < upTo }
                .sorted { $0.firstOffset < $1.firstOffset }
        }
    }

    /// Producer ids with an open transaction here, each with the offset where it starts.
    public var openTransactions: [Int64: Int64] { state.withLock { $0.transactions.open } }

    /// After a crash: marks `producerId`'s transaction open from `offset` (a lower bound of its first batch),
    /// so that the marker recovery writes next covers it.
    public func restoreOpenTransaction(producerId: Int64, from offset: Int64) {
        state.withLock { state in
            let start = min(max(offset, state.logStartOffset), state.nextOffset)
            state.transactions.open[producerId] = min(state.transactions.open[producerId] ?? start, start)
        }
    }

    /// Writes the COMMIT or ABORT marker that ends `producerId`'s transaction here, to the page cache (wait with
    /// ``waitUntilDurable(_:)``). An ABORT's span is fsynced to the aborted index before the marker is written.
    @discardableResult
    public func appendMarker(_ type: ControlRecordType, producerId: Int64, producerEpoch: Int16, coordinatorEpoch: Int32 = 0,
                             now: Int64 = currentTimeMillis()) throws -> AppendInfo {
        let batch = try ControlBatch.encode(type, producerId: producerId, producerEpoch: producerEpoch, coordinatorEpoch: coordinatorEpoch, timestamp: now)
        return try appendWithoutFlush(try CheckedBatch(batch), now: now, marker: type)
    }

    /// Called under the state lock before a batch is written at `baseOffset`: an ABORT marker's span goes to
    /// the aborted index first.
    func prepareAppend(_ header: RecordBatchHeader, baseOffset: Int64, marker: ControlRecordType?, state: inout State) throws {
        guard marker == .abort, let first = state.transactions.open[header.producer.producerId] else { return }
        try AbortedIndexFile.append(AbortedTransaction(producerId: header.producer.producerId, firstOffset: first, lastOffset: baseOffset),
                                    directory: directory)
    }

    /// Called under the state lock once a batch is written at `baseOffset`.
    func noteTransactional(_ header: RecordBatchHeader, baseOffset: Int64, marker: ControlRecordType?, state: inout State) {
        let id = header.producer.producerId
        if header.isControl {
            if let first = state.transactions.open.removeValue(forKey: id), marker == .abort {
                state.transactions.add(AbortedTransaction(producerId: id, firstOffset: first, lastOffset: baseOffset))
            }
        } else if header.isTransactional, state.transactions.open[id] == nil {
            state.transactions.open[id] = baseOffset
        }
    }

    /// Reads the aborted index when the partition opens; entries past the recovered log end are dropped and
    /// spans wholly before the log start forgotten (the file is rewritten when either happened).
    func loadAbortedIndex() throws {
        let path = directory + "/" + AbortedIndexFile.name
        guard FileIO.exists(path) else { return }
        let bytes = try FileIO.readFile(path)
        let entries = AbortedIndexFile.decode(bytes)
        let (start, end) = state.withLock { ($0.logStartOffset, $0.nextOffset) }
        let kept = entries.filter { $0.lastOffset < end && $0.lastOffset >= start }
        state.withLock { state in
            for span in kept { state.transactions.add(span) }
        }
        if kept.count != entries.count || bytes.count != entries.count * AbortedIndexFile.entrySize {
            try FileIO.writeAtomically(path, kept.flatMap(AbortedIndexFile.encode))
        }
    }
}
