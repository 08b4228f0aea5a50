#if canImport(Glibc)
import CMalloc
#endif

/// glibc's allocator, set for an agent that moves megabyte-sized record batches through short-lived buffers.
///
/// By default glibc serves every allocation above its (adaptive) mmap threshold with a fresh `mmap` and gives
/// freed arena memory back to the kernel as soon as 128 KiB of it sits at the top of an arena. A produced or
/// fetched batch of 1 MiB then costs a page fault per 4 KiB page on every request, each page zeroed by the
/// kernel: measured with `scripts/bench/kafka.sh`, that was a third of the Kafka listener's CPU. Keeping
/// buffers up to 32 MiB in the arenas, and up to 128 MiB of free memory per arena before trimming, makes the
/// pages reusable (resident memory after a 200 MB produce-and-fetch run: 99 MB instead of 67 MB).
///
/// Settings an operator gave glibc themselves (`GLIBC_TUNABLES` with a malloc tunable, or `MALLOC_*_`
/// variables) are left as they are.
enum MallocTuning {
    static let mmapThreshold: Int32 = 32 << 20
    static let trimThreshold: Int32 = 128 << 20

    static func apply(environment: [String: String]) {
        #if canImport(Glibc)
        if environment["GLIBC_TUNABLES"]?.contains("glibc.malloc.") == true { return }
        if environment.keys.contains(where: { $0.hasPrefix("MALLOC_") }) { return }
        _ = mallopt(M_MMAP_THRESHOLD, mmapThreshold)
        _ = mallopt(M_TRIM_THRESHOLD, trimThreshold)
        #endif
    }
}
