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
            let handler = KafkaRequestHandler(broker: broker, advertised: HostPort("127.0.0.1:9092")!, token: nil, logger: Self.quiet)
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
                case .respond(let buffer), .respondThenClose(let buffer, _): #expect(buffer.readableBytes >= 4)
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
            let handler = KafkaRequestHandler(broker: broker, advertised: HostPort("127.0.0.1:9092")!, token: "secret", logger: Self.quiet)
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
            let valid: [(KafkaAPI, Int16, [UInt8])] = [
                (.produce, 3, Array(produce.buffer.readableBytesView)),
                (.fetch, 4, Array(fetch.buffer.readableBytesView)),
                (.metadata, 4, Array(metadata.buffer.readableBytesView)),
                (.saslAuthenticate, 0, Array(sasl.buffer.readableBytesView)),
            ]
            let input = zip(Gen.int(in: 0...(valid.count - 1)), Gen.int(in: 0...10_000), Gen.uint8(in: 0...255), Gen.bool)
            await propertyCheck(count: 1500, input: input) { which, position, byte, cut in
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
