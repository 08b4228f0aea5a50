public import NIOCore
public import SluiceLog

// Requests and responses of the APIs in ``KafkaAPI``, field by field as apache/kafka's message definitions
// (clients/src/main/resources/common/message/*.json) give them for each version. Decoding reads a request body
// after its header; encoding writes a response body without its header.

// MARK: - ApiVersions (18)

public enum ApiVersions {
    /// v0–v2 requests have no body (v3 adds client software fields, in a flexible encoding Sluice does not serve).
    public static func encodeResponse(version: Int16, error: KafkaError = .none, into w: inout KafkaWriter) {
        w.int16(error.rawValue)
        w.array(KafkaAPI.allCases.sorted { $0.rawValue < $1.rawValue }) { w, api in
            w.int16(api.rawValue)
            w.int16(api.advertisedVersions.lowerBound)
            w.int16(api.advertisedVersions.upperBound)
        }
        if version >= 1 { w.int32(0) }  // throttle_time_ms
    }
}

// MARK: - Metadata (3)

public struct MetadataRequest: Sendable, Hashable {
    /// nil: every topic (v0 sends an empty list for that).
    public var topics: [String]?
    public var allowAutoTopicCreation: Bool

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> MetadataRequest {
        var topics = try r.nullableArray(minimumElementSize: 2) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.string() }
        if version == 0 && topics?.isEmpty == true { topics = nil }
        if version == 0 && topics == nil { topics = nil }
        let allow = version >= 4 ? try r.bool() : true
        if version >= 8 {
            _ = try r.bool()  // include_cluster_authorized_operations
            _ = try r.bool()  // include_topic_authorized_operations
        }
        return MetadataRequest(topics: topics, allowAutoTopicCreation: allow)
    }
}

public struct MetadataResponse: Sendable {
    public struct Broker: Sendable {
        public var nodeId: Int32
        public var host: String
        public var port: Int32
    }
    public struct Partition: Sendable {
        public var error: KafkaError
        public var index: Int32
        public var leader: Int32
    }
    public struct Topic: Sendable {
        public var error: KafkaError
        public var name: String
        public var isInternal: Bool
        public var partitions: [Partition]
    }
    public var brokers: [Broker]
    public var clusterId: String?
    public var controllerId: Int32
    public var topics: [Topic]

    public func encode(version: Int16, into w: inout KafkaWriter) {
        if version >= 3 { w.int32(0) }  // throttle_time_ms
        w.array(brokers) { w, broker in
            w.int32(broker.nodeId)
            w.string(broker.host)
            w.int32(broker.port)
            if version >= 1 { w.nullableString(nil) }  // rack
        }
        if version >= 2 { w.nullableString(clusterId) }
        if version >= 1 { w.int32(controllerId) }
        w.array(topics) { w, topic in
            w.int16(topic.error.rawValue)
            w.string(topic.name)
            if version >= 1 { w.bool(topic.isInternal) }
            w.array(topic.partitions) { w, partition in
                w.int16(partition.error.rawValue)
                w.int32(partition.index)
                w.int32(partition.leader)
                if version >= 7 { w.int32(0) }  // leader_epoch
                w.array([partition.leader]) { w, node in w.int32(node) }  // replica_nodes
                w.array([partition.leader]) { w, node in w.int32(node) }  // isr_nodes
                if version >= 5 { w.array([Int32]()) { w, node in w.int32(node) } }  // offline_replicas
            }
            if version >= 8 { w.int32(Int32.min) }  // topic_authorized_operations: not computed
        }
        if version >= 8 { w.int32(Int32.min) }  // cluster_authorized_operations: not computed
    }
}

// MARK: - Produce (0)

public struct ProduceRequest: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var records: ByteBuffer?
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var transactionalId: String?
    public var acks: Int16
    public var timeoutMs: Int32
    public var topics: [Topic]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> ProduceRequest {
        let transactionalId = try r.nullableString()
        let acks = try r.int16()
        let timeout = try r.int32()
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            Topic(name: try r.string(), partitions: try r.array(minimumElementSize: 8) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                Partition(index: try r.int32(), records: try r.nullableBytes())
            })
        }
        return ProduceRequest(transactionalId: transactionalId, acks: acks, timeoutMs: timeout, topics: topics)
    }
}

public struct ProduceResponse: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var error: KafkaError
        public var baseOffset: Int64
        public var logAppendTime: Int64 = -1
        public var logStartOffset: Int64
        public var message: String?
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var topics: [Topic]

    public func encode(version: Int16, into w: inout KafkaWriter) {
        w.array(topics) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.error.rawValue)
                w.int64(p.baseOffset)
                if version >= 2 { w.int64(p.logAppendTime) }
                if version >= 5 { w.int64(p.logStartOffset) }
                if version >= 8 {
                    w.array([Int32]()) { _, _ in }  // record_errors
                    w.nullableString(p.message)
                }
            }
        }
        if version >= 1 { w.int32(0) }  // throttle_time_ms
    }
}

// MARK: - Fetch (1)

public struct FetchRequest: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var fetchOffset: Int64
        public var maxBytes: Int32
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var maxWaitMs: Int32
    public var minBytes: Int32
    public var maxBytes: Int32
    public var isolationLevel: Int8
    public var sessionId: Int32
    public var sessionEpoch: Int32
    public var topics: [Topic]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> FetchRequest {
        _ = try r.int32()  // replica_id
        let maxWait = try r.int32()
        let minBytes = try r.int32()
        let maxBytes = try r.int32()  // v3+
        let isolation = try r.int8()  // v4+
        var sessionId: Int32 = 0
        var sessionEpoch: Int32 = -1
        if version >= 7 {
            sessionId = try r.int32()
            sessionEpoch = try r.int32()
        }
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            Topic(name: try r.string(), partitions: try r.array(minimumElementSize: 16) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                let index = try r.int32()
                if version >= 9 { _ = try r.int32() }  // current_leader_epoch
                let offset = try r.int64()
                if version >= 5 { _ = try r.int64() }  // log_start_offset (followers only)
                return Partition(index: index, fetchOffset: offset, maxBytes: try r.int32())
            })
        }
        if version >= 7 {
            _ = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                _ = try r.string()
                _ = try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.int32() }
            }
        }
        if version >= 11 { _ = try r.string() }  // rack_id
        return FetchRequest(maxWaitMs: maxWait, minBytes: minBytes, maxBytes: maxBytes, isolationLevel: isolation,
                            sessionId: sessionId, sessionEpoch: sessionEpoch, topics: topics)
    }
}

public struct FetchResponse: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var error: KafkaError
        public var highWatermark: Int64
        public var logStartOffset: Int64
        public var lastStableOffset: Int64 = -1
        /// For read_committed fetches: producer id and first offset of each aborted transaction in range.
        public var abortedTransactions: [AbortedTransaction] = []
        /// Stored record batches, as ranges of the segment files.
        public var records: [StoredRange]
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var topics: [Topic]

    public func encode(version: Int16, into w: inout KafkaWriter) {
        w.int32(0)  // throttle_time_ms
        if version >= 7 {
            w.int16(KafkaError.none.rawValue)
            w.int32(0)  // session_id: Sluice keeps no fetch sessions, so every fetch is a full one
        }
        w.array(topics) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.error.rawValue)
                w.int64(p.highWatermark)
                w.int64(p.error == .none ? p.lastStableOffset : -1)
                if version >= 5 { w.int64(p.logStartOffset) }
                w.nullableArray(p.error == .none ? p.abortedTransactions : nil) { w, aborted in
                    w.int64(aborted.producerId)
                    w.int64(aborted.firstOffset)
                }
                if version >= 11 { w.int32(-1) }  // preferred_read_replica
                w.int32(p.records.reduce(0) { $0 + $1.length })
                for range in p.records { w.fileRange(range) }
            }
        }
    }
}

// MARK: - ListOffsets (2)

public struct ListOffsetsRequest: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        /// -1 latest, -2 earliest, otherwise a timestamp in milliseconds.
        public var timestamp: Int64
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var topics: [Topic]
    /// 1 is READ_COMMITTED: "latest" is then the last stable offset.
    public var isolationLevel: Int8 = 0

    public static let latest: Int64 = -1
    public static let earliest: Int64 = -2

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> ListOffsetsRequest {
        _ = try r.int32()  // replica_id
        let isolation: Int8 = version >= 2 ? try r.int8() : 0
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            Topic(name: try r.string(), partitions: try r.array(minimumElementSize: 12) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                let index = try r.int32()
                if version >= 4 { _ = try r.int32() }  // current_leader_epoch
                let timestamp = try r.int64()
                if version == 0 { _ = try r.int32() }  // max_num_offsets
                return Partition(index: index, timestamp: timestamp)
            })
        }
        return ListOffsetsRequest(topics: topics, isolationLevel: isolation)
    }
}

public struct ListOffsetsResponse: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var error: KafkaError
        public var timestamp: Int64
        public var offset: Int64
    }
    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
    }
    public var topics: [Topic]

    public func encode(version: Int16, into w: inout KafkaWriter) {
        if version >= 2 { w.int32(0) }  // throttle_time_ms
        w.array(topics) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.error.rawValue)
                if version == 0 {
                    w.array(p.offset >= 0 ? [p.offset] : []) { w, offset in w.int64(offset) }
                } else {
                    w.int64(p.timestamp)
                    w.int64(p.offset)
                    if version >= 4 { w.int32(0) }  // leader_epoch
                }
            }
        }
    }
}

// MARK: - SASL (17, 36)

public enum SaslHandshake {
    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> String { try r.string() }

    public static func encodeResponse(error: KafkaError, into w: inout KafkaWriter) {
        w.int16(error.rawValue)
        w.array(["PLAIN"]) { w, name in w.string(name) }
    }
}

public enum SaslAuthenticate {
    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> ByteBuffer { try r.bytes() }

    public static func encodeResponse(version: Int16, error: KafkaError, message: String?, into w: inout KafkaWriter) {
        w.int16(error.rawValue)
        w.nullableString(message)
        w.bytes([])
        if version >= 1 { w.int64(0) }  // session_lifetime_ms: the session does not expire
    }

    /// The identity and password of a SASL/PLAIN message (`authzid NUL authcid NUL passwd`, RFC 4616).
    public static func plainCredentials(_ message: ByteBuffer) -> (user: String, password: String)? {
        let bytes = Array(message.readableBytesView)
        let parts = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        return (String(decoding: parts[1], as: UTF8.self), String(decoding: parts[2], as: UTF8.self))
    }
}

// MARK: - InitProducerId (22)

public struct InitProducerIdRequest: Sendable {
    public var transactionalId: String?
    public var transactionTimeoutMs: Int32

    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> InitProducerIdRequest {
        InitProducerIdRequest(transactionalId: try r.nullableString(), transactionTimeoutMs: try r.int32())
    }

    public static func encodeResponse(error: KafkaError, producerId: Int64, epoch: Int16, into w: inout KafkaWriter) {
        w.int32(0)  // throttle_time_ms
        w.int16(error.rawValue)
        w.int64(producerId)
        w.int16(epoch)
    }
}
