import NIOCore
import SluiceBroker

// The classic consumer-group protocol's messages (non-flexible versions only). Field order follows Kafka's
// message definitions (clients/src/main/resources/common/message/*.json).

// MARK: - FindCoordinator (10)

public enum FindCoordinator {
    /// The group (or transactional id) the client looks for; key type 0 is a group.
    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> (key: String, keyType: Int8) {
        let key = try r.string()
        return (key, version >= 1 ? try r.int8() : 0)
    }

    public static func encodeResponse(version: Int16, error: KafkaError, message: String?, nodeId: Int32, host: String, port: Int32,
                                      into w: inout KafkaWriter) {
        if version >= 1 { w.int32(0) }  // throttle_time_ms
        w.int16(error.rawValue)
        if version >= 1 { w.nullableString(message) }
        w.int32(nodeId)
        w.string(host)
        w.int32(port)
    }
}

// MARK: - JoinGroup (11)

public struct JoinGroupRequest: Sendable {
    public var groupId: String
    public var sessionTimeoutMs: Int32
    public var rebalanceTimeoutMs: Int32
    public var memberId: String
    public var groupInstanceId: String?
    public var protocolType: String
    public var protocols: [(name: String, metadata: [UInt8])]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> JoinGroupRequest {
        let group = try r.string()
        let session = try r.int32()
        let rebalance = version >= 1 ? try r.int32() : session
        let member = try r.string()
        let instance = version >= 5 ? try r.nullableString() : nil
        let type = try r.string()
        let protocols = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            (name: try r.string(), metadata: Array(try r.bytes().readableBytesView))
        }
        return JoinGroupRequest(groupId: group, sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, memberId: member,
                                groupInstanceId: instance, protocolType: type, protocols: protocols)
    }
}

public struct JoinGroupResponse: Sendable {
    public struct Member: Sendable {
        public var memberId: String
        public var groupInstanceId: String?
        public var metadata: [UInt8]
    }

    public var error: KafkaError
    public var generation: Int32
    public var protocolName: String
    public var leader: String
    public var memberId: String
    public var members: [Member]

    static func failed(_ error: KafkaError, memberId: String = "") -> JoinGroupResponse {
        JoinGroupResponse(error: error, generation: -1, protocolName: "", leader: "", memberId: memberId, members: [])
    }

    public func encode(version: Int16, into w: inout KafkaWriter) {
        if version >= 2 { w.int32(0) }
        w.int16(error.rawValue)
        w.int32(generation)
        w.string(protocolName)
        w.string(leader)
        w.string(memberId)
        w.array(members) { w, member in
            w.string(member.memberId)
            if version >= 5 { w.nullableString(member.groupInstanceId) }
            w.bytes(member.metadata)
        }
    }
}

// MARK: - SyncGroup (14)

public struct SyncGroupRequest: Sendable {
    public var groupId: String
    public var generation: Int32
    public var memberId: String
    public var groupInstanceId: String?
    public var assignments: [(memberId: String, assignment: [UInt8])]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> SyncGroupRequest {
        let group = try r.string()
        let generation = try r.int32()
        let member = try r.string()
        let instance = version >= 3 ? try r.nullableString() : nil
        let assignments = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            (memberId: try r.string(), assignment: Array(try r.bytes().readableBytesView))
        }
        return SyncGroupRequest(groupId: group, generation: generation, memberId: member, groupInstanceId: instance, assignments: assignments)
    }

    public static func encodeResponse(version: Int16, error: KafkaError, assignment: [UInt8], into w: inout KafkaWriter) {
        if version >= 1 { w.int32(0) }
        w.int16(error.rawValue)
        w.bytes(assignment)
    }
}

// MARK: - Heartbeat (12), LeaveGroup (13)

public struct HeartbeatRequest: Sendable {
    public var groupId: String
    public var generation: Int32
    public var memberId: String

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> HeartbeatRequest {
        let request = HeartbeatRequest(groupId: try r.string(), generation: try r.int32(), memberId: try r.string())
        if version >= 3 { _ = try r.nullableString() }  // group_instance_id
        return request
    }
}

public enum LeaveGroup {
    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> (group: String, member: String) {
        (try r.string(), try r.string())
    }
}

/// Heartbeat's and LeaveGroup's response: throttle (v1+) and an error code.
func encodeErrorOnly(version: Int16, error: KafkaError, into w: inout KafkaWriter) {
    if version >= 1 { w.int32(0) }
    w.int16(error.rawValue)
}

// MARK: - OffsetCommit (8), OffsetFetch (9)

public struct OffsetCommitRequest: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var offset: Int64
        public var metadata: String?
    }

    public var groupId: String
    public var generation: Int32
    public var memberId: String
    public var topics: [(name: String, partitions: [Partition])]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> OffsetCommitRequest {
        let group = try r.string()
        var generation: Int32 = -1
        var member = ""
        if version >= 1 {
            generation = try r.int32()
            member = try r.string()
        }
        if version >= 7 { _ = try r.nullableString() }  // group_instance_id
        if (2...4).contains(version) { _ = try r.int64() }  // retention_time_ms
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            (name: try r.string(), partitions: try r.array(minimumElementSize: 14) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                let index = try r.int32()
                let offset = try r.int64()
                if version >= 6 { _ = try r.int32() }  // committed_leader_epoch
                if version == 1 { _ = try r.int64() }  // commit_timestamp
                return Partition(index: index, offset: offset, metadata: try r.nullableString())
            })
        }
        return OffsetCommitRequest(groupId: group, generation: generation, memberId: member, topics: topics)
    }

    public static func encodeResponse(version: Int16, topics: [(name: String, partitions: [(index: Int32, error: KafkaError)])],
                                      into w: inout KafkaWriter) {
        if version >= 3 { w.int32(0) }
        w.array(topics) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.error.rawValue)
            }
        }
    }
}

public struct OffsetFetchRequest: Sendable {
    public var groupId: String
    /// nil: every partition the group has committed (v2+).
    public var topics: [(name: String, partitions: [Int32])]?

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> OffsetFetchRequest {
        let group = try r.string()
        let topics = try r.nullableArray(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            (name: try r.string(), partitions: try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.int32() })
        }
        return OffsetFetchRequest(groupId: group, topics: topics)
    }

    public struct Partition: Sendable {
        public var index: Int32
        public var offset: Int64
        public var metadata: String
        public var error: KafkaError
    }

    public static func encodeResponse(version: Int16, topics: [(name: String, partitions: [Partition])], error: KafkaError,
                                      into w: inout KafkaWriter) {
        if version >= 3 { w.int32(0) }
        w.array(topics) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int64(p.offset)
                if version >= 5 { w.int32(-1) }  // committed_leader_epoch
                w.nullableString(p.metadata)
                w.int16(p.error.rawValue)
            }
        }
        if version >= 2 { w.int16(error.rawValue) }
    }
}

// MARK: - ListGroups (16), DescribeGroups (15)

public enum ListGroups {
    public static func encodeResponse(version: Int16, groups: [(id: String, protocolType: String)], into w: inout KafkaWriter) {
        if version >= 1 { w.int32(0) }
        w.int16(0)
        w.array(groups) { w, group in
            w.string(group.id)
            w.string(group.protocolType)
        }
    }
}

public struct DescribedGroup: Sendable {
    public struct Member: Sendable {
        public var memberId: String
        public var groupInstanceId: String?
        public var clientId: String
        public var clientHost: String
        public var metadata: [UInt8]
        public var assignment: [UInt8]
    }

    public var error: KafkaError
    public var groupId: String
    public var state: String
    public var protocolType: String
    public var protocolName: String
    public var members: [Member]
}

public enum DescribeGroups {
    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> [String] {
        let groups = try r.array(minimumElementSize: 2) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.string() }
        if version >= 3 { _ = try r.bool() }  // include_authorized_operations
        return groups
    }

    public static func encodeResponse(version: Int16, groups: [DescribedGroup], into w: inout KafkaWriter) {
        if version >= 1 { w.int32(0) }
        w.array(groups) { w, group in
            w.int16(group.error.rawValue)
            w.string(group.groupId)
            w.string(group.state)
            w.string(group.protocolType)
            w.string(group.protocolName)
            w.array(group.members) { w, member in
                w.string(member.memberId)
                if version >= 4 { w.nullableString(member.groupInstanceId) }
                w.string(member.clientId)
                w.string(member.clientHost)
                w.bytes(member.metadata)
                w.bytes(member.assignment)
            }
            if version >= 3 { w.int32(Int32.min) }  // authorized_operations: not computed
        }
    }
}

// MARK: - The consumer protocol's embedded formats

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription: version, topics, …), for
/// metrics and descriptions; nil when the bytes are not one.
func subscribedTopics(_ metadata: [UInt8]) -> [String]? {
    guard var r = consumerProtocolReader(metadata) else { return nil }
    return try? r.array(minimumElementSize: 2) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.string() }
}

/// The partitions of a `consumer` protocol assignment (ConsumerProtocolAssignment: version, then per topic its
/// name and partitions, then user data), sorted; nil when the bytes are not one.
func assignedPartitions(_ assignment: [UInt8]) -> [TopicPartition]? {
    guard !assignment.isEmpty else { return [] }
    guard var r = consumerProtocolReader(assignment) else { return nil }
    let topics = try? r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) -> [TopicPartition] in
        let topic = try r.string()
        return try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in TopicPartition(topic, try r.int32()) }
    }
    return topics?.flatMap { $0 }.sorted()
}

/// A reader past the version of one of the consumer protocol's embedded structures; nil when there is none.
private func consumerProtocolReader(_ bytes: [UInt8]) -> KafkaReader? {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    var r = KafkaReader(buffer)
    guard (try? r.int16()) != nil else { return nil }
    return r
}
