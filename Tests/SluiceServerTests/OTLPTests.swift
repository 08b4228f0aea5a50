import Foundation
import Synchronization
import Testing

/// `Tests/SluiceServerTests/OTLP/otlp_receiver.py`: a real OTLP/HTTP collector endpoint that decodes spans with the
/// official OpenTelemetry protos and writes them as JSON lines.
final class OTLPReceiver: Sendable {
    let process: Process
    let input: Pipe
    let spansFile: String
    let url: String

    init(spansFile: String) throws {
        self.spansFile = spansFile
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", packageRoot + "/Tests/SluiceServerTests/OTLP/otlp_receiver.py", spansFile]
        let output = Pipe()
        input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        guard line.hasPrefix("PORT "), let port = Int(line.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw AgentDidNotStart(description: "the OTLP receiver did not start (is opentelemetry-proto installed?): \(line)")
        }
        url = "http://127.0.0.1:\(port)"
    }

    /// Every span received so far.
    var spans: [[String: Any]] {
        ((try? String(contentsOfFile: spansFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Waits until `condition` holds for the spans received; returns them as last seen.
    func waitFor(timeout: Double = 30, _ condition: ([[String: Any]]) -> Bool) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(spans) { return spans }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the spans never met the condition; received: \(spans.map { "\($0["name"] ?? "?") \($0["span_id"] ?? "") ← \($0["parent_span_id"] ?? "")" })")
        return spans
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

extension [[String: Any]] {
    func named(_ name: String) -> [[String: Any]] { filter { $0["name"] as? String == name } }
    func children(of span: [String: Any]) -> [[String: Any]] { filter { $0["parent_span_id"] as? String == span["span_id"] as? String } }
}

func attributes(_ span: [String: Any]?) -> [String: Any] { span?["attributes"] as? [String: Any] ?? [:] }

/// A W3C traceparent's trace id and span id.
func traceIds(_ traceparent: String?) -> (trace: String, span: String)? {
    let parts = (traceparent ?? "").split(separator: "-")
    guard parts.count == 4 else { return nil }
    return (String(parts[1]), String(parts[2]))
}

func randomHex(_ bytes: Int) -> String { (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }

@Suite("OpenTelemetry export", .serialized)
struct OTLPTests {
    static let sagaYAML = """
        sagas:
          - type: fulfil
            steps:
              - name: reserve
                command: {topic: stock, type: stock.reserve}
                success: stock.reserved
                failure: stock.unavailable
                reply_topic: replies
                timeout_ms: 20000
                compensation: none
              - name: ship
                command: {topic: stock, type: ship.schedule}
                success: ship.scheduled
                failure: ship.failed
                reply_topic: replies
                timeout_ms: 20000
        """

    @Test("spans for publish, delivery attempts, the dead letter, the replay and saga steps reach a real OTLP/HTTP receiver, parent to child across publish → delivery → app → saga reply, continuing the caller's traceparent and passing each span's on")
    func journey() async throws {
        try await withTemporaryDirectory { dir in
            let receiver = try OTLPReceiver(spansFile: dir + "/spans.jsonl")
            defer { receiver.stop() }
            let app = TestApp()
            try await app.start()
            try Self.sagaYAML.write(toFile: dir + "/sagas.yaml", atomically: true, encoding: .utf8)
            let agent = try await startServed(dir, ["--otlp-endpoint", receiver.url, "--linger-ms", "0", "--sagas-file", dir + "/sagas.yaml"],
                                              environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"])
            defer { agent.stop() }
            let client = DeliveryClient(base: agent.base)
            for topic in ["stock", "replies", "checkout"] {
                _ = try await http("POST", agent.base + "/v1/topics", body: json(["name": topic, "partitions": 1]))
            }
            let failing = Mutex(true)
            app.answer { _, type, _ in
                type == "checkout.requested" && failing.withLock({ $0 }) ? TestApp.Answer(status: 500, body: "{\"error\": \"down for the test\"}") : TestApp.Answer()
            }
            #expect(try await client.subscribe("stock-app", subscriptionBody(app, topics: ["stock"])).status == 201)
            #expect(try await client.subscribe("billing", subscriptionBody(app, topics: ["checkout"], retry: ["max_attempts": 2, "initial_backoff_ms": 50])).status == 201)

            // 1. A publish that fails twice, is dead-lettered and replayed, under the caller's trace.
            let caller = (trace: randomHex(16), span: randomHex(8))
            try await client.publish("checkout", [cloudEvent("co-1", type: "checkout.requested")], headers: ["traceparent": "00-\(caller.trace)-\(caller.span)-01"])
            #expect(try await client.waitUntil { try await client.deadLetters("checkout.dlq").count == 1 })
            failing.withLock { $0 = false }
            _ = try await client.replay("checkout.dlq", [:])

            var spans = try await receiver.waitFor { spans in
                spans.named("replay billing").count == 1 && spans.named("deliver billing").count == 3 && spans.named("dead-letter checkout.dlq").count == 1
            }
            let publish = try #require(spans.named("publish checkout").first)
            #expect(publish["trace_id"] as? String == caller.trace && publish["parent_span_id"] as? String == caller.span, "\(publish)")
            #expect(publish["kind"] as? String == "producer" && publish["service"] as? String == "sluice")
            let published = attributes(publish)
            #expect(published["cloudevents.event_id"] as? String == "co-1" && published["cloudevents.event_type"] as? String == "checkout.requested")
            #expect(published["cloudevents.event_source"] as? String == "/tests" && published["messaging.destination.name"] as? String == "checkout")
            #expect(published["messaging.kafka.offset"] as? Int == 0 && published["messaging.destination.partition.id"] as? String == "0", "\(published)")
            let failed = spans.children(of: publish).filter { $0["name"] as? String == "deliver billing" }
            #expect(failed.count == 2 && failed.allSatisfy { $0["status"] as? String == "error" && attributes($0)["http.response.status_code"] as? Int == 500 }, "\(failed)")
            #expect(failed.map { attributes($0)["sluice.delivery.attempt"] as? Int } == [1, 2])
            #expect(failed.allSatisfy { $0["kind"] as? String == "client" && attributes($0)["sluice.delivery.outcome"] as? String == "http_error" })
            let deadLetter = try #require(spans.named("dead-letter checkout.dlq").first)
            #expect(deadLetter["parent_span_id"] as? String == publish["span_id"] as? String, "the dead letter is a child of the publish")
            #expect(attributes(deadLetter)["error.type"] as? String == "http_error" && attributes(deadLetter)["sluice.subscription"] as? String == "billing")
            let replay = try #require(spans.named("replay billing").first)
            #expect(replay["parent_span_id"] as? String == deadLetter["span_id"] as? String, "the replay is a child of the dead letter")
            #expect(attributes(replay)["sluice.delivery.outcome"] as? String == "delivered" && (attributes(replay)["sluice.replay.id"] as? String)?.isEmpty == false)
            let replayed = spans.children(of: replay)
            #expect(replayed.map { $0["name"] as? String } == ["deliver billing"] && replayed.first?["status"] as? String != "error")
            #expect([publish, deadLetter, replay].allSatisfy { $0["trace_id"] as? String == caller.trace })
            // The app received each attempt's own span as its traceparent.
            let received = app.received.filter { $0.type == "checkout.requested" }.compactMap { traceIds($0.headers["traceparent"])?.span }
            #expect(Set(received) == Set((failed + replayed).compactMap { $0["span_id"] as? String }), "\(received)")

            // A plain Kafka record carries its producer's trace context as a `traceparent` header (as Kafka clients'
            // instrumentation writes it): its delivery continues that.
            let producer = (trace: randomHex(16), span: randomHex(8))
            let produced = try runProcess("/usr/bin/kcat", ["-b", agent.kafka, "-P", "-t", "checkout", "-H", "traceparent=00-\(producer.trace)-\(producer.span)-01"],
                                          stdin: "plain record\n")
            #expect(produced.status == 0, "\(produced.stderr)")
            spans = try await receiver.waitFor { spans in spans.named("deliver billing").contains { $0["trace_id"] as? String == producer.trace } }
            let plain = spans.named("deliver billing").first { $0["trace_id"] as? String == producer.trace }
            #expect(plain?["parent_span_id"] as? String == producer.span && attributes(plain)["messaging.kafka.offset"] as? Int == 1, "\(plain ?? [:])")

            // A caller that does not sample (flags 00): the default sampler follows it, so no span is made and the
            // caller's context reaches the app unchanged.
            let unsampled = "00-\(randomHex(16))-\(randomHex(8))-00"
            try await client.publish("checkout", [cloudEvent("co-quiet", type: "checkout.requested")], headers: ["traceparent": unsampled])
            #expect(try await app.waitFor { $0.contains { $0.id == "co-quiet" } })
            #expect(app.received.first { $0.id == "co-quiet" }?.headers["traceparent"] == unsampled)

            // 2. A saga started under the caller's trace: each command is delivered to the app, which replies under
            //    its own span; the next step is a child of that reply's publish.
            let starter = (trace: randomHex(16), span: randomHex(8))
            let started = try await http("POST", agent.base + "/v1/sagas/fulfil?id=otlp-saga", headers: ["traceparent": "00-\(starter.trace)-\(starter.span)-01"],
                                         body: json(["order_id": "o-9"]))
            #expect(started.status == 201, "\(started.text)")
            var appSpans: [String] = []
            for (command, reply) in [("stock.reserve", "stock.reserved"), ("ship.schedule", "ship.scheduled")] {
                #expect(try await app.waitFor { $0.contains { $0.type == command } })
                let delivery = try #require(app.received.first { $0.type == command })
                let context = try #require(traceIds(delivery.headers["traceparent"]), "the command arrived without a traceparent")
                #expect(context.trace == starter.trace, "\(delivery.headers)")
                // The app's own span, under the delivery's; its reply carries it.
                let appSpan = randomHex(8)
                appSpans.append(appSpan)
                try await client.publish("replies", [cloudEvent("reply-\(command)", type: reply, extra: ["correlationid": "otlp-saga", "causationid": delivery.id])],
                                         headers: ["traceparent": "00-\(context.trace)-\(appSpan)-01"])
            }
            spans = try await receiver.waitFor { spans in spans.named("publish replies").count == 2 && spans.named("deliver stock-app").count == 2 }
            let reserve = try #require(spans.named("saga fulfil reserve").first)
            #expect(reserve["trace_id"] as? String == starter.trace && reserve["parent_span_id"] as? String == starter.span, "\(reserve)")
            #expect(attributes(reserve)["sluice.saga.id"] as? String == "otlp-saga" && attributes(reserve)["sluice.saga.step"] as? String == "reserve")
            #expect(attributes(reserve)["messaging.destination.name"] as? String == "stock" && attributes(reserve)["cloudevents.event_type"] as? String == "stock.reserve")
            let firstDelivery = try #require(spans.children(of: reserve).first { $0["name"] as? String == "deliver stock-app" })
            let firstReply = try #require(spans.named("publish replies").first { $0["parent_span_id"] as? String == appSpans[0] })
            #expect(firstReply["trace_id"] as? String == starter.trace)
            let ship = try #require(spans.named("saga fulfil ship").first)
            #expect(ship["parent_span_id"] as? String == firstReply["span_id"] as? String, "the next step is a child of the reply's publish")
            let secondDelivery = try #require(spans.children(of: ship).first { $0["name"] as? String == "deliver stock-app" })
            #expect(app.received.first { $0.type == "stock.reserve" }.flatMap { traceIds($0.headers["traceparent"])?.span } == firstDelivery["span_id"] as? String)
            #expect(app.received.first { $0.type == "ship.schedule" }.flatMap { traceIds($0.headers["traceparent"])?.span } == secondDelivery["span_id"] as? String)
            #expect(spans.named("publish replies").contains { $0["parent_span_id"] as? String == appSpans[1] })
            _ = try await SagaClient(base: agent.base).finished("otlp-saga")
            let quietTrace = String(unsampled.split(separator: "-")[1])
            #expect(!receiver.spans.contains { $0["trace_id"] as? String == quietTrace }, "a span of an unsampled trace was exported")
            await app.stop()
        }
    }

    @Test("without otlp.endpoint no span is made and nothing is added to events; a malformed endpoint stops the agent with exit 2 and says what to give")
    func offAndMisconfigured() async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            let agent = try await startServed(dir, ["--linger-ms", "0"])
            defer { agent.stop() }
            let client = DeliveryClient(base: agent.base)
            #expect(try await client.subscribe("plain", subscriptionBody(app, topics: ["orders"])).status == 201)
            try await client.publish("orders", [cloudEvent("plain-1")])
            #expect(try await app.waitFor { $0.contains { $0.id == "plain-1" } })
            #expect(app.received.first?.headers["traceparent"] == nil, "off, Sluice invents no trace context")
            let read = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0")
            #expect(!read.text.contains("traceparent"), "off, the stored event is as published: \(read.text)")
            await app.stop()

            for bad in ["ftp://127.0.0.1:4318", "127.0.0.1:4318", "http://127.0.0.1:4318/?x=1"] {
                let result = try runProcess(sluiceBinary, ["serve", "--data-dir", dir + "/bad", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                                                           "--kafka-address", "off", "--otlp-endpoint", bad])
                #expect(result.status == 2, "\(bad): \(result.stderr)")
                #expect(result.stderr.contains("otlp.endpoint=\(bad)") && result.stderr.contains("http://127.0.0.1:4318"), "\(result.stderr)")
            }
        }
    }
}
