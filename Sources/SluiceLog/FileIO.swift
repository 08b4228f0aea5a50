#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Thin, throwing wrappers over the POSIX calls the log needs. Everything retries on EINTR, and every call that
/// changes a file passes through ``FileFaults`` so tests can make it fail.
enum FileIO {
    static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        try FileFaults.check(.open, path)
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw LogError.io("open", path: path, errno: errno) }
        }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// A second descriptor of the same open file, with its own lifetime.
    static func duplicate(_ fd: Int32, path: String) throws -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if copy < 0 { throw LogError.io("dup", path: path, errno: errno) }
        return copy
    }

    /// Writes all of `bytes` at `offset`.
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
        try pwriteAll(fd, [bytes], at: offset, path: path)
    }

    /// Writes `parts` one after another at `offset`, all of them (one `pwritev` when the kernel takes it all).
    static func pwriteAll(_ fd: Int32, _ parts: [UnsafeRawBufferPointer], at offset: Int64, path: String) throws {
        let total = parts.reduce(0) { $0 + $1.count }
        if let injected = FileFaults.failure(.write, path) {
            // As a full disk does: part of the bytes reach the file, then the call fails.
            var left = total / 2
            var position = offset
            for part in parts where left > 0 && part.count > 0 {
                let count = min(left, part.count)
                _ = pwrite(fd, part.baseAddress!, count, off_t(position))
                position += Int64(count)
                left -= count
            }
            throw LogError.io("write (injected)", path: path, errno: injected)
        }
        var written = 0
        while written < total {
            // What is left: the parts from the one the last write stopped in.
            var skip = written
            var vectors: [iovec] = []
            for part in parts {
                if skip >= part.count {
                    skip -= part.count
                    continue
                }
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: part.baseAddress! + skip), iov_len: part.count - skip))
                skip = 0
            }
            let n = pwritev(fd, vectors, Int32(vectors.count), off_t(offset) + off_t(written))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("write", path: path, errno: errno)
            }
            written += n
        }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    static func pread(_ fd: Int32, count: Int, at offset: Int64, path: String) throws -> [UInt8] {
        if count == 0 { return [] }
        var failure: Int32 = 0
        // Uninitialised storage: the read fills it, and only the bytes read become the array.
        let result = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var total = 0
            while total < count {
                let n = Glibc.pread(fd, buffer.baseAddress! + total, count - total, off_t(offset) + off_t(total))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                if n == 0 { break }
                total += n
            }
            initialized = total
        }
        if failure != 0 { throw LogError.io("read", path: path, errno: failure) }
        return result
    }

    static func fsync(_ fd: Int32, path: String) throws {
        try FileFaults.check(.fsync, path)
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw LogError.io("fsync", path: path, errno: errno) }
        }
    }

    static func truncate(_ fd: Int32, to size: Int64, path: String) throws {
        try FileFaults.check(.truncate, path)
        while ftruncate(fd, off_t(size)) != 0 {
            if errno != EINTR { throw LogError.io("truncate", path: path, errno: errno) }
        }
    }

    static func size(_ fd: Int32, path: String) throws -> Int64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw LogError.io("stat", path: path, errno: errno) }
        return Int64(info.st_size)
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and any missing parents.
    static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw LogError.io("mkdir", path: path, errno: errno) }
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Names in a directory, without `.` and `..`, sorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw LogError.io("list", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func remove(_ path: String) throws {
        try FileFaults.check(.unlink, path)
        if unlink(path) != 0 && errno != ENOENT { throw LogError.io("delete", path: path, errno: errno) }
    }

    /// Removes a directory tree.
    static func removeTree(_ path: String) throws {
        guard isDirectory(path) else {
            try remove(path)
            return
        }
        for name in try list(path) { try removeTree(path + "/" + name) }
        if rmdir(path) != 0 && errno != ENOENT { throw LogError.io("rmdir", path: path, errno: errno) }
    }

    /// fsyncs a directory so that creations, renames and deletions in it survive power loss.
    static func fsyncDirectory(_ path: String) throws {
        try FileFaults.check(.fsyncDirectory, path)
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError.io("open", path: path, errno: errno) }
        defer { close(fd) }
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw LogError.io("fsync", path: path, errno: errno) }
        }
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old or the new file, never a mix.
    static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws {
        try writeAtomically(path, bytes, temporary: path + ".tmp")
    }

    /// The same, with the temporary file named by the caller (concurrent writers of one file each need their own).
    static func writeAtomically(_ path: String, _ bytes: [UInt8], temporary: String) throws {
        let fd = try open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try bytes.withUnsafeBytes { raw throws in try pwriteAll(fd, raw, at: 0, path: temporary) }
            try fsync(fd, path: temporary)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try FileFaults.check(.rename, temporary)
        guard rename(temporary, path) == 0 else { throw LogError.io("rename", path: temporary, errno: errno) }
        try fsyncDirectory(parentDirectory(path))
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { close(fd) }
        return try pread(fd, count: Int(try size(fd, path: path)), at: 0, path: path)
    }
}

/// Replaces a small file so that a crash leaves either the old or the new one (written beside it, fsynced,
/// renamed over it, the directory fsynced).
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], temporary: String? = nil) throws {
    try FileIO.writeAtomically(path, bytes, temporary: temporary ?? path + ".tmp")
}

/// Milliseconds since the Unix epoch, from the real-time clock.
public func currentTimeMillis() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// A seam in the file layer that makes chosen calls fail, for tests that walk a fault over every I/O call of an
/// operation (an append, a roll, a commit…) and check what is left afterwards.
///
/// Disarmed (the default) it costs one relaxed atomic load per call.
@_spi(FaultInjection)
public enum FileFaults {
    /// The kinds of call that can be made to fail.
    public enum Call: String, Sendable, CaseIterable {
        case open, write, truncate, fsync, rename, unlink
        case fsyncDirectory = "fsync_directory"
    }

    struct Plan {
        var calls: Set<Call>
        var pathPrefix: String
        /// Fail the call with this 1-based number among the matching ones; 0 only counts.
        var failAt: Int
        /// Keep failing every matching call after the first failure (a disk that stays full).
        var sticky: Bool
        var errno: Int32
        var seen = 0
        var failed = 0
    }

    /// `ENOSPC`, a full disk.
    public static let noSpace: Int32 = ENOSPC
    /// `EIO`, a failing disk.
    public static let ioError: Int32 = EIO

    private static let armed = Atomic<Bool>(false)
    private static let plan = Mutex<Plan?>(nil)

    /// Starts counting the matching calls under `pathPrefix` and makes the `failAt`-th of them (1-based) fail with
    /// `errno`; with `sticky`, every later matching call fails too. `failAt: 0` only counts.
    public static func arm(failAt: Int, calls: Set<Call> = Set(Call.allCases), under pathPrefix: String,
                           errno: Int32 = FileFaults.noSpace, sticky: Bool = false) {
        plan.withLock { $0 = Plan(calls: calls, pathPrefix: pathPrefix, failAt: failAt, sticky: sticky, errno: errno) }
        armed.store(true, ordering: .sequentiallyConsistent)
    }

    /// Stops injecting and returns how many matching calls were seen and how many were made to fail.
    @discardableResult
    public static func disarm() -> (seen: Int, failed: Int) {
        armed.store(false, ordering: .sequentiallyConsistent)
        return plan.withLock { plan in
            defer { plan = nil }
            return (plan?.seen ?? 0, plan?.failed ?? 0)
        }
    }

    static func check(_ call: Call, _ path: String) throws {
        if let failure = failure(call, path) { throw LogError.io("\(call.rawValue) (injected)", path: path, errno: failure) }
    }

    /// The errno the call should fail with, or `nil` to let it run.
    static func failure(_ call: Call, _ path: String) -> Int32? {
        guard armed.load(ordering: .relaxed) else { return nil }
        return plan.withLock { plan in
            guard var current = plan, current.calls.contains(call), path.hasPrefix(current.pathPrefix) else { return nil }
            current.seen += 1
            let fail = current.failAt > 0 && (current.seen == current.failAt || (current.sticky && current.seen > current.failAt))
            if fail { current.failed += 1 }
            plan = current
            return fail ? current.errno : nil
        }
    }
}
