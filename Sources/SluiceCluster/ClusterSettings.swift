import CRdKafkaLoader
import Foundation
public import SluiceBroker
import SluiceLog

/// The librdkafka properties of the cluster's clients: Sluice's own producer and consumer settings under their
/// librdkafka names, then every `cluster.<property>` given (which win), each with where it came from.
public struct ClusterSettings: Sendable {
    public struct Property: Sendable, Hashable {
        public var name: String
        public var value: String
        /// The Sluice setting or `cluster.` property it came from, for errors and `sluice config show`.
        public var origin: String
    }

    /// Applied in order to the producer's configuration.
    public private(set) var producer: [Property] = []
    /// Applied in order to the reader's configuration.
    public private(set) var reader: [Property] = []
    public let bootstrapServers: String
    /// Sluice's group settings for the cluster's consumer groups (before the passed-through properties).
    let groupDefaults: [Property]
    /// Whether the producer acknowledges nothing (acks=0): publishes are answered before the cluster has them.
    public let acksNone: Bool
    /// How long a publish waits for the cluster's acknowledgement (librdkafka's `message.timeout.ms`).
    public let messageTimeoutMs: Int
    let autoOffsetReset: String
    /// The `transactional.id` of the producer of atomic publishes: `cluster.transactional.id`, else one per host and
    /// data directory (stable across restarts, so that a restarted agent fences its previous self).
    public let transactionalId: String
    let sessionTimeoutMs: Int64
    let heartbeatIntervalMs: Int64

    /// librdkafka's version, as the library in this process reports it.
    public static var librdkafkaVersion: String { String(cString: rd_kafka_version_str()) }

    /// How long a publish waits for the cluster before it is answered 503, unless `cluster.message.timeout.ms`
    /// says otherwise (librdkafka's own default is five minutes, too long for an HTTP request).
    public static let defaultMessageTimeoutMs = 10_000

    public init(config: SluiceConfig) {
        bootstrapServers = config.string("cluster.bootstrap.servers")
        acksNone = config.acks == .none
        let timeout = config.clusterProperties["message.timeout.ms"] ?? config.clusterProperties["delivery.timeout.ms"]
        messageTimeoutMs = timeout.flatMap { Int($0.value) } ?? Self.defaultMessageTimeoutMs
        autoOffsetReset = config.string("auto.offset.reset")
        let directory = URL(fileURLWithPath: config.dataDirectory).standardizedFileURL.path
        transactionalId = config.clusterProperties["transactional.id"]?.value
            ?? "sluice-\(ProcessInfo.processInfo.hostName)-\(String(StableHash.fnv1a(directory), radix: 16))"
        sessionTimeoutMs = config.clusterProperties["session.timeout.ms"].flatMap { Int64($0.value) } ?? config.integer("session.timeout.ms")
        heartbeatIntervalMs = config.clusterProperties["heartbeat.interval.ms"].flatMap { Int64($0.value) } ?? config.integer("heartbeat.interval.ms")
        var common: [Property] = []
        func from(_ setting: String, _ name: String, _ value: String? = nil) -> Property {
            Property(name: name, value: value ?? config.string(setting), origin: "\(setting) (from \(config.source(setting)))")
        }
        common.append(from("cluster.bootstrap.servers", "bootstrap.servers"))
        common.append(Property(name: "client.id", value: "sluice", origin: "Sluice"))

        var producer = common
        producer.append(from("acks", "acks"))
        producer.append(from("enable.idempotence", "enable.idempotence"))
        producer.append(from("linger.ms", "linger.ms"))
        producer.append(from("batch.size", "batch.size"))
        producer.append(from("compression.type", "compression.type"))
        if config.compression.codec.levels != nil {
            producer.append(from("compression.level", "compression.level"))
        }
        producer.append(from("buffer.memory", "queue.buffering.max.kbytes", String(max(1, config.integer("buffer.memory") / 1024))))
        producer.append(from("max.in.flight.requests.per.connection", "max.in.flight.requests.per.connection"))
        producer.append(from("max.request.size", "message.max.bytes", String(min(max(1000, config.integer("max.request.size")), 1_000_000_000))))
        producer.append(Property(name: "message.timeout.ms", value: String(Self.defaultMessageTimeoutMs), origin: "Sluice's default for publishes"))
        producer.append(Property(name: "statistics.interval.ms", value: "1000", origin: "Sluice (cluster health on /metrics)"))

        var reader = common
        reader.append(from("fetch.min.bytes", "fetch.min.bytes"))
        reader.append(from("fetch.max.wait.ms", "fetch.wait.max.ms"))
        reader.append(from("max.partition.fetch.bytes", "max.partition.fetch.bytes"))
        reader.append(from("isolation.level", "isolation.level"))
        reader.append(Property(name: "enable.partition.eof", value: "true", origin: "Sluice (reads end at the log end)"))
        // Reads start where the API asks; what the reader prefetches per partition stays small.
        reader.append(Property(name: "queued.max.messages.kbytes", value: "4096", origin: "Sluice's default for reads"))

        groupDefaults = [
            from("session.timeout.ms", "session.timeout.ms"),
            from("heartbeat.interval.ms", "heartbeat.interval.ms"),
            Property(name: "enable.auto.commit", value: "false", origin: "Sluice (subscribers commit what they finished)"),
            Property(name: "enable.auto.offset.store", value: "false", origin: "Sluice (subscribers commit what they finished)"),
            // A subscriber paused behind its circuit breaker keeps its partitions; a dead one loses them after session.timeout.ms.
            Property(name: "max.poll.interval.ms", value: "86400000", origin: "Sluice (a paused subscriber keeps its partitions)"),
        ]

        // Passed-through properties win, in name order; unknown ones fail in ``check()``.
        for (name, setting) in config.clusterProperties.sorted(by: { $0.key < $1.key }) where name != "transactional.id" {
            let property = Property(name: name, value: setting.value, origin: "\(SluiceConfig.clusterPrefix)\(name) (from \(setting.source))")
            if Self.consumerOnly.contains(name) {
                reader.append(property)
            } else if Self.producerOnly.contains(name) {
                producer.append(property)
            } else {
                producer.append(property)
                reader.append(property)
            }
        }
        self.producer = producer
        self.reader = reader
    }

    /// The properties of a consumer in `group`: the reader's, Sluice's group settings, the passed-through ones
    /// again (they win), then what the member itself needs.
    /// A group member's consumer: the reader's properties, the group defaults, what was passed through, and what the
    /// member asked for when it joined (its session timeout and assignment strategy win over both).
    func groupMember(group: String, options: MemberOptions) -> [Property] {
        let passed = reader.filter { $0.origin.hasPrefix(SluiceConfig.clusterPrefix) }
        var own = [
            Property(name: "group.id", value: group, origin: "the member's group"),
            Property(name: "client.id", value: options.clientId.isEmpty ? "sluice" : options.clientId, origin: "the member"),
            Property(name: "auto.offset.reset", value: (options.offsetReset ?? autoOffsetReset) == "none" ? "error" : options.offsetReset ?? autoOffsetReset,
                     origin: "the member's start"),
        ]
        if let timeout = options.sessionTimeoutMs {
            own.append(Property(name: "session.timeout.ms", value: String(timeout), origin: "the member's session_timeout_ms"))
            own.append(Property(name: "heartbeat.interval.ms", value: String(min(heartbeatIntervalMs, timeout / 3)), origin: "a third of the member's session_timeout_ms at most"))
        }
        if let strategy = options.strategy {
            // Sluice's sticky moves only what must move: librdkafka's incremental protocol does the same.
            own.append(Property(name: "partition.assignment.strategy", value: strategy == .sticky ? "cooperative-sticky" : "range",
                                origin: "the member's assignment_strategy"))
        }
        return reader.filter { $0.name != "enable.partition.eof" && $0.name != "queued.max.messages.kbytes" } + groupDefaults + passed + own
    }

    /// Whether a property holds a secret (passwords, keys), printed as `***`.
    public static func isSecret(_ name: String) -> Bool {
        name.contains("password") || name.contains("secret") || name.hasSuffix(".pem") || name == "ssl_key"
    }

    /// Properties that only a consumer reads (given to the reader alone, so the producer does not warn about them).
    static let consumerOnly: Set<String> = [
        "fetch.min.bytes", "fetch.wait.max.ms", "fetch.max.bytes", "max.partition.fetch.bytes", "fetch.message.max.bytes", "fetch.error.backoff.ms",
        "isolation.level", "enable.partition.eof", "queued.min.messages", "queued.max.messages.kbytes", "check.crcs", "auto.offset.reset",
        "group.id", "group.instance.id", "session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy", "enable.auto.commit",
        "auto.commit.interval.ms", "enable.auto.offset.store", "max.poll.interval.ms", "client.rack",
    ]
    /// Properties that only a producer reads.
    static let producerOnly: Set<String> = [
        "acks", "request.required.acks", "enable.idempotence", "linger.ms", "queue.buffering.max.ms", "batch.size", "batch.num.messages",
        "compression.type", "compression.codec", "compression.level", "queue.buffering.max.kbytes", "queue.buffering.max.messages",
        "message.timeout.ms", "delivery.timeout.ms", "request.timeout.ms", "retries", "message.send.max.retries", "retry.backoff.ms",
        "max.in.flight.requests.per.connection", "max.in.flight", "partitioner", "sticky.partitioning.linger.ms", "transactional.id",
        "transaction.timeout.ms", "enable.gapless.guarantee", "statistics.interval.ms",
    ]

    /// Builds a librdkafka configuration from `properties`; a property librdkafka refuses is a ``ConfigError``
    /// naming where it came from and librdkafka's reason.
    static func makeConfiguration(_ properties: [Property]) throws(ConfigError) -> OpaquePointer {
        try RdKafkaLibrary.require()
        guard let conf = rd_kafka_conf_new() else { throw ConfigError("librdkafka could not allocate a configuration") }
        var reason = [CChar](repeating: 0, count: 512)
        for property in properties {
            let status = rd_kafka_conf_set(conf, property.name, property.value, &reason, reason.count)
            guard status == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                let why = errorText(reason)
                let what = status == RD_KAFKA_CONF_UNKNOWN ? "is not a property of librdkafka \(librdkafkaVersion)" : "is invalid"
                throw ConfigError("\(property.name)=\(property.value) from \(property.origin) \(what): \(why); see librdkafka's CONFIGURATION.md for the properties and values it takes")
            }
        }
        return conf
    }

    /// Checks every property against librdkafka without connecting anywhere: an unknown name or a bad value is
    /// an error that stops startup (exit 2).
    public func check() throws(ConfigError) {
        rd_kafka_conf_destroy(try Self.makeConfiguration(producer))
        rd_kafka_conf_destroy(try Self.makeConfiguration(reader))
    }
}

/// librdkafka, opened on first use (CRdKafkaLoader): every client starts from a configuration, so
/// ``ClusterSettings/makeConfiguration(_:)`` asks for it first. Only `log.backend=kafka` (and checking its
/// settings) maps librdkafka, libssl and libcrypto; the embedded log never does.
enum RdKafkaLibrary {
    /// The outcome of the first attempt: nil when librdkafka is loaded, else why not.
    private static let failure: String? = open(path: nil)

    /// Opens librdkafka from `path` (nil: `librdkafka.so.1` on the loader's search path); nil, or the reason it failed.
    static func open(path: String?) -> String? {
        var error = [CChar](repeating: 0, count: 512)
        return sluice_rdkafka_load(path, &error, error.count) == 0 ? nil : errorText(error)
    }

    /// Throws, for a message at startup (exit 2), when librdkafka cannot be used.
    static func require() throws(ConfigError) {
        if let failure { throw ConfigError(Self.message(failure)) }
    }

    static func message(_ failure: String) -> String {
        "log.backend=kafka needs librdkafka 2.0 or later, which could not be loaded (\(failure)); install it (Debian: apt-get install librdkafka1) or use log.backend=embedded"
    }
}

/// The text librdkafka wrote into an error buffer, up to its terminating NUL.
func errorText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
