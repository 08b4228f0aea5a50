#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Where log lines go: standard output or a size-rotated file. Each line is written whole with one write(2).
public final class LogSink: Sendable {
    enum Target {
        /// A pipe, terminal or file; `stalled` is set while its reader is not keeping up. Only pipes and sockets
        /// (`canStall`) can block a writer indefinitely, so only they are polled before a write.
        case descriptor(Int32, stalled: Bool, canStall: Bool)
        case file(path: String, fd: Int32, size: Int, maxBytes: Int, maxFiles: Int)
    }

    private let target: Mutex<Target>
    private let dropped = Atomic<Int>(0)

    /// How long a line waits for a reader that has stopped reading before it is dropped.
    public static let stallTimeoutMilliseconds: Int32 = 100

    /// Lines to standard output.
    public static let standardOutput = LogSink.descriptor(1)
    /// Lines to standard error.
    public static let standardError = LogSink.descriptor(2)

    /// Lines to an open descriptor (a pipe, say).
    public static func descriptor(_ fd: Int32) -> LogSink {
        var info = stat()
        let kind = fstat(fd, &info) == 0 ? info.st_mode & S_IFMT : 0
        return LogSink(target: .descriptor(fd, stalled: false, canStall: kind == S_IFIFO || kind == S_IFSOCK))
    }

    /// Lines dropped because the reader of a pipe stopped reading: logging never stalls the agent.
    public var droppedLines: Int { dropped.load(ordering: .relaxed) }

    private init(target: Target) {
        self.target = Mutex(target)
    }

    /// Lines appended to `path`; when it would exceed `maxBytes` it is renamed to `path.1` (older ones shift up
    /// to `path.<maxFiles>`, the oldest is deleted) and a new file is started.
    public static func file(path: String, maxBytes: Int, maxFiles: Int) throws -> LogSink {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LogSinkError(message: "cannot open log file \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        fstat(fd, &info)
        return LogSink(target: .file(path: path, fd: fd, size: Int(info.st_size), maxBytes: maxBytes, maxFiles: maxFiles))
    }

    /// Writes one line (the newline is added here). Never throws: a log line that cannot be written is dropped.
    public func write(line: [UInt8]) {
        target.withLock { target in
            switch target {
            case .descriptor(let fd, _, false):
                Self.writeAll(fd, line)
            case .descriptor(let fd, let stalled, true):
                // A reader that stops draining a pipe must not stop the agent: wait a little for room, then
                // drop, and while it stays stalled drop at once until it catches up.
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&poller, 1, stalled ? 0 : Self.stallTimeoutMilliseconds)
                if ready <= 0 || poller.revents & Int16(POLLOUT) == 0 {
                    dropped.add(1, ordering: .relaxed)
                    target = .descriptor(fd, stalled: true, canStall: true)
                    return
                }
                Self.writeAll(fd, line)
                if stalled { target = .descriptor(fd, stalled: false, canStall: true) }
            case .file(let path, var fd, var size, let maxBytes, let maxFiles):
                if size > 0 && size + line.count > maxBytes {
                    close(fd)
                    Self.rotate(path: path, maxFiles: maxFiles)
                    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                    size = 0
                }
                if fd >= 0 {
                    Self.writeAll(fd, line)
                    size += line.count
                }
                target = .file(path: path, fd: fd, size: size, maxBytes: maxBytes, maxFiles: maxFiles)
            }
        }
    }

    private static func rotate(path: String, maxFiles: Int) {
        guard maxFiles >= 1 else {
            unlink(path)
            return
        }
        unlink("\(path).\(maxFiles)")
        if maxFiles >= 2 {
            for index in stride(from: maxFiles - 1, through: 1, by: -1) {
                rename("\(path).\(index)", "\(path).\(index + 1)")
            }
        }
        rename(path, "\(path).1")
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }
}

public struct LogSinkError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
