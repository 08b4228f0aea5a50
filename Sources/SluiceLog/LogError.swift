#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from the storage engine: a stable ``Code`` and a message that says what was wrong and what to do.
///
/// Messages never contain record payloads.
public struct LogError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Stable, machine-readable error codes.
    public enum Code: String, Sendable {
        case invalidName = "invalid_name"
        case invalidConfig = "invalid_config"
        case batchTooLarge = "batch_too_large"
        case invalidBatch = "invalid_batch"
        case corruptBatch = "corrupt_batch"
        case offsetOutOfRange = "offset_out_of_range"
        case unknownTopic = "unknown_topic"
        case unknownPartition = "unknown_partition"
        case topicExists = "topic_exists"
        case closed = "closed"
        /// The data would need more open files than the process may have.
        case tooManyFiles = "too_many_open_files"
        case io = "io_error"
    }

    public var code: Code
    public var message: String
    /// For `io`: the system error number, when one caused it (e.g. ENOSPC for a full disk).
    public var systemError: Int32?

    public init(_ code: Code, _ message: String, systemError: Int32? = nil) {
        self.code = code
        self.message = message
        self.systemError = systemError
    }

    /// Whether the file system was full (ENOSPC or EDQUOT).
    public var isNoSpace: Bool { systemError == ENOSPC || systemError == EDQUOT }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension LogError {
    static func io(_ operation: String, path: String, errno err: Int32) -> LogError {
        LogError(.io, "\(operation) \(path) failed: \(String(cString: strerror(err))) (errno \(err))", systemError: err)
    }
}

extension Error {
    /// The message of a ``LogError``, or the error's description otherwise.
    var logMessage: String { (self as? LogError)?.message ?? "\(self)" }
    var logCode: LogError.Code? { (self as? LogError)?.code }
}
