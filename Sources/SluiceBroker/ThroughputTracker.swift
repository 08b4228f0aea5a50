import SluiceLog
import Synchronization

/// Bytes produced per topic, in one-second buckets over the last five minutes, for the live partition-count
/// recommendation.
final class ThroughputTracker: Sendable {
    static let windowSeconds = 300
    private let topics = Mutex<[String: Buckets]>([:])

    struct Buckets {
        var bytes = [Int64](repeating: 0, count: ThroughputTracker.windowSeconds)
        var second: Int64 = 0

        /// Moves the ring forward to `now`, clearing the seconds skipped.
        mutating func advance(to now: Int64) {
            if now <= second { return }
            let steps = min(now - second, Int64(ThroughputTracker.windowSeconds))
            for step in 1...steps { bytes[Int((second + step) % Int64(ThroughputTracker.windowSeconds))] = 0 }
            second = now
        }

        /// Mean bytes per second over the last `seconds` whole seconds (the current, partial second excluded).
        func rate(seconds: Int) -> Double {
            var total: Int64 = 0
            for back in 1...seconds { total += bytes[Int((second - Int64(back) + Int64(ThroughputTracker.windowSeconds)) % Int64(ThroughputTracker.windowSeconds))] }
            return Double(total) / Double(seconds)
        }
    }

    func record(topic: String, bytes: Int, nowMillis: Int64 = currentTimeMillis()) {
        let second = nowMillis / 1000
        topics.withLock { topics in
            var buckets = topics[topic] ?? Buckets(second: second)
            buckets.advance(to: second)
            buckets.bytes[Int(second % Int64(Self.windowSeconds))] += Int64(bytes)
            topics[topic] = buckets
        }
    }

    /// Mean produce rates over the last minute and the last five minutes, in bytes per second.
    func rates(topic: String, nowMillis: Int64 = currentTimeMillis()) -> (oneMinute: Double, fiveMinutes: Double) {
        topics.withLock { topics in
            guard var buckets = topics[topic] else { return (0, 0) }
            buckets.advance(to: nowMillis / 1000)
            topics[topic] = buckets
            return (buckets.rate(seconds: 60), buckets.rate(seconds: 300))
        }
    }

    func remove(topic: String) {
        _ = topics.withLock { $0.removeValue(forKey: topic) }
    }
}
