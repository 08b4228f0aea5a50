import Foundation
import SluiceBroker
import SluiceTelemetry
import Testing

/// Offset resets (Kafka's `--reset-offsets` modes) and subscription rewinds (projection rebuilds).
@Suite("Offset resets and rewinds", .serialized)
struct ResetTests {
    func reset(_ base: String, _ group: String, _ body: [String: Any]) async throws -> HTTPResult {
        try await http("POST", base + "/v1/groups/\(group)/offsets/reset", body: json(body))
    }

    func committed(_ base: String, _ group: String) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for row in try await http("GET", base + "/v1/groups/\(group)").json["partitions"] as? [[String: Any]] ?? [] {
            out["\(row["topic"]!)/\(row["partition"]!)"] = row["committed_offset"] as? Int
        }
        return out
    }

    @Test("every reset mode lands on the offset Kafka's tool would choose; a dry run changes nothing; bad requests say what to fix")
    func modes() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let base = agent.base
            let client = GroupClient(base: base)
            #expect(try await http("POST", base + "/v1/topics", body: json(["name": "orders", "partitions": 1])).status == 201)
            #expect(try await http("POST", base + "/v1/topics", body: json(["name": "payments", "partitions": 3])).status == 201)
            try await client.publish("orders", count: 10, prefix: "early")
            try await Task.sleep(for: .milliseconds(150))
            let between = Timestamp.rfc3339Millis()
            try await Task.sleep(for: .milliseconds(150))
            try await client.publish("orders", count: 5, prefix: "late")
            try await client.publish("payments", count: 30, prefix: "p")
            #expect(try await client.commit("g", [("orders", 0, 12)]).status == 200)

            // Dry run: the plan, nothing committed.
            var r = try await reset(base, "g", ["to": "earliest", "dry_run": true])
            #expect(r.status == 200, "\(r.text)")
            let row = try #require((r.json["partitions"] as? [[String: Any]])?.first)
            #expect(row["previous_offset"] as? Int == 12 && row["new_offset"] as? Int == 0 && row["log_end_offset"] as? Int == 15, "\(row)")
            #expect(try await committed(base, "g") == ["orders/0": 12])

            // Each mode on the partitions the group has committed (orders/0, 15 records, 10 of them before `between`).
            let cases: [([String: Any], Int)] = [
                (["to": "earliest"], 0), (["to": "latest"], 15), (["to": 3], 3), (["to": 99], 15), (["to": -5], 0),
                (["to": 15], 15), (["shift_by": -2], 13), (["shift_by": 100], 15), (["shift_by": -100], 0), (["shift_by": 4], 4),
                (["to": between], 10), (["to": "2100-01-01T00:00:00Z"], 15), (["by_duration": "1h"], 0), (["by_duration": "PT0S"], 15),
                (["by_duration": "10m"], 0), (["to": "1970-01-01T00:00:00Z"], 0),
            ]
            for (body, expected) in cases {
                r = try await reset(base, "g", body)
                #expect(r.status == 200, "\(body): \(r.text)")
                #expect(try await committed(base, "g") == ["orders/0": expected], "\(body)")
            }

            // Scopes: a whole topic (partitions without a commit have none before), or some partitions of it.
            r = try await reset(base, "g", ["to": "earliest", "topics": ["payments"]])
            let rows = r.json["partitions"] as? [[String: Any]] ?? []
            #expect(rows.count == 3 && rows.allSatisfy { $0["previous_offset"] is NSNull && $0["new_offset"] as? Int == 0 }, "\(r.text)")
            r = try await reset(base, "g", ["to": "latest", "topics": ["payments:0,2"]])
            #expect((r.json["partitions"] as? [[String: Any]])?.map { $0["partition"] as! Int } == [0, 2], "\(r.text)")
            let after = try await committed(base, "g")
            #expect(after["payments/1"] == 0 && after["orders/0"] == 0 && after["payments/0"]! + after["payments/2"]! > 0, "\(after)")

            // Bad requests: 400 (or 404, 409) with a detail that says what to do.
            let bad: [([String: Any], Int, String)] = [
                ([:], 400, "exactly one of"), (["to": "earliest", "shift_by": 1], 400, "exactly one of"), (["to": "yesterday"], 400, "RFC 3339"),
                (["to": true], 400, "'to'"), (["shift_by": 1.5], 400, "integer"), (["by_duration": "soon"], 400, "duration"),
                (["to": "earliest", "topics": ["nope"]], 404, "does not exist"), (["to": "earliest", "topics": ["payments:7"]], 400, "partition 7"),
                (["to": "earliest", "topics": "payments"], 400, "array"), (["to": "earliest", "topics": ["payments:x"]], 400, "TOPIC:P1,P2"),
                (["to": "earliest", "dry_run": "yes"], 400, "true or false"),
            ]
            for (body, status, words) in bad {
                r = try await reset(base, "g", body)
                #expect(r.status == status && (r.json["detail"] as? String ?? "").contains(words), "\(body): \(r.status) \(r.text)")
            }
            r = try await reset(base, "fresh", ["to": "earliest"])
            #expect(r.status == 400 && r.text.contains("no committed offsets"), "\(r.text)")
            r = try await reset(base, "fresh", ["shift_by": -1, "topics": ["orders"]])
            #expect(r.status == 409 && r.text.contains("no committed offset"), "\(r.text)")
            #expect(try await http("GET", base + "/v1/groups/fresh").status == 404, "a refused reset creates no group")

            // An active group is refused, dry run or not; once its member leaves, the reset applies.
            let member = try await client.join("g", client: "worker", topics: ["orders"])["member_id"] as! String
            for dryRun in [true, false] {
                r = try await reset(base, "g", ["to": "latest", "dry_run": dryRun])
                #expect(r.status == 409 && r.text.contains("inactive"), "\(r.text)")
            }
            #expect(try await http("DELETE", base + "/v1/groups/g/members/\(member)").status == 204)
            #expect(try await reset(base, "g", ["to": "latest", "topics": ["orders"]]).status == 200)
            #expect(try await committed(base, "g")["orders/0"] == 15)

            // Every applied reset is logged with the client's address and the offsets before and after.
            let lines = try agent.logLines().filter { $0["message"] as? String == "consumer group offsets reset" }
            #expect(lines.count == cases.count + 3, "\(lines.count)")
            let last = try #require(lines.last)
            #expect((last["client.address"] as? String ?? "").hasPrefix("127.0.0.1:"), "\(last)")
            #expect(last["offsets"] as? String == "orders/0: 0 → 15" && last["reset.to"] as? String == "latest", "\(last)")
            await agent.stop()
        }
    }

    @Test("sluice groups list, describe and reset against a running agent: the plan is printed, --dry-run applies nothing, bad input exits 2")
    func commands() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 1])).status == 201)
            try await client.publish("orders", count: 8, prefix: "c")
            #expect(try await client.commit("billing", [("orders", 0, 6)]).status == 200)

            var result = try await runSluice(["groups", "list", "--api", agent.base], in: dir)
            #expect(result.status == 0 && result.stdout.contains("billing") && result.stdout.contains("empty"), "\(result.stdout) \(result.stderr)")
            result = try await runSluice(["groups", "describe", "billing", "--api", agent.base], in: dir)
            #expect(result.status == 0 && result.stdout.contains("orders") && result.stdout.split(separator: "\n").last!.split(separator: " ").map(String.init).prefix(5) == ["orders", "0", "6", "8", "2"],
                    "\(result.stdout)")

            result = try await runSluice(["groups", "reset", "billing", "--shift-by", "-4", "--dry-run", "--api", agent.base], in: dir)
            #expect(result.status == 0 && result.stdout.contains("dry run"), "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.split(separator: "\n").last!.split(separator: " ").map(String.init).prefix(4) == ["orders", "0", "6", "2"], "\(result.stdout)")
            #expect(try await committed(agent.base, "billing") == ["orders/0": 6])

            result = try await runSluice(["groups", "reset", "billing", "--to-offset", "1", "--topic", "orders:0", "--api", agent.base], in: dir)
            #expect(result.status == 0 && result.stdout.contains("plan for group billing") && result.stdout.contains("applied: 1 partition"), "\(result.stdout) \(result.stderr)")
            #expect(try await committed(agent.base, "billing") == ["orders/0": 1])

            for bad in [["--to-earliest", "--to-latest"], [], ["--by-duration", "later"], ["--to-earliest", "--topic", "orders:9"], ["--to-datetime", "noon"]] {
                result = try await runSluice(["groups", "reset", "billing", "--api", agent.base] + bad, in: dir)
                #expect(result.status == 2 && !result.stderr.isEmpty, "\(bad): \(result.status) \(result.stderr)")
            }
            result = try await runSluice(["groups", "describe", "nobody", "--api", agent.base], in: dir)
            #expect(result.status == 1 && result.stderr.contains("does not exist"), "\(result.stderr)")
            #expect(try await committed(agent.base, "billing") == ["orders/0": 1])
            await agent.stop()
        }
    }

    @Test("a subscription rewind rebuilds a projection: every event again, the re-deliveries marked, new events not, progress on /metrics and in GET, kept over a restart")
    func rewind() async throws {
        try await withTemporaryDirectory { dir in
            let app = TestApp()
            try await app.start()
            defer { Task { await app.stop() } }
            let first = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await first.stop() } }
            let client = DeliveryClient(base: first.base)
            #expect(try await http("POST", first.base + "/v1/topics", body: json(["name": "orders", "partitions": 3])).status == 201)
            #expect(try await client.subscribe("projection", subscriptionBody(app)).status == 201)
            try await client.publish("orders", (0..<60).map { cloudEvent("e\($0)", key: "k\($0 % 7)") })
            #expect(try await app.waitFor { $0.count == 60 })
            // The projection counts events per id; the first build saw each once and none marked.
            #expect(app.received.allSatisfy { $0.headers["x-sluice-rewind"] == nil })
            // Wait until the runner committed everything, so the rewind knows how far it had got.
            #expect(try await client.waitUntil {
                let rows = try await http("GET", first.base + "/v1/groups/projection").json["partitions"] as? [[String: Any]] ?? []
                return rows.reduce(0) { $0 + ($1["committed_offset"] as? Int ?? 0) } == 60
            })

            // Dry run: a plan of 60 events, nothing re-delivered.
            var r = try await http("POST", first.base + "/v1/subscriptions/projection/rewind", body: json(["to": "earliest", "dry_run": true]))
            #expect(r.status == 200 && r.json["events"] as? Int == 60 && r.json["rewind_id"] == nil, "dry run: \(r.text)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(app.received.count == 60)

            // Slow the app down so the rewind's progress can be seen before it ends.
            app.answer { _, _, _ in TestApp.Answer(delayMs: 15) }
            r = try await http("POST", first.base + "/v1/subscriptions/projection/rewind", body: json(["to": "earliest"]))
            #expect(r.status == 200, "\(r.text)")
            let id = try #require(r.json["rewind_id"] as? String)
            #expect(r.json["events"] as? Int == 60)
            let during = try await http("GET", first.base + "/v1/subscriptions/projection").json["rewind"] as? [String: Any] ?? [:]
            #expect(during["id"] as? String == id && during["completed_at"] is NSNull && (during["remaining"] as? Int ?? 0) > 0, "\(during)")

            // Restart in the middle: the rewind goes on, still marked.
            #expect(try await app.waitFor { $0.count >= 75 })
            await first.stop()
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let restarted = DeliveryClient(base: agent.base)
            let resumed = try await http("GET", agent.base + "/v1/subscriptions/projection").json["rewind"] as? [String: Any] ?? [:]
            #expect(resumed["id"] as? String == id && resumed["completed_at"] is NSNull, "the rewind was still going at the restart: \(resumed)")
            app.answer { _, _, _ in TestApp.Answer() }
            #expect(try await restarted.waitUntil {
                (try await http("GET", agent.base + "/v1/subscriptions/projection").json["rewind"] as? [String: Any])?["completed_at"] is String
            }, "the rewind completes")
            let replays = app.received.dropFirst(60)
            #expect(Set(replays.map(\.id)) == Set((0..<60).map { "e\($0)" }), "every event delivered again")
            #expect(replays.allSatisfy { $0.headers["x-sluice-rewind"] == id }, "every re-delivery names the rewind")

            // New events after the rewind are live traffic: no header.
            try await restarted.publish("orders", (0..<5).map { cloudEvent("new\($0)", key: "k\($0)") })
            #expect(try await app.waitFor { $0.filter { $0.id.hasPrefix("new") }.count == 5 })
            #expect(app.received.filter { $0.id.hasPrefix("new") }.allSatisfy { $0.headers["x-sluice-rewind"] == nil })

            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_subscription_rewind_remaining_events", ["subscription": "projection"]) == 0, "\(scrape.split(separator: "\n").filter { $0.contains("rewind") })")
            let logged = try agent.logLines().filter { $0["message"] as? String == "subscription rewind complete: every event delivered before it was delivered again" }
            #expect(logged.first?["rewind.id"] as? String == id)

            // Errors: an unknown subscription, a bad target.
            r = try await http("POST", agent.base + "/v1/subscriptions/nope/rewind", body: json(["to": "earliest"]))
            #expect(r.status == 404, "\(r.text)")
            r = try await http("POST", agent.base + "/v1/subscriptions/projection/rewind", body: json(["to": "sometime"]))
            #expect(r.status == 400 && r.text.contains("RFC 3339"), "\(r.text)")
            await agent.stop()
        }
    }
}
