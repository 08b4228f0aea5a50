import Foundation
import SluiceBroker
import SluiceDelivery
import SluiceTelemetry
import Synchronization
import Testing

/// Helpers for subscriptions and dead letters over HTTP.
struct DeliveryClient {
    var base: String

    func subscribe(_ name: String, _ body: [String: Any]) async throws -> HTTPResult {
        try await http("PUT", base + "/v1/subscriptions/\(name)", body: json(body))
    }

    func publish(_ topic: String, _ events: [[String: Any]], headers: [String: String] = [:]) async throws {
        let r = try await http("POST", base + "/v1/topics/\(topic)/events", headers: batch.merging(headers) { $1 }, body: json(events))
        #expect(r.status == 200, "publish: \(r.text)")
    }

    func deadLetters(_ topic: String) async throws -> [[String: Any]] {
        try await http("GET", base + "/v1/dlq/\(topic)?limit=10000").json["dead_letters"] as? [[String: Any]] ?? []
    }

    func replay(_ topic: String, _ filters: [String: Any]) async throws -> [String: Any] {
        let r = try await http("POST", base + "/v1/dlq/\(topic)/replay", body: json(filters))
        #expect(r.status == 202, "replay: \(r.text)")
        let id = r.json["id"] as! String
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let progress = try await http("GET", base + "/v1/dlq/replays/\(id)").json
            if progress["state"] as? String == "done" { return progress }
            try await Task.sleep(for: .milliseconds(25))
        }
        return [:]
    }

    func waitUntil(_ timeout: Double = 20, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(25))
        }
        return try await condition()
    }
}

/// A test app and an agent (with `arguments`) in a temporary directory, both stopped after `body`.
func withAppAndAgent(_ arguments: [String] = ["--linger-ms", "0"],
                     _ body: (String, TestApp, RunningAgent, DeliveryClient) async throws -> Void) async throws {
    try await withTemporaryDirectory { dir in
        let app = TestApp()
        try await app.start()
        let agent: RunningAgent
        do {
            agent = try await startAgent(dir, arguments)
        } catch {
            await app.stop()
            throw error
        }
        do {
            try await body(dir, app, agent, DeliveryClient(base: agent.base))
        } catch {
            await agent.stop()
            await app.stop()
            throw error
        }
        await agent.stop()
        await app.stop()
    }
}

func subscriptionBody(_ app: TestApp, topics: [String] = ["orders"], retry: [String: Any] = [:], extra: [String: Any] = [:]) -> [String: Any] {
    var body: [String: Any] = ["topics": topics, "endpoint": app.url, "start_from": "earliest",
                               "retry": ["max_attempts": 3, "initial_backoff_ms": 20, "max_backoff_ms": 200].merging(retry) { $1 }]
    for (key, value) in extra { body[key] = value }
    return body
}

@Suite("Push delivery", .serialized)
struct DeliveryTests {
    @Test("retries wait min(initial × multiplier^(n−1), max) plus jitter, honour Retry-After, and then succeed")
    func retryTiming() async throws {
        try await withAppAndAgent { dir, app, agent, client in
            app.answer { id, _, attempt in
                if id == "slow" { return attempt < 4 ? TestApp.Answer(status: 500) : TestApp.Answer() }
                if id == "later" { return attempt == 1 ? TestApp.Answer(status: 429, retryAfter: "1") : TestApp.Answer() }
                return TestApp.Answer()
            }
            let retry: [String: Any] = ["max_attempts": 5, "initial_backoff_ms": 100, "multiplier": 2, "max_backoff_ms": 350, "jitter": 0.5]
            #expect(try await client.subscribe("timing", subscriptionBody(app, retry: retry)).status == 201)
            try await client.publish("orders", [cloudEvent("slow", key: "a"), cloudEvent("later", key: "b")])
            #expect(try await app.waitFor { $0.filter { $0.id == "slow" }.count == 4 && $0.filter { $0.id == "later" }.count == 2 })
            let slow = app.received.filter { $0.id == "slow" }
            var policy = RetryPolicy()
            policy.initialBackoffMs = 100
            policy.multiplier = 2
            policy.maxBackoffMs = 350
            policy.jitter = 0.5
            for n in 1...3 {
                let gap = Double((slow[n].at - slow[n - 1].at) / .milliseconds(1))
                let bounds = policy.delayBoundsMs(afterAttempt: n)
                // The lower bound is exact; the upper one allows for scheduling and the HTTP round trip.
                #expect(gap >= Double(bounds.lowerBound) - 2 && gap <= Double(bounds.upperBound) + 60, "gap \(n): \(gap) ms, allowed \(bounds)")
            }
            #expect(policy.delayBoundsMs(afterAttempt: 3) == 350...525, "capped at max_backoff_ms, then jitter")
            let later = app.received.filter { $0.id == "later" }
            let wait = Double((later[1].at - later[0].at) / .milliseconds(1))
            #expect(wait >= 995, "Retry-After: 1 is honoured (waited \(wait) ms)")
            #expect(slow.map(\.attempt) == [1, 2, 3, 4])
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await client.deadLetters("orders.dlq").isEmpty)
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_delivery_retries_total", ["subscription": "timing"]) == 4)
            #expect(sample(scrape, "sluice_delivery_attempts_total", ["subscription": "timing", "outcome": "delivered"]) == 2)
        }
    }

    @Test("a 4xx goes to the DLQ at once with the original record and the failure headers; binary-mode headers reach the app")
    func nonRetryable() async throws {
        try await withAppAndAgent { dir, app, agent, client in
            app.answer { _, type, _ in type == "order.bad" ? TestApp.Answer(status: 422, body: "{\"error\": \"no such sku\"}") : TestApp.Answer() }
            #expect(try await client.subscribe("shop", subscriptionBody(app)).status == 201)
            try await client.publish("orders", [cloudEvent("bad-1", type: "order.bad", key: "cust-7", data: ["sku": "x"])],
                                     headers: ["X-Correlation-ID": "corr-bad-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
            #expect(try await client.waitUntil { try await client.deadLetters("orders.dlq").count == 1 })
            #expect(app.received.filter { $0.id == "bad-1" }.count == 1, "not retried")
            let delivery = try #require(app.received.first)
            #expect(delivery.headers["ce-specversion"] == "1.0" && delivery.headers["ce-source"] == "/tests" && delivery.headers["ce-type"] == "order.bad")
            #expect(delivery.headers["x-correlation-id"] == "corr-bad-1")
            #expect(delivery.headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            #expect(delivery.headers["content-type"] == "application/json")
            #expect(String(decoding: delivery.body, as: UTF8.self) == "{\"sku\":\"x\"}")

            let letter = try #require(try await client.deadLetters("orders.dlq").first)
            let full = try await http("GET", agent.base + "/v1/dlq/orders.dlq/partitions/\(letter["partition"]!)/offsets/\(letter["offset"]!)").json
            let headers = try #require(full["headers"] as? [String: String])
            #expect(headers[DeadLetterHeader.originalTopic] == "orders")
            #expect(headers[DeadLetterHeader.originalOffset] == "0")
            #expect(headers[DeadLetterHeader.attempts] == "1")
            #expect(headers[DeadLetterHeader.errorType] == "rejected")
            #expect(headers[DeadLetterHeader.httpStatus] == "422")
            #expect(headers[DeadLetterHeader.errorMessage]?.contains("no such sku") == true)
            #expect(headers[DeadLetterHeader.correlationId] == "corr-bad-1")
            #expect(headers[DeadLetterHeader.traceparent] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            #expect(headers[DeadLetterHeader.subscription] == "shop" && headers[DeadLetterHeader.group] == "shop")
            #expect(headers["ce_id"] == "bad-1", "the original CloudEvent headers are kept")
            #expect(full["key_base64"] as? String == Data("cust-7".utf8).base64EncodedString())
            #expect((full["event"] as? [String: Any])?["id"] as? String == "bad-1")
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_dlq_events_total", ["topic": "orders", "event_type": "order.bad", "error_type": "rejected"]) == 1)
            #expect(try await client.waitUntil {
                sample(try await http("GET", "http://\(agent.metricsAddress)/metrics").text, "sluice_dlq_depth", ["dlq_topic": "orders.dlq"]) == 1
            })
        }
    }

    @Test("ordering by key: a failing event holds back only its own key; its key's later events follow in order")
    func perKeyOrder() async throws {
        try await withAppAndAgent(["--linger-ms", "0", "--num-partitions", "1"]) { dir, app, agent, client in
            app.answer { id, _, attempt in id == "a-0" && attempt < 4 ? TestApp.Answer(status: 503) : TestApp.Answer() }
            let retry: [String: Any] = ["max_attempts": 5, "initial_backoff_ms": 150, "multiplier": 1, "max_backoff_ms": 150]
            #expect(try await client.subscribe("ordered", subscriptionBody(app, retry: retry, extra: ["circuit_breaker": ["failure_threshold": 100]])).status == 201)
            // One partition, interleaved keys a and b.
            var events: [[String: Any]] = []
            for i in 0..<5 {
                events.append(cloudEvent("a-\(i)", key: "a"))
                events.append(cloudEvent("b-\(i)", key: "b"))
            }
            try await client.publish("orders", events)
            #expect(try await app.waitFor { deliveries in (0..<5).allSatisfy { i in deliveries.contains { $0.id == "a-\(i)" && $0.attempt >= 1 } } })
            let log = app.received
            let firstSuccessOfA0 = try #require(log.firstIndex { $0.id == "a-0" && $0.attempt == 4 })
            // Every b went through while a-0 was still failing.
            for i in 0..<5 { #expect(try #require(log.firstIndex { $0.id == "b-\(i)" }) < firstSuccessOfA0, "b-\(i) was not held back") }
            // a's later events came only after a-0 succeeded, in order.
            let aOrder = log.filter { $0.key == "a" && $0.id != "a-0" }.map(\.id)
            #expect(aOrder == ["a-1", "a-2", "a-3", "a-4"])
            #expect(try #require(log.firstIndex { $0.id == "a-1" }) > firstSuccessOfA0)
            #expect(log.filter { $0.key == "b" }.map(\.id) == ["b-0", "b-1", "b-2", "b-3", "b-4"])
        }
    }

    @Test("an app that is down trips the breaker: nothing is dead-lettered, and everything is delivered when it is back")
    func circuitBreaker() async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            let port = app.port
            await app.stop()  // down: connections are refused
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let client = DeliveryClient(base: agent.base)
            let body = subscriptionBody(app, retry: ["max_attempts": 2, "initial_backoff_ms": 20, "max_backoff_ms": 100],
                                        extra: ["circuit_breaker": ["failure_threshold": 3, "open_ms": 200, "max_open_ms": 400]])
            #expect(try await client.subscribe("fragile", body).status == 201)
            try await client.publish("orders", (0..<20).map { cloudEvent("e\($0)", key: "k\($0)") })
            let metrics = "http://\(agent.metricsAddress)/metrics"
            #expect(try await client.waitUntil {
                sample(try await http("GET", metrics).text, "sluice_circuit_breaker_state", ["subscription": "fragile", "state": "open"]) == 1
            }, "the breaker opened")
            try await Task.sleep(for: .milliseconds(1500))
            var scrape = try await http("GET", metrics).text
            let unavailable = sample(scrape, "sluice_delivery_attempts_total", ["subscription": "fragile", "outcome": "unavailable"]) ?? 0
            // Paused, probing at 200 → 400 ms intervals: a handful of attempts, not 20 events × retries in a loop.
            #expect(unavailable < 40, "\(unavailable) attempts while the app was down")
            #expect(try await client.deadLetters("orders.dlq").isEmpty, "an app that is down must not flood the DLQ")
            #expect((sample(scrape, "sluice_circuit_breaker_transitions_total", ["subscription": "fragile", "state": "half_open"]) ?? 0) >= 1, "it probed")

            try await app.start(port: port)
            #expect(try await app.waitFor { Set($0.map(\.id)).count == 20 }, "all delivered after the app came back")
            scrape = try await http("GET", metrics).text
            #expect(sample(scrape, "sluice_circuit_breaker_state", ["subscription": "fragile", "state": "closed"]) == 1)
            #expect(try await client.deadLetters("orders.dlq").isEmpty)
            let lines = try agent.logLines().compactMap { $0["message"] as? String }
            #expect(lines.contains { $0.hasPrefix("circuit breaker opened") } && lines.contains { $0.hasPrefix("circuit breaker closed") })
            await agent.stop()
            await app.stop()
        }
    }

    @Test("replay: each filter selects its dead letters, the rate limit paces them, failures return with their history, then go to poison")
    func replayFiltersAndPoison() async throws {
        try await withAppAndAgent(["--linger-ms", "0", "--num-partitions", "1"]) { dir, app, agent, client in
            let failing = FailSwitch()
            app.answer { _, type, _ in
                if failing.on.withLock({ $0 }) { return type.hasPrefix("pay.") ? TestApp.Answer(status: 500) : TestApp.Answer(status: 400) }
                return TestApp.Answer()
            }
            #expect(try await client.subscribe("replayer", subscriptionBody(app, retry: ["max_attempts": 1], extra: ["max_replays": 2])).status == 201)
            // 4 pay.* (http_error) and 6 ship.* (rejected) dead letters.
            try await client.publish("orders", (0..<4).map { cloudEvent("p\($0)", type: "pay.failed") } + (0..<6).map { cloudEvent("s\($0)", type: "ship.late") })
            #expect(try await client.waitUntil { try await client.deadLetters("orders.dlq").count == 10 })
            let letters = try await client.deadLetters("orders.dlq")

            // By event type, with a rate limit: 4 events at 10/s take at least 0.3 s.
            failing.on.withLock { $0 = false }
            let started = Date()
            var progress = try await client.replay("orders.dlq", ["event_type": "pay.*", "rate_limit": 10])
            #expect(Date().timeIntervalSince(started) >= 0.3)
            #expect(progress["matched"] as? Int == 4 && progress["delivered"] as? Int == 4)
            let replayed = app.received.filter { $0.type == "pay.failed" && $0.headers["x-sluice-attempt"] != nil }.suffix(4)
            let gaps = zip(replayed, replayed.dropFirst()).map { Double(($1.at - $0.at) / .milliseconds(1)) }
            #expect(gaps.allSatisfy { $0 >= 90 }, "rate limit 10/s: gaps \(gaps)")
            #expect(try await client.deadLetters("orders.dlq").count == 6)

            // By error type (none left of http_error), by offsets, by time range.
            progress = try await client.replay("orders.dlq", ["error_type": "http_error"])
            #expect(progress["matched"] as? Int == 0)
            let ship = letters.filter { ($0["event_type"] as? String) == "ship.late" }.map { $0["offset"] as! Int }.sorted()
            progress = try await client.replay("orders.dlq", ["from_offset": ship[0], "to_offset": ship[1]])
            #expect(progress["matched"] as? Int == 2 && progress["delivered"] as? Int == 2)
            progress = try await client.replay("orders.dlq", ["to": "2000-01-01T00:00:00Z"])
            #expect(progress["matched"] as? Int == 0)
            progress = try await client.replay("orders.dlq", ["subscription": "replayer", "from": "2000-01-01T00:00:00Z", "limit": 1])
            #expect(progress["matched"] as? Int == 1 && progress["delivered"] as? Int == 1)
            #expect(try await http("POST", agent.base + "/v1/dlq/orders.dlq/replay", body: json(["error_type": "boom"])).status == 400)
            #expect(try await http("POST", agent.base + "/v1/dlq/orders.dlq/replay", body: json(["subscription": "nobody"])).status == 404)

            // The last three fail again: back to the DLQ with replays=1, then poison at max_replays=2.
            failing.on.withLock { $0 = true }
            progress = try await client.replay("orders.dlq", [:])
            #expect(progress["matched"] as? Int == 3 && progress["dead_lettered_again"] as? Int == 3)
            let again = try await client.deadLetters("orders.dlq")
            #expect(again.count == 3 && again.allSatisfy { $0["replays"] as? Int == 1 })
            #expect(again.allSatisfy { ($0["attempts"] as? Int ?? 0) == 2 }, "history: attempts accumulate")
            progress = try await client.replay("orders.dlq", [:])
            #expect(progress["poisoned"] as? Int == 3)
            #expect(try await client.deadLetters("orders.dlq").isEmpty)
            let poison = try await http("GET", agent.base + "/v1/topics/orders.poison").json["partitions"] as? [[String: Any]]
            #expect(poison?.first?["log_end_offset"] as? Int == 3)
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_poison_events_total", ["topic": "orders"]) == 3)
            #expect(sample(scrape, "sluice_dlq_replayed_total", ["dlq_topic": "orders.dlq", "outcome": "delivered"]) == 7)
            #expect(sample(scrape, "sluice_dlq_depth", ["dlq_topic": "orders.dlq"]) == 0)
        }
    }

    @Test("one correlation id on every log line of an event's journey: publish, retries, dead letter, replay")
    func correlationJourney() async throws {
        try await withAppAndAgent { dir, app, agent, client in
            app.answer { _, _, _ in TestApp.Answer(status: 500) }
            #expect(try await client.subscribe("journey", subscriptionBody(app, retry: ["max_attempts": 2], extra: ["max_replays": 5])).status == 201)
            try await client.publish("orders", [cloudEvent("j-1", key: "k")], headers: ["X-Correlation-ID": "journey-42"])
            #expect(try await client.waitUntil { try await client.deadLetters("orders.dlq").count == 1 })
            _ = try await client.replay("orders.dlq", [:])
            let lines = try agent.logLines().filter { $0["event.id"] as? String == "j-1" }
            let messages = lines.compactMap { $0["message"] as? String }
            for expected in ["event published", "delivery failed; retrying", "event dead-lettered", "replay failed again; back in the DLQ"] {
                #expect(messages.contains(expected), "missing '\(expected)' in \(messages)")
            }
            #expect(lines.allSatisfy { $0["correlation_id"] as? String == "journey-42" }, "\(lines.map { ($0["message"] ?? "", $0["correlation_id"] ?? "") })")
            #expect(app.received.allSatisfy { $0.headers["x-correlation-id"] == "journey-42" })
        }
    }

    @Test("kill -9 in the middle of delivery loses nothing: every published event is delivered or dead-lettered, every time", arguments: [1, 2])
    func killDuringDelivery(round: Int) async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            defer { Task { await app.stop() } }
            app.answer { id, _, _ in id.hasSuffix("7") ? TestApp.Answer(status: 400) : TestApp.Answer(delayMs: 2) }
            try """
                subscriptions:
                  - name: crashy
                    topics: [orders]
                    endpoint: \(app.url)
                    start_from: earliest
                    concurrency: 8
                    retry: {max_attempts: 2, initial_backoff_ms: 10}
                """.write(toFile: dir + "/sluice.yaml", atomically: true, encoding: .utf8)
            func start() async throws -> (Process, String) {
                try await startServeProcess(dir, ["--config", dir + "/sluice.yaml", "--linger-ms", "1"])
            }
            let (first, api) = try await start()
            defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
            let client = DeliveryClient(base: "http://\(api)")
            var published: Set<String> = []
            for chunk in 0..<10 {
                let events = (0..<50).map { cloudEvent("r\(round)-\(chunk)-\($0)", key: "k\($0 % 13)") }
                try await client.publish("orders", events)
                published.formUnion(events.map { $0["id"] as! String })
            }
            #expect(try await app.waitFor({ $0.count > 100 }, timeout: 30))
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            let deliveredBeforeKill = Set(app.received.map(\.id)).count

            let (second, api2) = try await start()
            defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
            let after = DeliveryClient(base: "http://\(api2)")
            let rejected = published.filter { $0.hasSuffix("7") }
            var settled = false
            var dead: Set<String> = []
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let letters = try await after.deadLetters("orders.dlq")
                dead = Set(try await letters.asyncMap { letter -> String in
                    let full = try await http("GET", "http://\(api2)/v1/dlq/orders.dlq/partitions/\(letter["partition"]!)/offsets/\(letter["offset"]!)").json
                    return (full["event"] as? [String: Any])?["id"] as? String ?? ""
                })
                let delivered = Set(app.received.filter { !$0.id.hasSuffix("7") }.map(\.id))
                if delivered.union(dead) == published { settled = true; break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let delivered = Set(app.received.filter { !$0.id.hasSuffix("7") }.map(\.id))
            #expect(settled, "published \(published.count) = delivered \(delivered.count) + dead-lettered \(dead.count) + pending; missing \(published.subtracting(delivered).subtracting(dead).prefix(5))")
            #expect(dead == rejected, "exactly the rejected events are dead letters (\(dead.count) of \(rejected.count))")
            #expect(deliveredBeforeKill < published.count, "the kill came in the middle of delivery")
            kill(second.processIdentifier, SIGTERM)
            second.waitUntilExit()
        }
    }

    @Test("subscriptions over HTTP: bad definitions get 400 naming the field, one group per subscription, persisted across restarts")
    func subscriptionAPI() async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            defer { Task { await app.stop() } }
            var agent = try await startAgent(dir)
            let client = DeliveryClient(base: agent.base)
            for (body, field) in [
                (["topics": ["orders"]] as [String: Any], "endpoint"),
                (["topics": ["orders"], "endpoint": "ftp://x"], "endpoint"),
                (["endpoint": app.url], "topics"),
                (["topics": ["orders"], "endpoint": app.url, "ordering": "random"], "ordering"),
                (["topics": ["orders"], "endpoint": app.url, "retry": ["max_attempts": 0]], "retry.max_attempts"),
                (["topics": ["orders"], "endpoint": app.url, "retry": ["initial_backoff_ms": 500, "max_backoff_ms": 100]], "retry.max_backoff_ms"),
                (["topics": ["orders"], "endpoint": app.url, "colour": "blue"], "colour"),
            ] {
                let r = try await client.subscribe("s1", body)
                #expect(r.status == 400, "\(body)")
                #expect(r.json["attribute"] as? String == field, "\(r.text)")
            }
            #expect(try await client.subscribe("s1", subscriptionBody(app)).status == 201)
            #expect(try await client.subscribe("s1", subscriptionBody(app, extra: ["concurrency": 4])).status == 200)
            #expect(try await client.subscribe("s2", subscriptionBody(app, extra: ["group": "s1"])).status == 409)
            #expect(try await http("GET", agent.base + "/v1/subscriptions/s1").json["concurrency"] as? Int == 4)
            #expect(try await http("GET", agent.base + "/v1/subscriptions/nope").status == 404)
            await agent.stop()
            agent = try await startAgent(dir)
            let list = try await http("GET", agent.base + "/v1/subscriptions").json["subscriptions"] as? [[String: Any]]
            #expect(list?.map { $0["name"] as? String } == ["s1"], "persisted")
            #expect(try await http("DELETE", agent.base + "/v1/subscriptions/s1").status == 204)
            #expect(try await http("DELETE", agent.base + "/v1/subscriptions/s1").status == 404)
            await agent.stop()
        }
    }
}

final class FailSwitch: Sendable {
    let on = Mutex<Bool>(true)
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

/// Runs the sluice binary without blocking a cooperative thread, capturing its output in files.
func runSluice(_ arguments: [String], in dir: String) async throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: sluiceBinary)
    process.arguments = arguments
    let id = UUID().uuidString
    let out = dir + "/out-\(id)", err = dir + "/err-\(id)"
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    _ = FileManager.default.createFile(atPath: err, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return (process.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "", (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

@Suite("sluice dlq and subscription files", .serialized)
struct DLQCommandTests {
    @Test("sluice dlq list, show and replay against a running agent; bad input exits 2")
    func commands() async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            defer { Task { await app.stop() } }
            let failing = FailSwitch()
            app.answer { _, _, _ in failing.on.withLock { $0 } ? TestApp.Answer(status: 400) : TestApp.Answer() }
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let client = DeliveryClient(base: agent.base)
            #expect(try await client.subscribe("cli", subscriptionBody(app)).status == 201)
            try await client.publish("orders", (0..<3).map { cloudEvent("c\($0)", type: "order.cli", key: "k\($0)") })
            #expect(try await client.waitUntil { try await client.deadLetters("orders.dlq").count == 3 })

            var result = try await runSluice(["dlq", "list", "--api", agent.base], in: dir)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("orders.dlq") && result.stdout.contains(" 3 "), "\(result.stdout)")
            result = try await runSluice(["dlq", "list", "orders.dlq", "--api", agent.base], in: dir)
            #expect(result.stdout.split(separator: "\n").filter { $0.contains("rejected") }.count == 3, "\(result.stdout)")
            let letter = try #require(try await client.deadLetters("orders.dlq").first)
            result = try await runSluice(["dlq", "show", "orders.dlq", "\(letter["partition"]!)", "\(letter["offset"]!)", "--api", agent.base], in: dir)
            #expect(result.status == 0 && result.stdout.contains("\"sluice.dlq.error.type\" : \"rejected\""), "\(result.stdout)")

            failing.on.withLock { $0 = false }
            result = try await runSluice(["dlq", "replay", "orders.dlq", "--api", agent.base, "--rate", "50", "--quiet"], in: dir)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("delivered 3"), "\(result.stdout)")
            #expect(try await client.deadLetters("orders.dlq").isEmpty)

            for bad in [["--rate", "0"], ["--error-type", "nope"], ["--limit", "0"]] {
                result = try await runSluice(["dlq", "replay", "orders.dlq", "--api", agent.base] + bad, in: dir)
                #expect(result.status == 2, "\(bad): \(result.stderr)")
            }
            result = try await runSluice(["dlq", "replay", "orders.dlq", "--api", agent.base, "--from", "yesterday"], in: dir)
            #expect(result.status == 2 && result.stderr.contains("RFC 3339"), "\(result.stderr)")
            result = try await runSluice(["dlq", "list", "--api", "http://127.0.0.1:1"], in: dir)
            #expect(result.status == 1 && result.stderr.contains("cannot reach the agent"), "\(result.stderr)")
            await agent.stop()
            await app.stop()
        }
    }

    @Test("a bad subscription in the config file stops sluice serve with exit 2, naming the file, line and field")
    func badSubscriptionFile() async throws {
        try await withTemporaryDirectory { dir in
            try """
                linger.ms: 5
                subscriptions:
                  - name: good
                    topics: [orders]
                    endpoint: http://127.0.0.1:9/events
                  - name: broken
                    topics: [orders]
                    endpoint: not-a-url
                """.write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
            let result = try await runSluice(["serve", "--config", dir + "/bad.yaml", "--data-dir", dir + "/data",
                                              "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0"], in: dir)
            #expect(result.status == 2)
            #expect(result.stderr.contains("bad.yaml:6") && result.stderr.contains("'endpoint'"), "\(result.stderr)")
        }
    }
}
