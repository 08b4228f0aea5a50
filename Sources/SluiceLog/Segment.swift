#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The descriptor of a segment's `.log` file, opened on first use and shared by the readers and the writer.
///
/// The active segment keeps it open; a sealed one closes it when the last user is done, so a partition holds
/// one descriptor however many segments it has (plus one for each sealed segment being read at that moment).
final class SegmentFile: Sendable {
    let path: String
    private struct State {
        var fd: Int32 = -1
        var users = 0
        var keepOpen: Bool
    }
    private let state: Mutex<State>

    /// - Parameter create: create the file when it is missing (a new segment); otherwise it must exist.
    init(path: String, keepOpen: Bool, create: Bool) throws {
        self.path = path
        var initial = State(keepOpen: keepOpen)
        if keepOpen || create {
            initial.fd = try FileIO.open(path, flags: O_RDWR | (create ? O_CREAT : 0))
            if !keepOpen {
                FileIO.close(initial.fd)
                initial.fd = -1
            }
        }
        state = Mutex(initial)
    }

    deinit {
        state.withLock { if $0.fd >= 0 { FileIO.close($0.fd) } }
    }

    /// Runs `body` with an open descriptor, opening the file if it is closed; a file removed by retention
    /// meanwhile throws `offsetOutOfRange`.
    func withDescriptor<T>(_ body: (Int32) throws -> T) throws -> T {
        let fd = try state.withLock { state throws -> Int32 in
            if state.fd < 0 {
                do {
                    state.fd = try FileIO.open(path, flags: O_RDWR)
                } catch where !FileIO.exists(path) {
                    throw LogError(.offsetOutOfRange, "\(path) was deleted by retention while it was being read")
                }
            }
            state.users += 1
            return state.fd
        }
        defer {
            state.withLock { state in
                state.users -= 1
                if state.users == 0, !state.keepOpen, state.fd >= 0 {
                    FileIO.close(state.fd)
                    state.fd = -1
                }
            }
        }
        return try body(fd)
    }

    /// Lets the descriptor close once nobody uses it (the segment is sealed and fsynced).
    func release() {
        state.withLock { state in
            state.keepOpen = false
            if state.users == 0, state.fd >= 0 {
                FileIO.close(state.fd)
                state.fd = -1
            }
        }
    }

    var isOpen: Bool { state.withLock { $0.fd >= 0 } }
}

/// One segment of a partition: a `.log` file of record batches named by its 20-digit base offset, with a
/// sparse `.index` (offset → position) and a `.timeindex` (timestamp → offset) beside it.
///
/// The indexes live in memory. Their files are written when the segment is sealed and when the log closes, not
/// on every append: recovery after a crash rebuilds the active segment's indexes from the log anyway, and an
/// append then does one `pwrite` and nothing that can fail after it.
///
/// `@unchecked Sendable`: `file` is itself thread-safe, and every `var` is read and written only while the
/// owning ``PartitionLog``'s state lock is held.
final class Segment: @unchecked Sendable {
    let baseOffset: Int64
    let logPath: String
    let indexPath: String
    let timeIndexPath: String
    let file: SegmentFile

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
    /// Whether the index files lag behind the in-memory index and should be rewritten (at sealing or close).
    var indexesNeedRewrite = false
    /// Set when a damaged region was found in a sealed segment: reads stop there with this message.
    var damage: String?
    var isDeleted = false

    static func fileName(baseOffset: Int64) -> String {
        let digits = String(baseOffset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Opens a segment's log file (creating it with `create`); `active` keeps its descriptor open.
    init(directory: String, baseOffset: Int64, active: Bool, create: Bool) throws {
        self.baseOffset = baseOffset
        self.nextOffset = baseOffset
        let stem = directory + "/" + Self.fileName(baseOffset: baseOffset)
        logPath = stem + ".log"
        indexPath = stem + ".index"
        timeIndexPath = stem + ".timeindex"
        file = try SegmentFile(path: logPath, keepOpen: active, create: create)
    }

    /// What a segment's in-memory state was at one moment, to roll an append back to.
    struct Mark {
        var size: Int64
        var nextOffset: Int64
        var maxTimestamp: Int64
        var firstAppendTime: Int64?
        var offsetEntries: Int
        var timeEntries: Int
        var bytesSinceIndexEntry: Int
    }

    var mark: Mark {
        Mark(size: size, nextOffset: nextOffset, maxTimestamp: maxTimestamp, firstAppendTime: firstAppendTime,
             offsetEntries: offsetIndex.count, timeEntries: timeIndex.count, bytesSinceIndexEntry: bytesSinceIndexEntry)
    }

    /// Cuts the log file back to `mark` and forgets everything appended after it.
    func rollBack(to mark: Mark) throws {
        try file.withDescriptor { fd in try FileIO.truncate(fd, to: mark.size, path: logPath) }
        size = mark.size
        nextOffset = mark.nextOffset
        maxTimestamp = mark.maxTimestamp
        firstAppendTime = mark.firstAppendTime
        offsetIndex.removeLast(offsetIndex.count - min(offsetIndex.count, mark.offsetEntries))
        timeIndex.removeLast(timeIndex.count - min(timeIndex.count, mark.timeEntries))
        bytesSinceIndexEntry = mark.bytesSinceIndexEntry
        indexesNeedRewrite = true
    }

    var isEmpty: Bool { nextOffset == baseOffset }

    /// Records the index entries for a batch just written at `position`, if the interval says so (in memory).
    func noteAppend(header: RecordBatchHeader, position: Int64, indexInterval: Int) {
        if offsetIndex.isEmpty || bytesSinceIndexEntry >= indexInterval {
            addIndexEntries(header: header, position: position)
            bytesSinceIndexEntry = 0
        }
        bytesSinceIndexEntry += header.totalSize
        maxTimestamp = max(maxTimestamp, header.maxTimestamp)
        nextOffset = header.nextOffset
    }

    private func addIndexEntries(header: RecordBatchHeader, position: Int64) {
        offsetIndex.append(OffsetIndexEntry(relativeOffset: UInt32(header.baseOffset - baseOffset), position: UInt32(position)))
        // The time index entry says: every record up to the previous batch has a timestamp ≤ maxTimestamp.
        if maxTimestamp > (timeIndex.last?.timestamp ?? -1), header.baseOffset > baseOffset {
            timeIndex.append(TimeIndexEntry(timestamp: maxTimestamp, relativeOffset: UInt32(header.baseOffset - 1 - baseOffset)))
        }
        indexesNeedRewrite = true
    }

    /// Adds a final time index entry covering the whole segment (when it is sealed).
    func sealTimeIndex() {
        guard !isEmpty, maxTimestamp > (timeIndex.last?.timestamp ?? -1) else { return }
        timeIndex.append(TimeIndexEntry(timestamp: maxTimestamp, relativeOffset: UInt32(nextOffset - 1 - baseOffset)))
        indexesNeedRewrite = true
    }

    /// The index files' contents as the in-memory entries stand (read under the partition lock).
    func encodedIndexes() -> (offsets: [UInt8], times: [UInt8]) {
        var offsets: [UInt8] = []
        offsets.reserveCapacity(offsetIndex.count * OffsetIndexEntry.size)
        for entry in offsetIndex { offsets += SegmentIndexCodec.encode(entry) }
        var times: [UInt8] = []
        times.reserveCapacity(timeIndex.count * TimeIndexEntry.size)
        for entry in timeIndex { times += SegmentIndexCodec.encode(entry) }
        return (offsets, times)
    }

    /// Writes both index files from the in-memory entries, fsyncing them with `durably`.
    func rewriteIndexFiles(durably: Bool = false) throws {
        let (offsets, times) = encodedIndexes()
        try Self.writeIndexFiles(offsets: offsets, times: times, indexPath: indexPath, timeIndexPath: timeIndexPath, durably: durably)
        indexesNeedRewrite = false
    }

    /// Replaces both index files (not atomically: recovery checks them and rebuilds what does not fit the log).
    static func writeIndexFiles(offsets: [UInt8], times: [UInt8], indexPath: String, timeIndexPath: String, durably: Bool) throws {
        for (path, bytes) in [(indexPath, offsets), (timeIndexPath, times)] {
            let fd = try FileIO.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
            defer { FileIO.close(fd) }
            try bytes.withUnsafeBytes { raw throws in try FileIO.pwriteAll(fd, raw, at: 0, path: path) }
            if durably { try FileIO.fsync(fd, path: path) }
        }
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

    /// fsyncs the log file.
    func fsyncLog() throws {
        try file.withDescriptor { fd in try FileIO.fsync(fd, path: logPath) }
    }

    /// The log file's size on disk.
    func fileSize() throws -> Int64 {
        try file.withDescriptor { fd in try FileIO.size(fd, path: logPath) }
    }

    /// Reads one batch at `position`, bounded by `limit` (the end of valid data), validating its CRC.
    func readBatch(at position: Int64, limit: Int64) throws -> (header: RecordBatchHeader, bytes: [UInt8]) {
        try file.withDescriptor { fd in try Segment.readBatch(fd: fd, path: logPath, at: position, limit: limit) }
    }

    static func readBatch(fd: Int32, path: String, at position: Int64, limit: Int64) throws -> (header: RecordBatchHeader, bytes: [UInt8]) {
        let header = try readHeader(fd: fd, path: path, at: position, limit: limit)
        let bytes = try FileIO.pread(fd, count: header.totalSize, at: position, path: path)
        guard bytes.count == header.totalSize else {
            throw LogError(.invalidBatch, "the batch at position \(position) of \(path) is cut short")
        }
        try bytes.withUnsafeBytes { raw throws in _ = try RecordBatch.validate(raw) }
        return (header, bytes)
    }

    /// The header of the batch at `position`, checked (magic, sizes) and known to end by `limit`; its records
    /// and CRC are not read.
    static func readHeader(fd: Int32, path: String, at position: Int64, limit: Int64) throws -> RecordBatchHeader {
        let available = limit - position
        guard available >= Int64(RecordBatchHeader.size) else {
            throw LogError(.invalidBatch, "only \(available) bytes remain at position \(position) of \(path), fewer than a batch header")
        }
        let head = try FileIO.pread(fd, count: RecordBatchHeader.size, at: position, path: path)
        let header = try head.withUnsafeBytes { raw throws in try RecordBatchHeader.parse(raw) }
        guard Int64(header.totalSize) <= available else {
            throw LogError(.invalidBatch, "the batch at position \(position) of \(path) claims \(header.totalSize) bytes but only \(available) remain")
        }
        return header
    }
}
