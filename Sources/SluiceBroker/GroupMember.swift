/// One member of a consumer group, as a subscriber sees it: it polls events of the partitions the group gives
/// it, commits offsets, keeps its membership alive and leaves. Embedded: a member of ``GroupCoordinator``'s
/// group; on a cluster (`log.backend=kafka`): a Kafka consumer in the cluster's group, so that members behind
/// different agents share the partitions.
public protocol GroupMember: Sendable {
    var group: String { get }
    var memberId: String { get }
    /// Events of the member's partitions, waiting up to `waitMs` for the first. A member that was removed from its
    /// group gets a `not_found` error and joins again.
    func poll(maxRecords: Int, waitMs: Int64) async throws(BrokerError) -> PollResult
    /// Commits offsets (the next offset to read, per partition) durably. `conflict` when a partition moved to
    /// another member meanwhile: its offsets are no longer this member's to commit.
    func commit(_ offsets: [(TopicPartition, Int64, String)]) async throws(BrokerError)
    /// Keeps the membership alive while the member does not poll, and says what it owns now.
    @discardableResult
    func heartbeat() async throws(BrokerError) -> MemberAssignment
    /// Leaves the group (its partitions go to the other members at once).
    func leave() async
}

/// A member of an embedded group.
struct EmbeddedGroupMember: GroupMember {
    let groups: GroupCoordinator
    let group: String
    let memberId: String

    func poll(maxRecords: Int, waitMs: Int64) async throws(BrokerError) -> PollResult {
        try await groups.poll(group: group, member: memberId, maxRecords: maxRecords, waitMs: waitMs)
    }

    func commit(_ offsets: [(TopicPartition, Int64, String)]) async throws(BrokerError) {
        _ = try await groups.commit(group: group, member: memberId, offsets: offsets)
    }

    func heartbeat() async throws(BrokerError) -> MemberAssignment {
        try groups.heartbeat(group: group, member: memberId)
    }

    func leave() async {
        try? await groups.leave(group: group, member: memberId)
    }
}

extension GroupCoordinator {
    /// Joins `group` as a member on whichever log the agent runs: the embedded coordinator's, or the cluster's.
    public func member(of group: String, options: MemberOptions) async throws(BrokerError) -> any GroupMember {
        if let remote = broker.remote {
            try Self.validateGroupName(group)
            for topic in options.topics { try await broker.ensure(topic: topic) }
            return try await remote.join(group: group, options: options)
        }
        let assignment = try join(group: group, options: options)
        return EmbeddedGroupMember(groups: self, group: group, memberId: assignment.memberId)
    }
}
