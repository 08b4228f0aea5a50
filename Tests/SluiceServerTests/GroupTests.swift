import Foundation
import SluiceBroker
import SluiceTelemetry
import Testing

/// Helpers for driving consumer groups over HTTP.
struct GroupClient {
    var base: String

    func join(_ group: String, client: String, topics: [String], _ extra: [String: Any] = [:]) async throws -> [String: Any] {
        var body: [String: Any] = ["topics": topics, "client_id": client, "auto_offset_reset": "earliest"]
        for (key, value) in extra { body[key] = value }
        let r = try await http("POST", base + "/v1/groups/\(group)/members", body: json(body))
        #expect(r.status == 201, "join: \(r.text)")
        return r.json
    }

    func poll(_ group: String, _ member: String, waitMs: Int = 0, max: Int? = nil) async throws -> HTTPResult {
        try await http("POST", base + "/v1/groups/\(group)/members/\(member)/poll?wait_ms=\(waitMs)" + (max.map { "&max=\($0)" } ?? ""))
    }

    func commit(_ group: String, member: String? = nil, _ offsets: [(String, Int, Int)]) async throws -> HTTPResult {
        var body: [String: Any] = ["offsets": offsets.map { ["topic": $0.0, "partition": $0.1, "offset": $0.2] }]
        if let member { body["member_id"] = member }
        return try await http("POST", base + "/v1/groups/\(group)/offsets", body: json(body))
    }

    func describe(_ group: String) async throws -> [String: Any] {
        try await http("GET", base + "/v1/groups/\(group)").json
    }

    /// Publishes `count` events in one request: keyed ones spread by key, unkeyed ones all go to one partition.
    func publish(_ topic: String, count: Int, prefix: String, keyed: Bool = true) async throws {
        let events = (0..<count).map { cloudEvent("\(prefix)-\($0)", key: keyed ? "\(prefix)-k\($0)" : nil) }
        let r = try await http("POST", base + "/v1/topics/\(topic)/events", headers: batch, body: json(events))
        #expect(r.status == 200, "publish: \(r.text)")
    }
}

func partitions(_ object: [String: Any], _ key: String = "assignment") -> Set<String> {
    Set((object[key] as? [[String: Any]] ?? []).map { "\($0["topic"]!)/\($0["partition"]!)" })
}

/// The value of one sample in a Prometheus text scrape, matched by name and exact label set.
func sample(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
        let head = line[..<(line.lastIndex(of: " ") ?? line.endIndex)]
        let metric = head.firstIndex(of: "{").map { String(head[..<$0]) } ?? String(head)
        guard metric == name else { continue }
        var found: [String: String] = [:]
        if let open = head.firstIndex(of: "{") {
            for pair in head[head.index(after: open)..<head.index(before: head.endIndex)].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                found[String(parts[0])] = String(parts[1].dropFirst().dropLast())
            }
        }
        if found == labels { return Double(line[line.index(after: line.lastIndex(of: " ")!)...]) }
    }
    return nil
}

@Suite("Consumer groups", .serialized)
struct GroupTests {
    @Test("three members join and leave: every partition has one owner, moving partitions wait for their old owner, and nothing is read twice",
          arguments: ["range", "sticky"])
    func rebalances(strategy: String) async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--partition-assignment-strategy", strategy, "--lag-interval-ms", "100"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 6])).status == 201)
            try await client.publish("orders", count: 60, prefix: "a")
            let all = Set((0..<6).map { "orders/\($0)" })
            var seen: [String: Int] = [:]
            func consume(_ member: String) async throws -> [String: Any] {
                let r = try await client.poll("workers", member)
                #expect(r.status == 200, "poll: \(r.text)")
                for event in r.json["events"] as? [[String: Any]] ?? [] {
                    seen[(event["event"] as! [String: Any])["id"] as! String, default: 0] += 1
                }
                return r.json
            }

            let a = try await client.join("workers", client: "a", topics: ["orders"])
            let idA = a["member_id"] as! String
            #expect(partitions(a) == all)
            _ = try await consume(idA)  // reads some of the 60 and keeps positions

            let b = try await client.join("workers", client: "b", topics: ["orders"])
            let idB = b["member_id"] as! String
            #expect(b["state"] as? String == "rebalancing")
            #expect(partitions(b, "pending") == partitions(b), "b's partitions stay with a until a polls again")
            #expect((try await consume(idB)["events"] as? [[String: Any]])?.isEmpty == true)
            let afterA = try await consume(idA)  // commits its positions, lets go of b's partitions
            #expect(partitions(afterA).count == 3)
            let nowB = try await consume(idB)
            #expect(partitions(nowB, "pending").isEmpty)
            #expect(partitions(nowB).count == 3)
            #expect(partitions(afterA).isDisjoint(with: partitions(nowB)))

            let c = try await client.join("workers", client: "c", topics: ["orders"])
            let idC = c["member_id"] as! String
            for member in [idA, idB, idC, idA, idB, idC] { _ = try await consume(member) }
            let views = try await [consume(idA), consume(idB), consume(idC)]
            #expect(views.map { partitions($0).count } == [2, 2, 2])
            #expect(views.reduce(Set<String>()) { $0.union(partitions($1)) } == all)
            if strategy == "sticky" {
                // Sticky moves only what balance needs: a and b each gave one partition to c.
                #expect(partitions(views[0]).isSubset(of: partitions(afterA)))
                #expect(partitions(views[1]).isSubset(of: partitions(nowB)))
            } else {
                #expect(partitions(views[0]) == ["orders/0", "orders/1"])
            }
            let described = try await client.describe("workers")
            #expect((described["members"] as? [[String: Any]])?.count == 3)
            #expect(described["state"] as? String == "stable")
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_consumer_group_rebalances_total", ["group": "workers"]) == 3)

            // c leaves: its partitions go back to a and b.
            #expect(try await http("DELETE", agent.base + "/v1/groups/workers/members/\(idC)").status == 204)
            #expect(try await client.poll("workers", idC).status == 404)
            for member in [idA, idB, idA, idB] { _ = try await consume(member) }
            let two = try await [consume(idA), consume(idB)]
            #expect(two.map { partitions($0).count } == [3, 3])
            #expect(partitions(two[0]).union(partitions(two[1])) == all)

            // More events, read to the end by the two members.
            try await client.publish("orders", count: 40, prefix: "b")
            for _ in 0..<10 {
                _ = try await consume(idA)
                _ = try await consume(idB)
            }
            #expect(seen.count == 100, "every event read: \(seen.count) of 100")
            #expect(seen.values.allSatisfy { $0 == 1 }, "no event read twice: \(seen.filter { $0.value > 1 })")
            await agent.stop()
        }
    }

    @Test("a member that misses session.timeout.ms is removed and its partitions reassigned")
    func sessionTimeout() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "4"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            let a = try await client.join("g", client: "a", topics: ["t"], ["session_timeout_ms": 60_000])
            let b = try await client.join("g", client: "b", topics: ["t"], ["session_timeout_ms": 1000])
            let idA = a["member_id"] as! String, idB = b["member_id"] as! String
            _ = try await client.poll("g", idA)
            #expect(partitions(try await client.poll("g", idB).json).count == 2)
            try await Task.sleep(for: .milliseconds(1800))
            let r = try await client.poll("g", idB)
            #expect(r.status == 404)
            #expect((r.json["detail"] as? String)?.contains("session.timeout.ms") == true)
            #expect(partitions(try await client.poll("g", idA).json).count == 4)
            let lines = try agent.logLines()
            #expect(lines.contains { ($0["message"] as? String)?.contains("session timeout") == true && $0["member.id"] as? String == idB })
            await agent.stop()
        }
    }

    @Test("bad requests: invalid names, unknown groups and members, commits beyond the log end or for others' partitions")
    func badInput() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "2", "--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let client = GroupClient(base: agent.base)
            try await client.publish("t", count: 4, prefix: "x")
            var r = try await http("POST", agent.base + "/v1/groups/bad%20name/members", body: json(["topics": ["t"]]))
            #expect(r.status == 400)
            r = try await http("POST", agent.base + "/v1/groups/g/members", body: json(["topics": []]))
            #expect(r.status == 400 && r.json["attribute"] as? String == "topics")
            r = try await http("POST", agent.base + "/v1/groups/g/members", body: json(["topics": ["t"], "assignment_strategy": "roundrobin"]))
            #expect(r.status == 400 && r.json["attribute"] as? String == "assignment_strategy")
            r = try await http("POST", agent.base + "/v1/groups/g/members", body: json(["topics": ["t"], "session_timeout_ms": 10]))
            #expect(r.status == 400)
            #expect(try await http("GET", agent.base + "/v1/groups/nobody").status == 404)
            #expect(try await client.poll("nobody", "m").status == 404)

            let a = try await client.join("g", client: "a", topics: ["t"])
            let b = try await client.join("g", client: "b", topics: ["t"])
            let idA = a["member_id"] as! String, idB = b["member_id"] as! String
            _ = try await client.poll("g", idA)
            let ownedByB = try #require(partitions(try await client.poll("g", idB).json).first)
            let otherPartition = Int(ownedByB.split(separator: "/")[1])!
            r = try await client.commit("g", member: idA, [("t", otherPartition, 0)])
            #expect(r.status == 409, "\(r.text)")
            #expect((r.json["detail"] as? String)?.contains("not assigned to member") == true)
            let end = try await http("GET", agent.base + "/v1/topics/t").json["partitions"] as! [[String: Any]]
            let endOffset = end[otherPartition]["log_end_offset"] as! Int
            r = try await client.commit("g", member: idB, [("t", otherPartition, endOffset + 1)])
            #expect(r.status == 400)
            #expect((r.json["detail"] as? String)?.contains("beyond the end") == true)
            #expect(try await client.commit("g", member: idB, [("t", otherPartition, endOffset)]).status == 200)
            r = try await client.commit("g", [("t", 0, 0)])
            #expect(r.status == 409, "an active group takes commits only from members")
            r = try await client.commit("g", member: idB, [("t", 7, 0)])
            #expect(r.status == 404)
            r = try await http("POST", agent.base + "/v1/groups/g/offsets", body: json(["offsets": [["topic": "t", "partition": 0, "offset": 1.5]]]))
            #expect(r.status == 400)
            #expect(try await http("DELETE", agent.base + "/v1/groups/g").status == 409)
            #expect(try await http("DELETE", agent.base + "/v1/groups/g/members/\(idA)").status == 204)
            #expect(try await http("DELETE", agent.base + "/v1/groups/g/members/\(idB)").status == 204)
            #expect(try await http("DELETE", agent.base + "/v1/groups/g").status == 204)
            #expect(try await http("GET", agent.base + "/v1/groups/g").status == 404)
            await agent.stop()
        }
    }
}
