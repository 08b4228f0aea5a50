public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
public import SluiceBroker
public import SluiceTelemetry
import Synchronization

/// The Kafka protocol listener: accepts connections, splits them into request frames, and answers each request
/// with ``KafkaRequestHandler`` strictly in order per connection (requests may be pipelined; a long-polling
/// Fetch holds up only its own connection).
///
/// On graceful shutdown it stops accepting, closes idle connections at once and busy ones as soon as their
/// current request is answered, and returns when every connection is closed — before the broker closes the log.
public struct KafkaListener: Service {
    public struct Configuration: Sendable {
        /// The numeric address to bind (port 0 picks a free one).
        public var address: HostPort
        /// What Metadata tells clients to connect to; nil: the bound address.
        public var advertised: HostPort?
        /// Largest request frame (`socket.request.max.bytes`); a larger one closes the connection.
        public var maxRequestBytes: Int
        /// With a token, clients must authenticate with SASL/PLAIN, the token as password.
        public var token: String?

        public init(address: HostPort, advertised: HostPort? = nil, maxRequestBytes: Int = 100 << 20, token: String? = nil) {
            self.address = address
            self.advertised = advertised
            self.maxRequestBytes = maxRequestBytes
            self.token = token
        }

        public init(config: SluiceConfig) throws(ConfigError) {
            guard let address = config.kafkaBindAddress else { throw ConfigError("kafka.address is off") }
            self.init(address: address, advertised: config.kafkaAdvertisedAddress,
                      maxRequestBytes: config.int("socket.request.max.bytes"), token: config.apiToken)
        }
    }

    /// What requests are answered from, once the log is recovered.
    public struct Backend: Sendable {
        public var broker: Broker
        public var groups: GroupCoordinator

        public init(broker: Broker, groups: GroupCoordinator) {
            self.broker = broker
            self.groups = groups
        }
    }

    let configuration: Configuration
    let backend: @Sendable () -> Backend?
    /// The Kafka group coordinator, made once the backend is there (shared by every connection).
    private let kafkaGroups = SharedGroups()
    let metrics: SluiceMetrics
    let logger: Logger
    let onBound: @Sendable (String) -> Void

    /// - Parameters:
    ///   - backend: the broker and group coordinator once the log is recovered; until then requests wait.
    ///   - onBound: called with the bound `host:port` once the listener accepts connections.
    public init(configuration: Configuration, backend: @escaping @Sendable () -> Backend?, metrics: SluiceMetrics, logger: Logger,
                onBound: @escaping @Sendable (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.backend = backend
        self.metrics = metrics
        self.logger = logger
        self.onBound = onBound
    }

    public func run() async throws {
        let maxBytes = configuration.maxRequestBytes
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.address.host, port: configuration.address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(maxBytes: maxBytes)))
                    try channel.pipeline.syncOperations.addHandler(KafkaResponseEncoder())
                    return try NIOAsyncChannel<ByteBuffer, KafkaResponse>(wrappingChannelSynchronously: channel)
                }
            }
        let bound = Self.describe(server.channel.localAddress) ?? configuration.address.description
        let advertised = configuration.advertised ?? HostPort(bound) ?? configuration.address
        let connections = ConnectionRegistry()
        onBound(bound)
        // Session timeouts and join rounds of Kafka groups, until shutdown.
        let groupTimers = Task {
            guard let (_, groups) = await waitForBackend() else { return }
            await groups.run()
        }
        defer { groupTimers.cancel() }
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection, advertised: advertised, connections: connections) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            for channel in connections.shutDown() { channel.close(promise: nil) }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, KafkaResponse>, advertised: HostPort, connections: ConnectionRegistry) async {
        let peer = Self.describe(connection.channel.remoteAddress) ?? "unknown"
        guard let id = connections.register(connection.channel) else {
            try? await connection.channel.close()
            return
        }
        metrics.gauge(MetricName.kafkaConnections).set(Double(connections.count))
        defer {
            connections.remove(id)
            metrics.gauge(MetricName.kafkaConnections).set(Double(connections.count))
        }
        var metadata: Logger.Metadata = [LogField.clientAddress: .string(peer)]
        logger.debug("Kafka connection opened", metadata: metadata)
        var session = KafkaSession(clientAddress: peer, authenticationRequired: configuration.token != nil)
        do {
            try await connection.executeThenClose { inbound, outbound in
                var handler: KafkaRequestHandler?
                for try await frame in inbound {
                    guard connections.begin(id) else { return }
                    metrics.counter(MetricName.kafkaReceivedBytes).increment(by: Int64(frame.readableBytes + 4))
                    if handler == nil {
                        guard let (broker, groups) = await waitForBackend() else { return }
                        handler = KafkaRequestHandler(broker: broker, groups: groups, advertised: advertised, token: configuration.token, logger: logger)
                    }
                    let reply = await handler!.handle(frame, session: &session)
                    if let clientId = session.clientId { metadata[LogField.clientId] = .string(clientId) }
                    switch reply {
                    case .respond(let body):
                        try await write(body, to: outbound)
                    case .none:
                        break
                    case .close(let reason):
                        logger.warning("Kafka connection closed: \(reason)", metadata: metadata)
                        return
                    case .respondThenClose(let body, let reason):
                        try await write(body, to: outbound)
                        logger.warning("Kafka connection closed: \(reason)", metadata: metadata)
                        return
                    }
                    if connections.end(id) { return }
                }
            }
        } catch let error as KafkaFrameTooLarge {
            logger.warning("Kafka connection closed: \(error)", metadata: metadata)
        } catch {
            logger.debug("Kafka connection ended: \(error)", metadata: metadata)
        }
        logger.debug("Kafka connection closed", metadata: metadata)
    }

    private func write(_ response: KafkaResponse, to outbound: NIOAsyncChannelOutboundWriter<KafkaResponse>) async throws {
        metrics.counter(MetricName.kafkaSentBytes).increment(by: Int64(response.size))
        try await outbound.write(response)
    }

    /// The broker and the Kafka groups, waiting (up to a minute) while the log is still being recovered.
    private func waitForBackend() async -> (Broker, KafkaGroups)? {
        for _ in 0..<6000 {
            if let backend = backend() {
                return (backend.broker, kafkaGroups.get(orMake: { KafkaGroups(coordinator: backend.groups, logger: logger) }))
            }
            try? await Task.sleep(for: .milliseconds(10))
            if Task.isCancelled { return nil }
        }
        return nil
    }

    static func describe(_ address: SocketAddress?) -> String? {
        guard let address, let port = address.port, let host = address.ipAddress else { return nil }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A frame larger than `socket.request.max.bytes`, or with a negative size.
struct KafkaFrameTooLarge: Error, CustomStringConvertible {
    var size: Int32
    var limit: Int
    var description: String {
        size < 0 ? "a request frame announced a negative size (\(size))"
            : "a request frame of \(size) bytes is over socket.request.max.bytes (\(limit))"
    }
}

/// Splits the byte stream into request frames: a big-endian int32 size, then that many bytes.
struct KafkaFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxBytes: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let size = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: Int32.self) else { return .needMoreData }
        guard size >= 0, Int(size) <= maxBytes else { throw KafkaFrameTooLarge(size: size, limit: maxBytes) }
        guard buffer.readableBytes >= 4 + Int(size) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(size))!))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes a response's parts in order: buffers as they are, ranges of log files as `FileRegion`s, which the
/// socket sends with `sendfile` (the stored batches are never copied into the process).
final class KafkaResponseEncoder: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = KafkaResponse
    typealias OutboundOut = IOData

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let response = unwrapOutboundIn(data)
        for (index, part) in response.parts.enumerated() {
            let last = index == response.parts.count - 1
            switch part {
            case .bytes(let buffer):
                context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: last ? promise : nil)
            case .file(let range):
                // The handle borrows the range's descriptor; the range owns it and keeps it open until the write
                // is done, when the handle gives it back.
                let file = range.file
                let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: file.descriptor)
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenComplete { _ in
                    _ = try? handle.takeDescriptorOwnership()
                    withExtendedLifetime(file) {}
                }
                if last, let promise { written.futureResult.cascade(to: promise) }
                let start = Int(range.position)
                context.write(wrapOutboundOut(.fileRegion(FileRegion(fileHandle: handle, readerIndex: start, endIndex: start + range.length))),
                              promise: written)
            }
        }
    }
}

/// The open connections, whether each is answering a request, and whether shutdown has begun.
final class ConnectionRegistry: Sendable {
    private struct State {
        var nextId = 0
        var open: [Int: (channel: any Channel, busy: Bool)] = [:]
        var shuttingDown = false
    }
    private let state = Mutex(State())

    var count: Int { state.withLock { $0.open.count } }

    /// Adds a connection; nil once shutdown has begun.
    func register(_ channel: any Channel) -> Int? {
        state.withLock { state in
            guard !state.shuttingDown else { return nil }
            state.nextId += 1
            state.open[state.nextId] = (channel, false)
            return state.nextId
        }
    }

    func remove(_ id: Int) { state.withLock { _ = $0.open.removeValue(forKey: id) } }

    /// Marks the connection busy; false when shutdown has begun (the request is not started).
    func begin(_ id: Int) -> Bool {
        state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.open[id]?.busy = true
            return true
        }
    }

    /// Marks the connection idle; true when it must close now because shutdown has begun.
    func end(_ id: Int) -> Bool {
        state.withLock { state in
            state.open[id]?.busy = false
            return state.shuttingDown
        }
    }

    /// Begins shutdown and returns the idle connections, to be closed now (busy ones close after their request).
    func shutDown() -> [any Channel] {
        state.withLock { state in
            state.shuttingDown = true
            return state.open.values.filter { !$0.busy }.map(\.channel)
        }
    }
}

/// The listener's one ``KafkaGroups``, made on first use.
final class SharedGroups: Sendable {
    private let value = Mutex<KafkaGroups?>(nil)

    func get(orMake make: () -> KafkaGroups) -> KafkaGroups {
        value.withLock { value in
            if let value { return value }
            let made = make()
            value = made
            return made
        }
    }
}
