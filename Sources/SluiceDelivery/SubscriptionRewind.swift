import Foundation
public import SluiceBroker
import SluiceTelemetry

/// A subscription moved back to re-deliver events (a projection rebuild): where each partition starts again and
/// how far it had been delivered before. Events below `until` are re-deliveries and carry
/// ``DeliveryHeader/rewind``; events past it are new to the app.
public struct SubscriptionRewind: Sendable {
    public struct Partition: Sendable {
        public var partition: TopicPartition
        /// The offset delivery starts from again.
        public var from: Int64
        /// The committed offset before the rewind: everything below it had been delivered once.
        public var until: Int64
    }

    public var id: String
    public var subscription: String
    /// The target as asked (e.g. "earliest", "datetime 2026-12-04T10:00:00.000Z").
    public var target: String
    /// The client address that asked.
    public var requestedBy: String
    public var startedMillis: Int64
    public var completedMillis: Int64?
    public var partitions: [Partition]
    /// Looked up per delivered event.
    let untilByPartition: [TopicPartition: Int64]

    public init(id: String, subscription: String, target: String, requestedBy: String, startedMillis: Int64, completedMillis: Int64? = nil, partitions: [Partition]) {
        self.id = id
        self.subscription = subscription
        self.target = target
        self.requestedBy = requestedBy
        self.startedMillis = startedMillis
        self.completedMillis = completedMillis
        self.partitions = partitions
        self.untilByPartition = Dictionary(partitions.map { ($0.partition, $0.until) }, uniquingKeysWith: max)
    }

    /// Whether the event at `offset` of `partition` had been delivered before the rewind.
    func isReplay(_ partition: TopicPartition, _ offset: Int64) -> Bool {
        guard let until = untilByPartition[partition] else { return false }
        return offset < until
    }

    /// Events still to re-deliver, given the next offset to deliver per partition (a missing one: still at `from`).
    public func remaining(positions: [TopicPartition: Int64]) -> Int64 {
        partitions.reduce(0) { $0 + max(0, $1.until - max(positions[$1.partition] ?? $1.from, $1.from)) }
    }

    /// Events this rewind re-delivers in all.
    public var total: Int64 { partitions.reduce(0) { $0 + max(0, $1.until - $1.from) } }

    var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "id": id, "subscription": subscription, "to": target, "requested_by": requestedBy, "started_at_ms": startedMillis,
            "partitions": partitions.map { ["topic": $0.partition.topic, "partition": Int($0.partition.partition), "from": $0.from, "until": $0.until] },
        ]
        if let completedMillis { object["completed_at_ms"] = completedMillis }
        return object
    }

    init?(jsonObject object: [String: Any]) {
        guard let id = object["id"] as? String, let subscription = object["subscription"] as? String, let target = object["to"] as? String,
              let requestedBy = object["requested_by"] as? String, let started = (object["started_at_ms"] as? NSNumber)?.int64Value,
              let list = object["partitions"] as? [[String: Any]] else { return nil }
        var partitions: [Partition] = []
        for entry in list {
            guard let topic = entry["topic"] as? String, let partition = (entry["partition"] as? NSNumber)?.int32Value,
                  let from = (entry["from"] as? NSNumber)?.int64Value, let until = (entry["until"] as? NSNumber)?.int64Value else { return nil }
            partitions.append(Partition(partition: TopicPartition(topic, partition), from: from, until: until))
        }
        self.init(id: id, subscription: subscription, target: target, requestedBy: requestedBy, startedMillis: started,
                  completedMillis: (object["completed_at_ms"] as? NSNumber)?.int64Value, partitions: partitions)
    }
}
