/// One record of a batch, borrowed from the batch's bytes while ``RecordBatch/scan(_:decompressedLimit:_:)`` visits it:
/// its offset, timestamp, key, value and headers, without copying any of them. Its pointers are valid only during the
/// visit, like those `withUnsafeBytes` hands out: never keep a view.
public struct RecordView {
    public let offset: Int64
    public let timestamp: Int64
    /// The key's bytes, nil for a null key.
    public let key: UnsafeRawBufferPointer?
    /// The value's bytes, nil for a null value.
    public let value: UnsafeRawBufferPointer?
    let headers: UnsafeRawBufferPointer
    let headerCount: Int

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
    /// headers of every record (the trace tailer), not the records themselves. ``decode(_:decompressedLimit:)``
    /// reads records through the same parser.
    public static func scan(_ bytes: [UInt8], decompressedLimit: Int = defaultDecompressedLimit,
                            _ visit: (RecordView) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw throws in
            let header = try validate(raw)
            guard let codec = header.codec else {
                throw LogError(.invalidBatch, "the batch at offset \(header.baseOffset): \(CompressionCodec.unknown(header.compressionCodecRaw))")
            }
            let section = UnsafeRawBufferPointer(rebasing: raw[RecordBatchHeader.size...])
            do {
                if codec == .none { return try scanRecords(section, header: header, visit) }
                let plain = try codec.decompress(section, limit: decompressedLimit)
                try plain.withUnsafeBytes { plain throws in try scanRecords(plain, header: header, visit) }
            } catch let error as DecodeError {
                throw LogError(.invalidBatch, "batch at offset \(header.baseOffset): \(error)")
            }
        }
    }

    /// The one parser of a records section: checks each record's length, offset delta and headers, and that
    /// nothing follows the last record.
    static func scanRecords(_ section: UnsafeRawBufferPointer, header: RecordBatchHeader, _ visit: (RecordView) throws -> Void) throws {
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
            guard offsetDelta >= 0, offsetDelta <= Int64(header.lastOffsetDelta) else {
                throw DecodeError("record \(index) has offset delta \(offsetDelta) outside 0...\(header.lastOffsetDelta)")
            }
            let key = try reader.borrowVarBytes()
            let value = try reader.borrowVarBytes()
            let headerCount = try reader.readVarint()
            guard headerCount >= 0, headerCount <= Int64(reader.remaining) else {
                throw DecodeError("record \(index) claims \(headerCount) headers")
            }
            let headersStart = reader.position
            for _ in 0..<headerCount {
                guard try reader.borrowVarBytes() != nil else { throw DecodeError("record \(index) has a header with a null key") }
                _ = try reader.borrowVarBytes()
            }
            guard reader.position == end else {
                throw DecodeError("record \(index) length \(length) does not match its \(reader.position - (end - Int(length))) bytes of fields")
            }
            try visit(RecordView(offset: header.baseOffset + offsetDelta, timestamp: header.baseTimestamp + timestampDelta, key: key, value: value,
                                 headers: UnsafeRawBufferPointer(rebasing: section[headersStart..<end]), headerCount: Int(headerCount)))
        }
        guard reader.remaining == 0 else {
            throw DecodeError("\(reader.remaining) bytes follow the last of \(header.recordCount) records")
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
