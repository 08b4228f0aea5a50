#if canImport(Glibc)
import Glibc
#endif

/// One segment of a partition: a `.log` file of record batches named by its 20-digit base offset, with a
/// sparse `.index` (offset → position) and a `.timeindex` (timestamp → offset) beside it.
///
/// `@unchecked Sendable`: the file descriptors are immutable and closed only in `deinit`, and every `var`
/// is read and written only while the owning ``PartitionLog``'s state lock is held.
final class Segment: @unchecked Sendable {
    let baseOffset: Int64
    let logPath: String
    let indexPath: String
    let timeIndexPath: String
    let logFD: Int32
    let indexFD: Int32
    let timeIndexFD: Int32

    /// Bytes of complete, valid batches in the log file.
    var size: Int64 = 0
    /// The offset after the last record (== `baseOffset` when empty).
    var nextOffset: Int64
    /// The largest record timestamp, or -1 when empty.
    var maxTimestamp: Int64 = -1
    /// The wall-clock time of the first append (or the first batch's timestamp after a restart), for `segment.ms`.
    var firstAppendTime: Int64?
    var offsetIndex: [OffsetIndexEntry] = []
    var timeIndex: [TimeIndexEntry] = []
    var bytesSinceIndexEntry = 0
    /// Whether the index files lag behind the in-memory index and should be rewritten on close.
    var indexesNeedRewrite = false
    /// Set when a damaged region was found in a sealed segment: reads stop there with this message.
    var damage: String?
    var isDeleted = false

    static func fileName(baseOffset: Int64) -> String {
        let digits = String(baseOffset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    init(directory: String, baseOffset: Int64) throws {
        self.baseOffset = baseOffset
        self.nextOffset = baseOffset
        let stem = directory + "/" + Self.fileName(baseOffset: baseOffset)
        logPath = stem + ".log"
        indexPath = stem + ".index"
        timeIndexPath = stem + ".timeindex"
        logFD = try FileIO.open(logPath, flags: O_RDWR | O_CREAT)
        do {
            indexFD = try FileIO.open(indexPath, flags: O_RDWR | O_CREAT)
        } catch {
            FileIO.close(logFD)
            throw error
        }
        do {
            timeIndexFD = try FileIO.open(timeIndexPath, flags: O_RDWR | O_CREAT)
        } catch {
            FileIO.close(logFD)
            FileIO.close(indexFD)
            throw error
        }
    }

    deinit {
        FileIO.close(logFD)
        FileIO.close(indexFD)
        FileIO.close(timeIndexFD)
    }

    var isEmpty: Bool { nextOffset == baseOffset }

    /// Records the index entries for a batch just written at `position`, if the interval says so.
    func noteAppend(header: RecordBatchHeader, position: Int64, indexInterval: Int) throws {
        if offsetIndex.isEmpty || bytesSinceIndexEntry >= indexInterval {
            try addIndexEntries(header: header, position: position)
            bytesSinceIndexEntry = 0
        }
        bytesSinceIndexEntry += header.totalSize
        maxTimestamp = max(maxTimestamp, header.maxTimestamp)
        nextOffset = header.nextOffset
    }

    private func addIndexEntries(header: RecordBatchHeader, position: Int64) throws {
        let entry = OffsetIndexEntry(relativeOffset: UInt32(header.baseOffset - baseOffset), position: UInt32(position))
        offsetIndex.append(entry)
        try appendToFile(indexFD, SegmentIndexCodec.encode(entry), count: offsetIndex.count, size: OffsetIndexEntry.size, path: indexPath)
        // The time index entry says: every record up to the previous batch has a timestamp ≤ maxTimestamp.
        if maxTimestamp > (timeIndex.last?.timestamp ?? -1), header.baseOffset > baseOffset {
            try addTimeEntry(TimeIndexEntry(timestamp: maxTimestamp, relativeOffset: UInt32(header.baseOffset - 1 - baseOffset)))
        }
    }

    /// Adds a final time index entry covering the whole segment (when it is sealed).
    func sealTimeIndex() throws {
        guard !isEmpty, maxTimestamp > (timeIndex.last?.timestamp ?? -1) else { return }
        try addTimeEntry(TimeIndexEntry(timestamp: maxTimestamp, relativeOffset: UInt32(nextOffset - 1 - baseOffset)))
    }

    private func addTimeEntry(_ entry: TimeIndexEntry) throws {
        timeIndex.append(entry)
        try appendToFile(timeIndexFD, SegmentIndexCodec.encode(entry), count: timeIndex.count, size: TimeIndexEntry.size, path: timeIndexPath)
    }

    private func appendToFile(_ fd: Int32, _ bytes: [UInt8], count: Int, size: Int, path: String) throws {
        try bytes.withUnsafeBytes { raw throws in
            try FileIO.pwriteAll(fd, raw, at: Int64((count - 1) * size), path: path)
        }
    }

    /// Rewrites both index files from the in-memory entries.
    func rewriteIndexFiles() throws {
        var offsets: [UInt8] = []
        offsets.reserveCapacity(offsetIndex.count * OffsetIndexEntry.size)
        for entry in offsetIndex { offsets += SegmentIndexCodec.encode(entry) }
        var times: [UInt8] = []
        for entry in timeIndex { times += SegmentIndexCodec.encode(entry) }
        try FileIO.truncate(indexFD, to: 0, path: indexPath)
        try offsets.withUnsafeBytes { raw throws in try FileIO.pwriteAll(indexFD, raw, at: 0, path: indexPath) }
        try FileIO.truncate(timeIndexFD, to: 0, path: timeIndexPath)
        try times.withUnsafeBytes { raw throws in try FileIO.pwriteAll(timeIndexFD, raw, at: 0, path: timeIndexPath) }
        indexesNeedRewrite = false
    }

    /// The file position to start scanning from to find `offset`: the last indexed batch at or before it.
    func startPosition(for offset: Int64) -> Int64 {
        let relative = offset - baseOffset
        var low = 0
        var high = offsetIndex.count - 1
        var best: Int64 = 0
        while low <= high {
            let mid = (low + high) / 2
            if Int64(offsetIndex[mid].relativeOffset) <= relative {
                best = Int64(offsetIndex[mid].position)
                low = mid + 1
            } else {
                high = mid - 1
            }
        }
        return best
    }

    /// The offset after which records may have a timestamp ≥ `timestamp` (records up to it are all earlier).
    func scanStartOffset(forTimestamp timestamp: Int64) -> Int64 {
        var low = 0
        var high = timeIndex.count - 1
        var best = baseOffset
        while low <= high {
            let mid = (low + high) / 2
            if timeIndex[mid].timestamp < timestamp {
                best = baseOffset + Int64(timeIndex[mid].relativeOffset) + 1
                low = mid + 1
            } else {
                high = mid - 1
            }
        }
        return best
    }

    func fsyncAll() throws {
        try FileIO.fsync(logFD, path: logPath)
        try FileIO.fsync(indexFD, path: indexPath)
        try FileIO.fsync(timeIndexFD, path: timeIndexPath)
    }

    /// Reads one batch at `position`, bounded by `limit` (the end of valid data), validating its CRC.
    func readBatch(at position: Int64, limit: Int64) throws -> (header: RecordBatchHeader, bytes: [UInt8]) {
        try Segment.readBatch(fd: logFD, path: logPath, at: position, limit: limit)
    }

    static func readBatch(fd: Int32, path: String, at position: Int64, limit: Int64) throws -> (header: RecordBatchHeader, bytes: [UInt8]) {
        let available = limit - position
        guard available >= Int64(RecordBatchHeader.size) else {
            throw LogError(.invalidBatch, "only \(available) bytes remain at position \(position) of \(path), fewer than a batch header")
        }
        let head = try FileIO.pread(fd, count: RecordBatchHeader.size, at: position, path: path)
        let header = try head.withUnsafeBytes { raw throws in try RecordBatchHeader.parse(raw) }
        guard Int64(header.totalSize) <= available else {
            throw LogError(.invalidBatch, "the batch at position \(position) of \(path) claims \(header.totalSize) bytes but only \(available) remain")
        }
        let bytes = try FileIO.pread(fd, count: header.totalSize, at: position, path: path)
        guard bytes.count == header.totalSize else {
            throw LogError(.invalidBatch, "the batch at position \(position) of \(path) is cut short")
        }
        try bytes.withUnsafeBytes { raw throws in _ = try RecordBatch.validate(raw) }
        return (header, bytes)
    }
}
