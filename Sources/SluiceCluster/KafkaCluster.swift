import CRdKafkaLoader
import Dispatch
import Foundation
public import Logging
public import SluiceBroker
public import SluiceLog
public import SluiceTelemetry
import Synchronization

/// The log seam's cluster backend: events stored in a Kafka cluster through librdkafka.
///
/// One idempotent producer writes every publish (acks, linger, batching and compression are its settings); one
/// reader (librdkafka's partition consumer, no group) serves reads, each partition from where the last read of it
/// ended. librdkafka's handles are thread-safe; its blocking calls (metadata, watermarks, reads) run on a queue of
/// their own, never on Swift's task pool. A thread serves the producer's callbacks: delivery reports resolve the
/// publishes waiting for them, statistics feed the `sluice_cluster_*` gauges.
public final class KafkaCluster: RemoteLog, @unchecked Sendable {
    public let description: String
    let settings: ClusterSettings
    let producer: OpaquePointer
    let reader: OpaquePointer
    let context: CallbackContext
    let logger: Logger
    let metrics: SluiceMetrics
    let blockingQueue = DispatchQueue(label: "sluice.cluster.blocking", attributes: .concurrent)
    /// The producer of atomic publishes (made at the first one).
    let transactions: TransactionalProducer
    private let topicCache = Mutex<[String: Int]>([:])
    private let producerTopics = Mutex<[String: OpaquePointer]>([:])
    private let readerTopics = Mutex<[String: OpaquePointer]>([:])
    private let partitions = Mutex<[TopicPartition: PartitionReader]>([:])
    private let reachable = Atomic<Bool>(false)
    /// The groups this agent's subscribers joined: members here and topics (kept after they leave, for lag).
    let joinedGroups = Mutex<[String: (members: Int, topics: Set<String>, keep: Bool)]>([:])
    /// `lag.groups` and `lag.groups.exclude`, compiled.
    let lagAllow: NSRegularExpression?
    /// Set once the cluster was seen naming no controller (no CreateTopics then).
    let noController = Atomic<Bool>(false)
    /// Set once a failed group listing was logged.
    let listGroupsWarned = Atomic<Bool>(false)
    let lagDeny: NSRegularExpression?
    /// Set once the cluster was unreachable, so that coming back is logged (the first contact is not).
    private let wasUnreachable = Atomic<Bool>(false)
    private let running = Atomic<Bool>(true)
    private let closed = Atomic<Bool>(false)
    private let stopped = DispatchSemaphore(value: 0)
    /// How long a metadata or offsets request may take.
    static let requestTimeoutMs: Int32 = 5000
    /// How often the topic list (and reachability) is refreshed.
    static let refreshInterval: Duration = .seconds(2)

    /// Creates the clients; they connect in the background. A property librdkafka refuses is a ``ConfigError``.
    public init(config: SluiceConfig, metrics: SluiceMetrics, logger: Logger) throws(ConfigError) {
        let settings = ClusterSettings(config: config)
        self.settings = settings
        self.description = "the Kafka cluster at \(settings.bootstrapServers)"
        self.logger = logger
        self.metrics = metrics
        lagAllow = config.string("lag.groups").isEmpty ? nil : try? NSRegularExpression(pattern: config.string("lag.groups"))
        lagDeny = config.string("lag.groups.exclude").isEmpty ? nil : try? NSRegularExpression(pattern: config.string("lag.groups.exclude"))
        let context = CallbackContext(logger: logger, metrics: metrics)
        self.context = context
        transactions = TransactionalProducer(settings: settings, context: context, logger: logger, description: "the Kafka cluster at \(settings.bootstrapServers)")
        let opaque = Unmanaged.passUnretained(context).toOpaque()

        let producerConf = try ClusterSettings.makeConfiguration(settings.producer)
        let producer: OpaquePointer
        do {
            producer = try makeProducer(producerConf, context: context, statistics: true)
        } catch {
            throw ConfigError("the cluster's producer cannot start with these settings: \(error.message)")
        }
        var reason = [CChar](repeating: 0, count: 512)
        let readerConf: OpaquePointer
        do {
            readerConf = try ClusterSettings.makeConfiguration(settings.reader)
        } catch {
            rd_kafka_destroy(producer)
            throw error
        }
        rd_kafka_conf_set_opaque(readerConf, opaque)
        rd_kafka_conf_set_error_cb(readerConf, clientError)
        rd_kafka_conf_set_log_cb(readerConf, clientLog)
        guard let reader = rd_kafka_new(RD_KAFKA_CONSUMER, readerConf, &reason, reason.count) else {
            rd_kafka_conf_destroy(readerConf)
            rd_kafka_destroy(producer)
            throw ConfigError("the cluster's reader cannot start with these settings: \(errorText(reason))")
        }
        self.producer = producer
        self.reader = reader
        // No log line here: the agent's start line, which names the cluster, comes first.
        startPolling()
        startRefreshing()
    }

    // MARK: - Background work

    /// Serves the producer's callbacks (delivery reports, statistics, errors) and the reader's errors.
    private func startPolling() {
        let producer = UncheckedHandle(producer), reader = UncheckedHandle(reader)
        let thread = Thread { [self] in
            while running.load(ordering: .acquiring) {
                rd_kafka_poll(producer.pointer, 100)
                rd_kafka_poll(reader.pointer, 0)
            }
            stopped.signal()
        }
        thread.name = "sluice-cluster-poll"
        thread.start()
    }

    /// Reads the topic list every ``refreshInterval``; a failed read makes the cluster unreachable (readiness).
    private func startRefreshing() {
        Task { [weak self] in
            while let self, self.running.load(ordering: .acquiring) {
                do {
                    try await self.refreshTopics()
                } catch {
                    // Logged by the client's error callback; readiness tells the rest.
                }
                try? await Task.sleep(for: Self.refreshInterval)
            }
        }
    }

    public var isReachable: Bool { reachable.load(ordering: .acquiring) }

    // MARK: - Blocking calls

    /// Runs librdkafka's blocking `work` on the cluster's queue.
    func blocking<T: Sendable>(_ work: @escaping @Sendable () throws(BrokerError) -> T) async throws(BrokerError) -> T {
        try await run(on: blockingQueue, work)
    }

    func counted(_ request: String, _ ok: Bool) {
        metrics.counter(MetricName.clusterRequests, request, ok ? "ok" : "error").increment()
    }

    // MARK: - Topics

    public func topics() -> [String: Int] { topicCache.withLock { $0 } }

    @discardableResult
    public func refreshTopics() async throws(BrokerError) -> [String: Int] {
        let producer = UncheckedHandle(producer)
        let description = description
        let outcome: Result<(topics: [String: Int], brokers: Int), BrokerError> = await attempt { () async throws(BrokerError) in
            try await blocking { () throws(BrokerError) in
                var metadata: UnsafePointer<rd_kafka_metadata>?
                let error = rd_kafka_metadata(producer.pointer, 1, nil, &metadata, Self.requestTimeoutMs)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
                    throw BrokerError(.unavailable, "\(description) did not answer a metadata request within \(Self.requestTimeoutMs) ms (\(String(cString: rd_kafka_err2str(error)))); retry when a broker is reachable", retryAfter: 1)
                }
                defer { rd_kafka_metadata_destroy(metadata) }
                var topics: [String: Int] = [:]
                for index in 0..<Int(metadata.pointee.topic_cnt) {
                    let topic = metadata.pointee.topics[index]
                    guard topic.err == RD_KAFKA_RESP_ERR_NO_ERROR, topic.partition_cnt > 0 else { continue }
                    topics[String(cString: topic.topic)] = Int(topic.partition_cnt)
                }
                return (topics, Int(metadata.pointee.broker_cnt))
            }
        }
        switch outcome {
        case .success(let (topics, brokers)):
            counted("metadata", true)
            topicCache.withLock { $0 = topics }
            metrics.gauge(MetricName.clusterBrokers).set(Double(brokers))
            if !reachable.exchange(true, ordering: .acquiringAndReleasing) && wasUnreachable.exchange(false, ordering: .acquiringAndReleasing) {
                logger.info("cluster reachable", metadata: ["cluster.bootstrap.servers": .string(settings.bootstrapServers), "brokers": .stringConvertible(brokers)])
            }
            return topics
        case .failure(let error):
            counted("metadata", false)
            reachable.store(false, ordering: .releasing)
            if !wasUnreachable.exchange(true, ordering: .acquiringAndReleasing) {
                logger.error("cluster unreachable: \(error.message)", metadata: ["cluster.bootstrap.servers": .string(settings.bootstrapServers)])
            }
            throw error
        }
    }

    public func createTopic(_ name: String, partitions: Int, config: [String: String]) async throws(BrokerError) {
        var settings = config
        let replication = settings.removeValue(forKey: "replication.factor").flatMap { Int32($0) } ?? -1
        let config = settings
        let producer = UncheckedHandle(producer)
        let description = description
        let outcome = await attempt { () async throws(BrokerError) in
            try await blocking { () throws(BrokerError) in
                // Topics are created by the controller. A cluster whose controller does not take CreateTopics (librdkafka's
                // mock) makes the request wait out its timeout: after that has been seen once, it is not asked again.
                guard !self.noController.load(ordering: .acquiring) else {
                    throw BrokerError(.notImplemented, "cannot create topic \(name): \(description) did not take CreateTopics before (no controller answered); create the topic with the cluster's own tools")
                }
                try Admin.run(producer.pointer, what: "create topic \(name) in \(description)") { (queue, options) throws(BrokerError) in
                    var reason = [CChar](repeating: 0, count: 512)
                    guard let topic = rd_kafka_NewTopic_new(name, Int32(partitions), replication, &reason, reason.count) else {
                        throw BrokerError.badRequest("topic \(name) cannot be created: \(errorText(reason))", attribute: "partitions")
                    }
                    defer { rd_kafka_NewTopic_destroy(topic) }
                    for (key, value) in config.sorted(by: { $0.key < $1.key }) {
                        let error = rd_kafka_NewTopic_set_config(topic, key, value)
                        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                            throw BrokerError.badRequest("topic setting \(key)=\(value): \(String(cString: rd_kafka_err2str(error)))", attribute: "config.\(key)")
                        }
                    }
                    var topics: [OpaquePointer?] = [topic]
                    rd_kafka_CreateTopics(producer.pointer, &topics, 1, options, queue)
                } result: { event in
                    var count = 0
                    let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
                    return (0..<count).compactMap { results?[$0] }
                }
            }
        }
        counted("create_topics", (try? outcome.get()) != nil)
        if case .failure(let error) = outcome, error.kind == .notImplemented { noController.store(true, ordering: .releasing) }
        try outcome.get()
        try await refreshTopics()
    }

    public func deleteTopic(_ name: String) async throws(BrokerError) {
        let producer = UncheckedHandle(producer)
        let description = description
        let outcome = await attempt { () async throws(BrokerError) in
            try await blocking { () throws(BrokerError) in
                try Admin.run(producer.pointer, what: "delete topic \(name) in \(description)") { (queue, options) throws(BrokerError) in
                    guard let topic = rd_kafka_DeleteTopic_new(name) else { throw BrokerError(.internal, "librdkafka could not describe the deletion") }
                    defer { rd_kafka_DeleteTopic_destroy(topic) }
                    var topics: [OpaquePointer?] = [topic]
                    rd_kafka_DeleteTopics(producer.pointer, &topics, 1, options, queue)
                } result: { event in
                    var count = 0
                    let results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count)
                    return (0..<count).compactMap { results?[$0] }
                }
            }
        }
        counted("delete_topics", (try? outcome.get()) != nil)
        try outcome.get()
        _ = try? await refreshTopics()
    }

    public func ensureTopic(_ name: String, partitions: Int) async throws(BrokerError) -> Int {
        if let count = topics()[name] { return count }
        if let count = try await refreshTopics()[name] { return count }
        do {
            try await createTopic(name, partitions: partitions, config: [:])
        } catch where error.kind == .conflict {
            // Made meanwhile.
        } catch where error.kind == .notImplemented {
            // No CreateTopics: a metadata request for the topic lets the cluster create it its own way (its num.partitions).
            try await autoCreate(name)
            logger.warning("the cluster has no CreateTopics; topic \(name) was made by its auto-creation, with the cluster's partition count", metadata: [LogField.topic: .string(name)])
        }
        for _ in 0..<10 {
            if let count = try await refreshTopics()[name] { return count }
            try? await Task.sleep(for: .milliseconds(200))
        }
        throw BrokerError(.unavailable, "topic \(name) was created but \(description) does not list it yet; retry", retryAfter: 1)
    }

    /// Asks for the topic's metadata as a producer does, which makes a cluster with auto.create.topics.enable create it.
    private func autoCreate(_ name: String) async throws(BrokerError) {
        guard let topic = producerTopic(name) else { throw BrokerError(.internal, "librdkafka could not open topic \(name)") }
        let producer = UncheckedHandle(producer), handle = UncheckedHandle(topic)
        let description = description
        try await blocking { () throws(BrokerError) in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let error = rd_kafka_metadata(producer.pointer, 0, handle.pointer, &metadata, Self.requestTimeoutMs)
            if let metadata { rd_kafka_metadata_destroy(metadata) }
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw BrokerError(.unavailable, "\(description) did not create topic \(name): \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
            }
        }
    }

    public func join(group: String, options: MemberOptions) async throws(BrokerError) -> any GroupMember {
        let properties = settings.groupMember(group: group, options: options)
        let sessionTimeoutMs = options.sessionTimeoutMs ?? settings.sessionTimeoutMs
        let member = try KafkaGroupMember(group: group, topics: options.topics, properties: properties, logger: logger, description: description,
                                          sessionTimeoutMs: sessionTimeoutMs, heartbeatIntervalMs: min(settings.heartbeatIntervalMs, sessionTimeoutMs / 3)) { [weak self] in
            self?.joinedGroups.withLock { $0[group]?.members -= 1 }
        }
        joinedGroups.withLock { groups in
            let known = groups[group]
            groups[group] = ((known?.members ?? 0) + 1, (known?.topics ?? []).union(options.topics), true)
        }
        return member
    }

    // MARK: - Append

    private func producerTopic(_ name: String) -> OpaquePointer? {
        producerTopics.withLock { topics in
            if let topic = topics[name] { return topic }
            let topic = rd_kafka_topic_new(producer, name, nil)
            topics[name] = topic
            return topic
        }
    }

    public func append(topic name: String, partition: Int32, records: [Record]) async throws(BrokerError) -> [Int64]? {
        guard !closed.load(ordering: .acquiring) else {
            throw BrokerError(.unavailable, "the agent is shutting down; retry against the restarted agent", retryAfter: 1)
        }
        guard let topic = producerTopic(name) else { throw BrokerError(.internal, "librdkafka could not open topic \(name)") }
        let pending = PendingAppend(count: records.count, waited: !settings.acksNone, description: description)
        for (index, record) in records.enumerated() {
            if let error = produce(record, topic: topic, partition: partition, slot: DeliverySlot(pending, index)) {
                pending.refuse(from: index, error)
                break
            }
        }
        if settings.acksNone {
            // Answered before the cluster has them, as acks=0 means; a refusal on the way in is still an error.
            if let error = pending.refusal { throw error }
            return nil
        }
        // librdkafka reports a record that cannot be delivered after message.timeout.ms, but an idempotent
        // producer may hold on to one it has sent for longer: the answer does not wait beyond the bound.
        let bound = Duration.milliseconds(settings.messageTimeoutMs + 1000)
        let outcome = await withTaskGroup(of: Result<[Int64], BrokerError>?.self) { group in
            group.addTask { await pending.result() }
            group.addTask {
                try? await Task.sleep(for: bound)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let outcome else {
            throw BrokerError(.unavailable, "\(description) did not acknowledge the event within message.timeout.ms=\(settings.messageTimeoutMs): no leader for the partition or no broker reachable; the event may or may not be stored, so retry with the same id", retryAfter: 1)
        }
        return try outcome.get()
    }

    public func appendAtomically(_ records: [(topic: String, partition: Int32, record: Record)]) async throws(BrokerError) -> [Int64] {
        guard !closed.load(ordering: .acquiring) else {
            throw BrokerError(.unavailable, "the agent is shutting down; retry against the restarted agent", retryAfter: 1)
        }
        return try await transactions.publish(records)
    }

    /// Hands one record to the producer; a refusal (full queue, too large, unknown partition) comes back at once.
    private func produce(_ record: Record, topic: OpaquePointer, partition: Int32, slot: DeliverySlot) -> BrokerError? {
        Self.produce(record, with: producer, topic: topic, partition: partition, slot: slot, description: description)
    }

    /// Hands one record to `handle` (a producer); its delivery report resolves `slot`.
    static func produce(_ record: Record, with producer: OpaquePointer, topic: OpaquePointer, partition: Int32, slot: DeliverySlot,
                        description: String) -> BrokerError? {
        guard let headers = rd_kafka_headers_new(record.headers.count) else { return BrokerError(.internal, "librdkafka could not allocate headers") }
        for header in record.headers {
            if let value = header.value {
                value.withUnsafeBytes { _ = rd_kafka_header_add(headers, header.key, -1, $0.baseAddress, $0.count) }
            } else {
                _ = rd_kafka_header_add(headers, header.key, -1, nil, 0)
            }
        }
        let opaque = Unmanaged.passRetained(slot).toOpaque()
        let value = record.value ?? []
        let key = record.key ?? []
        let error: OpaquePointer? = value.withUnsafeBytes { valueBytes in
            key.withUnsafeBytes { keyBytes in
                var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 8)
                fields[0].vtype = RD_KAFKA_VTYPE_RKT
                fields[0].u.rkt = topic
                fields[1].vtype = RD_KAFKA_VTYPE_PARTITION
                fields[1].u.i32 = partition
                fields[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                fields[2].u.i = RD_KAFKA_MSG_F_COPY
                fields[3].vtype = RD_KAFKA_VTYPE_VALUE
                fields[3].u.mem.ptr = record.value == nil ? nil : UnsafeMutableRawPointer(mutating: valueBytes.baseAddress)
                fields[3].u.mem.size = record.value == nil ? 0 : valueBytes.count
                fields[4].vtype = RD_KAFKA_VTYPE_KEY
                fields[4].u.mem.ptr = record.key == nil ? nil : UnsafeMutableRawPointer(mutating: keyBytes.baseAddress)
                fields[4].u.mem.size = record.key == nil ? 0 : keyBytes.count
                fields[5].vtype = RD_KAFKA_VTYPE_TIMESTAMP
                fields[5].u.i64 = record.timestamp
                fields[6].vtype = RD_KAFKA_VTYPE_OPAQUE
                fields[6].u.ptr = opaque
                fields[7].vtype = RD_KAFKA_VTYPE_HEADERS
                fields[7].u.headers = headers
                return rd_kafka_produceva(producer, fields, fields.count)
            }
        }
        guard let error else { return nil }
        // Refused: the headers and the slot are still ours.
        rd_kafka_headers_destroy(headers)
        Unmanaged<DeliverySlot>.fromOpaque(opaque).release()
        let code = rd_kafka_error_code(error)
        let reason = String(cString: rd_kafka_error_string(error))
        rd_kafka_error_destroy(error)
        return Self.publishError(code, reason, description: description)
    }

    /// What a producer error means for the publisher.
    static func publishError(_ code: rd_kafka_resp_err_t, _ reason: String, description: String) -> BrokerError {
        switch code {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
            return BrokerError(.tooManyRequests, "the cluster producer's queue is full (\(reason)); retry after the Retry-After delay", retryAfter: 1)
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
            return BrokerError(.payloadTooLarge, "\(description) refused the event as too large (\(reason)); send smaller events or raise max.request.size and the topic's max.message.bytes")
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
            return BrokerError(.notFound, "\(description) does not have that topic or partition (\(reason))")
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
            return BrokerError(.unavailable, "\(description) did not acknowledge the event within message.timeout.ms (\(reason)): no leader for the partition or no broker reachable; the event may or may not be stored, so retry with the same id", retryAfter: 1)
        default:
            return BrokerError(.unavailable, "\(description) did not acknowledge the event: \(reason); retry with the same id", retryAfter: 1)
        }
    }

    // MARK: - Read

    private func readerTopic(_ name: String) -> OpaquePointer? {
        readerTopics.withLock { topics in
            if let topic = topics[name] { return topic }
            let topic = rd_kafka_topic_new(reader, name, nil)
            topics[name] = topic
            return topic
        }
    }

    private func partitionReader(_ tp: TopicPartition) -> PartitionReader {
        partitions.withLock { readers in
            if let existing = readers[tp] { return existing }
            let made = PartitionReader()
            readers[tp] = made
            return made
        }
    }

    public func offsets(topic name: String, partition: Int32) async throws(BrokerError) -> (start: Int64, end: Int64) {
        let reader = UncheckedHandle(reader)
        let description = description
        let outcome = await attempt { () async throws(BrokerError) in
            try await blocking { () throws(BrokerError) -> (start: Int64, end: Int64) in
                var low: Int64 = 0, high: Int64 = 0
                let error = rd_kafka_query_watermark_offsets(reader.pointer, name, partition, &low, &high, Self.requestTimeoutMs)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    if error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART {
                        throw BrokerError(.notFound, "\(description) has no partition \(name)/\(partition)")
                    }
                    throw BrokerError(.unavailable, "\(description) did not give \(name)/\(partition)'s offsets: \(String(cString: rd_kafka_err2str(error))); retry when its leader is reachable", retryAfter: 1)
                }
                return (low, high)
            }
        }
        counted("watermarks", (try? outcome.get()) != nil)
        return try outcome.get()
    }

    public func read(topic name: String, partition: Int32, from offset: Int64, offsets: (start: Int64, end: Int64), maxRecords: Int, maxBytes: Int,
                     maxWaitMs: Int64) async throws(BrokerError) -> RemoteRead {
        guard let topic = readerTopic(name) else { throw BrokerError(.internal, "librdkafka could not open topic \(name)") }
        let handle = UncheckedHandle(topic)
        let state = partitionReader(TopicPartition(name, partition))
        let description = description
        let (start, end) = offsets
        let records = try await blocking { () throws(BrokerError) -> [Record] in
            try state.read(handle.pointer, partition: partition, from: offset, available: end, maxRecords: maxRecords, maxBytes: maxBytes,
                           maxWaitMs: maxWaitMs, description: "\(description), \(name)/\(partition)")
        }
        return RemoteRead(records: records, nextOffset: records.last.map { $0.offset + 1 } ?? offset, logStartOffset: start, logEndOffset: max(end, (records.last?.offset ?? -1) + 1))
    }

    // MARK: - Close

    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let producer = UncheckedHandle(producer)
        let pending = await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            blockingQueue.async {
                _ = rd_kafka_flush(producer.pointer, Int32(ClusterSettings.defaultMessageTimeoutMs))
                continuation.resume(returning: rd_kafka_outq_len(producer.pointer))
            }
        }
        if pending > 0 {
            logger.error("closing with events the cluster has not acknowledged", metadata: ["events": .stringConvertible(pending)])
        }
        await transactions.close()
        running.store(false, ordering: .releasing)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            blockingQueue.async { [stopped] in
                stopped.wait()
                continuation.resume()
            }
        }
        for (tp, state) in partitions.withLock({ $0 }) {
            if let topic = readerTopics.withLock({ $0[tp.topic] }) { state.stop(topic, partition: tp.partition) }
        }
        for topic in producerTopics.withLock({ Array($0.values) }) + readerTopics.withLock({ Array($0.values) }) { rd_kafka_topic_destroy(topic) }
        rd_kafka_destroy(reader)
        rd_kafka_destroy(self.producer)
    }
}

/// Runs librdkafka's blocking `work` on `queue`, never on Swift's task pool.
func run<T: Sendable>(on queue: DispatchQueue, _ work: @escaping @Sendable () throws(BrokerError) -> T) async throws(BrokerError) -> T {
    let result: Result<T, BrokerError> = await withCheckedContinuation { continuation in
        queue.async {
            do throws(BrokerError) {
                continuation.resume(returning: .success(try work()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}

/// The outcome of `body`, error included.
func attempt<T>(_ body: () async throws(BrokerError) -> T) async -> Result<T, BrokerError> {
    do throws(BrokerError) {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

/// A librdkafka pointer carried into a `@Sendable` closure (librdkafka's handles are thread-safe).
struct UncheckedHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
