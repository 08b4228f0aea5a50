#if canImport(Glibc)
import Glibc
#endif
import SluiceLog

/// One tunable setting. Its flag (`--linger-ms`), `-X` name (`linger.ms`), environment variable
/// (`SLUICE_LINGER_MS`) and YAML key (`linger.ms`) all derive from ``name``: the list in
/// ``ConfigProperty/all`` is the single source of every setting's names.
public struct ConfigProperty: Sendable, Hashable {
    public enum Group: String, Sendable, CaseIterable {
        case producer, consumer, topic, agent
    }

    public enum Kind: Sendable, Hashable {
        case integer(ClosedRange<Int64>)
        case boolean
        case choice([String])
        case string
        /// `host:port`
        case address
        /// `host:port`, or `off` to disable a listener
        case addressOrOff

        var allowed: String {
            switch self {
            case .integer(let range):
                if range.upperBound == Int64.max { return "an integer ≥ \(range.lowerBound)" }
                return "an integer from \(range.lowerBound) to \(range.upperBound)"
            case .boolean: return "true or false"
            case .choice(let values): return "one of " + values.joined(separator: ", ")
            case .string: return "a string"
            case .address: return "host:port, e.g. 127.0.0.1:7470 (port 0 picks a free port)"
            case .addressOrOff: return "host:port, e.g. 127.0.0.1:9092 (port 0 picks a free port), or off"
            }
        }
    }

    public var name: String
    public var group: Group
    public var kind: Kind
    public var defaultValue: String
    public var help: String
    /// Printed as `***` by `sluice config show`.
    public var secret: Bool = false

    // Both are made from the name's ASCII bytes: they are asked for every property at every start (settings,
    // `--help`), where Foundation's `replacingOccurrences` cost ~2 ms.
    public var flag: String { "--" + String(decoding: name.utf8.map { $0 == UInt8(ascii: ".") ? UInt8(ascii: "-") : $0 }, as: UTF8.self) }
    public var environmentVariable: String {
        "SLUICE_" + String(decoding: name.utf8.map { byte -> UInt8 in
            switch byte {
            case UInt8(ascii: "."), UInt8(ascii: "-"): UInt8(ascii: "_")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - 32
            default: byte
            }
        }, as: UTF8.self)
    }

    /// Checks `value` against the kind; returns the value in canonical form or a description of what is allowed.
    func normalize(_ value: String) -> String? {
        switch kind {
        case .integer(let range):
            guard let number = Int64(value), range.contains(number) else { return nil }
            return String(number)
        case .boolean:
            switch value.lowercased() {
            case "true", "1", "yes", "on": return "true"
            case "false", "0", "no", "off": return "false"
            default: return nil
            }
        case .choice(let values):
            return values.contains(value.lowercased()) ? value.lowercased() : nil
        case .string:
            return value
        case .address:
            return HostPort(value) != nil ? value : nil
        case .addressOrOff:
            if value.lowercased() == "off" { return "off" }
            return HostPort(value) != nil ? value : nil
        }
    }
}

extension ConfigProperty {
    /// Every setting Sluice understands.
    public static let all: [ConfigProperty] = [
        // Producer (Kafka names and meanings)
        .init(name: "acks", group: .producer, kind: .choice(["0", "1", "all"]), defaultValue: "all",
              help: "When a publish is acknowledged: 0 before the append, 1 after the append, all after an fsync (group commit)."),
        .init(name: "enable.idempotence", group: .producer, kind: .boolean, defaultValue: "true",
              help: "A re-sent CloudEvent (same source and id) within idempotence.window.ms gets its original offset back instead of a duplicate. Needs acks=all."),
        .init(name: "transaction.timeout.ms", group: .producer, kind: .integer(1000...900_000), defaultValue: "60000",
              help: "An atomic publish still open after this long is aborted, and its commit refused (Kafka producers set their own with InitProducerId)."),
        .init(name: "linger.ms", group: .producer, kind: .integer(0...60_000), defaultValue: "5",
              help: "How long a partition's batch waits for more events before it is written."),
        .init(name: "batch.size", group: .producer, kind: .integer(1...67_108_864), defaultValue: "16384",
              help: "Bytes of events that fill a partition's batch; a full batch is written at once."),
        .init(name: "compression.type", group: .producer, kind: .choice(CompressionCodec.allCases.map(\.description)), defaultValue: "gzip",
              help: "How record batches are compressed: none, gzip, snappy, lz4 or zstd."),
        .init(name: "compression.level", group: .producer, kind: .integer(1...22), defaultValue: "1",
              help: "The codec's level, 1 fastest: gzip 1–9, lz4 1–12, zstd 1–22; snappy and none have no levels."),
        .init(name: "buffer.memory", group: .producer, kind: .integer(1024...Int64(Int32.max)), defaultValue: "33554432",
              help: "Bytes of accepted events not yet written; beyond it publishes get 429 with Retry-After."),
        .init(name: "max.in.flight.requests.per.connection", group: .producer, kind: .integer(1...100), defaultValue: "5",
              help: "Batches per partition being compressed at once ahead of the append; 1 compresses one batch at a time."),
        .init(name: "max.request.size", group: .producer, kind: .integer(1024...Int64(Int32.max)), defaultValue: "1048576",
              help: "Largest publish request body in bytes; larger ones get 413."),
        .init(name: "idempotence.window.ms", group: .producer, kind: .integer(1000...86_400_000), defaultValue: "300000",
              help: "How long a CloudEvent's source and id are remembered for deduplication."),
        .init(name: "idempotence.window.max.events", group: .producer, kind: .integer(1000...100_000_000), defaultValue: "750000",
              help: "Most published events the idempotence window remembers, over all topics (about 115 bytes of memory each); beyond it the oldest are forgotten before idempotence.window.ms passes."),
        // Consumer
        .init(name: "fetch.min.bytes", group: .consumer, kind: .integer(1...Int64(Int32.max)), defaultValue: "1",
              help: "A read waits until this many bytes are available (or fetch.max.wait.ms passes)."),
        .init(name: "fetch.max.wait.ms", group: .consumer, kind: .integer(0...300_000), defaultValue: "500",
              help: "Longest a read waits for fetch.min.bytes."),
        .init(name: "max.partition.fetch.bytes", group: .consumer, kind: .integer(1...Int64(Int32.max)), defaultValue: "1048576",
              help: "Most bytes one read returns from a partition (at least one batch is always returned)."),
        .init(name: "max.poll.records", group: .consumer, kind: .integer(1...100_000), defaultValue: "500",
              help: "Most events one read returns."),
        .init(name: "session.timeout.ms", group: .consumer, kind: .integer(1000...3_600_000), defaultValue: "45000",
              help: "A consumer-group member that is not heard from for this long is removed."),
        .init(name: "heartbeat.interval.ms", group: .consumer, kind: .integer(100...3_600_000), defaultValue: "3000",
              help: "How often members are expected to heartbeat; must be below session.timeout.ms."),
        .init(name: "auto.offset.reset", group: .consumer, kind: .choice(["earliest", "latest", "none"]), defaultValue: "latest",
              help: "Where a read without an offset (or a new group) starts; none makes it an error."),
        .init(name: "isolation.level", group: .consumer, kind: .choice(["read_committed", "read_uncommitted"]), defaultValue: "read_committed",
              help: "What reads, groups, subscriptions, sagas and lag see of transactions: read_committed stops at the last stable offset and skips aborted events; read_uncommitted sees every event up to the log end."),
        .init(name: "enable.auto.commit", group: .consumer, kind: .boolean, defaultValue: "true",
              help: "Whether consumer groups commit polled offsets automatically."),
        .init(name: "partition.assignment.strategy", group: .consumer, kind: .choice(["range", "sticky"]), defaultValue: "range",
              help: "How a group's partitions are spread over its members when a member does not ask for a strategy."),
        .init(name: "lag.interval.ms", group: .consumer, kind: .integer(50...600_000), defaultValue: "5000",
              help: "How often consumer-group lag and status are computed in the background (scrapes read the result)."),
        .init(name: "lag.window.ms", group: .consumer, kind: .integer(100...86_400_000), defaultValue: "300000",
              help: "Sliding window of lag samples and commits that a group's status (OK, WARN, STALL, STOP, ERR) is judged over."),
        .init(name: "lag.slo.ms", group: .consumer, kind: .integer(0...Int64.max), defaultValue: "0",
              help: "Lag in milliseconds above which a group is ERR; 0 disables. Per group: the consumer_groups section of the config file."),
        .init(name: "group.max.count", group: .consumer, kind: .integer(1...1_000_000), defaultValue: "10000",
              help: "Most consumer groups (with members or committed offsets); joining or committing for another is refused with 409. Bounds the group label's values."),
        .init(name: "lag.groups", group: .consumer, kind: .string, defaultValue: "",
              help: "With log.backend=kafka: a regular expression; the cluster's other consumer groups whose whole name it matches get lag metrics too (the subscriptions' groups always do). Empty: none."),
        .init(name: "lag.groups.exclude", group: .consumer, kind: .string, defaultValue: "",
              help: "With log.backend=kafka: a regular expression of group names left out of lag.groups."),
        .init(name: "lag.max.series", group: .consumer, kind: .integer(0...Int64(Int32.max)), defaultValue: "0",
              help: "Keep per-partition lag series only for this many most-lagging partitions (sums and maxima are always kept); 0 keeps all."),
        // Topic defaults
        .init(name: "num.partitions", group: .topic, kind: .integer(1...10_000), defaultValue: "3",
              help: "Partitions of a topic created without a count (and of auto-created topics)."),
        .init(name: "retention.ms", group: .topic, kind: .integer(-1...Int64.max), defaultValue: "604800000",
              help: "Default retention by age; -1 keeps forever."),
        .init(name: "retention.bytes", group: .topic, kind: .integer(-1...Int64.max), defaultValue: "-1",
              help: "Default retention by partition size; -1 means no limit."),
        .init(name: "segment.bytes", group: .topic, kind: .integer(14...Int64(Int32.max)), defaultValue: "1073741824",
              help: "Default segment file size."),
        .init(name: "flush.policy", group: .topic, kind: .choice(["sync", "interval", "os"]), defaultValue: "interval",
              help: "Default background flush of topics (acks=all always waits for its own fsync)."),
        .init(name: "flush.ms", group: .topic, kind: .integer(1...3_600_000), defaultValue: "1000",
              help: "Background fsync interval with flush.policy=interval."),
        .init(name: "auto.create.topics.enable", group: .topic, kind: .boolean, defaultValue: "true",
              help: "Publishing to a missing topic creates it with num.partitions."),
        .init(name: "partition.throughput.bytes", group: .topic, kind: .integer(1...Int64.max), defaultValue: "10485760",
              help: "Bytes per second one partition takes (measure with sluice bench log); sizes sluice_topic_partitions_recommended."),
        .init(name: "retention.check.interval.ms", group: .topic, kind: .integer(1000...86_400_000), defaultValue: "300000",
              help: "How often retention runs."),
        // Agent
        .init(name: "data.dir", group: .agent, kind: .string, defaultValue: "./sluice-data", help: "Directory holding the log."),
        .init(name: "api.address", group: .agent, kind: .address, defaultValue: "127.0.0.1:7470",
              help: "Address of the HTTP API. Anything but loopback needs api.token."),
        .init(name: "metrics.address", group: .agent, kind: .address, defaultValue: "0.0.0.0:9470",
              help: "Address of /metrics (and /healthz, /readyz)."),
        .init(name: "log.backend", group: .agent, kind: .choice(["embedded", "kafka"]), defaultValue: "embedded",
              help: "Where events are stored: embedded (this machine's data.dir) or kafka (a Kafka cluster at cluster.bootstrap.servers, through librdkafka; every cluster.<librdkafka property> is passed on)."),
        .init(name: "cluster.bootstrap.servers", group: .agent, kind: .string, defaultValue: "",
              help: "The Kafka cluster's brokers for log.backend=kafka, host:port[,host:port…]."),
        .init(name: "kafka.address", group: .agent, kind: .addressOrOff, defaultValue: "127.0.0.1:9092",
              help: "Address of the Kafka protocol listener, or off. Anything but loopback needs api.token (then clients authenticate with SASL/PLAIN, the token as password)."),
        .init(name: "kafka.advertised.address", group: .agent, kind: .string, defaultValue: "",
              help: "host:port that Metadata tells Kafka clients to connect to; empty: the bound kafka.address."),
        .init(name: "socket.request.max.bytes", group: .agent, kind: .integer(1024...2_147_483_647), defaultValue: "104857600",
              help: "Largest Kafka request frame; a larger one closes the connection."),
        .init(name: "subscription.max.count", group: .agent, kind: .integer(1...100_000), defaultValue: "1000",
              help: "Most push subscriptions (file and API together); another PUT is refused with 409. Bounds the subscription label's values."),
        .init(name: "http.max.connections", group: .agent, kind: .integer(1...100_000), defaultValue: "512",
              help: "Open connections per listener (API and metrics, each its own); beyond it new ones wait in the accept queue."),
        .init(name: "http.idle.timeout.ms", group: .agent, kind: .integer(100...3_600_000), defaultValue: "60000",
              help: "Close a connection that sends no complete request head for this long (idle keep-alive, or headers sent too slowly)."),
        .init(name: "http.body.timeout.ms", group: .agent, kind: .integer(100...3_600_000), defaultValue: "30000",
              help: "Close a connection whose request body has not fully arrived this long after its head."),
        .init(name: "api.token", group: .agent, kind: .string, defaultValue: "",
              help: "When set, every API call but health needs Authorization: Bearer <token>.", secret: true),
        .init(name: "schemas", group: .agent, kind: .string, defaultValue: "",
              help: "A directory of JSON Schemas (draft-07) for event data, as TYPE/VERSION.json files, and TYPE.json with a type's compatibility and upcasters; checked at startup (read-only over HTTP)."),
        .init(name: "schema.validation", group: .topic, kind: .choice(["off", "warn", "enforce"]), defaultValue: "off",
              help: "Check published event data against its type's schema: off, warn (log and count), enforce (400 naming each failure). A topic's schema.validation overrides it."),
        .init(name: "schema.compatibility", group: .agent, kind: .choice(["none", "backward", "forward", "full"]), defaultValue: "none",
              help: "How a type's next schema version must relate to the one before, unless the type's settings say otherwise: backward (old events, upcast, valid under it), forward (its events valid under the old), full (both) or none."),
        .init(name: "schema.version.attribute", group: .agent, kind: .string, defaultValue: "eventversion",
              help: "The CloudEvents extension holding an event's schema version; without it, the last path segment of dataschema; without both, the type's latest version."),
        .init(name: "trace.enabled", group: .agent, kind: .boolean, defaultValue: "true",
              help: "Keep the correlation trace index (GET /v1/traces, sluice trace): events read back from the log, deliveries, dead letters, replays and saga steps."),
        .init(name: "trace.stale.ms", group: .agent, kind: .integer(1000...Int64.max), defaultValue: "300000",
              help: "A trace in flight (an event awaiting a delivery, a saga not final) without progress for this long is stale."),
        .init(name: "trace.max.traces", group: .agent, kind: .integer(1...100_000_000), defaultValue: "20000",
              help: "Most correlation traces kept; beyond it those with the oldest activity are dropped."),
        .init(name: "trace.max.bytes", group: .agent, kind: .integer(1 << 20...Int64(Int32.max) * 64), defaultValue: "33554432",
              help: "Most bytes of trace hops kept in memory (about 80 per hop); beyond it the traces with the oldest activity are dropped. The process holds about 2.4 times this."),
        .init(name: "trace.max.hops", group: .agent, kind: .integer(1...1_000_000), defaultValue: "1000",
              help: "Most hops kept per trace; later ones are counted (dropped_hops) and still move its status."),
        .init(name: "trace.retention.ms", group: .agent, kind: .integer(60_000...Int64.max), defaultValue: "86400000",
              help: "Traces without activity for this long are dropped (memory and DATA/traces/traces.journal)."),
        .init(name: "otlp.endpoint", group: .agent, kind: .string, defaultValue: "",
              help: "OpenTelemetry collector (OTLP over HTTP, e.g. http://127.0.0.1:4318): export spans of publishes, deliveries, dead letters, replays and saga steps to its /v1/traces. Empty: no spans are made."),
        .init(name: "otlp.service.name", group: .agent, kind: .string, defaultValue: "sluice",
              help: "service.name of the exported spans (OTEL_SERVICE_NAME overrides it, as do the other OTEL_* variables of the OpenTelemetry SDK)."),
        .init(name: "default.topic", group: .agent, kind: .string, defaultValue: "events",
              help: "Topic for POST /v1/events when no route matches the event type."),
        .init(name: "log.level", group: .agent, kind: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
              defaultValue: "info", help: "Lowest level written."),
        .init(name: "log.format", group: .agent, kind: .choice(["json", "text"]), defaultValue: "json",
              help: "json (one ECS-style object per line) or text (for humans)."),
        .init(name: "log.file", group: .agent, kind: .string, defaultValue: "", help: "Write logs to this file instead of standard output."),
        .init(name: "log.file.max.bytes", group: .agent, kind: .integer(4096...Int64.max), defaultValue: "104857600",
              help: "Rotate log.file when it would grow past this size."),
        .init(name: "sagas.file", group: .agent, kind: .string, defaultValue: "",
              help: "A YAML file with sagas and observed_sagas sections, read besides those of the config file."),
        .init(name: "log.file.max.files", group: .agent, kind: .integer(0...1000), defaultValue: "5",
              help: "Rotated log files kept (log.file.1 … log.file.N)."),
    ]

    public static let byName: [String: ConfigProperty] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
    public static let byFlag: [String: ConfigProperty] = Dictionary(uniqueKeysWithValues: all.map { ($0.flag, $0) })
    public static let byEnvironment: [String: ConfigProperty] = Dictionary(uniqueKeysWithValues: all.map { ($0.environmentVariable, $0) })
}

/// A parsed `host:port`.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        var hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (0...65535).contains(port) else { return nil }
        host = String(hostPart)
        self.port = port
    }

    /// Whether the host is a numeric loopback address (127.0.0.0/8, ::1, or 127/8 mapped into IPv6). A name is
    /// never loopback by itself: ``resolved()`` first, and decide on the address that is bound.
    public var isLoopback: Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
        return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
    }

    /// The same port on the numeric address the host resolves to (the first IPv4 address, else the first IPv6),
    /// which is what the listener binds: a name is looked up once, here.
    ///
    /// - Throws: a message naming the host when it does not resolve.
    public func resolved() throws(HostResolutionError) -> HostPort {
        // A numeric address is its own answer: getaddrinfo would still ask the kernel for the machine's addresses
        // (AI_ADDRCONFIG's netlink query), three times in every start.
        var numeric = in6_addr()
        if inet_pton(AF_INET, host, &numeric) == 1 || inet_pton(AF_INET6, host, &numeric) == 1 { return self }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let list else {
            throw HostResolutionError(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var v4: String?
        var v6: String?
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(cString: buffer)
                if current.pointee.ai_family == AF_INET { v4 = v4 ?? text } else if current.pointee.ai_family == AF_INET6 { v6 = v6 ?? text }
            }
            entry = current.pointee.ai_next
        }
        guard let address = v4 ?? v6 else { throw HostResolutionError(host: host, reason: "no IPv4 or IPv6 address") }
        var copy = self
        copy.host = address
        return copy
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A listener's host that does not resolve to an address.
public struct HostResolutionError: Error, Sendable {
    public var host: String
    public var reason: String
}
