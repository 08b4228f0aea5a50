import Foundation
import Logging
public import SluiceLog
import SluiceTelemetry
import Synchronization

/// Where a transaction is, as it is written to the transaction journal (Kafka's coordinator states).
public enum TransactionPhase: String, Codable, Sendable {
    case ongoing
    case prepareCommit = "prepare_commit"
    case prepareAbort = "prepare_abort"
    case completeCommit = "complete_commit"
    case completeAbort = "complete_abort"

    var isComplete: Bool { self == .completeCommit || self == .completeAbort }
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

    var id: String
    var producerId: Int64
    var producerEpoch: Int16
    var phase: TransactionPhase
    var partitions: [Partition]
    var timeoutMs: Int64
    /// Milliseconds since the epoch.
    var started: Int64
}

/// An open transaction in memory. Its lock is held while the transaction writes a batch, so a timeout that
/// aborts it cannot slip a marker in before a batch of the transaction that would then stay open.
public final class OpenTransaction: Sendable {
    public let id: String
    public let producerId: Int64
    let producerEpoch: Int16
    let started: Int64
    let deadline: Int64
    struct State {
        var phase: TransactionPhase = .ongoing
        var partitions: [TransactionEntry.Partition] = []
        var timedOut = false
        var finished = false
    }
    let state: Mutex<State>

    init(id: String, producerId: Int64, producerEpoch: Int16, started: Int64, timeoutMs: Int64, partitions: [TransactionEntry.Partition]) {
        self.id = id
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.started = started
        self.deadline = started + timeoutMs
        state = Mutex(State(partitions: partitions))
    }

    func entry(_ phase: TransactionPhase) -> TransactionEntry {
        TransactionEntry(id: id, producerId: producerId, producerEpoch: producerEpoch, phase: phase,
                         partitions: state.withLock { $0.partitions }, timeoutMs: deadline - started, started: started)
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
        let payloads = live.compactMap { txn in
            try? Array(JSONEncoder().encode(txn.entry(txn.state.withLock { $0.phase })))
        }
        try? journal.rewrite(payloads)
    }

    func updateGauges(now: Int64 = currentTimeMillis()) {
        let (count, oldest) = open.withLock { open in (open.count, open.values.map(\.started).min()) }
        metrics.gauge(MetricName.transactionsOpen).set(Double(count))
        metrics.gauge(MetricName.transactionOldestOpen).set(oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0)
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
        let entry = txn.entry(commit ? .completeCommit : .completeAbort)
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
    public func recoverTransactions() async throws {
        let unfinished = transactions.recovered.withLock { $0 }
        for entry in unfinished {
            let commit = entry.phase == .prepareCommit
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
            done.phase = commit ? .completeCommit : .completeAbort
            try await transactions.write(done, durably: true)
            transactions.ended(commit ? "recovered_committed" : "recovered_aborted")
            logger.notice(commit ? "transaction committed after a restart" : "open transaction aborted after a restart", metadata: [
                LogField.transactionId: .string(entry.id), LogField.transactionPartitions: .stringConvertible(entry.partitions.count),
            ])
        }
        transactions.recovered.withLock { $0 = [] }
        try transactions.journal.rewrite([])
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
