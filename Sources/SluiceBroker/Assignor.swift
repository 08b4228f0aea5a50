/// A partition of a topic.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    public var description: String { "\(topic)/\(partition)" }
}

/// How a consumer group's partitions are spread over its members (Kafka's assignors of the same names).
public enum AssignmentStrategy: String, Sendable, CaseIterable {
    /// Per topic, members sorted by id get consecutive ranges; the first `partitions % members` get one more.
    case range
    /// Balanced, keeping every partition with its current owner where balance allows, so a rebalance moves
    /// as few partitions as possible.
    case sticky

    /// Assigns every partition of the members' topics. `subscriptions`: member id → topics;
    /// `partitions`: topic → partition count; `current`: the assignment before this rebalance (used by sticky).
    public func assign(subscriptions: [String: Set<String>], partitions: [String: Int],
                       current: [TopicPartition: String]) -> [TopicPartition: String] {
        switch self {
        case .range: Self.range(subscriptions: subscriptions, partitions: partitions)
        case .sticky: Self.sticky(subscriptions: subscriptions, partitions: partitions, current: current)
        }
    }

    static func range(subscriptions: [String: Set<String>], partitions: [String: Int]) -> [TopicPartition: String] {
        var result: [TopicPartition: String] = [:]
        let topics = Set(subscriptions.values.flatMap { $0 })
        for topic in topics.sorted() {
            guard let count = partitions[topic], count > 0 else { continue }
            let members = subscriptions.filter { $0.value.contains(topic) }.keys.sorted()
            let each = count / members.count
            let extra = count % members.count
            var next = 0
            for (index, member) in members.enumerated() {
                let take = each + (index < extra ? 1 : 0)
                for partition in next..<(next + take) { result[TopicPartition(topic, Int32(partition))] = member }
                next += take
            }
        }
        return result
    }

    static func sticky(subscriptions: [String: Set<String>], partitions: [String: Int],
                       current: [TopicPartition: String]) -> [TopicPartition: String] {
        var all: [TopicPartition] = []
        for topic in Set(subscriptions.values.flatMap { $0 }).sorted() {
            for partition in 0..<(partitions[topic] ?? 0) { all.append(TopicPartition(topic, Int32(partition))) }
        }
        func eligible(_ member: String, _ tp: TopicPartition) -> Bool { subscriptions[member]?.contains(tp.topic) == true }
        var owned: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: subscriptions.keys.map { ($0, []) })
        var result: [TopicPartition: String] = [:]
        // Keep what each member still may own.
        for tp in all {
            if let owner = current[tp], eligible(owner, tp) {
                result[tp] = owner
                owned[owner]!.append(tp)
            }
        }
        // Hand out the rest, each to the least-loaded eligible member.
        for tp in all where result[tp] == nil {
            let candidates = subscriptions.keys.filter { eligible($0, tp) }
            guard let member = candidates.min(by: { (owned[$0]!.count, $0) < (owned[$1]!.count, $1) }) else { continue }
            result[tp] = member
            owned[member]!.append(tp)
        }
        // Move partitions from the most to the least loaded member until no move makes it more even.
        var moved = true
        while moved {
            moved = false
            let byLoad = owned.keys.sorted { (owned[$0]!.count, $0) > (owned[$1]!.count, $1) }
            search: for giver in byLoad {
                for taker in byLoad.reversed() where owned[taker]!.count + 1 < owned[giver]!.count {
                    if let index = owned[giver]!.lastIndex(where: { eligible(taker, $0) }) {
                        let tp = owned[giver]!.remove(at: index)
                        owned[taker]!.append(tp)
                        result[tp] = taker
                        moved = true
                        break search
                    }
                }
            }
        }
        return result
    }
}
