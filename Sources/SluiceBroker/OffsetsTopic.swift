import Logging
import SluiceLog
import SluiceTelemetry

/// A consumer group's membership as Kafka stores it in `__consumer_offsets` (group metadata value v1, or v3
/// when a member has a group instance id).
public struct GroupMetadataRecord: Sendable, Hashable {
    public struct Member: Sendable, Hashable {
        public var id: String
        public var instanceId: String?
        public var clientId: String
        public var clientHost: String
        public var rebalanceTimeoutMs: Int32
        public var sessionTimeoutMs: Int32
        public var subscription: [UInt8]
        public var assignment: [UInt8]

        public init(id: String, instanceId: String?, clientId: String, clientHost: String, rebalanceTimeoutMs: Int32, sessionTimeoutMs: Int32,
                    subscription: [UInt8], assignment: [UInt8]) {
            self.id = id
            self.instanceId = instanceId
            self.clientId = clientId
            self.clientHost = clientHost
            self.rebalanceTimeoutMs = rebalanceTimeoutMs
            self.sessionTimeoutMs = sessionTimeoutMs
            self.subscription = subscription
            self.assignment = assignment
        }
    }

    public var protocolType: String
    public var generation: Int32
    public var protocolName: String?
    public var leader: String?
    public var stateTimestamp: Int64
    public var members: [Member]

    public init(protocolType: String, generation: Int32, protocolName: String?, leader: String?, stateTimestamp: Int64, members: [Member]) {
        self.protocolType = protocolType
        self.generation = generation
        self.protocolName = protocolName
        self.leader = leader
        self.stateTimestamp = stateTimestamp
        self.members = members
    }
}

/// Kafka's internal topic `__consumer_offsets`, kept by Sluice so that tools which read it (Burrow, lag
/// exporters) work: every durable offset commit, HTTP or Kafka, is appended as Kafka's offset-commit record
/// (key v1, value v1), each Kafka group's membership after a rebalance as a group-metadata record (key v2),
/// and deletions as tombstones. The committed-offsets file stays the source of truth; at start the current
/// offsets are appended again, so the topic is whole after any crash. One partition; clients cannot write it.
public enum OffsetsTopic {
    public static let name = "__consumer_offsets"

    /// Topics only Sluice writes.
    public static func isInternal(_ topic: String) -> Bool { topic == name }

    static func offsetKey(_ key: GroupPartition) -> [UInt8] {
        var out = BigEndianBytes()
        out.int16(1)
        out.string(key.group)
        out.string(key.topic)
        out.int32(key.partition)
        return out.bytes
    }

    static func offsetValue(_ committed: CommittedOffset) -> [UInt8] {
        var out = BigEndianBytes()
        out.int16(1)
        out.int64(committed.offset)
        out.string(committed.metadata)
        out.int64(committed.commitTime)
        out.int64(-1)  // expire timestamp: none (offsets are kept until the group is deleted)
        return out.bytes
    }

    static func groupKey(_ group: String) -> [UInt8] {
        var out = BigEndianBytes()
        out.int16(2)
        out.string(group)
        return out.bytes
    }

    static func groupValue(_ record: GroupMetadataRecord) -> [UInt8] {
        let withInstances = record.members.contains { $0.instanceId != nil }
        var out = BigEndianBytes()
        // v1 is what every reader knows (Burrow 1.2 decodes v0 and v1 only); v3 is needed for instance ids.
        out.int16(withInstances ? 3 : 1)
        out.string(record.protocolType)
        out.int32(record.generation)
        out.nullableString(record.protocolName)
        out.nullableString(record.leader)
        if withInstances { out.int64(record.stateTimestamp) }
        out.int32(Int32(record.members.count))
        for member in record.members {
            out.string(member.id)
            if withInstances { out.nullableString(member.instanceId) }
            out.string(member.clientId)
            out.string(member.clientHost)
            out.int32(member.rebalanceTimeoutMs)
            out.int32(member.sessionTimeoutMs)
            out.bytes(member.subscription)
            out.bytes(member.assignment)
        }
        return out.bytes
    }
}

/// The few big-endian primitives of Kafka's stored key and value schemas.
struct BigEndianBytes {
    var bytes: [UInt8] = []

    mutating func int16(_ value: Int16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func int32(_ value: Int32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func int64(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }

    mutating func string(_ value: String) {
        int16(Int16(clamping: value.utf8.count))
        bytes.append(contentsOf: value.utf8.prefix(Int(Int16.max)))
    }

    mutating func nullableString(_ value: String?) {
        guard let value else { return int16(-1) }
        string(value)
    }

    mutating func bytes(_ value: [UInt8]) {
        int32(Int32(clamping: value.count))
        bytes.append(contentsOf: value)
    }
}

extension Broker {
    /// Appends records to `__consumer_offsets` (creating it on first use) and wakes waiting fetches. A failure
    /// is logged, never thrown: the committed-offsets file already holds what the records describe.
    func appendToOffsetsTopic(_ records: [Record]) {
        guard !records.isEmpty else { return }
        do {
            let state = try state(for: OffsetsTopic.name, create: true)
            let log = state.topic.partitions[0]
            let info = try log.appendWithoutFlush(try RecordBatch.encodeChecked(records))
            metrics.partitionChanged(topic: OffsetsTopic.name, partition: 0, startOffset: log.logStartOffset, endOffset: info.lastOffset + 1, lastStableOffset: log.lastStableOffset,
                                     sizeBytes: log.sizeInBytes, lastAppendMillis: info.appendTime)
            state.notifiers[0].notify()
        } catch {
            logger.error("could not append to \(OffsetsTopic.name); committed offsets are safe in the offsets file, tools reading the topic miss these records",
                         metadata: ["error": .string("\(error)"), "records": .stringConvertible(records.count)])
        }
    }
}

extension GroupCoordinator {
    /// Appends the current value of each committed partition (the latest, whatever order concurrent commits
    /// finished in), or a tombstone where none is left.
    func recordOffsets(_ keys: some Sequence<GroupPartition>) {
        let now = currentTimeMillis()
        broker.appendToOffsetsTopic(keys.map { key in
            let committed = store.offset(key)
            return Record(timestamp: committed?.commitTime ?? now, key: OffsetsTopic.offsetKey(key), value: committed.map(OffsetsTopic.offsetValue))
        })
    }

    func recordGroupMetadata(_ group: String, _ metadata: GroupMetadataRecord?) {
        broker.appendToOffsetsTopic([Record(timestamp: currentTimeMillis(), key: OffsetsTopic.groupKey(group),
                                            value: metadata.map(OffsetsTopic.groupValue))])
    }

    /// At start: every committed offset once more, so the topic matches the offsets file after any crash.
    func recordAllOffsets() {
        let keys = store.all.keys.sorted { ($0.group, $0.topic, $0.partition) < ($1.group, $1.topic, $1.partition) }
        for chunk in stride(from: 0, to: keys.count, by: 1000) { recordOffsets(keys[chunk..<min(chunk + 1000, keys.count)]) }
    }
}
