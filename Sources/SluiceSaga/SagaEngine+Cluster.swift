import Foundation
import Logging
public import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// Sagas on a cluster (`log.backend=kafka`), shared by every agent with the same saga definitions.
///
/// The saga topic has several partitions; a saga lives in the partition its key hashes to, and exactly one agent
/// drives it: the member of the owners' group (`__sluice_sagas.owners`) that the cluster gave that partition. Every
/// input of a saga goes through its partition, in order:
/// - events of the watched topics are read once by the agents together (the reader group, `__sluice_sagas`,
///   splits the topics' partitions) and forwarded, durably, to the partitions of the sagas they concern;
/// - a start asked of any agent's API is appended there as a request, and answered there by the owner.
/// The owner consumes its partitions (skipping the states it writes there), records the new states in them, sends
/// the commands, then commits its position. When a partition moves (an agent stops or dies), the new owner reads
/// the partition's states back, re-sends the commands they wait on with the same ids, and goes on from the last
/// committed position; inputs read twice are harmless (a reply a saga does not wait for is ignored, a start of an
/// existing id returns it).
extension SagaEngine {
    /// The group whose members own the saga topic's partitions.
    public static let ownersGroup = "__sluice_sagas.owners"
    /// Headers of the records a cluster keeps in the saga topic besides states.
    static let inputHeader = "sluice.saga.input"
    static let inputTopicHeader = "sluice.saga.input.topic"
    static let requestHeader = "sluice.saga.request"
    static let answerHeader = "sluice.saga.answer"
    /// How long a start through the API waits for the owner's answer.
    static let answerWait: Duration = .seconds(15)

    /// The saga topic's partition of a saga key.
    static func partition(of key: String, partitions: Int) -> Int32 {
        partitions <= 1 ? 0 : Partitioner.partition(forKey: key, partitions: partitions)
    }

    static func header(_ record: Record, _ name: String) -> String? {
        record.headers.first { $0.key == name }.flatMap { $0.value.map { String(decoding: $0, as: UTF8.self) } }
    }

    // MARK: - Running

    /// Learns the saga topic's partitions (making the topic when missing); false when cancelled first. An agent
    /// without saga definitions takes no part: it owns no partition and reads nothing.
    func prepareOnCluster() async -> Bool {
        guard !catalog.isEmpty else {
            state.withLock { state in
                state.owned = []
                state.loaded = true
            }
            return true
        }
        var partitions: Int?
        while partitions == nil && !Task.isCancelled {
            do {
                try await broker.ensure(topic: Self.stateTopic)
                partitions = broker.partitionCount(Self.stateTopic)
            } catch {
                logger.error("the saga topic \(Self.stateTopic) cannot be made or found in the cluster; retrying in 1 s: \(error.message)",
                             metadata: [LogField.topic: .string(Self.stateTopic)])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        guard let partitions else { return false }
        state.withLock { state in
            state.statePartitions = partitions
            state.owned = []
            state.loaded = true
        }
        logger.info("sagas run on the cluster", metadata: [LogField.topic: .string(Self.stateTopic), "partitions": .stringConvertible(partitions)])
        return true
    }

    /// Owns partitions and forwards events until cancelled.
    func runOnCluster() async {
        guard !catalog.isEmpty else { return }
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await Correlation.$current.withValue(nil) { await self.own() } }
            if !watchedTopics.isEmpty { tasks.addTask { await Correlation.$current.withValue(nil) { await self.forward() } } }
        }
    }

    /// Member of the owners' group: takes and gives up partitions as the cluster says, and hands what its
    /// partitions bring to the loop, committing its position once the loop has recorded the effects.
    func own() async {
        var member: (any GroupMember)?
        var owned: Set<Int32> = []
        var committed: [TopicPartition: Int64] = [:]
        while !Task.isCancelled {
            do {
                if member == nil {
                    member = try await groups.member(of: Self.ownersGroup, options: MemberOptions(
                        topics: [Self.stateTopic], clientId: "sluice-sagas", strategy: .sticky, autoCommit: false, offsetReset: "earliest"))
                }
                guard let current = member else { continue }
                let result = try await current.poll(maxRecords: 500, waitMs: 200)
                let assigned = Set(result.member.assignment.filter { $0.topic == Self.stateTopic }.map(\.partition))
                if assigned != owned {
                    release(owned.subtracting(assigned))
                    try await take(assigned.subtracting(owned))
                    owned = assigned
                }
                let inputs = result.events.filter { owned.contains($0.partition) }.compactMap(ownedInput)
                if !inputs.isEmpty {
                    let processed = await withCheckedContinuation { continuation in enqueue(.owned(inputs, continuation)) }
                    // Stopping before the effects were recorded: the next owner reads these inputs again.
                    guard processed else { break }
                }
                let positions = result.positions.filter { owned.contains($0.key.partition) && committed[$0.key] != $0.value }
                if !positions.isEmpty {
                    try await current.commit(positions.map { ($0.key, $0.value, "") })
                    committed.merge(positions) { _, new in new }
                }
            } catch {
                if error.kind == .notFound {
                    member = nil
                    release(owned)
                    owned = []
                }
                logger.warning("saga partitions: \(error.message); retrying in 1 s", metadata: [LogField.group: .string(Self.ownersGroup)])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        release(owned)
        await member?.leave()
    }

    /// What a record of an owned partition asks for: a forwarded event or a start request; nil for the states and
    /// answers written there.
    func ownedInput(_ fetched: FetchedEvent) -> OwnedInput? {
        switch Self.header(fetched.record, Self.inputHeader) {
        case "event":
            var record = fetched.record
            let topic = Self.header(record, Self.inputTopicHeader) ?? fetched.topic
            record.headers.removeAll { $0.key == Self.inputHeader || $0.key == Self.inputTopicHeader }
            let original = FetchedEvent(topic: topic, partition: fetched.partition, offset: fetched.offset, timestamp: record.timestamp, record: record,
                                        event: CloudEvent(record: record))
            return .event(original, partition: fetched.partition)
        case "start":
            guard let value = fetched.record.value, let request = try? JSONDecoder().decode(StartRequest.self, from: Data(value)),
                  let id = Self.header(fetched.record, Self.requestHeader) else { return nil }
            return .start(request, partition: fetched.partition, request: id)
        default:
            return nil
        }
    }

    /// Reads the states of newly owned partitions back, and re-sends what their sagas wait on (same ids).
    func take(_ partitions: Set<Int32>) async throws(BrokerError) {
        guard !partitions.isEmpty else { return }
        var loaded: [String: SagaInstance] = [:]
        var appended: [String: Int64] = [:]
        for partition in partitions.sorted() {
            let read = try await readStates(partition: partition)
            loaded.merge(read.latest) { old, new in old.version >= new.version ? old : new }
            appended.merge(read.appended) { _, new in new }
        }
        let now = currentTimeMillis()
        let resent = state.withLock { state -> Int in
            state.owned?.formUnion(partitions)
            var effects = Effects()
            for saga in loaded.values.sorted(by: { ($0.finishedAt ?? 0, $0.id) < ($1.finishedAt ?? 0, $1.id) }) {
                state.instances[saga.key] = saga
                if saga.status.isFinal { state.finishedOrder.append(saga.key) } else { state.active.insert(saga.key) }
            }
            for saga in loaded.values where !saga.status.isFinal || !saga.outcomePublished { resend(saga.key, state: &state, effects: &effects) }
            state.outbox += effects.commands.map { ($0, now) }
            state.recordedAt.merge(appended) { _, new in new }
            return effects.commands.count
        }
        logger.info("saga partitions taken", metadata: [
            LogField.topic: .string(Self.stateTopic), "partitions": .string(partitions.sorted().map(String.init).joined(separator: ",")),
            "sagas": .stringConvertible(loaded.count), "commands_resent": .stringConvertible(resent),
        ])
        wakeup.signal()
    }

    /// Forgets the sagas of partitions given up: their new owner drives them.
    func release(_ partitions: Set<Int32>) {
        guard !partitions.isEmpty else { return }
        let count = state.withLock { state -> Int in
            state.owned?.subtract(partitions)
            let gone = Set(state.instances.keys.filter { !state.owns($0) })
            for key in gone { state.instances.removeValue(forKey: key) }
            state.active.subtract(gone)
            state.finishedOrder.removeAll { gone.contains($0) }
            state.outbox.removeAll { gone.contains($0.command.key) }
            state.unrecorded = state.unrecorded.filter { !gone.contains($0.key) }
            state.recordedAt = state.recordedAt.filter { !gone.contains($0.key) }
            state.earlyOutcomes = state.earlyOutcomes.filter { state.owns($0.key) }
            return gone.count
        }
        logger.info("saga partitions given up", metadata: [
            LogField.topic: .string(Self.stateTopic), "partitions": .string(partitions.sorted().map(String.init).joined(separator: ",")),
            "sagas": .stringConvertible(count),
        ])
    }

    /// Member of the reader group: reads the watched topics (the agents split their partitions) and forwards each
    /// event that concerns a saga to that saga's partition, durably, before committing.
    ///
    /// A partition the group has no committed offset for is read from its start, and its events appended before the
    /// engine was made are passed over (they must not start sagas), as on the embedded log. (Starting such a
    /// partition at its end instead would lose the replies appended while the partition moved between agents
    /// before anyone had committed it.)
    func forward() async {
        var member: (any GroupMember)?
        /// Partitions without a committed offset when they were assigned, until this reader commits them.
        var fresh: Set<TopicPartition> = []
        var classified: Set<TopicPartition> = []
        while !Task.isCancelled {
            do {
                if member == nil {
                    member = try await groups.member(of: Self.readerGroup, options: MemberOptions(
                        topics: watchedTopics, clientId: "sluice-sagas", strategy: .sticky, autoCommit: false, offsetReset: "earliest"))
                    classified = []
                    fresh = []
                }
                guard let current = member else { continue }
                let result = try await current.poll(maxRecords: 1000, waitMs: 250)
                let assigned = Set(result.member.assignment)
                if !assigned.isSubset(of: classified), let remote = broker.remote {
                    let committed = try await remote.committedOffsets(group: Self.readerGroup, topics: Set(watchedTopics))
                    for tp in assigned.subtracting(classified) where committed[tp] == nil { fresh.insert(tp) }
                    classified = assigned
                }
                let partitions = state.withLock { $0.statePartitions }
                var inputs: [(partition: Int32, record: Record)] = []
                for fetched in result.events {
                    if fresh.contains(TopicPartition(fetched.topic, fetched.partition)) && fetched.timestamp < startedMillis { continue }
                    guard let event = fetched.event, interestingTypes.contains(event.type) else { continue }
                    var record = fetched.record
                    record.headers.append(RecordHeader(key: Self.inputHeader, value: Array("event".utf8)))
                    record.headers.append(RecordHeader(key: Self.inputTopicHeader, value: Array(fetched.topic.utf8)))
                    for partition in Set(sagaKeys(of: event, topic: fetched.topic).map { Self.partition(of: $0, partitions: partitions) }).sorted() {
                        inputs.append((partition, record))
                    }
                }
                while !inputs.isEmpty {
                    do {
                        _ = try await broker.appendDurably(topic: Self.stateTopic, partitions: partitions, inputs)
                        break
                    } catch {
                        if Task.isCancelled { return }
                        logger.error("saga events could not be forwarded to \(Self.stateTopic); retrying in 1 s: \(error.message)")
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
                if !result.positions.isEmpty {
                    try await current.commit(result.positions.map { ($0.key, $0.value, "") })
                    fresh.subtract(result.positions.keys)
                }
            } catch {
                if error.kind == .notFound { member = nil }
                logger.warning("saga reader: \(error.message); retrying in 1 s", metadata: [LogField.group: .string(Self.readerGroup)])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await member?.leave()
    }

    /// The keys of the sagas an event may move: those it starts, the saga its correlation id names, and the
    /// observed sagas it is a step of.
    func sagaKeys(of event: CloudEvent, topic: String) -> [String] {
        var keys: [String] = []
        for definition in catalog.sagas where definition.triggerType == event.type && (definition.triggerTopic.map { $0 == topic } ?? true) {
            keys.append(Self.sagaId(trigger: event, type: definition.type))
        }
        guard let correlation = event.correlationId else { return keys }
        keys.append(correlation)
        for definition in catalog.observed where definition.allTypes.contains(event.type) && (definition.topics.map { $0.contains(topic) } ?? true) {
            keys.append(SagaInstance.observedKey(type: definition.type, correlationId: correlation))
        }
        return keys
    }

    // MARK: - Starting and finding sagas through any agent

    /// A start on a cluster: appended to the saga's partition as a request, answered there by its owner.
    func startOnCluster(_ request: StartRequest) async throws(BrokerError) -> Started {
        let partitions = state.withLock { $0.statePartitions }
        let partition = Self.partition(of: request.id, partitions: partitions)
        let id = UUID().uuidString.lowercased()
        guard let value = try? JSONEncoder().encode(request) else { throw BrokerError(.internal, "the start request could not be encoded") }
        let record = Record(timestamp: currentTimeMillis(), key: Array(request.id.utf8), value: Array(value), headers: [
            RecordHeader(key: Self.inputHeader, value: Array("start".utf8)), RecordHeader(key: Self.requestHeader, value: Array(id.utf8)),
        ])
        guard let offset = try await broker.appendDurably(topic: Self.stateTopic, partitions: partitions, [(partition, record)]).first else {
            throw BrokerError(.internal, "the start request was not appended")
        }
        let deadline = ContinuousClock.now + Self.answerWait
        var next = offset + 1
        while ContinuousClock.now < deadline {
            let read = try await broker.fetch(topic: Self.stateTopic, partition: partition, offset: next, maxRecords: 500, maxBytes: 4 << 20, minBytes: 1,
                                              maxWaitMs: 1000)
            for fetched in read.events where Self.header(fetched.record, Self.answerHeader) == id {
                guard let value = fetched.record.value, let answer = try? JSONDecoder().decode(StartAnswer.self, from: Data(value)) else {
                    throw BrokerError(.internal, "the owner's answer to the start of saga \(request.id) could not be read")
                }
                if let saga = answer.saga { return Started(saga: saga, created: answer.created) }
                throw BrokerError(answer.errorKind.flatMap(BrokerError.Kind.init(rawValue:)) ?? .internal, answer.error ?? "the saga did not start")
            }
            next = max(next, read.nextOffset)
        }
        throw BrokerError(.unavailable, "saga \(request.id) is requested, but the agent that owns its partition \(partition) of \(Self.stateTopic) did not answer within \(Self.answerWait); it starts once an agent with sagas owns the partition: retry with id=\(request.id) to learn its state", retryAfter: 1)
    }

    /// The answer to a start whose saga's partition moved to another agent before it was recorded.
    static func moved(_ id: String) -> BrokerError {
        BrokerError(.unavailable, "saga \(id)'s partition of \(stateTopic) moved to another agent before the start was recorded; retry with id=\(id)", retryAfter: 1)
    }

    /// What the owner answers a start requested through the saga topic.
    struct StartAnswer: Codable {
        var created: Bool
        var saga: SagaInstance?
        var error: String?
        var errorKind: String?
    }

    /// Appends the answers to starts requested through the saga topic, with the recorded states.
    func answer(_ answers: [(partition: Int32, request: String, result: Result<Started, BrokerError>)]) async {
        let encoder = JSONEncoder()
        let (records, partitions) = state.withLock { state in
            (answers.compactMap { partition, request, result -> (partition: Int32, record: Record)? in
                let answer: StartAnswer
                switch result {
                case .success(let started) where !state.owns(started.saga.key):
                    let error = Self.moved(started.saga.id)
                    answer = StartAnswer(created: false, error: error.message, errorKind: error.kind.rawValue)
                case .success(let started): answer = StartAnswer(created: started.created, saga: state.instances[started.saga.key] ?? started.saga)
                case .failure(let error): answer = StartAnswer(created: false, error: error.message, errorKind: error.kind.rawValue)
                }
                guard let value = try? encoder.encode(answer) else { return nil }
                return (partition, Record(timestamp: currentTimeMillis(), key: answer.saga.map { Array($0.id.utf8) }, value: Array(value),
                                          headers: [RecordHeader(key: Self.answerHeader, value: Array(request.utf8))]))
            }, state.statePartitions)
        }
        do {
            _ = try await broker.appendDurably(topic: Self.stateTopic, partitions: partitions, records)
        } catch {
            // The callers time out and retry with their ids; the sagas themselves are recorded.
            logger.warning("answers to saga starts could not be written: \(error.message)", metadata: [LogField.topic: .string(Self.stateTopic)])
        }
    }

    /// A saga by id through any agent: this agent's when it owns it, else read from its partition of the saga topic.
    public func find(id: String) async throws(BrokerError) -> SagaInstance? {
        if let saga = saga(id: id) { return saga }
        let (remote, partitions) = state.withLock { ($0.owned != nil, $0.statePartitions) }
        guard remote, !catalog.isEmpty else { return nil }
        var keys = [id]
        keys += catalog.observed.map { SagaInstance.observedKey(type: $0.type, correlationId: id) }
        for partition in Set(keys.map { Self.partition(of: $0, partitions: partitions) }).sorted() {
            let read = try await readStates(partition: partition)
            for key in keys { if let saga = read.latest[key] { return saga } }
        }
        return nil
    }
}
