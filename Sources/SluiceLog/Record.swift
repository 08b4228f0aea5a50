/// A record header: a UTF-8 key and an optional value.
public struct RecordHeader: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// One record of a Kafka record batch.
///
/// When encoding, `offset` is ignored: records take consecutive offsets from the batch's base offset.
public struct Record: Sendable, Hashable {
    /// Absolute offset in the partition (filled in when decoding).
    public var offset: Int64
    /// Create time in milliseconds since the Unix epoch.
    public var timestamp: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]

    public init(offset: Int64 = 0, timestamp: Int64, key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = []) {
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// The compression codec of a record batch (attributes bits 0–2).
public enum CompressionCodec: Int16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1

    public init?(name: String) {
        switch name {
        case "none": self = .none
        case "gzip": self = .gzip
        default: return nil
        }
    }

    public var description: String { self == .none ? "none" : "gzip" }
}

/// How a batch's records section is compressed.
public struct Compression: Sendable, Hashable {
    public var codec: CompressionCodec
    /// zlib level 1...9 for gzip; ignored for `none`. Default 6, zlib's default.
    public var level: Int32

    public init(codec: CompressionCodec, level: Int32 = 6) {
        self.codec = codec
        self.level = level
    }

    public static let none = Compression(codec: .none)
    public static func gzip(level: Int32 = 6) -> Compression { Compression(codec: .gzip, level: level) }
}

/// Idempotent-producer fields of a batch. `-1` everywhere means "no producer id".
public struct ProducerInfo: Sendable, Hashable {
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32

    public init(producerId: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1) {
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
    }

    public static let none = ProducerInfo()
}
