import Dispatch
import Foundation
public import Logging
public import SluiceLog
import SluiceSchema
public import SluiceTelemetry
import Synchronization

/// The outcome of publishing one event.
public struct PublishResult: Sendable, Hashable {
    public var id: String
    public var topic: String
    public var partition: Int32
    /// `nil` with acks=0, where the answer comes before the append.
    public var offset: Int64?
    public var duplicate: Bool
    public var correlationId: String
}

/// One event read back from a partition.
public struct FetchedEvent: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var timestamp: Int64
    public var record: Record
    /// `nil` for records that are not CloudEvents.
    public var event: CloudEvent?

    public init(topic: String, partition: Int32, offset: Int64, timestamp: Int64, record: Record, event: CloudEvent?) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.record = record
        self.event = event
    }
}

public struct FetchResult: Sendable {
    public var events: [FetchedEvent]
    public var nextOffset: Int64
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    /// The end of what read_committed readers see (the log end offset when no transaction is open).
    public var lastStableOffset: Int64
}

/// Events read from several partitions, and where each partition's read ended (past skipped control and aborted
/// batches too); a partition read without progress has no entry.
public struct FetchedEvents: Sendable {
    public var events: [FetchedEvent] = []
    public var next: [TopicPartition: Int64] = [:]
}

/// Topics and partitions over the log, with the producer path, routing and long-poll reads.
public final class Broker: Sendable {
    /// The embedded log. With a ``remote`` log it holds only Sluice's own local state.
    public let log: LogManager
    /// The Kafka cluster events are stored in (`log.backend=kafka`); nil for the embedded log.
    public let remote: (any RemoteLog)?
    public let config: SluiceConfig
    public let metrics: SluiceMetrics
    public let settings: ProducerSettings
    /// Producer ids for Kafka's InitProducerId.
    public let producerIds: ProducerIdAllocator
    /// Transactions (atomic publishes) and their journal.
    public let transactions: TransactionCoordinator
    /// Event schemas per type and version, checked on publish per `schema.validation`.
    public let schemas: SchemaRegistry
    let logger: Logger
    let buffer: ProducerBuffer
    let throughput = ThroughputTracker()
    private let topics = Mutex<[String: TopicState]>([:])
    /// Recently published events of every topic by source and id (`enable.idempotence`).
    let dedup: DedupIndex?
    private let topicRegistrations = Atomic<UInt32>(0)
    private let dedupFullSaid = Atomic<Bool>(false)
    /// Serialises topic creation, so that concurrent auto-creations of one topic all see it registered.
    private let creation = Mutex<Void>(())
    private let ready = Atomic<Bool>(false)
    /// Round-robin partition of unkeyed cluster publishes.
    let remoteSticky = Atomic<Int>(0)
    /// Set when shutdown begins: long polls answer with what they have instead of waiting out `wait_ms`.
    private let longPollsEnded = Atomic<Bool>(false)

    final class TopicState: Sendable {
        let topic: Topic
        let producers: [PartitionProducer]
        let notifiers: [AppendNotifier]
        /// The topic's registration in the idempotence index (a topic made again under the same name gets another).
        let dedupTopic: UInt32
        /// Finishes when the idempotence window has been reloaded from the log; publishes wait for it.
        let dedupLoaded: Task<Void, Never>?
        let sticky = Atomic<Int>(0)
        /// Idempotent Kafka producers' sequences, per partition.
        let sequences: [ProducerSequences]

        init(topic: Topic, producers: [PartitionProducer], notifiers: [AppendNotifier], dedupTopic: UInt32, dedupLoaded: Task<Void, Never>?,
             sequences: [ProducerSequences] = []) {
            self.topic = topic
            self.sequences = sequences + topic.partitions.dropFirst(sequences.count).map { _ in ProducerSequences() }
            self.producers = producers
            self.notifiers = notifiers
            self.dedupTopic = dedupTopic
            self.dedupLoaded = dedupLoaded
        }
    }

    /// Opens the log in the configured data directory (recovering it) and prepares every topic.
    public init(config: SluiceConfig, metrics: SluiceMetrics, logger: Logger, remote: (any RemoteLog)? = nil) throws {
        self.remote = remote
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.settings = ProducerSettings(config: config)
        self.buffer = ProducerBuffer(limit: settings.bufferMemory)
        self.dedup = remote == nil && settings.enableIdempotence ? DedupIndex(windowMs: settings.idempotenceWindowMs, maxEntries: settings.idempotenceWindowMaxEvents) : nil
        // Each listener may hold http.max.connections descriptors; 64 more for clients, the log file and stdio.
        let reserve = 2 * config.int("http.max.connections") + 64
        self.log = try LogManager.open(dataDirectory: config.dataDirectory, defaults: config.topicDefaults, reservedDescriptors: reserve)
        self.producerIds = try ProducerIdAllocator(directory: config.dataDirectory)
        self.transactions = try TransactionCoordinator(path: config.dataDirectory + "/transactions.journal", metrics: metrics)
        self.schemas = try SchemaRegistry(directory: config.string("schemas"), storeDirectory: config.dataDirectory + "/schemas",
                                          compatibility: SchemaCompatibility(rawValue: config.string("schema.compatibility")) ?? .none)
        for name in log.topicNames {
            if let topic = log.topic(name) { register(topic) }
        }
        publishConfigMetrics()
        if let dedup { metrics.addExposition(key: "idempotence") { Self.renderDedupMetrics(dedup) } }
    }

    @discardableResult
    private func register(_ topic: Topic) -> TopicState {
        let notifiers = topic.partitions.map { _ in AppendNotifier() }
        let producers = topic.partitions.enumerated().map { index, partition in
            PartitionProducer(topic: topic.name, log: partition, settings: settings, buffer: buffer, metrics: metrics, notifier: notifiers[index])
        }
        let dedupTopic = topicRegistrations.wrappingAdd(1, ordering: .relaxed).newValue
        var loaded: Task<Void, Never>?
        if let dedup, topic.partitions.contains(where: { $0.logEndOffset > $0.logStartOffset }) {
            // Reading the window back can take a while on a busy topic; it runs beside readiness, not before it.
            loaded = Task {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global(qos: .utility).async {
                        self.rebuildDedup(dedup, topic: topic, registration: dedupTopic)
                        continuation.resume()
                    }
                }
            }
        }
        let state = TopicState(topic: topic, producers: producers, notifiers: notifiers, dedupTopic: dedupTopic, dedupLoaded: loaded)
        topics.withLock { $0[topic.name] = state }
        metrics.topicCreated(topic.name, partitions: topic.partitions.count)
        for partition in topic.partitions { publishPartitionMetrics(partition) }
        return state
    }

    /// The idempotence window's size, evictions and reach, computed at each scrape.
    private static func renderDedupMetrics(_ dedup: DedupIndex) -> [UInt8] {
        let usage = dedup.usage
        var writer = ExpositionWriter(capacity: 1024)
        writer.header(MetricName.idempotenceWindowEvents, type: "gauge")
        writer.sample(MetricName.idempotenceWindowEvents, [], Double(usage.entries))
        writer.header(MetricName.idempotenceEvictions, type: "counter")
        writer.sample(MetricName.idempotenceEvictions, [], Double(usage.evicted))
        writer.header(MetricName.idempotenceWindowCovered, type: "gauge")
        writer.sample(MetricName.idempotenceWindowCovered, [], Double(dedup.covered(now: currentTimeMillis())) / 1000)
        return writer.bytes
    }

    /// Says once in the log that the idempotence window is full.
    private func warnDedupFull(_ dedup: DedupIndex, now: Int64) {
        guard !dedupFullSaid.exchange(true, ordering: .relaxed) else { return }
        logger.warning("""
            the idempotence window is full: it remembers \(dedup.maxEntries) events (idempotence.window.max.events), so older \
            ones are forgotten before idempotence.window.ms passes and a re-send of one is written again; it now reaches \
            \(dedup.covered(now: now) / 1000) s back (sluice_producer_idempotence_window_covered_seconds). Raise \
            idempotence.window.max.events (about 100 bytes of memory per event) to remember more
            """)
    }

    /// Reloads the recent `source`+`id` pairs from the log (found through the time index), so idempotence
    /// holds across restarts within the window.
    /// When the window holds more than `idempotence.window.max.events`, reading starts at the time from which the
    /// partitions hold that many (found in the time indexes), so that what is read back is the newest events.
    private func rebuildDedup(_ dedup: DedupIndex, topic: Topic, registration: UInt32) {
        let now = currentTimeMillis()
        func recordsSince(_ time: Int64) -> Int64 {
            topic.partitions.reduce(0) { sum, partition in
                sum + ((try? partition.offset(forTimestamp: time)).map { partition.logEndOffset - $0 } ?? 0)
            }
        }
        var from = now - settings.idempotenceWindowMs
        if recordsSince(from) > Int64(dedup.maxEntries) {
            var (tooMany, few) = (from, now + 1)
            while few - tooMany > 1 {
                let middle = tooMany + (few - tooMany) / 2
                if recordsSince(middle) > Int64(dedup.maxEntries) { tooMany = middle } else { few = middle }
            }
            from = few
        }
        for partition in topic.partitions {
            guard let start = try? partition.offset(forTimestamp: from) else { continue }
            var offset = start
            while offset < partition.logEndOffset, let records = try? partition.readRecords(from: offset, maxRecords: 10_000), let last = records.last {
                for record in records {
                    guard let event = CloudEvent(record: record) else { continue }
                    _ = dedup.claim(DedupIndex.Key(topic: registration, source: event.source, id: event.id), partition: partition.partition,
                                    location: .written(record.offset), now: record.timestamp)
                }
                offset = last.offset + 1
            }
        }
    }

    func publishPartitionMetrics(_ partition: PartitionLog) {
        metrics.partitionChanged(topic: partition.topic, partition: partition.partition, startOffset: partition.logStartOffset,
                                 endOffset: partition.logEndOffset, lastStableOffset: partition.lastStableOffset, sizeBytes: partition.sizeInBytes, lastAppendMillis: partition.lastAppendTime)
    }

    private func publishConfigMetrics() {
        metrics.gauge(MetricName.producerConfigInfo, config.string("acks"), config.string("compression.type"), config.string("enable.idempotence")).set(Double(1))
        metrics.gauge(MetricName.consumerConfigInfo, config.string("auto.offset.reset"), config.string("enable.auto.commit")).set(Double(1))
        for gauge in Self.numericGauges {
            var value = Double(config.integer(gauge.property))
            if gauge.millisecondsToSeconds { value /= 1000 }
            metrics.registry.makeGauge(descriptor: .sluice(gauge.metric, gauge.help)).set(value)
        }
    }

    /// One gauge per numeric knob, in base units. The names are part of the metrics contract.
    public static let numericGauges: [(metric: String, property: String, millisecondsToSeconds: Bool, help: String)] = [
        ("sluice_producer_linger_seconds", "linger.ms", true, "linger.ms in seconds."),
        ("sluice_producer_batch_size_bytes", "batch.size", false, "batch.size in bytes."),
        ("sluice_producer_compression_level", "compression.level", false, "compression.level of the codec (gzip, lz4, zstd)."),
        ("sluice_producer_buffer_memory_bytes", "buffer.memory", false, "buffer.memory in bytes."),
        ("sluice_producer_max_in_flight", "max.in.flight.requests.per.connection", false, "max.in.flight.requests.per.connection."),
        ("sluice_producer_max_request_size_bytes", "max.request.size", false, "max.request.size in bytes."),
        ("sluice_producer_idempotence_window_seconds", "idempotence.window.ms", true, "idempotence.window.ms in seconds."),
        ("sluice_producer_idempotence_window_max_events", "idempotence.window.max.events", false, "idempotence.window.max.events."),
        ("sluice_consumer_fetch_min_bytes", "fetch.min.bytes", false, "fetch.min.bytes."),
        ("sluice_consumer_fetch_max_wait_seconds", "fetch.max.wait.ms", true, "fetch.max.wait.ms in seconds."),
        ("sluice_consumer_max_partition_fetch_bytes", "max.partition.fetch.bytes", false, "max.partition.fetch.bytes."),
        ("sluice_consumer_max_poll_records", "max.poll.records", false, "max.poll.records."),
        ("sluice_consumer_session_timeout_seconds", "session.timeout.ms", true, "session.timeout.ms in seconds."),
        ("sluice_consumer_heartbeat_interval_seconds", "heartbeat.interval.ms", true, "heartbeat.interval.ms in seconds."),
        ("sluice_topic_default_partitions", "num.partitions", false, "num.partitions for new topics."),
        ("sluice_topic_default_retention_seconds", "retention.ms", true, "Default retention.ms in seconds (-0.001 = forever)."),
        ("sluice_topic_default_retention_bytes", "retention.bytes", false, "Default retention.bytes (-1 = no limit)."),
        ("sluice_topic_default_segment_bytes", "segment.bytes", false, "Default segment.bytes."),
    ]

    /// Mean bytes per second produced to `topic` over the last minute and the last five minutes.
    public func produceRates(topic: String) -> (oneMinute: Double, fiveMinutes: Double) {
        throughput.rates(topic: topic)
    }

    // MARK: - Readiness and lifecycle

    /// Set once the log is recovered and the listeners are bound.
    public var isReady: Bool { ready.load(ordering: .acquiring) && remote?.isReachable != false }
    public func markReady() { ready.store(true, ordering: .releasing) }

    /// Ends every long poll now and every later one at once: each answers with what it has read so far.
    /// Called when shutdown begins, so that in-flight reads (which may wait up to 300 s) do not hold it up.
    public func endLongPolls() {
        longPollsEnded.store(true, ordering: .releasing)
        for state in topics.withLock({ Array($0.values) }) {
            for notifier in state.notifiers { notifier.notify() }
        }
    }

    /// A read stops waiting at its deadline, when shutdown began, or when its task is cancelled (a cancelled
    /// task's waits return at once, so the loop must not go round again).
    func waitIsOver(_ deadline: UInt64) -> Bool {
        DispatchTime.now().uptimeNanoseconds >= deadline || longPollsEnded.load(ordering: .acquiring) || Task.isCancelled
    }

    /// Writes everything accepted, then closes the log cleanly (writing the clean-shutdown marker).
    public func shutdown() async throws {
        ready.store(false, ordering: .releasing)
        let states = topics.withLock { Array($0.values) }
        for state in states {
            for producer in state.producers { await producer.close() }
        }
        await remote?.close()
        try await log.close()
    }

    /// Runs retention and interval flushes until cancelled, refreshing partition gauges after retention.
    public func runMaintenance() async {
        let interval = config.integer("retention.check.interval.ms")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.log.runMaintenance(retentionCheckInterval: interval) }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await self.expireTransactions()
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(interval))
                    for state in self.topics.withLock({ Array($0.values) }) {
                        for partition in state.topic.partitions { self.publishPartitionMetrics(partition) }
                    }
                }
            }
        }
    }

    // MARK: - Topics

    public var topicNames: [String] {
        if let remote { return remote.topics().keys.sorted() }
        return topics.withLock { $0.keys.sorted() }
    }

    /// The number of partitions of a topic, on either backend; nil when there is no such topic.
    public func partitionCount(_ name: String) -> Int? {
        if let remote { return remote.topics()[name] }
        return topics.withLock { $0[name]?.producers.count }
    }

    public func topic(_ name: String) -> Topic? { topics.withLock { $0[name]?.topic } }

    /// Creates a topic. `partitions` defaults to `num.partitions`; `config` takes topic properties.
    @discardableResult
    public func createTopic(_ name: String, partitions: Int? = nil, config overrides: [String: String] = [:]) throws(BrokerError) -> Topic {
        try requireEmbedded("creating topics this way")
        let result: Result<Topic, BrokerError> = creation.withLock { _ in
            do {
                let topic = try log.createTopic(name, partitions: partitions ?? config.int("num.partitions"), config: overrides)
                register(topic)
                return .success(topic)
            } catch {
                return .failure(BrokerError(error))
            }
        }
        let topic = try result.get()
        logger.info("topic created", metadata: [LogField.topic: .string(name), "partitions": .stringConvertible(topic.partitions.count)])
        return topic
    }

    /// Refuses client writes and changes to topics only Sluice writes (``OffsetsTopic``).
    func refuseInternal(_ name: String, _ what: String) throws(BrokerError) {
        guard OffsetsTopic.isInternal(name) else { return }
        throw BrokerError.badRequest("topic \(name) is internal: Sluice writes it (every committed offset) and clients only read it, so \(what) another topic", attribute: "topic")
    }

    /// Grows a topic to `count` partitions. Existing partitions keep their producers, waiters and sequences; keys
    /// hash over the new count from now on (as in Kafka).
    @discardableResult
    public func addPartitions(_ name: String, count: Int) throws(BrokerError) -> Topic {
        try refuseInternal(name, "add partitions to")
        try requireEmbedded("adding partitions through Sluice (use the cluster's own tools, e.g. kafka-topics --alter)")
        let result: Result<Topic, BrokerError> = creation.withLock { _ in
            guard let old = topics.withLock({ $0[name] }) else { return .failure(BrokerError(.notFound, "topic \(name) does not exist")) }
            do {
                let topic = try log.addPartitions(name, count: count)
                let added = topic.partitions.dropFirst(old.producers.count)
                let notifiers = old.notifiers + added.map { _ in AppendNotifier() }
                let producers = old.producers + added.map { partition in
                    PartitionProducer(topic: name, log: partition, settings: settings, buffer: buffer, metrics: metrics,
                                      notifier: notifiers[Int(partition.partition)])
                }
                let state = TopicState(topic: topic, producers: producers, notifiers: notifiers, dedupTopic: old.dedupTopic,
                                       dedupLoaded: old.dedupLoaded, sequences: old.sequences)
                topics.withLock { $0[name] = state }
                metrics.topicCreated(name, partitions: topic.partitions.count)
                for partition in added { publishPartitionMetrics(partition) }
                return .success(topic)
            } catch {
                return .failure(BrokerError(error))
            }
        }
        let topic = try result.get()
        logger.info("partitions added", metadata: [LogField.topic: .string(name), "partitions": .stringConvertible(topic.partitions.count)])
        return topic
    }

    public func deleteTopic(_ name: String) async throws(BrokerError) {
        try refuseInternal(name, "delete")
        if let remote {
            try await remote.deleteTopic(name)
            throughput.remove(topic: name)
            logger.info("topic deleted", metadata: [LogField.topic: .string(name), "log.backend": "kafka"])
            return
        }
        guard let state = topics.withLock({ $0.removeValue(forKey: name) }) else {
            throw BrokerError(.notFound, "topic \(name) does not exist")
        }
        for producer in state.producers { await producer.close() }
        do {
            try await log.deleteTopic(name)
        } catch {
            throw BrokerError(error)
        }
        metrics.topicDeleted(name, partitions: state.producers.count)
        throughput.remove(topic: name)
        logger.info("topic deleted", metadata: [LogField.topic: .string(name)])
    }

    func state(for name: String, create: Bool) throws(BrokerError) -> TopicState {
        if let state = topics.withLock({ $0[name] }) { return state }
        if create, OffsetsTopic.isInternal(name) {
            do {
                // A view of the offsets file, rewritten from it at start: no fsync of its own.
                _ = try createTopic(name, partitions: 1, config: ["flush.policy": "os"])
            } catch where error.kind == .conflict {
                // Created concurrently.
            }
            guard let state = topics.withLock({ $0[name] }) else { throw BrokerError(.notFound, "topic \(name) does not exist") }
            return state
        }
        guard create, config.bool("auto.create.topics.enable") else {
            throw BrokerError(.notFound, "topic \(name) does not exist" + (create ? "; create it with POST /v1/topics (auto.create.topics.enable=false)" : ""))
        }
        do {
            _ = try createTopic(name)
        } catch where error.kind == .conflict {
            // Created concurrently by another request.
        }
        guard let state = topics.withLock({ $0[name] }) else { throw BrokerError(.notFound, "topic \(name) does not exist") }
        return state
    }

    /// The topic for an event type: the first matching route, else `default.topic`.
    public func route(eventType: String) -> String {
        config.routes.first { $0.matches(eventType) }?.topic ?? config.string("default.topic")
    }

    // MARK: - Publish

    /// Refuses early, before a body is read and parsed, when `buffer.memory` cannot take `bytes` more.
    public func checkBufferRoom(for bytes: Int) throws(BrokerError) {
        if buffer.bytes + bytes > buffer.limit {
            metrics.producerBufferFull.increment()
            throw BrokerError(.tooManyRequests, "the producer buffer is full (buffer.memory=\(buffer.limit) bytes); retry after the Retry-After delay", retryAfter: 1)
        }
    }

    /// Publishes events to `topic`, acknowledging per `acks`.
    ///
    /// Keyed events (`partitionkey`) go to Kafka's murmur2 partition for the key; unkeyed events of one request
    /// go together to one partition, chosen round-robin per request (sticky batching). With idempotence on,
    /// an event whose `source`+`id` was published within the window is not written again: its original
    /// partition and offset are returned with `duplicate: true`.
    public func publish(topic name: String, events: [CloudEvent]) async throws(BrokerError) -> [PublishResult] {
        try TopicNameCheck.validate(name)
        try refuseInternal(name, "publish to")
        if let remote { return try await publish(to: remote, topic: name, events: events) }
        let state = try state(for: name, create: true)
        await state.dedupLoaded?.value
        let now = currentTimeMillis()
        let partitionCount = state.producers.count
        let stickyPartition = Int32(state.sticky.wrappingAdd(1, ordering: .relaxed).oldValue % partitionCount)

        // Decide each event's partition and whether it is a duplicate, and write its record. With idempotence, a
        // re-sent event waits for the original's offset: the dedup index points at the original's ticket slot.
        struct PartitionWork {
            let ticket = PublishTicket()
            var tails: RecordTails
            init(capacity: Int) { tails = RecordTails(capacity: capacity) }
            /// Per record: the event's index in the request and where its tail ends in `tails`.
            var records: [(index: Int, end: Int)] = []
        }
        // Per partition number (a topic has few): an array, not a dictionary hashed several times per event.
        var work = [PartitionWork?](repeating: nil, count: partitionCount)
        var results: [PublishResult] = []
        results.reserveCapacity(events.count)
        var duplicates: [(index: Int, earlier: DedupIndex.Location)] = []
        var claims: [(key: DedupIndex.Key, partition: Int32)] = []
        var partitions: [Int32] = []
        partitions.reserveCapacity(events.count)
        // Events are read in place (events[index]), never copied: a copy retains each of their strings.
        for index in events.indices {
            let partition = events[index].partitionKey.map { Partitioner.partition(forKey: $0, partitions: partitionCount) } ?? stickyPartition
            partitions.append(partition)
            if work[Int(partition)] == nil { work[Int(partition)] = PartitionWork(capacity: events.count * 1200 / max(partitionCount, 1)) }
            if dedup != nil { claims.append((DedupIndex.Key(topic: state.dedupTopic, source: events[index].source, id: events[index].id), partition)) }
        }
        // All of the request's claims under one lock; each event's slot is its place among its partition's records.
        let earlier = dedup?.claim(claims, tickets: work.map { $0?.ticket }, now: now)
        for index in events.indices {
            let partition = partitions[index]
            let correlation = events[index].correlationId ?? ""
            if let earlier = earlier?[index] {
                results.append(PublishResult(id: events[index].id, topic: name, partition: earlier.partition, offset: nil, duplicate: true, correlationId: correlation))
                duplicates.append((index, earlier.location))
                continue
            }
            events[index].writeRecordTail(into: &work[Int(partition)]!.tails)
            work[Int(partition)]!.records.append((index, work[Int(partition)]!.tails.count))
            results.append(PublishResult(id: events[index].id, topic: name, partition: partition, offset: nil, duplicate: false, correlationId: correlation))
        }
        if let dedup, dedup.hasEvicted { warnDedupFull(dedup, now: now) }
        let parts = work.enumerated().compactMap { number, part in part.flatMap { $0.records.isEmpty ? nil : (partition: Int32(number), part: $0) } }
        var totalBytes = 0
        var batches: [(partition: Int32, ticket: PublishTicket, records: [(record: EncodedRecord, size: Int, slot: Int)])] = []
        for (partition, part) in parts {
            let bytes = part.tails.bytes
            var start = 0
            var records: [(record: EncodedRecord, size: Int, slot: Int)] = []
            records.reserveCapacity(part.records.count)
            for (slot, (_, end)) in part.records.enumerated() {
                let size = Self.recordOverhead + end - start
                records.append((EncodedRecord(timestamp: now, tail: bytes[start..<end]), size, slot))
                totalBytes += size
                start = end
            }
            part.ticket.claimSlots(records.count)
            part.ticket.expectClaimed()
            batches.append((partition, part.ticket, records))
        }

        func giveUp(_ error: BrokerError) -> BrokerError {
            for (number, part) in work.enumerated() {
                guard let part else { continue }
                part.ticket.fail(error)
                dedup?.release(claims.filter { $0.partition == Int32(number) }.map(\.key), ticket: part.ticket)
            }
            return error
        }
        guard buffer.reserve(totalBytes) else {
            metrics.producerBufferFull.increment()
            throw giveUp(BrokerError(.tooManyRequests, "the producer buffer is full (buffer.memory=\(buffer.limit) bytes); retry after the Retry-After delay", retryAfter: 1))
        }
        metrics.producerBufferBytes.set(Double(buffer.bytes))
        throughput.record(topic: name, bytes: totalBytes, nowMillis: now)

        for (position, batch) in batches.enumerated() {
            do {
                try state.producers[Int(batch.partition)].submit(batch.records, ticket: batch.ticket)
            } catch {
                // What went to earlier partitions stays; this and later ones are refused.
                buffer.release(batches[position...].reduce(0) { $0 + $1.records.reduce(0) { $0 + $1.size } })
                for later in batches[position...] {
                    later.ticket.fail(error)
                    dedup?.release(claims.filter { $0.partition == later.partition }.map(\.key), ticket: later.ticket)
                }
                throw error
            }
        }

        if settings.acks == .none { return results }

        var durableTargets: [Int32: Int64] = [:]
        for (partition, part) in parts {
            switch await part.ticket.value() {
            case .success(let offsets):
                for (slot, record) in part.records.enumerated() { results[record.index].offset = offsets[slot] }
                if let last = offsets.last { durableTargets[partition] = max(durableTargets[partition] ?? 0, last + 1) }
            case .failure(let error):
                throw error
            }
        }
        for (index, earlier) in duplicates {
            let offset: Int64?
            switch earlier {
            case .written(let written): offset = written
            case .pending(let ticket, let slot): offset = (try? await ticket.value().get())?[slot]
            }
            if let offset {
                results[index].offset = offset
                durableTargets[results[index].partition] = max(durableTargets[results[index].partition] ?? 0, offset + 1)
            }
        }
        if settings.acks == .all {
            for (partition, target) in durableTargets {
                do {
                    try await state.topic.partitions[Int(partition)].waitUntilDurable(target)
                } catch {
                    throw BrokerError(error)
                }
            }
        }
        return results
    }

    /// Appends records as they are — no CloudEvent mapping, no deduplication — each to the partition given
    /// (modulo the topic's partition count), creating the topic with `partitions` when it is missing, and returns
    /// their offsets once they are fsynced. Used for dead letters, which must be durable before the original
    /// event's offset is committed.
    public func appendDurably(topic name: String, partitions: Int, _ records: [(partition: Int32, record: Record)]) async throws(BrokerError) -> [Int64] {
        try TopicNameCheck.validate(name)
        try refuseInternal(name, "write to")
        if let remote { return try await appendDurably(to: remote, topic: name, partitions: partitions, records) }
        if topics.withLock({ $0[name] }) == nil {
            do {
                _ = try createTopic(name, partitions: partitions)
            } catch where error.kind == .conflict {
                // Created concurrently.
            }
        }
        let state = try state(for: name, create: false)
        let count = Int32(state.producers.count)
        var perPartition: [Int32: (ticket: PublishTicket, records: [(record: EncodedRecord, size: Int, slot: Int)], indices: [Int])] = [:]
        var total = 0
        for (index, item) in records.enumerated() {
            let partition = ((item.partition % count) + count) % count
            let encoded = EncodedRecord(item.record)
            let size = Self.recordOverhead + encoded.tail.count
            total += size
            if perPartition[partition] == nil { perPartition[partition] = (PublishTicket(), [], []) }
            let slot = perPartition[partition]!.ticket.claimSlot()
            perPartition[partition]!.records.append((encoded, size, slot))
            perPartition[partition]!.indices.append(index)
        }
        // Dead letters are not refused under backpressure: they carry events already accepted.
        buffer.forceReserve(total)
        var offsets = [Int64](repeating: -1, count: records.count)
        for (partition, part) in perPartition.sorted(by: { $0.key < $1.key }) {
            part.ticket.expectClaimed()
            do {
                try state.producers[Int(partition)].submit(part.records, ticket: part.ticket)
            } catch {
                buffer.release(part.records.reduce(0) { $0 + $1.size })
                throw error
            }
        }
        for (partition, part) in perPartition {
            switch await part.ticket.value() {
            case .success(let written):
                for (slot, index) in part.indices.enumerated() { offsets[index] = written[slot] }
                do {
                    try await state.topic.partitions[Int(partition)].waitUntilDurable((written.last ?? -1) + 1)
                } catch {
                    throw BrokerError(error)
                }
            case .failure(let error):
                throw error
            }
        }
        return offsets
    }

    /// What a record costs in the producer's buffer and batch beyond its key, value and headers (length, attributes,
    /// deltas, and the batch's share): the size used for `buffer.memory` and `batch.size`.
    static let recordOverhead = 16

    // MARK: - Read

    /// Reads events from a partition starting at `offset` (or per `auto.offset.reset` when `nil`), waiting up
    /// to `maxWaitMs` for at least `minBytes` of data.
    ///
    /// Under read_committed (`isolation`, else `isolation.level`) the read stops at the last stable offset and
    /// skips aborted transactions; control batches are never events. `nextOffset` is past everything skipped.
    public func fetch(topic name: String, partition: Int32, offset requested: Int64?, maxRecords: Int, maxBytes: Int,
                      minBytes: Int, maxWaitMs: Int64, isolation: IsolationLevel? = nil) async throws(BrokerError) -> FetchResult {
        if let remote {
            return try await fetch(from: remote, topic: name, partition: partition, offset: requested, maxRecords: maxRecords, maxBytes: maxBytes, maxWaitMs: maxWaitMs)
        }
        let isolation = isolation ?? self.isolation
        let state = try state(for: name, create: false)
        guard partition >= 0, Int(partition) < state.producers.count else {
            throw BrokerError(.notFound, "topic \(name) has partitions 0...\(state.producers.count - 1); \(partition) does not exist")
        }
        let log = state.topic.partitions[Int(partition)]
        let notifier = state.notifiers[Int(partition)]
        let offset = try startingOffset(requested, start: log.logStartOffset, end: log.logEndOffset, topic: name, partition: partition)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(maxWaitMs, 0)) * 1_000_000
        while true {
            let generation = notifier.generation
            let visibleEnd = log.visibleEnd(isolation)
            var batches: [FetchedBatch] = []
            do {
                if offset < visibleEnd { batches = try log.read(from: offset, maxBytes: maxBytes).filter { $0.header.baseOffset < visibleEnd } }
            } catch {
                throw BrokerError(error)
            }
            let bytes = batches.reduce(0) { $0 + $1.bytes.count }
            if bytes >= minBytes || waitIsOver(deadline) {
                let (events, next) = try Self.decode(batches, log: log, from: offset, maxRecords: maxRecords, isolation: isolation)
                return FetchResult(events: events, nextOffset: next, logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset,
                                   lastStableOffset: log.lastStableOffset)
            }
            await Self.waitForAppend(on: [(notifier, generation)], until: deadline)
        }
    }

    /// Reads up to `maxRecords` events from several partitions, each from its own offset, taking the partitions
    /// in the order given and waiting up to `maxWaitMs` for the first event when none is there yet. Offsets
    /// must lie within each partition's range (the caller resolves resets).
    /// Isolation as in ``fetch(topic:partition:offset:maxRecords:maxBytes:minBytes:maxWaitMs:isolation:)``;
    /// `next` has each partition's position after the read, past skipped control and aborted batches.
    public func fetch(_ positions: [(TopicPartition, Int64)], maxRecords: Int, maxBytesPerPartition: Int,
                      maxWaitMs: Int64, isolation: IsolationLevel? = nil) async throws(BrokerError) -> FetchedEvents {
        try requireEmbedded("consumer groups, push subscriptions and sagas")
        let isolation = isolation ?? self.isolation
        var sources: [(log: PartitionLog, notifier: AppendNotifier, offset: Int64)] = []
        for (tp, offset) in positions {
            let state = try state(for: tp.topic, create: false)
            guard tp.partition >= 0, Int(tp.partition) < state.producers.count else {
                throw BrokerError(.notFound, "topic \(tp.topic) has no partition \(tp.partition)")
            }
            sources.append((state.topic.partitions[Int(tp.partition)], state.notifiers[Int(tp.partition)], offset))
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(maxWaitMs, 0)) * 1_000_000
        while true {
            let generations = sources.map { ($0.notifier, $0.notifier.generation) }
            var result = FetchedEvents()
            for source in sources where result.events.count < maxRecords {
                let visibleEnd = source.log.visibleEnd(isolation)
                guard source.offset < visibleEnd else { continue }
                do {
                    let batches = try source.log.read(from: source.offset, maxBytes: maxBytesPerPartition).filter { $0.header.baseOffset < visibleEnd }
                    let (events, next) = try Self.decode(batches, log: source.log, from: source.offset, maxRecords: maxRecords - result.events.count, isolation: isolation)
                    result.events += events
                    if next > source.offset { result.next[TopicPartition(source.log.topic, source.log.partition)] = next }
                } catch let error as BrokerError {
                    throw error
                } catch {
                    throw BrokerError(error)
                }
            }
            if !result.events.isEmpty || sources.isEmpty || waitIsOver(deadline) { return result }
            await Self.waitForAppend(on: generations, until: deadline)
        }
    }

    /// The events of `batches` from `offset` on, at most `maxRecords`, without control batches and (under
    /// read_committed) aborted ones; and the offset to read next.
    static func decode(_ batches: [FetchedBatch], log: PartitionLog, from offset: Int64, maxRecords: Int,
                       isolation: IsolationLevel) throws(BrokerError) -> (events: [FetchedEvent], next: Int64) {
        var events: [FetchedEvent] = []
        var next = offset
        do {
            for batch in batches {
                if log.isHidden(batch.header, isolation: isolation) {
                    next = max(next, batch.header.nextOffset)
                    continue
                }
                for record in try batch.records() where record.offset >= offset {
                    events.append(FetchedEvent(topic: log.topic, partition: log.partition, offset: record.offset, timestamp: record.timestamp, record: record,
                                               event: CloudEvent(record: record)))
                    next = record.offset + 1
                    if events.count == maxRecords { return (events, next) }
                }
                next = max(next, batch.header.nextOffset)
            }
        } catch {
            throw BrokerError(error)
        }
        return (events, next)
    }

    /// Where a read of a partition with offsets `start..<end` begins: the offset asked for, or per
    /// `auto.offset.reset` when none was asked for (or, with `earliest`, when retention passed it).
    func startingOffset(_ requested: Int64?, start: Int64, end: Int64, topic name: String, partition: Int32) throws(BrokerError) -> Int64 {
        let reset = config.string("auto.offset.reset")
        guard let requested else {
            switch reset {
            case "earliest": return start
            case "latest": return end
            default: throw BrokerError.badRequest("offset is required (auto.offset.reset=none)", attribute: "offset")
            }
        }
        if requested < start && reset == "earliest" { return start }
        guard requested >= start && requested <= end else {
            throw BrokerError(.notFound, "offset \(requested) is outside \(name)/\(partition)'s range \(start)...\(end)")
        }
        return requested
    }

    /// The configured `isolation.level`.
    public var isolation: IsolationLevel { IsolationLevel(rawValue: config.string("isolation.level")) ?? .readCommitted }

    /// Returns when any of the partitions gets an append after the generation seen, or at the deadline.
    static func waitForAppend(on notifiers: [(AppendNotifier, UInt64)], until deadline: UInt64) async {
        let now = DispatchTime.now().uptimeNanoseconds
        guard deadline > now else { return }
        await withTaskGroup(of: Void.self) { group in
            for (notifier, generation) in notifiers { group.addTask { await notifier.wait(after: generation) } }
            group.addTask { try? await Task.sleep(nanoseconds: deadline - now) }
            await group.next()
            group.cancelAll()
        }
    }

    /// The topic and partition log, or a not-found error naming what exists.
    public func partitionLog(_ tp: TopicPartition) throws(BrokerError) -> PartitionLog {
        let state = try state(for: tp.topic, create: false)
        guard tp.partition >= 0, Int(tp.partition) < state.producers.count else {
            throw BrokerError(.notFound, "topic \(tp.topic) has partitions 0...\(state.producers.count - 1); \(tp.partition) does not exist")
        }
        return state.topic.partitions[Int(tp.partition)]
    }

    /// Creates the topic when it is missing and auto-creation is on; otherwise a not-found error.
    public func ensureTopic(_ name: String) throws(BrokerError) -> Topic {
        try TopicNameCheck.validate(name)
        return try state(for: name, create: true).topic
    }
}

/// Topic-name validation as a broker error.
enum TopicNameCheck {
    static func validate(_ name: String) throws(BrokerError) {
        do {
            try TopicName.validate(name)
        } catch {
            throw BrokerError(.badRequest, error.logMessageText, attribute: "topic")
        }
    }
}

extension Error {
    var logMessageText: String { (self as? LogError)?.message ?? "\(self)" }
}
