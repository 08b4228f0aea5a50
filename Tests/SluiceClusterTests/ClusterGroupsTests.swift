import Foundation
import SluiceTestSupport
import Testing

/// HTTP consumer groups with the log in a cluster: the group is the cluster's, so members that joined through
/// different agents share its partitions, their commits are the cluster's committed offsets (read back by
/// confluent-kafka, an independent client), and a member that stops polling leaves after its session timeout.
@Suite(.serialized) struct ClusterGroupsTests {
    /// One HTTP member: the agent it joined through and its id.
    struct Member {
        let base: String
        let id: String

        var url: String { base + "/v1/groups/billing/members/" + id }

        /// One poll: the ids of the events, what the member owns, and where to commit.
        func poll() async throws -> (ids: [String], owned: Set<String>, positions: [[String: Any]], status: Int) {
            let result = try await http("POST", url + "/poll?wait_ms=300&max=100")
            let events = result.json["events"] as? [[String: Any]] ?? []
            let owned = (result.json["assignment"] as? [[String: Any]] ?? []).map { "\($0["topic"] ?? "")-\($0["partition"] ?? "")" }
            return (events.compactMap { ($0["event"] as? [String: Any])?["id"] as? String }, Set(owned),
                    result.json["positions"] as? [[String: Any]] ?? [], result.status)
        }

        func commit(_ positions: [[String: Any]]) async throws -> HTTPResult {
            try await http("POST", base + "/v1/groups/billing/offsets", headers: ["Content-Type": "application/json"],
                           body: json(["member_id": id, "offsets": positions]))
        }
    }

    static func join(_ agent: ServedAgent) async throws -> Member {
        let joined = try await http("POST", agent.base + "/v1/groups/billing/members", headers: ["Content-Type": "application/json"],
                                    body: json(["topics": ["orders"], "client_id": "billing", "session_timeout_ms": 10000, "enable_auto_commit": false,
                                                "auto_offset_reset": "earliest"]))
        #expect(joined.status == 201, "\(joined.text)")
        return Member(base: agent.base, id: joined.json["member_id"] as? String ?? "")
    }

    static func publish(_ agent: ServedAgent, _ ids: some Sequence<Int>) async throws {
        let events = ids.map { ["specversion": "1.0", "id": "e\($0)", "source": "/groups-test", "type": "order.created", "partitionkey": "k\($0 % 16)"] as [String: Any] }
        let published = try await http("POST", agent.base + "/v1/topics/orders/events", headers: ["Content-Type": "application/cloudevents-batch+json"], body: json(events))
        #expect(published.status == 200, "\(published.text)")
    }

    @Test("members joined through two agents share the cluster's group: partitions split, every event read, commits are the cluster's offsets, a silent member is removed")
    func membersAcrossAgentsShareTheGroup() async throws {
        let cluster = try MockCluster.started(topics: ["orders 4"])
        defer { cluster.stop() }
        try await withTemporaryDirectory { dir in
            let options = ["--log-backend", "kafka", "--cluster-bootstrap-servers", cluster.bootstrapServers, "--kafka-address", "off", "--lag-interval-ms", "500"]
            for agent in ["a", "b"] { try FileManager.default.createDirectory(atPath: dir + "/" + agent, withIntermediateDirectories: true) }
            let first = try await startServed(dir + "/a", options)
            defer { first.stop() }
            let second = try await startServed(dir + "/b", options)
            defer { second.stop() }
            try await Self.publish(first, 0..<200)

            let a = try await Self.join(first), b = try await Self.join(second)
            var seen = Set<String>()
            var split = false
            // What each partition's last accepted commit said (a commit racing a rebalance is refused with 409, and the
            // partition's new owner reads from the older offset and commits it again).
            var committedOffsets: [String: Int] = [:]
            func commit(_ member: Member, _ positions: [[String: Any]]) async throws {
                guard !positions.isEmpty, try await member.commit(positions).status == 200 else { return }
                for position in positions { committedOffsets["\(position["partition"] ?? "")"] = position["offset"] as? Int ?? 0 }
            }
            for _ in 0..<160 where seen.count < 200 || !split || committedOffsets.values.reduce(0, +) != 200 {
                let (idsA, ownedA, positionsA, statusA) = try await a.poll()
                let (idsB, ownedB, positionsB, statusB) = try await b.poll()
                #expect(statusA == 200 && statusB == 200)
                seen.formUnion(idsA + idsB)
                try await commit(a, positionsA)
                try await commit(b, positionsB)
                split = split || (!ownedA.isEmpty && !ownedB.isEmpty && ownedA.isDisjoint(with: ownedB) && ownedA.union(ownedB).count == 4)
            }
            #expect(split, "the two members never owned disjoint halves of the four partitions")
            #expect(seen.count == 200, "read \(seen.count) of 200 events")
            #expect(committedOffsets.values.reduce(0, +) == 200, "\(committedOffsets)")

            // What the agent checks before it commits for a member.
            let noMember = try await http("POST", first.base + "/v1/groups/billing/offsets", headers: ["Content-Type": "application/json"],
                                          body: json(["offsets": [["topic": "orders", "partition": 0, "offset": 0]]]))
            #expect(noMember.status == 400)
            #expect((noMember.json["detail"] as? String)?.contains("give 'member_id'") == true, "\(noMember.text)")
            let (_, ownedA, _, _) = try await a.poll()
            if let foreign = Set(["orders-0", "orders-1", "orders-2", "orders-3"]).subtracting(ownedA).first {
                let notMine = try await a.commit([["topic": "orders", "partition": Int(foreign.split(separator: "-")[1])!, "offset": 0]])
                #expect(notMine.status == 409, "\(notMine.text)")
            }
            let deleted = try await http("DELETE", first.base + "/v1/groups/billing")
            #expect(deleted.status == 501)

            // The cluster has the commits: confluent-kafka (a client of its own; kafka-python cannot bootstrap from the
            // mock) reads the group's committed offsets, which cover all 200 events.
            let script = """
            from confluent_kafka import Consumer, TopicPartition
            c = Consumer({'bootstrap.servers': '\(cluster.bootstrapServers)', 'group.id': 'billing'})
            print(sum(max(tp.offset, 0) for tp in c.committed([TopicPartition('orders', p) for p in range(4)], timeout=10)))
            """
            let committed = try runProcess("/usr/bin/env", ["python3", "-c", script])
            #expect(committed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "200", "\(committed.stdout) \(committed.stderr)")

            // The group as each agent describes it: its own member, and the lag of the cluster's committed offsets (0).
            var described = try await http("GET", first.base + "/v1/groups/billing")
            for _ in 0..<40 {
                described = try await http("GET", first.base + "/v1/groups/billing")
                let rows = described.json["partitions"] as? [[String: Any]] ?? []
                if rows.count == 4, rows.allSatisfy({ $0["lag"] as? Int == 0 }) { break }
                // Both members stay alive meanwhile (their heartbeats), so that nothing moves under the check.
                _ = try await http("POST", a.url + "/heartbeat")
                _ = try await http("POST", b.url + "/heartbeat")
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect((described.json["members"] as? [[String: Any]])?.map { $0["member_id"] as? String } == [a.id], "\(described.text)")
            #expect((described.json["partitions"] as? [[String: Any]])?.map { $0["committed_offset"] as? Int ?? 0 }.reduce(0, +) == 200, "\(described.text)")
            #expect((try await http("GET", second.base + "/v1/groups").json["groups"] as? [[String: Any]])?.contains { $0["name"] as? String == "billing" } == true)

            // b goes silent: after its session timeout its agent takes it out of the group, and a gets every partition.
            var all = false
            for _ in 0..<120 where !all {
                let (_, owned, positions, _) = try await a.poll()
                if !positions.isEmpty { _ = try await a.commit(positions) }
                all = owned.count == 4
            }
            #expect(all, "a never took over b's partitions: \(first.logText().split(separator: "\n").filter { !$0.contains("statistics") }.suffix(30).joined(separator: "\n"))")
            #expect(second.logText().contains("consumer group member removed: not heard from within its session timeout"))
            #expect(try await b.poll().status == 404)

            // New events reach the remaining member; once it leaves, it is gone.
            try await Self.publish(first, 200..<220)
            var late = Set<String>()
            for _ in 0..<40 where late.count < 20 { late.formUnion(try await a.poll().ids) }
            #expect(late == Set((200..<220).map { "e\($0)" }))
            #expect(try await http("DELETE", a.url).status == 204)
            #expect(try await a.poll().status == 404)
        }
    }
}
