#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// A small append-only file of records (`length uint32 | crc32c uint32 | payload`), each made durable by an
/// fsync shared with the records written meanwhile (group commit). Opening it returns every whole record and
/// cuts off a torn or damaged tail; ``rewrite(_:)`` replaces the contents atomically (compaction).
public final class Journal: Sendable {
    public let path: String

    struct State {
        var descriptor: Int32
        var size: Int64
        var written: UInt64 = 0
        var failure: LogError?
        var closed = false
    }

    struct Flush {
        var durable: UInt64 = 0
        var running = false
        var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    }

    private let state: Mutex<State>
    private let flushState = Mutex(Flush())

    /// Opens (or creates) the journal, returning it and the payloads of its whole records, oldest first.
    public static func open(_ path: String) throws -> (Journal, [[UInt8]]) {
        let existed = FileIO.exists(path)
        let bytes = existed ? try FileIO.readFile(path) : []
        var payloads: [[UInt8]] = []
        var position = 0
        while position + 8 <= bytes.count {
            let length = Int(bytes[position..<position + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let crc = bytes[position + 4..<position + 8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let end = position + 8 + length
            guard end <= bytes.count else { break }
            let payload = Array(bytes[position + 8..<end])
            guard payload.withUnsafeBytes({ CRC32C.checksum($0) }) == crc else { break }
            payloads.append(payload)
            position = end
        }
        let fd = try FileIO.open(path, flags: O_RDWR | O_CREAT)
        do {
            if position != bytes.count {
                try FileIO.truncate(fd, to: Int64(position), path: path)
                try FileIO.fsync(fd, path: path)
            }
            if !existed { try FileIO.fsyncDirectory(FileIO.parentDirectory(path)) }
        } catch {
            FileIO.close(fd)
            throw error
        }
        return (Journal(path: path, descriptor: fd, size: Int64(position)), payloads)
    }

    private init(path: String, descriptor: Int32, size: Int64) {
        self.path = path
        state = Mutex(State(descriptor: descriptor, size: size))
    }

    deinit {
        state.withLock { FileIO.close($0.descriptor) }
    }

    /// Bytes in the file.
    public var size: Int64 { state.withLock { $0.size } }

    static func frame(_ payload: [UInt8]) -> [UInt8] {
        var out = ByteWriter(capacity: payload.count + 8)
        out.write(UInt32(payload.count))
        out.write(payload.withUnsafeBytes { CRC32C.checksum($0) })
        out.write(bytes: payload)
        return out.bytes
    }

    /// Writes a record to the page cache; returns its sequence number for ``waitUntilDurable(_:)``.
    /// A failed write stops the journal: every later call throws that failure.
    public func append(_ payload: [UInt8]) throws -> UInt64 {
        let framed = Self.frame(payload)
        return try state.withLock { state throws -> UInt64 in
            if let failure = state.failure { throw failure }
            if state.closed { throw LogError(.closed, "\(path) is closed") }
            do {
                try framed.withUnsafeBytes { try FileIO.pwriteAll(state.descriptor, $0, at: state.size, path: path) }
            } catch {
                // A partial record is cut off at the next open (its CRC fails); nothing may follow it meanwhile.
                let failure = (error as? LogError) ?? LogError(.io, "\(error)")
                state.failure = failure
                throw failure
            }
            state.size += Int64(framed.count)
            state.written += 1
            return state.written
        }
    }

    /// Appends and waits until the record is fsynced.
    public func appendDurably(_ payload: [UInt8]) async throws {
        try await waitUntilDurable(try append(payload))
    }

    /// Waits until the record with `sequence` (and all before it) is fsynced.
    public func waitUntilDurable(_ sequence: UInt64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start: Bool = flushState.withLock { flush in
                if flush.durable >= sequence {
                    continuation.resume()
                    return false
                }
                flush.waiters.append((sequence, continuation))
                if flush.running { return false }
                flush.running = true
                return true
            }
            if start { DispatchQueue.global().async { self.runFlusher() } }
        }
    }

    private func runFlusher() {
        while true {
            // The descriptor is duplicated so that a concurrent rewrite can close its own without racing the fsync.
            let (target, descriptor, failure) = state.withLock { state -> (UInt64, Int32, LogError?) in
                (state.written, state.failure == nil ? dup(state.descriptor) : -1, state.failure)
            }
            var error = failure
            if error == nil {
                do {
                    if descriptor < 0 { throw LogError.io("dup", path: path, errno: errno) }
                    try FileIO.fsync(descriptor, path: path)
                } catch let failed {
                    let stopped = (failed as? LogError) ?? LogError(.io, "\(failed)")
                    // After a failed fsync the page cache cannot be trusted: stop, as the partition log does.
                    state.withLock { $0.failure = stopped }
                    error = stopped
                }
            }
            if descriptor >= 0 { FileIO.close(descriptor) }
            let (ready, done) = flushState.withLock { flush -> ([CheckedContinuation<Void, any Error>], Bool) in
                if error == nil { flush.durable = max(flush.durable, target) }
                var ready: [CheckedContinuation<Void, any Error>] = []
                var remaining: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
                for waiter in flush.waiters {
                    if error != nil || waiter.sequence <= flush.durable { ready.append(waiter.continuation) } else { remaining.append(waiter) }
                }
                flush.waiters = remaining
                if remaining.isEmpty { flush.running = false }
                return (ready, remaining.isEmpty)
            }
            for continuation in ready {
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            if done { return }
        }
    }

    /// Replaces the journal's records with `payloads`, durably and atomically (written to a temporary file,
    /// fsynced, renamed over the journal). Records appended before it count as durable once it returns.
    public func rewrite(_ payloads: [[UInt8]]) throws {
        let bytes = payloads.flatMap(Self.frame)
        try state.withLock { state throws in
            if let failure = state.failure { throw failure }
            try FileIO.writeAtomically(path, bytes)
            let fd = try FileIO.open(path, flags: O_RDWR)
            FileIO.close(state.descriptor)
            state.descriptor = fd
            state.size = Int64(bytes.count)
            let written = state.written
            flushState.withLock { $0.durable = max($0.durable, written) }
        }
    }

    /// fsyncs what was written and closes the file; later appends throw.
    public func close() throws {
        try state.withLock { state throws in
            guard !state.closed else { return }
            state.closed = true
            if state.failure == nil { try FileIO.fsync(state.descriptor, path: path) }
        }
    }
}
