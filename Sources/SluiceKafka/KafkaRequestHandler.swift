import Dispatch
public import Logging
public import NIOCore
public import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// What a connection should do with a request's outcome.
public enum KafkaReply {
    /// Write this response frame.
    case respond(KafkaResponse)
    /// Write nothing (Produce with acks=0).
    case none
    /// Close the connection (a request that cannot be answered in the protocol), logging why.
    case close(String)
    /// Write this response, then close the connection (a failed authentication), logging why.
    case respondThenClose(KafkaResponse, String)
}

/// Per-connection state the handler keeps between requests.
public struct KafkaSession: Sendable {
    public var clientAddress: String
    public var clientId: String?
    public var handshakeDone = false
    public var authenticated: Bool

    public init(clientAddress: String, authenticationRequired: Bool) {
        self.clientAddress = clientAddress
        self.authenticated = !authenticationRequired
    }
}

/// Answers Kafka requests from the broker. One request at a time per connection: the caller awaits each reply
/// before handling the next, which keeps replies in request order.
public struct KafkaRequestHandler: Sendable {
    public let broker: Broker
    public let groups: KafkaGroups
    public let advertised: HostPort
    public let token: String?
    public let logger: Logger
    static let nodeId: Int32 = 0
    static let clusterId = "sluice"

    public init(broker: Broker, groups: KafkaGroups, advertised: HostPort, token: String?, logger: Logger) {
        self.broker = broker
        self.groups = groups
        self.advertised = advertised
        self.token = token
        self.logger = logger
    }

    /// Handles one request frame (the bytes after its size prefix).
    public func handle(_ frame: ByteBuffer, session: inout KafkaSession) async -> KafkaReply {
        let started = DispatchTime.now().uptimeNanoseconds
        var reader = KafkaReader(frame)
        let header: KafkaRequestHeader
        do {
            header = try KafkaRequestHeader.decode(&reader)
        } catch {
            return .close("the request header cannot be read: \(error)")
        }
        if session.clientId == nil { session.clientId = header.clientId }
        guard let api = KafkaAPI(rawValue: header.apiKey) else {
            count(apiName: "unknown", version: header.apiVersion, error: "UNSUPPORTED_API")
            return .close("API key \(header.apiKey) is not served by Sluice; ApiVersions lists the APIs it serves")
        }
        var w = KafkaWriter.frame(correlationId: header.correlationId)
        guard api.versions.contains(header.apiVersion) else {
            if api == .apiVersions {
                // Kafka's rule: answer an ApiVersions version the broker does not know with a v0 body, so the
                // client can pick a version from the list.
                ApiVersions.encodeResponse(version: 0, error: .unsupportedVersion, into: &w)
                finish(api, header.apiVersion, error: .unsupportedVersion, since: started)
                return .respond(w.finishFrame())
            }
            count(apiName: api.description, version: header.apiVersion, error: KafkaError.unsupportedVersion.description)
            return .close("\(api) v\(header.apiVersion) is not served; Sluice serves v\(api.versions.lowerBound)–v\(api.versions.upperBound)")
        }
        guard session.authenticated || api.allowedBeforeAuthentication else {
            count(apiName: api.description, version: header.apiVersion, error: "SASL_AUTHENTICATION_REQUIRED")
            return .close("\(api) before SASL authentication; with api.token set, clients use SASL/PLAIN with the token as password")
        }
        do {
            let error: KafkaError
            switch api {
            case .apiVersions:
                ApiVersions.encodeResponse(version: header.apiVersion, into: &w)
                error = .none
            case .metadata:
                error = try metadata(MetadataRequest.decode(version: header.apiVersion, &reader), version: header.apiVersion, into: &w)
            case .produce:
                let request = try ProduceRequest.decode(version: header.apiVersion, &reader)
                let (response, worst) = await produce(request, session: session)
                finish(api, header.apiVersion, error: worst, since: started)
                if request.acks == 0 { return .none }
                response.encode(version: header.apiVersion, into: &w)
                return .respond(w.finishFrame())
            case .fetch:
                let request = try FetchRequest.decode(version: header.apiVersion, &reader)
                error = await fetch(request, version: header.apiVersion, into: &w)
            case .listOffsets:
                error = try listOffsets(ListOffsetsRequest.decode(version: header.apiVersion, &reader), version: header.apiVersion, into: &w)
            case .findCoordinator:
                let (_, keyType) = try FindCoordinator.decode(version: header.apiVersion, &reader)
                // One broker coordinates every group (key type 0) and every transactional id (key type 1).
                error = keyType == 0 || keyType == 1 ? .none : .invalidRequest
                FindCoordinator.encodeResponse(version: header.apiVersion, error: error,
                                               message: error == .none ? nil : "key_type \(keyType) is neither 0 (group) nor 1 (transaction)",
                                               nodeId: error == .none ? Self.nodeId : -1, host: error == .none ? advertised.host : "",
                                               port: error == .none ? Int32(advertised.port) : -1, into: &w)
            case .joinGroup:
                let request = try JoinGroupRequest.decode(version: header.apiVersion, &reader)
                let response = await groups.join(request, version: header.apiVersion, clientId: session.clientId ?? "", clientHost: session.clientAddress)
                response.encode(version: header.apiVersion, into: &w)
                error = response.error
            case .syncGroup:
                let (code, assignment) = await groups.sync(try SyncGroupRequest.decode(version: header.apiVersion, &reader))
                SyncGroupRequest.encodeResponse(version: header.apiVersion, error: code, assignment: assignment, into: &w)
                error = code
            case .heartbeat:
                error = groups.heartbeat(try HeartbeatRequest.decode(version: header.apiVersion, &reader))
                encodeErrorOnly(version: header.apiVersion, error: error, into: &w)
            case .leaveGroup:
                let (group, member) = try LeaveGroup.decode(&reader)
                error = groups.leave(group: group, member: member)
                encodeErrorOnly(version: header.apiVersion, error: error, into: &w)
            case .offsetCommit:
                let results = await groups.commit(try OffsetCommitRequest.decode(version: header.apiVersion, &reader))
                OffsetCommitRequest.encodeResponse(version: header.apiVersion, topics: results, into: &w)
                error = results.flatMap(\.partitions).map(\.error).first { $0 != .none } ?? .none
            case .offsetFetch:
                let topics = groups.fetchOffsets(try OffsetFetchRequest.decode(version: header.apiVersion, &reader))
                OffsetFetchRequest.encodeResponse(version: header.apiVersion, topics: topics, error: .none, into: &w)
                error = .none
            case .listGroups:
                ListGroups.encodeResponse(version: header.apiVersion, groups: groups.list(), into: &w)
                error = .none
            case .describeGroups:
                let described = groups.describe(try DescribeGroups.decode(version: header.apiVersion, &reader))
                DescribeGroups.encodeResponse(version: header.apiVersion, groups: described, into: &w)
                error = described.map(\.error).first { $0 != .none } ?? .none
            case .createTopics:
                let results = createTopics(try CreateTopicsRequest.decode(version: header.apiVersion, &reader), session: session)
                CreateTopicsRequest.encodeResponse(version: header.apiVersion, results: results, into: &w)
                error = results.map(\.error).first { $0 != .none } ?? .none
            case .deleteTopics:
                let results = await deleteTopics(try DeleteTopics.decode(&reader).names, session: session)
                DeleteTopics.encodeResponse(version: header.apiVersion, results: results, into: &w)
                error = results.map(\.error).first { $0 != .none } ?? .none
            case .createPartitions:
                let results = createPartitions(try CreatePartitionsRequest.decode(&reader), session: session)
                CreatePartitionsRequest.encodeResponse(results: results, into: &w)
                error = results.map(\.error).first { $0 != .none } ?? .none
            case .describeConfigs:
                let request = try DescribeConfigsRequest.decode(version: header.apiVersion, &reader)
                let resources = describeConfigs(request)
                DescribeConfigs.encodeResponse(version: header.apiVersion, resources: resources, includeSynonyms: request.includeSynonyms,
                                               includeDocumentation: request.includeDocumentation, into: &w)
                error = resources.map(\.error).first { $0 != .none } ?? .none
            case .initProducerId:
                error = await initProducerId(try InitProducerIdRequest.decode(&reader), session: session, into: &w)
            case .addPartitionsToTxn:
                let request = try AddPartitionsToTxnRequest.decode(&reader)
                let results = await addPartitions(request)
                AddPartitionsToTxnRequest.encodeResponse(results, into: &w)
                error = results.flatMap(\.partitions).map(\.error).first { $0 != .none } ?? .none
            case .addOffsetsToTxn:
                let request = try AddOffsetsToTxnRequest.decode(&reader)
                error = transactionError { () throws(TransactionFailure) in
                    try broker.addOffsetsToTransaction(request.producer.transactionalId, producerId: request.producer.producerId,
                                                       epoch: request.producer.producerEpoch, group: request.groupId)
                }
                TransactionErrorOnly.encodeResponse(error: error, into: &w)
            case .endTxn:
                let request = try EndTxnRequest.decode(&reader)
                do {
                    try await broker.endKafkaTransaction(request.producer.transactionalId, producerId: request.producer.producerId,
                                                         epoch: request.producer.producerEpoch, commit: request.committed)
                    error = .none
                } catch let failure {
                    error = refused(failure, api: "EndTxn")
                }
                TransactionErrorOnly.encodeResponse(error: error, into: &w)
            case .txnOffsetCommit:
                let request = try TxnOffsetCommitRequest.decode(version: header.apiVersion, &reader)
                let code = transactionError { () throws(TransactionFailure) in
                    try broker.commitOffsetsInTransaction(
                        request.producer.transactionalId, producerId: request.producer.producerId, epoch: request.producer.producerEpoch,
                        group: request.groupId,
                        offsets: request.topics.flatMap { topic in topic.partitions.map { (TopicPartition(topic.name, $0.index), $0.offset, $0.metadata ?? "") } })
                }
                w.int32(0)  // throttle_time_ms
                w.array(request.topics) { w, topic in
                    w.string(topic.name)
                    w.array(topic.partitions) { w, p in
                        w.int32(p.index)
                        w.int16(code.rawValue)
                    }
                }
                error = code
            case .saslHandshake:
                let mechanism = try SaslHandshake.decode(&reader)
                error = mechanism == "PLAIN" ? .none : .unsupportedSaslMechanism
                if error == .none { session.handshakeDone = true }
                SaslHandshake.encodeResponse(error: error, into: &w)
            case .saslAuthenticate:
                let message = try SaslAuthenticate.decode(&reader)
                error = authenticate(message, session: &session, version: header.apiVersion, into: &w)
                if error != .none {
                    finish(api, header.apiVersion, error: error, since: started)
                    // Kafka answers, then closes the connection of a failed authentication.
                    return .respondThenClose(w.finishFrame(), "SASL authentication failed (\(error))")
                }
            }
            finish(api, header.apiVersion, error: error, since: started)
            return .respond(w.finishFrame())
        } catch {
            count(apiName: api.description, version: header.apiVersion, error: KafkaError.invalidRequest.description)
            return .close("\(api) v\(header.apiVersion) request is malformed: \(error)")
        }
    }

    // MARK: - Metrics

    private func finish(_ api: KafkaAPI, _ version: Int16, error: KafkaError, since started: UInt64) {
        count(apiName: api.description, version: version, error: error.description)
        let elapsed = DispatchTime.now().uptimeNanoseconds - started
        broker.metrics.durationHistogram(MetricName.kafkaRequestDuration, api.description, buckets: SluiceMetrics.deliveryBuckets)
            .record(.nanoseconds(Int64(clamping: elapsed)))
    }

    private func count(apiName: String, version: Int16, error: String) {
        broker.metrics.counter(MetricName.kafkaRequests, apiName, String(version), error).increment()
    }

    // MARK: - Metadata

    private func metadata(_ request: MetadataRequest, version: Int16, into w: inout KafkaWriter) -> KafkaError {
        var topics: [MetadataResponse.Topic] = []
        var worst = KafkaError.none
        for name in request.topics ?? broker.topicNames {
            do throws(BrokerError) {
                let topic: Topic
                if request.allowAutoTopicCreation && request.topics != nil {
                    topic = try broker.ensureTopic(name)
                } else if let existing = broker.topic(name) {
                    topic = existing
                } else {
                    throw BrokerError(.notFound, "topic \(name) does not exist")
                }
                topics.append(.init(error: .none, name: name, isInternal: name.hasPrefix("__"),
                                    partitions: topic.partitions.indices.map { .init(error: .none, index: Int32($0), leader: Self.nodeId) }))
            } catch {
                let code: KafkaError = error.kind == .badRequest ? .invalidTopic : .unknownTopicOrPartition
                worst = code
                topics.append(.init(error: code, name: name, isInternal: false, partitions: []))
            }
        }
        MetadataResponse(brokers: [.init(nodeId: Self.nodeId, host: advertised.host, port: Int32(advertised.port))],
                         clusterId: Self.clusterId, controllerId: Self.nodeId, topics: topics).encode(version: version, into: &w)
        return worst
    }

    // MARK: - Produce

    private func produce(_ request: ProduceRequest, session: KafkaSession) async -> (ProduceResponse, KafkaError) {
        let acks: Acks
        switch request.acks {
        case 0: acks = .none
        case 1: acks = .leader
        case -1: acks = .all
        default:
            let topics = request.topics.map { topic in
                ProduceResponse.Topic(name: topic.name, partitions: topic.partitions.map {
                    .init(index: $0.index, error: .invalidRequiredAcks, baseOffset: -1, logStartOffset: -1, message: "acks must be 0, 1 or -1 (all)")
                })
            }
            return (ProduceResponse(topics: topics), .invalidRequiredAcks)
        }
        var worst = KafkaError.none
        var topics: [ProduceResponse.Topic] = []
        for topic in request.topics {
            var partitions: [ProduceResponse.Partition] = []
            for partition in topic.partitions {
                let tp = TopicPartition(topic.name, partition.index)
                let result = await produce(partition.records, to: tp, acks: acks, transactionalId: request.transactionalId)
                if result.error != .none {
                    worst = result.error
                    logger.warning("produce refused", metadata: [
                        LogField.topic: .string(topic.name), LogField.partition: .stringConvertible(partition.index),
                        LogField.kafkaError: .string(result.error.description), "error.message": .string(result.message ?? ""),
                        LogField.clientId: .string(session.clientId ?? ""), LogField.clientAddress: .string(session.clientAddress),
                    ])
                }
                partitions.append(result)
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        return (ProduceResponse(topics: topics), worst)
    }

    private func produce(_ records: ByteBuffer?, to tp: TopicPartition, acks: Acks, transactionalId: String?) async -> ProduceResponse.Partition {
        func refuse(_ error: KafkaError, _ message: String) -> ProduceResponse.Partition {
            .init(index: tp.partition, error: error, baseOffset: -1, logStartOffset: -1, message: message)
        }
        if OffsetsTopic.isInternal(tp.topic) {
            return refuse(.invalidTopic, "topic \(tp.topic) is internal: Sluice writes it (every committed offset) and clients only read it")
        }
        let log: PartitionLog
        do {
            log = try broker.partitionLog(tp, autoCreate: true)
        } catch {
            return refuse(error.kind == .badRequest ? .invalidTopic : .unknownTopicOrPartition, error.message)
        }
        guard let records, records.readableBytes > 0 else { return refuse(.invalidRecord, "the partition's records are empty") }
        let bytes = Array(records.readableBytesView)
        guard bytes.count <= log.config.maxMessageBytes else {
            return refuse(.messageTooLarge, "the record batch is \(bytes.count) bytes; topic \(tp.topic) accepts at most \(log.config.maxMessageBytes) (max.message.bytes)")
        }
        let header: RecordBatchHeader
        do {
            header = try bytes.withUnsafeBytes { raw throws in try RecordBatchHeader.parse(raw) }
        } catch {
            return refuse(.corruptMessage, (error as? LogError)?.message ?? "\(error)")
        }
        guard header.totalSize == bytes.count else {
            return refuse(.invalidRecord, "a produce request carries exactly one record batch; batchLength says \(header.totalSize) bytes but \(bytes.count) were sent")
        }
        if header.isControl { return refuse(.invalidRecord, "control batches are written by the broker, not produced") }
        if header.isTransactional != (transactionalId != nil) {
            return refuse(.invalidRecord, header.isTransactional
                ? "a transactional batch needs the produce request's transactional_id (the producer's transactional.id)"
                : "a produce request with a transactional_id carries transactional batches only")
        }
        if header.codec == nil {
            return refuse(.unsupportedCompressionType, CompressionCodec.unknown(header.compressionCodecRaw))
        }
        guard Int64(header.lastOffsetDelta) + 1 == Int64(header.recordCount), header.recordCount > 0 else {
            return refuse(.invalidRecord, "lastOffsetDelta \(header.lastOffsetDelta) does not match the record count \(header.recordCount)")
        }
        // The CRC-32C last, once: the log appends the checked batch without computing it again.
        var batch: CheckedBatch
        do {
            batch = try CheckedBatch(bytes)
            // A topic whose compression.type names a codec keeps every batch in it, as Kafka's broker does.
            if let codec = log.config.compression, codec != header.codec {
                batch = try batch.recompressed(to: Compression(codec: codec))
            }
        } catch {
            let failure = error as? LogError
            return refuse(failure?.code == .corruptBatch ? .corruptMessage : .invalidRecord, failure?.message ?? "\(error)")
        }
        // Event schemas: a topic that checks them checks the CloudEvents of Kafka batches too (records that are not
        // CloudEvents have no type to check).
        if broker.checksSchemas(topic: tp.topic) {
            let events: [CloudEvent]
            do {
                events = try RecordBatch.decode(batch.bytes).records.compactMap(CloudEvent.init(record:))
            } catch {
                return refuse(.invalidRecord, (error as? LogError)?.message ?? "\(error)")
            }
            let violations = broker.schemaViolations(topic: tp.topic, events: events)
            if let first = violations.first {
                let count = Set(violations.map(\.index)).count
                return refuse(.invalidRecord, "\(count) event(s) of the batch do not match their schema, so none was written; the first: event \(first.eventId) (\(first.type) \(first.version ?? "")) at '\(first.instancePath)': \(first.message) (\(first.keyword))")
            }
        }
        do throws(BrokerError) {
            let outcome: BatchAppend
            if header.isTransactional {
                do {
                    outcome = try await broker.appendTransactionalBatch(batch, to: tp, acks: acks, transactionalId: transactionalId)
                } catch {
                    if case .broker(let failure) = error.kind { throw failure }
                    return refuse(error.kafkaError, error.message)
                }
            } else {
                outcome = try await broker.appendBatch(batch, to: tp, acks: acks)
            }
            switch outcome {
            case .written(let info):
                return .init(index: tp.partition, error: .none, baseOffset: info.baseOffset, logStartOffset: log.logStartOffset, message: nil)
            case .duplicate(let baseOffset, _):
                return .init(index: tp.partition, error: .none, baseOffset: baseOffset, logStartOffset: log.logStartOffset, message: nil)
            case .refused(.outOfOrder(let expected)):
                return refuse(.outOfOrderSequenceNumber, "producer \(header.producer.producerId) sent sequence \(header.producer.baseSequence) to \(tp); \(expected) is next")
            case .refused(.staleEpoch(let current)):
                return refuse(.invalidProducerEpoch, "producer \(header.producer.producerId) sent epoch \(header.producer.producerEpoch) to \(tp); its epoch is \(current)")
            case .refused:
                return refuse(.unknownProducerId, "producer id \(header.producer.producerId) was not handed out by this broker; call InitProducerId")
            }
        } catch {
            switch error.kind {
            case .payloadTooLarge: return refuse(.messageTooLarge, error.message)
            case .badRequest: return refuse(.invalidRecord, error.message)
            case .notFound: return refuse(.unknownTopicOrPartition, error.message)
            default: return refuse(.kafkaStorageError, error.message)
            }
        }
    }

    // MARK: - InitProducerId

    /// Kafka's transaction.max.timeout.ms default: a longer transaction.timeout.ms is refused.
    static let maxTransactionTimeoutMs: Int32 = 900_000

    /// A new producer id (epoch 0) for an idempotent producer; for a transactional id, its producer id with the
    /// epoch bumped (fencing older producers of the id and aborting their open transaction).
    private func initProducerId(_ request: InitProducerIdRequest, session: KafkaSession, into w: inout KafkaWriter) async -> KafkaError {
        if let id = request.transactionalId {
            guard request.transactionTimeoutMs > 0, request.transactionTimeoutMs <= Self.maxTransactionTimeoutMs else {
                InitProducerIdRequest.encodeResponse(error: .invalidTransactionTimeout, producerId: -1, epoch: -1, into: &w)
                return .invalidTransactionTimeout
            }
            do {
                let (producerId, epoch) = try await broker.initTransactionalProducer(id: id, timeoutMs: Int64(request.transactionTimeoutMs))
                logger.info("transactional producer initialised", metadata: [
                    LogField.transactionId: .string(id), LogField.clientId: .string(session.clientId ?? ""),
                    LogField.clientAddress: .string(session.clientAddress), "producer.id": .stringConvertible(producerId), "producer.epoch": .stringConvertible(epoch),
                ])
                InitProducerIdRequest.encodeResponse(error: .none, producerId: producerId, epoch: epoch, into: &w)
                return .none
            } catch {
                let code = refused(error, api: "InitProducerId")
                InitProducerIdRequest.encodeResponse(error: code, producerId: -1, epoch: -1, into: &w)
                return code
            }
        }
        do {
            let id = try broker.producerIds.allocate()
            InitProducerIdRequest.encodeResponse(error: .none, producerId: id, epoch: 0, into: &w)
            return .none
        } catch {
            logger.error("a producer id could not be made durable", metadata: ["error.message": .string(error.message)])
            InitProducerIdRequest.encodeResponse(error: .kafkaStorageError, producerId: -1, epoch: -1, into: &w)
            return .kafkaStorageError
        }
    }

    // MARK: - Transactions

    /// AddPartitionsToTxn: every partition gets the same outcome (Kafka's rule: all are added or none).
    private func addPartitions(_ request: AddPartitionsToTxnRequest) async -> [(name: String, partitions: [(index: Int32, error: KafkaError)])] {
        var code = KafkaError.none
        var partitions: [TopicPartition] = []
        for topic in request.topics {
            for index in topic.partitions {
                let tp = TopicPartition(topic.name, index)
                if (try? broker.partitionLog(tp, autoCreate: true)) == nil { code = .unknownTopicOrPartition }
                partitions.append(tp)
            }
        }
        if code == .none {
            do {
                try await broker.addPartitionsToTransaction(request.producer.transactionalId, producerId: request.producer.producerId,
                                                            epoch: request.producer.producerEpoch, partitions: partitions)
            } catch {
                code = refused(error, api: "AddPartitionsToTxn")
            }
        }
        return request.topics.map { topic in (topic.name, topic.partitions.map { ($0, code) }) }
    }

    private func transactionError(_ body: () throws(TransactionFailure) -> Void) -> KafkaError {
        do {
            try body()
            return .none
        } catch {
            return refused(error, api: "")
        }
    }

    /// The Kafka error for a refused transactional request, logged when it is the broker's fault.
    private func refused(_ failure: TransactionFailure, api: String) -> KafkaError {
        if case .broker = failure.kind {
            logger.error("transactional request failed", metadata: [LogField.kafkaAPI: .string(api), "error.message": .string(failure.message)])
        } else {
            logger.debug("transactional request refused", metadata: [LogField.kafkaAPI: .string(api), LogField.kafkaError: .string(failure.kafkaError.description),
                                                                      "error.message": .string(failure.message)])
        }
        return failure.kafkaError
    }

    // MARK: - Fetch

    private func fetch(_ request: FetchRequest, version: Int16, into w: inout KafkaWriter) async -> KafkaError {
        var reads: [BatchRead] = []
        for topic in request.topics {
            for partition in topic.partitions {
                reads.append(BatchRead(partition: TopicPartition(topic.name, partition.index), offset: partition.fetchOffset,
                                       maxBytes: Int(max(partition.maxBytes, 0))))
            }
        }
        let maxBytes = request.maxBytes > 0 ? Int(request.maxBytes) : Int(Int32.max)
        // isolation_level 1 is READ_COMMITTED.
        let results = await broker.readBatches(reads, minBytes: Int(max(request.minBytes, 0)), maxBytes: maxBytes,
                                               maxWaitMs: Int64(max(request.maxWaitMs, 0)),
                                               isolation: request.isolationLevel == 1 ? .readCommitted : .readUncommitted)
        var worst = KafkaError.none
        var index = 0
        var topics: [FetchResponse.Topic] = []
        for topic in request.topics {
            var partitions: [FetchResponse.Partition] = []
            for partition in topic.partitions {
                switch results[index] {
                case .success(let read):
                    let error: KafkaError = read.outOfRange ? .offsetOutOfRange : .none
                    if error != .none { worst = error }
                    partitions.append(.init(index: partition.index, error: error, highWatermark: read.logEndOffset,
                                            logStartOffset: read.logStartOffset, lastStableOffset: read.lastStableOffset,
                                            abortedTransactions: read.abortedTransactions, records: read.ranges))
                case .failure(let failure):
                    let error: KafkaError = failure.kind == .notFound ? .unknownTopicOrPartition : .kafkaStorageError
                    worst = error
                    partitions.append(.init(index: partition.index, error: error, highWatermark: -1, logStartOffset: -1, records: []))
                }
                index += 1
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        FetchResponse(topics: topics).encode(version: version, into: &w)
        return worst
    }

    // MARK: - ListOffsets

    private func listOffsets(_ request: ListOffsetsRequest, version: Int16, into w: inout KafkaWriter) -> KafkaError {
        var worst = KafkaError.none
        let topics = request.topics.map { topic in
            ListOffsetsResponse.Topic(name: topic.name, partitions: topic.partitions.map { partition in
                do {
                    let log = try broker.partitionLog(TopicPartition(topic.name, partition.index))
                    switch partition.timestamp {
                    case ListOffsetsRequest.latest:
                        let latest = request.isolationLevel == 1 ? log.lastStableOffset : log.logEndOffset
                        return .init(index: partition.index, error: .none, timestamp: -1, offset: latest)
                    case ListOffsetsRequest.earliest:
                        return .init(index: partition.index, error: .none, timestamp: -1, offset: log.logStartOffset)
                    default:
                        guard let found = try log.firstRecord(atOrAfter: partition.timestamp) else {
                            return .init(index: partition.index, error: .none, timestamp: -1, offset: -1)
                        }
                        return .init(index: partition.index, error: .none, timestamp: found.timestamp, offset: found.offset)
                    }
                } catch is BrokerError {
                    worst = .unknownTopicOrPartition
                    return .init(index: partition.index, error: .unknownTopicOrPartition, timestamp: -1, offset: -1)
                } catch {
                    worst = .kafkaStorageError
                    return .init(index: partition.index, error: .kafkaStorageError, timestamp: -1, offset: -1)
                }
            })
        }
        ListOffsetsResponse(topics: topics).encode(version: version, into: &w)
        return worst
    }

    // MARK: - SASL

    private func authenticate(_ message: ByteBuffer, session: inout KafkaSession, version: Int16, into w: inout KafkaWriter) -> KafkaError {
        guard session.handshakeDone else {
            SaslAuthenticate.encodeResponse(version: version, error: .illegalSaslState, message: "send SaslHandshake with PLAIN first", into: &w)
            return .illegalSaslState
        }
        guard let token else {
            // No token: authentication is not needed, and any credentials are accepted.
            session.authenticated = true
            SaslAuthenticate.encodeResponse(version: version, error: .none, message: nil, into: &w)
            return .none
        }
        guard let credentials = SaslAuthenticate.plainCredentials(message), constantTimeEqual(credentials.password, token) else {
            logger.warning("Kafka authentication failed", metadata: [
                LogField.clientAddress: .string(session.clientAddress), LogField.clientId: .string(session.clientId ?? ""),
            ])
            SaslAuthenticate.encodeResponse(version: version, error: .saslAuthenticationFailed,
                                            message: "authentication failed: the password must be the agent's api.token", into: &w)
            return .saslAuthenticationFailed
        }
        session.authenticated = true
        SaslAuthenticate.encodeResponse(version: version, error: .none, message: nil, into: &w)
        return .none
    }

    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in x.indices { difference |= x[i] ^ y[i] }
        return difference == 0
    }
}
