import Foundation
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import Synchronization
import Testing

@Suite("Consumer lag", .serialized)
struct LagTests {
    func scrape(_ agent: RunningAgent) async throws -> String {
        try await http("GET", "http://\(agent.metricsAddress)/metrics").text
    }

    @Test("lag in seconds is within one second of the true age of the first unconsumed record; sums and maxima agree")
    func lagSeconds() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--lag-interval-ms", "100"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "clicks", "partitions": 1])).status == 201)
            try await client.publish("clicks", count: 3, prefix: "early")
            try await Task.sleep(for: .milliseconds(1500))
            try await client.publish("clicks", count: 5, prefix: "late")
            // The group has read the first event only.
            #expect(try await client.commit("readers", [("clicks", 0, 1)]).status == 200)
            let read = try await http("GET", agent.base + "/v1/topics/clicks/partitions/0/events?offset=1&max=1").json
            let first = try #require((read["events"] as? [[String: Any]])?.first?["timestamp"] as? String)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let recordTime = try #require(formatter.date(from: first))
            try await Task.sleep(for: .milliseconds(1200))

            let before = Date()
            let text = try await scrape(agent)
            let after = Date()
            let labels = ["group": "readers", "topic": "clicks", "partition": "0"]
            let seconds = try #require(sample(text, "sluice_consumer_group_lag_seconds", labels))
            let trueAge = (before.timeIntervalSince(recordTime), after.timeIntervalSince(recordTime))
            // The background pass runs every 100 ms, so its value is at most that old.
            #expect(seconds > trueAge.0 - 1 && seconds < trueAge.1 + 1, "lag_seconds \(seconds) vs true age \(trueAge)")
            #expect(seconds > 2.0, "the first unconsumed record is over 2.5 s old: \(seconds)")
            #expect(sample(text, "sluice_consumer_group_lag", labels) == 7)
            #expect(sample(text, "sluice_consumer_group_committed_offset", labels) == 1)
            #expect(sample(text, "sluice_consumer_group_expired_records", labels) == 0)
            #expect(sample(text, "sluice_consumer_group_lag_sum", ["group": "readers", "topic": "clicks"]) == 7)
            #expect(sample(text, "sluice_consumer_group_lag_seconds_max", ["group": "readers", "topic": "clicks"]) == seconds)
            let age = try #require(sample(text, "sluice_consumer_group_commit_age_seconds", labels))
            #expect(age >= 1.0 && age < 3)

            // The HTTP view computes the same thing, now.
            let described = try await client.describe("readers")
            let row = try #require((described["partitions"] as? [[String: Any]])?.first)
            #expect(row["lag"] as? Int == 7)
            #expect(abs((row["lag_seconds"] as? Double ?? 0) - Date().timeIntervalSince(recordTime)) < 1)
            let listed = try #require((try await http("GET", agent.base + "/v1/groups").json["groups"] as? [[String: Any]])?.first { $0["name"] as? String == "readers" })
            #expect(listed["lag"] as? Int == 7 && abs((listed["lag_seconds"] as? Double ?? 0) - Date().timeIntervalSince(recordTime)) < 1, "\(listed)")

            // Caught up: zero in both units.
            #expect(try await client.commit("readers", [("clicks", 0, 8)]).status == 200)
            try await Task.sleep(for: .milliseconds(400))
            let caughtUp = try await scrape(agent)
            #expect(sample(caughtUp, "sluice_consumer_group_lag_seconds", labels) == 0)
            #expect(sample(caughtUp, "sluice_consumer_group_lag", labels) == 0)
            await agent.stop()
        }
    }

    @Test("records deleted by retention before the group read them count as expired, not as lag")
    func expiredUnderRetention() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--lag-interval-ms", "100", "--retention-check-interval-ms", "1000"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            let create = try await http("POST", agent.base + "/v1/topics", body: json([
                "name": "short", "partitions": 1, "config": ["retention.ms": "1000", "segment.bytes": "300"],
            ]))
            #expect(create.status == 201, "\(create.text)")
            for i in 0..<12 { try await client.publish("short", count: 1, prefix: "r\(i)") }
            #expect(try await client.commit("slow", [("short", 0, 0)]).status == 200)
            let labels = ["group": "slow", "topic": "short", "partition": "0"]
            var text = ""
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                text = try await scrape(agent)
                if (sample(text, "sluice_consumer_group_expired_records", labels) ?? 0) > 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let topic = try await http("GET", agent.base + "/v1/topics/short").json["partitions"] as! [[String: Any]]
            let start = topic[0]["log_start_offset"] as! Int, end = topic[0]["log_end_offset"] as! Int
            #expect(start > 0, "retention removed old segments")
            #expect(sample(text, "sluice_consumer_group_expired_records", labels) == Double(start))
            #expect(sample(text, "sluice_consumer_group_lag", labels) == Double(end - start))
            await agent.stop()
        }
    }

    @Test("each status is reached by a scripted consumer: OK, WARN, STALL, STOP and ERR")
    func statuses() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/sluice.yaml"
            try "consumer_groups:\n  late:\n    lag.slo.ms: 400\n".write(toFile: file, atomically: true, encoding: .utf8)
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--lag-interval-ms", "100", "--lag-window-ms", "1500"], configFile: file)
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "s", "partitions": 1])).status == 201)
            try await client.publish("s", count: 20, prefix: "seed")
            var end = 20
            var slow = 0
            var late = 0
            let started = Date()
            var cycle = 0
            while Date().timeIntervalSince(started) < 3.2 {
                try await client.publish("s", count: 3, prefix: "c\(cycle)")
                end += 3
                cycle += 1
                _ = try await client.commit("ok", [("s", 0, end)])  // keeps up
                slow += 1
                _ = try await client.commit("warn", [("s", 0, slow)])  // progresses, falls behind
                _ = try await client.commit("stall", [("s", 0, 5)])  // commits, never moves
                if cycle == 1 { _ = try await client.commit("stop", [("s", 0, 5)]) }  // commits once, then silence
                late = min(late + 2, end)
                _ = try await client.commit("late", [("s", 0, late)])  // progresses, but its oldest unread record is older than the 400 ms SLO
                try await Task.sleep(for: .milliseconds(120))
            }
            try await Task.sleep(for: .milliseconds(250))
            let expected = ["ok": "OK", "warn": "WARN", "stall": "STALL", "stop": "STOP", "late": "ERR"]
            let text = try await scrape(agent)
            for (group, status) in expected {
                let described = try await client.describe(group)
                #expect(described["status"] as? String == status, "\(group): \(described["status"] ?? "nil") \(described["partitions"] ?? "")")
                let code = LagStatus.allCases.first { $0.name == status }!.rawValue
                #expect(sample(text, "sluice_consumer_group_status", ["group": group]) == Double(code), "\(group) status gauge")
            }
            await agent.stop()
        }
    }

    @Test("--lag-max-series keeps the most lagging partitions, always keeps sums and maxima, and counts what it left out")
    func cardinalityBudget() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--lag-interval-ms", "100", "--lag-max-series", "2"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "wide", "partitions": 4])).status == 201)
            // Unread records on every partition, published at different times so their ages differ.
            for round in 0..<4 {
                try await client.publish("wide", count: 12, prefix: "round\(round)", keyed: false)
                try await Task.sleep(for: .milliseconds(50))
            }
            let layout = try await http("GET", agent.base + "/v1/topics/wide").json["partitions"] as! [[String: Any]]
            let ends = layout.map { $0["log_end_offset"] as! Int }
            #expect(ends.allSatisfy { $0 > 0 })
            #expect(try await client.commit("budget", (0..<4).map { ("wide", $0, 0) }).status == 200)
            try await Task.sleep(for: .milliseconds(400))
            let text = try await scrape(agent)
            let lagLines = text.split(separator: "\n").filter { $0.hasPrefix("sluice_consumer_group_lag{") }
            #expect(lagLines.count == 2)
            // The two kept are the two with the oldest unconsumed record.
            let rows = try await client.describe("budget")["partitions"] as! [[String: Any]]
            let oldest = rows.sorted { ($0["lag_seconds"] as! Double) > ($1["lag_seconds"] as! Double) }.prefix(2).map { String($0["partition"] as! Int) }
            for partition in oldest {
                #expect(sample(text, "sluice_consumer_group_lag", ["group": "budget", "topic": "wide", "partition": partition]) != nil)
            }
            #expect(sample(text, "sluice_consumer_group_lag_series_omitted") == 10, "2 partitions × 5 families")
            #expect(sample(text, "sluice_consumer_group_lag_sum", ["group": "budget", "topic": "wide"]) == Double(ends.reduce(0, +)))
            await agent.stop()
        }
    }

    @Test("a scrape during heavy publishing and polling returns promptly, with the lag families")
    func scrapeUnderLoad() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "5", "--lag-interval-ms", "100", "--acks", "1", "--enable-idempotence", "false"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "busy", "partitions": 8])).status == 201)
            let member = try await client.join("busy-readers", client: "r", topics: ["busy"])["member_id"] as! String
            let flag = SharedFlag()
            let load = (0..<4).map { worker in
                Task {
                    var n = 0
                    while !flag.stop.load(ordering: .relaxed) {
                        let events = (0..<100).map { cloudEvent("w\(worker)-\(n)-\($0)", key: "k\($0)") }
                        _ = try? await http("POST", agent.base + "/v1/topics/busy/events", headers: batch, body: json(events))
                        n += 1
                    }
                }
            }
            let reader = Task {
                while !flag.stop.load(ordering: .relaxed) { _ = try? await client.poll("busy-readers", member, waitMs: 50, max: 200) }
            }
            try await Task.sleep(for: .milliseconds(500))
            var slowest = 0.0
            for _ in 0..<10 {
                let started = Date()
                let text = try await scrape(agent)
                slowest = max(slowest, Date().timeIntervalSince(started))
                #expect(text.contains("# TYPE sluice_consumer_group_lag gauge"))
                try await Task.sleep(for: .milliseconds(100))
            }
            flag.stop.store(true, ordering: .relaxed)
            for task in load { await task.value }
            await reader.value
            // Generous on a 2-core machine that is also running the load; a scrape that waited on the log would take far longer.
            #expect(slowest < 1.0, "slowest scrape \(slowest) s")
            await agent.stop()
        }
    }

    @Test("sluice_topic_partitions_recommended follows the observed produce rate and the consumer count")
    func liveRecommendation() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--lag-interval-ms", "100", "--partition-throughput-bytes", "20"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "feed", "partitions": 2])).status == 201)
            try await Task.sleep(for: .milliseconds(300))  // the next background pass
            var text = try await scrape(agent)
            #expect(sample(text, "sluice_topic_partitions_recommended", ["topic": "feed"]) == 3, "idle, no consumers: the minimum")
            for member in ["a", "b", "c", "d"] { _ = try await client.join("viewers", client: member, topics: ["feed"]) }
            try await Task.sleep(for: .milliseconds(300))
            text = try await scrape(agent)
            #expect(sample(text, "sluice_topic_partitions_recommended", ["topic": "feed"]) == 8, "4 consumers × 2")
            for round in 0..<5 { try await client.publish("feed", count: 40, prefix: "f\(round)") }
            try await Task.sleep(for: .milliseconds(1300))  // the rates count whole seconds
            text = try await scrape(agent)
            let oneMinute = try #require(sample(text, "sluice_topic_produce_bytes_per_second", ["topic": "feed", "window": "1m"]))
            let fiveMinutes = try #require(sample(text, "sluice_topic_produce_bytes_per_second", ["topic": "feed", "window": "5m"]))
            #expect(oneMinute > 0 && abs(fiveMinutes - oneMinute / 5) < 0.01 * oneMinute)
            let byThroughput = Int((max(oneMinute, fiveMinutes) / 20).rounded(.up))
            #expect(byThroughput > 8, "the load should outweigh the consumer rule: \(byThroughput)")
            #expect(sample(text, "sluice_topic_partitions_recommended", ["topic": "feed"]) == Double(min(max(byThroughput, 8, 3), 100)))
            await agent.stop()
        }
    }

    @Test("committed offsets survive kill -9: every acknowledged commit is there after restart")
    func offsetsSurviveKill() async throws {
        try await withTemporaryDirectory { dir in
            func start() async throws -> (Process, String) {
                try await startServeProcess(dir, ["--num-partitions", "4", "--linger-ms", "0"])
            }
            let (first, api) = try await start()
            defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
            let client = GroupClient(base: "http://\(api)")
            for round in 0..<4 { try await client.publish("durable", count: 50, prefix: "r\(round)") }
            let ends = (try await http("GET", "http://\(api)/v1/topics/durable").json["partitions"] as! [[String: Any]]).map { $0["log_end_offset"] as! Int }

            // Commit ever higher offsets from four tasks (one per partition) and kill -9 in the middle.
            let flag = SharedFlag()
            let committers = (0..<4).map { partition in
                Task {
                    var offset = 0
                    while !flag.stop.load(ordering: .relaxed) && offset < ends[partition] {
                        offset += 1
                        guard let r = try? await client.commit("keeper", [("durable", partition, offset)]), r.status == 200 else { continue }
                        flag.acknowledged.withLock { $0[partition] = offset }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            flag.stop.store(true, ordering: .relaxed)
            for task in committers { await task.value }
            let acked = flag.acknowledged.withLock { $0 }
            #expect(acked.values.reduce(0, +) > 4, "some commits were acknowledged before the kill: \(acked)")

            let (second, api2) = try await start()
            defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
            let described = try await GroupClient(base: "http://\(api2)").describe("keeper")
            var committed: [Int: Int] = [:]
            for row in described["partitions"] as? [[String: Any]] ?? [] { committed[row["partition"] as! Int] = row["committed_offset"] as? Int }
            for (partition, offset) in acked {
                // The last acknowledged commit is there; one more may have landed just before the kill.
                #expect(committed[partition].map { $0 == offset || $0 == offset + 1 } == true, "partition \(partition): acknowledged \(offset), found \(committed[partition].map(String.init) ?? "nothing")")
            }
            kill(second.processIdentifier, SIGTERM)
            second.waitUntilExit()
            #expect(second.terminationStatus == 0)
        }
    }
}

/// State shared between a test and its load tasks.
final class SharedFlag: Sendable {
    let stop = Atomic<Bool>(false)
    let acknowledged = Mutex<[Int: Int]>([:])
}
