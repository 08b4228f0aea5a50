import Foundation
import SluiceTestSupport
import Testing

/// `__consumer_offsets` as tools read it: Burrow (LinkedIn's lag monitor, with the ZooKeeper it needs for its
/// own coordination) pointed at Sluice reports each group's lag equal to `sluice_consumer_group_lag`.
@Suite(.serialized)
struct KafkaBurrowTests {
    /// A child process stopped (and waited for) when the test ends, failed or not.
    final class Child {
        let process = Process()
        init(_ executable: String, _ arguments: [String], log: String) throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }
        func stop() {
            guard process.isRunning else { return }
            process.terminate()
            process.waitUntilExit()
        }
    }

    static func zooKeeper(_ dir: String) throws -> (Child, Int) {
        let port = freePort()
        try FileManager.default.createDirectory(atPath: dir + "/zk-data", withIntermediateDirectories: true)
        try """
        tickTime=2000
        dataDir=\(dir)/zk-data
        clientPort=\(port)
        clientPortAddress=127.0.0.1
        admin.enableServer=false
        """.write(toFile: dir + "/zoo.cfg", atomically: true, encoding: .utf8)
        let child = try Child("/usr/bin/java", ["-cp", "/usr/share/java/zookeeper.jar", "org.apache.zookeeper.server.ZooKeeperServerMain", dir + "/zoo.cfg"],
                              log: dir + "/zookeeper.log")
        // Burrow gives up at once when ZooKeeper does not serve, so wait until `srvr` says it does.
        func serving() -> Bool {
            guard let connection = try? RawKafkaConnection("127.0.0.1:\(port)", timeoutSeconds: 2) else { return false }
            connection.send(Array("srvr".utf8))
            return connection.read(10).map { String(decoding: $0, as: UTF8.self) } == "Zookeeper "
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, child.process.isRunning, !serving() { Thread.sleep(forTimeInterval: 0.2) }
        return (child, port)
    }

    static func burrow(_ dir: String, kafka: String, zookeeperPort: Int) throws -> (Child, String) {
        let http = "127.0.0.1:\(freePort())"
        try FileManager.default.createDirectory(atPath: dir + "/burrow", withIntermediateDirectories: true)
        try """
        [general]
        pidfile="\(dir)/burrow/burrow.pid"
        [logging]
        level="info"
        [zookeeper]
        servers=["127.0.0.1:\(zookeeperPort)"]
        timeout=6
        root-path="/burrow"
        [client-profile.sluice]
        client-id="burrow"
        kafka-version="2.0.0"
        [cluster.sluice]
        class-name="kafka"
        servers=["\(kafka)"]
        client-profile="sluice"
        topic-refresh=2
        offset-refresh=1
        [consumer.sluice]
        class-name="kafka"
        cluster="sluice"
        servers=["\(kafka)"]
        client-profile="sluice"
        offsets-topic="__consumer_offsets"
        start-latest=false
        [httpserver.default]
        address="\(http)"
        [storage.default]
        class-name="inmemory"
        workers=2
        intervals=10
        min-distance=1
        [evaluator.default]
        class-name="caching"
        expire-cache=1
        """.write(toFile: dir + "/burrow/burrow.toml", atomically: true, encoding: .utf8)
        return (try Child("/usr/bin/Burrow", ["-config-dir", dir + "/burrow"], log: dir + "/burrow/out.log"), http)
    }

    /// `sluice_consumer_group_lag` of `group` by partition.
    static func sluiceLag(_ agent: ServedAgent, _ group: String) async throws -> [Int: Int] {
        let metrics = try await http("GET", "http://\(agent.metrics)/metrics").text
        var lag: [Int: Int] = [:]
        for line in metrics.split(separator: "\n") where line.hasPrefix("sluice_consumer_group_lag{group=\"\(group)\"") {
            guard let start = line.range(of: "partition=\"")?.upperBound, let end = line[start...].firstIndex(of: "\""),
                  let partition = Int(line[start..<end]), let value = Double(line.split(separator: " ").last ?? "") else { continue }
            lag[partition] = Int(value)
        }
        return lag
    }

    /// Burrow's `current_lag` of `group` by partition, or nil while Burrow does not know the group yet.
    static func burrowLag(_ address: String, _ group: String) async -> [Int: Int]? {
        guard let answer = try? await http("GET", "http://\(address)/v3/kafka/sluice/consumer/\(group)/lag"), answer.status == 200,
              let partitions = (answer.json["status"] as? [String: Any])?["partitions"] as? [[String: Any]], !partitions.isEmpty else { return nil }
        var lag: [Int: Int] = [:]
        for partition in partitions {
            guard let index = partition["partition"] as? Int, let current = partition["current_lag"] as? Int else { return nil }
            lag[index] = current
        }
        return lag
    }

    @Test func burrowReportsTheLagSluiceReports() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "3", "--lag-interval-ms", "200"])
            defer { agent.stop() }
            // A Kafka group that read 30 records and committed, then fell 20 behind.
            func produce(_ range: Range<Int>) throws {
                let result = try runProcess(KafkaClientTests.kcat, ["-b", agent.kafka, "-P", "-t", "orders", "-K:"],
                                            stdin: range.map { "k\($0):v\($0)" }.joined(separator: "\n") + "\n")
                #expect(result.status == 0, "\(result.stderr)")
            }
            try produce(0..<30)
            let consumed = try runProcess(KafkaClientTests.kcat, ["-b", agent.kafka, "-G", "reports", "orders", "-e", "-q",
                                                                  "-X", "auto.offset.reset=earliest", "-f", "%s\n"])
            #expect(consumed.status == 0 && consumed.stdout.split(separator: "\n").count == 30, "\(consumed.stderr)")
            try produce(30..<50)
            // An HTTP group's commits are in __consumer_offsets too.
            let commit = try await http("POST", agent.base + "/v1/groups/billing/offsets",
                                        body: json(["offsets": [["topic": "orders", "partition": 0, "offset": 1], ["topic": "orders", "partition": 1, "offset": 2],
                                                                ["topic": "orders", "partition": 2, "offset": 3]]]))
            #expect(commit.status == 200, "\(commit.text)")

            let (zookeeper, zookeeperPort) = try Self.zooKeeper(dir)
            defer { zookeeper.stop() }
            let (burrow, burrowHTTP) = try Self.burrow(dir, kafka: agent.kafka, zookeeperPort: zookeeperPort)
            defer { burrow.stop() }

            for group in ["reports", "billing"] {
                var seen: [Int: Int]?
                var expected: [Int: Int] = [:]
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline {
                    expected = try await Self.sluiceLag(agent, group)
                    seen = await Self.burrowLag(burrowHTTP, group)
                    if let seen, seen == expected, expected.count == 3 { break }
                    try await Task.sleep(for: .milliseconds(500))
                }
                #expect(expected.count == 3, "Sluice's lag series for \(group): \(expected)")
                #expect(seen == expected, "Burrow's lag for \(group) \(String(describing: seen)) differs from Sluice's \(expected); Burrow log: \((try? String(contentsOfFile: dir + "/burrow/out.log", encoding: .utf8))?.suffix(2000) ?? "")")
            }
            #expect(try await Self.sluiceLag(agent, "reports").values.reduce(0, +) == 20)
            let log = (try? String(contentsOfFile: dir + "/burrow/out.log", encoding: .utf8)) ?? ""
            #expect(!log.contains("failed to decode"), "Burrow could not decode a __consumer_offsets record: \(log.suffix(2000))")
        }
    }

    /// Clients cannot write or change `__consumer_offsets`; at start Sluice appends every committed offset again,
    /// so the topic is whole whatever a crash cut off.
    @Test func offsetsTopicIsReadOnlyAndRebuiltAtStart() async throws {
        try await withTemporaryDirectory { dir in
            var agent = try await startServed(dir, ["--num-partitions", "2"])
            defer { agent.stop() }
            let created = try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 2]))
            #expect(created.status == 201, "\(created.text)")
            let commit = try await http("POST", agent.base + "/v1/groups/billing/offsets",
                                        body: json(["offsets": [["topic": "orders", "partition": 0, "offset": 0], ["topic": "orders", "partition": 1, "offset": 0]]]))
            #expect(commit.status == 200, "\(commit.text)")
            let produce = try runProcess(KafkaClientTests.kcat, ["-b", agent.kafka, "-P", "-t", "__consumer_offsets"], stdin: "forged\n")
            #expect(produce.stderr.contains("Broker: Invalid topic") || produce.stderr.contains("INVALID_TOPIC"), "\(produce.status) \(produce.stderr)")
            let publish = try await http("POST", agent.base + "/v1/topics/__consumer_offsets/events", headers: ["Content-Type": "application/cloudevents+json"],
                                         body: json(["specversion": "1.0", "id": "1", "source": "/x", "type": "t"]))
            #expect(publish.status == 400 && publish.text.contains("internal"), "\(publish.text)")
            let delete = try await http("DELETE", agent.base + "/v1/topics/__consumer_offsets")
            #expect(delete.status == 400, "\(delete.text)")
            let before = try await http("GET", agent.base + "/v1/topics/__consumer_offsets").json["partitions"] as? [[String: Any]]
            #expect(before?.first?["log_end_offset"] as? Int == 2, "\(String(describing: before))")

            agent.kill9()
            agent = try await startServed(dir, [])
            let after = try await http("GET", agent.base + "/v1/topics/__consumer_offsets").json["partitions"] as? [[String: Any]]
            #expect(after?.first?["log_end_offset"] as? Int == 4, "the two committed offsets appended again: \(String(describing: after))")
            let records = try KafkaClientTests.consume(agent.kafka, ["-t", "__consumer_offsets", "-o", "2"])
            #expect(records.count == 2 && records.allSatisfy { $0.key?.contains("billing") == true }, "\(records)")
        }
    }
}
