/// Writes a records section into memory the caller sized exactly beforehand: stores through a pointer, without
/// the capacity and uniqueness checks of appending to an array byte by byte.
struct SectionWriter {
    private(set) var position: UnsafeMutableRawPointer

    init(_ start: UnsafeMutableRawPointer) { position = start }

    @inline(__always) mutating func write(byte: UInt8) {
        position.storeBytes(of: byte, as: UInt8.self)
        position += 1
    }

    @inline(__always) mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        position.copyMemory(from: base, byteCount: bytes.count)
        position += bytes.count
    }

    mutating func write(_ bytes: ArraySlice<UInt8>) { bytes.withUnsafeBytes { write($0) } }

    /// A zigzag varint, as ``ByteWriter/writeVarint(_:)`` writes it.
    @inline(__always) mutating func writeVarint(_ value: Int64) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            write(byte: UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        write(byte: UInt8(v))
    }

    /// A varint length and the bytes, or length -1 for nil.
    mutating func writeVarBytes(_ value: [UInt8]?) {
        guard let value else { return writeVarint(-1) }
        writeVarint(Int64(value.count))
        value.withUnsafeBytes { write($0) }
    }
}

/// Appends big-endian integers, Kafka zigzag varints and raw bytes to a growing buffer.
struct ByteWriter {
    var bytes: [UInt8]

    init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        let bigEndian = value.bigEndian
        withUnsafeBytes(of: bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func write(bytes other: some Collection<UInt8>) {
        bytes.append(contentsOf: other)
    }

    /// Writes an unsigned LEB128 varint.
    mutating func writeUnsignedVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Writes a zigzag-encoded signed varint, as Kafka's record format does for every varint field.
    mutating func writeVarint(_ value: Int64) {
        writeUnsignedVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Writes a varint length followed by the bytes, or length -1 for `nil`.
    mutating func writeVarBytes(_ value: [UInt8]?) {
        guard let value else {
            writeVarint(-1)
            return
        }
        writeVarint(Int64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Overwrites a big-endian integer at `offset`.
    mutating func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let bigEndian = value.bigEndian
        withUnsafeBytes(of: bigEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
    }

    static func varintSize(_ value: Int64) -> Int {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }
}

/// Reads big-endian integers, zigzag varints and byte ranges from a buffer, throwing on truncation.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var position: Int

    init(_ buffer: UnsafeRawBufferPointer, position: Int = 0) {
        self.buffer = buffer
        self.position = position
    }

    var remaining: Int { buffer.count - position }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw DecodeError("needs \(size) bytes at position \(position), has \(remaining)") }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { dest in
            dest.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[position..<position + size]))
        }
        position += size
        return T(bigEndian: value)
    }

    mutating func readUnsignedVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < buffer.count else { throw DecodeError("varint runs past the end at position \(position)") }
            let byte = buffer[position]
            position += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            guard shift < 64 else { throw DecodeError("varint longer than 10 bytes at position \(position)") }
        }
    }

    mutating func readVarint() throws -> Int64 {
        let raw = try readUnsignedVarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func readBytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw DecodeError("needs \(count) bytes at position \(position), has \(remaining)")
        }
        let out = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[position..<position + count]))
        position += count
        return out
    }

    /// Reads a varint length and that many bytes; length -1 means `nil`.
    mutating func readVarBytes() throws -> [UInt8]? {
        let length = try readVarint()
        if length == -1 { return nil }
        guard length >= 0, length <= Int64(remaining) else {
            throw DecodeError("length \(length) at position \(position) exceeds the \(remaining) bytes left")
        }
        return try readBytes(Int(length))
    }
}

/// A decoding failure with the position it happened at.
struct DecodeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
