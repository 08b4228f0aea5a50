import SluiceLog
import SluiceTelemetry

/// Where an offset reset moves a group's committed offsets: the modes of Kafka's
/// `kafka-consumer-groups --reset-offsets`.
public enum OffsetResetTarget: Sendable, Equatable, CustomStringConvertible {
    /// The log start offset (the oldest record still kept).
    case earliest
    /// The log end offset (only records written from now on).
    case latest
    /// The first record whose timestamp is at or after this time (milliseconds since the epoch), through the
    /// time index; the log end offset when every record is older.
    case datetime(Int64)
    /// This offset, moved into the log's range when outside it.
    case offset(Int64)
    /// The committed offset moved by this many records (negative: back), kept inside the log's range.
    case shiftBy(Int64)
    /// As `datetime`, for the time this many milliseconds ago.
    case byDuration(Int64)

    public var description: String {
        switch self {
        case .earliest: "earliest"
        case .latest: "latest"
        case .datetime(let millis): "datetime \(Timestamp.rfc3339Millis(millisecondsSinceEpoch: millis))"
        case .offset(let offset): "offset \(offset)"
        case .shiftBy(let count): "shift by \(count)"
        case .byDuration(let millis): "by duration \(millis) ms"
        }
    }

    /// Milliseconds of a duration written as `1h`, `90m`, `1h30m`, `2d`, `15s`, `500ms`, or ISO 8601 `PT1H30M`, `P1DT2H`.
    public static func parseDuration(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var rest = Substring(text.lowercased())
        let iso = rest.hasPrefix("p")
        if iso { rest = rest.dropFirst() }
        var total: Int64 = 0
        var parsedAny = false
        var inTime = !iso
        while !rest.isEmpty {
            if iso, rest.first == "t" {
                guard !inTime else { return nil }
                inTime = true
                rest = rest.dropFirst()
                continue
            }
            let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !digits.isEmpty, let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit: Int64
            if iso {
                // ISO: D before T; H, M (minutes) and S after it.
                guard let letter = rest.first else { return nil }
                rest = rest.dropFirst()
                switch (letter, inTime) {
                case ("d", false): unit = 86_400_000
                case ("h", true): unit = 3_600_000
                case ("m", true): unit = 60_000
                case ("s", true): unit = 1000
                default: return nil
                }
            } else {
                guard let match = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else { return nil }
                rest = rest.dropFirst(match.0.count)
                unit = match.1
            }
            let millis = number * Double(unit)
            guard millis.isFinite, millis < 1e15 else { return nil }
            total += Int64(millis.rounded())
            parsedAny = true
        }
        return parsedAny ? total : nil
    }
}

/// Which partitions of a topic a reset touches (nil: all of them).
public struct OffsetResetScope: Sendable {
    public var topic: String
    public var partitions: [Int32]?

    public init(topic: String, partitions: [Int32]? = nil) {
        self.topic = topic
        self.partitions = partitions
    }

    /// `orders` or `orders:0,2` (the form of `--topic` in Kafka's tool).
    public static func parse(_ text: String) -> OffsetResetScope? {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = parts.first, !name.isEmpty else { return nil }
        guard parts.count == 2 else { return OffsetResetScope(topic: String(name)) }
        var partitions: [Int32] = []
        for item in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
            guard let partition = Int32(item), partition >= 0 else { return nil }
            partitions.append(partition)
        }
        return partitions.isEmpty ? nil : OffsetResetScope(topic: String(name), partitions: partitions)
    }
}

/// One partition of a reset plan: where the group was and where it goes.
public struct OffsetResetRow: Sendable {
    public var partition: TopicPartition
    /// The committed offset before the reset (nil: none).
    public var previous: Int64?
    public var offset: Int64
    public var logStartOffset: Int64
    public var logEndOffset: Int64
}

extension GroupCoordinator {
    /// Moves the committed offsets of an inactive group, as `kafka-consumer-groups --reset-offsets` does: the plan is
    /// worked out from the current logs and committed offsets, and unless `dryRun` is set committed durably
    /// (one fsync) before this returns. `scope` nil means every partition the group has committed offsets for.
    /// `requester` (the client's address) goes into the log line with the offsets before and after.
    public func resetOffsets(group name: String, to target: OffsetResetTarget, scope: [OffsetResetScope]?, dryRun: Bool,
                             requester: String) async throws(BrokerError) -> [OffsetResetRow] {
        try Self.validateGroupName(name)
        try requireInactive(name)
        let plan = try planReset(group: name, to: target, scope: scope)
        if !dryRun {
            _ = try await commit(group: name, member: nil, offsets: plan.map { ($0.partition, $0.offset, "") })
            let moves = plan.map { "\($0.partition): \($0.previous.map(String.init) ?? "none") → \($0.offset)" }
            logger.notice("consumer group offsets reset", metadata: [
                LogField.group: .string(name), LogField.clientAddress: .string(requester), LogField.resetTo: .string(target.description),
                "partitions": .stringConvertible(plan.count), "offsets": .string(moves.joined(separator: ", ")),
            ])
        }
        return plan
    }

    /// Refuses a group with members: their positions would overwrite the reset (Kafka's tool has the same rule).
    func requireInactive(_ name: String) throws(BrokerError) {
        let members = memberCounts()[name]?.members ?? 0
        guard members == 0 else {
            throw BrokerError(.conflict, "group \(name) has \(members) active member(s); offsets can only be reset while the group is inactive: stop its consumers (or pause the subscription) and retry")
        }
    }

    /// The rows a reset would commit, without committing them.
    public func planReset(group name: String, to target: OffsetResetTarget, scope: [OffsetResetScope]?) throws(BrokerError) -> [OffsetResetRow] {
        let committed = store.offsets(group: name)
        var partitions: [TopicPartition] = []
        if let scope {
            guard !scope.isEmpty else { throw BrokerError.badRequest("'topics' must name at least one topic, or be left out to reset every partition the group has committed", attribute: "topics") }
            for entry in scope {
                guard let topic = broker.topic(entry.topic) else {
                    throw BrokerError(.notFound, "topic \(entry.topic) does not exist; list topics with GET /v1/topics")
                }
                let count = Int32(topic.partitions.count)
                for partition in entry.partitions ?? Array(0..<count) {
                    guard partition >= 0, partition < count else {
                        throw BrokerError.badRequest("topic \(entry.topic) has partitions 0 to \(count - 1); partition \(partition) does not exist", attribute: "topics")
                    }
                    partitions.append(TopicPartition(entry.topic, partition))
                }
            }
        } else {
            partitions = committed.keys.map { TopicPartition($0.topic, $0.partition) }
            guard !partitions.isEmpty else {
                throw BrokerError.badRequest("group \(name) has no committed offsets; name the topics to reset (topics, or --topic on the command line)", attribute: "topics")
            }
        }
        let now = currentTimeMillis()
        var rows: [OffsetResetRow] = []
        for tp in Set(partitions).sorted() {
            let log = try broker.partitionLog(tp)
            let start = log.logStartOffset, end = log.logEndOffset
            let previous = committed[GroupPartition(group: name, topic: tp.topic, partition: tp.partition)]?.offset
            func atTime(_ millis: Int64) throws(BrokerError) -> Int64 {
                do {
                    return try log.offset(forTimestamp: millis) ?? end
                } catch {
                    throw BrokerError(error)
                }
            }
            let wanted: Int64
            switch target {
            case .earliest: wanted = start
            case .latest: wanted = end
            case .datetime(let millis): wanted = try atTime(millis)
            case .byDuration(let millis): wanted = try atTime(now - millis)
            case .offset(let offset): wanted = offset
            case .shiftBy(let count):
                guard let previous else {
                    throw BrokerError(.conflict, "cannot shift \(tp): group \(name) has no committed offset there; reset it to earliest, latest, a time or an offset first")
                }
                wanted = previous.addingReportingOverflow(count).overflow ? (count < 0 ? start : end) : previous + count
            }
            rows.append(OffsetResetRow(partition: tp, previous: previous, offset: min(max(wanted, start), end), logStartOffset: start, logEndOffset: end))
        }
        return rows
    }
}
