/// When appended data is forced to stable storage.
public enum FlushPolicy: Sendable, Hashable, CustomStringConvertible {
    /// fsync before an append returns. Concurrent appends share one fsync (group commit).
    /// Guarantee: an acknowledged record survives a process crash and a power loss.
    case sync
    /// fsync in the background every `milliseconds`.
    /// Guarantee: survives a process crash; a power loss can lose up to that interval of acknowledged records.
    case interval(milliseconds: Int64)
    /// Never fsync explicitly except when a segment is rolled and at shutdown; the OS writes back dirty pages.
    /// Guarantee: survives a process crash (the page cache outlives the process); a power loss can lose
    /// whatever the kernel had not yet written back (typically up to ~30 s on Linux).
    case os

    public var description: String {
        switch self {
        case .sync: "sync"
        case .interval: "interval"
        case .os: "os"
        }
    }
}

/// Storage settings of a topic, by their Kafka property names.
public struct TopicConfig: Sendable, Hashable {
    /// `segment.bytes`: roll to a new segment file once the active one would exceed this size. Default 1 GiB.
    public var segmentBytes: Int64
    /// `segment.ms`: roll once the active segment's first batch is older than this. Default 7 days.
    public var segmentMs: Int64
    /// `retention.ms`: delete sealed segments whose newest record is older than this; -1 keeps forever. Default 7 days.
    public var retentionMs: Int64
    /// `retention.bytes`: delete the oldest sealed segments while the partition is larger than this; -1 means no limit. Default -1.
    public var retentionBytes: Int64
    /// `max.message.bytes`: the largest record batch accepted, in bytes. Default 1048588 (Kafka's).
    public var maxMessageBytes: Int
    /// `index.interval.bytes`: bytes of log between two sparse index entries. Default 4096.
    public var indexIntervalBytes: Int
    /// `flush.policy` (`sync` | `interval` | `os`) with `flush.ms` for `interval`. Default `sync`.
    public var flushPolicy: FlushPolicy
    /// `compression.type`: nil is Kafka's `producer` (batches stay as the producer compressed them: a Kafka
    /// client's codec, the agent's `compression.type` over HTTP); a codec makes every batch of the topic that
    /// codec, at its Kafka default level (gzip 6, lz4 9, zstd 3), recompressing Kafka batches of another codec.
    public var compression: CompressionCodec?
    /// `schema.validation` (`off` | `warn` | `enforce`): whether published event data is checked against its schema;
    /// nil follows the agent's `schema.validation`.
    public var schemaValidation: String?

    public static let schemaValidationModes = ["off", "warn", "enforce"]

    public init(
        segmentBytes: Int64 = 1 << 30,
        segmentMs: Int64 = 7 * 24 * 3_600_000,
        retentionMs: Int64 = 7 * 24 * 3_600_000,
        retentionBytes: Int64 = -1,
        maxMessageBytes: Int = 1_048_588,
        indexIntervalBytes: Int = 4096,
        flushPolicy: FlushPolicy = .sync,
        compression: CompressionCodec? = nil
    ) {
        self.segmentBytes = segmentBytes
        self.segmentMs = segmentMs
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.maxMessageBytes = maxMessageBytes
        self.indexIntervalBytes = indexIntervalBytes
        self.flushPolicy = flushPolicy
        self.compression = compression
    }

    /// Every property this type understands, with what it allows.
    public static let properties: [(name: String, allowed: String)] = [
        ("segment.bytes", "an integer from 14 to 2147483647"),
        ("segment.ms", "an integer from 1"),
        ("retention.ms", "-1 (forever) or an integer from 0"),
        ("retention.bytes", "-1 (no limit) or an integer from 0"),
        ("max.message.bytes", "an integer from 61 to 1073741824"),
        ("index.interval.bytes", "an integer from 0"),
        ("flush.policy", "one of sync, interval, os"),
        ("flush.ms", "an integer from 1 (with flush.policy=interval)"),
        ("compression.type", "producer (keep what the producer sent) or one of " + CompressionCodec.names),
        ("schema.validation", "one of off, warn, enforce (default: the agent's schema.validation)"),
    ]

    /// Applies Kafka-style properties on top of `self`, naming the property and value in any error.
    public func applying(_ properties: [String: String]) throws -> TopicConfig {
        var config = self
        var flushMs: Int64?
        var policyName: String?
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            func integer(_ range: ClosedRange<Int64>) throws -> Int64 {
                guard let number = Int64(value), range.contains(number) else {
                    throw LogError(.invalidConfig, "topic property \(name)=\(value) is invalid; allowed: \(Self.allowed(name))")
                }
                return number
            }
            switch name {
            case "segment.bytes": config.segmentBytes = try integer(14...Int64(Int32.max))
            case "segment.ms": config.segmentMs = try integer(1...Int64.max)
            case "retention.ms": config.retentionMs = try integer(-1...Int64.max)
            case "retention.bytes": config.retentionBytes = try integer(-1...Int64.max)
            case "max.message.bytes": config.maxMessageBytes = Int(try integer(61...1 << 30))
            case "index.interval.bytes": config.indexIntervalBytes = Int(try integer(0...Int64(Int32.max)))
            case "flush.ms": flushMs = try integer(1...Int64.max)
            case "flush.policy":
                guard ["sync", "interval", "os"].contains(value) else {
                    throw LogError(.invalidConfig, "topic property flush.policy=\(value) is invalid; allowed: \(Self.allowed(name))")
                }
                policyName = value
            case "compression.type":
                if value == "producer" {
                    config.compression = nil
                } else if let codec = CompressionCodec(name: value) {
                    config.compression = codec
                } else {
                    throw LogError(.invalidConfig, "topic property compression.type=\(value) is invalid; allowed: \(Self.allowed(name))")
                }
            case "schema.validation":
                guard Self.schemaValidationModes.contains(value) else {
                    throw LogError(.invalidConfig, "topic property schema.validation=\(value) is invalid; allowed: \(Self.allowed(name))")
                }
                config.schemaValidation = value
            default:
                let known = Self.properties.map(\.name).joined(separator: ", ")
                throw LogError(.invalidConfig, "unknown topic property '\(name)'; known properties: \(known)")
            }
        }
        switch policyName {
        case "sync": config.flushPolicy = .sync
        case "os": config.flushPolicy = .os
        case "interval": config.flushPolicy = .interval(milliseconds: flushMs ?? 1000)
        default:
            if let flushMs {
                guard case .interval = config.flushPolicy else {
                    throw LogError(.invalidConfig, "topic property flush.ms=\(flushMs) needs flush.policy=interval")
                }
                config.flushPolicy = .interval(milliseconds: flushMs)
            }
        }
        return config
    }

    /// The configuration as Kafka-style properties (the form stored in `topic.json`).
    public var properties: [String: String] {
        var out: [String: String] = [
            "segment.bytes": "\(segmentBytes)", "segment.ms": "\(segmentMs)",
            "retention.ms": "\(retentionMs)", "retention.bytes": "\(retentionBytes)",
            "max.message.bytes": "\(maxMessageBytes)", "index.interval.bytes": "\(indexIntervalBytes)",
            "flush.policy": flushPolicy.description, "compression.type": compression?.description ?? "producer",
        ]
        if case .interval(let ms) = flushPolicy { out["flush.ms"] = "\(ms)" }
        if let schemaValidation { out["schema.validation"] = schemaValidation }
        return out
    }

    private static func allowed(_ name: String) -> String {
        properties.first(where: { $0.name == name })?.allowed ?? "?"
    }
}
