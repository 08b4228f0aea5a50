import Foundation
public import SluiceBroker
import SluiceLog

/// Which events wait for which while one is failing.
public enum OrderingMode: String, Sendable, CaseIterable {
    /// A failing event holds back only later events with the same partition key; other keys keep flowing.
    case key
    /// Strict order per partition.
    case partition
    /// No order: the most throughput.
    case none
}

/// Exponential backoff with jitter: attempt n (from 1) waits min(initial × multiplier^(n−1), max) plus a random
/// share of that, up to `jitter` × it (the seed material's `min(base × 2^n, max) + uniform(0, delay × 0.1)`).
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts = 5
    public var initialBackoffMs: Int64 = 100
    public var multiplier = 2.0
    public var maxBackoffMs: Int64 = 30_000
    public var jitter = 0.1

    public init() {}

    /// The wait after failed attempt `attempt` (1-based); `random` is uniform in [0, 1).
    public func delayMs(afterAttempt attempt: Int, random: Double) -> Int64 {
        let base = min(Double(initialBackoffMs) * pow(multiplier, Double(max(attempt - 1, 0))), Double(maxBackoffMs))
        return Int64((base + base * jitter * random).rounded())
    }

    /// Bounds of the wait after `attempt`, for documentation and tests.
    public func delayBoundsMs(afterAttempt attempt: Int) -> ClosedRange<Int64> {
        delayMs(afterAttempt: attempt, random: 0)...delayMs(afterAttempt: attempt, random: 1)
    }
}

/// When the app counts as down: `failureThreshold` availability failures in a row (connection refused or
/// reset, 503) open the breaker; it probes after `openMs`, doubling up to `maxOpenMs` while probes fail.
public struct BreakerPolicy: Sendable, Equatable {
    public var failureThreshold = 5
    public var openMs: Int64 = 1000
    public var maxOpenMs: Int64 = 60_000

    public init() {}
}

/// A push subscription: events of `topics` (optionally filtered by type) POSTed to `endpoint` as CloudEvents in
/// binary mode, with retries, circuit breaking, a dead-letter topic and replay.
public struct Subscription: Sendable, Equatable {
    public var name: String
    public var topics: [String]
    public var group: String
    /// A glob on the event type (`order.*`); nil delivers every event.
    public var filter: String?
    public var endpoint: String
    public var concurrency = 16
    public var timeoutMs: Int64 = 5000
    public var ordering = OrderingMode.key
    /// nil: `<topic>.dlq` for each topic.
    public var dlqTopic: String?
    public var maxReplays = 3
    public var startFrom = "latest"
    /// The version of their type events are delivered in (`latest` or a fixed one), upcast as needed; nil delivers
    /// them as published.
    public var version: VersionTarget?
    public var retry = RetryPolicy()
    public var breaker = BreakerPolicy()

    public init(name: String, topics: [String], endpoint: String) {
        self.name = name
        self.topics = topics
        self.group = name
        self.endpoint = endpoint
    }

    public func deadLetterTopic(for topic: String) -> String { dlqTopic ?? topic + ".dlq" }
    public static func poisonTopic(for topic: String) -> String { topic + ".poison" }

    /// Whether an event type passes the filter.
    public func accepts(eventType: String) -> Bool {
        guard let filter else { return true }
        return RouteRule(pattern: filter, topic: "-").matches(eventType)
    }
}

/// A bad subscription definition, naming the field and what is allowed.
public struct SubscriptionError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var field: String?
    public init(_ message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }
    public var description: String { message }
}

extension Subscription {
    /// The keys a definition may have.
    static let keys: Set<String> = ["name", "topics", "topic", "group", "filter", "endpoint", "concurrency", "timeout_ms", "ordering", "dlq_topic",
                                    "max_replays", "start_from", "version", "retry", "circuit_breaker"]

    /// Parses a definition (from the config file's `subscriptions` list or a PUT body). `name` overrides the body's.
    public static func parse(_ object: [String: Any], name fixedName: String? = nil) throws(SubscriptionError) -> Subscription {
        for key in object.keys where !keys.contains(key) {
            throw SubscriptionError("unknown subscription field '\(key)'; known: \(keys.sorted().joined(separator: ", "))", field: key)
        }
        guard let name = fixedName ?? (object["name"] as? String) else { throw SubscriptionError("'name' (a string) is required", field: "name") }
        guard TopicName.isValid(name) else {
            throw SubscriptionError("subscription name '\(name)' is invalid: use 1 to 249 characters from A-Z, a-z, 0-9, '.', '_' and '-'", field: "name")
        }
        var topics: [String] = []
        if let list = object["topics"] as? [String] { topics = list } else if let one = object["topic"] as? String { topics = [one] }
        guard !topics.isEmpty else { throw SubscriptionError("'topics' (a list of topic names) is required, e.g. topics: [orders]", field: "topics") }
        for topic in topics where !TopicName.isValid(topic) { throw SubscriptionError("'\(topic)' is not a valid topic name", field: "topics") }
        guard let endpoint = object["endpoint"] as? String, let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
              url.host != nil
        else {
            throw SubscriptionError("'endpoint' must be the app's http(s) URL, e.g. http://127.0.0.1:8080/events", field: "endpoint")
        }
        var subscription = Subscription(name: name, topics: topics, endpoint: endpoint)
        if let group = object["group"] {
            guard let text = group as? String else { throw SubscriptionError("'group' must be a string", field: "group") }
            do { try GroupCoordinator.validateGroupName(text) } catch { throw SubscriptionError(error.message, field: "group") }
            subscription.group = text
        }
        if let filter = object["filter"] {
            guard let text = filter as? String, !text.isEmpty else { throw SubscriptionError("'filter' must be an event-type glob such as order.*", field: "filter") }
            subscription.filter = text
        }
        subscription.concurrency = try integer(object, "concurrency", 1...10_000, default: 16)
        subscription.timeoutMs = Int64(try integer(object, "timeout_ms", 1...3_600_000, default: 5000))
        if let ordering = object["ordering"] {
            guard let text = ordering as? String, let mode = OrderingMode(rawValue: text) else {
                throw SubscriptionError("'ordering' must be one of key, partition, none", field: "ordering")
            }
            subscription.ordering = mode
        }
        if let dlq = object["dlq_topic"] {
            guard let text = dlq as? String, TopicName.isValid(text) else { throw SubscriptionError("'dlq_topic' must be a valid topic name", field: "dlq_topic") }
            subscription.dlqTopic = text
        }
        subscription.maxReplays = try integer(object, "max_replays", 0...1000, default: 3)
        if let start = object["start_from"] {
            guard let text = start as? String, ["earliest", "latest"].contains(text) else {
                throw SubscriptionError("'start_from' must be earliest or latest", field: "start_from")
            }
            subscription.startFrom = text
        }
        if let version = object["version"] {
            guard let text = version as? String, let target = VersionTarget(text) else {
                throw SubscriptionError("'version' must be latest or a version of the event types' schemas, such as \"2.0\"", field: "version")
            }
            subscription.version = target
        }
        if let retry = object["retry"] {
            guard let map = retry as? [String: Any] else { throw SubscriptionError("'retry' must be a mapping", field: "retry") }
            let allowed: Set = ["max_attempts", "initial_backoff_ms", "multiplier", "max_backoff_ms", "jitter"]
            for key in map.keys where !allowed.contains(key) {
                throw SubscriptionError("unknown retry field '\(key)'; known: \(allowed.sorted().joined(separator: ", "))", field: "retry.\(key)")
            }
            subscription.retry.maxAttempts = try integer(map, "max_attempts", 1...1000, default: 5, prefix: "retry.")
            subscription.retry.initialBackoffMs = Int64(try integer(map, "initial_backoff_ms", 1...3_600_000, default: 100, prefix: "retry."))
            subscription.retry.maxBackoffMs = Int64(try integer(map, "max_backoff_ms", 1...86_400_000, default: 30_000, prefix: "retry."))
            subscription.retry.multiplier = try number(map, "multiplier", 1...100, default: 2, prefix: "retry.")
            subscription.retry.jitter = try number(map, "jitter", 0...10, default: 0.1, prefix: "retry.")
            guard subscription.retry.maxBackoffMs >= subscription.retry.initialBackoffMs else {
                throw SubscriptionError("retry.max_backoff_ms must be at least retry.initial_backoff_ms", field: "retry.max_backoff_ms")
            }
        }
        if let breaker = object["circuit_breaker"] {
            guard let map = breaker as? [String: Any] else { throw SubscriptionError("'circuit_breaker' must be a mapping", field: "circuit_breaker") }
            let allowed: Set = ["failure_threshold", "open_ms", "max_open_ms"]
            for key in map.keys where !allowed.contains(key) {
                throw SubscriptionError("unknown circuit_breaker field '\(key)'; known: \(allowed.sorted().joined(separator: ", "))", field: "circuit_breaker.\(key)")
            }
            subscription.breaker.failureThreshold = try integer(map, "failure_threshold", 1...1000, default: 5, prefix: "circuit_breaker.")
            subscription.breaker.openMs = Int64(try integer(map, "open_ms", 10...3_600_000, default: 1000, prefix: "circuit_breaker."))
            subscription.breaker.maxOpenMs = Int64(try integer(map, "max_open_ms", 10...86_400_000, default: 60_000, prefix: "circuit_breaker."))
            guard subscription.breaker.maxOpenMs >= subscription.breaker.openMs else {
                throw SubscriptionError("circuit_breaker.max_open_ms must be at least circuit_breaker.open_ms", field: "circuit_breaker.max_open_ms")
            }
        }
        return subscription
    }

    private static func integer(_ object: [String: Any], _ key: String, _ range: ClosedRange<Int>, default value: Int, prefix: String = "") throws(SubscriptionError) -> Int {
        guard let raw = object[key] else { return value }
        guard let number = raw as? NSNumber, String(cString: number.objCType) != "c", let integer = Int(exactly: number.doubleValue), range.contains(integer) else {
            throw SubscriptionError("'\(prefix)\(key)' must be an integer from \(range.lowerBound) to \(range.upperBound), got \(raw)", field: prefix + key)
        }
        return integer
    }

    private static func number(_ object: [String: Any], _ key: String, _ range: ClosedRange<Double>, default value: Double, prefix: String = "") throws(SubscriptionError) -> Double {
        guard let raw = object[key] else { return value }
        guard let number = raw as? NSNumber, String(cString: number.objCType) != "c", range.contains(number.doubleValue) else {
            throw SubscriptionError("'\(prefix)\(key)' must be a number from \(range.lowerBound) to \(range.upperBound), got \(raw)", field: prefix + key)
        }
        return number.doubleValue
    }

    /// The definition as JSON-ready values (what GET returns and what is persisted).
    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "name": name, "topics": topics, "group": group, "endpoint": endpoint, "concurrency": concurrency, "timeout_ms": timeoutMs,
            "ordering": ordering.rawValue, "max_replays": maxReplays, "start_from": startFrom,
            "retry": ["max_attempts": retry.maxAttempts, "initial_backoff_ms": retry.initialBackoffMs, "multiplier": retry.multiplier,
                      "max_backoff_ms": retry.maxBackoffMs, "jitter": retry.jitter],
            "circuit_breaker": ["failure_threshold": breaker.failureThreshold, "open_ms": breaker.openMs, "max_open_ms": breaker.maxOpenMs],
        ]
        if let filter { object["filter"] = filter }
        if let dlqTopic { object["dlq_topic"] = dlqTopic }
        if let version { object["version"] = version.description }
        return object
    }
}
