public import AsyncHTTPClient
import Foundation
public import Logging
public import SluiceBroker
import SluiceLog
import SluiceTelemetry
public import SluiceTrace
import Synchronization
import Yams

/// Subscriptions (declared in the config file or managed over HTTP, the latter persisted in
/// `DATA/subscriptions.json`), their runners, the dead-letter index and replays.
public final class DeliveryService: Sendable {
    public let broker: Broker
    public let groups: GroupCoordinator
    /// Made on first use: an agent without subscriptions never loads the HTTP client (idle memory stays low).
    private let clientStorage = Mutex<HTTPClient?>(nil)
    private let makeClientNow: @Sendable () -> HTTPClient
    let logger: Logger
    let writer: DeadLetterWriter
    let index: DeadLetterIndex
    private let state = Mutex<State>(State())
    /// Held while a change to the runtime subscriptions is written and applied, so changes land one at a time and
    /// only what reached the disk takes effect.
    private let changes = Mutex<Void>(())
    let replays = Mutex<[String: ReplayProgress]>([:])
    /// Where deliveries, dead letters and replays are traced, if anywhere.
    let traces: TraceIndex?
    /// OpenTelemetry spans, when `otlp.endpoint` is set.
    let spans: EventSpans?

    struct State {
        var subscriptions: [String: (subscription: Subscription, fromFile: Bool)] = [:]
        var runners: [String: (runner: SubscriptionRunner, task: Task<Void, Never>)] = [:]
        var started = false
        /// The last rewind of each subscription (kept after it completes, for GET /v1/subscriptions/{name}).
        var rewinds: [String: SubscriptionRewind] = [:]
        /// Subscriptions with a rewind being applied (one at a time each).
        var rewinding: Set<String> = []
    }

    var storePath: String { broker.config.dataDirectory + "/subscriptions.json" }
    var rewindsPath: String { broker.config.dataDirectory + "/subscription-rewinds.json" }

    /// The client deliveries use: no connection retries of its own (the subscription's retry policy and breaker
    /// decide), a 2 s connect timeout, and room for many concurrent deliveries to one app.
    public static func makeClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        configuration.timeout.connect = .seconds(2)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    var client: HTTPClient {
        clientStorage.withLock { stored in
            if let stored { return stored }
            let made = makeClientNow()
            stored = made
            return made
        }
    }

    public init(groups: GroupCoordinator, logger: Logger, makeClient: @escaping @Sendable () -> HTTPClient = DeliveryService.makeClient,
                traces: TraceIndex? = nil, spans: EventSpans? = nil) throws {
        self.traces = traces
        self.spans = spans
        self.broker = groups.broker
        self.groups = groups
        self.makeClientNow = makeClient
        self.logger = logger
        self.writer = DeadLetterWriter(broker: groups.broker)
        self.index = DeadLetterIndex(broker: groups.broker)
        var subscriptions: [String: (Subscription, Bool)] = [:]
        if let file = broker.config.configFile {
            for subscription in try Self.loadFile(file) { subscriptions[subscription.name] = (subscription, true) }
        }
        if FileManager.default.fileExists(atPath: storePath) {
            guard let data = FileManager.default.contents(atPath: storePath),
                  let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                throw SubscriptionError("\(storePath) is not a JSON list of subscriptions; fix or remove it")
            }
            for object in list {
                do {
                    let subscription = try Subscription.parse(object)
                    if subscriptions[subscription.name]?.1 != true { subscriptions[subscription.name] = (subscription, false) }
                } catch {
                    throw SubscriptionError("\(storePath): \(error.message)")
                }
            }
        }
        try Self.checkGroups(subscriptions.values.map(\.0))
        var rewinds: [String: SubscriptionRewind] = [:]
        if FileManager.default.fileExists(atPath: rewindsPath) {
            guard let data = FileManager.default.contents(atPath: rewindsPath),
                  let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                throw SubscriptionError("\(rewindsPath) is not a JSON list of subscription rewinds; fix or remove it (removing it only drops the \(DeliveryHeader.rewind) header of rewinds in progress)")
            }
            for object in list {
                guard let rewind = SubscriptionRewind(jsonObject: object) else {
                    throw SubscriptionError("\(rewindsPath): an entry is not a rewind (id, subscription, to, requested_by, started_at_ms, partitions); fix or remove it")
                }
                if subscriptions[rewind.subscription] != nil { rewinds[rewind.subscription] = rewind }
            }
        }
        state.withLock { state in
            for (name, entry) in subscriptions { state.subscriptions[name] = (entry.0, entry.1) }
            state.rewinds = rewinds
        }
    }

    /// The `subscriptions` list of a config file, with file and line in errors.
    public static func loadFile(_ path: String) throws(SubscriptionError) -> [Subscription] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw SubscriptionError("cannot read \(path)") }
        guard let root = try? Yams.compose(yaml: text), let mapping = root.mapping, let section = mapping["subscriptions"] else { return [] }
        guard let list = section.sequence else {
            throw SubscriptionError("\(path):\(section.mark?.line ?? 0): subscriptions must be a list of {name, topics, endpoint, …}")
        }
        var result: [Subscription] = []
        for item in list {
            let line = item.mark?.line ?? 0
            guard let object = (try? Yams.load(yaml: Yams.serialize(node: item))) as? [String: Any] else {
                throw SubscriptionError("\(path):\(line): each subscription is a mapping with name, topics and endpoint")
            }
            let subscription: Subscription
            do {
                subscription = try Subscription.parse(object)
            } catch {
                throw SubscriptionError("\(path):\(line): \(error.message)", field: error.field)
            }
            if result.contains(where: { $0.name == subscription.name }) {
                throw SubscriptionError("\(path):\(line): subscription \(subscription.name) is declared twice", field: "name")
            }
            result.append(subscription)
        }
        return result
    }

    static func checkGroups(_ subscriptions: [Subscription]) throws(SubscriptionError) {
        var seen: [String: String] = [:]
        for subscription in subscriptions.sorted(by: { $0.name < $1.name }) {
            if let other = seen[subscription.group] {
                throw SubscriptionError("subscriptions \(other) and \(subscription.name) both use group \(subscription.group); each subscription needs its own group", field: "group")
            }
            seen[subscription.group] = subscription.name
        }
    }

    // MARK: - Lifecycle

    /// Starts every subscription and the dead-letter index; returns when cancelled, after stopping them.
    public func run() async {
        // Deliveries start once the agent is ready (listeners bound, start line written).
        while !broker.isReady && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        let names = state.withLock { state -> [String] in
            state.started = true
            return Array(state.subscriptions.keys)
        }
        for name in names { startRunner(name) }
        while !Task.isCancelled {
            if broker.isRemote {
                // Reads from the cluster: a second apart, and outside requests.
                await index.refreshFromCluster(named: dlqTopicNames)
                try? await Task.sleep(for: .seconds(1))
            } else {
                index.refresh(named: dlqTopicNames)
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        await stopAll()
    }

    public func stopAll() async {
        let runners = state.withLock { state -> [(SubscriptionRunner, Task<Void, Never>)] in
            defer { state.runners = [:] }
            return state.runners.values.map { ($0.runner, $0.task) }
        }
        for (runner, _) in runners { runner.stop() }
        for (_, task) in runners { await task.value }
        if let client = clientStorage.withLock({ $0 }) { try? await client.shutdown() }
    }

    /// Starts the subscription's runner unless one runs already (startup and a PUT may both ask).
    private func startRunner(_ name: String) {
        let started = state.withLock { state -> Subscription? in
            guard state.runners[name] == nil, let subscription = state.subscriptions[name]?.subscription else { return nil }
            let rewind = state.rewinds[name].flatMap { $0.completedMillis == nil ? $0 : nil }
            let runner = SubscriptionRunner(subscription: subscription, groups: groups, client: client, deadLetters: writer, logger: logger,
                                            rewind: rewind, rewindCompleted: { [weak self] id in self?.rewindCompleted(name, id: id) }, traces: traces,
                                            spans: spans)
            // Not the correlation of the request that created the subscription: each event brings its own.
            let task = Task { await Correlation.$current.withValue(nil) { await runner.run() } }
            state.runners[name] = (runner, task)
            return subscription
        }
        guard let subscription = started else { return }
        logger.info("subscription started", metadata: [
            LogField.subscription: .string(name), "endpoint": .string(subscription.endpoint), LogField.group: .string(subscription.group),
            "topics": .string(subscription.topics.joined(separator: ",")),
        ])
    }

    private func stopRunner(_ name: String) async {
        guard let entry = state.withLock({ $0.runners.removeValue(forKey: name) }) else { return }
        entry.runner.stop()
        await entry.task.value
    }

    var dlqTopicNames: Set<String> {
        state.withLock { state in
            Set(state.subscriptions.values.flatMap { entry in entry.subscription.topics.map { entry.subscription.deadLetterTopic(for: $0) } })
        }
    }

    /// Whether `topic` holds dead letters or poison: its records are copies of events traced already.
    public func isDeadLetterTopic(_ topic: String) -> Bool {
        topic.hasSuffix(".dlq") || topic.hasSuffix(".poison") || dlqTopicNames.contains(topic)
    }

    /// The subscriptions reading `topic` that accept `eventType`, with the offset their group committed on
    /// `partition` (0 when none): they will deliver the partition's events from that offset on.
    public func deliveryTargets(topic: String, partition: Int32, eventType: String) -> [(subscription: String, committed: Int64)] {
        let reading = state.withLock { state in
            state.subscriptions.values.map(\.subscription).filter { $0.topics.contains(topic) && $0.accepts(eventType: eventType) }
        }
        return reading.map { subscription in
            (subscription.name, groups.store.offset(GroupPartition(group: subscription.group, topic: topic, partition: partition))?.offset ?? 0)
        }.sorted { $0.subscription < $1.subscription }
    }

    // MARK: - Managing subscriptions

    public var subscriptions: [(subscription: Subscription, fromFile: Bool)] {
        state.withLock { $0.subscriptions.values.sorted { $0.subscription.name < $1.subscription.name }.map { ($0.subscription, $0.fromFile) } }
    }

    public func subscription(_ name: String) -> Subscription? { state.withLock { $0.subscriptions[name]?.subscription } }

    /// Creates or replaces a runtime subscription (persisted); returns whether it was created.
    @discardableResult
    public func put(_ subscription: Subscription) async throws(BrokerError) -> Bool {
        let existing = state.withLock { $0.subscriptions[subscription.name] }
        if existing?.fromFile == true {
            throw BrokerError(.conflict, "subscription \(subscription.name) is declared in the config file; change it there")
        }
        let others = state.withLock { $0.subscriptions.values.map(\.subscription).filter { $0.name != subscription.name } }
        do {
            try Self.checkGroups(others + [subscription])
        } catch {
            throw BrokerError(.conflict, error.message, attribute: "group")
        }
        for topic in subscription.topics { try await broker.ensure(topic: topic) }
        let created = try change { subscriptions throws(BrokerError) -> Bool in
            if subscriptions[subscription.name]?.fromFile == true {
                throw BrokerError(.conflict, "subscription \(subscription.name) is declared in the config file; change it there")
            }
            let created = subscriptions[subscription.name] == nil
            let limit = broker.config.int("subscription.max.count")
            if created, subscriptions.count >= limit {
                throw BrokerError(.conflict, "the agent has \(subscriptions.count) subscriptions, the most subscription.max.count allows; delete one no longer used or raise subscription.max.count")
            }
            subscriptions[subscription.name] = (subscription, false)
            return created
        }
        if !created { await stopRunner(subscription.name) }
        if state.withLock({ $0.started }) { startRunner(subscription.name) }
        return created
    }

    public func delete(_ name: String) async throws(BrokerError) {
        guard let existing = state.withLock({ $0.subscriptions[name] }) else {
            throw BrokerError(.notFound, "subscription \(name) does not exist")
        }
        if existing.fromFile { throw BrokerError(.conflict, "subscription \(name) is declared in the config file; remove it there") }
        try change { subscriptions throws(BrokerError) in
            guard subscriptions.removeValue(forKey: name) != nil else { throw BrokerError(.notFound, "subscription \(name) does not exist") }
        }
        await stopRunner(name)
        if state.withLock({ $0.rewinds.removeValue(forKey: name) }) != nil { saveRewinds() }
        logger.info("subscription deleted", metadata: [LogField.subscription: .string(name)])
    }

    // MARK: - Rewinds

    /// The subscription's last rewind, with the events still to re-deliver (from its group's committed offsets).
    public func rewind(of name: String) -> (rewind: SubscriptionRewind, remaining: Int64)? {
        guard let rewind = state.withLock({ $0.rewinds[name] }), let subscription = subscription(name) else { return nil }
        var positions: [TopicPartition: Int64] = [:]
        for entry in rewind.partitions {
            let key = GroupPartition(group: subscription.group, topic: entry.partition.topic, partition: entry.partition.partition)
            if let committed = groups.store.offset(key)?.offset { positions[entry.partition] = committed }
        }
        return (rewind, rewind.completedMillis == nil ? rewind.remaining(positions: positions) : 0)
    }

    /// Rewinds a subscription (a projection rebuild): pauses its runner (which commits what it finished and leaves
    /// the group), moves the group's offsets on every partition of its topics, and resumes. Events delivered before
    /// the rewind carry ``DeliveryHeader/rewind`` when delivered again. With `dryRun`, only the plan is returned.
    public func rewind(_ name: String, to target: OffsetResetTarget, dryRun: Bool, requester: String) async throws(BrokerError) -> (SubscriptionRewind, [OffsetResetRow]) {
        guard let subscription = subscription(name) else {
            throw BrokerError(.notFound, "subscription \(name) does not exist; create it with PUT /v1/subscriptions/\(name)")
        }
        let scope = subscription.topics.map { OffsetResetScope(topic: $0) }
        if dryRun {
            let rows = try groups.planReset(group: subscription.group, to: target, scope: scope)
            return (Self.makeRewind(subscription, target, requester, rows), rows)
        }
        let admitted = state.withLock { $0.rewinding.insert(name).inserted }
        guard admitted else { throw BrokerError(.conflict, "subscription \(name) is being rewound already; wait for that request to finish") }
        defer { state.withLock { _ = $0.rewinding.remove(name) } }
        await stopRunner(name)
        defer { if state.withLock({ $0.started }) { startRunner(name) } }
        let rows = try await groups.resetOffsets(group: subscription.group, to: target, scope: scope, dryRun: false, requester: requester)
        let rewind = Self.makeRewind(subscription, target, requester, rows)
        state.withLock { $0.rewinds[name] = rewind }
        saveRewinds()
        broker.metrics.counter(MetricName.rewinds, name).increment()
        broker.metrics.gauge(MetricName.rewindRemaining, name).set(Double(rewind.total))
        logger.notice("subscription rewound", metadata: [
            LogField.subscription: .string(name), LogField.group: .string(subscription.group), LogField.clientAddress: .string(requester),
            LogField.rewindId: .string(rewind.id), LogField.resetTo: .string(target.description), "events": .stringConvertible(rewind.total),
        ])
        return (rewind, rows)
    }

    static func makeRewind(_ subscription: Subscription, _ target: OffsetResetTarget, _ requester: String, _ rows: [OffsetResetRow]) -> SubscriptionRewind {
        let partitions = rows.compactMap { row -> SubscriptionRewind.Partition? in
            // Only partitions that move back re-deliver anything.
            guard let previous = row.previous, previous > row.offset else { return nil }
            return SubscriptionRewind.Partition(partition: row.partition, from: row.offset, until: previous)
        }
        let now = currentTimeMillis()
        return SubscriptionRewind(id: "rw-" + UUID().uuidString.lowercased().prefix(8), subscription: subscription.name, target: target.description,
                                  requestedBy: requester, startedMillis: now, completedMillis: partitions.isEmpty ? now : nil, partitions: partitions)
    }

    func rewindCompleted(_ name: String, id: String) {
        let changed = state.withLock { state -> Bool in
            guard state.rewinds[name]?.id == id, state.rewinds[name]?.completedMillis == nil else { return false }
            state.rewinds[name]!.completedMillis = currentTimeMillis()
            return true
        }
        if changed { saveRewinds() }
    }

    /// Writes the rewinds file. A failure is logged, not thrown: the offsets have moved already, and only the
    /// rewind header of re-deliveries after a restart depends on this file.
    private func saveRewinds() {
        let list = state.withLock { $0.rewinds.values.sorted { $0.subscription < $1.subscription }.map(\.jsonObject) }
        do {
            let data = try JSONSerialization.data(withJSONObject: list, options: [.sortedKeys, .prettyPrinted])
            try writeFileAtomically(rewindsPath, Array(data))
        } catch {
            logger.error("cannot save subscription rewinds; re-deliveries after a restart will lack the rewind header", metadata: [
                "file.path": .string(rewindsPath), "error": .string("\(error)"),
            ])
        }
    }

    /// Applies `edit` to a copy of the subscriptions, saves the runtime ones, and only then makes the copy current;
    /// a change that could not be saved (a full disk) changes nothing and says why.
    private func change<T>(_ edit: (inout [String: (subscription: Subscription, fromFile: Bool)]) throws(BrokerError) -> T) throws(BrokerError) -> T {
        try changes.withLock { _ throws(BrokerError) -> T in
            var subscriptions = state.withLock { $0.subscriptions }
            let result = try edit(&subscriptions)
            let runtime = subscriptions.values.filter { !$0.fromFile }.sorted { $0.subscription.name < $1.subscription.name }.map(\.subscription.jsonObject)
            do {
                let data = try JSONSerialization.data(withJSONObject: runtime, options: [.sortedKeys, .prettyPrinted])
                try writeFileAtomically(storePath, Array(data))
            } catch let error as LogError where error.isNoSpace {
                throw BrokerError(.insufficientStorage, "cannot save subscriptions: the data directory's file system is full (\(error.message)); nothing was changed: free space and retry")
            } catch {
                throw BrokerError(.internal, "cannot save subscriptions to \(storePath): \(error); nothing was changed")
            }
            state.withLock { $0.subscriptions = subscriptions }
            return result
        }
    }

    /// Breaker state and unfinished events of a running subscription.
    public func status(_ name: String) async -> (breaker: BreakerState, pending: Int)? {
        guard let runner = state.withLock({ $0.runners[name]?.runner }) else { return nil }
        return (await runner.breakerState, await runner.pendingCount)
    }
}
