import Foundation
import Logging
public import SluiceLog
import SluiceTelemetry
import Synchronization

/// Where a transaction is, as it is written to the transaction journal (Kafka's coordinator states).
public enum TransactionPhase: String, Codable, Sendable {
    /// A Kafka transactional id with its producer id and epoch, and no transaction open.
    case empty
    case ongoing
    case prepareCommit = "prepare_commit"
    case prepareAbort = "prepare_abort"
    case completeCommit = "complete_commit"
    case completeAbort = "complete_abort"

    var isComplete: Bool { self == .completeCommit || self == .completeAbort || self == .empty }
}

/// One state of one transaction in `DATA/transactions.journal`. `start` is each partition's log end offset
/// before the transaction wrote to it: a lower bound of its first batch there, which is all an ABORT written
/// after a crash needs (aborted spans are per producer id).
struct TransactionEntry: Codable, Sendable {
    struct Partition: Codable, Sendable, Hashable {
        var topic: String
        var partition: Int32
        var start: Int64
    }

    /// Consumer offsets committed with the transaction (Kafka's TxnOffsetCommit), applied when it commits.
    struct Offset: Codable, Sendable, Hashable {
        var group: String
        var topic: String
        var partition: Int32
        var offset: Int64
        var metadata: String
    }

    var id: String
    var producerId: Int64
    var producerEpoch: Int16
    var phase: TransactionPhase
    var partitions: [Partition]
    var timeoutMs: Int64
    /// Milliseconds since the epoch.
    var started: Int64
    /// Set for a Kafka client's `transactional.id`: its producer id and epoch are kept across transactions.
    var kafka: Bool? = nil
    var offsets: [Offset]? = nil
}

/// Why a Kafka transactional request was refused, by Kafka's error names.
public struct TransactionFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// INVALID_PRODUCER_EPOCH: a newer producer with the same transactional.id fenced this one.
        case fenced
        /// INVALID_TXN_STATE
        case invalidState
        /// INVALID_PRODUCER_ID_MAPPING: the producer id is not the transactional id's.
        case unknownMapping
        /// KAFKA_STORAGE_ERROR and the like: the broker could not write.
        case broker(BrokerError)
    }
    public var kind: Kind
    public var message: String
    public var description: String { message }
}

/// An open transaction in memory. Its lock is held while the transaction writes a batch, so a timeout that
/// aborts it cannot slip a marker in before a batch of the transaction that would then stay open.
public final class OpenTransaction: Sendable {
    public let id: String
    public let producerId: Int64
    public let producerEpoch: Int16
    let started: Int64
    let deadline: Int64
    /// A Kafka client's transaction (its id is the `transactional.id`).
    let kafka: Bool
    struct State {
        var phase: TransactionPhase = .ongoing
        var partitions: [TransactionEntry.Partition] = []
        var timedOut = false
        var finished = false
        /// Kafka produce requests appending to the transaction right now: markers wait for them.
        var inflight = 0
        var offsets: [TransactionEntry.Offset] = []
    }
    let state: Mutex<State>

    init(id: String, producerId: Int64, producerEpoch: Int16, started: Int64, timeoutMs: Int64, partitions: [TransactionEntry.Partition], kafka: Bool = false) {
        self.kafka = kafka
        self.id = id
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.started = started
        self.deadline = started + timeoutMs
        state = Mutex(State(partitions: partitions))
    }

    func entry(_ phase: TransactionPhase) -> TransactionEntry {
        let (partitions, offsets) = state.withLock { ($0.partitions, $0.offsets) }
        return TransactionEntry(id: id, producerId: producerId, producerEpoch: producerEpoch, phase: phase,
                                partitions: partitions, timeoutMs: deadline - started, started: started,
                                kafka: kafka ? true : nil, offsets: offsets.isEmpty ? nil : offsets)
    }

    func notOngoing(_ state: State) -> BrokerError {
        if state.timedOut {
            return BrokerError(.requestTimeout, "transaction \(id) was open longer than transaction.timeout.ms=\(deadline - started) and was aborted; nothing of it was published")
        }
        return BrokerError(.conflict, "transaction \(id) has already ended (\(state.phase.rawValue))")
    }
}

/// Runs transactions in Kafka's format: the decision to commit or abort is fsynced to the transaction journal
/// before any marker is written, and after a crash every transaction the journal shows unfinished is finished
/// (prepared commits committed, everything else aborted) before anyone reads.
public final class TransactionCoordinator: Sendable {
    let journal: Journal
    let open = Mutex<[String: OpenTransaction]>([:])
    /// What the journal held at start and recovery has not finished yet.
    let recovered: Mutex<[TransactionEntry]>
    /// Kafka transactional ids: their producer id and current epoch.
    let registry: Mutex<[String: (producerId: Int64, epoch: Int16, timeoutMs: Int64)]>
    let metrics: SluiceMetrics

    init(path: String, metrics: SluiceMetrics) throws {
        let (journal, payloads) = try Journal.open(path)
        self.journal = journal
        self.metrics = metrics
        var latest: [String: TransactionEntry] = [:]
        var order: [String] = []
        for payload in payloads {
            guard let entry = try? JSONDecoder().decode(TransactionEntry.self, from: Data(payload)) else { continue }
            if latest[entry.id] == nil { order.append(entry.id) }
            latest[entry.id] = entry
        }
        recovered = Mutex(order.compactMap { latest[$0] }.filter { !$0.phase.isComplete })
        var known: [String: (producerId: Int64, epoch: Int16, timeoutMs: Int64)] = [:]
        for entry in latest.values where entry.kafka == true { known[entry.id] = (entry.producerId, entry.producerEpoch, entry.timeoutMs) }
        registry = Mutex(known)
    }

    /// The journal entries that keep Kafka transactional ids' producer ids and epochs.
    func registryEntries() -> [TransactionEntry] {
        registry.withLock { registry in
            registry.sorted { $0.key < $1.key }.map { id, value in
                TransactionEntry(id: id, producerId: value.producerId, producerEpoch: value.epoch, phase: .empty, partitions: [],
                                 timeoutMs: value.timeoutMs, started: 0, kafka: true)
            }
        }
    }

    func write(_ entry: TransactionEntry, durably: Bool) async throws(BrokerError) {
        do {
            let payload = Array(try JSONEncoder().encode(entry))
            if durably { try await journal.appendDurably(payload) } else { _ = try journal.append(payload) }
        } catch {
            throw BrokerError(.unavailable, "the transaction journal \(journal.path) cannot be written: \((error as? LogError)?.message ?? "\(error)"); nothing of the transaction was published",
                              retryAfter: 1)
        }
    }

    /// Compacts the journal once it has grown: only open transactions' latest states are kept.
    func compactIfLarge() {
        guard journal.size > 16 << 20 else { return }
        let live = open.withLock { Array($0.values) }
        let openIds = Set(live.map(\.id))
        let entries = registryEntries().filter { !openIds.contains($0.id) } + live.map { txn in txn.entry(txn.state.withLock { $0.phase }) }
        let payloads = entries.compactMap { try? Array(JSONEncoder().encode($0)) }
        try? journal.rewrite(payloads)
    }

    func updateGauges(now: Int64 = currentTimeMillis()) {
        let (count, oldest) = open.withLock { open in (open.count, open.values.map(\.started).min()) }
        metrics.gauge(MetricName.transactionsOpen).set(Double(count))
        metrics.gauge(MetricName.transactionOldestOpen).set(oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0)
    }

    /// Commits a transaction's consumer offsets (the group coordinator's), set once it exists.
    let offsetsHook = Mutex<(@Sendable ([GroupPartition: CommittedOffset]) async throws -> Void)?>(nil)

    public func commitOffsets(with apply: @escaping @Sendable ([GroupPartition: CommittedOffset]) async throws -> Void) {
        offsetsHook.withLock { $0 = apply }
    }

    func ended(_ outcome: String) {
        metrics.counter(MetricName.transactions, outcome).increment()
    }
}

extension Broker {
    // MARK: - Atomic publishing

    /// Publishes events to several topics as one transaction: each partition gets one transactional batch and,
    /// once the commit decision is durable, a COMMIT marker. Readers at read_committed see all of them or none;
    /// a failure before the decision writes ABORT markers, and a crash before it leaves the transaction to be
    /// aborted at the next start.
    ///
    /// Atomic publishes always wait for fsync (whatever `acks`) and bypass the idempotence window: a retried
    /// request is a new transaction.
    public func publishAtomic(_ byTopic: [(topic: String, events: [CloudEvent])]) async throws(BrokerError) -> [PublishResult] {
        if let remote { return try await publishAtomic(to: remote, byTopic) }
        let now = currentTimeMillis()
        var targets: [(tp: TopicPartition, records: [Record], results: [Int])] = []
        var results: [PublishResult] = []
        for (name, events) in byTopic {
            try TopicNameCheck.validate(name)
            try refuseInternal(name, "publish to")
            let state = try state(for: name, create: true)
            let partitionCount = state.producers.count
            let sticky = Int32(state.sticky.wrappingAdd(1, ordering: .relaxed).oldValue % partitionCount)
            var perPartition: [Int32: [(Record, Int)]] = [:]
            for event in events {
                let partition = event.partitionKey.map { Partitioner.partition(forKey: Array($0.utf8), partitions: partitionCount) } ?? sticky
                perPartition[partition, default: []].append((event.record(timestamp: now), results.count))
                results.append(PublishResult(id: event.id, topic: name, partition: partition, offset: nil, duplicate: false, correlationId: event.correlationId ?? ""))
            }
            for (partition, items) in perPartition.sorted(by: { $0.key < $1.key }) {
                targets.append((TopicPartition(name, partition), items.map(\.0), items.map(\.1)))
            }
        }
        guard !targets.isEmpty else { return [] }

        let txn = try await beginTransaction(partitions: targets.map(\.tp))
        do {
            var appended: [(TopicPartition, AppendInfo)] = []
            for target in targets {
                let info = try appendTransactional(txn, to: target.tp, records: target.records, durably: false)
                appended.append((target.tp, info))
                for (offsetInBatch, index) in target.results.enumerated() { results[index].offset = info.baseOffset + Int64(offsetInBatch) }
            }
            for (tp, info) in appended {
                do {
                    try await partitionLog(tp).waitUntilDurable(info.lastOffset + 1)
                } catch {
                    throw BrokerError(error)
                }
            }
        } catch {
            await finish(txn, commit: false, outcome: "aborted")
            throw BrokerError(error)
        }
        try await endTransaction(txn, commit: true)
        return results
    }

    /// Begins a transaction over `partitions` (creating missing topics when auto-creation is on) with a new
    /// producer id: its journal entry is durable on return.
    public func beginTransaction(partitions: [TopicPartition], timeoutMs: Int64? = nil) async throws(BrokerError) -> OpenTransaction {
        let producerId = try producerIds.allocate()
        var parts: [TransactionEntry.Partition] = []
        for tp in partitions {
            try TopicNameCheck.validate(tp.topic)
            try refuseInternal(tp.topic, "publish to")
            _ = try state(for: tp.topic, create: true)
            let log = try partitionLog(tp)
            parts.append(.init(topic: tp.topic, partition: tp.partition, start: log.logEndOffset))
        }
        let txn = OpenTransaction(id: "sluice-atomic-\(producerId)", producerId: producerId, producerEpoch: 0, started: currentTimeMillis(),
                                  timeoutMs: timeoutMs ?? config.integer("transaction.timeout.ms"), partitions: parts)
        transactions.open.withLock { $0[txn.id] = txn }
        transactions.updateGauges()
        do {
            try await transactions.write(txn.entry(.ongoing), durably: true)
        } catch {
            transactions.open.withLock { $0[txn.id] = nil }
            transactions.updateGauges()
            throw error
        }
        return txn
    }

    /// Appends `records` as one transactional batch of `txn` to a partition it began with (to the page cache;
    /// `durably` waits for fsync).
    @discardableResult
    public func appendTransactional(_ txn: OpenTransaction, to tp: TopicPartition, records: [Record], durably: Bool = true) throws(BrokerError) -> AppendInfo {
        let log = try partitionLog(tp)
        let compression = log.config.compression.map { Compression(codec: $0) } ?? settings.compression
        let batch: CheckedBatch
        do {
            batch = try CheckedBatch(RecordBatch.encode(records, compression: compression,
                                                        producer: ProducerInfo(producerId: txn.producerId, producerEpoch: txn.producerEpoch, baseSequence: 0),
                                                        transactional: true))
        } catch {
            throw BrokerError(error)
        }
        guard batch.bytes.count <= log.config.maxMessageBytes else {
            throw BrokerError(.payloadTooLarge, "the events for \(tp) make a \(batch.bytes.count)-byte batch; max.message.bytes is \(log.config.maxMessageBytes); an atomic publish writes one batch per partition, so split it or raise max.message.bytes")
        }
        let info: AppendInfo
        do {
            info = try txn.state.withLock { state throws -> AppendInfo in
                guard state.phase == .ongoing else { throw txn.notOngoing(state) }
                guard state.partitions.contains(where: { $0.topic == tp.topic && $0.partition == tp.partition }) else {
                    throw BrokerError(.conflict, "transaction \(txn.id) did not begin with \(tp)")
                }
                return try log.appendWithoutFlush(batch)
            }
        } catch {
            throw BrokerError(error)
        }
        topicNotifier(tp.topic, tp.partition)?.notify()
        return info
    }

    /// Ends `txn`: a commit is decided durably in the journal first, then the markers are written.
    /// Throws when the transaction was already ended (for example aborted by its timeout).
    public func endTransaction(_ txn: OpenTransaction, commit: Bool) async throws(BrokerError) {
        guard commit else {
            let open = txn.state.withLock { state -> Bool in
                guard state.phase == .ongoing else { return false }
                state.phase = .prepareAbort
                return true
            }
            if open { await finish(txn, commit: false, outcome: "aborted") }
            return
        }
        let failure = txn.state.withLock { state -> BrokerError? in
            guard state.phase == .ongoing else { return txn.notOngoing(state) }
            state.phase = .prepareCommit
            return nil
        }
        if let failure { throw failure }
        do {
            try await transactions.write(txn.entry(.prepareCommit), durably: true)
        } catch {
            // Not durably decided: abort (recovery would too).
            await finish(txn, commit: false, outcome: "aborted")
            throw error
        }
        await finish(txn, commit: true, outcome: "committed")
    }

    /// Writes the markers that end `txn` (COMMIT or ABORT) to every partition it touched, then records it
    /// complete once they are durable. Marker failures are logged: the journal still says how to finish the
    /// transaction at the next start.
    func finish(_ txn: OpenTransaction, commit: Bool, outcome: String) async {
        let partitions = txn.state.withLock { state -> [TransactionEntry.Partition]? in
            guard !state.finished else { return nil }
            state.finished = true
            state.phase = commit ? .prepareCommit : .prepareAbort
            return state.partitions
        }
        guard let partitions else { return }
        // Kafka produce requests already appending finish first, so that no batch of the transaction lands after its marker.
        while txn.state.withLock({ $0.inflight > 0 }) { try? await Task.sleep(for: .milliseconds(1)) }
        if commit, let apply = transactions.offsetsHook.withLock({ $0 }) {
            let offsets = txn.state.withLock { $0.offsets }
            if !offsets.isEmpty {
                do {
                    try await apply(Self.committedOffsets(offsets))
                } catch {
                    logger.error("a transaction's consumer offsets could not be committed; the next start commits them", metadata: [
                        LogField.transactionId: .string(txn.id), "error.message": .string("\(error)"),
                    ])
                }
            }
        }
        if !commit {
            try? await transactions.write(txn.entry(.prepareAbort), durably: false)
        }
        var writes: [(PartitionLog, Int64)] = []
        var markersWritten = true
        for partition in partitions {
            guard let log = try? partitionLog(TopicPartition(partition.topic, partition.partition)) else { continue }
            do {
                let info = try log.appendMarker(commit ? .commit : .abort, producerId: txn.producerId, producerEpoch: txn.producerEpoch)
                writes.append((log, info.lastOffset + 1))
                topicNotifier(partition.topic, partition.partition)?.notify()
                publishPartitionMetrics(log)
            } catch {
                markersWritten = false
                logger.error("a transaction marker could not be written; the next start finishes the transaction", metadata: [
                    LogField.transactionId: .string(txn.id), LogField.topic: .string(partition.topic), LogField.partition: .stringConvertible(partition.partition),
                    "error.message": .string((error as? LogError)?.message ?? "\(error)"),
                ])
            }
        }
        transactions.open.withLock { $0[txn.id] = nil }
        transactions.ended(outcome)
        transactions.updateGauges()
        guard markersWritten else { return }
        // Complete once the markers are durable; until then a crash makes recovery write them again (harmless).
        let entry = txn.kafka ? txn.entry(.empty) : txn.entry(commit ? .completeCommit : .completeAbort)
        Task { [transactions] in
            for (log, end) in writes { try? await log.waitUntilDurable(end) }
            try? await transactions.write(entry, durably: false)
            transactions.compactIfLarge()
        }
    }

    func topicNotifier(_ topic: String, _ partition: Int32) -> AppendNotifier? {
        guard let state = try? state(for: topic, create: false), partition >= 0, Int(partition) < state.notifiers.count else { return nil }
        return state.notifiers[Int(partition)]
    }

    /// Finishes what the journal shows unfinished after a crash — prepared commits are committed, everything
    /// else is aborted — and waits until the markers are durable. Called once at start, before anything reads.
    public func recoverTransactions(applyOffsets: (([GroupPartition: CommittedOffset]) async throws -> Void)? = nil) async throws {
        let unfinished = transactions.recovered.withLock { $0 }
        for entry in unfinished {
            let commit = entry.phase == .prepareCommit
            if commit, let offsets = entry.offsets, !offsets.isEmpty, let applyOffsets {
                try await applyOffsets(Self.committedOffsets(offsets))
            }
            var ends: [(PartitionLog, Int64)] = []
            for partition in entry.partitions {
                guard let log = try? partitionLog(TopicPartition(partition.topic, partition.partition)) else { continue }
                log.restoreOpenTransaction(producerId: entry.producerId, from: partition.start)
                let info = try log.appendMarker(commit ? .commit : .abort, producerId: entry.producerId, producerEpoch: entry.producerEpoch)
                ends.append((log, info.lastOffset + 1))
                publishPartitionMetrics(log)
            }
            for (log, end) in ends { try await log.waitUntilDurable(end) }
            var done = entry
            done.phase = entry.kafka == true ? .empty : commit ? .completeCommit : .completeAbort
            try await transactions.write(done, durably: true)
            transactions.ended(commit ? "recovered_committed" : "recovered_aborted")
            logger.notice(commit ? "transaction committed after a restart" : "open transaction aborted after a restart", metadata: [
                LogField.transactionId: .string(entry.id), LogField.transactionPartitions: .stringConvertible(entry.partitions.count),
            ])
        }
        transactions.recovered.withLock { $0 = [] }
        try transactions.journal.rewrite(transactions.registryEntries().compactMap { try? Array(JSONEncoder().encode($0)) })
        transactions.updateGauges()
    }

    /// Aborts transactions open longer than `transaction.timeout.ms`; run by maintenance every second.
    func expireTransactions(now: Int64 = currentTimeMillis()) async {
        let expired = transactions.open.withLock { open in open.values.filter { $0.deadline <= now } }
        for txn in expired {
            let aborting = txn.state.withLock { state -> Bool in
                guard state.phase == .ongoing else { return false }
                state.phase = .prepareAbort
                state.timedOut = true
                return true
            }
            guard aborting else { continue }
            logger.warning("transaction aborted: open longer than transaction.timeout.ms", metadata: [
                LogField.transactionId: .string(txn.id), LogField.transactionAge: .stringConvertible(now - txn.started), LogField.transactionPartitions: .stringConvertible(txn.state.withLock { $0.partitions.count }),
            ])
            await finish(txn, commit: false, outcome: "timed_out")
        }
        transactions.updateGauges(now: now)
    }
}

extension Broker {
    // MARK: - Kafka transactional producers

    static func committedOffsets(_ offsets: [TransactionEntry.Offset]) -> [GroupPartition: CommittedOffset] {
        let now = currentTimeMillis()
        var out: [GroupPartition: CommittedOffset] = [:]
        for o in offsets { out[GroupPartition(group: o.group, topic: o.topic, partition: o.partition)] = CommittedOffset(offset: o.offset, metadata: o.metadata, commitTime: now) }
        return out
    }

    /// InitProducerId with a `transactional.id`: the id's producer id with its epoch bumped (a new id the first
    /// time), which fences any older producer with the same transactional id; an open transaction of it is
    /// aborted first. Durable on return.
    public func initTransactionalProducer(id: String, timeoutMs: Int64) async throws(TransactionFailure) -> (producerId: Int64, epoch: Int16) {
        guard !id.isEmpty else { throw TransactionFailure(kind: .invalidState, message: "transactional.id must not be empty") }
        if let open = transactions.open.withLock({ $0[id] }) {
            open.state.withLock { state in
                if state.phase == .ongoing { state.phase = .prepareAbort }
            }
            await finish(open, commit: false, outcome: "aborted")
        }
        let known = transactions.registry.withLock { $0[id] }
        var producerId: Int64, epoch: Int16
        if let known, known.epoch < Int16.max - 1 {
            (producerId, epoch) = (known.producerId, known.epoch + 1)
        } else {
            do {
                producerId = try producerIds.allocate()
            } catch {
                throw TransactionFailure(kind: .broker(error), message: error.message)
            }
            epoch = 0
        }
        let entry = TransactionEntry(id: id, producerId: producerId, producerEpoch: epoch, phase: .empty, partitions: [], timeoutMs: timeoutMs,
                                     started: currentTimeMillis(), kafka: true)
        do {
            try await transactions.write(entry, durably: true)
        } catch {
            throw TransactionFailure(kind: .broker(error), message: error.message)
        }
        transactions.registry.withLock { $0[id] = (producerId, epoch, timeoutMs) }
        return (producerId, epoch)
    }

    /// Checks that `producerId` and `epoch` are the transactional id's current ones.
    func checkProducer(_ id: String, producerId: Int64, epoch: Int16) throws(TransactionFailure) -> (timeoutMs: Int64, Void) {
        guard let known = transactions.registry.withLock({ $0[id] }) else {
            throw TransactionFailure(kind: .unknownMapping, message: "transactional id \(id) has no producer id; call InitProducerId first")
        }
        guard known.producerId == producerId else {
            throw TransactionFailure(kind: .unknownMapping, message: "producer id \(producerId) is not transactional id \(id)'s (\(known.producerId))")
        }
        guard known.epoch == epoch else {
            throw TransactionFailure(kind: .fenced, message: "producer epoch \(epoch) of transactional id \(id) is fenced by epoch \(known.epoch): a newer producer with this transactional.id started")
        }
        return (known.timeoutMs, ())
    }

    /// The transactional id's open transaction, begun now when there is none (AddPartitionsToTxn, AddOffsetsToTxn).
    func kafkaTransaction(_ id: String, producerId: Int64, epoch: Int16) throws(TransactionFailure) -> OpenTransaction {
        let (timeoutMs, _) = try checkProducer(id, producerId: producerId, epoch: epoch)
        let txn = transactions.open.withLock { open in
            if let existing = open[id] { return existing }
            let txn = OpenTransaction(id: id, producerId: producerId, producerEpoch: epoch, started: currentTimeMillis(), timeoutMs: timeoutMs,
                                      partitions: [], kafka: true)
            open[id] = txn
            return txn
        }
        transactions.updateGauges()
        return txn
    }

    /// AddPartitionsToTxn: the partitions join the transaction (recorded durably with where each one starts).
    public func addPartitionsToTransaction(_ id: String, producerId: Int64, epoch: Int16, partitions: [TopicPartition]) async throws(TransactionFailure) {
        let txn = try kafkaTransaction(id, producerId: producerId, epoch: epoch)
        var added = false
        for tp in partitions {
            let log: PartitionLog
            do {
                log = try partitionLog(tp)
            } catch {
                throw TransactionFailure(kind: .broker(error), message: error.message)
            }
            let fresh = try txn.state.withLock { state throws(TransactionFailure) -> Bool in
                guard state.phase == .ongoing else {
                    throw TransactionFailure(kind: .invalidState, message: "transaction \(id) is \(state.timedOut ? "aborted by its timeout" : state.phase.rawValue); begin a new one")
                }
                guard !state.partitions.contains(where: { $0.topic == tp.topic && $0.partition == tp.partition }) else { return false }
                state.partitions.append(.init(topic: tp.topic, partition: tp.partition, start: log.logEndOffset))
                return true
            }
            added = added || fresh
        }
        guard added else { return }
        do {
            try await transactions.write(txn.entry(.ongoing), durably: true)
        } catch {
            throw TransactionFailure(kind: .broker(error), message: error.message)
        }
    }

    /// AddOffsetsToTxn: the group's offsets may be committed in the transaction.
    public func addOffsetsToTransaction(_ id: String, producerId: Int64, epoch: Int16, group: String) throws(TransactionFailure) {
        let txn = try kafkaTransaction(id, producerId: producerId, epoch: epoch)
        try txn.state.withLock { state throws(TransactionFailure) in
            guard state.phase == .ongoing else { throw TransactionFailure(kind: .invalidState, message: "transaction \(id) is \(state.phase.rawValue)") }
        }
    }

    /// TxnOffsetCommit: offsets committed if, and when, the transaction commits.
    public func commitOffsetsInTransaction(_ id: String, producerId: Int64, epoch: Int16, group: String,
                                           offsets: [(TopicPartition, Int64, String)]) throws(TransactionFailure) {
        _ = try checkProducer(id, producerId: producerId, epoch: epoch)
        guard let txn = transactions.open.withLock({ $0[id] }) else {
            throw TransactionFailure(kind: .invalidState, message: "transactional id \(id) has no open transaction; call AddOffsetsToTxn first")
        }
        try txn.state.withLock { state throws(TransactionFailure) in
            guard state.phase == .ongoing else { throw TransactionFailure(kind: .invalidState, message: "transaction \(id) is \(state.phase.rawValue)") }
            for (tp, offset, metadata) in offsets {
                state.offsets.removeAll { $0.group == group && $0.topic == tp.topic && $0.partition == tp.partition }
                state.offsets.append(.init(group: group, topic: tp.topic, partition: tp.partition, offset: offset, metadata: metadata))
            }
        }
    }

    /// A Kafka producer's transactional batch: appended only to a partition its open transaction has added, by
    /// its current epoch (and with the idempotent producer's sequence checks).
    public func appendTransactionalBatch(_ batch: CheckedBatch, to tp: TopicPartition, acks: Acks, transactionalId: String?) async throws(TransactionFailure) -> BatchAppend {
        let producer = batch.header.producer
        let txn = transactions.open.withLock { open in
            transactionalId.flatMap { open[$0] } ?? open.values.first { $0.kafka && $0.producerId == producer.producerId }
        }
        guard let txn, txn.producerId == producer.producerId else {
            throw TransactionFailure(kind: .invalidState, message: "producer \(producer.producerId) has no open transaction; AddPartitionsToTxn must come before a transactional produce")
        }
        guard txn.producerEpoch == producer.producerEpoch else {
            throw TransactionFailure(kind: .fenced, message: "producer epoch \(producer.producerEpoch) is fenced by epoch \(txn.producerEpoch)")
        }
        try txn.state.withLock { state throws(TransactionFailure) in
            guard state.phase == .ongoing else {
                throw TransactionFailure(kind: .invalidState, message: "transaction \(txn.id) is \(state.timedOut ? "aborted by its timeout" : state.phase.rawValue)")
            }
            guard state.partitions.contains(where: { $0.topic == tp.topic && $0.partition == tp.partition }) else {
                throw TransactionFailure(kind: .invalidState, message: "\(tp) was not added to transaction \(txn.id) with AddPartitionsToTxn")
            }
            state.inflight += 1
        }
        defer { txn.state.withLock { $0.inflight -= 1 } }
        do {
            return try await appendBatch(batch, to: tp, acks: acks)
        } catch {
            throw TransactionFailure(kind: .broker(error), message: error.message)
        }
    }

    /// EndTxn: commit (durably decided first, offsets applied) or abort the transactional id's open transaction.
    public func endKafkaTransaction(_ id: String, producerId: Int64, epoch: Int16, commit: Bool) async throws(TransactionFailure) {
        _ = try checkProducer(id, producerId: producerId, epoch: epoch)
        guard let txn = transactions.open.withLock({ $0[id] }) else {
            throw TransactionFailure(kind: .invalidState, message: "transactional id \(id) has no open transaction to \(commit ? "commit" : "abort")")
        }
        do {
            try await endTransaction(txn, commit: commit)
        } catch {
            if error.kind == .requestTimeout || error.kind == .conflict { throw TransactionFailure(kind: .invalidState, message: error.message) }
            throw TransactionFailure(kind: .broker(error), message: error.message)
        }
    }
}
