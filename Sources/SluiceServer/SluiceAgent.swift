import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
public import Logging
import NIOCore
public import SluiceBroker
import SluiceDelivery
import SluiceKafka
import SluiceLog
import SluiceSaga
public import SluiceTelemetry
import SluiceTrace
import ServiceLifecycle
import Synchronization

/// The addresses the agent bound (with real ports when 0 was asked for).
public struct BoundAddresses: Sendable {
    public var api: String
    public var metrics: String
    /// The Kafka listener's address; nil when `kafka.address` is off.
    public var kafka: String?
}

/// `sluice serve`: the broker, the API listener, the metrics listener and maintenance in one `ServiceGroup`,
/// with graceful shutdown on SIGTERM and SIGINT.
///
/// Shutdown order: long polls answer with what they have, the API stops accepting and finishes in-flight
/// requests, then the metrics listener stops,
/// then the broker writes everything it accepted, closes the log and writes the clean-shutdown marker.
public enum SluiceAgent {
    /// - Parameter remote: the Kafka cluster events are stored in (`log.backend=kafka`); nil for the embedded log.
    public static func run(config: SluiceConfig, logger: Logger, metrics: SluiceMetrics, remote: (any RemoteLog)? = nil,
                           onReady: @escaping @Sendable (BoundAddresses) -> Void = { _ in }) async throws {
        // Hummingbird's and ServiceLifecycle's own lines stay below warning unless tracing, so that Sluice's
        // start line, which names both bound addresses, is the first line after start.
        var frameworkLogger = logger
        frameworkLogger.logLevel = logger.logLevel == .trace ? .trace : max(logger.logLevel, .warning)
        let holder = BrokerHolder()
        // OpenTelemetry spans, when otlp.endpoint is set: the exporter is first in the service group, so it stops
        // last and sends the spans the others ended while stopping.
        let otlp = try EventSpans.otlp(config: config, logger: logger)
        let startup = Startup(config: config, logger: logger, onReady: onReady)

        let apiRouter = Router(context: AgentRequestContext.self)
        apiRouter.middlewares.add(APIMiddleware(token: config.apiToken, metrics: metrics, logger: logger))
        APIRoutes(holder: holder, config: config, logger: logger, spans: otlp?.spans).register(on: apiRouter)
        let api = HTTPListener(
            responder: apiRouter.buildResponder(),
            server: Self.http1(config, logger: logger),
            configuration: Self.listener(config.apiBindAddress, name: "sluice", config, logger: logger),
            logger: frameworkLogger,
            onServerRunning: { channel in startup.listenerUp(api: describe(channel.localAddress, fallback: config.apiAddress)) })

        let metricsRouter = Router(context: BasicRequestContext.self)
        metricsRouter.get(RouterPath(HTTPPath.metrics)) { _, _ in
            Response(status: .ok, headers: [.contentType: SluiceMetrics.contentType], body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        metricsRouter.get(RouterPath(HTTPPath.health)) { _, _ in APIRoutes.health() }
        metricsRouter.get(RouterPath(HTTPPath.ready)) { _, _ in APIRoutes.ready(holder) }
        let metricsApp = HTTPListener(
            responder: metricsRouter.buildResponder(),
            server: Self.http1(config, logger: logger),
            configuration: Self.listener(config.metricsBindAddress, name: "sluice-metrics", config, logger: logger),
            logger: frameworkLogger,
            onServerRunning: { channel in startup.listenerUp(metricsAddress: describe(channel.localAddress, fallback: config.metricsAddress)) })

        // Each service is named: without a name, ServiceLifecycle names it with "\(service)", which prints the
        // whole value by reflection (a listener, its router and all) and cost ~5 ms of start-up.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = otlp.map { [.init(service: $0.exporter, serviceName: "otlp-exporter")] } ?? []
        services += [
            .init(service: BrokerService(config: config, metrics: metrics, logger: logger, holder: holder, startup: startup, spans: otlp?.spans,
                                         remote: remote),
                  successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "broker"),
            .init(service: metricsApp, serviceName: "metrics-listener"),
            .init(service: api, serviceName: "api-listener"),
        ]
        if config.kafkaBindAddress != nil {
            let kafka = KafkaListener(configuration: try KafkaListener.Configuration(config: config), backend: { holder.kafkaBackend },
                                      metrics: metrics, logger: logger, onBound: { startup.listenerUp(kafka: $0) })
            // After the API in the list, so it stops before the API and the broker: its connections finish first.
            services.append(.init(service: kafka, serviceName: "kafka-listener"))
        }
        let group = ServiceGroup(configuration: .init(
            services: services + [
                // Last in the list, so the first to hear of shutdown: it ends long polls before the API
                // waits for its in-flight requests.
                .init(service: LongPollCutoff(holder: holder), successTerminationBehavior: .ignore, serviceName: "long-poll-cutoff"),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: frameworkLogger))
        try await group.run()
        logger.info("sluice stopped cleanly")
    }

    /// HTTP/1 with `http.idle.timeout.ms` for idle connections and slow heads, and `http.body.timeout.ms` for bodies.
    static func http1(_ config: SluiceConfig, logger: Logger) -> HTTPServerBuilder {
        let bodyTimeout = TimeAmount.milliseconds(config.integer("http.body.timeout.ms"))
        return .http1(configuration: .init(
            additionalChannelHandlers: [RequestBodyDeadline(timeout: bodyTimeout, logger: logger)],
            idleTimeout: .milliseconds(config.integer("http.idle.timeout.ms"))))
    }

    /// A listener on `address` that holds at most `http.max.connections` connections at once.
    static func listener(_ address: HostPort, name: String, _ config: SluiceConfig, logger: Logger) -> ServerConfiguration {
        .init(address: .hostname(address.host, port: address.port), serverName: name,
              availableConnectionsDelegate: MaximumAvailableConnections(config.int("http.max.connections"), logger: logger))
    }

    static func describe(_ address: SocketAddress?, fallback: HostPort) -> String {
        guard let address, let port = address.port else { return fallback.description }
        let host = address.ipAddress ?? fallback.host
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Start-up bookkeeping: the start line once both listeners are bound; the broker's background work once the log
/// is recovered too; readiness (`onReady`) once the saga states are read back as well.
final class Startup: Sendable {
    let config: SluiceConfig
    let logger: Logger
    let onReady: @Sendable (BoundAddresses) -> Void
    private let state = Mutex<(api: String?, metrics: String?, kafka: String?, broker: Broker?, announced: Bool, brokerReady: Bool, sagasLoaded: Bool,
                               ready: Bool, report: (@Sendable () -> Void)?)>((nil, nil, nil, nil, false, false, false, false, nil))
    private let kafkaEnabled: Bool

    init(config: SluiceConfig, logger: Logger, onReady: @escaping @Sendable (BoundAddresses) -> Void) {
        self.config = config
        self.logger = logger
        self.onReady = onReady
        self.kafkaEnabled = config.kafkaBindAddress != nil
    }

    func listenerUp(api: String? = nil, metricsAddress: String? = nil, kafka: String? = nil) {
        let kafkaEnabled = self.kafkaEnabled
        state.withLock { state in
            if let api { state.api = api }
            if let metricsAddress { state.metrics = metricsAddress }
            if let kafka { state.kafka = kafka }
            guard let a = state.api, let m = state.metrics, !kafkaEnabled || state.kafka != nil, !state.announced else { return }
            state.announced = true
            // Written under the lock, so that no other line (the recovery report) can come first: tools read the
            // bound addresses from the first line.
            var metadata: Logger.Metadata = [
                "api.address": .string(a), "metrics.address": .string(m),
                "kafka.address": .string(state.kafka ?? "off"), "data.dir": .string(config.dataDirectory),
                "log.backend": .string(config.string("log.backend")),
            ]
            if config.logBackend == .kafka { metadata["cluster.bootstrap.servers"] = .string(config.string("cluster.bootstrap.servers")) }
            logger.info("sluice started", metadata: metadata)
            state.report?()
            state.report = nil
        }
        becomeReadyIfDone()
    }

    /// Records the recovered broker; `report` (the recovery log lines) runs after the start line.
    func brokerRecovered(_ broker: Broker, report: @escaping @Sendable () -> Void) {
        state.withLock { state in
            state.broker = broker
            if state.announced { report() } else { state.report = report }
        }
        becomeReadyIfDone()
    }

    /// The saga engine has read its states back.
    func sagasLoaded() {
        state.withLock { $0.sagasLoaded = true }
        becomeReadyIfDone()
    }

    private func becomeReadyIfDone() {
        let kafkaEnabled = self.kafkaEnabled
        let (markBroker, ready) = state.withLock { state -> (Broker?, BoundAddresses?) in
            guard !state.ready, let broker = state.broker, let a = state.api, let m = state.metrics, !kafkaEnabled || state.kafka != nil else { return (nil, nil) }
            let markBroker = state.brokerReady ? nil : broker
            state.brokerReady = true
            guard state.sagasLoaded else { return (markBroker, nil) }
            state.ready = true
            return (markBroker, BoundAddresses(api: a, metrics: m, kafka: state.kafka))
        }
        // Background work (deliveries, the saga engine's load) starts once the broker is ready.
        markBroker?.markReady()
        if let ready { onReady(ready) }
    }
}

/// Waits for graceful shutdown, then ends the broker's long polls (see ``Broker/endLongPolls()``).
struct LongPollCutoff: Service {
    let holder: BrokerHolder

    func run() async throws {
        try? await gracefulShutdown()
        holder.broker?.endLongPolls()
    }
}

/// Recovers the log, keeps maintenance running and, on graceful shutdown, writes what was accepted and closes
/// the log.
struct BrokerService: Service {
    let config: SluiceConfig
    let metrics: SluiceMetrics
    let logger: Logger
    let holder: BrokerHolder
    let startup: Startup
    let spans: EventSpans?
    let remote: (any RemoteLog)?

    func run() async throws {
        let broker: Broker
        do {
            broker = try Broker(config: config, metrics: metrics, logger: logger, remote: remote)
        } catch {
            await remote?.close()
            throw error
        }
        let groups: GroupCoordinator
        let delivery: DeliveryService
        let sagas: SagaEngine
        let traces: TraceIndex?
        do {
            groups = try GroupCoordinator(broker: broker)
            traces = config.bool("trace.enabled") ? try TraceIndex(settings: TraceSettings(config: config), metrics: metrics, logger: logger) : nil
            delivery = try DeliveryService(groups: groups, logger: logger, traces: traces, spans: spans)
            sagas = SagaEngine(catalog: try SagaCatalog.load(config: config), groups: groups, logger: logger, traces: traces, spans: spans)
            // Transactions a crash left unfinished are committed (with their consumer offsets) or aborted before
            // anything reads.
            let commitOffsets: @Sendable ([GroupPartition: CommittedOffset]) async throws -> Void = { [groups] offsets in
                for (group, commits) in Dictionary(grouping: offsets, by: { $0.key.group }) {
                    try await groups.commitKafkaOffsets(group: group, Dictionary(uniqueKeysWithValues: commits.map { ($0.key, $0.value) }))
                }
            }
            broker.transactions.commitOffsets(with: commitOffsets)
            try await broker.recoverTransactions(applyOffsets: commitOffsets)
        } catch {
            try await broker.shutdown()
            throw error
        }
        let recovery = broker.log.recovery
        let flows = traces.map { _ in FlowMap() }
        holder.set(broker, groups: groups, delivery: delivery, sagas: sagas, traces: traces, flows: flows)
        startup.brokerRecovered(broker) { [logger] in Self.report(recovery, logger: logger) }
        let maintenance = Task { await broker.runMaintenance() }
        let groupWork = Task { await groups.run() }
        let deliveryWork = Task { await delivery.run() }
        let sagaWork = Task { await sagas.run(onLoaded: startup.sagasLoaded) }
        let traceWork = traces.map { traces in
            let tailer = TraceTailer(broker: broker, index: traces, deliverers: delivery.deliveryTargets, skip: delivery.isDeadLetterTopic,
                                     flows: flows ?? FlowMap())
            return (Task { await tailer.run() }, Task { await traces.run() })
        }
        try? await gracefulShutdown()
        // Sagas and deliveries stop first (recording what they changed, finishing attempts in progress and
        // committing), then the log closes.
        sagaWork.cancel()
        await sagaWork.value
        deliveryWork.cancel()
        await deliveryWork.value
        // HTTP members of the cluster's groups leave, so their partitions go to other agents' members at once.
        await groups.leaveClusterMembers()
        if let (tailing, upkeep) = traceWork {
            tailing.cancel()
            await tailing.value
            upkeep.cancel()
            await upkeep.value
        }
        maintenance.cancel()
        groupWork.cancel()
        logger.info("shutting down: writing accepted events and closing the log")
        try await broker.shutdown()
        groups.store.close()
    }

    static func report(_ recovery: RecoveryReport, logger: Logger) {
        logger.info("log recovered", metadata: [
            "clean_shutdown": .stringConvertible(recovery.cleanShutdown), "topics": .stringConvertible(recovery.topics),
            "partitions": .stringConvertible(recovery.partitions), "segments": .stringConvertible(recovery.segments),
            "recovery_seconds": .stringConvertible(recovery.duration),
            "file_descriptors.needed": .stringConvertible(recovery.descriptorsNeeded),
            "file_descriptors.limit": .stringConvertible(recovery.descriptorLimit),
        ])
        for damage in recovery.damages {
            let metadata: Logger.Metadata = [LogField.topic: .string(damage.topic), LogField.partition: .stringConvertible(damage.partition),
                                             "file.path": .string(damage.file), "position": .stringConvertible(damage.position)]
            if damage.repaired {
                logger.warning("\(damage.description)", metadata: metadata)
            } else {
                logger.error("\(damage.description)", metadata: metadata)
            }
        }
    }
}
