import Dispatch
import Foundation
public import Logging
public import SluiceBroker
import SluiceLog
import SluiceTelemetry
import Synchronization

/// The classic Kafka group protocol's coordinator, for Kafka clients: JoinGroup rounds (the leader gets every
/// member's subscription and assigns with the strategy the members chose, range, roundrobin or
/// cooperative-sticky), SyncGroup hands out the leader's assignment, Heartbeat and session timeouts, LeaveGroup.
/// Offsets go to the same durable store as HTTP groups', so lag, metrics and `GET /v1/groups` see Kafka groups;
/// a group has either HTTP or Kafka members, never both.
public final class KafkaGroups: Sendable {
    enum State: String, Sendable {
        case empty = "Empty"
        case preparingRebalance = "PreparingRebalance"
        case completingRebalance = "CompletingRebalance"
        case stable = "Stable"

        var groupState: GroupState {
            switch self {
            case .empty: .empty
            case .stable: .stable
            case .preparingRebalance, .completingRebalance: .rebalancing
            }
        }
    }

    struct Member {
        var id: String
        var instanceId: String?
        var clientId: String
        var clientHost: String
        var sessionTimeoutMs: Int32
        var rebalanceTimeoutMs: Int32
        var protocols: [(name: String, metadata: [UInt8])]
        var assignment: [UInt8] = []
        var lastSeen: UInt64  // monotonic nanoseconds
        var joinedMillis: Int64
        var joinWaiter: CheckedContinuation<JoinGroupResponse, Never>?
        var syncWaiter: CheckedContinuation<(KafkaError, [UInt8]), Never>?
    }

    struct Group {
        var state = State.empty
        var generation: Int32 = 0
        var protocolType = "consumer"
        var protocolName = ""
        var leader = ""
        var members: [String: Member] = [:]
        /// Member ids in the order they first joined (the leader is the earliest still present).
        var order: [String] = []
        /// Ids handed out with MEMBER_ID_REQUIRED and not yet used.
        var pendingIds: Set<String> = []
        var rebalanceDeadline: UInt64 = 0
        var notBefore: UInt64 = 0
        /// Member ids replaced by a newer member with the same `group.instance.id` (static membership), so a
        /// zombie's requests get FENCED_INSTANCE_ID instead of rejoining and fencing the new one in turn.
        var fenced: Set<String> = []

        /// Gives the static member `old` the id `new`, keeping its place, its assignment and its leadership;
        /// its waiting requests are answered FENCED_INSTANCE_ID.
        mutating func replaceStatic(_ old: String, with new: String, wakes: inout [Wake]) {
            guard var member = members.removeValue(forKey: old) else { return }
            if let waiter = member.joinWaiter { wakes.append(.join(waiter, .failed(.fencedInstanceId, memberId: old))) }
            if let waiter = member.syncWaiter { wakes.append(.sync(waiter, .fencedInstanceId, [])) }
            member.joinWaiter = nil
            member.syncWaiter = nil
            member.id = new
            member.joinedMillis = currentTimeMillis()
            members[new] = member
            order = order.map { $0 == old ? new : $0 }
            if leader == old { leader = new }
            if fenced.count >= 1000 { fenced.removeAll() }
            fenced.insert(old)
        }
    }

    /// Things to do once the lock is released: resume waiting requests.
    enum Wake {
        case join(CheckedContinuation<JoinGroupResponse, Never>, JoinGroupResponse)
        case sync(CheckedContinuation<(KafkaError, [UInt8]), Never>, KafkaError, [UInt8])

        func run() {
            switch self {
            case .join(let waiter, let response): waiter.resume(returning: response)
            case .sync(let waiter, let error, let assignment): waiter.resume(returning: (error, assignment))
            }
        }
    }

    public let coordinator: GroupCoordinator
    let logger: Logger
    private let groups = Mutex<[String: Group]>([:])
    /// How long a group that was empty waits for more members before its first generation (Kafka's
    /// `group.initial.rebalance.delay.ms`, shorter: a sidecar's consumers start together).
    static let initialDelayNanos: UInt64 = 300_000_000
    static let sessionTimeouts: ClosedRange<Int32> = 1000...1_800_000

    public init(coordinator: GroupCoordinator, logger: Logger) {
        self.coordinator = coordinator
        self.logger = logger
        coordinator.describeKafkaMembers { [weak self] name in self?.members(of: name) ?? [] }
    }

    var metrics: SluiceMetrics { coordinator.broker.metrics }

    // MARK: - Join and sync

    func join(_ request: JoinGroupRequest, version: Int16, clientId: String, clientHost: String) async -> JoinGroupResponse {
        let name = request.groupId
        do {
            try GroupCoordinator.validateGroupName(name)
        } catch {
            return .failed(.invalidGroupId)
        }
        guard Self.sessionTimeouts.contains(request.sessionTimeoutMs) else { return .failed(.invalidSessionTimeout) }
        guard !request.protocols.isEmpty, !request.protocolType.isEmpty else { return .failed(.inconsistentGroupProtocol) }
        if coordinator.httpMemberCount(name) > 0 {
            logger.warning("Kafka JoinGroup refused: the group has HTTP members", metadata: [
                LogField.group: .string(name), LogField.clientId: .string(clientId), LogField.clientAddress: .string(clientHost),
            ])
            return .failed(.inconsistentGroupProtocol)
        }
        return await withCheckedContinuation { (waiter: CheckedContinuation<JoinGroupResponse, Never>) in
            var wakes: [Wake] = []
            let immediate: JoinGroupResponse? = groups.withLock { groups in
                var group = groups[name] ?? Group()
                defer { groups[name] = group }
                let now = DispatchTime.now().uptimeNanoseconds
                var memberId = request.memberId
                if group.fenced.contains(memberId) { return .failed(.fencedInstanceId, memberId: memberId) }
                let instance = version >= 5 ? request.groupInstanceId.flatMap { $0.isEmpty ? nil : $0 } : nil
                let known = instance.flatMap { instance in group.members.values.first { $0.instanceId == instance }?.id }
                if let instance, memberId.isEmpty {
                    // A static member (re)starting: no MEMBER_ID_REQUIRED round, as in Kafka. One already known
                    // takes its old place; in a stable group with an unchanged subscription it keeps its
                    // assignment without a rebalance (the answer names the leader as it was, so this member does
                    // not assign).
                    memberId = (clientId.isEmpty ? "consumer" : clientId) + "-" + UUID().uuidString.lowercased()
                    if let known {
                        let leaderBefore = group.leader
                        let unchanged = group.members[known].map { old in
                            old.protocols.count == request.protocols.count
                                && zip(old.protocols, request.protocols).allSatisfy { $0.name == $1.name && $0.metadata == $1.metadata }
                        } ?? false
                        group.replaceStatic(known, with: memberId, wakes: &wakes)
                        logger.info("consumer group static member rejoined", metadata: [
                            LogField.group: .string(name), LogField.member: .string(memberId), "instance": .string(instance),
                            "replaced": .string(known), "rebalance": .stringConvertible(!(unchanged && group.state == .stable)),
                        ])
                        if unchanged, group.state == .stable {
                            group.members[memberId]!.lastSeen = now
                            group.members[memberId]!.clientHost = clientHost
                            group.members[memberId]!.sessionTimeoutMs = request.sessionTimeoutMs
                            group.members[memberId]!.rebalanceTimeoutMs = request.rebalanceTimeoutMs
                            return JoinGroupResponse(error: .none, generation: group.generation, protocolName: group.protocolName,
                                                     leader: leaderBefore, memberId: memberId, members: [])
                        }
                    }
                } else if let known, known != memberId {
                    return .failed(.fencedInstanceId, memberId: memberId)
                } else if memberId.isEmpty {
                    memberId = (clientId.isEmpty ? "consumer" : clientId) + "-" + UUID().uuidString.lowercased()
                    if version >= 4 {
                        group.pendingIds.insert(memberId)
                        return .failed(.memberIdRequired, memberId: memberId)
                    }
                } else if group.members[memberId] == nil && !group.pendingIds.contains(memberId) {
                    return .failed(.unknownMemberId, memberId: memberId)
                }
                if !group.members.isEmpty, group.protocolType != request.protocolType { return .failed(.inconsistentGroupProtocol, memberId: memberId) }
                let offered = Set(request.protocols.map(\.name))
                if group.members.values.contains(where: { other in other.id != memberId && !other.protocols.contains { offered.contains($0.name) } }) {
                    return .failed(.inconsistentGroupProtocol, memberId: memberId)
                }
                group.pendingIds.remove(memberId)
                if group.members.isEmpty { group.protocolType = request.protocolType }
                if let old = group.members[memberId]?.joinWaiter {
                    wakes.append(.join(old, .failed(.unknownMemberId, memberId: memberId)))
                }
                let isNew = group.members[memberId] == nil
                group.members[memberId] = Member(id: memberId, instanceId: request.groupInstanceId, clientId: clientId, clientHost: clientHost,
                                                 sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs,
                                                 protocols: request.protocols, assignment: group.members[memberId]?.assignment ?? [],
                                                 lastSeen: now, joinedMillis: group.members[memberId]?.joinedMillis ?? currentTimeMillis(),
                                                 joinWaiter: waiter)
                if isNew { group.order.append(memberId) }
                if group.state != .preparingRebalance {
                    if group.state == .empty { group.notBefore = now + Self.initialDelayNanos }
                    startRebalance(&group, name: name, reason: isNew ? "member joined" : "member rejoined", now: now, wakes: &wakes)
                }
                completeJoinIfReady(&group, name: name, now: now, wakes: &wakes)
                return nil
            }
            if let immediate { waiter.resume(returning: immediate) }
            for wake in wakes { wake.run() }
            report(name)
        }
    }

    func sync(_ request: SyncGroupRequest) async -> (KafkaError, [UInt8]) {
        let name = request.groupId
        return await withCheckedContinuation { (waiter: CheckedContinuation<(KafkaError, [UInt8]), Never>) in
            var wakes: [Wake] = []
            let immediate: (KafkaError, [UInt8])? = groups.withLock { groups in
                if groups[name]?.fenced.contains(request.memberId) == true { return (.fencedInstanceId, []) }
                guard var group = groups[name], var member = group.members[request.memberId] else { return (.unknownMemberId, []) }
                defer { groups[name] = group }
                guard request.generation == group.generation else { return (.illegalGeneration, []) }
                member.lastSeen = DispatchTime.now().uptimeNanoseconds
                group.members[request.memberId] = member
                switch group.state {
                case .empty, .preparingRebalance:
                    return (.rebalanceInProgress, [])
                case .stable:
                    return (.none, member.assignment)
                case .completingRebalance:
                    guard request.memberId == group.leader else {
                        group.members[request.memberId]!.syncWaiter = waiter
                        return nil
                    }
                    let assigned = Dictionary(request.assignments.map { ($0.memberId, $0.assignment) }, uniquingKeysWith: { first, _ in first })
                    for id in group.members.keys {
                        group.members[id]!.assignment = assigned[id] ?? []
                        if let pending = group.members[id]!.syncWaiter {
                            wakes.append(.sync(pending, .none, assigned[id] ?? []))
                            group.members[id]!.syncWaiter = nil
                        }
                    }
                    group.state = .stable
                    return (.none, assigned[request.memberId] ?? [])
                }
            }
            if let immediate { waiter.resume(returning: immediate) }
            for wake in wakes { wake.run() }
            report(name)
        }
    }

    func heartbeat(_ request: HeartbeatRequest) -> KafkaError {
        groups.withLock { groups in
            if groups[request.groupId]?.fenced.contains(request.memberId) == true { return .fencedInstanceId }
            guard var group = groups[request.groupId], group.members[request.memberId] != nil else { return .unknownMemberId }
            group.members[request.memberId]!.lastSeen = DispatchTime.now().uptimeNanoseconds
            groups[request.groupId] = group
            guard request.generation == group.generation else { return .illegalGeneration }
            // As in Kafka: a member that has its JoinGroup answer may heartbeat while the leader assigns.
            return group.state == .preparingRebalance ? .rebalanceInProgress : .none
        }
    }

    func leave(group name: String, member id: String) -> KafkaError {
        var wakes: [Wake] = []
        let error: KafkaError = groups.withLock { groups in
            guard var group = groups[name], let member = group.members[id] else { return .unknownMemberId }
            if let waiter = member.joinWaiter { wakes.append(.join(waiter, .failed(.unknownMemberId, memberId: id))) }
            if let waiter = member.syncWaiter { wakes.append(.sync(waiter, .unknownMemberId, [])) }
            remove(id, from: &group, name: name, reason: "member left", wakes: &wakes)
            groups[name] = group
            return .none
        }
        for wake in wakes { wake.run() }
        report(name)
        return error
    }

    private func remove(_ id: String, from group: inout Group, name: String, reason: String, wakes: inout [Wake]) {
        group.members.removeValue(forKey: id)
        group.order.removeAll { $0 == id }
        logger.info("consumer group member left", metadata: [LogField.group: .string(name), LogField.member: .string(id), "reason": .string(reason)])
        if group.members.isEmpty {
            group.state = .empty
            group.leader = ""
        } else {
            let now = DispatchTime.now().uptimeNanoseconds
            if group.state != .preparingRebalance { startRebalance(&group, name: name, reason: reason, now: now, wakes: &wakes) }
            completeJoinIfReady(&group, name: name, now: now, wakes: &wakes)
        }
    }

    private func startRebalance(_ group: inout Group, name: String, reason: String, now: UInt64, wakes: inout [Wake]) {
        group.state = .preparingRebalance
        let timeout = group.members.values.map { UInt64(max($0.rebalanceTimeoutMs, 0)) }.max() ?? 0
        group.rebalanceDeadline = now + timeout * 1_000_000
        for id in group.members.keys {
            if let waiter = group.members[id]!.syncWaiter {
                wakes.append(.sync(waiter, .rebalanceInProgress, []))
                group.members[id]!.syncWaiter = nil
            }
        }
        metrics.counter(MetricName.groupRebalances, name).increment()
        logger.info("consumer group rebalancing", metadata: [LogField.group: .string(name), "reason": .string(reason),
                                                             "generation": .stringConvertible(group.generation)])
    }

    /// Ends the join round once every member has rejoined (or the rebalance timeout dropped those that did not).
    private func completeJoinIfReady(_ group: inout Group, name: String, now: UInt64, wakes: inout [Wake]) {
        guard group.state == .preparingRebalance, now >= group.notBefore else { return }
        let missing = group.members.values.filter { $0.joinWaiter == nil }.map(\.id)
        guard missing.isEmpty || now >= group.rebalanceDeadline else { return }
        for id in missing {
            group.members.removeValue(forKey: id)
            group.order.removeAll { $0 == id }
            logger.info("consumer group member removed: it did not rejoin within the rebalance timeout",
                        metadata: [LogField.group: .string(name), LogField.member: .string(id)])
        }
        guard !group.members.isEmpty else {
            group.state = .empty
            return
        }
        group.generation += 1
        if group.members[group.leader] == nil { group.leader = group.order.first { group.members[$0] != nil } ?? group.members.keys.sorted()[0] }
        // The first of the leader's protocols that every member supports.
        let leader = group.members[group.leader]!
        group.protocolName = leader.protocols.map(\.name).first { candidate in
            group.members.values.allSatisfy { $0.protocols.contains { $0.name == candidate } }
        } ?? leader.protocols[0].name
        let chosen = group.protocolName
        let all = group.order.compactMap { group.members[$0] }.map { member in
            JoinGroupResponse.Member(memberId: member.id, groupInstanceId: member.instanceId,
                                     metadata: member.protocols.first { $0.name == chosen }?.metadata ?? [])
        }
        for id in group.members.keys {
            guard let waiter = group.members[id]!.joinWaiter else { continue }
            group.members[id]!.joinWaiter = nil
            group.members[id]!.lastSeen = now
            wakes.append(.join(waiter, JoinGroupResponse(error: .none, generation: group.generation, protocolName: chosen, leader: group.leader,
                                                         memberId: id, members: id == group.leader ? all : [])))
        }
        group.state = .completingRebalance
        logger.info("consumer group rebalanced", metadata: [LogField.group: .string(name), "generation": .stringConvertible(group.generation),
                                                            "members": .stringConvertible(group.members.count), "protocol": .string(chosen)])
    }

    /// Drops members whose session timed out and ends join rounds whose time is up. Runs until cancelled.
    public func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            tick()
        }
    }

    func tick() {
        var wakes: [Wake] = []
        var changed: [String] = []
        groups.withLock { groups in
            let now = DispatchTime.now().uptimeNanoseconds
            for name in groups.keys {
                var group = groups[name]!
                let before = (group.state, group.members.count, group.generation)
                for member in group.members.values where member.joinWaiter == nil && member.syncWaiter == nil
                    && now > member.lastSeen + UInt64(member.sessionTimeoutMs) * 1_000_000 {
                    remove(member.id, from: &group, name: name, reason: "session timed out", wakes: &wakes)
                }
                completeJoinIfReady(&group, name: name, now: now, wakes: &wakes)
                if before != (group.state, group.members.count, group.generation) { changed.append(name) }
                groups[name] = group
            }
        }
        for wake in wakes { wake.run() }
        for name in changed { report(name) }
    }

    /// Tells the shared coordinator what the group looks like, for metrics and `GET /v1/groups`.
    private func report(_ name: String) {
        let summary: KafkaGroupSummary? = groups.withLock { groups in
            guard let group = groups[name] else { return nil }
            let topics = group.members.values.flatMap { member in member.protocols.first.flatMap { subscribedTopics($0.metadata) } ?? [] }
            var metadata: GroupMetadataRecord?
            // Kafka records a group once the leader's assignment is in, and when its last member has left.
            if group.state == .stable || (group.state == .empty && group.members.isEmpty && group.generation > 0) {
                let members = group.order.compactMap { group.members[$0] }.map { member in
                    GroupMetadataRecord.Member(id: member.id, instanceId: member.instanceId, clientId: member.clientId, clientHost: member.clientHost,
                                               rebalanceTimeoutMs: member.rebalanceTimeoutMs, sessionTimeoutMs: member.sessionTimeoutMs,
                                               subscription: member.protocols.first { $0.name == group.protocolName }?.metadata ?? [],
                                               assignment: member.assignment)
                }
                metadata = GroupMetadataRecord(protocolType: group.protocolType, generation: group.generation,
                                               protocolName: members.isEmpty ? nil : group.protocolName, leader: members.isEmpty ? nil : group.leader,
                                               stateTimestamp: currentTimeMillis(), members: members)
            }
            return KafkaGroupSummary(members: group.members.count, state: group.state.groupState, generation: Int(group.generation),
                                     topics: Set(topics), metadata: metadata)
        }
        coordinator.reportKafkaGroup(name, summary)
    }

    // MARK: - Offsets

    func commit(_ request: OffsetCommitRequest) async -> [(name: String, partitions: [(index: Int32, error: KafkaError)])] {
        func all(_ error: KafkaError) -> [(name: String, partitions: [(index: Int32, error: KafkaError)])] {
            request.topics.map { topic in (topic.name, topic.partitions.map { ($0.index, error) }) }
        }
        let name = request.groupId
        if (try? GroupCoordinator.validateGroupName(name)) == nil { return all(.invalidGroupId) }
        let membership: KafkaError = groups.withLock { groups in
            let group = groups[name]
            if request.generation < 0 && request.memberId.isEmpty {
                // A commit from outside the group (a tool, or a consumer that assigns partitions itself).
                return (group?.members.isEmpty ?? true) ? .none : .unknownMemberId
            }
            guard let group, group.members[request.memberId] != nil else { return .unknownMemberId }
            guard request.generation == group.generation else { return .illegalGeneration }
            return group.state == .completingRebalance ? .rebalanceInProgress : .none
        }
        guard membership == .none else { return all(membership) }
        if request.memberId.isEmpty, coordinator.httpMemberCount(name) > 0 { return all(.unknownMemberId) }
        let now = currentTimeMillis()
        var commits: [GroupPartition: CommittedOffset] = [:]
        var results: [(name: String, partitions: [(index: Int32, error: KafkaError)])] = []
        for topic in request.topics {
            var partitions: [(index: Int32, error: KafkaError)] = []
            for partition in topic.partitions {
                guard (try? coordinator.broker.partitionLog(TopicPartition(topic.name, partition.index))) != nil else {
                    partitions.append((partition.index, .unknownTopicOrPartition))
                    continue
                }
                guard partition.offset >= 0 else {
                    partitions.append((partition.index, .invalidRequest))
                    continue
                }
                commits[GroupPartition(group: name, topic: topic.name, partition: partition.index)] =
                    CommittedOffset(offset: partition.offset, metadata: partition.metadata ?? "", commitTime: now)
                partitions.append((partition.index, .none))
            }
            results.append((topic.name, partitions))
        }
        do {
            try await coordinator.commitKafkaOffsets(group: name, commits)
        } catch {
            logger.warning("Kafka offset commit failed", metadata: [LogField.group: .string(name), "error.message": .string(error.message)])
            let code: KafkaError = error.kind == .conflict ? .coordinatorNotAvailable : .unknownServerError
            return results.map { topic in (topic.name, topic.partitions.map { ($0.index, $0.error == .none ? code : $0.error) }) }
        }
        return results
    }

    func fetchOffsets(_ request: OffsetFetchRequest) -> [(name: String, partitions: [OffsetFetchRequest.Partition])] {
        let committed = coordinator.store.offsets(group: request.groupId)
        let wanted: [(name: String, partitions: [Int32])] = request.topics ?? Dictionary(grouping: committed.keys, by: \.topic)
            .map { ($0.key, $0.value.map(\.partition).sorted()) }.sorted { $0.name < $1.name }
        return wanted.map { topic in
            (topic.name, topic.partitions.map { index in
                let entry = committed[GroupPartition(group: request.groupId, topic: topic.name, partition: index)]
                return OffsetFetchRequest.Partition(index: index, offset: entry?.offset ?? -1, metadata: entry?.metadata ?? "", error: .none)
            })
        }
    }

    // MARK: - Listing

    func list() -> [(id: String, protocolType: String)] {
        let kafka = groups.withLock { groups in groups.filter { !$0.value.members.isEmpty }.mapValues(\.protocolType) }
        return coordinator.groupNames.map { ($0, kafka[$0] ?? (coordinator.httpMemberCount($0) > 0 ? "sluice-http" : "consumer")) }
    }

    /// The members of group `name` as `GET /v1/groups/{group}` shows them, in join order.
    func members(of name: String) -> [MemberDescription] {
        let nowNanos = DispatchTime.now().uptimeNanoseconds, nowMillis = currentTimeMillis()
        return groups.withLock { groups in
            guard let group = groups[name] else { return [] }
            return group.order.compactMap { group.members[$0] }.map { member in
                let subscription = member.protocols.first { $0.name == group.protocolName } ?? member.protocols.first
                let idle = nowNanos > member.lastSeen ? Int64((nowNanos - member.lastSeen) / 1_000_000) : 0
                return MemberDescription(id: member.id, clientId: member.clientId, topics: subscription.flatMap { subscribedTopics($0.metadata) }?.sorted() ?? [],
                                         assignment: assignedPartitions(member.assignment) ?? [], joinedMillis: member.joinedMillis,
                                         lastSeenMillis: nowMillis - idle, sessionTimeoutMs: Int64(member.sessionTimeoutMs), autoCommit: nil,
                                         instanceId: member.instanceId, clientHost: member.clientHost)
            }
        }
    }

    func describe(_ names: [String]) -> [DescribedGroup] {
        names.map { name in
            if let group = groups.withLock({ $0[name] }), !group.members.isEmpty {
                let members = group.order.compactMap { group.members[$0] }.map { member in
                    DescribedGroup.Member(memberId: member.id, groupInstanceId: member.instanceId, clientId: member.clientId, clientHost: member.clientHost,
                                          metadata: member.protocols.first { $0.name == group.protocolName }?.metadata ?? [],
                                          assignment: member.assignment)
                }
                return DescribedGroup(error: .none, groupId: name, state: group.state.rawValue, protocolType: group.protocolType,
                                      protocolName: group.protocolName, members: members)
            }
            if (try? GroupCoordinator.validateGroupName(name)) == nil {
                return DescribedGroup(error: .invalidGroupId, groupId: name, state: "", protocolType: "", protocolName: "", members: [])
            }
            let http = coordinator.httpMemberCount(name)
            // Kafka answers an unknown group as Dead with no members; HTTP groups show their state without members.
            let known = coordinator.groupNames.contains(name)
            return DescribedGroup(error: .none, groupId: name, state: !known ? "Dead" : (http > 0 ? "Stable" : "Empty"),
                                  protocolType: http > 0 ? "sluice-http" : (known ? "consumer" : ""), protocolName: "", members: [])
        }
    }
}
