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

/// The compression codec of a record batch (attributes bits 0–2), by Kafka's numbers and names.
public enum CompressionCodec: Int16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4

    public init?(name: String) {
        guard let codec = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = codec
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .gzip: "gzip"
        case .snappy: "snappy"
        case .lz4: "lz4"
        case .zstd: "zstd"
        }
    }

    /// The levels the codec takes (gzip 1–9 as zlib, lz4 1–12 as Kafka's `compression.lz4.level`, zstd 1–22 as
    /// `compression.zstd.level`); nil for a codec without levels.
    public var levels: ClosedRange<Int32>? {
        switch self {
        case .none, .snappy: nil
        case .gzip: 1...9
        case .lz4: 1...12
        case .zstd: 1...22
        }
    }

    /// Kafka's default level for the codec: gzip 6 (zlib's), lz4 9, zstd 3; 0 for a codec without levels.
    public var defaultLevel: Int32 {
        switch self {
        case .none, .snappy: 0
        case .gzip: 6
        case .lz4: 9
        case .zstd: 3
        }
    }

    /// The names of every codec, for messages: "none, gzip, snappy, lz4, zstd".
    public static var names: String { allCases.map(\.description).joined(separator: ", ") }

    /// What to say about attributes bits that name no codec.
    public static func unknown(_ raw: Int16) -> String {
        "compression codec \(raw) does not exist; Kafka's are " + allCases.map { "\($0) (\($0.rawValue))" }.joined(separator: ", ")
    }
}

/// How a batch's records section is compressed.
public struct Compression: Sendable, Hashable {
    public var codec: CompressionCodec
    /// The codec's level (``CompressionCodec/levels``); ignored by `none` and `snappy`.
    public var level: Int32

    /// The codec at `level`, or at its ``CompressionCodec/defaultLevel``.
    public init(codec: CompressionCodec, level: Int32? = nil) {
        self.codec = codec
        self.level = level ?? codec.defaultLevel
    }

    public static let none = Compression(codec: .none)
    public static let snappy = Compression(codec: .snappy)
    public static func gzip(level: Int32? = nil) -> Compression { Compression(codec: .gzip, level: level) }
    public static func lz4(level: Int32? = nil) -> Compression { Compression(codec: .lz4, level: level) }
    public static func zstd(level: Int32? = nil) -> Compression { Compression(codec: .zstd, level: level) }
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
