import SluiceBroker

// Kafka's transactional producer APIs, non-flexible versions only.

/// The producer fields every transactional request starts with.
public struct TransactionalProducer: Sendable {
    public var transactionalId: String
    public var producerId: Int64
    public var producerEpoch: Int16
}

// MARK: - AddPartitionsToTxn (24)

public struct AddPartitionsToTxnRequest: Sendable {
    public var producer: TransactionalProducer
    public var topics: [(name: String, partitions: [Int32])]

    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> AddPartitionsToTxnRequest {
        let producer = TransactionalProducer(transactionalId: try r.string(), producerId: try r.int64(), producerEpoch: try r.int16())
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) -> (name: String, partitions: [Int32]) in
            (try r.string(), try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.int32() })
        }
        return AddPartitionsToTxnRequest(producer: producer, topics: topics)
    }

    public static func encodeResponse(_ results: [(name: String, partitions: [(index: Int32, error: KafkaError)])], into w: inout KafkaWriter) {
        w.int32(0)  // throttle_time_ms
        w.array(results) { w, topic in
            w.string(topic.name)
            w.array(topic.partitions) { w, p in
                w.int32(p.index)
                w.int16(p.error.rawValue)
            }
        }
    }
}

// MARK: - AddOffsetsToTxn (25)

public struct AddOffsetsToTxnRequest: Sendable {
    public var producer: TransactionalProducer
    public var groupId: String

    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> AddOffsetsToTxnRequest {
        AddOffsetsToTxnRequest(producer: TransactionalProducer(transactionalId: try r.string(), producerId: try r.int64(), producerEpoch: try r.int16()),
                               groupId: try r.string())
    }
}

// MARK: - EndTxn (26)

public struct EndTxnRequest: Sendable {
    public var producer: TransactionalProducer
    public var committed: Bool

    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> EndTxnRequest {
        EndTxnRequest(producer: TransactionalProducer(transactionalId: try r.string(), producerId: try r.int64(), producerEpoch: try r.int16()),
                      committed: try r.bool())
    }
}

/// The answer of AddOffsetsToTxn and EndTxn: `throttle_time_ms, error_code`.
enum TransactionErrorOnly {
    static func encodeResponse(error: KafkaError, into w: inout KafkaWriter) {
        w.int32(0)
        w.int16(error.rawValue)
    }
}

// MARK: - TxnOffsetCommit (28)

public struct TxnOffsetCommitRequest: Sendable {
    public struct Partition: Sendable {
        public var index: Int32
        public var offset: Int64
        public var metadata: String?
    }
    public var producer: TransactionalProducer
    public var groupId: String
    public var topics: [(name: String, partitions: [Partition])]

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> TxnOffsetCommitRequest {
        let id = try r.string(), group = try r.string()
        let producer = TransactionalProducer(transactionalId: id, producerId: try r.int64(), producerEpoch: try r.int16())
        let topics = try r.array(minimumElementSize: 6) { (r: inout KafkaReader) throws(KafkaDecodeError) -> (name: String, partitions: [Partition]) in
            (try r.string(), try r.array(minimumElementSize: 14) { (r: inout KafkaReader) throws(KafkaDecodeError) -> Partition in
                let index = try r.int32(), offset = try r.int64()
                if version >= 2 { _ = try r.int32() }  // committed_leader_epoch
                return Partition(index: index, offset: offset, metadata: try r.nullableString())
            })
        }
        return TxnOffsetCommitRequest(producer: producer, groupId: group, topics: topics)
    }
}

extension TransactionFailure {
    /// The Kafka error code a refusal is answered with.
    var kafkaError: KafkaError {
        switch kind {
        case .fenced: .invalidProducerEpoch
        case .invalidState: .invalidTxnState
        case .unknownMapping: .invalidProducerIdMapping
        case .broker(let error): error.kind == .notFound ? .unknownTopicOrPartition : .kafkaStorageError
        }
    }
}
