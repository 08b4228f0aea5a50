/// A record whose key, value and headers are already laid out as Kafka's record format has them after the offset
/// delta: sealing it into a batch only adds the record's length, attributes and two deltas. The agent's write path
/// encodes each event once, straight from the request, instead of building a ``Record`` and encoding that.
public struct EncodedRecord: Sendable {
    /// Create time in milliseconds since the Unix epoch.
    public var timestamp: Int64
    /// Key, value, header count and headers (``RecordTails`` writes them).
    public var tail: ArraySlice<UInt8>

    public init(timestamp: Int64, tail: ArraySlice<UInt8>) {
        self.timestamp = timestamp
        self.tail = tail
    }

    /// The same record as `record` (its offset aside): what ``RecordBatch/encode(_:baseOffset:compression:producer:partitionLeaderEpoch:transactional:control:)`` would write for it.
    public init(_ record: Record) {
        var tails = RecordTails(capacity: 16 + (record.key?.count ?? 0) + (record.value?.count ?? 0) + record.headers.count * 32)
        tails.beginRecord(key: record.key, value: record.value, headerCount: record.headers.count)
        for header in record.headers { tails.header(key: header.key, value: header.value) }
        self.init(timestamp: record.timestamp, tail: tails.bytes[...])
    }
}

/// Writes the tails of many records (``EncodedRecord/tail``) one after another into one buffer: a record is
/// ``beginRecord(key:value:headerCount:)`` followed by exactly `headerCount` calls of a `header` method.
public struct RecordTails: Sendable {
    var writer: ByteWriter

    public init(capacity: Int = 0) { writer = ByteWriter(capacity: capacity) }

    /// Everything written so far.
    public var bytes: [UInt8] { writer.bytes }
    /// Where the next record's tail starts.
    public var count: Int { writer.count }

    /// Starts a record: its key and value (`nil` for null) and the number of headers that follow.
    public mutating func beginRecord(key: [UInt8]?, value: [UInt8]?, headerCount: Int) {
        writeVarBytes(key)
        writeVarBytes(value)
        writer.writeVarint(Int64(headerCount))
    }

    /// Starts a record whose key is the UTF-8 text `key`.
    public mutating func beginRecord(key: String?, value: [UInt8]?, headerCount: Int) {
        if let key { writeText(key) } else { writer.writeVarint(-1) }
        writeVarBytes(value)
        writer.writeVarint(Int64(headerCount))
    }

    /// A header named `key` with the bytes `value` (`nil` for null).
    public mutating func header(key: String, value: [UInt8]?) {
        writeText(key)
        writeVarBytes(value)
    }

    /// A header named `key` whose value is the text `value`.
    public mutating func header(_ key: StaticString, text value: String) {
        writer.writeVarint(Int64(key.utf8CodeUnitCount))
        key.withUTF8Buffer { writer.write(bytes: $0) }
        writeText(value)
    }

    /// A header named `prefix` followed by `key` (e.g. `ce_` and an attribute name), whose value is the text `value`.
    public mutating func header(prefix: StaticString, key: String, text value: String) {
        writer.writeVarint(Int64(prefix.utf8CodeUnitCount + key.utf8.count))
        prefix.withUTF8Buffer { writer.write(bytes: $0) }
        writeUTF8(key)
        writeText(value)
    }

    private mutating func writeVarBytes(_ value: [UInt8]?) {
        guard let value else {
            writer.writeVarint(-1)
            return
        }
        writer.writeVarint(Int64(value.count))
        writer.write(bytes: value)
    }

    /// A varint length and the UTF-8 bytes of `text`.
    private mutating func writeText(_ text: String) {
        writer.writeVarint(Int64(text.utf8.count))
        writeUTF8(text)
    }

    private mutating func writeUTF8(_ text: String) {
        if text.utf8.withContiguousStorageIfAvailable({ writer.write(bytes: $0) }) == nil { writer.write(bytes: Array(text.utf8)) }
    }
}
