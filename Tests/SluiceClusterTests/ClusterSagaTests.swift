import Foundation
import SluiceTestSupport
import Synchronization
import Testing

/// Sagas with the log in a cluster: agents with the same saga definitions share the saga topic's partitions, each
/// saga is driven by the agent that owns its partition, and when one agent dies the others take its sagas over.
@Suite(.serialized) struct ClusterSagaTests {
    static let yaml = """
    sagas:
      - type: order
        timeout_ms: 120000
        steps:
          - name: create_order
            command: {topic: orders, type: order.create}
            success: order.created
            failure: order.rejected
            reply_topic: replies
            timeout_ms: 60000
            compensation:
              command: {topic: orders, type: order.cancel}
          - name: payment
            command: {topic: payments, type: payment.process}
            success: payment.processed
            failure: payment.failed
            reply_topic: replies
            timeout_ms: 60000
    """

    /// A participant behind one agent: an HTTP consumer group member of the command topics that replies to each
    /// command (a saga whose id ends in `-fail` is refused at payment) and remembers what it got.
    final class Participant: Sendable {
        let commands = Mutex<[(id: String, type: String, saga: String)]>([])
        private let loop = Mutex<Task<Void, Never>?>(nil)

        func start(_ base: String) async throws {
            let joined = try await http("POST", base + "/v1/groups/participants/members", headers: ["Content-Type": "application/json"],
                                        body: json(["topics": ["orders", "payments"], "auto_offset_reset": "earliest", "enable_auto_commit": true]))
            #expect(joined.status == 201, "\(joined.text)")
            let member = joined.json["member_id"] as? String ?? ""
            let task = Task {
                while !Task.isCancelled {
                    guard let polled = try? await http("POST", base + "/v1/groups/participants/members/\(member)/poll?wait_ms=200&max=500"), polled.status == 200 else {
                        try? await Task.sleep(for: .milliseconds(100))
                        continue
                    }
                    var replies: [[String: Any]] = []
                    for case let entry as [String: Any] in polled.json["events"] as? [Any] ?? [] {
                        guard let event = entry["event"] as? [String: Any], let id = event["id"] as? String, let type = event["type"] as? String,
                              let saga = event["correlationid"] as? String else { continue }
                        self.commands.withLock { $0.append((id, type, saga)) }
                        let reply: String? = switch type {
                        case "order.create": "order.created"
                        case "payment.process": saga.hasSuffix("-fail") ? "payment.failed" : "payment.processed"
                        default: nil
                        }
                        if let reply {
                            replies.append(["specversion": "1.0", "id": "reply-\(id)", "source": "/participant", "type": reply, "correlationid": saga, "causationid": id])
                        }
                    }
                    if !replies.isEmpty {
                        _ = try? await http("POST", base + "/v1/topics/replies/events", headers: ["Content-Type": "application/cloudevents-batch+json"], body: json(replies))
                    }
                }
            }
            loop.withLock { $0 = task }
        }

        func stop() { loop.withLock { $0?.cancel() } }
    }

    /// The saga topic as kcat reads it: per saga key, the transitions and versions of its state records.
    static func stateRecords(_ servers: String) throws -> [String: [(transition: String, version: Int)]] {
        let read = try runProcess("/usr/bin/kcat", ["-b", servers, "-C", "-t", "__sluice_sagas", "-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n"])
        var states: [String: [(transition: String, version: Int)]] = [:]
        for line in read.stdout.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 2)
            guard fields.count == 3, let transition = fields[1].split(separator: ",").first(where: { $0.hasPrefix("sluice.saga.transition=") }),
                  let value = try? JSONSerialization.jsonObject(with: Data(fields[2].utf8)) as? [String: Any],
                  let saga = value["saga"] as? [String: Any], let version = saga["version"] as? Int else { continue }
            states[String(fields[0]), default: []].append((String(transition.dropFirst("sluice.saga.transition=".count)), version))
        }
        return states
    }

    /// Starts saga `s<index>` (`-fail` for every tenth) through the agent at `base`; returns how often it was retried.
    static func start(_ base: String, _ index: Int) async throws -> Int {
        let id = "s\(index)" + (index % 10 == 3 ? "-fail" : "")
        var started = try await http("POST", base + "/v1/sagas/order?id=\(id)", headers: ["Content-Type": "application/json"], body: json(["n": index]))
        // While a dead agent's partitions have no owner yet, a start is answered 503: retried with the same id, it is
        // answered by the new owner (200 when the first request had started it meanwhile).
        var retries = 0
        while started.status == 503 && retries < 5 {
            #expect((started.json["detail"] as? String)?.contains("retry with id=\(id)") == true, "\(started.text)")
            retries += 1
            started = try await http("POST", base + "/v1/sagas/order?id=\(id)", headers: ["Content-Type": "application/json"], body: json(["n": index]))
        }
        #expect(started.status == 201 || (retries > 0 && started.status == 200), "\(id): \(started.text)")
        return retries
    }

    @Test("two agents with the same sagas and 100 sagas: each saga driven by one agent, compensations run, and after one agent is killed the other finishes its sagas")
    func sagasSharedAndTakenOver() async throws {
        let cluster = try MockCluster.started(topics: ["__sluice_sagas 4", "orders 2", "payments 2", "replies 2"])
        defer { cluster.stop() }
        try await withTemporaryDirectory { dir in
            try Self.yaml.write(toFile: dir + "/sagas.yaml", atomically: true, encoding: .utf8)
            func serve(_ name: String) async throws -> ServedAgent {
                try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
                return try await startServed(dir + "/" + name, ["--log-backend", "kafka", "--cluster-bootstrap-servers", cluster.bootstrapServers,
                                                                "--kafka-address", "off", "--sagas-file", dir + "/sagas.yaml",
                                                                "--session-timeout-ms", "6000", "--heartbeat-interval-ms", "500"])
            }
            let first = try await serve("a")
            defer { first.stop() }
            let second = try await serve("b")
            var secondAlive = true
            defer { if secondAlive { second.stop() } }
            let participant = Participant()
            try await participant.start(first.base)
            defer { participant.stop() }

            // Both agents own some of the saga topic's partitions.
            var shared = false
            for _ in 0..<150 where !shared {
                try await Task.sleep(for: .milliseconds(100))
                shared = first.logText().contains("saga partitions taken") && second.logText().contains("saga partitions taken")
            }
            #expect(shared, "the saga topic's partitions were not split between the agents")

            var retried = 0
            /// Starts `indices` ten at a time, alternating between `agents`.
            func starts(_ indices: Range<Int>, _ agents: [ServedAgent]) async throws {
                for chunk in stride(from: indices.lowerBound, to: indices.upperBound, by: 10) {
                    retried += try await withThrowingTaskGroup(of: Int.self) { group in
                        for index in chunk..<min(chunk + 10, indices.upperBound) {
                            let base = agents[index % agents.count].base
                            group.addTask { try await Self.start(base, index) }
                        }
                        return try await group.reduce(0, +)
                    }
                }
            }
            // 60 sagas started through either agent (each is driven by the owner of its partition, whichever that is).
            try await starts(0..<60, [first, second])
            // Any agent answers for any saga.
            let elsewhere = try await http("GET", second.base + "/v1/sagas/s0")
            #expect(elsewhere.status == 200 && elsewhere.json["id"] as? String == "s0", "\(elsewhere.text)")

            // One agent dies mid-way; 40 more sagas are started through the other.
            second.kill9()
            secondAlive = false
            try await starts(60..<100, [first])

            // Every saga finishes: completed, or compensated when its payment was refused.
            var statuses: [String: String] = [:]
            let deadline = Date().addingTimeInterval(90)
            while statuses.count < 100 && Date() < deadline {
                for index in 0..<100 where statuses["s\(index)"] == nil && statuses["s\(index)-fail"] == nil {
                    let id = "s\(index)" + (index % 10 == 3 ? "-fail" : "")
                    let saga = try await http("GET", first.base + "/v1/sagas/\(id)")
                    if let status = saga.json["status"] as? String, status != "running", status != "compensating" { statuses[id] = status }
                }
                if statuses.count < 100 { try await Task.sleep(for: .milliseconds(250)) }
            }
            #expect(statuses.count == 100, "finished \(statuses.count) of 100")
            #expect(statuses.filter { $0.key.hasSuffix("-fail") }.allSatisfy { $0.value == "compensated" })
            #expect(statuses.filter { !$0.key.hasSuffix("-fail") }.allSatisfy { $0.value == "completed" }, "\(statuses.filter { $0.value != "completed" && !$0.key.hasSuffix("-fail") })")
            #expect(statuses.count { $0.key.hasSuffix("-fail") } == 10)
            #expect(first.logText().contains("commands_resent"))
            #expect(retried <= 40, "only starts while the dead agent's partitions had no owner are retried")

            // Driven once: in the saga topic (read by kcat), each saga was started once and each of its versions was
            // recorded once (two drivers would record the same version twice).
            let states = try Self.stateRecords(cluster.bootstrapServers)
            #expect(states.count == 100)
            for (key, records) in states {
                #expect(records.count { $0.transition == "started" } == 1, "\(key): \(records)")
                #expect(Set(records.map(\.version)).count == records.count, "\(key) has a version recorded twice: \(records)")
            }
            // The participant got every command; the refused ones' orders were cancelled (the compensation).
            let commands = participant.commands.withLock { $0 }
            for id in statuses.keys {
                #expect(Set(commands.filter { $0.saga == id }.map(\.type)) == (id.hasSuffix("-fail") ? ["order.create", "payment.process", "order.cancel"]
                                                                                                : ["order.create", "payment.process"]), "\(id)")
            }
        }
    }
}
