import Foundation
import SluiceBroker
import Synchronization
import Testing

/// `POST /v1/events?atomic=true`: one transaction over every topic the events route to.
@Suite("Atomic publishing")
struct AtomicPublishTests {
    static let routes = """
        routes:
          - match: "order.*"
            topic: orders
          - match: "payment.*"
            topic: payments
          - match: "shipment.*"
            topic: shipments
        """
    static let topics = ["orders", "payments", "shipments"]

    func writeConfig(_ dir: String) throws -> String {
        let path = dir + "/sluice.yaml"
        try Self.routes.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Ten events of one transaction over the three topics, keyed so that they spread over partitions.
    static func transaction(_ id: String) -> [[String: Any]] {
        (0..<10).map { n in
            let type = ["order.created", "payment.captured", "shipment.sent"][n % 3]
            return cloudEvent("\(id)-\(n)", type: type, key: "\(id)-\(n)", data: ["txn": id, "n": n])
        }
    }

    @Test("an atomic batch over three topics: all events with offsets, readers and groups move past the markers, bad parameters refused")
    func atomicBatch() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "1"], configFile: try writeConfig(dir))
            defer { Task { await agent.stop() } }
            let r = try await http("POST", agent.base + "/v1/events?atomic=true", headers: batch, body: json(Self.transaction("t1")))
            #expect(r.status == 200, "\(r.text)")
            #expect(r.json["acks"] as? String == "all")
            let results = try #require(r.json["results"] as? [[String: Any]])
            #expect(results.map { $0["topic"] as! String } == (0..<10).map { Self.topics[$0 % 3] })
            #expect(results.allSatisfy { $0["offset"] is Int })

            for (topic, count) in [("orders", 4), ("payments", 3), ("shipments", 3)] {
                for isolation in ["read_committed", "read_uncommitted"] {
                    let read = try await http("GET", agent.base + "/v1/topics/\(topic)/partitions/0/events?offset=0&isolation_level=\(isolation)")
                    #expect(read.status == 200, "\(read.text)")
                    #expect((read.json["events"] as? [[String: Any]])?.count == count, "\(topic) \(isolation): \(read.text)")
                    #expect(read.json["log_end_offset"] as? Int == count + 1, "the events and the COMMIT marker")
                    #expect(read.json["next_offset"] as? Int == count + 1 && read.json["last_stable_offset"] as? Int == count + 1)
                }
            }
            // A consumer group reads them and commits past the marker: no lag left.
            let client = GroupClient(base: agent.base)
            let member = try await client.join("audit", client: "a", topics: ["orders"])["member_id"] as! String
            let polled = try await client.poll("audit", member, waitMs: 500)
            #expect((polled.json["events"] as? [[String: Any]])?.count == 4, "\(polled.text)")
            let positions = polled.json["positions"] as? [[String: Any]] ?? []
            #expect(positions.first?["offset"] as? Int == 5, "\(polled.text)")
            #expect(try await client.commit("audit", member: member, [("orders", 0, 5)]).status == 200)

            let badFlag = try await http("POST", agent.base + "/v1/events?atomic=maybe", headers: batch, body: json(Self.transaction("t2")))
            #expect(badFlag.status == 400 && badFlag.text.contains("atomic"), "\(badFlag.text)")
            let badIsolation = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0&isolation_level=dirty")
            #expect(badIsolation.status == 400 && badIsolation.text.contains("read_committed"), "\(badIsolation.text)")
            // Nothing of the refused request was written.
            let after = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0&isolation_level=read_uncommitted")
            #expect((after.json["events"] as? [[String: Any]])?.count == 4)

            try await Task.sleep(for: .milliseconds(300))
            let text = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(text, "sluice_transactions_total", ["outcome": "committed"]) == 1)
            #expect(sample(text, "sluice_transactions_open") == 0)
            #expect(sample(text, "sluice_partition_last_stable_offset", ["topic": "orders", "partition": "0"]) == 5)
            await agent.stop()
        }
    }

    @Test("atomic batches over three topics with kill -9 at random moments, 30 times: all or nothing for read_committed, every acknowledged one there")
    func killNine() async throws {
        try await withTemporaryDirectory { dir in
            let config = try writeConfig(dir)
            var committedNext: [String: Int] = [:]  // "topic/partition" → next offset read so far (read_committed)
            var uncommittedNext: [String: Int] = [:]
            var seen: [String: Set<Int>] = [:]  // transaction → its events' n, read_committed
            var seenUncommitted: Set<String> = []
            var acknowledged: Set<String> = []
            var abortedSeen = 0

            /// Reads every partition from where the last check stopped, to the log end (nothing is open after recovery).
            func check(_ base: String) async throws {
                for topic in Self.topics {
                    for partition in 0..<2 {
                        let key = "\(topic)/\(partition)"
                        for (isolation, committed) in [("read_committed", true), ("read_uncommitted", false)] {
                            var offset = (committed ? committedNext : uncommittedNext)[key] ?? 0
                            while true {
                                let r = try await http("GET", base + "/v1/topics/\(topic)/partitions/\(partition)/events?offset=\(offset)&max=500&isolation_level=\(isolation)")
                                if r.status == 404, offset == 0 { break }  // not created yet
                                guard r.status == 200 else {
                                    Issue.record("read \(key) \(isolation) at \(offset): \(r.text)")
                                    return
                                }
                                for item in r.json["events"] as? [[String: Any]] ?? [] {
                                    let data = (item["event"] as? [String: Any])?["data"] as? [String: Any] ?? [:]
                                    let txn = data["txn"] as! String, n = data["n"] as! Int
                                    if committed { seen[txn, default: []].insert(n) } else { seenUncommitted.insert(txn) }
                                }
                                let next = r.json["next_offset"] as! Int
                                #expect(committed == false || r.json["last_stable_offset"] as? Int == r.json["log_end_offset"] as? Int,
                                        "after recovery no transaction is open: \(r.text.prefix(300))")
                                if next == offset || next >= r.json["log_end_offset"] as! Int {
                                    offset = next
                                    break
                                }
                                offset = next
                            }
                            if committed { committedNext[key] = offset } else { uncommittedNext[key] = offset }
                        }
                    }
                }
                for (txn, ns) in seen { #expect(ns.count == 10, "transaction \(txn) is partly visible to read_committed: \(ns.sorted())") }
                for txn in acknowledged { #expect(seen[txn]?.count == 10, "acknowledged transaction \(txn) is missing after the restart") }
                abortedSeen = seenUncommitted.subtracting(seen.keys).count
                for txn in seenUncommitted.subtracting(seen.keys) { #expect(!acknowledged.contains(txn), "acknowledged \(txn) was aborted") }
            }

            for round in 0..<30 {
                let agent = try await startServed(dir, ["--config", config, "--num-partitions", "2", "--linger-ms", "0"])
                do {
                    try await check(agent.base)
                    let load = TransactionLoad()
                    let workers = (0..<3).map { worker in
                        Task {
                            var n = 0
                            while !load.stop.load(ordering: .relaxed) {
                                let id = "r\(round)-w\(worker)-\(n)"
                                n += 1
                                guard let r = try? await http("POST", agent.base + "/v1/events?atomic=true", headers: batch, body: json(Self.transaction(id))) else { break }
                                if r.status == 200 { load.acked.withLock { $0.append(id) } }
                            }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(Int.random(in: 80...400)))
                    agent.kill9()
                    load.stop.store(true, ordering: .relaxed)
                    for worker in workers { await worker.value }
                    acknowledged.formUnion(load.acked.withLock { $0 })
                } catch {
                    agent.kill9()
                    throw error
                }
            }
            let last = try await startServed(dir, ["--config", config, "--num-partitions", "2"])
            defer { last.stop() }
            try await check(last.base)
            #expect(acknowledged.count > 30, "the load ran: \(acknowledged.count) transactions acknowledged")
            #expect(seen.count >= acknowledged.count)
            print("kill -9 ×30: \(acknowledged.count) acknowledged, \(seen.count) committed, \(abortedSeen) aborted by recovery")
        }
    }
}

final class TransactionLoad: Sendable {
    let stop = Atomic<Bool>(false)
    let acked = Mutex<[String]>([])
}
