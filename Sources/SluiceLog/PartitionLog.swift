#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Where an append landed.
public struct AppendInfo: Sendable, Hashable {
    public var baseOffset: Int64
    public var lastOffset: Int64
    /// Wall-clock time of the append, in milliseconds since the epoch.
    public var appendTime: Int64
    /// Size of the batch on disk.
    public var bytes: Int
}

/// A batch read back from the log, with its bytes exactly as stored.
public struct FetchedBatch: Sendable, Hashable {
    public var header: RecordBatchHeader
    public var bytes: [UInt8]

    /// The batch's records with absolute offsets.
    public func records() throws -> [Record] {
        try RecordBatch.decode(bytes).records
    }
}

/// Whole stored batches that lie one after another in one segment file, to be sent from the file as they are.
public struct StoredRange: Sendable {
    /// A descriptor of the segment file, open as long as the range is kept.
    public let file: OpenFile
    public let position: Int64
    public let length: Int
}

/// A file descriptor that is closed when the last reference to it goes.
public final class OpenFile: Sendable {
    public let descriptor: Int32

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { FileIO.close(descriptor) }
}

/// A point-in-time description of one segment.
public struct SegmentInfo: Sendable, Hashable {
    public var baseOffset: Int64
    public var nextOffset: Int64
    public var sizeBytes: Int64
    public var maxTimestamp: Int64
    public var path: String
    public var damage: String?
}

/// Something wrong that recovery found and could not, or was not allowed to, repair by itself.
public struct LogDamage: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public var file: String
    public var position: Int64
    public var reason: String
    /// True when recovery already fixed it (a torn tail of the active segment, cut off).
    public var repaired: Bool

    public var description: String {
        let advice = repaired ? "repaired by truncation" : "run `sluice fsck --data-dir DIR --repair` to cut off the damaged part"
        return "\(topic)/\(partition): \(file) at byte \(position): \(reason); \(advice)"
    }
}

/// One partition of a topic: an append-only sequence of segments with offsets, indexes, a flush policy and retention.
///
/// Appends are serialised by a short lock around the `write(2)`; compression and CRC happen before it, in the
/// caller. With ``FlushPolicy/sync`` an append returns only after an fsync that covers it, and concurrent
/// appends share one fsync (group commit).
public final class PartitionLog: Sendable {
    public let topic: String
    public let partition: Int32
    public let directory: String
    public let config: TopicConfig

    struct State {
        var segments: [Segment]
        var logStartOffset: Int64
        var nextOffset: Int64
        var lastAppendTime: Int64?
        /// Segments written since the last fsync.
        var dirty: [Segment] = []
        /// Whether segment files were created since the directory was last fsynced.
        var directoryDirty = false
        /// Where the log ended when the last successful fsync round began: what a failed fsync rolls back to.
        var durableEnd: (segment: Segment, mark: Segment.Mark)
        var closed = false
        /// Set when a write could not be undone or an fsync failed: the page cache can no longer be trusted, so
        /// writes stop until a restart lets recovery look at the files again.
        var failure: LogError?
        /// Open and aborted transactions (see Transactions.swift).
        var transactions = TransactionTable()
    }

    struct FlushState {
        var durableOffset: Int64
        var waiters: [(offset: Int64, continuation: CheckedContinuation<Void, any Error>)] = []
        var running = false
        var fsyncCount = 0
    }

    let state: Mutex<State>
    let flushState: Mutex<FlushState>
    /// What recovery reported for this partition.
    public let damages: [LogDamage]

    init(topic: String, partition: Int32, directory: String, config: TopicConfig, segments: [Segment], damages: [LogDamage]) {
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.config = config
        self.damages = damages
        let next = segments.last!.nextOffset
        state = Mutex(State(segments: segments, logStartOffset: segments[0].baseOffset, nextOffset: next,
                            lastAppendTime: segments.last!.isEmpty ? nil : segments.last!.maxTimestamp,
                            durableEnd: (segments.last!, segments.last!.mark)))
        flushState = Mutex(FlushState(durableOffset: next))
    }

    // MARK: - Offsets and sizes

    /// The first offset still in the log.
    public var logStartOffset: Int64 { state.withLock { $0.logStartOffset } }
    /// The offset the next record will get (the log end offset).
    public var logEndOffset: Int64 { state.withLock { $0.nextOffset } }
    /// The offset up to which everything is known to be fsynced.
    public var durableOffset: Int64 { flushState.withLock { $0.durableOffset } }
    /// Bytes in all segments.
    public var sizeInBytes: Int64 { state.withLock { $0.segments.reduce(0) { $0 + $1.size } } }
    /// Time of the last append in milliseconds since the epoch (after a restart: the newest record's timestamp).
    public var lastAppendTime: Int64? { state.withLock { $0.lastAppendTime } }
    /// How many fsyncs the flusher has issued (group commit makes this far lower than the number of appends).
    public var fsyncCount: Int { flushState.withLock { $0.fsyncCount } }

    public var segments: [SegmentInfo] {
        state.withLock { state in
            state.segments.map {
                SegmentInfo(baseOffset: $0.baseOffset, nextOffset: $0.nextOffset, sizeBytes: $0.size,
                            maxTimestamp: $0.maxTimestamp, path: $0.logPath, damage: $0.damage)
            }
        }
    }

    // MARK: - Append

    /// Appends one encoded record batch (see ``RecordBatch/encode(_:baseOffset:compression:producer:partitionLeaderEpoch:)``),
    /// assigning it the next offsets. Returns once the topic's flush policy is satisfied.
    ///
    /// - Throws: ``LogError`` with `batchTooLarge` over `max.message.bytes`, `invalidBatch` or `corruptBatch`
    ///   for malformed input, `closed` after ``close()``, or `io` when the disk fails.
    @discardableResult
    public func append(_ batch: [UInt8], now: Int64 = currentTimeMillis()) async throws -> AppendInfo {
        try await append(CheckedBatch(batch), now: now)
    }

    /// Appends a batch checked where it arrived or was made; see ``append(_:now:)-([UInt8],_)``.
    @discardableResult
    public func append(_ batch: CheckedBatch, now: Int64 = currentTimeMillis()) async throws -> AppendInfo {
        let info = try appendWithoutFlush(batch, now: now)
        if case .sync = config.flushPolicy {
            try await waitUntilDurable(info.lastOffset + 1)
        }
        return info
    }

    /// Appends and returns as soon as the batch is written to the page cache, whatever the flush policy.
    /// Pair it with ``waitUntilDurable(_:)`` to acknowledge after fsync selectively.
    public func appendWithoutFlush(_ batch: [UInt8], now: Int64 = currentTimeMillis()) throws -> AppendInfo {
        try appendWithoutFlush(CheckedBatch(batch), now: now)
    }

    /// Appends a checked batch to the page cache: its CRC is not computed again.
    public func appendWithoutFlush(_ checked: CheckedBatch, now: Int64 = currentTimeMillis()) throws -> AppendInfo {
        try appendWithoutFlush(checked, now: now, marker: nil)
    }

    func appendWithoutFlush(_ checked: CheckedBatch, now: Int64, marker: ControlRecordType?) throws -> AppendInfo {
        let batch = checked.bytes, header = checked.header
        guard batch.count <= config.maxMessageBytes else {
            throw LogError(.batchTooLarge, "the record batch is \(batch.count) bytes; topic \(topic) accepts at most \(config.maxMessageBytes) (max.message.bytes)")
        }

        let (info, rolled) = try state.withLock { state throws -> (AppendInfo, Bool) in
            if state.closed { throw LogError(.closed, "partition \(topic)/\(partition) is closed") }
            if let failure = state.failure { throw failure }
            var segment = state.segments[state.segments.count - 1]
            var rolled = false
            if shouldRoll(segment, adding: batch.count, now: now) {
                segment = try roll(&state, now: now)
                rolled = true
            }
            let baseOffset = state.nextOffset
            let before = segment.mark
            if header.isTransactional { try prepareAppend(header, baseOffset: baseOffset, marker: marker, state: &state) }
            do {
                // The batch as stored is the batch as sent with its base offset set: written as that offset and
                // then the rest, so the caller's bytes are neither changed nor copied.
                try segment.file.withDescriptor { fd in
                    try withUnsafeBytes(of: baseOffset.bigEndian) { offsetBytes in
                        try batch.withUnsafeBytes { raw throws in
                            try FileIO.pwriteAll(fd, [offsetBytes, UnsafeRawBufferPointer(rebasing: raw[8...])], at: before.size, path: segment.logPath)
                        }
                    }
                }
            } catch {
                // All or nothing: cut off whatever part of the batch reached the file, or stop writing if that
                // fails too, so that no later append can land after (or reuse the offsets of) a refused batch.
                do {
                    try segment.rollBack(to: before)
                } catch let undo {
                    state.failure = LogError(.io, "\(error.logMessage), and cutting the partial batch off failed too (\(undo.logMessage)); writes to \(topic)/\(partition) are stopped until restart, when recovery removes it",
                                             systemError: (error as? LogError)?.systemError)
                }
                throw error
            }
            var stored = header
            stored.baseOffset = baseOffset
            segment.size += Int64(batch.count)
            if segment.firstAppendTime == nil { segment.firstAppendTime = now }
            segment.noteAppend(header: stored, position: before.size, indexInterval: config.indexIntervalBytes)
            state.nextOffset = stored.nextOffset
            state.lastAppendTime = now
            if header.isTransactional { noteTransactional(header, baseOffset: baseOffset, marker: marker, state: &state) }
            if state.dirty.last !== segment { state.dirty.append(segment) }
            return (AppendInfo(baseOffset: baseOffset, lastOffset: stored.lastOffset, appendTime: now, bytes: batch.count), rolled)
        }
        // Lock order is flush state → partition state, so the flusher is started outside the state lock.
        if rolled { scheduleFlush() }
        return info
    }

    private func shouldRoll(_ segment: Segment, adding bytes: Int, now: Int64) -> Bool {
        guard !segment.isEmpty else { return false }
        if segment.size + Int64(bytes) > config.segmentBytes { return true }
        if let first = segment.firstAppendTime, now - first >= config.segmentMs { return true }
        // Index entries store 32-bit relative offsets.
        return segment.nextOffset - segment.baseOffset > Int64(UInt32.max) - 1_000_000
    }

    /// Seals the active segment and starts a new one at the log end offset. Called with the state lock held.
    ///
    /// Nothing changes unless the new segment's file could be created; a file created but not usable is removed.
    private func roll(_ state: inout State, now: Int64) throws -> Segment {
        let old = state.segments[state.segments.count - 1]
        let segment: Segment
        do {
            segment = try Segment(directory: directory, baseOffset: state.nextOffset, active: true, create: true)
        } catch {
            try? FileIO.remove(directory + "/" + Segment.fileName(baseOffset: state.nextOffset) + ".log")
            throw error
        }
        old.sealTimeIndex()
        state.segments.append(segment)
        state.directoryDirty = true
        // The flusher fsyncs the sealed segment, writes its index files and lets its descriptor close.
        if !state.dirty.contains(where: { $0 === old }) { state.dirty.append(old) }
        return segment
    }

    // MARK: - Group commit

    /// Waits until every offset below `offset` is fsynced. Concurrent callers share fsyncs.
    public func waitUntilDurable(_ offset: Int64) async throws {
        if flushState.withLock({ $0.durableOffset >= offset }) { return }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let start: Bool = flushState.withLock { flush in
                    if flush.durableOffset >= offset {
                        continuation.resume()
                        return false
                    }
                    flush.waiters.append((offset, continuation))
                    if flush.running { return false }
                    flush.running = true
                    return true
                }
                if start { startFlusher() }
            }
        } catch let error as LogError {
            throw error
        } catch {
            throw LogError(.io, "\(error)")
        }
    }

    /// fsyncs whatever is dirty, in the background, without waiting.
    func scheduleFlush() {
        let start: Bool = flushState.withLock { flush in
            if flush.running { return false }
            flush.running = true
            return true
        }
        if start { startFlusher() }
    }

    /// fsyncs everything written so far and waits for it.
    public func flush() async throws {
        try await waitUntilDurable(logEndOffset)
    }

    private func startFlusher() {
        DispatchQueue.global().async { self.runFlusher() }
    }

    /// The flusher loop: take the dirty segments, fsync them outside every lock, then release the waiters the
    /// fsync covered. Appends that arrive meanwhile are covered by the next round, which is what batches fsyncs.
    private func runFlusher() {
        while true {
            // Segment fields change under the state lock (appends, rolls, retention): read them there.
            let round = state.withLock { state -> FlushRound in
                let active = state.segments[state.segments.count - 1]
                let dirty = state.dirty.filter { !$0.isDeleted }.map { segment in
                    let sealed = segment !== active
                    return DirtySegment(segment: segment, sealedIndexes: sealed ? segment.encodedIndexes() : nil)
                }
                state.dirty.removeAll(keepingCapacity: true)
                defer { state.directoryDirty = false }
                return FlushRound(segments: dirty, directory: state.directoryDirty, target: state.nextOffset,
                                  end: (active, active.mark), failure: state.failure)
            }
            var failure = round.failure
            if failure == nil {
                do {
                    for dirty in round.segments {
                        try dirty.segment.fsyncLog()
                        if let indexes = dirty.sealedIndexes {
                            // The index files of a sealed segment only save recovery work: if writing them fails,
                            // recovery rebuilds them, so that failure stops nothing.
                            let written = (try? Segment.writeIndexFiles(offsets: indexes.offsets, times: indexes.times, indexPath: dirty.segment.indexPath,
                                                                        timeIndexPath: dirty.segment.timeIndexPath, durably: true)) != nil
                            if written { state.withLock { _ in dirty.segment.indexesNeedRewrite = false } }
                            dirty.segment.file.release()
                        }
                    }
                    // A new segment's name must be durable too, or its fsynced data could vanish with it.
                    if round.directory { try FileIO.fsyncDirectory(directory) }
                } catch {
                    failure = fsyncFailed(error)
                }
            }
            if failure == nil, !round.segments.isEmpty || round.directory {
                state.withLock { $0.durableEnd = round.end }
            }
            let (ready, done) = flushState.withLock { flush -> ([CheckedContinuation<Void, any Error>], Bool) in
                if !round.segments.isEmpty { flush.fsyncCount += 1 }
                var ready: [CheckedContinuation<Void, any Error>] = []
                if failure == nil { flush.durableOffset = max(flush.durableOffset, round.target) }
                var remaining: [(offset: Int64, continuation: CheckedContinuation<Void, any Error>)] = []
                for waiter in flush.waiters {
                    if failure != nil || waiter.offset <= flush.durableOffset {
                        ready.append(waiter.continuation)
                    } else {
                        remaining.append(waiter)
                    }
                }
                flush.waiters = remaining
                let pendingDirty = state.withLock { !$0.dirty.isEmpty && $0.failure == nil }
                if remaining.isEmpty && !pendingDirty {
                    flush.running = false
                    return (ready, true)
                }
                return (ready, false)
            }
            for continuation in ready {
                if let failure { continuation.resume(throwing: failure) } else { continuation.resume() }
            }
            if done { return }
        }
    }

    /// Stops writes after a failed fsync and, with `flush.policy=sync`, cuts the log back to its last durable end.
    ///
    /// A failed fsync is fatal for what it covered: the kernel may have dropped those pages, and a later fsync
    /// that succeeds says nothing about them (PostgreSQL's lesson). Under `sync` nothing past the durable end was
    /// acknowledged with `acks=all`, so it is removed and no refused event stays readable; under `interval` and
    /// `os` it was acknowledged under a policy that already allows losing it, so it stays for recovery to judge.
    private func fsyncFailed(_ error: any Error) -> LogError {
        state.withLock { state -> LogError in
            // Under every policy: what was written since the last good fsync can no longer be trusted (the kernel
            // may have dropped those pages), and some of it may belong to publishes now refused (acks=all waits
            // for this fsync whatever the policy). Cutting back treats the failure like a power loss, which
            // interval and os already allow for; under sync it loses nothing acknowledged.
            var note = ""
            let (kept, mark) = state.durableEnd
            do {
                while let last = state.segments.last, last !== kept {
                    state.segments.removeLast()
                    last.isDeleted = true
                    try FileIO.remove(last.logPath)
                }
                try kept.rollBack(to: mark)
                state.nextOffset = mark.nextOffset
                note = "; the log was cut back to offset \(mark.nextOffset), the last one fsynced"
            } catch {
                note = "; cutting the log back to offset \(mark.nextOffset) failed too (\(error.logMessage))"
            }
            let failure = LogError(.io, "\(error.logMessage)\(note); writes to \(topic)/\(partition) are stopped until restart so that recovery can check the log",
                                   systemError: (error as? LogError)?.systemError)
            state.failure = failure
            return failure
        }
    }

    // MARK: - Read

    /// Reads the batches from the one containing `offset` onwards, up to about `maxBytes` (at least one batch),
    /// checking each one's CRC.
    ///
    /// - Returns: an empty array at the log end offset.
    /// - Throws: `offsetOutOfRange` outside `logStartOffset...logEndOffset`; `corruptBatch` where the log is damaged.
    public func read(from offset: Int64, maxBytes: Int = 1 << 20) throws -> [FetchedBatch] {
        var out: [FetchedBatch] = []
        try scan(from: offset, maxBytes: maxBytes, batchAt: Segment.readBatch) { header, bytes, _ in
            out.append(FetchedBatch(header: header, bytes: bytes))
        } segmentEnd: { _, _ in }
        return out
    }

    /// The same batches as ``read(from:maxBytes:)``, as ranges of the segment files to send as they are stored
    /// (Kafka's Fetch): only the batch headers are read, and the CRCs are left to the client, as Kafka does.
    ///
    /// Each range holds its own descriptor of the file, so retention can delete the segment meanwhile.
    /// `before` stops the read at the first batch that starts there or later (the last stable offset, for
    /// read_committed).
    public func readRanges(from offset: Int64, maxBytes: Int = 1 << 20, before: Int64 = .max) throws -> [StoredRange] {
        var out: [StoredRange] = []
        var range: (start: Int64, end: Int64)?
        try scan(from: offset, maxBytes: maxBytes, before: before, batchAt: { fd, path, position, limit in
            (try Segment.readHeader(fd: fd, path: path, at: position, limit: limit), ())
        }) { header, _, position in
            range = (range?.start ?? position, position + Int64(header.totalSize))
        } segmentEnd: { fd, path in
            guard let taken = range else { return }
            range = nil
            out.append(StoredRange(file: OpenFile(descriptor: try FileIO.duplicate(fd, path: path)), position: taken.start,
                                   length: Int(taken.end - taken.start)))
        }
        return out
    }

    /// Walks the batches from the one containing `offset` onwards, up to about `maxBytes` (at least one batch):
    /// `take` gets each one after `offset`'s with its position, and `segmentEnd` is called before each segment's
    /// descriptor is let go (a sealed one is opened for this read and closed after it).
    private func scan<Payload>(from offset: Int64, maxBytes: Int, before: Int64 = .max,
                               batchAt: (_ fd: Int32, _ path: String, _ position: Int64, _ limit: Int64) throws -> (RecordBatchHeader, Payload),
                               take: (RecordBatchHeader, Payload, _ position: Int64) -> Void,
                               segmentEnd: (_ fd: Int32, _ path: String) throws -> Void) throws {
        // Segment fields (sizes, next offsets, index entries) change under the state lock: read them there.
        let (segments, limits, nextOffsets, start, end, first, firstPosition) = state.withLock { state in
            let first = state.segments.lastIndex(where: { $0.baseOffset <= offset }) ?? 0
            return (state.segments, state.segments.map(\.size), state.segments.map(\.nextOffset), state.logStartOffset, state.nextOffset,
                    first, state.segments[first].startPosition(for: offset))
        }
        guard offset >= start, offset <= end else {
            throw LogError(.offsetOutOfRange, "offset \(offset) is outside \(topic)/\(partition)'s range \(start)...\(end)")
        }
        if offset == end { return }
        var index = first
        var taken = 0
        var total = 0
        var position = firstPosition
        while index < segments.count {
            let segment = segments[index]
            let limit = limits[index]
            let full = try segment.file.withDescriptor { fd throws -> Bool in
                var full = false
                while position < limit {
                    let header: RecordBatchHeader, payload: Payload
                    do {
                        (header, payload) = try batchAt(fd, segment.logPath, position, limit)
                    } catch {
                        guard taken > 0 else {
                            throw LogError(.corruptBatch, "\(topic)/\(partition) cannot be read at offset \(offset): \(error.logMessage); run `sluice fsck`")
                        }
                        full = true
                        break
                    }
                    if header.baseOffset >= before {
                        full = true
                        break
                    }
                    if header.nextOffset > offset {
                        if taken > 0 && total + header.totalSize > maxBytes {
                            full = true
                            break
                        }
                        take(header, payload, position)
                        taken += 1
                        total += header.totalSize
                    }
                    position += Int64(header.totalSize)
                }
                try segmentEnd(fd, segment.logPath)
                return full
            }
            if full { return }
            if let damage = segment.damage, taken == 0, nextOffsets[index] > offset {
                throw LogError(.corruptBatch, "\(topic)/\(partition) cannot be read at offset \(offset): \(damage)")
            }
            index += 1
            position = 0
        }
    }

    /// Reads records from `offset` onwards, at most `maxRecords` of them.
    public func readRecords(from offset: Int64, maxRecords: Int = 500, maxBytes: Int = 1 << 20) throws -> [Record] {
        var out: [Record] = []
        for batch in try read(from: offset, maxBytes: maxBytes) {
            for record in try batch.records() where record.offset >= offset {
                out.append(record)
                if out.count == maxRecords { return out }
            }
        }
        return out
    }

    /// The first offset whose record timestamp is at or after `timestamp`, or `nil` when no record is that recent.
    public func offset(forTimestamp timestamp: Int64) throws -> Int64? {
        try firstRecord(atOrAfter: timestamp)?.offset
    }

    /// The offset and timestamp of the first record whose timestamp is `timestamp` or later (Kafka's
    /// ListOffsets by time), found through the time index; nil when every record is older.
    public func firstRecord(atOrAfter timestamp: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        // Where to start scanning each candidate segment, worked out under the lock that guards its indexes.
        let candidates = state.withLock { state -> [(segment: Segment, limit: Int64, offset: Int64, position: Int64)] in
            state.segments.filter { $0.maxTimestamp >= timestamp }.map { segment in
                let offset = max(segment.scanStartOffset(forTimestamp: timestamp), state.logStartOffset)
                return (segment, segment.size, offset, segment.startPosition(for: offset))
            }
        }
        for (segment, limit, startOffset, startPosition) in candidates {
            let found = try segment.file.withDescriptor { fd throws -> (offset: Int64, timestamp: Int64)? in
                var offset = startOffset
                var position = startPosition
                while position < limit {
                    let batch = try Segment.readBatch(fd: fd, path: segment.logPath, at: position, limit: limit)
                    position += Int64(batch.bytes.count)
                    guard batch.header.nextOffset > offset, batch.header.maxTimestamp >= timestamp else { continue }
                    for record in try RecordBatch.decode(batch.bytes).records where record.offset >= offset && record.timestamp >= timestamp {
                        return (record.offset, record.timestamp)
                    }
                    offset = batch.header.nextOffset
                }
                return nil
            }
            if let found { return found }
        }
        return nil
    }

    struct DirtySegment {
        var segment: Segment
        /// For a sealed segment: its index files' contents, to write once its log is fsynced.
        var sealedIndexes: (offsets: [UInt8], times: [UInt8])?
    }

    struct FlushRound {
        var segments: [DirtySegment]
        var directory: Bool
        var target: Int64
        var end: (segment: Segment, mark: Segment.Mark)
        var failure: LogError?
    }

    // MARK: - Close

    /// fsyncs everything, writes out the indexes, and refuses further appends.
    ///
    /// - Throws: the failure that stopped writes, if one did: the log then needs recovery at the next start.
    public func close() async throws {
        try await flush()
        let (segments, failure) = state.withLock { state -> ([Segment], LogError?) in
            state.closed = true
            return (state.segments, state.failure)
        }
        if let failure { throw failure }
        for segment in segments where segment.indexesNeedRewrite {
            try state.withLock { _ in try segment.rewriteIndexFiles(durably: true) }
        }
        try segments.last?.fsyncLog()
    }
}
