public import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
public import Synchronization

/// A real HTTP app on loopback that records what Sluice delivers and answers as told, per event.
public final class TestApp: Sendable {
    public struct Delivery: Sendable {
        public var id: String
        public var type: String
        public var key: String?
        public var attempt: Int
        public var at: ContinuousClock.Instant
        public var headers: [String: String]
        public var body: [UInt8]
    }

    /// An answer: status, optional JSON body, optional Retry-After; or a delay before answering.
    public struct Answer: Sendable {
        public var status = 200
        public var body: String?
        public var retryAfter: String?
        public var delayMs = 0

        public init(status: Int = 200, body: String? = nil, retryAfter: String? = nil, delayMs: Int = 0) {
            self.status = status
            self.body = body
            self.retryAfter = retryAfter
            self.delayMs = delayMs
        }
    }

    public let deliveries = Mutex<[Delivery]>([])
    /// Decides the answer from (event id, event type, attempt number as Sluice counts it).
    public let rule = Mutex<@Sendable (String, String, Int) -> Answer>({ _, _, _ in Answer() })
    private let server = Mutex<(task: Task<Void, any Error>, port: Int)?>(nil)

    public init() {}

    public var port: Int { server.withLock { $0?.port ?? 0 } }
    public var url: String { "http://127.0.0.1:\(port)/events" }

    public func answer(_ rule: @escaping @Sendable (String, String, Int) -> Answer) {
        self.rule.withLock { $0 = rule }
    }

    /// Starts on `port` (0 picks one) and returns once it listens.
    public func start(port requested: Int = 0) async throws {
        let router = Router()
        router.post("/events") { request, _ -> Response in
            let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let delivery = Delivery(id: headers["ce-id"] ?? "", type: headers["ce-type"] ?? "", key: headers["ce-partitionkey"],
                                    attempt: Int(headers["x-sluice-attempt"] ?? "0") ?? 0, at: .now, headers: headers, body: body)
            self.deliveries.withLock { $0.append(delivery) }
            let answer = self.rule.withLock { $0 }(delivery.id, delivery.type, delivery.attempt)
            if answer.delayMs > 0 { try await Task.sleep(for: .milliseconds(answer.delayMs)) }
            var fields = HTTPFields()
            if let retryAfter = answer.retryAfter { fields[.retryAfter] = retryAfter }
            if answer.body != nil { fields[.contentType] = "application/json" }
            return Response(status: .init(code: answer.status), headers: fields,
                             body: .init(byteBuffer: ByteBuffer(string: answer.body ?? "")))
        }
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: requested), serverName: "test-app"),
                              onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) })
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = stream.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        server.withLock { $0 = (task, port) }
    }

    /// Stops listening (connections are then refused) until `start(port:)` again.
    public func stop() async {
        guard let (task, _) = server.withLock({ $0 }) else { return }
        task.cancel()
        _ = await task.result
    }

    public var received: [Delivery] { deliveries.withLock { $0 } }

    /// Waits until `condition` holds for the deliveries received (or the timeout passes), and says whether it did.
    public func waitFor(_ condition: @escaping ([Delivery]) -> Bool, timeout: Double = 20) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(received) { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return condition(received)
    }
}
