import Foundation
public import SluiceLog
import SluiceTelemetry

/// A topic as the API shows it, on either backend.
public struct TopicDescription: Sendable {
    public struct Partition: Sendable {
        public var partition: Int32
        public var logStartOffset: Int64
        public var logEndOffset: Int64
        /// Known for the embedded log only.
        public var sizeBytes: Int64?
        public var segments: Int?
        public var lastAppendTime: Int64?
    }

    public var name: String
    public var partitions: [Partition]
    /// Topic properties by Kafka name (embedded: every one; cluster: those Sluice set at creation).
    public var config: [String: String]

    public init(_ topic: Topic) {
        name = topic.name
        partitions = topic.partitions.map { log in
            Partition(partition: log.partition, logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset,
                      sizeBytes: log.sizeInBytes, segments: log.segments.count, lastAppendTime: log.lastAppendTime)
        }
        config = topic.config.properties
    }

    init(name: String, partitions: [Partition], config: [String: String]) {
        self.name = name
        self.partitions = partitions
        self.config = config
    }
}

extension Broker {
    /// Refuses what the cluster backend does not do (yet), saying what to use instead.
    public func requireEmbedded(_ what: String) throws(BrokerError) {
        guard let remote else { return }
        throw BrokerError(.notImplemented, "\(what) are not available with log.backend=kafka (\(remote.description)) yet; run them on an agent with log.backend=embedded")
    }

    /// Whether events are stored in a Kafka cluster (`log.backend=kafka`).
    public var isRemote: Bool { remote != nil }

    /// Creates a topic on either backend. `partitions` defaults to `num.partitions`; `config` takes topic properties.
    public func create(topic name: String, partitions: Int? = nil, config overrides: [String: String] = [:]) async throws(BrokerError) -> TopicDescription {
        guard let remote else { return TopicDescription(try createTopic(name, partitions: partitions, config: overrides)) }
        try TopicNameCheck.validate(name)
        try refuseInternal(name, "create")
        if remote.topics()[name] != nil { throw BrokerError(.conflict, "topic \(name) already exists in \(remote.description)") }
        try await remote.createTopic(name, partitions: partitions ?? config.int("num.partitions"), config: overrides)
        logger.info("topic created", metadata: [LogField.topic: .string(name), "log.backend": "kafka"])
        guard let created = try await describeTopic(name) else {
            throw BrokerError(.unavailable, "topic \(name) was created but \(remote.description) does not list it yet; retry GET /v1/topics/\(name)", retryAfter: 1)
        }
        return created
    }

    /// The topic with its partitions' offsets, on either backend; nil when there is no such topic.
    public func describeTopic(_ name: String) async throws(BrokerError) -> TopicDescription? {
        guard let remote else { return topic(name).map(TopicDescription.init) }
        guard let count = try await knownPartitionCount(remote, topic: name) else { return nil }
        var partitions: [TopicDescription.Partition] = []
        for partition in 0..<Int32(count) {
            let (start, end) = try await remote.offsets(topic: name, partition: partition)
            partitions.append(.init(partition: partition, logStartOffset: start, logEndOffset: end))
        }
        return TopicDescription(name: name, partitions: partitions, config: [:])
    }

    /// A cluster topic's partition count: as last seen, else as the cluster says now; nil when it has no such topic.
    func knownPartitionCount(_ remote: any RemoteLog, topic name: String) async throws(BrokerError) -> Int? {
        if let count = remote.topics()[name] { return count }
        return try await remote.refreshTopics()[name]
    }

    /// The partition count of a cluster topic, creating it (per `auto.create.topics.enable`) when it is missing.
    func remotePartitionCount(_ remote: any RemoteLog, topic name: String, create: Bool) async throws(BrokerError) -> Int {
        if create && config.bool("auto.create.topics.enable") {
            // Looks the topic up first, and creates it only when it is missing.
            return try await remote.ensureTopic(name, partitions: config.int("num.partitions"))
        }
        guard let count = try await knownPartitionCount(remote, topic: name) else {
            throw BrokerError(.notFound, "topic \(name) does not exist in \(remote.description)" + (create ? "; create it with POST /v1/topics (auto.create.topics.enable=false)" : ""))
        }
        return count
    }

    /// Makes sure a topic exists before it is subscribed to: created per `auto.create.topics.enable`, on either backend.
    /// A partition's log start and end offsets, on either backend (the cluster is asked now).
    public func partitionOffsets(_ tp: TopicPartition) async throws(BrokerError) -> (start: Int64, end: Int64) {
        if let remote { return try await remote.offsets(topic: tp.topic, partition: tp.partition) }
        let log = try partitionLog(tp)
        return (log.logStartOffset, log.logEndOffset)
    }

    public func ensure(topic name: String) async throws(BrokerError) {
        try TopicNameCheck.validate(name)
        if let remote {
            _ = try await remotePartitionCount(remote, topic: name, create: true)
        } else {
            _ = try state(for: name, create: true)
        }
    }

    /// ``appendDurably(topic:partitions:_:)`` on the cluster: the topic is made when missing, and each record is
    /// acknowledged by the cluster (acks=all: replicated) before the offsets are returned.
    func appendDurably(to remote: any RemoteLog, topic name: String, partitions: Int, _ records: [(partition: Int32, record: Record)]) async throws(BrokerError) -> [Int64] {
        let partitionCount = Int32(try await remote.ensureTopic(name, partitions: partitions))
        var perPartition: [Int32: [Int]] = [:]
        for (index, item) in records.enumerated() { perPartition[((item.partition % partitionCount) + partitionCount) % partitionCount, default: []].append(index) }
        var offsets = [Int64](repeating: -1, count: records.count)
        for (partition, indices) in perPartition.sorted(by: { $0.key < $1.key }) {
            guard let written = try await remote.append(topic: name, partition: partition, records: indices.map { records[$0].record }) else {
                throw BrokerError(.internal, "acks=0 cannot make \(name) durable: set acks=1 or all for dead letters")
            }
            for (slot, index) in indices.enumerated() { offsets[index] = written[slot] }
        }
        return offsets
    }

    /// Publishes to the cluster: the same partitioning as the embedded log (murmur2 for keyed events, one
    /// round-robin partition per request for the rest), the same records, acknowledged per `acks` by the
    /// cluster's producer (idempotent with `enable.idempotence`). `buffer.memory` bounds what waits for the cluster.
    func publish(to remote: any RemoteLog, topic name: String, events: [CloudEvent]) async throws(BrokerError) -> [PublishResult] {
        let partitionCount = try await remotePartitionCount(remote, topic: name, create: true)
        let now = currentTimeMillis()
        let sticky = Int32(remoteSticky.wrappingAdd(1, ordering: .relaxed).oldValue % partitionCount)
        var perPartition: [Int32: [Int]] = [:]
        var records: [Record] = []
        records.reserveCapacity(events.count)
        var results: [PublishResult] = []
        results.reserveCapacity(events.count)
        var bytes = 0
        for index in events.indices {
            let partition = events[index].partitionKey.map { Partitioner.partition(forKey: $0, partitions: partitionCount) } ?? sticky
            let record = events[index].record(timestamp: now)
            bytes += Self.recordOverhead + (record.key?.count ?? 0) + (record.value?.count ?? 0)
                + record.headers.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.count ?? 0) }
            records.append(record)
            perPartition[partition, default: []].append(index)
            results.append(PublishResult(id: events[index].id, topic: name, partition: partition, offset: nil, duplicate: false,
                                         correlationId: events[index].correlationId ?? ""))
        }
        guard buffer.reserve(bytes) else {
            metrics.producerBufferFull.increment()
            throw BrokerError(.tooManyRequests, "the producer buffer is full (buffer.memory=\(buffer.limit) bytes); retry after the Retry-After delay", retryAfter: 1)
        }
        metrics.producerBufferBytes.set(Double(buffer.bytes))
        defer {
            buffer.release(bytes)
            metrics.producerBufferBytes.set(Double(buffer.bytes))
        }
        throughput.record(topic: name, bytes: bytes, nowMillis: now)
        let parts = perPartition.sorted { $0.key < $1.key }
        let written = records
        let append: @Sendable ((key: Int32, value: [Int])) async -> Result<[Int64]?, BrokerError> = { part in
            do throws(BrokerError) {
                return .success(try await remote.append(topic: name, partition: part.key, records: part.value.map { written[$0] }))
            } catch {
                return .failure(error)
            }
        }
        // One partition (the usual case: a single event, or one key) is appended in place; several at once.
        var outcomes: [Result<[Int64]?, BrokerError>]
        if parts.count == 1 {
            outcomes = [await append(parts[0])]
        } else {
            outcomes = [Result<[Int64]?, BrokerError>](repeating: .failure(BrokerError(.internal, "the cluster's answer for a partition went missing")), count: parts.count)
            await withTaskGroup(of: (Int, Result<[Int64]?, BrokerError>).self) { group in
                for (position, part) in parts.enumerated() {
                    group.addTask { (position, await append(part)) }
                }
                for await (position, outcome) in group { outcomes[position] = outcome }
            }
        }
        for (position, part) in parts.enumerated() {
            switch outcomes[position] {
            case .success(let offsets):
                guard let offsets else { continue }
                for (slot, index) in part.value.enumerated() { results[index].offset = offsets[slot] }
            case .failure(let error):
                throw error
            }
        }
        return results
    }

    /// ``publishAtomic(_:)`` on a cluster: the same partitioning as a publish, written as one Kafka transaction.
    func publishAtomic(to remote: any RemoteLog, _ byTopic: [(topic: String, events: [CloudEvent])]) async throws(BrokerError) -> [PublishResult] {
        let now = currentTimeMillis()
        var records: [(topic: String, partition: Int32, record: Record)] = []
        var results: [PublishResult] = []
        for (name, events) in byTopic {
            try TopicNameCheck.validate(name)
            try refuseInternal(name, "publish to")
            let partitionCount = try await remotePartitionCount(remote, topic: name, create: true)
            let sticky = Int32(remoteSticky.wrappingAdd(1, ordering: .relaxed).oldValue % partitionCount)
            for event in events {
                let partition = event.partitionKey.map { Partitioner.partition(forKey: $0, partitions: partitionCount) } ?? sticky
                records.append((name, partition, event.record(timestamp: now)))
                results.append(PublishResult(id: event.id, topic: name, partition: partition, offset: nil, duplicate: false, correlationId: event.correlationId ?? ""))
            }
            throughput.record(topic: name, bytes: events.reduce(0) { $0 + ($1.data?.count ?? 0) }, nowMillis: now)
        }
        guard !records.isEmpty else { return [] }
        let offsets = try await remote.appendAtomically(records)
        for index in results.indices { results[index].offset = offsets[index] }
        return results
    }

    /// Reads one cluster partition (see ``fetch(topic:partition:offset:maxRecords:maxBytes:minBytes:maxWaitMs:isolation:)``):
    /// resets per `auto.offset.reset`, waits up to `maxWaitMs` for the first event.
    func fetch(from remote: any RemoteLog, topic name: String, partition: Int32, offset requested: Int64?, maxRecords: Int, maxBytes: Int,
               maxWaitMs: Int64) async throws(BrokerError) -> FetchResult {
        let count = try await remotePartitionCount(remote, topic: name, create: false)
        guard partition >= 0, Int(partition) < count else {
            throw BrokerError(.notFound, "topic \(name) has partitions 0...\(count - 1); \(partition) does not exist")
        }
        let offsets = try await remote.offsets(topic: name, partition: partition)
        let offset = try startingOffset(requested, start: offsets.start, end: offsets.end, topic: name, partition: partition)
        let read = try await remote.read(topic: name, partition: partition, from: offset, offsets: offsets, maxRecords: maxRecords, maxBytes: maxBytes,
                                         maxWaitMs: maxWaitMs)
        let events = read.records.map { record in
            FetchedEvent(topic: name, partition: partition, offset: record.offset, timestamp: record.timestamp, record: record, event: CloudEvent(record: record))
        }
        return FetchResult(events: events, nextOffset: read.nextOffset, logStartOffset: read.logStartOffset, logEndOffset: read.logEndOffset,
                           lastStableOffset: read.logEndOffset)
    }
}
