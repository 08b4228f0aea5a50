import Dispatch
import Foundation
import Logging
public import SluiceLog
import SluiceTelemetry
import Synchronization

/// The state of a consumer group, as exported in `sluice_consumer_group_state{state}`.
public enum GroupState: String, Sendable, CaseIterable {
    /// No members (offsets may still be committed).
    case empty
    /// Every partition is with its owner.
    case stable
    /// Some partitions are moving: their previous owner has not polled since the rebalance, so their new
    /// owner does not read them yet (a partition is never read by two members at once).
    case rebalancing
}

/// What a member learns when it joins, heartbeats or polls.
public struct MemberAssignment: Sendable {
    public var memberId: String
    public var generation: Int
    public var state: GroupState
    /// Partitions the member owns in this generation.
    public var assignment: [TopicPartition]
    /// Owned partitions it may not read yet because their previous owner has not let go.
    public var pending: [TopicPartition]
    public var sessionTimeoutMs: Int64
    public var heartbeatIntervalMs: Int64

    public init(memberId: String, generation: Int, state: GroupState, assignment: [TopicPartition], pending: [TopicPartition],
                sessionTimeoutMs: Int64, heartbeatIntervalMs: Int64) {
        self.memberId = memberId
        self.generation = generation
        self.state = state
        self.assignment = assignment
        self.pending = pending
        self.sessionTimeoutMs = sessionTimeoutMs
        self.heartbeatIntervalMs = heartbeatIntervalMs
    }
}

public struct PollResult: Sendable {
    public var member: MemberAssignment
    public var events: [FetchedEvent]
    /// Where the next poll continues, per partition read.
    public var positions: [TopicPartition: Int64]

    public init(member: MemberAssignment, events: [FetchedEvent], positions: [TopicPartition: Int64]) {
        self.member = member
        self.events = events
        self.positions = positions
    }
}

/// Options of a member, given when it joins.
public struct MemberOptions: Sendable {
    public var topics: [String]
    public var clientId: String
    public var strategy: AssignmentStrategy?
    public var sessionTimeoutMs: Int64?
    public var autoCommit: Bool?
    public var offsetReset: String?

    public init(topics: [String], clientId: String = "", strategy: AssignmentStrategy? = nil, sessionTimeoutMs: Int64? = nil,
                autoCommit: Bool? = nil, offsetReset: String? = nil) {
        self.topics = topics
        self.clientId = clientId
        self.strategy = strategy
        self.sessionTimeoutMs = sessionTimeoutMs
        self.autoCommit = autoCommit
        self.offsetReset = offsetReset
    }
}

public struct MemberDescription: Sendable {
    public var id: String
    public var clientId: String
    public var topics: [String]
    public var assignment: [TopicPartition]
    public var joinedMillis: Int64
    public var lastSeenMillis: Int64
    public var sessionTimeoutMs: Int64
    /// Known for HTTP members only (a Kafka client commits on its own).
    public var autoCommit: Bool?
    /// Kafka members: `group.instance.id` (static membership) and the client's address.
    public var instanceId: String?
    public var clientHost: String?

    public init(id: String, clientId: String, topics: [String], assignment: [TopicPartition], joinedMillis: Int64, lastSeenMillis: Int64,
                sessionTimeoutMs: Int64, autoCommit: Bool?, instanceId: String? = nil, clientHost: String? = nil) {
        self.id = id
        self.clientId = clientId
        self.topics = topics
        self.assignment = assignment
        self.joinedMillis = joinedMillis
        self.lastSeenMillis = lastSeenMillis
        self.sessionTimeoutMs = sessionTimeoutMs
        self.autoCommit = autoCommit
        self.instanceId = instanceId
        self.clientHost = clientHost
    }
}

public struct GroupDescription: Sendable {
    public var name: String
    public var state: GroupState
    public var strategy: AssignmentStrategy?
    public var generation: Int
    public var members: [MemberDescription]
    public var partitions: [PartitionLag]
    public var status: LagStatus
}

/// Consumer groups over HTTP: membership with session timeouts, server-side assignment (range or sticky),
/// polls from committed offsets, manual or automatic commits made durable in the ``OffsetStore``, and the
/// ``LagMonitor`` that turns those offsets into lag metrics.
///
/// Rebalances are cooperative: a partition that moves keeps being served to its previous owner until that
/// member polls again (committing first when it auto-commits); only then does the new owner read it, from
/// the committed offset.
/// A consumer group of Kafka clients as the Kafka listener reports it, so that groups share one namespace and
/// one set of metrics with HTTP groups.
public struct KafkaGroupSummary: Sendable {
    public var members: Int
    public var state: GroupState
    public var generation: Int
    public var topics: Set<String>
    /// The membership to record in `__consumer_offsets`, once the group is stable or empty (nil while it rebalances).
    public var metadata: GroupMetadataRecord?

    public init(members: Int, state: GroupState, generation: Int, topics: Set<String>, metadata: GroupMetadataRecord? = nil) {
        self.members = members
        self.state = state
        self.generation = generation
        self.topics = topics
        self.metadata = metadata
    }
}

public final class GroupCoordinator: Sendable {
    public let broker: Broker
    public let store: OffsetStore
    public let lag: LagMonitor
    let logger: Logger
    private let groups = Mutex<[String: Group]>([:])
    /// Groups whose members are Kafka clients (their coordinator is the Kafka listener), as it reports them.
    private let kafkaGroups = Mutex<[String: KafkaGroupSummary]>([:])
    /// The Kafka listener's live view of a group's members, for `GET /v1/groups/{group}`.
    private let kafkaMembers = Mutex<(@Sendable (String) -> [MemberDescription])?>(nil)
    /// HTTP members of the cluster's groups (`log.backend=kafka`).
    let clusterMembers = ClusterMembers()

    struct Member {
        var id: String
        var clientId: String
        var topics: Set<String>
        var sessionTimeoutMs: Int64
        var autoCommit: Bool
        var offsetReset: String
        var joinedMillis: Int64
        var lastSeen: UInt64  // monotonic nanoseconds
        var lastSeenMillis: Int64
        var positions: [TopicPartition: Int64] = [:]
        var cursor = 0
    }

    struct Group {
        var name: String
        var strategy: AssignmentStrategy
        var generation = 0
        var members: [String: Member] = [:]
        var assignment: [TopicPartition: String] = [:]
        /// Partitions moving away from the member named, until it polls again.
        var revoking: [TopicPartition: String] = [:]
        var partitionCounts: [String: Int] = [:]

        var state: GroupState { members.isEmpty ? .empty : (revoking.isEmpty ? .stable : .rebalancing) }

        func owned(by member: String) -> [TopicPartition] { assignment.filter { $0.value == member }.keys.sorted() }
    }

    public init(broker: Broker) throws {
        self.broker = broker
        self.logger = broker.logger
        self.store = try OffsetStore.open(directory: broker.config.dataDirectory + "/groups")
        self.lag = LagMonitor(broker: broker, store: store, settings: LagSettings(config: broker.config))
        if store.truncatedBytes > 0 {
            logger.warning("cut a torn entry off the committed-offsets file after a crash; every complete commit is kept",
                           metadata: ["file.path": .string(store.path), "bytes": .stringConvertible(store.truncatedBytes)])
        }
        if !store.all.isEmpty { recordAllOffsets() }
    }

    var config: SluiceConfig { broker.config }

    public static func validateGroupName(_ name: String) throws(BrokerError) {
        guard !name.isEmpty, name.utf8.count <= 249,
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D })
        else {
            throw BrokerError.badRequest("group name '\(name)' is invalid: use 1 to 249 characters from A-Z, a-z, 0-9, '.', '_' and '-'", attribute: "group")
        }
    }

    /// Refuses a group the agent does not know yet once `group.max.count` groups exist, so that clients
    /// cannot grow memory and the `group` label's values without bound.
    func admitGroup(_ name: String) throws(BrokerError) {
        let limit = config.int("group.max.count")
        // Empty groups still in memory count too: they keep their series until deleted.
        let known = groups.withLock { Set($0.keys) }.union(store.groupNames)
        guard known.count >= limit, !known.contains(name) else { return }
        throw BrokerError(.conflict, "the agent has \(known.count) consumer groups, the most group.max.count allows; delete groups no longer used (DELETE /v1/groups/{group}) or raise group.max.count")
    }

    // MARK: - Membership

    /// Checks a joining member's group name and options; its session timeout and offset reset, defaults applied.
    func checkJoin(group name: String, options: MemberOptions) throws(BrokerError) -> (sessionTimeoutMs: Int64, offsetReset: String) {
        try Self.validateGroupName(name)
        guard !options.topics.isEmpty else {
            throw BrokerError.badRequest("'topics' must name at least one topic, e.g. {\"topics\": [\"orders\"]}", attribute: "topics")
        }
        let timeout = options.sessionTimeoutMs ?? config.integer("session.timeout.ms")
        guard (1000...3_600_000).contains(timeout) else {
            throw BrokerError.badRequest("session_timeout_ms=\(timeout) must be from 1000 to 3600000", attribute: "session_timeout_ms")
        }
        let reset = options.offsetReset ?? config.string("auto.offset.reset")
        guard ["earliest", "latest", "none"].contains(reset) else {
            throw BrokerError.badRequest("auto_offset_reset=\(reset) must be earliest, latest or none", attribute: "auto_offset_reset")
        }
        return (timeout, reset)
    }

    /// Adds a member subscribed to `options.topics` and rebalances the group.
    public func join(group name: String, options: MemberOptions) throws(BrokerError) -> MemberAssignment {
        let (timeout, reset) = try checkJoin(group: name, options: options)
        for topic in options.topics { _ = try broker.ensureTopic(topic) }
        if let kafka = kafkaGroups.withLock({ $0[name] }), kafka.members > 0 {
            throw BrokerError(.conflict, "group \(name) has \(kafka.members) Kafka client member(s); a group's members are all HTTP or all Kafka clients, so use another group name")
        }
        try admitGroup(name)
        let defaultStrategy = AssignmentStrategy(rawValue: config.string("partition.assignment.strategy")) ?? .range
        let id = (options.clientId.isEmpty ? "member" : options.clientId) + "-" + UUID().uuidString.lowercased()
        let now = DispatchTime.now().uptimeNanoseconds
        let member = Member(id: id, clientId: options.clientId, topics: Set(options.topics), sessionTimeoutMs: timeout,
                            autoCommit: options.autoCommit ?? config.bool("enable.auto.commit"), offsetReset: reset,
                            joinedMillis: currentTimeMillis(), lastSeen: now, lastSeenMillis: currentTimeMillis())
        let result: Result<MemberAssignment, BrokerError> = groups.withLock { groups in
            var group = groups[name] ?? Group(name: name, strategy: options.strategy ?? defaultStrategy)
            if group.members.isEmpty, let strategy = options.strategy { group.strategy = strategy }
            if let strategy = options.strategy, strategy != group.strategy {
                return .failure(BrokerError(.conflict, "group \(name) assigns with \(group.strategy.rawValue); join with the same strategy or leave it out"))
            }
            group.members[id] = member
            rebalance(&group, reason: "member joined")
            groups[name] = group
            return .success(view(of: group, member: id))
        }
        let assignment = try result.get()
        logger.info("consumer group member joined", metadata: [
            LogField.group: .string(name), LogField.member: .string(id), "generation": .stringConvertible(assignment.generation),
            "topics": .string(options.topics.joined(separator: ",")),
        ])
        return assignment
    }

    /// Marks the member alive and returns its current assignment.
    public func heartbeat(group name: String, member id: String) throws(BrokerError) -> MemberAssignment {
        try groups.withLock { groups throws(BrokerError) -> MemberAssignment in
            guard var group = groups[name] else { throw unknownGroup(name) }
            guard group.members[id] != nil else { throw unknownMember(id, group: name) }
            group.members[id]!.lastSeen = DispatchTime.now().uptimeNanoseconds
            group.members[id]!.lastSeenMillis = currentTimeMillis()
            groups[name] = group
            return view(of: group, member: id)
        }
    }

    /// Removes a member (committing its positions first when it auto-commits) and rebalances.
    public func leave(group name: String, member id: String) async throws(BrokerError) {
        if broker.remote != nil { return try await leaveClusterMember(group: name, id: id) }
        let commits = try groups.withLock { groups throws(BrokerError) -> [GroupPartition: CommittedOffset] in
            guard let group = groups[name] else { throw unknownGroup(name) }
            guard let member = group.members[id] else { throw unknownMember(id, group: name) }
            return autoCommits(group, member)
        }
        try await durable(commits)
        groups.withLock { groups in
            guard var group = groups[name], group.members.removeValue(forKey: id) != nil else { return }
            rebalance(&group, reason: "member left")
            groups[name] = group
        }
        logger.info("consumer group member left", metadata: [LogField.group: .string(name), LogField.member: .string(id)])
    }

    /// Removes members not heard from within their session timeout, and rebalances groups whose topics
    /// changed partition counts. Runs periodically.
    public func expireMembers() {
        let now = DispatchTime.now().uptimeNanoseconds
        var expired: [(String, String, Int64)] = []
        groups.withLock { groups in
            for name in groups.keys {
                var group = groups[name]!
                // `now` was read before the lock: a heartbeat since then has a later lastSeen, so compare, never subtract.
                let gone = group.members.values.filter { now > $0.lastSeen + UInt64($0.sessionTimeoutMs) * 1_000_000 }
                for member in gone {
                    group.members.removeValue(forKey: member.id)
                    expired.append((name, member.id, member.sessionTimeoutMs))
                }
                if !gone.isEmpty {
                    rebalance(&group, reason: "member missed session.timeout.ms")
                } else if !group.members.isEmpty && currentPartitionCounts(group) != group.partitionCounts {
                    rebalance(&group, reason: "partitions of a subscribed topic changed")
                }
                groups[name] = group
            }
        }
        for (group, member, timeout) in expired {
            logger.warning("consumer group member removed: not heard from within its session timeout", metadata: [
                LogField.group: .string(group), LogField.member: .string(member), "session_timeout_ms": .stringConvertible(timeout),
            ])
        }
    }

    private func currentPartitionCounts(_ group: Group) -> [String: Int] {
        var counts: [String: Int] = [:]
        for topic in Set(group.members.values.flatMap(\.topics)) { counts[topic] = broker.topic(topic)?.partitions.count ?? 0 }
        return counts
    }

    /// Recomputes the assignment; partitions that move stay with their previous owner until it polls.
    private func rebalance(_ group: inout Group, reason: String) {
        group.partitionCounts = currentPartitionCounts(group)
        let subscriptions = group.members.mapValues(\.topics)
        let previous = group.assignment
        let next = group.strategy.assign(subscriptions: subscriptions, partitions: group.partitionCounts, current: previous)
        var revoking: [TopicPartition: String] = [:]
        for (tp, owner) in next {
            // Still moving from an earlier rebalance, or moving now from a member that is still here.
            if let earlier = group.revoking[tp], earlier != owner, group.members[earlier] != nil {
                revoking[tp] = earlier
            } else if let old = previous[tp], old != owner, group.members[old] != nil {
                revoking[tp] = old
            }
        }
        group.assignment = next
        group.revoking = revoking
        group.generation += 1
        for id in group.members.keys {
            group.members[id]!.positions = group.members[id]!.positions.filter { next[$0.key] == id || revoking[$0.key] == id }
        }
        broker.metrics.counter(MetricName.groupRebalances, group.name).increment()
        logger.info("consumer group rebalanced", metadata: [
            LogField.group: .string(group.name), "generation": .stringConvertible(group.generation), "reason": .string(reason),
            "members": .stringConvertible(group.members.count), "strategy": .string(group.strategy.rawValue),
            "partitions_moving": .stringConvertible(revoking.count),
        ])
    }

    private func view(of group: Group, member id: String) -> MemberAssignment {
        let owned = group.owned(by: id)
        let member = group.members[id]!
        return MemberAssignment(memberId: id, generation: group.generation, state: group.state, assignment: owned,
                                pending: owned.filter { group.revoking[$0] != nil }, sessionTimeoutMs: member.sessionTimeoutMs,
                                heartbeatIntervalMs: min(config.integer("heartbeat.interval.ms"), member.sessionTimeoutMs / 3))
    }

    // MARK: - Poll and commit

    /// Reads up to `maxRecords` events from the member's readable partitions, from its positions (else the
    /// committed offsets, else `auto.offset.reset`), waiting up to `waitMs` for the first. Counts as a
    /// heartbeat; with auto-commit, first commits what the previous poll returned.
    public func poll(group name: String, member id: String, maxRecords: Int, waitMs: Int64) async throws(BrokerError) -> PollResult {
        if broker.remote != nil { return try await pollClusterMember(group: name, id: id, maxRecords: maxRecords, waitMs: waitMs) }
        let commits = try groups.withLock { groups throws(BrokerError) -> [GroupPartition: CommittedOffset] in
            guard var group = groups[name] else { throw unknownGroup(name) }
            guard var member = group.members[id] else { throw unknownMember(id, group: name) }
            member.lastSeen = DispatchTime.now().uptimeNanoseconds
            member.lastSeenMillis = currentTimeMillis()
            group.members[id] = member
            groups[name] = group
            return autoCommits(group, member)
        }
        try await durable(commits)

        // Let go of partitions that moved away, then plan the read.
        let plan = try groups.withLock { groups throws(BrokerError) -> (MemberAssignment, [(TopicPartition, Int64?)], String) in
            guard var group = groups[name] else { throw unknownGroup(name) }
            guard var member = group.members[id] else { throw unknownMember(id, group: name) }
            let released = group.revoking.filter { $0.value == id }.keys
            for tp in released { group.revoking.removeValue(forKey: tp) }
            member.positions = member.positions.filter { group.assignment[$0.key] == id }
            var readable = group.owned(by: id).filter { group.revoking[$0] == nil }
            if !readable.isEmpty {
                let start = member.cursor % readable.count
                readable = Array(readable[start...] + readable[..<start])
                member.cursor += 1
            }
            let positions = readable.map { tp in
                (tp, member.positions[tp] ?? store.offset(GroupPartition(group: name, topic: tp.topic, partition: tp.partition))?.offset)
            }
            group.members[id] = member
            groups[name] = group
            if !released.isEmpty {
                logger.info("consumer group member released moved partitions", metadata: [
                    LogField.group: .string(name), LogField.member: .string(id), "partitions": .stringConvertible(released.count),
                ])
            }
            return (view(of: group, member: id), positions, member.offsetReset)
        }
        let (assignment, planned, reset) = plan

        var positions: [(TopicPartition, Int64)] = []
        for (tp, position) in planned {
            let log = try broker.partitionLog(tp)
            let start = log.logStartOffset, end = log.logEndOffset
            var resolved: Int64
            if let position, position >= start, position <= end {
                resolved = position
            } else {
                switch reset {
                case "earliest": resolved = start
                case "latest": resolved = end
                default:
                    let why = position.map { "offset \($0) is outside \(tp)'s range \(start)...\(end)" } ?? "group \(name) has no committed offset for \(tp)"
                    throw BrokerError(.conflict, "\(why) and auto.offset.reset=none; commit a starting offset with POST /v1/groups/\(name)/offsets")
                }
            }
            positions.append((tp, resolved))
        }
        var fetched = FetchedEvents()
        if positions.isEmpty {
            // Nothing readable yet (no partitions, or all still moving): wait a little so a client loop does not spin.
            try? await Task.sleep(for: .milliseconds(min(waitMs, 200)))
        } else {
            fetched = try await broker.fetch(positions, maxRecords: maxRecords, maxBytesPerPartition: config.int("max.partition.fetch.bytes"), maxWaitMs: waitMs)
        }
        let events = fetched.events
        var next = Dictionary(uniqueKeysWithValues: positions.map { ($0.0, $0.1) })
        next.merge(fetched.next) { max($0, $1) }
        groups.withLock { groups in
            guard var group = groups[name], var member = group.members[id] else { return }
            for (tp, offset) in next where group.assignment[tp] == id { member.positions[tp] = offset }
            group.members[id] = member
            groups[name] = group
        }
        return PollResult(member: assignment, events: events, positions: next)
    }

    /// Commits offsets (each the next offset to read) for a member of the group, or — when `member` is nil —
    /// for a group without members (an operator resetting offsets). Returns once they are durable.
    public func commit(group name: String, member id: String?, offsets: [(TopicPartition, Int64, String)]) async throws(BrokerError) -> [GroupPartition: CommittedOffset] {
        if broker.remote != nil { return try await commitClusterMember(group: name, id: id, offsets: offsets) }
        try Self.validateGroupName(name)
        guard !offsets.isEmpty else {
            throw BrokerError.badRequest("'offsets' must list at least one {topic, partition, offset}", attribute: "offsets")
        }
        if id == nil { try admitGroup(name) }
        let now = currentTimeMillis()
        var commits: [GroupPartition: CommittedOffset] = [:]
        for (index, (tp, offset, metadata)) in offsets.enumerated() {
            let log = try broker.partitionLog(tp)
            guard offset >= 0 else {
                throw BrokerError.badRequest("offsets[\(index)].offset=\(offset) must not be negative", attribute: "offsets[\(index)].offset")
            }
            guard offset <= log.logEndOffset else {
                throw BrokerError.badRequest("offsets[\(index)].offset=\(offset) is beyond the end of \(tp) (log end offset \(log.logEndOffset)); commit the offset of the next record to read, at most the log end offset",
                                             attribute: "offsets[\(index)].offset")
            }
            commits[GroupPartition(group: name, topic: tp.topic, partition: tp.partition)] = CommittedOffset(offset: offset, metadata: metadata, commitTime: now)
        }
        try groups.withLock { groups throws(BrokerError) in
            let group = groups[name]
            if let id {
                guard var group else { throw unknownGroup(name) }
                guard group.members[id] != nil else { throw unknownMember(id, group: name) }
                for (tp, _, _) in offsets where group.assignment[tp] != id && group.revoking[tp] != id {
                    throw BrokerError(.conflict, "\(tp) is not assigned to member \(id) in generation \(group.generation) of group \(name); poll to learn the current assignment")
                }
                group.members[id]!.lastSeen = DispatchTime.now().uptimeNanoseconds
                group.members[id]!.lastSeenMillis = currentTimeMillis()
                groups[name] = group
            } else if let group, !group.members.isEmpty {
                throw BrokerError(.conflict, "group \(name) has \(group.members.count) active member(s); commit as a member (member_id) or wait until the group is empty")
            }
            if let kafka = kafkaGroups.withLock({ $0[name] }), kafka.members > 0 {
                throw BrokerError(.conflict, "group \(name) has \(kafka.members) Kafka client member(s); they commit through the Kafka protocol")
            }
        }
        try await durable(commits)
        return commits
    }

    private func autoCommits(_ group: Group, _ member: Member) -> [GroupPartition: CommittedOffset] {
        guard member.autoCommit else { return [:] }
        let now = currentTimeMillis()
        var commits: [GroupPartition: CommittedOffset] = [:]
        for (tp, position) in member.positions where group.assignment[tp] == member.id || group.revoking[tp] == member.id {
            let key = GroupPartition(group: group.name, topic: tp.topic, partition: tp.partition)
            if store.offset(key)?.offset != position { commits[key] = CommittedOffset(offset: position, commitTime: now) }
        }
        return commits
    }

    private func durable(_ commits: [GroupPartition: CommittedOffset]) async throws(BrokerError) {
        guard !commits.isEmpty else { return }
        do {
            try await store.commit(commits)
        } catch {
            throw BrokerError(error)
        }
        recordOffsets(commits.keys)
    }

    // MARK: - Groups

    /// Names of groups with members or committed offsets.
    public var groupNames: [String] {
        if broker.remote != nil { return clusterGroupNames }
        let live = groups.withLock { Set($0.filter { !$0.value.members.isEmpty }.keys) }
        let kafka = kafkaGroups.withLock { Set($0.filter { $0.value.members > 0 }.keys) }
        return live.union(kafka).union(store.groupNames).sorted()
    }

    /// Members and state of every group with members (for metrics), HTTP and Kafka groups alike.
    public func memberCounts() -> [String: (members: Int, state: GroupState, topics: Set<String>)] {
        var counts: [String: (members: Int, state: GroupState, topics: Set<String>)] = groups.withLock { groups in
            groups.mapValues { ($0.members.count, $0.state, Set($0.members.values.flatMap(\.topics))) }
        }
        for (name, kafka) in kafkaGroups.withLock({ $0 }) where (counts[name]?.members ?? 0) == 0 {
            counts[name] = (kafka.members, kafka.state, kafka.topics)
        }
        return counts
    }

    /// Members of the HTTP group `name` (the Kafka listener refuses Kafka members for a group that has any).
    public func httpMemberCount(_ name: String) -> Int { groups.withLock { $0[name]?.members.count ?? 0 } }

    /// Where descriptions of Kafka groups get their members from (the Kafka listener, which owns them).
    public func describeKafkaMembers(with source: @escaping @Sendable (String) -> [MemberDescription]) {
        kafkaMembers.withLock { $0 = source }
    }

    /// Records what the Kafka listener's group `name` looks like now (nil: forget it).
    public func reportKafkaGroup(_ name: String, _ summary: KafkaGroupSummary?) {
        let previous = kafkaGroups.withLock { groups in
            defer { groups[name] = summary }
            return groups[name]?.metadata
        }
        // Recorded once per generation, and again when the group empties.
        if let metadata = summary?.metadata, previous?.generation != metadata.generation || previous?.members.isEmpty != metadata.members.isEmpty {
            recordGroupMetadata(name, metadata)
        }
    }

    /// Commits offsets for a Kafka group (the listener has checked membership and generation). Returns once durable.
    public func commitKafkaOffsets(group name: String, _ commits: [GroupPartition: CommittedOffset]) async throws(BrokerError) {
        try Self.validateGroupName(name)
        if store.offsets(group: name).isEmpty { try admitGroup(name) }
        try await durable(commits)
    }

    public func describe(group name: String) throws(BrokerError) -> GroupDescription {
        if broker.remote != nil { return try describeClusterGroup(name) }
        try Self.validateGroupName(name)
        let live = groups.withLock { $0[name] }
        let kafka = kafkaGroups.withLock { $0[name] }
        let offsets = store.offsets(group: name)
        if (live == nil || live!.members.isEmpty) && (kafka?.members ?? 0) == 0 && offsets.isEmpty { throw unknownGroup(name) }
        let members = (live?.members.values ?? [:].values).sorted { $0.id < $1.id }.map { member in
            MemberDescription(id: member.id, clientId: member.clientId, topics: member.topics.sorted(), assignment: live!.owned(by: member.id),
                              joinedMillis: member.joinedMillis, lastSeenMillis: member.lastSeenMillis,
                              sessionTimeoutMs: member.sessionTimeoutMs, autoCommit: member.autoCommit)
        }
        let now = currentTimeMillis()
        let partitions = offsets.sorted { $0.key < $1.key }.compactMap { lag.compute($0.key, $0.value, now: now) }
        if let kafka, kafka.members > 0, live?.members.isEmpty ?? true {
            let members = kafkaMembers.withLock { $0 }?(name) ?? []
            return GroupDescription(name: name, state: kafka.state, strategy: nil, generation: kafka.generation, members: members,
                                    partitions: partitions, status: partitions.map(\.status).max() ?? .ok)
        }
        return GroupDescription(name: name, state: live?.state ?? .empty, strategy: live?.strategy, generation: live?.generation ?? 0,
                                members: members, partitions: partitions, status: partitions.map(\.status).max() ?? .ok)
    }

    /// Deletes a group without members, with its committed offsets.
    public func deleteGroup(_ name: String) async throws(BrokerError) {
        try broker.requireEmbedded("deleting groups through Sluice (use the cluster's own tools, e.g. kafka-consumer-groups --delete)")
        try Self.validateGroupName(name)
        let live = groups.withLock { $0[name] }
        if let live, !live.members.isEmpty {
            throw BrokerError(.conflict, "group \(name) has \(live.members.count) active member(s); they must leave (DELETE …/members/{id}) before the group can be deleted")
        }
        if let kafka = kafkaGroups.withLock({ $0[name] }), kafka.members > 0 {
            throw BrokerError(.conflict, "group \(name) has \(kafka.members) Kafka client member(s); stop them (they leave the group) before it can be deleted")
        }
        let committed = store.offsets(group: name).keys
        guard live != nil || !committed.isEmpty else { throw unknownGroup(name) }
        defer {
            recordOffsets(committed)
            recordGroupMetadata(name, nil)
        }
        do {
            try await store.deleteGroup(name)
        } catch {
            throw BrokerError(error)
        }
        groups.withLock { _ = $0.removeValue(forKey: name) }
        lag.forget(group: name)
        logger.info("consumer group deleted", metadata: [LogField.group: .string(name)])
    }

    /// Drops every group's offsets of a deleted topic.
    public func topicDeleted(_ topic: String) async {
        let committed = store.all.keys.filter { $0.topic == topic }
        try? await store.deleteTopic(topic)
        recordOffsets(committed)
        expireMembers()
    }

    /// Expires members and computes lag until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(250))
                    if self.broker.remote != nil { await self.expireClusterMembers() } else { self.expireMembers() }
                }
            }
            tasks.addTask {
                while !Task.isCancelled {
                    // A pass over many partitions is CPU work: it runs on a utility thread, not the task pool
                    // that serves requests.
                    if let remote = self.broker.remote {
                        // The cluster's groups: its requests run on the cluster's own queue.
                        await self.lag.evaluate(remote: remote)
                        try? await Task.sleep(for: .milliseconds(self.lag.settings.intervalMs))
                        continue
                    }
                    let members = self.memberCounts()
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        DispatchQueue.global(qos: .utility).async {
                            self.lag.evaluate(groups: members)
                            continuation.resume()
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(self.lag.settings.intervalMs))
                }
            }
        }
    }

    func unknownGroup(_ name: String) -> BrokerError {
        BrokerError(.notFound, "consumer group \(name) does not exist (no members and no committed offsets); join it with POST /v1/groups/\(name)/members")
    }

    func unknownMember(_ id: String, group: String) -> BrokerError {
        BrokerError(.notFound, "member \(id) is not in group \(group): it left or was removed after session.timeout.ms without a poll or heartbeat; join again")
    }
}
