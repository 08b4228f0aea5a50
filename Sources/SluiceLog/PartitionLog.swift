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
        var closed = false
        /// Set when an fsync failed: the page cache can no longer be trusted, so writes stop until a restart.
        var failure: LogError?
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
                            lastAppendTime: segments.last!.isEmpty ? nil : segments.last!.maxTimestamp))
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
        let info = try appendWithoutFlush(batch, now: now)
        if case .sync = config.flushPolicy {
            try await waitUntilDurable(info.lastOffset + 1)
        }
        return info
    }

    /// Appends and returns as soon as the batch is written to the page cache, whatever the flush policy.
    /// Pair it with ``waitUntilDurable(_:)`` to acknowledge after fsync selectively.
    public func appendWithoutFlush(_ batch: [UInt8], now: Int64 = currentTimeMillis()) throws -> AppendInfo {
        guard batch.count <= config.maxMessageBytes else {
            throw LogError(.batchTooLarge, "the record batch is \(batch.count) bytes; topic \(topic) accepts at most \(config.maxMessageBytes) (max.message.bytes)")
        }
        var batch = batch
        let header = try batch.withUnsafeBytes { raw throws in try RecordBatch.validate(raw) }
        guard header.codec != nil else {
            throw LogError(.invalidBatch, "compression codec \(header.compressionCodecRaw) is not supported; use none (0) or gzip (1)")
        }
        guard Int64(header.lastOffsetDelta) + 1 == Int64(header.recordCount) else {
            throw LogError(.invalidBatch, "lastOffsetDelta \(header.lastOffsetDelta) does not match recordCount \(header.recordCount)")
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
            RecordBatch.setBaseOffset(baseOffset, in: &batch)
            let position = segment.size
            do {
                try batch.withUnsafeBytes { raw throws in
                    try FileIO.pwriteAll(segment.logFD, raw, at: position, path: segment.logPath)
                }
            } catch {
                // Leave no partial batch behind: later appends would land after garbage.
                try? FileIO.truncate(segment.logFD, to: position, path: segment.logPath)
                throw error
            }
            var stored = header
            stored.baseOffset = baseOffset
            segment.size += Int64(batch.count)
            if segment.firstAppendTime == nil { segment.firstAppendTime = now }
            try segment.noteAppend(header: stored, position: position, indexInterval: config.indexIntervalBytes)
            state.nextOffset = stored.nextOffset
            state.lastAppendTime = now
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
    private func roll(_ state: inout State, now: Int64) throws -> Segment {
        let old = state.segments[state.segments.count - 1]
        try old.sealTimeIndex()
        let segment = try Segment(directory: directory, baseOffset: state.nextOffset)
        state.segments.append(segment)
        // The sealed segment and its indexes get fsynced by the flusher, in the background.
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
            let (segments, target) = state.withLock { state -> ([(segment: Segment, sealed: Bool)], Int64) in
                let dirty = state.dirty.filter { !$0.isDeleted }.map { ($0, $0 !== state.segments.last) }
                state.dirty.removeAll(keepingCapacity: true)
                return (dirty, state.nextOffset)
            }
            var failure: LogError?
            for (segment, sealed) in segments {
                do {
                    try FileIO.fsync(segment.logFD, path: segment.logPath)
                    if sealed {
                        // A sealed segment: make its indexes durable too.
                        try FileIO.fsync(segment.indexFD, path: segment.indexPath)
                        try FileIO.fsync(segment.timeIndexFD, path: segment.timeIndexPath)
                    }
                } catch {
                    failure = (error as? LogError) ?? LogError(.io, "\(error)")
                    break
                }
            }
            if let failure {
                state.withLock { $0.failure = LogError(.io, "\(failure.message); writes to \(topic)/\(partition) are stopped until restart so that recovery can check the log") }
            }
            let (ready, done) = flushState.withLock { flush -> ([CheckedContinuation<Void, any Error>], Bool) in
                if !segments.isEmpty { flush.fsyncCount += 1 }
                var ready: [CheckedContinuation<Void, any Error>] = []
                if failure == nil { flush.durableOffset = max(flush.durableOffset, target) }
                var remaining: [(offset: Int64, continuation: CheckedContinuation<Void, any Error>)] = []
                for waiter in flush.waiters {
                    if failure != nil || waiter.offset <= flush.durableOffset {
                        ready.append(waiter.continuation)
                    } else {
                        remaining.append(waiter)
                    }
                }
                flush.waiters = remaining
                let pendingDirty = state.withLock { !$0.dirty.isEmpty }
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

    // MARK: - Read

    /// Reads the batches from the one containing `offset` onwards, up to about `maxBytes` (at least one batch).
    ///
    /// - Returns: an empty array at the log end offset.
    /// - Throws: `offsetOutOfRange` outside `logStartOffset...logEndOffset`; `corruptBatch` where the log is damaged.
    public func read(from offset: Int64, maxBytes: Int = 1 << 20) throws -> [FetchedBatch] {
        // Segment fields (sizes, next offsets, index entries) change under the state lock: read them there.
        let (segments, limits, nextOffsets, start, end, first, firstPosition) = state.withLock { state in
            let first = state.segments.lastIndex(where: { $0.baseOffset <= offset }) ?? 0
            return (state.segments, state.segments.map(\.size), state.segments.map(\.nextOffset), state.logStartOffset, state.nextOffset,
                    first, state.segments[first].startPosition(for: offset))
        }
        guard offset >= start, offset <= end else {
            throw LogError(.offsetOutOfRange, "offset \(offset) is outside \(topic)/\(partition)'s range \(start)...\(end)")
        }
        if offset == end { return [] }
        var index = first
        var out: [FetchedBatch] = []
        var total = 0
        var position = firstPosition
        while index < segments.count {
            let segment = segments[index]
            let limit = limits[index]
            while position < limit {
                let batch: (header: RecordBatchHeader, bytes: [UInt8])
                do {
                    batch = try segment.readBatch(at: position, limit: limit)
                } catch {
                    if !out.isEmpty { return out }
                    throw LogError(.corruptBatch, "\(topic)/\(partition) cannot be read at offset \(offset): \(error.logMessage); run `sluice fsck`")
                }
                position += Int64(batch.bytes.count)
                if batch.header.nextOffset <= offset { continue }
                if !out.isEmpty && total + batch.bytes.count > maxBytes { return out }
                out.append(FetchedBatch(header: batch.header, bytes: batch.bytes))
                total += batch.bytes.count
            }
            if let damage = segment.damage, out.isEmpty, nextOffsets[index] > offset {
                throw LogError(.corruptBatch, "\(topic)/\(partition) cannot be read at offset \(offset): \(damage)")
            }
            index += 1
            position = 0
        }
        return out
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
        // Where to start scanning each candidate segment, worked out under the lock that guards its indexes.
        let candidates = state.withLock { state -> [(segment: Segment, limit: Int64, offset: Int64, position: Int64)] in
            state.segments.filter { $0.maxTimestamp >= timestamp }.map { segment in
                let offset = max(segment.scanStartOffset(forTimestamp: timestamp), state.logStartOffset)
                return (segment, segment.size, offset, segment.startPosition(for: offset))
            }
        }
        for (segment, limit, startOffset, startPosition) in candidates {
            var offset = startOffset
            var position = startPosition
            while position < limit {
                let batch = try segment.readBatch(at: position, limit: limit)
                position += Int64(batch.bytes.count)
                guard batch.header.nextOffset > offset, batch.header.maxTimestamp >= timestamp else { continue }
                for record in try RecordBatch.decode(batch.bytes).records where record.offset >= offset && record.timestamp >= timestamp {
                    return record.offset
                }
                offset = batch.header.nextOffset
            }
        }
        return nil
    }

    // MARK: - Close

    /// fsyncs everything, writes out the indexes, and refuses further appends.
    public func close() async throws {
        try await flush()
        let segments = state.withLock { state -> [Segment] in
            state.closed = true
            return state.segments
        }
        for segment in segments {
            if segment.indexesNeedRewrite { try segment.rewriteIndexFiles() }
            try segment.fsyncAll()
        }
    }
}
