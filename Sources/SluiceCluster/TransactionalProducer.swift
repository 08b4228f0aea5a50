import CRdKafkaLoader
import Dispatch
import Logging
import SluiceBroker
import SluiceLog

/// Atomic publishes on a cluster: Kafka transactions of a producer of their own (`transactional.id` from
/// ``ClusterSettings/transactionalId``), so that read_committed consumers see every event of a request or none.
///
/// Transactions run one at a time on the producer's queue: begin, hand every record over, commit (which waits for
/// every record's acknowledgement). A failure aborts the transaction and drops the producer (also when it was
/// fenced by another with the same id); the next transaction starts a new one. The producer is made
/// at the first atomic publish: `init_transactions` needs the cluster.
final class TransactionalProducer: @unchecked Sendable {
    private let settings: ClusterSettings
    private let context: CallbackContext
    private let logger: Logger
    private let description: String
    private let queue = DispatchQueue(label: "sluice.cluster.transactions")
    /// Touched on `queue` only.
    private var handle: OpaquePointer?
    private var topics: [String: OpaquePointer] = [:]
    /// How long init, commit and abort may take.
    static let timeoutMs: Int32 = 10_000

    init(settings: ClusterSettings, context: CallbackContext, logger: Logger, description: String) {
        self.settings = settings
        self.context = context
        self.logger = logger
        self.description = description
    }

    /// Writes `records` as one transaction; their offsets once it is committed.
    func publish(_ records: [(topic: String, partition: Int32, record: Record)]) async throws(BrokerError) -> [Int64] {
        let pending = PendingAppend(count: records.count, waited: true, description: description)
        try await run(on: queue) { () throws(BrokerError) in try self.transaction(records, pending) }
        // Committed: every record was acknowledged, and its report came while the commit flushed.
        return try await pending.result().get()
    }

    /// On `queue`.
    private func transaction(_ records: [(topic: String, partition: Int32, record: Record)], _ pending: PendingAppend) throws(BrokerError) {
        let producer = try ready()
        try check(rd_kafka_begin_transaction(producer), "begin a transaction", producer)
        for (index, item) in records.enumerated() {
            let topic = topics[item.topic] ?? rd_kafka_topic_new(producer, item.topic, nil)
            topics[item.topic] = topic
            guard let topic else {
                abort(producer)
                throw BrokerError(.internal, "librdkafka could not open topic \(item.topic)")
            }
            if let refused = KafkaCluster.produce(item.record, with: producer, topic: topic, partition: item.partition, slot: DeliverySlot(pending, index),
                                                  description: description) {
                pending.refuse(from: index, refused)
                abort(producer)
                throw refused
            }
        }
        do {
            try check(rd_kafka_commit_transaction(producer, Self.timeoutMs), "commit the transaction", producer)
        } catch {
            abort(producer)
            throw error
        }
    }

    /// The producer, made and initialised for transactions when there is none.
    private func ready() throws(BrokerError) -> OpaquePointer {
        if let handle { return handle }
        let properties = settings.producer.filter { $0.name != "statistics.interval.ms" } + [
            ClusterSettings.Property(name: "transactional.id", value: settings.transactionalId, origin: "Sluice (atomic publishes)"),
            ClusterSettings.Property(name: "enable.idempotence", value: "true", origin: "Sluice (transactions need it)"),
            ClusterSettings.Property(name: "acks", value: "all", origin: "Sluice (transactions need it)"),
        ]
        let made: OpaquePointer
        do {
            made = try makeProducer(try ClusterSettings.makeConfiguration(properties), context: context, statistics: false)
        } catch {
            throw BrokerError(.internal, "the transactional producer cannot start: \(error.message)")
        }
        if let error = rd_kafka_init_transactions(made, Self.timeoutMs) {
            let message = String(cString: rd_kafka_error_string(error))
            rd_kafka_error_destroy(error)
            rd_kafka_destroy(made)
            throw BrokerError(.unavailable, "\(description) did not take the transactional producer \(settings.transactionalId): \(message); retry when the cluster is reachable", retryAfter: 1)
        }
        logger.info("cluster transactional producer ready", metadata: ["transactional.id": .string(settings.transactionalId)])
        handle = made
        return made
    }

    /// Throws what a failed transactional call means; a fatal error drops the producer.
    private func check(_ error: OpaquePointer?, _ what: String, _ producer: OpaquePointer) throws(BrokerError) {
        guard let error else { return }
        let message = String(cString: rd_kafka_error_string(error))
        let fatal = rd_kafka_error_is_fatal(error) != 0
        rd_kafka_error_destroy(error)
        if fatal {
            logger.error("the cluster's transactional producer failed for good (\(message)); a new one is made for the next atomic publish",
                         metadata: ["transactional.id": .string(settings.transactionalId)])
            drop()
        }
        throw BrokerError(.unavailable, "\(description): could not \(what): \(message); nothing of this request is visible to read_committed readers, retry it", retryAfter: 1)
    }

    /// Aborts the open transaction, then drops the producer: the next transaction starts with a new one, whose
    /// `init_transactions` fences this one and starts its sequences afresh. (Keeping it after an abort that
    /// followed a refused Produce left its sequence numbers ahead of the cluster's — "skipped sequence numbers"
    /// on the next commit, with librdkafka 2.0 and its mock cluster.)
    private func abort(_ producer: OpaquePointer) {
        guard handle == producer else { return }
        if let error = rd_kafka_abort_transaction(producer, Self.timeoutMs) {
            logger.warning("aborting a cluster transaction failed: \(String(cString: rd_kafka_error_string(error)))")
            rd_kafka_error_destroy(error)
        }
        drop()
    }

    private func drop() {
        guard let handle else { return }
        for topic in topics.values { rd_kafka_topic_destroy(topic) }
        topics = [:]
        rd_kafka_destroy(handle)
        self.handle = nil
    }

    /// Flushes and closes the producer (at shutdown).
    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if let handle = self.handle { _ = rd_kafka_flush(handle, 2000) }
                self.drop()
                continuation.resume()
            }
        }
    }
}
