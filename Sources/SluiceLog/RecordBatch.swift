/// The fixed 61-byte header of a Kafka record batch v2 (magic 2).
///
/// ```
/// baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 | crc uint32 |
/// attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64 |
/// producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32 | records…
/// ```
/// `batchLength` counts the bytes after itself; the CRC-32C covers `attributes` to the end.
public struct RecordBatchHeader: Sendable, Hashable {
    public static let size = 61
    /// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
    public static let logOverhead = 12
    static let crcOffset = 17
    static let attributesOffset = 21

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producer: ProducerInfo
    public var recordCount: Int32

    /// Size of the whole batch on disk.
    public var totalSize: Int { Int(batchLength) + Self.logOverhead }
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    public var nextOffset: Int64 { lastOffset + 1 }
    public var compressionCodecRaw: Int16 { attributes & 0x07 }
    public var codec: CompressionCodec? { CompressionCodec(rawValue: compressionCodecRaw) }
    public var isTransactional: Bool { attributes & 0x10 != 0 }
    public var isControl: Bool { attributes & 0x20 != 0 }

    /// Writes this header, with `batchLength` for a records section of `sectionSize` bytes, over the first 61
    /// bytes of `batch`, and then the CRC-32C of the whole batch.
    func write(into batch: inout [UInt8], sectionSize: Int) {
        batch.withUnsafeMutableBytes { raw in
            func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) { raw.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self) }
            put(baseOffset, 0)
            put(Int32(Self.size - Self.logOverhead + sectionSize), 8)
            put(partitionLeaderEpoch, 12)
            put(magic, 16)
            put(attributes, Self.attributesOffset)
            put(lastOffsetDelta, 23)
            put(baseTimestamp, 27)
            put(maxTimestamp, 35)
            put(producer.producerId, 43)
            put(producer.producerEpoch, 51)
            put(producer.baseSequence, 53)
            put(recordCount, 57)
            put(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[Self.attributesOffset...])), Self.crcOffset)
        }
    }

    /// Parses the header; checks only what the header alone can tell.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> RecordBatchHeader {
        guard bytes.count >= size else {
            throw LogError(.invalidBatch, "a record batch header needs \(size) bytes, got \(bytes.count)")
        }
        var r = ByteReader(bytes)
        do {
            let header = RecordBatchHeader(
                baseOffset: try r.read(), batchLength: try r.read(), partitionLeaderEpoch: try r.read(),
                magic: try r.read(), crc: try r.read(), attributes: try r.read(), lastOffsetDelta: try r.read(),
                baseTimestamp: try r.read(), maxTimestamp: try r.read(),
                producer: ProducerInfo(producerId: try r.read(), producerEpoch: try r.read(), baseSequence: try r.read()),
                recordCount: try r.read())
            guard header.magic == 2 else {
                throw LogError(.invalidBatch, "magic byte is \(header.magic); only record batch v2 (magic 2) is supported")
            }
            guard header.totalSize >= size else {
                throw LogError(.invalidBatch, "batchLength \(header.batchLength) is smaller than the \(size - logOverhead)-byte header it must cover")
            }
            guard header.lastOffsetDelta >= 0, header.recordCount >= 0 else {
                throw LogError(.invalidBatch, "lastOffsetDelta \(header.lastOffsetDelta) and recordCount \(header.recordCount) must not be negative")
            }
            return header
        } catch let error as DecodeError {
            throw LogError(.invalidBatch, error.description)
        } catch let error as LogError {
            throw error
        } catch {
            throw LogError(.invalidBatch, "\(error)")
        }
    }
}

/// Encoding and decoding of whole record batches, byte for byte as Kafka defines them.
public enum RecordBatch {
    /// Default limit on a batch's decompressed records section (64 MiB).
    public static let defaultDecompressedLimit = 64 << 20

    /// Encodes `records` as one batch with base offset `baseOffset`.
    ///
    /// Records take offsets `baseOffset ..< baseOffset + records.count`. The CRC does not cover the base
    /// offset, so the log assigns offsets at append time without re-encoding (it writes the offset in front of
    /// the rest of the batch; ``setBaseOffset(_:in:)`` does the same in memory).
    public static func encode(
        _ records: [Record],
        baseOffset: Int64 = 0,
        compression: Compression = .none,
        producer: ProducerInfo = .none,
        partitionLeaderEpoch: Int32 = 0,
        transactional: Bool = false,
        control: Bool = false
    ) throws -> [UInt8] {
        guard !records.isEmpty else { throw LogError(.invalidBatch, "a record batch needs at least one record") }
        let baseTimestamp = records[0].timestamp
        var maxTimestamp = Int64.min
        var sectionSize = 0
        // Each record's size after its length prefix, measured once: the section's size, then the prefixes.
        let bodies = records.enumerated().map { index, record in
            maxTimestamp = max(maxTimestamp, record.timestamp)
            let body = bodySize(record, offsetDelta: Int64(index), timestampDelta: record.timestamp - baseTimestamp)
            sectionSize += ByteWriter.varintSize(Int64(body)) + body
            return body
        }
        return try encodeBatch(count: records.count, baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp, sectionSize: sectionSize,
                               baseOffset: baseOffset, compression: compression, producer: producer, partitionLeaderEpoch: partitionLeaderEpoch,
                               transactional: transactional, control: control) { out in
            for (index, record) in records.enumerated() {
                encodeRecord(record, bodySize: bodies[index], offsetDelta: Int64(index), timestampDelta: record.timestamp - baseTimestamp, into: &out)
            }
        }
    }

    /// Encodes records whose key, value and headers are already laid out (``EncodedRecord``) as one batch: the
    /// same bytes ``encode(_:baseOffset:compression:producer:partitionLeaderEpoch:transactional:control:)`` writes
    /// for the same records.
    public static func encode(
        encoded records: [EncodedRecord],
        baseOffset: Int64 = 0,
        compression: Compression = .none,
        producer: ProducerInfo = .none
    ) throws -> [UInt8] {
        guard !records.isEmpty else { throw LogError(.invalidBatch, "a record batch needs at least one record") }
        let baseTimestamp = records[0].timestamp
        var maxTimestamp = Int64.min
        var sectionSize = 0
        let bodies = records.enumerated().map { index, record in
            maxTimestamp = max(maxTimestamp, record.timestamp)
            let body = 1 + ByteWriter.varintSize(record.timestamp - baseTimestamp) + ByteWriter.varintSize(Int64(index)) + record.tail.count
            sectionSize += ByteWriter.varintSize(Int64(body)) + body
            return body
        }
        return try encodeBatch(count: records.count, baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp, sectionSize: sectionSize,
                               baseOffset: baseOffset, compression: compression, producer: producer, partitionLeaderEpoch: 0,
                               transactional: false, control: false) { out in
            for (index, record) in records.enumerated() {
                let timestampDelta = record.timestamp - baseTimestamp, offsetDelta = Int64(index)
                out.writeVarint(Int64(bodies[index]))
                out.write(byte: 0)  // record attributes: unused
                out.writeVarint(timestampDelta)
                out.writeVarint(offsetDelta)
                out.write(record.tail)
            }
        }
    }

    /// The batch around a records section of exactly `sectionSize` bytes that `writeRecords` writes through a
    /// pointer (no per-byte appends, no growth): uncompressed, straight into the batch after room for the header;
    /// compressed, into one buffer the codec reads and writes from straight into the batch.
    private static func encodeBatch(
        count: Int, baseTimestamp: Int64, maxTimestamp: Int64, sectionSize: Int, baseOffset: Int64, compression: Compression,
        producer: ProducerInfo, partitionLeaderEpoch: Int32, transactional: Bool, control: Bool,
        writeRecords: (inout SectionWriter) -> Void
    ) throws -> [UInt8] {
        guard count <= Int(Int32.max) else { throw LogError(.invalidBatch, "too many records for one batch") }
        let header = RecordBatchHeader(
            baseOffset: baseOffset, batchLength: 0, partitionLeaderEpoch: partitionLeaderEpoch, magic: 2, crc: 0,
            attributes: compression.codec.rawValue | (transactional ? 0x10 : 0) | (control ? 0x20 : 0), lastOffsetDelta: Int32(count - 1),
            baseTimestamp: baseTimestamp, maxTimestamp: maxTimestamp, producer: producer, recordCount: Int32(count))
        /// Writes the section at `start`, checking that it is exactly `sectionSize` bytes.
        func section(at start: UnsafeMutableRawPointer) {
            var out = SectionWriter(start)
            writeRecords(&out)
            precondition(out.position - start == sectionSize, "records section measured \(sectionSize) bytes, wrote \(out.position - start)")
        }
        var batch: [UInt8]
        if compression.codec == .none {
            batch = [UInt8](unsafeUninitializedCapacity: RecordBatchHeader.size + sectionSize) { buffer, count in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                UnsafeMutableRawBufferPointer(rebasing: raw[..<RecordBatchHeader.size]).initializeMemory(as: UInt8.self, repeating: 0)
                if sectionSize > 0 { section(at: raw.baseAddress! + RecordBatchHeader.size) }
                count = RecordBatchHeader.size + sectionSize
            }
        } else {
            let body = [UInt8](unsafeUninitializedCapacity: sectionSize) { buffer, count in
                if sectionSize > 0 { section(at: UnsafeMutableRawPointer(buffer.baseAddress!)) }
                count = sectionSize
            }
            batch = try body.withUnsafeBytes { section throws in
                try [UInt8](unsafeUninitializedCapacity: RecordBatchHeader.size + compression.bound(section.count)) { buffer, count in
                    let raw = UnsafeMutableRawBufferPointer(buffer)
                    UnsafeMutableRawBufferPointer(rebasing: raw[..<RecordBatchHeader.size]).initializeMemory(as: UInt8.self, repeating: 0)
                    count = RecordBatchHeader.size
                    count += try compression.compress(section, into: UnsafeMutableRawBufferPointer(rebasing: raw[RecordBatchHeader.size...]))
                }
            }
        }
        header.write(into: &batch, sectionSize: batch.count - RecordBatchHeader.size)
        return batch
    }

    /// The size of a record's encoding after its length prefix.
    static func bodySize(_ record: Record, offsetDelta: Int64, timestampDelta: Int64) -> Int {
        var size = 1 + ByteWriter.varintSize(timestampDelta) + ByteWriter.varintSize(offsetDelta)
        size += varBytesSize(record.key) + varBytesSize(record.value)
        size += ByteWriter.varintSize(Int64(record.headers.count))
        for header in record.headers {
            size += ByteWriter.varintSize(Int64(header.key.utf8.count)) + header.key.utf8.count + varBytesSize(header.value)
        }
        return size
    }

    static func encodeRecord(_ record: Record, bodySize: Int, offsetDelta: Int64, timestampDelta: Int64, into out: inout SectionWriter) {
        out.writeVarint(Int64(bodySize))
        out.write(byte: 0)  // record attributes: unused
        out.writeVarint(timestampDelta)
        out.writeVarint(offsetDelta)
        out.writeVarBytes(record.key)
        out.writeVarBytes(record.value)
        out.writeVarint(Int64(record.headers.count))
        for header in record.headers {
            var key = header.key
            key.withUTF8 { utf8 in
                out.writeVarint(Int64(utf8.count))
                out.write(UnsafeRawBufferPointer(utf8))
            }
            out.writeVarBytes(header.value)
        }
    }

    private static func varBytesSize(_ bytes: [UInt8]?) -> Int {
        guard let bytes else { return 1 }
        return ByteWriter.varintSize(Int64(bytes.count)) + bytes.count
    }

    /// Rewrites the base offset of an encoded batch in place (the CRC does not cover it).
    public static func setBaseOffset(_ baseOffset: Int64, in batch: inout [UInt8]) {
        let bigEndian = baseOffset.bigEndian
        withUnsafeBytes(of: bigEndian) { raw in
            for i in 0..<8 { batch[i] = raw[i] }
        }
    }

    /// Checks a whole batch: header sanity, exact length, and the CRC-32C.
    @discardableResult
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws -> RecordBatchHeader {
        let header = try RecordBatchHeader.parse(bytes)
        guard header.totalSize == bytes.count else {
            throw LogError(.invalidBatch, "batchLength says the batch is \(header.totalSize) bytes but \(bytes.count) were given")
        }
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchHeader.attributesOffset...]))
        guard actual == header.crc else {
            throw LogError(.corruptBatch, "CRC-32C mismatch in the batch at offset \(header.baseOffset): stored \(hex(header.crc)), computed \(hex(actual))")
        }
        return header
    }

    /// Validates a batch and decodes its records with absolute offsets.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer,
        decompressedLimit: Int = defaultDecompressedLimit
    ) throws -> (header: RecordBatchHeader, records: [Record]) {
        let header = try validate(bytes)
        guard let codec = header.codec else {
            throw LogError(.invalidBatch, "the batch at offset \(header.baseOffset): \(CompressionCodec.unknown(header.compressionCodecRaw))")
        }
        let section = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchHeader.size...])
        do {
            if codec == .none { return (header, try decodeRecords(section, header: header)) }
            let plain = try codec.decompress(section, limit: decompressedLimit)
            return (header, try plain.withUnsafeBytes { raw throws in try decodeRecords(raw, header: header) })
        } catch {
            throw LogError(.invalidBatch, "batch at offset \(header.baseOffset): \(error)")
        }
    }

    /// Validates and decodes an array holding exactly one batch.
    public static func decode(_ bytes: [UInt8]) throws -> (header: RecordBatchHeader, records: [Record]) {
        try bytes.withUnsafeBytes { raw throws in try decode(raw) }
    }

    /// The records of a section, made from what ``scanRecords(_:header:_:)`` reads (header keys must be UTF-8).
    private static func decodeRecords(_ section: UnsafeRawBufferPointer, header: RecordBatchHeader) throws -> [Record] {
        var records: [Record] = []
        records.reserveCapacity(Int(header.recordCount))
        try scanRecords(section, header: header) { view in
            var headers: [RecordHeader] = []
            headers.reserveCapacity(view.headerCount)
            try view.forEachHeader { key, value in
                guard let keyString = String(validating: key, as: UTF8.self) else {
                    throw DecodeError("the record at offset \(view.offset) has a header key that is not UTF-8")
                }
                headers.append(RecordHeader(key: keyString, value: value.map { [UInt8]($0) }))
            }
            records.append(Record(offset: view.offset, timestamp: view.timestamp, key: view.key.map { [UInt8]($0) },
                                  value: view.value.map { [UInt8]($0) }, headers: headers))
        }
        return records
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
