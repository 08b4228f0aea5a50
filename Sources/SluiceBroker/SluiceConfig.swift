import Foundation
public import SluiceLog
import Yams

/// Where a setting's value came from.
public enum ConfigSource: Sendable, Hashable, CustomStringConvertible {
    case defaultValue
    case file(path: String, line: Int)
    case environment(String)
    case flag(String)

    public var description: String {
        switch self {
        case .defaultValue: "default"
        case .file(let path, let line): "file \(path):\(line)"
        case .environment(let name): "env \(name)"
        case .flag(let flag): "flag \(flag)"
        }
    }
}

/// A configuration problem: which setting, which value, where it came from, what is allowed.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Sends events of matching types to a topic: `user.*` → `user-events`.
public struct RouteRule: Sendable, Hashable {
    public var pattern: String
    public var topic: String

    public init(pattern: String, topic: String) {
        self.pattern = pattern
        self.topic = topic
    }

    /// Glob match where `*` stands for any run of characters.
    public func matches(_ type: String) -> Bool {
        Self.glob(Array(pattern.utf8)[...], Array(type.utf8)[...])
    }

    private static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        if first == UInt8(ascii: "*") {
            var rest = text
            while true {
                if glob(pattern.dropFirst(), rest) { return true }
                guard !rest.isEmpty else { return false }
                rest = rest.dropFirst()
            }
        }
        guard let head = text.first, head == first else { return false }
        return glob(pattern.dropFirst(), text.dropFirst())
    }
}

/// Acknowledgement modes of the write path.
public enum Acks: String, Sendable, CaseIterable {
    case none = "0"
    case leader = "1"
    case all = "all"
}

/// The effective configuration: every ``ConfigProperty`` resolved (flag > env > file > default) and validated.
public struct SluiceConfig: Sendable {
    /// The raw value and source of every property, by name.
    public let values: [String: (value: String, source: ConfigSource)]
    public let routes: [RouteRule]
    public let routesSource: ConfigSource
    /// The YAML file the configuration came from, if any; features with their own sections
    /// (``fileSectionNames``) read them from it, keeping file and line numbers for their errors.
    public let configFile: String?
    /// Per-group lag SLOs in milliseconds from the file's `consumer_groups` section (`name: {lag.slo.ms: N}`).
    public var groupLagSLOs: [String: Int64] = [:]
    /// The librdkafka properties given as `cluster.<property>` (flag `-X`, env `SLUICE_CLUSTER_*`, file), by
    /// librdkafka's name, for `log.backend=kafka`. The cluster module checks them against librdkafka at startup.
    public var clusterProperties: [String: (value: String, source: ConfigSource)] = [:]
    /// The prefix of settings passed through to the cluster's clients.
    public static let clusterPrefix = "cluster."

    /// Which log the agent runs on (`log.backend`).
    public enum LogBackend: String, Sendable { case embedded, kafka }
    public var logBackend: LogBackend { LogBackend(rawValue: string("log.backend")) ?? .embedded }

    public func string(_ name: String) -> String { values[name]!.value }
    public func integer(_ name: String) -> Int64 { Int64(values[name]!.value)! }
    public func int(_ name: String) -> Int { Int(values[name]!.value)! }
    public func bool(_ name: String) -> Bool { values[name]!.value == "true" }
    public func source(_ name: String) -> ConfigSource { values[name]!.source }

    public var acks: Acks { Acks(rawValue: string("acks"))! }
    public var enableIdempotence: Bool { bool("enable.idempotence") }
    public var compression: Compression {
        Compression(codec: CompressionCodec(name: string("compression.type"))!, level: Int32(integer("compression.level")))
    }
    public var dataDirectory: String { string("data.dir") }
    /// `api.address` as given (a name stays a name); ``apiBindAddress`` is what is bound.
    public var apiAddress: HostPort { HostPort(string("api.address"))! }
    public var metricsAddress: HostPort { HostPort(string("metrics.address"))! }
    /// The numeric addresses the listeners bind, resolved once when the configuration is loaded.
    public private(set) var apiBindAddress = HostPort("127.0.0.1:0")!
    public private(set) var metricsBindAddress = HostPort("127.0.0.1:0")!
    /// `kafka.address` as given, nil when it is `off`; ``kafkaBindAddress`` is what is bound.
    public var kafkaAddress: HostPort? { HostPort(string("kafka.address")) }
    public private(set) var kafkaBindAddress: HostPort?
    /// `kafka.advertised.address`, nil when empty (Metadata then names the bound address).
    public var kafkaAdvertisedAddress: HostPort? { HostPort(string("kafka.advertised.address")) }
    /// The shortest `api.token` accepted.
    public static let minimumTokenLength = 16
    public var apiToken: String? { string("api.token").isEmpty ? nil : string("api.token") }
    /// Where OpenTelemetry spans go (OTLP/HTTP), nil when `otlp.endpoint` is empty: the endpoint's `/v1/traces`,
    /// or the endpoint as given when its path already ends so.
    public private(set) var otlpTracesURL: String?

    /// The default storage settings for new topics.
    public var topicDefaults: TopicConfig {
        var config = TopicConfig()
        config.retentionMs = integer("retention.ms")
        config.retentionBytes = integer("retention.bytes")
        config.segmentBytes = integer("segment.bytes")
        switch string("flush.policy") {
        case "sync": config.flushPolicy = .sync
        case "os": config.flushPolicy = .os
        default: config.flushPolicy = .interval(milliseconds: integer("flush.ms"))
        }
        // A batch as large as the largest request must fit.
        config.maxMessageBytes = max(config.maxMessageBytes, int("max.request.size") + 1024)
        return config
    }

    /// Resolves the configuration.
    ///
    /// - Parameters:
    ///   - arguments: command-line words holding `--property-flag VALUE`, `--property-flag=VALUE`,
    ///     `-X name=value` / `-Xname=value` and `--route PATTERN=TOPIC` (repeatable).
    ///   - environment: the process environment (`SLUICE_*` variables are read).
    ///   - file: a YAML file of `name: value` pairs and sections (`routes`, …), if any.
    public static func load(arguments: [String] = [], environment: [String: String] = [:], file: String? = nil) throws(ConfigError) -> SluiceConfig {
        var values: [String: (value: String, source: ConfigSource)] = [:]
        for property in ConfigProperty.all { values[property.name] = (property.defaultValue, .defaultValue) }
        var cluster: [String: (value: String, source: ConfigSource)] = [:]

        func set(_ name: String, _ raw: String, _ source: ConfigSource) throws(ConfigError) {
            if ConfigProperty.byName[name] == nil, name.hasPrefix(clusterPrefix), name.count > clusterPrefix.count {
                cluster[String(name.dropFirst(clusterPrefix.count))] = (raw, source)
                return
            }
            guard let property = ConfigProperty.byName[name] else {
                throw ConfigError("unknown property '\(name)' (from \(source))\(suggestion(for: name, in: ConfigProperty.all.map(\.name))); `sluice serve --help` lists them all")
            }
            guard let value = property.normalize(raw) else {
                throw ConfigError("\(name)=\(raw) (from \(source)) is invalid: expected \(property.kind.allowed)")
            }
            values[name] = (value, source)
        }

        // Lowest precedence first; later sources overwrite.
        var routes: [RouteRule] = []
        var routesSource = ConfigSource.defaultValue
        var groupLagSLOs: [String: Int64] = [:]
        if let file {
            let parsed = try parseFile(file)
            groupLagSLOs = parsed.groupLagSLOs
            for (name, raw, line) in parsed.properties { try set(name, raw, .file(path: file, line: line)) }
            if !parsed.routes.isEmpty {
                routes = parsed.routes
                routesSource = .file(path: file, line: parsed.routesLine)
            }
        }
        for (variable, raw) in environment.sorted(by: { $0.key < $1.key }) where variable.hasPrefix("SLUICE_") {
            if variable == "SLUICE_ROUTES" {
                routes = try parseRoutes(raw.split(separator: ",").map(String.init), source: .environment(variable))
                routesSource = .environment(variable)
                continue
            }
            if ConfigProperty.byEnvironment[variable] == nil, variable.hasPrefix("SLUICE_CLUSTER_") {
                // SLUICE_CLUSTER_SASL_USERNAME → cluster.sasl.username
                let name = variable.dropFirst("SLUICE_".count).lowercased().replacingOccurrences(of: "_", with: ".")
                try set(name, raw, .environment(variable))
                continue
            }
            guard let property = ConfigProperty.byEnvironment[variable] else {
                throw ConfigError("unknown environment variable \(variable)\(suggestion(for: variable, in: Array(ConfigProperty.byEnvironment.keys))); unset it or fix the name")
            }
            try set(property.name, raw, .environment(variable))
        }
        var flagRoutes: [String] = []
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            func takeValue(_ flag: String) throws(ConfigError) -> String {
                guard index + 1 < arguments.count else { throw ConfigError("\(flag) needs a value") }
                index += 1
                return arguments[index]
            }
            if word == "-X" || (word.hasPrefix("-X") && !word.hasPrefix("--")) {
                let pair = word == "-X" ? try takeValue("-X") : String(word.dropFirst(2))
                guard let equals = pair.firstIndex(of: "=") else {
                    throw ConfigError("-X \(pair) must be name=value, e.g. -X linger.ms=20")
                }
                let name = String(pair[..<equals])
                try set(name, String(pair[pair.index(after: equals)...]), .flag("-X \(name)"))
            } else if word.hasPrefix("--") {
                let flag: String
                var inline: String?
                if let equals = word.firstIndex(of: "=") {
                    flag = String(word[..<equals])
                    inline = String(word[word.index(after: equals)...])
                } else {
                    flag = word
                }
                if flag == "--route" {
                    let value: String
                    if let inline { value = inline } else { value = try takeValue(flag) }
                    flagRoutes.append(value)
                } else if let property = ConfigProperty.byFlag[flag] {
                    let value: String
                    if let inline { value = inline } else { value = try takeValue(flag) }
                    try set(property.name, value, .flag(flag))
                } else {
                    throw ConfigError("unknown option \(flag)\(suggestion(for: flag, in: Array(ConfigProperty.byFlag.keys) + ["--route"])); `sluice serve --help` lists them all")
                }
            } else {
                throw ConfigError("unexpected argument '\(word)'; settings are flags such as --linger-ms 20 or -X linger.ms=20")
            }
            index += 1
        }
        if !flagRoutes.isEmpty {
            routes = try parseRoutes(flagRoutes, source: .flag("--route"))
            routesSource = .flag("--route")
        }

        var config = SluiceConfig(values: values, routes: routes, routesSource: routesSource, configFile: file)
        config.groupLagSLOs = groupLagSLOs
        config.clusterProperties = cluster
        try config.validate()
        return config
    }

    /// Rules that involve more than one setting, and the listeners' addresses resolved.
    mutating func validate() throws(ConfigError) {
        func at(_ name: String) -> String { "\(name)=\(values[name]!.value) (from \(values[name]!.source))" }
        func resolve(_ name: String, _ address: HostPort) throws(ConfigError) -> HostPort {
            do {
                return try address.resolved()
            } catch {
                throw ConfigError("\(at(name)): the host '\(error.host)' does not resolve (\(error.reason)); use an IP address such as 127.0.0.1 or a name this machine resolves")
            }
        }
        apiBindAddress = try resolve("api.address", apiAddress)
        metricsBindAddress = try resolve("metrics.address", metricsAddress)
        try validateBackend(at)
        if let kafkaAddress, logBackend == .embedded {
            kafkaBindAddress = try resolve("kafka.address", kafkaAddress)
        }
        if !string("kafka.advertised.address").isEmpty {
            guard let advertised = kafkaAdvertisedAddress, advertised.port > 0 else {
                throw ConfigError("\(at("kafka.advertised.address")) must be host:port with a port from 1 to 65535 that Kafka clients can reach, e.g. sluice.local:9092")
            }
        }
        let otlp = string("otlp.endpoint")
        if !otlp.isEmpty {
            guard let url = URLComponents(string: otlp), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil else {
                throw ConfigError("\(at("otlp.endpoint")) is not an OTLP/HTTP collector URL: give http(s)://HOST:PORT, e.g. http://127.0.0.1:4318 (spans go to its /v1/traces)")
            }
            otlpTracesURL = url.path.hasSuffix("/v1/traces") ? otlp : otlp + (otlp.hasSuffix("/") ? "" : "/") + "v1/traces"
        }
        if let token = apiToken {
            guard token.count >= Self.minimumTokenLength, !token.contains(where: \.isWhitespace) else {
                throw ConfigError("api.token (from \(source("api.token"))) must be at least \(Self.minimumTokenLength) characters without spaces; generate one with `openssl rand -hex 32`")
            }
        }
        if enableIdempotence && acks != .all {
            throw ConfigError("\(at("enable.idempotence")) needs acks=all, but \(at("acks")); set acks=all or enable.idempotence=false")
        }
        if enableIdempotence && integer("max.in.flight.requests.per.connection") > 5 {
            throw ConfigError("\(at("enable.idempotence")) allows at most 5 in flight, but \(at("max.in.flight.requests.per.connection"))")
        }
        if let levels = compression.codec.levels {
            guard levels.contains(compression.level) else {
                throw ConfigError("\(at("compression.level")) is not a level of \(at("compression.type")): use \(levels.lowerBound)–\(levels.upperBound)")
            }
        } else if source("compression.level") != .defaultValue {
            throw ConfigError("\(at("compression.type")) has no levels, but \(at("compression.level")) is set; remove compression.level or choose gzip, lz4 or zstd")
        }
        if compression.codec == .snappy, let unavailable = Snappy.unavailable {
            throw ConfigError("\(at("compression.type")): \(unavailable)")
        }
        if integer("heartbeat.interval.ms") >= integer("session.timeout.ms") {
            throw ConfigError("\(at("heartbeat.interval.ms")) must be below \(at("session.timeout.ms"))")
        }
        if integer("buffer.memory") < integer("max.request.size") {
            throw ConfigError("\(at("buffer.memory")) must be at least \(at("max.request.size")), or no request could ever be accepted")
        }
        if apiToken == nil && !apiBindAddress.isLoopback {
            let resolvedNote = apiBindAddress.host == apiAddress.host ? "" : " (it resolves to \(apiBindAddress.host))"
            throw ConfigError("\(at("api.address")) is not a loopback address\(resolvedNote), so api.token must be set (the API would be open to the network)")
        }
        if let kafkaBindAddress, apiToken == nil, !kafkaBindAddress.isLoopback {
            let resolvedNote = kafkaBindAddress.host == kafkaAddress?.host ? "" : " (it resolves to \(kafkaBindAddress.host))"
            throw ConfigError("\(at("kafka.address")) is not a loopback address\(resolvedNote), so api.token must be set (Kafka clients then authenticate with SASL/PLAIN, the token as password); or set kafka.address=off")
        }
        if !TopicName.isValid(string("default.topic")) {
            throw ConfigError("\(at("default.topic")) is not a valid topic name: use 1–249 characters of a-z, A-Z, 0-9, '.', '_' and '-'")
        }
        for rule in routes where !TopicName.isValid(rule.topic) {
            throw ConfigError("route \(rule.pattern)=\(rule.topic) (from \(routesSource)) names an invalid topic")
        }
    }

    /// `log.backend` with its settings: the cluster's only with `kafka`, and no Kafka listener beside a cluster.
    func validateBackend(_ at: (String) -> String) throws(ConfigError) {
        switch logBackend {
        case .embedded:
            for name in ["lag.groups", "lag.groups.exclude"] where !string(name).isEmpty {
                throw ConfigError("\(at(name)) names groups of a Kafka cluster, but \(at("log.backend")); set log.backend=kafka or remove it (on the embedded log every group gets lag metrics)")
            }
            if let (name, setting) = clusterProperties.min(by: { $0.key < $1.key }) {
                throw ConfigError("\(Self.clusterPrefix)\(name) (from \(setting.source)) is a cluster client property, but \(at("log.backend")); set log.backend=kafka or remove it")
            }
            if !string("cluster.bootstrap.servers").isEmpty {
                throw ConfigError("\(at("cluster.bootstrap.servers")) is set, but \(at("log.backend")); set log.backend=kafka to store events in that cluster, or remove it")
            }
        case .kafka:
            for name in ["lag.groups", "lag.groups.exclude"] where !string(name).isEmpty {
                guard (try? NSRegularExpression(pattern: string(name))) != nil else {
                    throw ConfigError("\(at(name)) is not a valid regular expression; e.g. lag.groups='billing-.*|shipping'")
                }
            }
            let servers = string("cluster.bootstrap.servers").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !servers.isEmpty else {
                throw ConfigError("\(at("log.backend")) needs the cluster's brokers: set cluster.bootstrap.servers, e.g. --cluster-bootstrap-servers b1:9092,b2:9092")
            }
            if let bad = servers.first(where: { HostPort(String($0.split(separator: "://").last ?? "")) == nil }) {
                throw ConfigError("\(at("cluster.bootstrap.servers")): '\(bad)' is not host:port; list the brokers as host:port[,host:port…]")
            }
            if clusterProperties["bootstrap.servers"] != nil || clusterProperties["metadata.broker.list"] != nil {
                throw ConfigError("the brokers are set by cluster.bootstrap.servers (--cluster-bootstrap-servers) alone; remove cluster.bootstrap.servers from -X and cluster.metadata.broker.list")
            }
            if source("kafka.address") != .defaultValue && kafkaAddress != nil {
                throw ConfigError("\(at("kafka.address")) cannot be served with log.backend=kafka: Kafka clients use the cluster itself; set kafka.address=off or remove it")
            }
        }
    }

    static func parseRoutes(_ entries: [String], source: ConfigSource) throws(ConfigError) -> [RouteRule] {
        try entries.map { entry throws(ConfigError) -> RouteRule in
            let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, TopicName.isValid(parts[1]) else {
                throw ConfigError("route '\(entry)' (from \(source)) must be PATTERN=TOPIC, e.g. user.*=user-events")
            }
            return RouteRule(pattern: parts[0], topic: parts[1])
        }
    }

    struct ParsedFile {
        var properties: [(String, String, Int)] = []
        var routes: [RouteRule] = []
        var routesLine = 0
        var groupLagSLOs: [String: Int64] = [:]
    }

    /// Sections of the YAML file that belong to other features and are passed through.
    public static let fileSectionNames: Set<String> = ["subscriptions", "sagas", "observed_sagas"]

    static func parseFile(_ path: String) throws(ConfigError) -> ParsedFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("cannot read config file \(path); check the --config path")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError("config file \(path) is not valid YAML: \(error)")
        }
        var parsed = ParsedFile()
        guard let root else { return parsed }
        guard let mapping = root.mapping else {
            throw ConfigError("config file \(path) must be a mapping of settings (name: value), found \(root)")
        }
        for (keyNode, valueNode) in mapping {
            let line = (keyNode.mark?.line ?? 0)
            guard let key = keyNode.string else { throw ConfigError("\(path):\(line): keys must be strings") }
            if key == "routes" {
                parsed.routesLine = line
                if let list = valueNode.sequence {
                    for item in list {
                        guard let match = item.mapping?["match"]?.string, let topic = item.mapping?["topic"]?.string else {
                            throw ConfigError("\(path):\(item.mark?.line ?? line): each route needs match and topic, e.g. {match: \"user.*\", topic: user-events}")
                        }
                        parsed.routes += try parseRoutes(["\(match)=\(topic)"], source: .file(path: path, line: item.mark?.line ?? line))
                    }
                } else if let map = valueNode.mapping {
                    for (pattern, topic) in map {
                        parsed.routes += try parseRoutes(["\(pattern.string ?? "")=\(topic.string ?? "")"], source: .file(path: path, line: pattern.mark?.line ?? line))
                    }
                } else {
                    throw ConfigError("\(path):\(line): routes must be a list of {match, topic} or a mapping pattern: topic")
                }
            } else if key == "consumer_groups" {
                guard let groups = valueNode.mapping else {
                    throw ConfigError("\(path):\(line): consumer_groups must map group names to settings, e.g. consumer_groups: {billing: {lag.slo.ms: 60000}}")
                }
                for (nameNode, settings) in groups {
                    let at = nameNode.mark?.line ?? line
                    guard let name = nameNode.string, let map = settings.mapping else {
                        throw ConfigError("\(path):\(at): each consumer_groups entry is a group name with a mapping, e.g. billing: {lag.slo.ms: 60000}")
                    }
                    for (settingNode, valueNode) in map {
                        guard settingNode.string == "lag.slo.ms" else {
                            throw ConfigError("\(path):\(settingNode.mark?.line ?? at): consumer_groups.\(name) knows only lag.slo.ms, not \(settingNode.string ?? "?")")
                        }
                        guard let value = valueNode.string.flatMap({ Int64($0) }), value >= 0 else {
                            throw ConfigError("\(path):\(valueNode.mark?.line ?? at): consumer_groups.\(name).lag.slo.ms must be an integer ≥ 0 (milliseconds)")
                        }
                        parsed.groupLagSLOs[name] = value
                    }
                }
            } else if fileSectionNames.contains(key) {
                continue
            } else if let scalar = valueNode.scalar {
                parsed.properties.append((key, scalar.string, line))
            } else {
                throw ConfigError("\(path):\(line): \(key) must be a single value, e.g. \(key): \(ConfigProperty.byName[key]?.defaultValue ?? "…")")
            }
        }
        return parsed
    }

    /// `; did you mean X?` for the closest known name, when one is close.
    static func suggestion(for name: String, in candidates: [String]) -> String {
        let scored = candidates.map { ($0, editDistance(name, $0)) }.min { $0.1 < $1.1 }
        guard let (best, distance) = scored, distance <= max(2, name.count / 4) else { return "" }
        return "; did you mean \(best)?"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            if b.isEmpty { continue }
            for j in 1...b.count {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
}
