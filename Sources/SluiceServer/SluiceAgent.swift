import Foundation
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
public import SluiceBroker
public import SluiceTelemetry
import ServiceLifecycle
import Synchronization

/// The addresses the agent bound (with real ports when 0 was asked for).
public struct BoundAddresses: Sendable {
    public var api: String
    public var metrics: String
}

/// `sluice serve`: the broker, the API listener, the metrics listener and maintenance in one `ServiceGroup`,
/// with graceful shutdown on SIGTERM and SIGINT.
///
/// Shutdown order: the API stops accepting and finishes in-flight requests, then the metrics listener stops,
/// then the broker writes everything it accepted, closes the log and writes the clean-shutdown marker.
public enum SluiceAgent {
    public static func run(config: SluiceConfig, logger: Logger, metrics: SluiceMetrics,
                           onReady: @escaping @Sendable (BoundAddresses) -> Void = { _ in }) async throws {
        let broker = try Broker(config: config, metrics: metrics, logger: logger)
        // Hummingbird's and ServiceLifecycle's own lines stay below warning unless tracing, so that Sluice's
        // start line, which names both bound addresses, is the first line after start.
        var frameworkLogger = logger
        frameworkLogger.logLevel = logger.logLevel == .trace ? .trace : max(logger.logLevel, .warning)
        let bound = Mutex<(api: String?, metrics: String?)>((nil, nil))
        @Sendable func listenerUp(api: String? = nil, metricsAddress: String? = nil) {
            let both = bound.withLock { state -> BoundAddresses? in
                if let api { state.api = api }
                if let metricsAddress { state.metrics = metricsAddress }
                guard let a = state.api, let m = state.metrics else { return nil }
                return BoundAddresses(api: a, metrics: m)
            }
            guard let both else { return }
            let recovery = broker.log.recovery
            logger.info("sluice started", metadata: [
                "api.address": .string(both.api), "metrics.address": .string(both.metrics), "data.dir": .string(config.dataDirectory),
                "clean_shutdown": .stringConvertible(recovery.cleanShutdown), "topics": .stringConvertible(recovery.topics),
                "partitions": .stringConvertible(recovery.partitions), "recovery_seconds": .stringConvertible(recovery.duration),
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
            broker.markReady()
            onReady(both)
        }

        let apiRouter = Router(context: BasicRequestContext.self)
        apiRouter.middlewares.add(APIMiddleware(token: config.apiToken, metrics: metrics, logger: logger))
        APIRoutes(broker: broker, logger: logger).register(on: apiRouter)
        let api = Application(
            router: apiRouter,
            configuration: .init(address: .hostname(config.apiAddress.host, port: config.apiAddress.port), serverName: "sluice"),
            onServerRunning: { channel in listenerUp(api: describe(channel.localAddress, fallback: config.apiAddress)) },
            logger: frameworkLogger)

        let metricsRouter = Router(context: BasicRequestContext.self)
        metricsRouter.get(RouterPath(HTTPPath.metrics)) { _, _ in
            Response(status: .ok, headers: [.contentType: SluiceMetrics.contentType], body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        metricsRouter.get(RouterPath(HTTPPath.health)) { _, _ in APIRoutes.health() }
        metricsRouter.get(RouterPath(HTTPPath.ready)) { _, _ in APIRoutes.ready(broker) }
        let metricsApp = Application(
            router: metricsRouter,
            configuration: .init(address: .hostname(config.metricsAddress.host, port: config.metricsAddress.port), serverName: "sluice-metrics"),
            onServerRunning: { channel in listenerUp(metricsAddress: describe(channel.localAddress, fallback: config.metricsAddress)) },
            logger: frameworkLogger)

        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: BrokerService(broker: broker, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: metricsApp),
                .init(service: api),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: frameworkLogger))
        try await group.run()
        logger.info("sluice stopped cleanly")
    }

    static func describe(_ address: SocketAddress?, fallback: HostPort) -> String {
        guard let address, let port = address.port else { return fallback.description }
        let host = address.ipAddress ?? fallback.host
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Keeps the broker's maintenance running and, on graceful shutdown, writes what was accepted and closes the log.
struct BrokerService: Service {
    let broker: Broker
    let logger: Logger

    func run() async throws {
        let maintenance = Task { await broker.runMaintenance() }
        try? await gracefulShutdown()
        maintenance.cancel()
        logger.info("shutting down: writing accepted events and closing the log")
        try await broker.shutdown()
    }
}
