import Foundation
public import SluiceSchema
public import Logging
public import SluiceBroker
import SluiceLog
import SluiceTelemetry
public import SluiceTrace
import Synchronization

/// Runs orchestrated sagas and follows observed ones.
///
/// One loop owns every state change. Its inputs — API starts, reply and trigger events read from the watched
/// topics, and timers — are handled in batches: the new states are appended to the saga topic and fsynced,
/// then the commands go out, then the reader's positions are committed. After a crash the saga topic is read
/// back (the latest record per saga is its state) and every command that may not have gone out is re-sent with
/// the same event id, so participants can deduplicate.
public final class SagaEngine: Sendable {
    /// The internal topic saga states are recorded in.
    public static let stateTopic = "__sluice_sagas"
    /// The consumer group whose committed offsets are the engine's read positions in the watched topics.
    public static let readerGroup = "__sluice_sagas"
    /// Finished sagas kept in memory for the API (older ones stay in the saga topic until retention).
    public static let retainedFinished = 10_000

    public let catalog: SagaCatalog
    let broker: Broker
    let groups: GroupCoordinator
    let logger: Logger
    /// Where saga changes are traced, if anywhere.
    let traces: TraceIndex?
    /// OpenTelemetry spans, when `otlp.endpoint` is set: one per command sent.
    let spans: EventSpans?
    let metrics: SagaMetrics
    /// Topics the reader follows and the event types it hands to the loop.
    let watchedTopics: [String]
    let interestingTypes: Set<String>
    /// When the engine was made: the reader skips events appended before it unless it has committed offsets.
    let startedMillis = currentTimeMillis()
    let state = Mutex<EngineState>(EngineState())
    let inbox = Mutex<(items: [Input], stopped: Bool)>(([], false))
    let wakeup = Wakeup()

    struct EngineState {
        var instances: [String: SagaInstance] = [:]
        /// Keys of sagas still running or compensating.
        var active: Set<String> = []
        var finishedOrder: [String] = []
        var loaded = false
        /// States changed outside a batch (a publish confirmed a compensation) and not yet recorded.
        var unrecorded: [String: String] = [:]
        /// Their log lines, written once they are recorded.
        var unrecordedLogs: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] = []
        /// Outcome events of observed sagas whose start event has not been read yet (they can come first when a
        /// saga's events are on different partitions), by saga key; applied when the start arrives.
        var earlyOutcomes: [String: (event: CloudEvent, timestamp: Int64)] = [:]
        /// Commands whose publish failed, with when to try again.
        var outbox: [(command: OutgoingCommand, notBefore: Int64)] = []
        /// When each saga's latest state was appended, so that sagas in flight longer than half the saga topic's
        /// retention are recorded again before retention could delete their only record.
        var recordedAt: [String: Int64] = [:]
        var lastRefresh: Int64 = 0
        /// On a cluster: the saga topic's partitions this agent owns (it drives exactly their sagas), and how many
        /// the topic has. nil on the embedded log: every saga is this agent's, in partition 0.
        var owned: Set<Int32>?
        var statePartitions = 1

        /// Whether this agent drives the saga `key`.
        func owns(_ key: String) -> Bool {
            guard let owned else { return true }
            return owned.contains(SagaEngine.partition(of: key, partitions: statePartitions))
        }
    }

    enum Input: Sendable {
        case start(StartRequest, CheckedContinuation<Result<Started, BrokerError>, Never>)
        case events([FetchedEvent], CheckedContinuation<Bool, Never>)
        /// On a cluster: what an owned partition of the saga topic brought, in its order.
        case owned([OwnedInput], CheckedContinuation<Bool, Never>)
    }

    /// An input read from an owned partition of the saga topic: an event forwarded by a reader (concerning the
    /// partition's sagas only), or a start requested through any agent's API, answered with a record.
    enum OwnedInput: Sendable {
        case event(FetchedEvent, partition: Int32)
        case start(StartRequest, partition: Int32, request: String)
    }

    struct Started: Sendable {
        var saga: SagaInstance
        var created: Bool
    }

    struct StartRequest: Sendable, Codable {
        var type: String
        var id: String
        var data: JSONValue
        var originCorrelationId: String?
        var traceparent: String?
    }

    /// A command (or outcome event) to publish once the state that sent it is durable.
    struct OutgoingCommand: Sendable {
        enum AfterPublish: Sendable { case nothing, compensationDone(step: Int, commandId: String), outcomePublished }
        var key: String
        var topic: String
        var event: CloudEvent
        var after: AfterPublish
    }

    /// What one batch changed: the sagas to record (with the transition that changed them last), the
    /// commands to send after that, and the callers to answer.
    struct Effects {
        var changed: [String: String] = [:]
        var commands: [OutgoingCommand] = []
        var answers: [(CheckedContinuation<Result<Started, BrokerError>, Never>, Result<Started, BrokerError>)] = []
        /// On a cluster: starts requested through the saga topic, answered with records there.
        var recordAnswers: [(partition: Int32, request: String, result: Result<Started, BrokerError>)] = []
        var readers: [CheckedContinuation<Bool, Never>] = []
        /// Log lines, written after the lock is released (a stalled stdout must not hold API reads).
        var logs: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] = []
    }

    func write(_ logs: [(level: Logger.Level, message: String, metadata: Logger.Metadata)]) {
        for line in logs { logger.log(level: line.level, "\(line.message)", metadata: line.metadata) }
    }

    public init(catalog: SagaCatalog, groups: GroupCoordinator, logger: Logger, traces: TraceIndex? = nil, spans: EventSpans? = nil) {
        self.traces = traces
        self.spans = spans
        self.catalog = catalog
        self.broker = groups.broker
        self.groups = groups
        self.logger = logger
        self.metrics = SagaMetrics(metrics: groups.broker.metrics)
        var topics: Set<String> = []
        var types: Set<String> = []
        let broker = groups.broker
        func watch(_ list: [String], topic: String?) {
            types.formUnion(list)
            if let topic { topics.insert(topic) } else { topics.formUnion(list.map { broker.route(eventType: $0) }) }
        }
        for saga in catalog.sagas {
            if let trigger = saga.triggerType { watch([trigger], topic: saga.triggerTopic) }
            for step in saga.steps {
                watch(step.success + step.failure, topic: step.replyTopic)
                if let compensation = step.compensation { watch(compensation.success + compensation.failure, topic: compensation.replyTopic) }
            }
        }
        for saga in catalog.observed {
            types.formUnion(saga.allTypes)
            if let list = saga.topics { topics.formUnion(list) } else { topics.formUnion(saga.allTypes.map { broker.route(eventType: $0) }) }
        }
        topics.remove(Self.stateTopic)
        watchedTopics = topics.sorted()
        interestingTypes = types
        metrics.declare(catalog)
        broker.metrics.addExposition(key: "sagas") { [weak self] in self?.renderGauges() ?? [] }
    }

    // MARK: - Queries

    public var isLoaded: Bool { state.withLock { $0.loaded } }

    /// A saga by id (orchestrated), or an observed saga by its correlation id.
    public func saga(id: String) -> SagaInstance? {
        state.withLock { state in
            if let found = state.instances[id] { return found }
            for type in catalog.observed.map(\.type) {
                if let found = state.instances[SagaInstance.observedKey(type: type, correlationId: id)] { return found }
            }
            return nil
        }
    }

    /// Sagas, newest first.
    public func list(type: String?, status: SagaStatus?, limit: Int) -> [SagaInstance] {
        let matching = state.withLock { state in
            state.instances.values.filter { (type == nil || $0.type == type) && (status == nil || $0.status == status) }
        }
        return Array(matching.sorted { ($0.startedAt, $0.id) > ($1.startedAt, $1.id) }.prefix(limit))
    }

    // MARK: - Starting

    /// Starts a saga of `type` with `data`; returns once its start is durable and its first command sent.
    /// With an `id` already used by a saga of the same type, returns that saga (`created` false).
    public func start(type: String, data: JSONValue, id: String?, correlationId: String?, traceparent: String? = nil) async throws(BrokerError)
        -> (saga: SagaInstance, created: Bool) {
        guard catalog.saga(type) != nil else {
            if catalog.observed.contains(where: { $0.type == type }) {
                throw BrokerError.badRequest("\(type) is an observed saga: it starts when its start event is published, not through the API", attribute: "type")
            }
            let known = catalog.sagas.map(\.type)
            throw BrokerError(.notFound, "no saga type \(type); declared: \(known.isEmpty ? "none (declare sagas in the config file or --sagas FILE)" : known.joined(separator: ", "))")
        }
        switch data {
        case .object, .null: break
        default: throw BrokerError.badRequest("the saga's data must be a JSON object", attribute: "data")
        }
        if let id {
            guard !id.isEmpty, id.utf8.count <= 200, id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F }) else {
                throw BrokerError.badRequest("id '\(id)' is invalid: use 1 to 200 printable ASCII characters without spaces or '/'", attribute: "id")
            }
        }
        let loaded = state.withLock { $0.loaded }
        guard loaded else { throw BrokerError(.unavailable, "sagas are still being loaded from the saga topic; retry shortly", retryAfter: 1) }
        if let id, let existing = saga(id: id), existing.kind == .orchestrated {
            guard existing.type == type else { throw BrokerError(.conflict, "saga id \(id) is already used by a saga of type \(existing.type)") }
            return (existing, false)
        }
        let request = StartRequest(type: type, id: id ?? UUID().uuidString.lowercased(), data: data == .null ? .object([:]) : data,
                                   originCorrelationId: correlationId, traceparent: traceparent)
        // On a cluster, a saga another agent owns is started through its partition of the saga topic.
        if broker.isRemote && !state.withLock({ $0.owns(request.id) }) {
            let started = try await startOnCluster(request)
            return (started.saga, started.created)
        }
        let result = await withCheckedContinuation { continuation in
            enqueue(.start(request, continuation))
        }
        let started = try result.get()
        return (started.saga, started.created)
    }

    /// Sagas in flight per type, and the start time of the oldest.
    func inFlightByType() -> (counts: [String: Int], oldest: [String: Int64]) {
        state.withLock { state in
            var counts: [String: Int] = [:]
            var oldest: [String: Int64] = [:]
            for key in state.active {
                guard let saga = state.instances[key] else { continue }
                counts[saga.type, default: 0] += 1
                oldest[saga.type] = min(oldest[saga.type] ?? saga.startedAt, saga.startedAt)
            }
            return (counts, oldest)
        }
    }

    func enqueueEvents(_ events: [FetchedEvent], _ continuation: CheckedContinuation<Bool, Never>) {
        enqueue(.events(events, continuation))
    }

    func enqueue(_ input: Input) {
        let accepted = inbox.withLock { inbox -> Bool in
            if !inbox.stopped { inbox.items.append(input) }
            return !inbox.stopped
        }
        guard accepted else { return Self.refuse(input) }
        wakeup.signal()
    }

    /// Answers an input the loop will not handle: a start did not happen; events were not processed.
    static func refuse(_ input: Input) {
        switch input {
        case .start(_, let continuation): continuation.resume(returning: .failure(BrokerError(.unavailable, "the agent is shutting down")))
        case .events(_, let continuation), .owned(_, let continuation): continuation.resume(returning: false)
        }
    }

    // MARK: - Running

    /// Loads the saga topic (then calls `onLoaded`), then runs the loop and the reader until cancelled.
    public func run(onLoaded: @Sendable () -> Void = {}) async {
        while !broker.isReady && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        guard !Task.isCancelled else { return }
        let reader: Task<Void, Never>
        if broker.isRemote {
            guard await prepareOnCluster() else { return }
            onLoaded()
            reader = Task { await self.runOnCluster() }
        } else {
            do {
                try await load()
            } catch {
                logger.critical("sagas could not be loaded from \(Self.stateTopic): \(error); sagas are not running", metadata: [LogField.topic: .string(Self.stateTopic)])
                return
            }
            onLoaded()
            reader = Task { await Correlation.$current.withValue(nil) { await self.read() } }
        }
        while !Task.isCancelled {
            await wakeup.wait(timeout: .milliseconds(100))
            await iterate()
        }
        // Callers still waiting get an answer (what they asked for was not recorded, so it did not happen), and
        // so does anything queued from now on; then the reader stops.
        let left = inbox.withLock { inbox in
            inbox.stopped = true
            defer { inbox.items = [] }
            return inbox.items
        }
        for input in left { Self.refuse(input) }
        reader.cancel()
        await reader.value
    }

    /// One batch: inputs and due timers change states; the states are recorded; then commands go out.
    func iterate() async {
        let inputs = inbox.withLock { inbox in defer { inbox.items = [] }; return inbox.items }
        let now = currentTimeMillis()
        var effects = Effects()
        state.withLock { state in
            effects.changed = state.unrecorded
            effects.logs = state.unrecordedLogs
            state.unrecorded = [:]
            state.unrecordedLogs = []
            for input in inputs {
                switch input {
                case .start(let request, let continuation):
                    // On a cluster the partition may have moved since the caller looked: its new owner starts it.
                    guard state.owns(request.id) else {
                        effects.answers.append((continuation, .failure(Self.moved(request.id))))
                        continue
                    }
                    effects.answers.append((continuation, startLocked(request, now: now, state: &state, effects: &effects)))
                case .events(let events, let continuation):
                    for event in events { handle(event, now: now, state: &state, effects: &effects) }
                    effects.readers.append(continuation)
                case .owned(let inputs, let continuation):
                    for input in inputs {
                        switch input {
                        case .event(let event, let partition):
                            handle(event, partition: partition, now: now, state: &state, effects: &effects)
                        case .start(let request, let partition, let id):
                            effects.recordAnswers.append((partition, id, startLocked(request, now: now, state: &state, effects: &effects)))
                        }
                    }
                    effects.readers.append(continuation)
                }
            }
            fireTimers(now: now, state: &state, effects: &effects)
            refreshOldRecords(now: now, state: &state, effects: &effects)
            for (index, pending) in state.outbox.enumerated().reversed() where pending.notBefore <= now {
                effects.commands.insert(pending.command, at: 0)
                state.outbox.remove(at: index)
            }
        }
        guard await record(effects.changed, answers: &effects.answers) else {
            // Stopping before the states were recorded: nothing they caused may go out.
            for (continuation, _) in effects.answers { continuation.resume(returning: .failure(BrokerError(.unavailable, "the agent is shutting down"))) }
            for reader in effects.readers { reader.resume(returning: false) }
            return
        }
        // Logged once recorded: a line says what happened, not what a crash may have undone.
        write(effects.logs)
        await send(effects.commands)
        // Answers carry the recorded state (with its version), once the first command is out. A saga whose partition
        // moved before it was recorded was not started here (its new owner starts it when asked again).
        let answers = state.withLock { state in
            effects.answers.map { continuation, result in
                (continuation, result.flatMap { started in
                    state.owns(started.saga.key) ? .success(Started(saga: state.instances[started.saga.key] ?? started.saga, created: started.created))
                        : .failure(Self.moved(started.saga.id))
                })
            }
        }
        for (continuation, result) in answers { continuation.resume(returning: result) }
        if !effects.recordAnswers.isEmpty { await answer(effects.recordAnswers) }
        for reader in effects.readers { reader.resume(returning: true) }
    }

    /// Appends the changed sagas' states to the saga topic and waits for the fsync, retrying until it works:
    /// no command goes out before the state that sent it is durable. When the first attempt fails, callers
    /// waiting to start a saga are answered at once (503: not recorded yet, retry with the same id) instead
    /// of waiting for storage to come back; their sagas are kept and start once recorded.
    private func record(_ changed: [String: String], answers: inout [(CheckedContinuation<Result<Started, BrokerError>, Never>, Result<Started, BrokerError>)]) async -> Bool {
        guard !changed.isEmpty else { return true }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var recorded: [(transition: String, saga: SagaInstance)] = []
        var partitions = 1
        let records: [(partition: Int32, record: Record)] = state.withLock { state in
            partitions = state.statePartitions
            return changed.compactMap { key, transition in
                // A saga of a partition this agent no longer owns is its new owner's to record.
                guard state.instances[key] != nil, state.owns(key) else { return nil }
                state.instances[key]!.version += 1
                state.recordedAt[key] = currentTimeMillis()
                recorded.append((transition, state.instances[key]!))
                let entry = StateRecord(transition: transition, saga: state.instances[key]!)
                guard let value = try? encoder.encode(entry) else { return nil }
                let partition = state.owned == nil ? 0 : Self.partition(of: key, partitions: state.statePartitions)
                return (partition, Record(timestamp: currentTimeMillis(), key: Array(key.utf8), value: Array(value), headers: [
                    RecordHeader(key: "sluice.saga.type", value: Array(entry.saga.type.utf8)),
                    RecordHeader(key: "sluice.saga.transition", value: Array(transition.utf8)),
                ]))
            }
        }
        var attempt = 0
        while true {
            do {
                _ = try await broker.appendDurably(topic: Self.stateTopic, partitions: partitions, records)
                if let traces { trace(recorded, into: traces) }
                return true
            } catch {
                // Stopping: what was not recorded did not happen (the previous states are resumed at start).
                if Task.isCancelled { return false }
                attempt += 1
                logger.error("saga states could not be recorded (attempt \(attempt)); retrying in 1 s: \(error.message)",
                             metadata: [LogField.topic: .string(Self.stateTopic)])
                for (continuation, result) in answers {
                    continuation.resume(returning: result.flatMap { started in
                        .failure(BrokerError(.unavailable, "saga \(started.saga.id) is accepted but its state could not be recorded yet (\(error.message)); it starts once it is, and is lost if the agent stops first: retry with id=\(started.saga.id) to learn which", retryAfter: 1))
                    })
                }
                answers.removeAll()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// A `saga TYPE STEP` span (or `saga TYPE outcome`) for a command, under the trace context of what moved the
    /// saga; the command then carries the span's, so that its deliveries and the reply are its children.
    static func startSpan(for command: inout OutgoingCommand, spans: EventSpans) -> EventSpan {
        let event = command.event
        let type = event.extensions["sagatype"] ?? ""
        let step = event.extensions["sagastep"]
        var extra: [(String, EventSpan.Value)] = [(SpanAttributeName.sagaId, .string(event.correlationId ?? "")), (SpanAttributeName.sagaType, .string(type))]
        if let step { extra.append((SpanAttributeName.sagaStep, .string(step))) }
        let span = spans.start("saga \(type) \(step ?? "outcome")", kind: .producer, operation: "send", event: event, topic: command.topic,
                               parent: event.traceparent, extra: extra)
        if let traceparent = span.traceparent { command.event.extensions["traceparent"] = traceparent }
        return span
    }

    /// Publishes commands, grouped by topic; a failed publish is retried in 500 ms. Confirmed fire-and-forget
    /// compensations and outcome events change their saga (recorded with the next batch).
    private func send(_ commands: [OutgoingCommand]) async {
        guard !commands.isEmpty else { return }
        var byTopic: [String: [OutgoingCommand]] = [:]
        for command in commands { byTopic[command.topic, default: []].append(command) }
        var confirmed: [OutgoingCommand] = []
        for (topic, var list) in byTopic.sorted(by: { $0.key < $1.key }) {
            let open = spans.map { spans in list.indices.map { Self.startSpan(for: &list[$0], spans: spans) } } ?? []
            do {
                _ = try await broker.publish(topic: topic, events: list.map(\.event))
                for span in open { span.end() }
                confirmed += list
            } catch {
                for span in open {
                    span.fail(error.kind.rawValue, message: error.message)
                    span.end()
                }
                logger.warning("saga commands could not be published to \(topic); retrying in 500 ms: \(error.message)",
                               metadata: [LogField.topic: .string(topic)])
                let retryAt = currentTimeMillis() + 500
                state.withLock { state in state.outbox += list.map { ($0, retryAt) } }
            }
        }
        let follow = confirmed.filter { if case .nothing = $0.after { return false } else { return true } }
        guard !follow.isEmpty else { return }
        let now = currentTimeMillis()
        state.withLock { state in
            var effects = Effects()
            for command in follow { published(command, now: now, state: &state, effects: &effects) }
            state.unrecorded.merge(effects.changed) { _, new in new }
            state.unrecordedLogs += effects.logs
            let retryAt = now
            state.outbox += effects.commands.map { ($0, retryAt) }
        }
        wakeup.signal()
    }

    // MARK: - Loading

    struct StateRecord: Codable {
        var transition: String
        var saga: SagaInstance
    }

    /// Reads the saga topic back: the latest state of each saga; then queues every command that may not have
    /// gone out (same event ids as before).
    func load() async throws {
        let started = DispatchTime.now().uptimeNanoseconds
        var latest: [String: SagaInstance] = [:]
        var appended: [String: Int64] = [:]
        var records = 0
        if broker.topic(Self.stateTopic) != nil {
            (latest, appended, records) = try await readStates(partition: 0)
        }
        let now = currentTimeMillis()
        var resent = 0
        var orphaned: [String: Int] = [:]
        state.withLock { state in
            var effects = Effects()
            let finished = latest.values.filter(\.status.isFinal).sorted { ($0.finishedAt ?? 0, $0.id) < ($1.finishedAt ?? 0, $1.id) }
            for saga in finished.suffix(Self.retainedFinished) {
                state.instances[saga.key] = saga
                state.finishedOrder.append(saga.key)
            }
            for saga in latest.values where !saga.status.isFinal {
                state.instances[saga.key] = saga
                state.active.insert(saga.key)
                if saga.kind == .orchestrated && catalog.saga(saga.type) == nil { orphaned[saga.type, default: 0] += 1 }
            }
            for key in state.active { resend(key, state: &state, effects: &effects) }
            for saga in finished where !saga.outcomePublished { resend(saga.key, state: &state, effects: &effects) }
            resent = effects.commands.count
            state.outbox = effects.commands.map { ($0, now) }
            state.recordedAt = appended
            state.loaded = true
        }
        for (type, count) in orphaned {
            logger.warning("saga type \(type) is no longer declared; its \(count) unfinished saga(s) stay as they are", metadata: [LogField.sagaType: .string(type)])
        }
        let active = state.withLock { $0.active.count }
        logger.info("sagas loaded", metadata: [
            "records": .stringConvertible(records), "sagas": .stringConvertible(latest.count), "in_flight": .stringConvertible(active),
            "commands_resent": .stringConvertible(resent),
            "load_seconds": .stringConvertible(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9),
        ])
        wakeup.signal()
    }

    /// The latest state of each saga recorded in one partition of the saga topic (by version), when it was
    /// appended, and how many records were read. Inputs and answers a cluster keeps there are passed over.
    func readStates(partition: Int32) async throws(BrokerError) -> (latest: [String: SagaInstance], appended: [String: Int64], records: Int) {
        let decoder = JSONDecoder()
        var latest: [String: SagaInstance] = [:]
        var appended: [String: Int64] = [:]
        var records = 0
        var (offset, end) = try await broker.partitionOffsets(TopicPartition(Self.stateTopic, partition))
        while offset < end {
            let result = try await broker.fetch(topic: Self.stateTopic, partition: partition, offset: offset, maxRecords: 10_000, maxBytes: 4 << 20,
                                                minBytes: 0, maxWaitMs: 0)
            end = result.logEndOffset
            if result.events.isEmpty { break }
            for event in result.events where Self.header(event.record, Self.inputHeader) == nil && Self.header(event.record, Self.answerHeader) == nil {
                records += 1
                guard let value = event.record.value, let entry = try? decoder.decode(StateRecord.self, from: Data(value)) else {
                    logger.warning("skipping an unreadable saga record", metadata: [LogField.topic: .string(Self.stateTopic), LogField.offset: .stringConvertible(event.offset)])
                    continue
                }
                if (latest[entry.saga.key]?.version ?? -1) < entry.saga.version {
                    latest[entry.saga.key] = entry.saga
                    appended[entry.saga.key] = event.timestamp
                }
            }
            offset = result.nextOffset
        }
        return (latest, appended, records)
    }

    /// Records again, unchanged, every saga in flight whose latest record is older than half the saga topic's
    /// retention (checked every quarter of it, at most every minute): retention deletes old segments, and a saga
    /// waiting that long must keep a record in the topic to survive a restart.
    func refreshOldRecords(now: Int64, state: inout EngineState, effects: inout Effects) {
        guard let retention = broker.topic(Self.stateTopic)?.config.retentionMs, retention > 0,
              now - state.lastRefresh >= min(60_000, retention / 4) else { return }
        state.lastRefresh = now
        for key in state.active where effects.changed[key] == nil && now - (state.recordedAt[key] ?? now) > retention / 2 {
            effects.changed[key] = "refreshed"
        }
    }

    /// Queues again the command a saga is waiting on (same event id), or its undelivered outcome event.
    func resend(_ key: String, state: inout EngineState, effects: inout Effects) {
        guard let saga = state.instances[key], saga.kind == .orchestrated, let definition = catalog.saga(saga.type) else { return }
        if saga.status.isFinal {
            if let outcome = outcomeCommand(saga, definition) { effects.commands.append(outcome) }
            return
        }
        if saga.status == .running, saga.steps.indices.contains(saga.current), saga.steps[saga.current].status == .dispatched,
           let id = saga.steps[saga.current].commandId {
            let step = definition.steps[saga.current]
            effects.commands.append(command(step.command, saga: saga, definition: definition, id: id, step: step.name,
                                            causation: stepCausation(saga, index: saga.current), after: .nothing))
        } else if saga.status == .compensating, let head = saga.compensations.first, let compensation = definition.steps[head].compensation,
                  let state = saga.steps[head].compensation, state.status == .dispatched, let id = state.commandId {
            effects.commands.append(command(compensation.command, saga: saga, definition: definition, id: id, step: definition.steps[head].name,
                                            causation: compensationCausation(saga), after: compensation.success.isEmpty ? .compensationDone(step: head, commandId: id) : .nothing))
        }
    }
}

/// Wakes the saga loop early; at most one wake-up is remembered.
final class Wakeup: Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next signal (or at once if one came since the last wait), or after `timeout`.
    func wait(timeout: Duration) async {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self.signal() }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.pending {
                    state.pending = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }
}
