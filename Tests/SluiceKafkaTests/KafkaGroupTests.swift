import Foundation
import NIOCore
import SluiceKafka
import SluiceTestSupport
import Testing

/// Consumer groups through the Kafka protocol: kcat, kafka-python and confluent-kafka groups, one group namespace
/// with the HTTP API, and a group never mixing HTTP and Kafka members.
@Suite(.serialized)
struct KafkaGroupTests {
    static let clients = packageRoot + "/Tests/SluiceKafkaTests/Clients"

    static func summary(_ result: ProcessResult, _ what: String) -> [String: Any] {
        #expect(result.status == 0, "\(what) failed: \(result.stderr.suffix(3000))")
        let lastLine = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(lastLine.utf8)) as? [String: Any]) ?? [:]
    }

    /// The committed offsets of `group` over HTTP, summed, and its lag gauge series on /metrics once they read 0
    /// (or as they are after 5 s).
    static func committedAndLag(_ agent: ServedAgent, _ group: String) async throws -> (committed: Int, lag: [String]) {
        let described = try await http("GET", agent.base + "/v1/groups/\(group)")
        #expect(described.status == 200, "\(described.text)")
        let partitions = described.json["partitions"] as? [[String: Any]] ?? []
        let committed = partitions.compactMap { $0["committed_offset"] as? Int }.reduce(0, +)
        // The lag monitor renders its series on its own pass (lag.interval.ms, short in these tests).
        var lag: [String] = []
        for _ in 0..<50 {
            let metrics = try await http("GET", "http://\(agent.metrics)/metrics").text
            lag = metrics.split(separator: "\n").map(String.init).filter { $0.hasPrefix("sluice_consumer_group_lag{group=\"\(group)\"") }
            if !lag.isEmpty && lag.allSatisfy({ $0.hasSuffix(" 0") }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return (committed, lag)
    }

    /// kcat's balanced consumer (-G): it joins, is assigned every partition, reads to the end and commits on
    /// close; a second run resumes from the committed offsets and reads only what was produced since.
    @Test func kcatGroupConsumerCommitsAndResumes() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "3", "--lag-interval-ms", "200"])
            defer { agent.stop() }
            func produce(_ range: Range<Int>) throws {
                let lines = range.map { "k\($0):v\($0)" }.joined(separator: "\n") + "\n"
                let result = try runProcess(KafkaClientTests.kcat, ["-b", agent.kafka, "-P", "-t", "clicks", "-K:"], stdin: lines)
                #expect(result.status == 0, "\(result.stderr)")
            }
            func consume() throws -> [String] {
                let result = try runProcess(KafkaClientTests.kcat, ["-b", agent.kafka, "-G", "dashboards", "clicks", "-e", "-q",
                                                                    "-X", "auto.offset.reset=earliest", "-f", "%s\n"])
                #expect(result.status == 0, "kcat -G failed: \(result.stderr)")
                return result.stdout.split(separator: "\n").map(String.init)
            }
            try produce(0..<30)
            #expect(Set(try consume()) == Set((0..<30).map { "v\($0)" }))
            try produce(30..<40)
            let second = try consume()
            #expect(second.sorted() == (30..<40).map { "v\($0)" }.sorted(), "the second run must resume from the commits: \(second)")

            // The same group over HTTP: listed, its commits, and its lag series at 0.
            let listed = try await http("GET", agent.base + "/v1/groups")
            #expect((listed.json["groups"] as? [[String: Any]])?.contains { $0["name"] as? String == "dashboards" } == true, "\(listed.text)")
            let (committed, lag) = try await Self.committedAndLag(agent, "dashboards")
            #expect(committed == 40)
            #expect(lag.count == 3 && lag.allSatisfy { $0.hasSuffix(" 0") }, "\(lag)")
        }
    }

    /// kafka-python: three members (a, b, c) share a topic while it is produced to; c leaves and d joins midway.
    /// Every record is read exactly once, and KafkaAdminClient lists and describes the group.
    @Test func kafkaPythonGroupReadsEveryRecordOnceAcrossJoinsAndLeaves() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "6", "--lag-interval-ms", "200"])
            defer { agent.stop() }
            let count = 3000
            let summary = Self.summary(try runProcess("/usr/bin/env", ["python3", Self.clients + "/kafka_python_group.py", agent.kafka, "orders", "billing", "\(count)"]),
                                       "kafka-python group")
            #expect(summary["errors"] as? [String] == [], "\(summary)")
            #expect(summary["read"] as? Int == count && summary["duplicates"] as? Int == 0, "\(summary)")
            #expect(summary["missing"] as? [String] == [])
            let owners = summary["owners"] as? [String: [Int]] ?? [:]
            #expect(Set(owners.values.flatMap { $0 }) == Set(0..<6), "every partition was read by someone: \(owners)")
            #expect(owners["d"]?.isEmpty == false, "the member that joined late got partitions: \(owners)")
            #expect((summary["listed"] as? [String])?.contains("billing") == true)
            let described = summary["described"] as? [String: Any] ?? [:]
            #expect(described["state"] as? String == "Stable" && described["members"] as? [String] == ["a", "b", "d"], "\(described)")
            #expect(described["protocol"] as? String == "range")
            let committed = (summary["committed"] as? [String: Int] ?? [:]).values.reduce(0, +)
            #expect(committed == count, "\(summary)")

            let (httpCommitted, lag) = try await Self.committedAndLag(agent, "billing")
            #expect(httpCommitted == count)
            #expect(lag.count == 6 && lag.allSatisfy { $0.hasSuffix(" 0") }, "\(lag)")
            #expect(agent.logText().contains("\"consumer group rebalanced\""))
        }
    }

    /// confluent-kafka (a newer librdkafka) with the cooperative-sticky assignor: incremental rebalances as a
    /// member joins and another leaves. Nothing is missing; only records whose commit raced a rebalance (and
    /// failed, as with Kafka) may be read twice.
    @Test func confluentCooperativeStickyGroup() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "6"])
            defer { agent.stop() }
            let count = 3000
            // librdkafka's subscribe does not create topics.
            let created = try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 6]))
            #expect(created.status == 201, "\(created.text)")
            let summary = Self.summary(try runProcess("/usr/bin/env", ["python3", Self.clients + "/confluent_cooperative_group.py", agent.kafka, "orders", "shipping", "\(count)"]),
                                       "confluent-kafka group")
            #expect(summary["errors"] as? [String] == [], "\(summary)")
            #expect(summary["read"] as? Int == count && summary["missing"] as? [String] == [], "\(summary)")
            let failures = (summary["commit_failures"] as? [String] ?? []).count
            #expect((summary["duplicates"] as? Int ?? .max) <= failures, "\(summary)")
            let described = summary["described"] as? [String: Any] ?? [:]
            #expect(described["assignor"] as? String == "cooperative-sticky", "\(described)")
            #expect(described["members"] as? [String] == ["b", "c"], "\(described)")
            let assigned = summary["assigned"] as? [String: [Int]] ?? [:]
            #expect(assigned["c"]?.isEmpty == false, "the member that joined got partitions: \(assigned)")
        }
    }

    /// Static membership: a member with a `group.instance.id` that restarts takes its old place without a
    /// rebalance; the generation stays, it gets its old partitions back and the other member is never revoked.
    @Test func confluentStaticMemberRestartsWithoutARebalance() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "4"])
            defer { agent.stop() }
            let created = try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 4]))
            #expect(created.status == 201, "\(created.text)")
            let summary = Self.summary(try runProcess("/usr/bin/env", ["python3", Self.clients + "/confluent_static_group.py", agent.kafka, agent.base, "orders", "static"]),
                                       "confluent-kafka static group")
            #expect(summary["errors"] as? [String] == [], "\(summary)")
            let before = summary["before"] as? [String: Any] ?? [:], after = summary["after"] as? [String: Any] ?? [:]
            let membersBefore = before["members"] as? [String: [Int]] ?? [:], membersAfter = after["members"] as? [String: [Int]] ?? [:]
            #expect(membersBefore.count == 2 && membersBefore.values.allSatisfy { !$0.isEmpty }, "\(summary)")
            #expect(before["generation"] as? Int == after["generation"] as? Int, "no rebalance: \(summary)")
            #expect(membersAfter == membersBefore, "the same partitions per instance: \(summary)")
            let events = summary["events"] as? [[Any]] ?? []
            let b = events.filter { $0.first as? String == "b1" }.map { $0[1] as? String ?? "" }
            #expect(b == ["assign"], "b was assigned once and never revoked: \(summary)")
            let a2 = events.filter { $0.first as? String == "a2" && $0[1] as? String == "assign" }.last?[2] as? [Int]
            #expect(a2 == membersBefore["a"], "the new a got the old a's partitions: \(summary)")
        }
    }

    /// A group has HTTP members or Kafka members, never both, with a clear error either way.
    @Test func aGroupNeverMixesHTTPAndKafkaMembers() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            func joinFrame(_ group: String, correlation: Int32) -> [UInt8] {
                kafkaFrame(api: KafkaAPI.joinGroup.rawValue, version: 0, correlation: correlation) { w in
                    w.string(group)
                    w.int32(Int32(10_000))
                    w.string("")
                    w.string("consumer")
                    w.array(["range"]) { w, name in
                        w.string(name)
                        w.bytes([0, 0, 0, 0, 0, 1, 0, 6] + Array("events".utf8) + [0xff, 0xff, 0xff, 0xff])
                    }
                }
            }
            // An HTTP member first: a Kafka JoinGroup for its group is refused.
            let http1 = try await http("POST", agent.base + "/v1/groups/web/members", body: json(["topics": ["events"]]))
            #expect(http1.status == 200 || http1.status == 201, "\(http1.text)")
            let connection = try RawKafkaConnection(agent.kafka)
            connection.send(joinFrame("web", correlation: 1))
            let refused = connection.response()
            #expect(refused.map { int16($0.1, at: 0) } == KafkaError.inconsistentGroupProtocol.rawValue)
            #expect(agent.logText().contains("Kafka JoinGroup refused: the group has HTTP members"))

            // A Kafka member first: an HTTP join to its group is a 409 problem that says why.
            connection.send(joinFrame("stream", correlation: 2))
            guard let joined = connection.response() else { Issue.record("no JoinGroup response"); return }
            #expect(int16(joined.1, at: 0) == 0)
            var reader = KafkaReader(ByteBuffer(bytes: joined.1))
            _ = try reader.int16()
            _ = try reader.int32()
            _ = try reader.string()
            _ = try reader.string()
            let memberId = try reader.string()
            let conflict = try await http("POST", agent.base + "/v1/groups/stream/members", body: json(["topics": ["events"]]))
            #expect(conflict.status == 409, "\(conflict.text)")
            #expect((conflict.json["detail"] as? String)?.contains("Kafka client member") == true, "\(conflict.text)")

            // Once the Kafka member leaves, the name is free for HTTP members.
            connection.send(kafkaFrame(api: KafkaAPI.leaveGroup.rawValue, version: 0, correlation: 3) { w in
                w.string("stream")
                w.string(memberId)
            })
            #expect(connection.response().map { int16($0.1, at: 0) } == 0)
            let later = try await http("POST", agent.base + "/v1/groups/stream/members", body: json(["topics": ["events"]]))
            #expect(later.status == 200 || later.status == 201, "\(later.text)")
        }
    }
}
