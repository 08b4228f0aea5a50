import CZlib
import Synchronization

/// gzip (RFC 1952) compression of a record batch's records section, through the system zlib.
public enum Gzip {
    /// The most bytes one gzip member of `count` bytes takes: zlib's `compressBound` plus the gzip wrapper's
    /// 12 bytes more than zlib's, and a margin.
    static func bound(_ count: Int) -> Int { Int(compressBound(uLong(count))) + 12 + 64 }

    /// Compresses `input` as one gzip member at `level` (1 fastest … 9 smallest) into `output` (at least
    /// ``bound(_:)`` bytes); returns the bytes written.
    static func compress(_ input: UnsafeRawBufferPointer, level: Int32, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let stream = try DeflatePool.shared.take(level: level)
        var reusable = false
        defer { DeflatePool.shared.give(stream, level: level, reusable: reusable) }
        stream.pointer.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointer.pointee.avail_in = uInt(input.count)
        stream.pointer.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointer.pointee.avail_out = uInt(output.count)
        let result = deflate(stream.pointer, Z_FINISH)
        guard result == Z_STREAM_END else { throw LogError(.io, "zlib deflate failed with status \(result)") }
        let written = Int(stream.pointer.pointee.total_out)
        reusable = deflateReset(stream.pointer) == Z_OK
        return written
    }

    /// Decompresses a gzip (or zlib) stream, refusing to produce more than `limit` bytes.
    static func decompress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 32 detects a gzip or zlib header automatically.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DecodeError("zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)

        return try decompressBounded(expected: input.count * 4, limit: limit, codec: "gzip") { free in
            stream.next_out = free.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(free.count)
            let status = inflate(&stream, Z_NO_FLUSH)
            let written = free.count - Int(stream.avail_out)
            switch status {
            case Z_STREAM_END: return (written, true)
            case Z_OK: return (written, false)
            case Z_BUF_ERROR where stream.avail_in == 0: throw DecodeError("the gzip records section ends before its trailer")
            case Z_BUF_ERROR: return (written, false)
            default: throw DecodeError("the gzip records section is not valid gzip (zlib status \(status))")
            }
        }
    }
}

/// Deflate streams kept for reuse: setting one up allocates and clears some 256 KiB of zlib state, which costs
/// more than compressing a small batch, so streams are reset (`deflateReset`, which keeps the level) and used
/// again. At most a few per level are kept.
final class DeflatePool: Sendable {
    /// A heap-allocated `z_stream` (zlib keeps a pointer back to it, so it must not move).
    struct Stream: @unchecked Sendable {  // Safe: a stream is used by one caller at a time, between take and give.
        let pointer: UnsafeMutablePointer<z_stream>
    }

    static let shared = DeflatePool()
    static let keptPerLevel = 4

    private let idle = Mutex<[Int32: [Stream]]>([:])

    func take(level: Int32) throws -> Stream {
        if let stream = idle.withLock({ $0[level]?.popLast() }) { return stream }
        let pointer = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        pointer.initialize(to: z_stream())
        // windowBits 15 + 16 asks zlib for a gzip header and trailer instead of zlib's.
        let status = deflateInit2_(pointer, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            pointer.deallocate()
            throw LogError(.invalidConfig, "zlib refused compression level \(level) (status \(status)); use 1...9")
        }
        return Stream(pointer: pointer)
    }

    /// Keeps `stream` for the next caller when it was reset and there is room; frees it otherwise.
    func give(_ stream: Stream, level: Int32, reusable: Bool) {
        let kept = reusable && idle.withLock { idle -> Bool in
            guard idle[level, default: []].count < Self.keptPerLevel else { return false }
            idle[level, default: []].append(stream)
            return true
        }
        if !kept {
            deflateEnd(stream.pointer)
            stream.pointer.deallocate()
        }
    }
}
