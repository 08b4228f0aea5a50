/// One record batch whose header, length, CRC-32C, codec and offset delta have been checked: what the log appends.
///
/// A batch is checked once, where it arrives (the Kafka listener, to answer with the protocol's error code) or
/// where it is made (``RecordBatch/encodeChecked(_:compression:producer:)``), and the log appends it without
/// computing the CRC of the same bytes again; the type is the proof, so an unchecked batch cannot reach a segment.
public struct CheckedBatch: Sendable {
    public let bytes: [UInt8]
    public let header: RecordBatchHeader

    /// Checks `bytes` as one whole batch.
    ///
    /// - Throws: ``LogError`` with `corruptBatch` when the CRC-32C does not match, `invalidBatch` for a malformed
    ///   header, a length other than `bytes.count`, a codec Sluice does not read, or a `lastOffsetDelta` that
    ///   does not match the record count.
    public init(_ bytes: [UInt8]) throws {
        let header = try bytes.withUnsafeBytes { raw throws in try RecordBatch.validate(raw) }
        guard header.codec != nil else {
            throw LogError(.invalidBatch, CompressionCodec.unknown(header.compressionCodecRaw))
        }
        guard Int64(header.lastOffsetDelta) + 1 == Int64(header.recordCount) else {
            throw LogError(.invalidBatch, "lastOffsetDelta \(header.lastOffsetDelta) does not match recordCount \(header.recordCount)")
        }
        self.bytes = bytes
        self.header = header
    }

    /// The same records, producer fields, timestamps and leader epoch in a batch of `compression`: what a topic
    /// whose `compression.type` names a codec stores of a batch a producer compressed otherwise (as Kafka's broker
    /// recompresses). A decompression bomb or damaged records section is an `invalidBatch` error.
    public func recompressed(to compression: Compression) throws -> CheckedBatch {
        let records = try RecordBatch.decode(bytes).records
        return try CheckedBatch(encoded: RecordBatch.encode(
            records, baseOffset: header.baseOffset, compression: compression, producer: header.producer,
            partitionLeaderEpoch: header.partitionLeaderEpoch))
    }

    /// A batch ``RecordBatch`` has just encoded, and so computed the CRC of.
    init(encoded bytes: [UInt8]) throws {
        self.bytes = bytes
        self.header = try bytes.withUnsafeBytes { raw throws in try RecordBatchHeader.parse(raw) }
    }
}

extension RecordBatch {
    /// ``encode(_:baseOffset:compression:producer:partitionLeaderEpoch:)`` for appending: the batch comes back
    /// checked, since encoding computed its CRC.
    public static func encodeChecked(_ records: [Record], compression: Compression = .none, producer: ProducerInfo = .none) throws -> CheckedBatch {
        try CheckedBatch(encoded: encode(records, compression: compression, producer: producer))
    }

    /// ``encode(encoded:baseOffset:compression:producer:)`` for appending.
    public static func encodeChecked(encoded records: [EncodedRecord], compression: Compression = .none, producer: ProducerInfo = .none) throws -> CheckedBatch {
        try CheckedBatch(encoded: encode(encoded: records, compression: compression, producer: producer))
    }
}
