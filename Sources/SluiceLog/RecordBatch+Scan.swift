/// One record of a batch, borrowed from the batch's bytes while ``RecordBatch/scan(_:decompressedLimit:_:)`` visits it:
/// its offset, timestamp, value and headers, without copying any of them. Its pointers are valid only during the
/// visit, like those `withUnsafeBytes` hands out: never keep a view.
public struct RecordView {
    public let offset: Int64
    public let timestamp: Int64
    /// The value's bytes, nil for a null value.
    public let value: UnsafeRawBufferPointer?
    let headers: UnsafeRawBufferPointer
    let headerCount: Int

    init(offset: Int64, timestamp: Int64, value: UnsafeRawBufferPointer?, headers: UnsafeRawBufferPointer, headerCount: Int) {
        self.offset = offset
        self.timestamp = timestamp
        self.value = value
        self.headers = headers
        self.headerCount = headerCount
    }

    /// Calls `body` with each header's key and value (nil for a null value), in order.
    public func forEachHeader(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer?) throws -> Void) throws {
        var reader = ByteReader(headers)
        for _ in 0..<headerCount {
            guard let key = try reader.borrowVarBytes() else { throw DecodeError("a header with a null key") }
            try body(key, try reader.borrowVarBytes())
        }
    }
}

extension RecordBatch {
    /// Validates a batch and visits its records in order without materialising them: for readers that need a few
    /// headers of every record (the trace tailer), not the records themselves.
    public static func scan(_ bytes: [UInt8], decompressedLimit: Int = defaultDecompressedLimit,
                            _ visit: (RecordView) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw throws in
            let header = try validate(raw)
            guard let codec = header.codec else {
                throw LogError(.invalidBatch, "the batch at offset \(header.baseOffset): \(CompressionCodec.unknown(header.compressionCodecRaw))")
            }
            let section = UnsafeRawBufferPointer(rebasing: raw[RecordBatchHeader.size...])
            if codec == .none { return try scanRecords(section, header: header, visit) }
            let plain = try codec.decompress(section, limit: decompressedLimit)
            try plain.withUnsafeBytes { plain throws in try scanRecords(plain, header: header, visit) }
        }
    }

    private static func scanRecords(_ section: UnsafeRawBufferPointer, header: RecordBatchHeader, _ visit: (RecordView) throws -> Void) throws {
        var reader = ByteReader(section)
        for index in 0..<Int(header.recordCount) {
            let length = try reader.readVarint()
            guard length >= 0, length <= Int64(reader.remaining) else {
                throw DecodeError("record \(index) claims \(length) bytes but \(reader.remaining) remain")
            }
            let end = reader.position + Int(length)
            _ = try reader.read(Int8.self)  // attributes
            let timestampDelta = try reader.readVarint()
            let offsetDelta = try reader.readVarint()
            _ = try reader.borrowVarBytes()  // key
            let value = try reader.borrowVarBytes()
            let headerCount = try reader.readVarint()
            guard headerCount >= 0, headerCount <= Int64(reader.remaining), reader.position <= end else {
                throw DecodeError("record \(index) claims \(headerCount) headers")
            }
            let view = RecordView(offset: header.baseOffset + offsetDelta, timestamp: header.baseTimestamp + timestampDelta, value: value,
                                  headers: UnsafeRawBufferPointer(rebasing: section[reader.position..<end]), headerCount: Int(headerCount))
            try visit(view)
            reader.position = end
        }
    }
}

extension ByteReader {
    /// Reads a varint length and borrows that many bytes (nil for length -1).
    mutating func borrowVarBytes() throws -> UnsafeRawBufferPointer? {
        let length = try readVarint()
        if length == -1 { return nil }
        guard length >= 0, length <= Int64(remaining) else {
            throw DecodeError("length \(length) at position \(position) exceeds the \(remaining) bytes left")
        }
        defer { position += Int(length) }
        return UnsafeRawBufferPointer(rebasing: buffer[position..<position + Int(length)])
    }
}
