import Foundation
import Logging
import NIOCore
import PropertyBased
import SluiceBroker
import SluiceKafka
import SluiceLog
import SluiceTelemetry
import SluiceTestSupport
import Testing

/// The request decoder and handler under random input: every served API at every served version, with a valid
/// header and a random body, and with valid requests cut short or with bytes flipped. Each must come back with
/// a reply (an answer, silence for acks=0, or closing the connection) — no crash, no hang.
@Suite struct KafkaFuzzTests {
    static let quiet: Logger = {
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        return logger
    }()

    static func broker(_ dir: String) throws -> Broker {
        let config = try SluiceConfig.load(arguments: ["--data-dir", dir + "/data", "--num-partitions", "1", "--kafka-address", "off"])
        return try Broker(config: config, metrics: SluiceMetrics(), logger: quiet)
    }

    static func handler(_ broker: Broker, token: String?) throws -> KafkaRequestHandler {
        KafkaRequestHandler(broker: broker, groups: KafkaGroups(coordinator: try GroupCoordinator(broker: broker), logger: quiet),
                            advertised: HostPort("127.0.0.1:9092")!, token: token, logger: quiet)
    }

    static func frame(api: KafkaAPI, version: Int16, body: [UInt8]) -> ByteBuffer {
        var w = KafkaWriter()
        w.int16(api.rawValue)
        w.int16(version)
        w.int32(1)
        w.nullableString("fuzz")
        w.buffer.writeBytes(body)
        return w.buffer
    }

    @Test("random bodies for every API and version")
    func randomBodies() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try Self.broker(dir)
            let handler = try Self.handler(broker, token: nil)
            let apis = Gen.element(of: KafkaAPI.allCases.flatMap { api in api.versions.map { (api, $0) } })
            // Small lengths so that array counts and string lengths in the random bytes are often plausible.
            let input = zip(apis, Gen.uint8(in: 0...255).array(of: 0...96), Gen.uint8(in: 0...3).array(of: 0...24))
            await propertyCheck(count: 1500, input: input) { pick, noise, small in
                let (api, version) = pick!
                var session = KafkaSession(clientAddress: "127.0.0.1:1", authenticationRequired: false)
                // Mostly-zero bodies reach deeper than uniform noise: zero-length arrays and empty strings.
                let body = small.isEmpty ? noise : small + noise
                let reply = await handler.handle(Self.frame(api: api, version: version, body: body), session: &session)
                switch reply {
                case .respond(let response), .respondThenClose(let response, _): #expect(response.size >= 8)
                case .none, .close: break
                }
            }
            try await broker.shutdown()
        }
    }

    @Test("valid requests cut short or with a byte changed")
    func damagedRequests() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try Self.broker(dir)
            let handler = try Self.handler(broker, token: "secret")
            let batch = try RecordBatch.encode([Record(timestamp: 1_700_000_000_000, key: Array("k".utf8), value: Array("v".utf8))])
            var produce = KafkaWriter()
            produce.nullableString(nil); produce.int16(1); produce.int32(1000)
            produce.array(["t"]) { w, t in w.string(t); w.array([0]) { w, p in w.int32(Int32(p)); w.bytes(batch) } }
            var fetch = KafkaWriter()
            fetch.int32(-1); fetch.int32(0); fetch.int32(1); fetch.int32(1 << 20); fetch.int8(0)
            fetch.array(["t"]) { w, t in w.string(t); w.array([0]) { w, p in w.int32(Int32(p)); w.int64(0); w.int32(1 << 20) } }
            var metadata = KafkaWriter()
            metadata.array(["t"]) { w, t in w.string(t) }; metadata.bool(true)
            var sasl = KafkaWriter()
            sasl.bytes(Array("\u{0}user\u{0}secret".utf8))
            // Group requests outside a rebalance (a JoinGroup would wait out the initial rebalance delay each time).
            var commit = KafkaWriter()
            commit.string("g"); commit.int32(-1); commit.string(""); commit.int64(-1)
            commit.array(["t"]) { w, t in w.string(t); w.array([0]) { w, p in w.int32(Int32(p)); w.int64(1); w.nullableString("meta") } }
            var offsetFetch = KafkaWriter()
            offsetFetch.string("g"); offsetFetch.array(["t"]) { w, t in w.string(t); w.array([Int32(0)]) { w, p in w.int32(p) } }
            var heartbeat = KafkaWriter()
            heartbeat.string("g"); heartbeat.int32(1); heartbeat.string("m-1")
            var coordinator = KafkaWriter()
            coordinator.string("g"); coordinator.int8(0)
            var createTopics = KafkaWriter()
            createTopics.array(["made"]) { w, t in
                w.string(t); w.int32(2); w.int16(1); w.array([Int32]()) { w, p in w.int32(p) }
                w.array([("retention.ms", "1000")]) { w, c in w.string(c.0); w.nullableString(c.1) }
            }
            createTopics.int32(1000); createTopics.bool(false)
            var deleteTopics = KafkaWriter()
            deleteTopics.array(["gone"]) { w, t in w.string(t) }; deleteTopics.int32(1000)
            var createPartitions = KafkaWriter()
            createPartitions.array(["t"]) { w, t in w.string(t); w.int32(3); w.nullableArray(nil as [Int32]?) { w, p in w.int32(p) } }
            createPartitions.int32(1000); createPartitions.bool(true)
            var describeConfigs = KafkaWriter()
            describeConfigs.array(["t"]) { w, t in w.int8(2); w.string(t); w.nullableArray(["retention.ms"]) { w, k in w.string(k) } }
            describeConfigs.bool(true)
            let valid: [(KafkaAPI, Int16, [UInt8])] = [
                (.produce, 3, Array(produce.buffer.readableBytesView)),
                (.fetch, 4, Array(fetch.buffer.readableBytesView)),
                (.metadata, 4, Array(metadata.buffer.readableBytesView)),
                (.saslAuthenticate, 0, Array(sasl.buffer.readableBytesView)),
                (.offsetCommit, 2, Array(commit.buffer.readableBytesView)),
                (.offsetFetch, 1, Array(offsetFetch.buffer.readableBytesView)),
                (.heartbeat, 0, Array(heartbeat.buffer.readableBytesView)),
                (.findCoordinator, 1, Array(coordinator.buffer.readableBytesView)),
                (.createTopics, 1, Array(createTopics.buffer.readableBytesView)),
                (.deleteTopics, 0, Array(deleteTopics.buffer.readableBytesView)),
                (.createPartitions, 0, Array(createPartitions.buffer.readableBytesView)),
                (.describeConfigs, 1, Array(describeConfigs.buffer.readableBytesView)),
            ]
            let input = zip(Gen.int(in: 0...(valid.count - 1)), Gen.int(in: 0...10_000), Gen.uint8(in: 0...255), Gen.bool)
            await propertyCheck(count: 2500, input: input) { which, position, byte, cut in
                let (api, version, body) = valid[which]
                var damaged = body
                if cut { damaged = Array(body.prefix(position % (body.count + 1))) } else { damaged[position % body.count] = byte }
                var session = KafkaSession(clientAddress: "127.0.0.1:1", authenticationRequired: true)
                session.handshakeDone = true
                session.authenticated = api != .saslAuthenticate
                // A Fetch may ask to wait up to 2^31 ms, and Sluice honours that; keep max_wait_ms at 0 so that a
                // changed byte cannot turn one case into a long poll.
                if api == .fetch, damaged.count >= 8 { damaged.replaceSubrange(4..<8, with: [0, 0, 0, 0]) }
                _ = await handler.handle(Self.frame(api: api, version: version, body: damaged), session: &session)
            }
            try await broker.shutdown()
        }
    }
}
