import Foundation

/// A throughput: bytes per second, or messages per second turned into bytes by a message size.
public struct Throughput: Sendable, Hashable, CustomStringConvertible {
    public var bytesPerSecond: Double

    public init(bytesPerSecond: Double) { self.bytesPerSecond = bytesPerSecond }

    /// Units accepted, per second: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024), msg (needs a message size).
    static let units: [(suffix: String, factor: Double)] = [
        ("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1),
    ]

    /// Parses `120MB/s`, `10 MiB/s`, `2.5GB/s`, `500B/s` or `50000msg/s` (with `messageSize` in bytes).
    public static func parse(_ text: String, messageSize: Double?, name: String) throws(AdvisorError) -> Throughput {
        let trimmed = text.replacingOccurrences(of: " ", with: "")
        guard trimmed.hasSuffix("/s") else {
            throw AdvisorError("\(name) '\(text)' needs a per-second unit, e.g. 120MB/s, 10MiB/s or 50000msg/s")
        }
        let body = String(trimmed.dropLast(2))
        if body.hasSuffix("msg") {
            guard let count = Double(body.dropLast(3)), count.isFinite, count > 0 else {
                throw AdvisorError("\(name) '\(text)' must be a positive number of messages per second")
            }
            guard let messageSize else {
                throw AdvisorError("\(name) '\(text)' is in messages per second, so --message-size is needed (e.g. --message-size 1KiB)")
            }
            return Throughput(bytesPerSecond: count * messageSize)
        }
        for (suffix, factor) in units where body.hasSuffix(suffix) {
            guard let number = Double(body.dropLast(suffix.count)), number.isFinite else { break }
            guard number > 0 else { throw AdvisorError("\(name) '\(text)' must be greater than zero") }
            return Throughput(bytesPerSecond: number * factor)
        }
        throw AdvisorError("\(name) '\(text)' has an unknown unit; use B, KB, MB, GB, KiB, MiB or GiB per second, or msg/s with --message-size")
    }

    /// Parses a size such as `1KiB`, `512B` or `2MB`.
    public static func parseSize(_ text: String, name: String) throws(AdvisorError) -> Double {
        let body = text.replacingOccurrences(of: " ", with: "")
        for (suffix, factor) in units where body.hasSuffix(suffix) {
            guard let number = Double(body.dropLast(suffix.count)), number.isFinite else { break }
            guard number > 0 else { throw AdvisorError("\(name) '\(text)' must be greater than zero") }
            return number * factor
        }
        throw AdvisorError("\(name) '\(text)' needs a size unit: B, KB, MB, GB, KiB, MiB or GiB")
    }

    public var description: String {
        let units: [(String, Double)] = [("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)]
        for (unit, factor) in units where bytesPerSecond >= factor {
            return String(format: "%.2f %@", bytesPerSecond / factor, unit)
        }
        return String(format: "%.0f B/s", bytesPerSecond)
    }
}

public struct AdvisorError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How many partitions a topic needs.
///
/// Two rules, and the larger wins, clamped to `[minimum, maximum]`:
/// - the seed material's `calculate_optimal_partition_count`: the larger of ⌈target ÷ per-partition throughput⌉
///   and consumers × 2 (head-room for consumers to grow);
/// - the producer/consumer rule: the larger of ⌈target ÷ per-partition producer throughput⌉ and
///   ⌈target ÷ per-partition consumer throughput⌉, so neither side is the bottleneck.
public struct PartitionAdvice: Sendable {
    public var target: Throughput
    public var partitionThroughput: Throughput
    public var consumerThroughput: Throughput?
    public var consumers: Int
    public var minimum: Int
    public var maximum: Int

    public init(target: Throughput, partitionThroughput: Throughput, consumerThroughput: Throughput?, consumers: Int, minimum: Int = 3, maximum: Int = 100) throws(AdvisorError) {
        // 0 is a topic nobody consumes yet: the seed rule is then max(throughput-based, 0), clamped to --min.
        guard (0...1_000_000).contains(consumers) else { throw AdvisorError("--consumers must be from 0 to 1000000, got \(consumers)") }
        guard minimum >= 1 else { throw AdvisorError("--min must be at least 1, got \(minimum)") }
        guard maximum >= minimum else { throw AdvisorError("--max (\(maximum)) must not be below --min (\(minimum))") }
        self.target = target
        self.partitionThroughput = partitionThroughput
        self.consumerThroughput = consumerThroughput
        self.consumers = consumers
        self.minimum = minimum
        self.maximum = maximum
    }

    static func ceilRatio(_ a: Double, _ b: Double) -> Int {
        let ratio = (a / b).nextDown  // 120/10 is 12, not 13, despite floating point
        return ratio >= Double(Int.max / 2) ? Int.max / 2 : Int(ratio.rounded(.up))
    }

    /// ⌈target ÷ per-partition throughput⌉.
    public var byThroughput: Int { max(1, Self.ceilRatio(target.bytesPerSecond, partitionThroughput.bytesPerSecond)) }
    public var byConsumers: Int { consumers * 2 }
    /// The seed material's rule, before clamping.
    public var seedRule: Int { max(byThroughput, byConsumers) }
    /// ⌈target ÷ per-partition consumer throughput⌉, when given.
    public var byConsumerThroughput: Int? {
        consumerThroughput.map { max(1, Self.ceilRatio(target.bytesPerSecond, $0.bytesPerSecond)) }
    }
    /// The producer/consumer rule, before clamping.
    public var producerConsumerRule: Int { max(byThroughput, byConsumerThroughput ?? 0) }
    /// The recommendation: the larger rule, clamped.
    public var recommended: Int { min(max(max(seedRule, producerConsumerRule), minimum), maximum) }

    /// The reasoning, one line each.
    public var reasoning: [String] {
        var lines = [
            "target \(target) ÷ \(partitionThroughput) per partition = \(byThroughput) partitions",
            "consumers × 2 = \(consumers) × 2 = \(byConsumers) partitions",
            "seed rule: max(\(byThroughput), \(byConsumers)) = \(seedRule)",
        ]
        if let byConsumerThroughput, let consumerThroughput {
            lines.append("target \(target) ÷ \(consumerThroughput) per partition for consumers = \(byConsumerThroughput) partitions")
            lines.append("producer/consumer rule: max(\(byThroughput), \(byConsumerThroughput)) = \(producerConsumerRule)")
        } else {
            lines.append("producer/consumer rule: \(producerConsumerRule) (no --consumer-throughput given)")
        }
        let raw = max(seedRule, producerConsumerRule)
        let clamp = raw < minimum ? " raised to --min \(minimum)" : (raw > maximum ? " capped at --max \(maximum)" : "")
        lines.append("recommended: max(\(seedRule), \(producerConsumerRule)) = \(raw)\(clamp) → \(recommended)")
        return lines
    }
}
