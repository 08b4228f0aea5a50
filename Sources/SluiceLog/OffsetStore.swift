import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One partition of one topic as seen by one consumer group.
public struct GroupPartition: Sendable, Hashable, Comparable {
    public var group: String
    public var topic: String
    public var partition: Int32

    public init(group: String, topic: String, partition: Int32) {
        self.group = group
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: GroupPartition, b: GroupPartition) -> Bool {
        (a.group, a.topic, a.partition) < (b.group, b.topic, b.partition)
    }
}

/// A committed consumer offset: the next offset the group will read.
public struct CommittedOffset: Sendable, Hashable {
    public var offset: Int64
    public var metadata: String
    /// Milliseconds since the epoch when the commit was made durable.
    public var commitTime: Int64

    public init(offset: Int64, metadata: String = "", commitTime: Int64) {
        self.offset = offset
        self.metadata = metadata
        self.commitTime = commitTime
    }
}

/// Durable committed offsets of every consumer group: an append-only file of checksummed entries in
/// `DATA/groups/offsets.log`, compacted by rewriting it (atomically) when it holds far more entries than
/// live offsets — the same job Kafka's compacted `__consumer_offsets` topic does.
///
/// A commit returns only after its entry is fsynced. Commits that arrive while an fsync is running are
/// written together with one fsync (group commit). After a crash, a torn last entry is cut off; every entry
/// before it is whole, because each carries its length and CRC-32C.
///
/// Entry: `u32 length, u32 crc32c(payload), payload`; payload: `u8 kind (1 commit, 2 delete), u16+bytes group,
/// u16+bytes topic, i32 partition, i64 offset, i64 commit time, u16+bytes metadata`.
public final class OffsetStore: Sendable {
    public let path: String
    private let offsets: Mutex<[GroupPartition: CommittedOffset]>
    private let queue = DispatchQueue(label: "sluice.offsets")
    private let pending = Mutex<Pending>(Pending())
    private let file: Mutex<FileState>
    /// Entries cut off a torn tail at open (0 after a clean shutdown).
    public let truncatedBytes: Int64

    struct Pending {
        var bytes: [UInt8] = []
        var changes: [(GroupPartition, CommittedOffset?)] = []
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var running = false
    }

    struct FileState {
        var fd: Int32
        var size: Int64
        var entries: Int
        var closed = false
        /// Set when a failed write could not be cut off: commits stop until a restart reads the file back.
        var failure: LogError?
    }

    static let commitKind: UInt8 = 1
    static let deleteKind: UInt8 = 2

    /// Opens (or creates) the store in `directory`, reading every entry back.
    public static func open(directory: String) throws -> OffsetStore {
        try FileIO.makeDirectories(directory)
        return try OffsetStore(path: directory + "/offsets.log")
    }

    private init(path: String) throws {
        self.path = path
        let fd = try FileIO.open(path, flags: O_RDWR | O_CREAT)
        let bytes: [UInt8]
        do {
            bytes = try FileIO.pread(fd, count: Int(try FileIO.size(fd, path: path)), at: 0, path: path)
        } catch {
            FileIO.close(fd)
            throw error
        }
        var map: [GroupPartition: CommittedOffset] = [:]
        var valid = 0
        var entries = 0
        bytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            while let (change, end) = Self.decodeEntry(&reader) {
                if let value = change.1 { map[change.0] = value } else { map.removeValue(forKey: change.0) }
                valid = end
                entries += 1
            }
        }
        if valid < bytes.count {
            do {
                try FileIO.truncate(fd, to: Int64(valid), path: path)
                try FileIO.fsync(fd, path: path)
            } catch {
                FileIO.close(fd)
                throw error
            }
        }
        truncatedBytes = Int64(bytes.count - valid)
        offsets = Mutex(map)
        file = Mutex(FileState(fd: fd, size: Int64(valid), entries: entries))
    }

    /// Every committed offset.
    public var all: [GroupPartition: CommittedOffset] { offsets.withLock { $0 } }

    public func offset(_ key: GroupPartition) -> CommittedOffset? { offsets.withLock { $0[key] } }

    /// Committed offsets of one group.
    public func offsets(group: String) -> [GroupPartition: CommittedOffset] {
        offsets.withLock { $0.filter { $0.key.group == group } }
    }

    public var groupNames: Set<String> { offsets.withLock { Set($0.keys.map(\.group)) } }

    /// Makes `commits` durable; returns once they are fsynced and visible.
    public func commit(_ commits: [GroupPartition: CommittedOffset]) async throws {
        try await write(commits.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// Removes every offset of `group` (durably).
    public func deleteGroup(_ group: String) async throws {
        try await write(offsets(group: group).keys.sorted().map { ($0, nil) })
    }

    /// Removes every offset of `topic` in every group (durably), e.g. after the topic is deleted.
    public func deleteTopic(_ topic: String) async throws {
        let keys = offsets.withLock { $0.keys.filter { $0.topic == topic } }.sorted()
        try await write(keys.map { ($0, nil) })
    }

    private func write(_ changes: [(GroupPartition, CommittedOffset?)]) async throws {
        guard !changes.isEmpty else { return }
        var writer = ByteWriter(capacity: changes.count * 64)
        for (key, value) in changes { Self.encodeEntry(key, value, into: &writer) }
        let bytes = writer.bytes
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = pending.withLock { pending -> Bool in
                pending.bytes += bytes
                pending.changes += changes
                pending.waiters.append(continuation)
                if pending.running { return false }
                pending.running = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    /// Writes and fsyncs everything pending, repeatedly, until nothing is left (runs on `queue`).
    private func drain() {
        while true {
            let taken = pending.withLock { pending -> (bytes: [UInt8], changes: [(GroupPartition, CommittedOffset?)], waiters: [CheckedContinuation<Void, any Error>])? in
                if pending.waiters.isEmpty {
                    pending.running = false
                    return nil
                }
                defer {
                    pending.bytes = []
                    pending.changes = []
                    pending.waiters = []
                }
                return (pending.bytes, pending.changes, pending.waiters)
            }
            guard let taken else { return }
            let result: Result<Void, any Error> = Result {
                try file.withLock { state in
                    guard !state.closed else { throw LogError(.closed, "the offset store is closed") }
                    if let failure = state.failure { throw failure }
                    do {
                        try taken.bytes.withUnsafeBytes { try FileIO.pwriteAll(state.fd, $0, at: state.size, path: path) }
                        try FileIO.fsync(state.fd, path: path)
                    } catch {
                        // Leave no refused entry behind: a whole one would be read back at the next start.
                        do {
                            try FileIO.truncate(state.fd, to: state.size, path: path)
                        } catch let undo {
                            state.failure = LogError(.io, "\(error.logMessage), and cutting the refused commit off failed too (\(undo.logMessage)); commits are stopped until restart")
                        }
                        throw error
                    }
                    state.size += Int64(taken.bytes.count)
                    state.entries += taken.changes.count
                }
            }
            if case .success = result {
                offsets.withLock { map in
                    for (key, value) in taken.changes {
                        if let value { map[key] = value } else { map.removeValue(forKey: key) }
                    }
                }
                compactIfWorthIt()
            }
            for waiter in taken.waiters { waiter.resume(with: result) }
        }
    }

    /// Rewrites the file with only live offsets once it holds more than twice as many entries (and at least
    /// 10,000): the new file is written beside it, fsynced and renamed over it.
    private func compactIfWorthIt() {
        let live = offsets.withLock { $0 }
        file.withLock { state in
            guard state.entries > max(10_000, live.count * 2) else { return }
            var writer = ByteWriter(capacity: live.count * 64)
            for (key, value) in live.sorted(by: { $0.key < $1.key }) { Self.encodeEntry(key, value, into: &writer) }
            do {
                try FileIO.writeAtomically(path, writer.bytes)
                let fd = try FileIO.open(path, flags: O_RDWR)
                FileIO.close(state.fd)
                state.fd = fd
                state.size = Int64(writer.bytes.count)
                state.entries = live.count
            } catch {
                // The old file is still whole and open; compaction is retried after the next commit.
            }
        }
    }

    /// Closes the file; later commits fail.
    public func close() {
        file.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            FileIO.close(state.fd)
        }
    }

    deinit { close() }

    // MARK: - Encoding

    static func encodeEntry(_ key: GroupPartition, _ value: CommittedOffset?, into writer: inout ByteWriter) {
        var payload = ByteWriter(capacity: 64)
        payload.write(value == nil ? deleteKind : commitKind)
        writeString(key.group, &payload)
        writeString(key.topic, &payload)
        payload.write(key.partition)
        payload.write(value?.offset ?? -1)
        payload.write(value?.commitTime ?? 0)
        writeString(value?.metadata ?? "", &payload)
        writer.write(UInt32(payload.count))
        writer.write(CRC32C.checksum(payload.bytes))
        writer.write(bytes: payload.bytes)
    }

    private static func writeString(_ text: String, _ writer: inout ByteWriter) {
        let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
        writer.write(UInt16(bytes.count))
        writer.write(bytes: bytes)
    }

    /// The next whole, valid entry and the position after it; `nil` at the end or at a torn or damaged entry.
    static func decodeEntry(_ reader: inout ByteReader) -> ((GroupPartition, CommittedOffset?), Int)? {
        guard let length = try? reader.read(UInt32.self), let crc = try? reader.read(UInt32.self),
              length <= 1 << 20, let payload = try? reader.readBytes(Int(length)), CRC32C.checksum(payload) == crc
        else { return nil }
        return payload.withUnsafeBytes { raw -> ((GroupPartition, CommittedOffset?), Int)? in
            var entry = ByteReader(raw)
            guard let kind = try? entry.read(UInt8.self), kind == commitKind || kind == deleteKind,
                  let group = readString(&entry), let topic = readString(&entry),
                  let partition = try? entry.read(Int32.self), let offset = try? entry.read(Int64.self),
                  let time = try? entry.read(Int64.self), let metadata = readString(&entry)
            else { return nil }
            let key = GroupPartition(group: group, topic: topic, partition: partition)
            let value = kind == commitKind ? CommittedOffset(offset: offset, metadata: metadata, commitTime: time) : nil
            return ((key, value), reader.position)
        }
    }

    private static func readString(_ reader: inout ByteReader) -> String? {
        guard let count = try? reader.read(UInt16.self), let bytes = try? reader.readBytes(Int(count)) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
