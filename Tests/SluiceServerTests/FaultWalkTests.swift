import Foundation
@_spi(FaultInjection) import SluiceLog
import SluiceBroker
import SluiceSaga
import Testing

/// The file-layer fault walked over the agent's own writes: a dead letter and a saga state record. For every
/// I/O call N of that write, call N fails (ENOSPC, then EIO). Afterwards nothing accepted is lost, nothing is
/// there twice, and the agent either goes on or says why not — and after a restart it goes on.
@Suite("Fault walk through the agent", .serialized)
struct FaultWalkTests {
    static let errnos = [FileFaults.noSpace, FileFaults.ioError]

    /// Runs `round(failAt, errno)` with failAt 0 (counting the calls) and then 1...calls.
    static func walk(_ name: String, _ round: (Int, Int32) async throws -> Int) async throws {
        for errno in errnos {
            var calls = 0
            var failAt = 0
            while failAt <= calls {
                let seen = try await round(failAt, errno)
                if failAt == 0 { calls = seen }
                failAt += 1
            }
            #expect(calls > 0, "\(name) made no I/O call to fail")
        }
    }

    @Test("a dead-letter write: every failing I/O call ends with the event in the DLQ exactly once and its offset committed")
    func deadLetterWrite() async throws {
        try await Self.walk("dead-letter write") { failAt, errno in
            try await withTemporaryDirectory { dir in
                let app = TestApp()
                try await app.start()
                app.answer { _, _, _ in TestApp.Answer(status: 400) }
                do {
                    let seen = try await Self.deadLetterRound(dir, app, failAt: failAt, errno: errno)
                    await app.stop()
                    return seen
                } catch {
                    await app.stop()
                    throw error
                }
            }
        }
    }

    static func deadLetterRound(_ dir: String, _ app: TestApp, failAt: Int, errno: Int32) async throws -> Int {
                let arguments = ["--linger-ms", "0"]
                var agent = try await startAgent(dir, arguments)
                let context = "dead-letter write, I/O call \(failAt) failing with errno \(errno)"
                var client = DeliveryClient(base: agent.base)
                #expect(try await client.subscribe("walk", subscriptionBody(app, retry: ["max_attempts": 1])).status == 201)
                // The DLQ topic is created by the first dead letter, so its creation is part of the walk.
                FileFaults.arm(failAt: failAt, under: dir + "/data/topics/orders.dlq", errno: errno)
                try await client.publish("orders", [cloudEvent("walk-0", key: "k")])
                let written = try await client.waitUntil(4) { try await client.deadLetters("orders.dlq").count >= 1 }
                let seen = FileFaults.disarm()
                if !written {
                    // Writes to the DLQ partition stopped (a failed fsync): the agent says why, and a restart heals it.
                    let said = try agent.logLines().contains { ($0["message"] as? String)?.hasPrefix("could not write a dead letter") == true && ($0["error"] as? String)?.isEmpty == false }
                    #expect(said, "\(context): the dead letter is not written and no log line says why")
                    await agent.stop()
                    agent = try await startAgent(dir, arguments)
                    client = DeliveryClient(base: agent.base)
                    #expect(try await client.waitUntil(10) { try await client.deadLetters("orders.dlq").count >= 1 }, "\(context): not dead-lettered after a restart")
                }
                // The agent goes on: a second failing event is dead-lettered too.
                try await client.publish("orders", [cloudEvent("walk-1", key: "k")])
                #expect(try await client.waitUntil(10) { try await client.deadLetters("orders.dlq").count >= 2 }, "\(context): the next event is not dead-lettered")
                try await Task.sleep(for: .milliseconds(200))
                let letters = try await client.deadLetters("orders.dlq")
                #expect(letters.compactMap { $0["original_offset"] as? Int }.sorted() == [0, 1], "\(context): dead letters \(letters)")
                #expect(try await client.waitUntil(10) {
                    let group = try await http("GET", agent.base + "/v1/groups/walk").json
                    let partitions = group["partitions"] as? [[String: Any]] ?? []
                    return partitions.contains { $0["topic"] as? String == "orders" && $0["committed_offset"] as? Int == 2 }
                }, "\(context): the source offset is not committed past both events")
                await agent.stop()
                return seen.seen
    }

    @Test("a saga state write: every failing I/O call ends with the saga completed once, each command sent under its own id")
    func sagaStateWrite() async throws {
        try await Self.walk("saga state write") { failAt, errno in
            try await withTemporaryDirectory { dir in
                var agent = try await sagaAgent(dir, yaml: orderSagaYAML())
                var participant = scriptedParticipant(agent.base)
                try await participant.start()
                let context = "saga state write, I/O call \(failAt) failing with errno \(errno)"
                let id = "walk-\(failAt)"
                var earlier: [String] = []
                FileFaults.arm(failAt: failAt, under: dir + "/data/topics/" + SagaEngine.stateTopic, errno: errno)
                var started = try await http("POST", agent.base + "/v1/sagas/order?id=\(id)", body: json(["order_id": "o", "total": 1]))
                let done = try await DeliveryClient(base: agent.base).waitUntil(4) {
                    ["completed"].contains(try await SagaClient(base: agent.base).saga(id)["status"] as? String ?? "")
                }
                let seen = FileFaults.disarm()
                #expect([201, 503].contains(started.status), "\(context): start answered \(started.status) \(started.text)")
                if started.status == 503 {
                    #expect(started.text.contains("could not be recorded") && started.header("Retry-After") != nil, "\(context): \(started.text)")
                }
                if !done {
                    let said = try agent.logLines().contains { ($0["message"] as? String)?.hasPrefix("saga states could not be recorded") == true }
                    #expect(said, "\(context): the saga is stuck and no log line says why")
                    await participant.stop()
                    earlier = participant.received(saga: id).map(\.id)
                    await agent.stop()
                    agent = try await sagaAgent(dir, yaml: orderSagaYAML())
                    participant = scriptedParticipant(agent.base)
                    try await participant.start()
                    // The client's retry with the same id: the saga if it was recorded, else a new start.
                    started = try await http("POST", agent.base + "/v1/sagas/order?id=\(id)", body: json(["order_id": "o", "total": 1]))
                    #expect([200, 201].contains(started.status), "\(context): retry answered \(started.status) \(started.text)")
                }
                let saga = try await SagaClient(base: agent.base).finished(id)
                #expect(saga["status"] as? String == "completed", "\(context): \(saga)")
                let commands = earlier + participant.received(saga: id).map(\.id)
                #expect(Set(commands) == ["\(id).create_order", "\(id).payment", "\(id).inventory", "\(id).shipping"], "\(context): commands \(commands)")
                let listed = try await http("GET", agent.base + "/v1/sagas?type=order").json["sagas"] as? [[String: Any]] ?? []
                #expect(listed.filter { $0["id"] as? String == id }.count == 1, "\(context): \(listed)")
                await participant.stop()
                await agent.stop()
                return seen.seen
            }
        }
    }
}
