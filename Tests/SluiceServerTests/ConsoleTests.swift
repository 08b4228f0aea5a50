import Foundation
import Synchronization
import Testing

/// Where the console's screenshots are kept after a run (a test artefact).
let consoleScreenshots = packageRoot + "/.build/test-artefacts/console"

@Suite("Web console", .serialized)
struct ConsoleTests {
    @Test("GET /ui in a real headless Chromium: every page loads without console errors and shows the workload's topics, group, subscription, dead letters, saga timeline, trace waterfall and tree, and flow map; the token is asked for; the replay button replays; it fits a phone")
    func browser() async throws {
        try await withTemporaryDirectory { dir in
            let token = "console-test-token-0123456789"
            let auth = ["Authorization": "Bearer \(token)"]
            let app = TestApp()
            try await app.start()
            try OTLPTests.sagaYAML.write(toFile: dir + "/sagas.yaml", atomically: true, encoding: .utf8)
            let agent = try await startServed(dir, ["--linger-ms", "0", "--sagas-file", dir + "/sagas.yaml", "--api-token", token])
            defer { agent.stop() }
            let base = agent.base

            // The page is static and open; the data it reads is not.
            let page = try await http("GET", base + "/ui")
            #expect(page.status == 200 && page.text.contains("<title>Sluice console</title>"))
            #expect(try await http("GET", base + "/v1/flow").status == 401)

            // A workload: a push subscription that dead-letters one event of a correlation, a consumer group, a saga.
            for topic in ["orders", "stock", "replies"] {
                _ = try await http("POST", base + "/v1/topics", headers: auth, body: json(["name": topic, "partitions": 2]))
            }
            let failing = Mutex(true)
            app.answer { _, type, _ in type == "order.failed" && failing.withLock({ $0 }) ? TestApp.Answer(status: 500) : TestApp.Answer() }
            for (name, topic) in [("shop", "orders"), ("stock-app", "stock")] {
                let body = subscriptionBody(app, topics: [topic], retry: ["max_attempts": 1])
                #expect(try await http("PUT", base + "/v1/subscriptions/\(name)", headers: auth, body: json(body)).status == 201)
            }
            let events = [cloudEvent("o-1", type: "order.created", key: "a"), cloudEvent("o-2", type: "order.failed", key: "b")]
                .map { $0.merging(["source": "/shop/checkout"]) { $1 } }
            let published = try await http("POST", base + "/v1/topics/orders/events", headers: batch.merging(auth) { $1 }.merging(["X-Correlation-ID": "console-trace"]) { $1 },
                                            body: json(events))
            #expect(published.status == 200, "\(published.text)")
            let joined = try await http("POST", base + "/v1/groups/reports/members", headers: auth, body: json(["topics": ["orders"], "auto_offset_reset": "earliest"]))
            let member = joined.json["member_id"] as? String ?? ""
            _ = try await http("POST", base + "/v1/groups/reports/members/\(member)/poll?wait_ms=100", headers: auth)
            _ = try await http("POST", base + "/v1/groups/reports/offsets", headers: auth,
                               body: json(["member_id": member, "offsets": [["topic": "orders", "partition": 0, "offset": 2], ["topic": "orders", "partition": 1, "offset": 2]]]))
            #expect(try await http("POST", base + "/v1/sagas/fulfil?id=console-saga", headers: auth, body: json(["order_id": "o-1"])).status == 201)
            for (command, reply) in [("stock.reserve", "stock.reserved"), ("ship.schedule", "ship.scheduled")] {
                #expect(try await app.waitFor { $0.contains { $0.type == command } })
                let delivery = try #require(app.received.first { $0.type == command })
                let answered = try await http("POST", base + "/v1/topics/replies/events", headers: batch.merging(auth) { $1 },
                                              body: json([cloudEvent("r-\(command)", type: reply, extra: ["correlationid": "console-saga", "causationid": delivery.id])]))
                #expect(answered.status == 200)
            }
            let deadline = Date().addingTimeInterval(20)
            var depth = 0
            while Date() < deadline {
                depth = (try await http("GET", base + "/v1/dlq", headers: auth).json["dlq_topics"] as? [[String: Any]])?.first { $0["topic"] as? String == "orders.dlq" }?["depth"] as? Int ?? 0
                if depth == 1 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(depth == 1)
            failing.withLock { $0 = false }

            try? FileManager.default.removeItem(atPath: consoleScreenshots)
            let expect: [String: Any] = ["topic": "orders", "group": "reports", "subscription": "shop", "dlq_topic": "orders.dlq", "saga": "console-saga",
                                         "saga_type": "fulfil", "trace": "console-trace", "source": "/shop/checkout", "token": token]
            let expectJSON = String(decoding: json(expect), as: UTF8.self)
            let result = try runProcess("/usr/bin/env", ["python3", packageRoot + "/Tests/SluiceServerTests/Console/console_check.py", base, consoleScreenshots, expectJSON])
            #expect(result.status == 0, "\(result.stdout)\n\(result.stderr.suffix(3000))")
            // The replay went through the API the button called: the letter is resolved and the app has the event.
            let letters = try await http("GET", base + "/v1/dlq/orders.dlq", headers: auth).json["dead_letters"] as? [[String: Any]]
            #expect(letters?.isEmpty == true, "\(letters ?? [])")
            #expect(app.received.filter { $0.id == "o-2" }.count == 2, "the failed attempt and the replay")
            for shot in ["topics", "groups", "subscriptions", "sagas", "saga-timeline", "traces", "trace", "flow", "dlq", "dlq-letter", "dlq-replayed", "phone-flow"] {
                #expect(FileManager.default.fileExists(atPath: consoleScreenshots + "/\(shot).png"), "no screenshot \(shot).png")
            }
            await app.stop()
        }
    }
}
