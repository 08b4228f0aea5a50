import CLZ4
import CSnappyLoader
import CZstd

// Kafka's compression codecs for a record batch's records section, each through its system library, with the
// framing Kafka clients write. Decompression never produces more than a caller's limit, whatever a frame claims.

extension Compression {
    /// The most bytes ``compress(_:into:)`` can write for `count` input bytes.
    public func bound(_ count: Int) -> Int {
        switch codec {
        case .none: count
        case .gzip: Gzip.bound(count)
        case .snappy: Snappy.bound(count)
        case .lz4: LZ4.bound(count)
        case .zstd: ZSTD_compressBound(count)
        }
    }

    /// Compresses a records section with this codec and level straight into `output` (at least
    /// ``bound(_:)`` bytes), returning how many bytes it wrote; `none` copies.
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        precondition(output.count >= bound(input.count), "the output must hold bound(input.count) bytes")
        switch codec {
        case .none:
            if let base = input.baseAddress { output.baseAddress!.copyMemory(from: base, byteCount: input.count) }
            return input.count
        case .gzip: return try Gzip.compress(input, level: level, into: output)
        case .snappy: return try Snappy.compress(input, into: output)
        case .lz4: return try LZ4.compress(input, level: level, into: output)
        case .zstd: return try Zstd.compress(input, level: level, into: output)
        }
    }

    /// ``compress(_:into:)`` into a new array.
    public func compress(_ input: UnsafeRawBufferPointer) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: max(bound(input.count), 1)) { buffer, count in
            count = try compress(input, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }
}

extension CompressionCodec {
    /// Decompresses a records section written with this codec, refusing to produce more than `limit` bytes.
    public func decompress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        switch self {
        case .none:
            guard input.count <= limit else { throw DecodeError("the records section is more than \(limit) bytes") }
            return Array(input)
        case .gzip: return try Gzip.decompress(input, limit: limit)
        case .snappy: return try Snappy.decompress(input, limit: limit)
        case .lz4: return try LZ4.decompress(input, limit: limit)
        case .zstd: return try Zstd.decompress(input, limit: limit)
        }
    }
}

/// Runs a streaming decompressor into an array that doubles as it fills, up to `limit` bytes. `step` gets the free
/// space, writes into it, and says how much it wrote and whether the stream is complete; it throws rather than
/// return without progress.
func decompressBounded(expected: Int, limit: Int, codec: String,
                       _ step: (UnsafeMutableRawBufferPointer) throws -> (written: Int, done: Bool)) throws -> [UInt8] {
    var output = [UInt8](repeating: 0, count: min(max(expected, 4096), limit))
    var produced = 0
    while true {
        if produced == output.count {
            guard output.count < limit else {
                throw DecodeError("the \(codec) records section decompresses to more than \(limit) bytes")
            }
            output.append(contentsOf: repeatElement(0, count: min(output.count, limit - output.count)))
        }
        let (written, done) = try output.withUnsafeMutableBytes { out in
            try step(UnsafeMutableRawBufferPointer(rebasing: out[produced...]))
        }
        produced += written
        if done {
            output.removeLast(output.count - produced)
            return output
        }
    }
}

/// snappy in the xerial framing that Kafka's Java client (snappy-java) and kafka-python write: a 16-byte header
/// (`\x82SNAPPY\0`, version 1, compatible version 1) and then blocks of at most 32 KiB, each a big-endian int32
/// length and one raw snappy block. Reading also takes a single raw snappy block, which librdkafka writes and
/// Kafka accepts.
public enum Snappy {
    static let magic: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00]
    static let headerSize = 16
    static let blockSize = 32 * 1024

    /// How the snappy blocks are put together: xerial (what Kafka's Java client writes, and Sluice) or one raw block
    /// (what librdkafka writes).
    public enum Framing: Sendable { case xerial, raw }

    /// The most bytes the xerial framing of `count` bytes takes.
    static func bound(_ count: Int) -> Int {
        let blocks = (count + blockSize - 1) / blockSize
        return headerSize + blocks * (4 + maxBlockLength(blockSize))
    }

    /// snappy's bound on one block of `count` bytes (its `MaxCompressedLength`), computed here so that sizing a
    /// buffer does not need the library open (a test holds it equal to `snappy_max_compressed_length`).
    static func maxBlockLength(_ count: Int) -> Int { 32 + count + count / 6 }

    /// libsnappy is opened on first use (CSnappyLoader): nil once it is, else why it could not be.
    public static let unavailable: String? = {
        var error = [CChar](repeating: 0, count: 512)
        guard sluice_snappy_load(&error, error.count) != 0 else { return nil }
        let reason = String(decoding: error.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "snappy needs libsnappy, which could not be loaded (\(reason)); install it (Debian: apt-get install libsnappy1v5) or use another compression.type"
    }()

    /// snappy in the xerial framing into `output` (at least ``bound(_:)`` bytes); returns the bytes written.
    static func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        output.copyBytes(from: magic)
        output.storeBytes(of: Int32(1).bigEndian, toByteOffset: 8, as: Int32.self)
        output.storeBytes(of: Int32(1).bigEndian, toByteOffset: 12, as: Int32.self)
        var position = headerSize
        var start = 0
        while start < input.count {
            let chunk = UnsafeRawBufferPointer(rebasing: input[start..<min(start + blockSize, input.count)])
            let length = try compressBlock(chunk, into: UnsafeMutableRawBufferPointer(rebasing: output[(position + 4)...]))
            output.storeBytes(of: Int32(length).bigEndian, toByteOffset: position, as: Int32.self)
            position += 4 + length
            start += chunk.count
        }
        return position
    }

    /// snappy in the xerial framing (`.xerial`, what Sluice writes) or as one raw block (`.raw`, as librdkafka writes).
    public static func compress(_ input: UnsafeRawBufferPointer, framing: Framing = .xerial) throws -> [UInt8] {
        switch framing {
        case .xerial:
            return try [UInt8](unsafeUninitializedCapacity: bound(input.count)) { buffer, count in
                count = try compress(input, into: UnsafeMutableRawBufferPointer(buffer))
            }
        case .raw:
            return try [UInt8](unsafeUninitializedCapacity: maxBlockLength(input.count)) { buffer, count in
                count = try compressBlock(input, into: UnsafeMutableRawBufferPointer(buffer))
            }
        }
    }

    private static func compressBlock(_ input: UnsafeRawBufferPointer, into block: UnsafeMutableRawBufferPointer) throws -> Int {
        if let unavailable { throw LogError(.io, unavailable) }
        var length = block.count
        let nothing: CChar = 0
        let status = withUnsafePointer(to: nothing) { empty in
            snappy_compress(input.baseAddress?.assumingMemoryBound(to: CChar.self) ?? empty, input.count,
                            block.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
        }
        guard status == SNAPPY_OK else { throw LogError(.io, "snappy_compress failed (status \(status.rawValue))") }
        return length
    }

    static func decompress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        guard input.count >= magic.count, input.prefix(magic.count).elementsEqual(magic) else {
            var output: [UInt8] = []
            try appendBlock(input, to: &output, limit: limit)
            return output
        }
        guard input.count >= headerSize else { throw DecodeError("the snappy records section ends inside its 16-byte xerial header") }
        var output: [UInt8] = []
        var position = headerSize
        while position < input.count {
            guard input.count - position >= 4 else { throw DecodeError("the snappy records section ends inside a block length at byte \(position)") }
            let length = Int(UInt32(bigEndian: input.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
            position += 4
            guard length <= input.count - position else {
                throw DecodeError("a snappy block at byte \(position - 4) says \(length) bytes, but \(input.count - position) are left")
            }
            try appendBlock(UnsafeRawBufferPointer(rebasing: input[position..<position + length]), to: &output, limit: limit)
            position += length
        }
        return output
    }

    /// Decompresses one raw snappy block onto `output`; its stated length is checked against the limit first.
    private static func appendBlock(_ block: UnsafeRawBufferPointer, to output: inout [UInt8], limit: Int) throws {
        guard let base = block.baseAddress?.assumingMemoryBound(to: CChar.self) else { throw DecodeError("an empty snappy block") }
        if let unavailable { throw DecodeError(unavailable) }
        var length = 0
        guard snappy_uncompressed_length(base, block.count, &length) == SNAPPY_OK else {
            throw DecodeError("a snappy block of \(block.count) bytes does not start with a valid length")
        }
        guard length <= limit - output.count else {
            throw DecodeError("the snappy records section decompresses to more than \(limit) bytes (a block claims \(length))")
        }
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: length))
        var written = length
        let status = output.withUnsafeMutableBytes { out in
            snappy_uncompress(base, block.count, out.baseAddress!.advanced(by: start).assumingMemoryBound(to: CChar.self), &written)
        }
        guard status == SNAPPY_OK, written == length else {
            throw DecodeError("a snappy block of \(block.count) bytes is not valid snappy (status \(status.rawValue))")
        }
    }
}

/// LZ4 in the frame format (magic 0x184D2204) as Kafka writes it for record batch v2: independent blocks of at
/// most 64 KiB, no checksums beyond the frame header's. Levels 1–12 (Kafka's `compression.lz4.level`; 1 is LZ4's
/// fast mode, 3 and up its high-compression mode).
public enum LZ4 {
    private static func preferences(level: Int32) -> LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max64KB
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.compressionLevel = level
        return preferences
    }

    static func bound(_ count: Int) -> Int {
        var preferences = preferences(level: 1)
        return LZ4F_compressFrameBound(count, &preferences)
    }

    static func compress(_ input: UnsafeRawBufferPointer, level: Int32, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        var preferences = preferences(level: level)
        let written = LZ4F_compressFrame(output.baseAddress, output.count, input.baseAddress, input.count, &preferences)
        guard LZ4F_isError(written) == 0 else {
            throw LogError(.io, "LZ4F_compressFrame failed: \(String(cString: LZ4F_getErrorName(written)))")
        }
        return written
    }

    static func decompress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        var context: OpaquePointer?
        guard LZ4F_isError(LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))) == 0, let context else {
            throw DecodeError("LZ4 could not start decompressing")
        }
        defer { LZ4F_freeDecompressionContext(context) }
        var consumed = 0
        return try decompressBounded(expected: input.count * 3, limit: limit, codec: "lz4") { free in
            var available = free.count
            var taken = input.count - consumed
            let hint = LZ4F_decompress(context, free.baseAddress, &available, input.baseAddress.map { $0 + consumed }, &taken, nil)
            guard LZ4F_isError(hint) == 0 else {
                throw DecodeError("the lz4 records section is not a valid LZ4 frame: \(String(cString: LZ4F_getErrorName(hint)))")
            }
            consumed += taken
            // 0: a frame is complete (another may follow); otherwise the decoder wants more input or more room.
            if hint == 0 && consumed == input.count { return (available, true) }
            if consumed == input.count && available < free.count { throw DecodeError("the lz4 records section ends inside its frame") }
            return (available, false)
        }
    }
}

/// Zstandard frames, levels 1–22 (Kafka's `compression.zstd.level`). Reading streams into the bounded buffer, so a
/// frame that claims a huge content size allocates nothing for it; the decoder's window is zstd's default maximum
/// (128 MiB for a frame that asks for it).
public enum Zstd {
    static func compress(_ input: UnsafeRawBufferPointer, level: Int32, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let written = ZSTD_compress(output.baseAddress, output.count, input.baseAddress, input.count, level)
        guard ZSTD_isError(written) == 0 else { throw LogError(.io, "ZSTD_compress failed: \(String(cString: ZSTD_getErrorName(written)))") }
        return written
    }

    static func decompress(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        guard let stream = ZSTD_createDStream() else { throw DecodeError("zstd could not start decompressing") }
        defer { ZSTD_freeDStream(stream) }
        var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        return try decompressBounded(expected: input.count * 4, limit: limit, codec: "zstd") { free in
            var target = ZSTD_outBuffer(dst: free.baseAddress, size: free.count, pos: 0)
            let before = source.pos
            let result = ZSTD_decompressStream(stream, &target, &source)
            guard ZSTD_isError(result) == 0 else {
                throw DecodeError("the zstd records section is not valid zstd: \(String(cString: ZSTD_getErrorName(result)))")
            }
            if result == 0 && source.pos == source.size { return (target.pos, true) }
            if source.pos == source.size && source.pos == before && target.pos < target.size {
                throw DecodeError("the zstd records section ends inside its frame")
            }
            return (target.pos, false)
        }
    }
}
