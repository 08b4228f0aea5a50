import Foundation
import SluiceBroker
import SluiceTestSupport
import Testing

/// librdkafka's mock cluster (`sluice-mock-cluster`, built beside `sluice`) as a child process: it ends when its
/// stdin closes, so a failing test never leaves one behind.
final class MockCluster: @unchecked Sendable {
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    let bootstrapServers: String

    init(brokers: Int = 3) throws {
        process.executableURL = URL(fileURLWithPath: sluiceBinary).deletingLastPathComponent().appendingPathComponent("sluice-mock-cluster")
        process.arguments = [String(brokers)]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var servers = ""
        let line = Self.readLine(output)
        if line.hasPrefix("bootstrap.servers=") { servers = String(line.dropFirst("bootstrap.servers=".count)) }
        bootstrapServers = servers
        if servers.isEmpty { stop() }
    }

    /// A started cluster with these topics (`name partitions`) made, or an error when it did not start.
    static func started(topics: [String]) throws -> MockCluster {
        let cluster = try MockCluster()
        guard !cluster.bootstrapServers.isEmpty else { throw AgentDidNotStart(description: "the mock cluster did not start") }
        for topic in topics { try cluster.send("topic " + topic) }
        return cluster
    }

    /// Sends one command (`topic NAME N`, `down ID`, `up ID`) and waits for its `ok`.
    func send(_ command: String) throws {
        input.fileHandleForWriting.write(Data((command + "\n").utf8))
        let answer = Self.readLine(output)
        guard answer == "ok" else { throw AgentDidNotStart(description: "mock cluster refused '\(command)': \(answer)") }
    }

    /// The helper's next line of output (it answers one line at a time), without its newline.
    static func readLine(_ pipe: Pipe) -> String {
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            data += chunk
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { stop() } }
}

/// `sluice serve --log-backend kafka` against a three-broker mock cluster: publishing, reads, topics, health, an
/// outage and what the cluster backend does not do yet — all through the real binary, checked with kcat too.
@Suite(.serialized) struct ClusterBackendTests {
    static func serve(_ dir: String, _ cluster: MockCluster, _ extra: [String] = []) async throws -> ServedAgent {
        try await startServed(dir, ["--log-backend", "kafka", "--cluster-bootstrap-servers", cluster.bootstrapServers, "--kafka-address", "off"] + extra)
    }

    static func event(_ id: String, key: String?) -> [String: Any] {
        var event: [String: Any] = ["specversion": "1.0", "id": id, "source": "/cluster-test", "type": "order.created", "data": ["n": id]]
        if let key { event["partitionkey"] = key }
        return event
    }

    static let batch = ["Content-Type": "application/cloudevents-batch+json"]

    /// Every record of `topic` in the cluster as kcat (an independent client) reads it: partition, offset, ce_id.
    static func kcatRecords(_ servers: String, topic: String) throws -> [(partition: Int32, offset: Int64, id: String)] {
        let result = try runProcess("/usr/bin/kcat", ["-b", servers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %h\\n"])
        return result.stdout.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count == 3, let partition = Int32(parts[0]), let offset = Int64(parts[1]),
                  let id = parts[2].split(separator: ",").first(where: { $0.hasPrefix("ce_id=") })?.dropFirst("ce_id=".count) else { return nil }
            return (partition, offset, String(id))
        }
    }

    @Test("events published over HTTP are stored in the cluster per key, acknowledged with the cluster's offsets, read back over HTTP and by kcat")
    func publishAndRead() async throws {
        let cluster = try MockCluster.started(topics: ["orders 3"])
        defer { cluster.stop() }
        try await withTemporaryDirectory { dir in
            let agent = try await Self.serve(dir, cluster)
            defer { agent.stop() }
            #expect(agent.logText().split(separator: "\n").first?.contains("\"cluster.bootstrap.servers\":\"\(cluster.bootstrapServers)\"") == true)

            var published: [String: (partition: Int32, offset: Int64)] = [:]
            let keyed = (0..<50).map { Self.event("k\($0)", key: "customer-\($0 % 10)") }
            var r = try await http("POST", agent.base + "/v1/topics/orders/events", headers: Self.batch, body: json(keyed))
            #expect(r.status == 200, "\(r.text)")
            for case let result as [String: Any] in r.json["results"] as? [Any] ?? [] {
                published[result["id"] as! String] = (Int32(result["partition"] as! Int), Int64(result["offset"] as! Int))
            }
            for index in 0..<10 {
                r = try await http("POST", agent.base + "/v1/topics/orders/events", headers: ["Content-Type": "application/cloudevents+json"],
                                   body: json(Self.event("u\(index)", key: nil)))
                #expect(r.status == 200, "\(r.text)")
                let result = (r.json["results"] as? [[String: Any]])?.first ?? [:]
                published[result["id"] as? String ?? ""] = (Int32(result["partition"] as? Int ?? -1), Int64(result["offset"] as? Int ?? -1))
            }
            #expect(published.count == 60)
            // Keyed events sit in Kafka's murmur2 partition of their key, as a Java or librdkafka client puts them.
            for index in 0..<50 {
                #expect(published["k\(index)"]?.partition == Partitioner.partition(forKey: "customer-\(index % 10)", partitions: 3))
            }
            // Each partition's offsets are the cluster's: 0, 1, 2, … without gaps.
            for partition in Int32(0)..<3 {
                let offsets = published.values.filter { $0.partition == partition }.map(\.offset).sorted()
                #expect(offsets == Array(0..<Int64(offsets.count)))
            }

            // Read back over HTTP, in pages, from each partition.
            var read: [String: (partition: Int32, offset: Int64)] = [:]
            for partition in 0..<3 {
                var offset = 0
                while true {
                    let page = try await http("GET", agent.base + "/v1/topics/orders/partitions/\(partition)/events?offset=\(offset)&max_records=7")
                    #expect(page.status == 200, "\(page.text)")
                    let events = page.json["events"] as? [[String: Any]] ?? []
                    for entry in events {
                        let event = entry["event"] as? [String: Any] ?? [:]
                        read[event["id"] as? String ?? ""] = (Int32(partition), Int64(entry["offset"] as? Int ?? -1))
                        #expect((event["data"] as? [String: Any])?["n"] as? String == event["id"] as? String)
                    }
                    guard let next = page.json["next_offset"] as? Int, next > offset else { break }
                    offset = next
                }
            }
            #expect(read.count == 60)
            for (id, place) in published { #expect(read[id]?.partition == place.partition && read[id]?.offset == place.offset, "\(id)") }

            // kcat, an independent client, finds the same records with their CloudEvents headers.
            let records = try Self.kcatRecords(cluster.bootstrapServers, topic: "orders")
            #expect(records.count == 60)
            for record in records { #expect(published[record.id]?.partition == record.partition && published[record.id]?.offset == record.offset) }

            // Reading on from where a read ended, after more events came, finds them at once (the end the earlier
            // read reached is not taken for the end now).
            let partitionOf = Partitioner.partition(forKey: "customer-3", partitions: 3)
            let sofar = published.values.filter { $0.partition == partitionOf }.count
            let first = try await http("GET", agent.base + "/v1/topics/orders/partitions/\(partitionOf)/events?offset=0&max_records=1000&wait_ms=0")
            #expect((first.json["events"] as? [Any])?.count == sofar)
            try await Task.sleep(for: .milliseconds(300))
            let more = (0..<3).map { Self.event("more\($0)", key: "customer-3") }
            #expect(try await http("POST", agent.base + "/v1/topics/orders/events", headers: Self.batch, body: json(more)).status == 200)
            let again = try await http("GET", agent.base + "/v1/topics/orders/partitions/\(partitionOf)/events?offset=\(sofar)&wait_ms=0")
            #expect((again.json["events"] as? [[String: Any]])?.compactMap { ($0["event"] as? [String: Any])?["id"] as? String } == ["more0", "more1", "more2"], "\(again.text)")
            for index in 0..<3 { published["more\(index)"] = (partitionOf, Int64(sofar + index)) }

            // A long poll past the end waits, and answers with the event published meanwhile.
            let end = published.values.filter { $0.partition == 0 }.count
            async let later: HTTPResult = {
                try await Task.sleep(for: .milliseconds(300))
                return try await http("POST", agent.base + "/v1/topics/orders/events", headers: Self.batch,
                                      body: json([Self.event("late", key: "customer-\(0)")]))
            }()
            let waitFor = Partitioner.partition(forKey: "customer-0", partitions: 3)
            let tail = waitFor == 0 ? end : published.values.filter { $0.partition == waitFor }.count
            let polled = try await http("GET", agent.base + "/v1/topics/orders/partitions/\(waitFor)/events?offset=\(tail)&wait_ms=5000")
            #expect(((polled.json["events"] as? [[String: Any]])?.first?["event"] as? [String: Any])?["id"] as? String == "late")
            #expect(try await later.status == 200)

            // Topics as the cluster has them.
            let topics = try await http("GET", agent.base + "/v1/topics")
            #expect((topics.json["topics"] as? [[String: Any]])?.contains { $0["name"] as? String == "orders" && $0["partitions"] as? Int == 3 } == true)
            let described = try await http("GET", agent.base + "/v1/topics/orders")
            let ends = (described.json["partitions"] as? [[String: Any]] ?? []).map { $0["log_end_offset"] as? Int ?? -1 }
            #expect(ends.reduce(0, +) == 64)

            // The mock takes no CreateTopics: an explicit creation says so (501); a publish to a new topic falls back
            // to the cluster's own auto-creation (with a warning in the log).
            let created = try await http("POST", agent.base + "/v1/topics", headers: ["Content-Type": "application/json"], body: json(["name": "fresh", "partitions": 2]))
            #expect(created.status == 501, "\(created.text)")
            #expect((created.json["detail"] as? String)?.contains("create the topic with the cluster's own tools") == true)
            let auto = try await http("POST", agent.base + "/v1/topics/auto-made/events", headers: ["Content-Type": "application/cloudevents+json"],
                                      body: json(Self.event("a1", key: nil)))
            #expect(auto.status == 200, "\(auto.text)")
            #expect(agent.logText().contains("topic auto-made was made by its auto-creation"))

            // What the cluster backend does not do yet is refused with 501 and says what to use instead.
            let reset = try await http("POST", agent.base + "/v1/groups/billing/offsets/reset", headers: ["Content-Type": "application/json"],
                                       body: json(["to": "earliest"]))
            #expect(reset.status == 501)
            #expect((reset.json["detail"] as? String)?.contains("kafka-consumer-groups --reset-offsets") == true, "\(reset.text)")
            // An atomic publish is one Kafka transaction: acknowledged with the cluster's offsets once committed, and
            // read by kcat (read_committed, librdkafka's default) at those offsets.
            let atomic = try await http("POST", agent.base + "/v1/topics/orders/events?atomic=true", headers: Self.batch,
                                        body: json((0..<3).map { Self.event("atomic-\($0)", key: "customer-\($0)") }))
            #expect(atomic.status == 200, "\(atomic.text)")
            let committed = Set(try Self.kcatRecords(cluster.bootstrapServers, topic: "orders").filter { $0.id.hasPrefix("atomic-") }.map { "\($0.id)@\($0.partition)/\($0.offset)" })
            let answered = Set((atomic.json["results"] as? [[String: Any]] ?? []).map { "\($0["id"] ?? "")@\($0["partition"] ?? "")/\($0["offset"] ?? "")" })
            #expect(answered.count == 3 && committed == answered, "answered \(answered), in the cluster \(committed)")
            #expect(agent.logText().contains("cluster transactional producer ready"))
            // A transaction whose Produce fails (the cluster refuses one request with INVALID_RECORD) is aborted with
            // 503, and the next atomic publish commits. (librdkafka's mock cluster writes no transaction markers and
            // filters nothing for read_committed, so what readers see of the aborted one is not checked here.)
            try cluster.send("fail 0 87 1")
            let failed = try await http("POST", agent.base + "/v1/topics/orders/events?atomic=true", headers: Self.batch,
                                        body: json((0..<3).map { Self.event("aborted-\($0)", key: "customer-\($0)") }))
            #expect(failed.status == 503, "\(failed.text)")
            #expect((failed.json["detail"] as? String)?.contains("nothing of this request is visible to read_committed readers") == true, "\(failed.text)")
            let after = try await http("POST", agent.base + "/v1/topics/orders/events?atomic=true", headers: Self.batch,
                                       body: json((0..<3).map { Self.event("after-\($0)", key: "customer-\($0)") }))
            #expect(after.status == 200, "\(after.text)")
            let visible = try Self.kcatRecords(cluster.bootstrapServers, topic: "orders").map(\.id)
            #expect(visible.filter { $0.hasPrefix("after-") }.count == 3, "\(visible)")
            #expect(!agent.logText().contains("aborting a cluster transaction failed"), "the abort itself succeeded")
            // An agent without saga definitions takes no saga partitions (and makes no saga topic).
            #expect(!agent.logText().contains("__sluice_sagas.owners") && (topics.json["topics"] as? [[String: Any]])?.contains { $0["name"] as? String == "__sluice_sagas" } == false)

            // Cluster health on /metrics.
            try await Task.sleep(for: .milliseconds(1200))
            let metrics = try await http("GET", "http://\(agent.metrics)/metrics").text
            #expect(metrics.contains("sluice_cluster_brokers 3"))
            #expect(metrics.contains("sluice_cluster_requests_total{request=\"metadata\",status=\"ok\"}"))
            #expect(metrics.contains("sluice_cluster_brokers_up "))
            #expect(!metrics.contains("sluice_cluster_brokers_up 0"))
            #expect(metrics.contains("sluice_cluster_request_latency_seconds{broker="))
        }
    }

    @Test("with every broker down, acks=all publishes get 503 within message.timeout.ms and readiness drops; once they are back, publishing resumes without a restart and no acknowledged event is lost")
    func brokersDownAndBack() async throws {
        let cluster = try MockCluster.started(topics: ["payments 2"])
        defer { cluster.stop() }
        try await withTemporaryDirectory { dir in
            let agent = try await Self.serve(dir, cluster, ["-X", "cluster.message.timeout.ms=2000"])
            defer { agent.stop() }
            let single = ["Content-Type": "application/cloudevents+json"]
            var acknowledged: [String] = []
            var refused: [(seconds: Double, detail: String)] = []
            var sequence = 0
            func publish() async throws -> Int {
                sequence += 1
                let id = "p\(sequence)"
                let started = Date()
                let r = try await http("POST", agent.base + "/v1/topics/payments/events", headers: single, body: json(Self.event(id, key: "k\(sequence % 7)")))
                if r.status == 200 {
                    acknowledged.append(id)
                } else {
                    refused.append((Date().timeIntervalSince(started), (r.json["detail"] as? String) ?? r.text))
                }
                return r.status
            }
            for _ in 0..<40 { #expect(try await publish() == 200) }

            for broker in 1...3 { try cluster.send("down \(broker)") }
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await publish()) }
            #expect(statuses.allSatisfy { $0 == 503 }, "\(statuses)")
            for failure in refused {
                #expect(failure.seconds < 2 + 1 + 2, "answered after \(failure.seconds) s")
                #expect(failure.detail.contains("did not acknowledge the event"))
            }
            var ready = 200
            for _ in 0..<100 where ready == 200 {
                ready = try await http("GET", "http://\(agent.metrics)/readyz").status
                if ready == 200 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(ready == 503)

            for broker in 1...3 { try cluster.send("up \(broker)") }
            // Back without a restart: readiness returns and publishes are acknowledged again.
            for _ in 0..<150 where ready != 200 {
                try await Task.sleep(for: .milliseconds(100))
                ready = try await http("GET", "http://\(agent.metrics)/readyz").status
            }
            #expect(ready == 200)
            var resumed = 0
            for _ in 0..<200 where resumed < 40 {
                if try await publish() == 200 { resumed += 1 } else { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(resumed == 40)

            // Every acknowledged event is in the cluster, as kcat reads it.
            let stored = Set(try Self.kcatRecords(cluster.bootstrapServers, topic: "payments").map(\.id))
            let lost = acknowledged.filter { !stored.contains($0) }
            #expect(lost.isEmpty, "acknowledged but not stored: \(lost)")
            #expect(acknowledged.count >= 80)
        }
    }

    @Test("startup refuses what cannot run on a cluster with exit code 2 and a message that says what to change")
    func startupRefusals() throws {
        func serve(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(sluiceBinary, ["serve", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--data-dir", "/nonexistent/never"] + arguments)
        }
        // kafka.address off as everywhere on a cluster: scripts/test sets SLUICE_KAFKA_ADDRESS for every agent.
        let base = ["--log-backend", "kafka", "--cluster-bootstrap-servers", "127.0.0.1:1", "--kafka-address", "off"]
        var result = try serve(base + ["-X", "cluster.no.such.property=1"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("cluster.no.such.property") && result.stderr.contains("is not a property of librdkafka"), "\(result.stderr)")
        result = try serve(["--log-backend", "kafka", "--kafka-address", "off"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("set cluster.bootstrap.servers"))
        // `sluice config show` prints what the cluster's clients get, secrets masked.
        let shown = try runProcess(sluiceBinary, ["config", "show", "--linger-ms", "25"] + base + ["-X", "cluster.sasl.password=hunter2"])
        #expect(shown.status == 0)
        #expect(shown.stdout.split(separator: "\n").contains { $0.hasPrefix("librdkafka producer linger.ms") && $0.contains("25") && $0.contains("linger.ms (from flag --linger-ms)") })
        #expect(shown.stdout.contains("librdkafka reader fetch.wait.max.ms"))
        #expect(shown.stdout.contains("librdkafka transactional producer transactional.id"))
        #expect(!shown.stdout.contains("hunter2"))
    }
}
