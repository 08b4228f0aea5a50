#if canImport(Glibc)
import Glibc
#endif

/// The process's limit on open file descriptors (`RLIMIT_NOFILE`), which bounds how many partitions a data
/// directory can hold: each partition keeps one descriptor open (its active segment; sealed segments are opened
/// only while read), and connections, the offset store and the lock take the rest.
public enum DescriptorLimit {
    /// The soft and hard limits now.
    public static var current: (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return (1024, 1024) }
        return (clamp(limit.rlim_cur), clamp(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one, as Go's runtime and most servers do at start; returns the limits after.
    @discardableResult
    public static func raiseToHard() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        if getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        }
        return current
    }

    /// Descriptors the log itself needs besides one per partition: the directory lock, the offset store, and
    /// files written briefly (markers, indexes, atomic replacements).
    public static let logOverhead = 8

    private static func clamp(_ value: rlim_t) -> Int {
        value > rlim_t(Int32.max) ? Int(Int32.max) : Int(value)  // RLIM_INFINITY included
    }

    #if os(Linux)
    private static let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
    #endif
}
