import Dispatch
import Logging
import SluiceLog
import SluiceTelemetry
import Synchronization

/// HTTP consumer-group members on a cluster (`log.backend=kafka`): each is a consumer in the cluster's group, so
/// members behind different agents (and Kafka clients using the same group) share the partitions, and the cluster
/// keeps the committed offsets. The agent keeps what the HTTP API adds: when the member was last heard from (an
/// HTTP member that stops polling and heartbeating leaves after its session timeout, though its consumer would
/// heartbeat on), and where its last poll ended (committed before the next one when the member auto-commits).
final class ClusterMembers: Sendable {
    struct Entry: Sendable {
        let group: String
        let member: any GroupMember
        let clientId: String
        let topics: [String]
        let sessionTimeoutMs: Int64
        let autoCommit: Bool
        let joinedMillis: Int64
        var lastSeen: UInt64
        var lastSeenMillis: Int64
        var assignment: [TopicPartition] = []
        /// Where the last poll ended on the member's partitions.
        var positions: [TopicPartition: Int64] = [:]
        /// Polls in progress: a member waiting in a long poll is not expired.
        var polling = 0
    }

    let entries = Mutex<[String: Entry]>([:])
}

extension GroupCoordinator {
    /// Adds an HTTP member to `group`: in this agent's coordinator on the embedded log, in the cluster's group on a
    /// cluster. What it owns comes with its polls (on a cluster, after the group's first rebalance).
    public func joinMember(group name: String, options: MemberOptions) async throws(BrokerError) -> MemberAssignment {
        guard broker.remote != nil else { return try join(group: name, options: options) }
        let (_, reset) = try checkJoin(group: name, options: options)
        var options = options
        options.offsetReset = reset
        let member = try await self.member(of: name, options: options)
        let assignment = try await member.heartbeat()
        let now = currentTimeMillis()
        clusterMembers.entries.withLock {
            $0[member.memberId] = ClusterMembers.Entry(group: name, member: member, clientId: options.clientId, topics: options.topics.sorted(),
                                                       sessionTimeoutMs: options.sessionTimeoutMs ?? assignment.sessionTimeoutMs,
                                                       autoCommit: options.autoCommit ?? config.bool("enable.auto.commit"), joinedMillis: now,
                                                       lastSeen: DispatchTime.now().uptimeNanoseconds, lastSeenMillis: now)
        }
        return assignment
    }

    /// Marks an HTTP member alive and returns what it owns now.
    public func heartbeatMember(group name: String, member id: String) async throws(BrokerError) -> MemberAssignment {
        guard broker.remote != nil else { return try heartbeat(group: name, member: id) }
        let entry = try touchClusterMember(group: name, id: id)
        return try await entry.member.heartbeat()
    }

    /// Marks a cluster member seen and returns it; `not_found` when it is not this agent's member of `group`.
    @discardableResult
    private func touchClusterMember(group name: String, id: String, polls: Int = 0) throws(BrokerError) -> ClusterMembers.Entry {
        try clusterMembers.entries.withLock { entries throws(BrokerError) -> ClusterMembers.Entry in
            guard var entry = entries[id], entry.group == name else { throw unknownMember(id, group: name) }
            entry.lastSeen = DispatchTime.now().uptimeNanoseconds
            entry.lastSeenMillis = currentTimeMillis()
            entry.polling += polls
            entries[id] = entry
            return entry
        }
    }

    /// A poll of a cluster member: first commits where the previous poll ended when the member auto-commits.
    func pollClusterMember(group name: String, id: String, maxRecords: Int, waitMs: Int64) async throws(BrokerError) -> PollResult {
        let entry = try touchClusterMember(group: name, id: id, polls: 1)
        defer { _ = try? touchClusterMember(group: name, id: id, polls: -1) }
        if entry.autoCommit { try await autoCommit(entry) }
        do {
            let result = try await entry.member.poll(maxRecords: maxRecords, waitMs: waitMs)
            clusterMembers.entries.withLock { entries in
                entries[id]?.assignment = result.member.assignment
                entries[id]?.positions = result.positions.filter { result.member.assignment.contains($0.key) }
            }
            return result
        } catch {
            if error.kind == .notFound { await dropClusterMember(id) }
            throw error
        }
    }

    /// Commits where the last poll ended; partitions that moved since are the new owner's to commit.
    private func autoCommit(_ entry: ClusterMembers.Entry) async throws(BrokerError) {
        guard !entry.positions.isEmpty else { return }
        do {
            try await entry.member.commit(entry.positions.sorted { $0.key < $1.key }.map { ($0.key, $0.value, "") })
        } catch where error.kind == .conflict {
            logger.info("auto-commit skipped partitions that moved to another member", metadata: [LogField.group: .string(entry.group), LogField.member: .string(entry.member.memberId)])
        }
    }

    /// Commits offsets of a cluster member's partitions in the cluster's group.
    func commitClusterMember(group name: String, id: String?, offsets: [(TopicPartition, Int64, String)]) async throws(BrokerError) -> [GroupPartition: CommittedOffset] {
        try Self.validateGroupName(name)
        guard let id else {
            throw BrokerError.badRequest("with log.backend=kafka, offsets are committed by a member of the group (give 'member_id'); the cluster keeps a group's offsets and takes them only from its members",
                                         attribute: "member_id")
        }
        guard !offsets.isEmpty else {
            throw BrokerError.badRequest("'offsets' must list at least one {topic, partition, offset}", attribute: "offsets")
        }
        for (index, (_, offset, _)) in offsets.enumerated() where offset < 0 {
            throw BrokerError.badRequest("offsets[\(index)].offset=\(offset) must not be negative", attribute: "offsets[\(index)].offset")
        }
        let entry = try touchClusterMember(group: name, id: id)
        let owned = Set(try await entry.member.heartbeat().assignment)
        for (tp, _, _) in offsets where !owned.contains(tp) {
            throw BrokerError(.conflict, "\(tp) is not assigned to member \(id) of group \(name); poll to learn the current assignment")
        }
        for (index, (tp, offset, _)) in offsets.enumerated() {
            guard let remote = broker.remote else { break }
            let end = try await remote.offsets(topic: tp.topic, partition: tp.partition).end
            guard offset <= end else {
                throw BrokerError.badRequest("offsets[\(index)].offset=\(offset) is beyond the end of \(tp) (log end offset \(end)); commit the offset of the next record to read, at most the log end offset",
                                             attribute: "offsets[\(index)].offset")
            }
        }
        try await entry.member.commit(offsets)
        let now = currentTimeMillis()
        var commits: [GroupPartition: CommittedOffset] = [:]
        for (tp, offset, metadata) in offsets {
            commits[GroupPartition(group: name, topic: tp.topic, partition: tp.partition)] = CommittedOffset(offset: offset, metadata: metadata, commitTime: now)
        }
        return commits
    }

    /// Leaves the cluster's group (committing where the last poll ended when the member auto-commits).
    func leaveClusterMember(group name: String, id: String) async throws(BrokerError) {
        let entry = try touchClusterMember(group: name, id: id)
        if entry.autoCommit { try? await autoCommit(entry) }
        await dropClusterMember(id)
        logger.info("consumer group member left", metadata: [LogField.group: .string(name), LogField.member: .string(id)])
    }

    private func dropClusterMember(_ id: String) async {
        guard let entry = clusterMembers.entries.withLock({ $0.removeValue(forKey: id) }) else { return }
        await entry.member.leave()
    }

    /// Cluster members not heard from within their session timeout (and not waiting in a poll) leave the group.
    func expireClusterMembers() async {
        let now = DispatchTime.now().uptimeNanoseconds
        let gone = clusterMembers.entries.withLock { entries in
            entries.values.filter { $0.polling == 0 && now > $0.lastSeen + UInt64($0.sessionTimeoutMs) * 1_000_000 }
        }
        for entry in gone {
            await dropClusterMember(entry.member.memberId)
            logger.warning("consumer group member removed: not heard from within its session timeout", metadata: [
                LogField.group: .string(entry.group), LogField.member: .string(entry.member.memberId),
                "session_timeout_ms": .stringConvertible(entry.sessionTimeoutMs),
            ])
        }
    }

    /// Groups with HTTP members here or lag from the last pass over the cluster.
    var clusterGroupNames: [String] {
        let live = clusterMembers.entries.withLock { Set($0.values.map(\.group)) }
        return live.union(lag.clusterGroups).sorted()
    }

    /// A group on a cluster: this agent's HTTP members of it, and its lag as the last pass found it.
    func describeClusterGroup(_ name: String) throws(BrokerError) -> GroupDescription {
        try Self.validateGroupName(name)
        let entries = clusterMembers.entries.withLock { $0.values.filter { $0.group == name } }.sorted { $0.member.memberId < $1.member.memberId }
        let rows = lag.clusterRows(group: name)
        guard !entries.isEmpty || rows != nil else { throw unknownGroup(name) }
        let members = entries.map { entry in
            MemberDescription(id: entry.member.memberId, clientId: entry.clientId, topics: entry.topics, assignment: entry.assignment,
                              joinedMillis: entry.joinedMillis, lastSeenMillis: entry.lastSeenMillis, sessionTimeoutMs: entry.sessionTimeoutMs,
                              autoCommit: entry.autoCommit)
        }
        let partitions = (rows ?? []).sorted { $0.key < $1.key }
        return GroupDescription(name: name, state: members.isEmpty ? .empty : .stable, strategy: nil, generation: 0, members: members,
                                partitions: partitions, status: partitions.map(\.status).max() ?? .ok)
    }

    /// Leaves every cluster member (at shutdown), so their partitions go to the other agents' members at once.
    public func leaveClusterMembers() async {
        for id in clusterMembers.entries.withLock({ Array($0.keys) }) { await dropClusterMember(id) }
    }
}
