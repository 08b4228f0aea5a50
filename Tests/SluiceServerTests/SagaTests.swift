import Foundation
import SluiceSchema
import SluiceSaga
import SluiceTelemetry
import Synchronization
import Testing

/// A saga participant for tests: reads command events through a consumer group and answers each with the reply
/// `decide` picks (nil: no answer), published to the `replies` topic with the saga's correlation id and the
/// command's id as causation id.
final class Participant: Sendable {
    struct Command: Sendable {
        var id: String
        var type: String
        var sagaId: String
        var step: String
        var causationId: String?
        var data: Data
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
    }

    let base: String
    let decide: @Sendable (Command) -> String?
    private let log = Mutex<[Command]>([])
    private let loop = Mutex<Task<Void, Never>?>(nil)

    init(base: String, decide: @escaping @Sendable (Command) -> String?) {
        self.base = base
        self.decide = decide
    }

    var received: [Command] { log.withLock { $0 } }
    func received(saga: String) -> [Command] { received.filter { $0.sagaId == saga } }

    /// The compensation commands of a saga, once `count` have arrived (a fire-and-forget one is done as soon as it
    /// is published, so it can arrive after the saga has finished) or after 10 s.
    func compensations(saga: String, count: Int) async throws -> [String] {
        func now() -> [String] { received(saga: saga).map(\.type).filter { ["order.cancel", "payment.refund", "inventory.release"].contains($0) } }
        let deadline = Date().addingTimeInterval(10)
        while now().count < count && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        return now()
    }

    func start(topics: [String] = ["orders", "payments", "inventory", "shipping"]) async throws {
        for topic in topics + ["replies"] { _ = try await http("POST", base + "/v1/topics", body: json(["name": topic, "partitions": 2])) }
        let joined = try await GroupClient(base: base).join("participants", client: "participant", topics: topics)
        let member = joined["member_id"] as! String
        let task = Task {
            while !Task.isCancelled {
                guard let r = try? await GroupClient(base: self.base).poll("participants", member, waitMs: 200, max: 500), r.status == 200 else {
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                var replies: [[String: Any]] = []
                for entry in r.json["events"] as? [[String: Any]] ?? [] {
                    guard let event = entry["event"] as? [String: Any] else { continue }
                    let command = Command(id: event["id"] as! String, type: event["type"] as! String, sagaId: event["correlationid"] as? String ?? "",
                                          step: event["sagastep"] as? String ?? "", causationId: event["causationid"] as? String,
                                          data: (try? JSONSerialization.data(withJSONObject: event["data"] ?? [:])) ?? Data())
                    self.log.withLock { $0.append(command) }
                    guard let reply = self.decide(command) else { continue }
                    replies.append(["specversion": "1.0", "id": "reply-\(command.id)", "source": "/participant", "type": reply,
                                    "correlationid": command.sagaId, "causationid": command.id,
                                    "data": ["by": command.type, "payment_id": "pay-\(command.sagaId)"]])
                }
                if !replies.isEmpty {
                    _ = try? await http("POST", self.base + "/v1/topics/replies/events", headers: batch, body: json(replies))
                }
            }
        }
        loop.withLock { $0 = task }
    }

    func stop() async {
        let task = loop.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

/// The order saga of the seed material, with replies on `replies`.
func orderSagaYAML(stepTimeoutMs: Int = 10_000, sagaTimeoutMs: Int = 0, refundAttempts: Int = 3, outcomeTopic: Bool = false) -> String {
    """
    sagas:
      - type: order
        timeout_ms: \(sagaTimeoutMs)
    \(outcomeTopic ? "    outcome_topic: order-outcomes" : "")
        steps:
          - name: create_order
            command: {topic: orders, type: order.create}
            success: order.created
            failure: order.rejected
            reply_topic: replies
            timeout_ms: \(stepTimeoutMs)
            compensation:
              command: {topic: orders, type: order.cancel, data: {order_id: "${data.order_id}", reason: saga_compensation}}
          - name: payment
            command: {topic: payments, type: payment.process, data: {order_id: "${data.order_id}", amount: "${data.total}", note: "order ${data.order_id}"}}
            success: payment.processed
            failure: payment.failed
            reply_topic: replies
            timeout_ms: \(stepTimeoutMs)
            compensation:
              command: {topic: payments, type: payment.refund, data: {payment_id: "${steps.payment.payment_id}"}}
              success: payment.refunded
              failure: payment.refund_failed
              reply_topic: replies
              timeout_ms: 2000
              retry: {max_attempts: \(refundAttempts), initial_backoff_ms: 20, max_backoff_ms: 100}
          - name: inventory
            command: {topic: inventory, type: inventory.reserve}
            success: inventory.reserved
            failure: inventory.insufficient
            reply_topic: replies
            timeout_ms: \(stepTimeoutMs)
            compensation:
              command: {topic: inventory, type: inventory.release}
          - name: shipping
            command: {topic: shipping, type: shipping.schedule}
            success: shipping.scheduled
            failure: shipping.failed
            reply_topic: replies
            timeout_ms: \(stepTimeoutMs)
    """
}

/// Each command type's success and failure reply.
let replyTypes = ["order.create": ("order.created", "order.rejected"), "payment.process": ("payment.processed", "payment.failed"),
                  "inventory.reserve": ("inventory.reserved", "inventory.insufficient"), "shipping.schedule": ("shipping.scheduled", "shipping.failed"),
                  "payment.refund": ("payment.refunded", "payment.refund_failed")]

struct SagaClient {
    var base: String

    func start(_ data: [String: Any], id: String? = nil) async throws -> [String: Any] {
        let r = try await http("POST", base + "/v1/sagas/order" + (id.map { "?id=\($0)" } ?? ""), body: json(data))
        #expect(r.status == 201, "start: \(r.text)")
        return r.json
    }

    func saga(_ id: String) async throws -> [String: Any] { try await http("GET", base + "/v1/sagas/\(id)").json }

    /// Waits until the saga has a final status and returns it.
    func finished(_ id: String, timeout: Double = 30) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try await saga(id)
            if let status = last["status"] as? String, status != "running", status != "compensating" { return last }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("saga \(id) did not finish: \(last)")
        return last
    }
}

/// An agent with the sagas of `yaml` and a scripted participant, both stopped after `body`.
func withSagaAgent(yaml: String, arguments: [String] = [], refund: String = "payment.refunded",
                   _ body: (String, RunningAgent, Participant) async throws -> Void) async throws {
    try await withTemporaryDirectory { dir in
        let agent = try await sagaAgent(dir, yaml: yaml, arguments)
        let participant = scriptedParticipant(agent.base, refund: refund)
        do {
            try await participant.start()
            try await body(dir, agent, participant)
        } catch {
            await participant.stop()
            await agent.stop()
            throw error
        }
        await participant.stop()
        await agent.stop()
    }
}

func sagaAgent(_ dir: String, yaml: String, _ arguments: [String] = []) async throws -> RunningAgent {
    try yaml.write(toFile: dir + "/sagas.yaml", atomically: true, encoding: .utf8)
    return try await startAgent(dir, ["--sagas-file", dir + "/sagas.yaml", "--linger-ms", "0"] + arguments)
}

/// The scripted participant: a saga whose id ends in `--fail-STEP` gets a failure reply at that step, one ending
/// in `--silent-STEP` no reply there; refunds are answered with `refund` (success by default).
func scriptedParticipant(_ base: String, refund: String = "payment.refunded") -> Participant {
    Participant(base: base) { command in
        if command.type == "payment.refund" { return refund }
        guard let (success, failure) = replyTypes[command.type] else { return nil }
        if command.sagaId.hasSuffix("--silent-\(command.step)") { return nil }
        return command.sagaId.hasSuffix("--fail-\(command.step)") ? failure : success
    }
}

@Suite("Sagas", .serialized)
struct SagaTests {
    @Test("happy path: four commands in order, each caused by the previous reply, data from templates; completed in the API, metrics and logs")
    func happyPath() async throws {
        try await withSagaAgent(yaml: orderSagaYAML(outcomeTopic: true)) { dir, agent, participant in
            let client = SagaClient(base: agent.base)
            let started = try await client.start(["order_id": "o-1", "total": 42], id: "happy-1")
            #expect(started["status"] as? String == "running")
            let saga = try await client.finished("happy-1")
            #expect(saga["status"] as? String == "completed")
            let steps = saga["steps"] as? [[String: Any]] ?? []
            #expect(steps.map { $0["status"] as? String } == ["succeeded", "succeeded", "succeeded", "succeeded"])
            #expect(steps.allSatisfy { ($0["duration_seconds"] as? Double ?? -1) >= 0 && $0["reply_type"] != nil })

            let commands = participant.received(saga: "happy-1")
            #expect(commands.map(\.type) == ["order.create", "payment.process", "inventory.reserve", "shipping.schedule"])
            #expect(commands.map(\.id) == ["happy-1.create_order", "happy-1.payment", "happy-1.inventory", "happy-1.shipping"])
            #expect(commands[0].causationId == nil)
            #expect(commands.dropFirst().map(\.causationId) == commands.dropLast().map { "reply-\($0.id)" })
            let payment = commands[1].object
            #expect(payment["order_id"] as? String == "o-1" && payment["amount"] as? Int == 42 && payment["note"] as? String == "order o-1")
            // Without a template, the command carries the saga's data updated with every reply so far.
            #expect(commands[2].object["order_id"] as? String == "o-1" && commands[2].object["payment_id"] as? String == "pay-happy-1")

            // The outcome event.
            // The outcome event goes out just after the final state is recorded.
            let outcome = try await DeliveryClient(base: agent.base).waitUntil(10) {
                var events: [[String: Any]] = []
                for partition in 0..<3 {
                    let page = try await http("GET", agent.base + "/v1/topics/order-outcomes/partitions/\(partition)/events?offset=0").json
                    events += (page["events"] as? [[String: Any]] ?? []).compactMap { $0["event"] as? [String: Any] }
                }
                return events.contains { $0["type"] as? String == "saga.completed" && $0["correlationid"] as? String == "happy-1" }
            }
            #expect(outcome, "saga.completed on order-outcomes")

            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_saga_started_total", ["saga_type": "order"]) == 1)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "completed"]) == 1)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "compensated"]) == 0)
            #expect(sample(scrape, "sluice_saga_duration_seconds_count", ["saga_type": "order", "status": "completed"]) == 1)
            for step in ["create_order", "payment", "inventory", "shipping"] {
                #expect(sample(scrape, "sluice_saga_step_duration_seconds_count", ["saga_type": "order", "step": step, "outcome": "succeeded"]) == 1)
            }
            #expect(sample(scrape, "sluice_sagas_in_flight", ["saga_type": "order"]) == 0)
            #expect(sample(scrape, "sluice_saga_oldest_in_flight_age_seconds", ["saga_type": "order"]) == 0)

            let lines = try agent.logLines().filter { $0["saga.id"] as? String == "happy-1" }
            #expect(lines.map { $0["message"] as? String ?? "" }.contains("saga completed"))
            #expect(lines.allSatisfy { $0["correlation_id"] as? String == "happy-1" && $0["saga.type"] as? String == "order" })

            // Starting again with the same id returns the saga, not a second one.
            let again = try await http("POST", agent.base + "/v1/sagas/order?id=happy-1", body: json(["order_id": "o-1"]))
            #expect(again.status == 200 && again.json["status"] as? String == "completed")
        }
    }

    @Test("a failure at each step compensates the completed steps in reverse order")
    func failureAtEveryStep() async throws {
        try await withSagaAgent(yaml: orderSagaYAML()) { dir, agent, participant in
            let client = SagaClient(base: agent.base)
            let expected: [String: (status: String, compensations: [String])] = [
                "create_order": ("failed", []),
                "payment": ("compensated", ["order.cancel"]),
                "inventory": ("compensated", ["payment.refund", "order.cancel"]),
                "shipping": ("compensated", ["inventory.release", "payment.refund", "order.cancel"]),
            ]
            for step in expected.keys { _ = try await client.start(["order_id": "o-\(step)"], id: "o--fail-\(step)") }
            for (step, want) in expected {
                let saga = try await client.finished("o--fail-\(step)")
                #expect(saga["status"] as? String == want.status, "failing at \(step)")
                #expect(saga["failed_step"] as? String == step)
                let compensations = try await participant.compensations(saga: "o--fail-\(step)", count: want.compensations.count)
                #expect(compensations == want.compensations, "failing at \(step): \(participant.received(saga: "o--fail-\(step)").map(\.type))")
                // Nothing after the failed step was asked for.
                let order = ["create_order", "payment", "inventory", "shipping"]
                let later = order[(order.firstIndex(of: step)! + 1)...]
                #expect(participant.received(saga: "o--fail-\(step)").allSatisfy { !later.contains($0.step) || $0.id.contains("compensate") })
            }
            let cancel = participant.received(saga: "o--fail-shipping").first { $0.type == "order.cancel" }
            #expect(cancel?.object["order_id"] as? String == "o-shipping" && cancel?.object["reason"] as? String == "saga_compensation")
            #expect(cancel?.causationId == "reply-o--fail-shipping.shipping", "compensations are caused by the failure reply")
            let refund = participant.received(saga: "o--fail-shipping").first { $0.type == "payment.refund" }
            #expect(refund?.object["payment_id"] as? String == "pay-o--fail-shipping")

            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "compensated"]) == 3)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "failed"]) == 1)
            #expect(sample(scrape, "sluice_saga_compensations_total", ["saga_type": "order", "step": "create_order", "outcome": "succeeded"]) == 3)
            #expect(sample(scrape, "sluice_saga_compensations_total", ["saga_type": "order", "step": "payment", "outcome": "succeeded"]) == 2)
            #expect(sample(scrape, "sluice_saga_step_duration_seconds_count", ["saga_type": "order", "step": "inventory", "outcome": "failed"]) == 1)
        }
    }

    @Test("a step that gets no reply times out and is compensated with the completed ones; a saga past its timeout ends timed_out")
    func timeouts() async throws {
        // Step timeouts of 300 ms; no saga timeout.
        try await withSagaAgent(yaml: orderSagaYAML(stepTimeoutMs: 300)) { _, agent, participant in
            let client = SagaClient(base: agent.base)
            _ = try await client.start(["order_id": "o-1"], id: "t--silent-inventory")
            let saga = try await client.finished("t--silent-inventory")
            #expect(saga["status"] as? String == "timed_out")
            let steps = saga["steps"] as? [[String: Any]] ?? []
            #expect(steps.map { $0["status"] as? String } == ["succeeded", "succeeded", "timed_out", "pending"])
            let waited = steps[2]["duration_seconds"] as? Double ?? 0
            #expect(waited >= 0.3 && waited < 3, "the step waited its timeout: \(waited) s")
            // The timed-out step's outcome is unknown, so it is compensated too, first.
            let compensations = try await participant.compensations(saga: "t--silent-inventory", count: 3)
            #expect(compensations == ["inventory.release", "payment.refund", "order.cancel"])
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_saga_step_duration_seconds_count", ["saga_type": "order", "step": "inventory", "outcome": "timed_out"]) == 1)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "timed_out"]) == 1)
        }
        // A 600 ms saga timeout with 10 s step timeouts: the saga's own limit ends it.
        try await withSagaAgent(yaml: orderSagaYAML(stepTimeoutMs: 10_000, sagaTimeoutMs: 600)) { _, agent, participant in
            let client = SagaClient(base: agent.base)
            _ = try await client.start(["order_id": "o-2"], id: "t--silent-shipping")
            let saga = try await client.finished("t--silent-shipping")
            #expect(saga["status"] as? String == "timed_out")
            #expect((saga["reason"] as? String ?? "").contains("did not finish within 600 ms"))
            let duration = saga["duration_seconds"] as? Double ?? 0
            #expect(duration >= 0.6 && duration < 5, "\(duration)")
            let compensations = try await participant.compensations(saga: "t--silent-shipping", count: 3)
            #expect(compensations == ["inventory.release", "payment.refund", "order.cancel"])
        }
    }

    @Test("a compensation that keeps failing is retried with backoff, then the saga needs intervention")
    func compensationFailure() async throws {
        try await withSagaAgent(yaml: orderSagaYAML(refundAttempts: 3), refund: "payment.refund_failed") { dir, agent, participant in
            let client = SagaClient(base: agent.base)
            _ = try await client.start(["order_id": "o-1"], id: "stuck--fail-inventory")
            let saga = try await client.finished("stuck--fail-inventory")
            #expect(saga["status"] as? String == "needs_intervention")
            let payment = (saga["steps"] as? [[String: Any]] ?? [])[1]["compensation"] as? [String: Any] ?? [:]
            #expect(payment["status"] as? String == "gave_up" && payment["attempts"] as? Int == 3)
            let refunds = participant.received(saga: "stuck--fail-inventory").filter { $0.type == "payment.refund" }
            #expect(refunds.map(\.id) == ["stuck--fail-inventory.payment.compensate.1", "stuck--fail-inventory.payment.compensate.2", "stuck--fail-inventory.payment.compensate.3"])
            // Later compensations wait for the operator: the order is not cancelled behind a failed refund.
            #expect(!participant.received(saga: "stuck--fail-inventory").contains { $0.type == "order.cancel" })
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_saga_compensations_total", ["saga_type": "order", "step": "payment", "outcome": "failed"]) == 3)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "needs_intervention"]) == 1)
            let listed = try await http("GET", agent.base + "/v1/sagas?status=needs_intervention").json["sagas"] as? [[String: Any]] ?? []
            #expect(listed.map { $0["id"] as? String } == ["stuck--fail-inventory"])
        }
    }

    @Test("kill -9 mid-saga: after restart every saga resumes where it was, the pending command is re-sent with the same id, and all complete")
    func killAndResume() async throws {
        try await withTemporaryDirectory { dir in
            try orderSagaYAML().write(toFile: dir + "/sagas.yaml", atomically: true, encoding: .utf8)
            // Without idempotence the re-sent commands are written again, so the participant sees them.
            let arguments = ["--sagas", dir + "/sagas.yaml", "--linger-ms", "1", "--enable-idempotence", "false"]
            let (first, api) = try await startServeProcess(dir, arguments)
            defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
            let hold = Atomic<Bool>(true)
            let before = Participant(base: "http://\(api)") { command in
                guard let (success, _) = replyTypes[command.type] else { return nil }
                return command.step == "shipping" && hold.load(ordering: .relaxed) ? nil : success
            }
            try await before.start()
            let client = SagaClient(base: "http://\(api)")
            let ids = (0..<20).map { "crash-\($0)" }
            for id in ids { _ = try await client.start(["order_id": id], id: id) }
            let waiting = try await DeliveryClient(base: "http://\(api)").waitUntil(30) {
                Set(before.received.filter { $0.step == "shipping" }.map(\.sagaId)).count == ids.count
            }
            #expect(waiting, "every saga reached its last step before the kill")
            await before.stop()
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()

            let (second, api2) = try await startServeProcess(dir, arguments)
            defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
            hold.store(false, ordering: .relaxed)
            let after = Participant(base: "http://\(api2)") { command in replyTypes[command.type]?.0 }
            try await after.start()
            let client2 = SagaClient(base: "http://\(api2)")
            for id in ids {
                let saga = try await client2.finished(id)
                #expect(saga["status"] as? String == "completed", "\(id): \(saga["status"] ?? "")")
            }
            // The shipping commands seen after the restart are the same events (same ids), not new ones; no
            // earlier step was asked for again.
            let resent = after.received.filter { ids.contains($0.sagaId) }
            #expect(Set(resent.map(\.id)).isSubset(of: Set(ids.map { "\($0).shipping" })), "\(Set(resent.map(\.id)).subtracting(ids.map { "\($0).shipping" }).prefix(3))")
            #expect(Set(resent.map(\.sagaId)) == Set(ids), "every pending command was re-sent")
            let logs = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("serve-") }.flatMap { name in
                try String(contentsOfFile: dir + "/" + name, encoding: .utf8).split(separator: "\n")
                    .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            }
            let loaded = logs.filter { $0["message"] as? String == "sagas loaded" }.map { ($0["in_flight"] as? Int, $0["commands_resent"] as? Int) }
            #expect(loaded.contains { $0 == (20, 20) }, "the restarted agent found 20 sagas in flight and re-sent their commands: \(loaded)")
            await after.stop()
            kill(second.processIdentifier, SIGTERM)
            second.waitUntilExit()
        }
    }

    @Test("a saga in flight longer than the saga topic's retention is recorded again, and survives a restart")
    func outlivesRetention() async throws {
        try await withTemporaryDirectory { dir in
            // Small segments and a 3 s retention for every topic, the saga topic included.
            let arguments = ["--retention-ms", "3000", "--segment-bytes", "1024", "--retention-check-interval-ms", "1000"]
            let agent = try await sagaAgent(dir, yaml: orderSagaYAML(stepTimeoutMs: 120_000), arguments)
            let participant = scriptedParticipant(agent.base)
            try await participant.start()
            let client = SagaClient(base: agent.base)
            _ = try await client.start(["order_id": "o-long"], id: "long--silent-shipping")
            try await Task.sleep(for: .seconds(5))
            // Later sagas append after it, so its early records are in segments retention may delete.
            for n in 0..<3 { _ = try await client.start(["order_id": "o-\(n)"], id: "later-\(n)") }
            for n in 0..<3 { #expect(try await client.finished("later-\(n)")["status"] as? String == "completed") }
            try await Task.sleep(for: .milliseconds(2500))
            let before = try await client.saga("long--silent-shipping")
            #expect(before["status"] as? String == "running" && before["current_step"] as? String == "shipping")
            await participant.stop()
            await agent.stop()

            let again = try await sagaAgent(dir, yaml: orderSagaYAML(stepTimeoutMs: 120_000), arguments)
            let after = try await SagaClient(base: again.base).saga("long--silent-shipping")
            #expect(after["status"] as? String == "running" && after["current_step"] as? String == "shipping", "\(after)")
            #expect((after["version"] as? Int ?? 0) >= (before["version"] as? Int ?? 0))
            await again.stop()
        }
    }

    @Test("observed sagas: followed by correlation id; outcome and duration from the events' own times")
    func observedSagas() async throws {
        try await withTemporaryDirectory { dir in
            let yaml = """
                observed_sagas:
                  - type: checkout
                    start: checkout.started
                    success: checkout.completed
                    failure: [checkout.failed]
                    compensated: checkout.compensated
                    timeout_ms: 1500
                    topics: [checkout]
                """
            let agent = try await sagaAgent(dir, yaml: yaml)
            defer { Task { await agent.stop() } }
            let client = DeliveryClient(base: agent.base)
            func send(_ type: String, _ correlation: String) async throws {
                try await client.publish("checkout", [cloudEvent("\(type)-\(correlation)", type: type, extra: ["correlationid": correlation])])
            }
            for id in ["c1", "c2", "c3", "c4"] { try await send("checkout.started", id) }
            // An outcome read before its start (the two on different partitions) is applied when the start comes.
            try await send("checkout.completed", "c5")
            try await send("checkout.started", "c5")
            try await send("order.created", "c1")  // not part of the saga
            try await Task.sleep(for: .milliseconds(300))
            try await send("checkout.completed", "c1")
            try await send("checkout.failed", "c2")
            try await send("checkout.failed", "c3")
            try await Task.sleep(for: .milliseconds(100))
            try await send("checkout.compensated", "c2")
            let sagas = SagaClient(base: agent.base)
            let c1 = try await sagas.finished("c1")
            #expect(c1["status"] as? String == "completed" && c1["kind"] as? String == "observed")
            let duration = c1["duration_seconds"] as? Double ?? 0
            #expect(duration >= 0.3 && duration < 1.5, "from the start event's time to the completion's: \(duration)")
            #expect(try await sagas.finished("c2")["status"] as? String == "compensated")
            #expect(try await sagas.finished("c3")["status"] as? String == "failed", "a failure without its compensation within the timeout")
            #expect(try await sagas.finished("c4")["status"] as? String == "timed_out")
            #expect(try await sagas.finished("c5")["status"] as? String == "completed")
            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_saga_started_total", ["saga_type": "checkout"]) == 5)
            for status in ["completed", "compensated", "failed", "timed_out"] {
                let count: Double = status == "completed" ? 2 : 1
                #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "checkout", "status": status]) == count, "\(status)")
                #expect(sample(scrape, "sluice_saga_duration_seconds_count", ["saga_type": "checkout", "status": status]) == count, "\(status)")
            }
            #expect(sample(scrape, "sluice_sagas_in_flight", ["saga_type": "checkout"]) == 0)
        }
    }

    @Test("1,000 concurrent sagas finish with exact counts in the metrics")
    func thousandSagas() async throws {
        try await withSagaAgent(yaml: orderSagaYAML(stepTimeoutMs: 60_000), arguments: ["--log-level", "warning"]) { dir, agent, participant in
            let client = SagaClient(base: agent.base)
            let ids = (0..<1000).map { $0 % 10 == 0 ? "bulk-\($0)--fail-inventory" : "bulk-\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in stride(from: 0, to: ids.count, by: 50) {
                    group.addTask {
                        for index in chunk..<min(chunk + 50, ids.count) {
                            _ = try await client.start(["order_id": ids[index]], id: ids[index])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let metrics = "http://\(agent.metricsAddress)/metrics"
            let done = try await DeliveryClient(base: agent.base).waitUntil(120) {
                let scrape = try await http("GET", metrics).text
                return sample(scrape, "sluice_sagas_in_flight", ["saga_type": "order"]) == 0
                    && sample(scrape, "sluice_saga_started_total", ["saga_type": "order"]) == 1000
            }
            #expect(done)
            let scrape = try await http("GET", metrics).text
            #expect(sample(scrape, "sluice_saga_started_total", ["saga_type": "order"]) == 1000)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "completed"]) == 900)
            #expect(sample(scrape, "sluice_saga_completions_total", ["saga_type": "order", "status": "compensated"]) == 100)
            #expect(sample(scrape, "sluice_saga_duration_seconds_count", ["saga_type": "order", "status": "completed"]) == 900)
            #expect(sample(scrape, "sluice_saga_step_duration_seconds_count", ["saga_type": "order", "step": "shipping", "outcome": "succeeded"]) == 900)
            #expect(sample(scrape, "sluice_saga_compensations_total", ["saga_type": "order", "step": "payment", "outcome": "succeeded"]) == 100)
            let listed = try await http("GET", agent.base + "/v1/sagas?type=order&status=completed&limit=10000").json["sagas"] as? [[String: Any]] ?? []
            #expect(listed.count == 900)
            // Exactly one command per step per saga (no duplicates from batching).
            let commands = participant.received.filter { $0.type == "order.create" }
            #expect(commands.count == 1000 && Set(commands.map(\.id)).count == 1000)
        }
    }

    @Test("API: unknown types, bad bodies and filters get problem answers naming the fix")
    func apiErrors() async throws {
        try await withTemporaryDirectory { dir in
            let yaml = orderSagaYAML() + "\nobserved_sagas:\n  - {type: checkout, start: checkout.started, success: checkout.completed}\n"
            let agent = try await sagaAgent(dir, yaml: yaml)
            defer { Task { await agent.stop() } }
            var r = try await http("POST", agent.base + "/v1/sagas/nope", body: json([:] as [String: Any]))
            #expect(r.status == 404 && (r.json["detail"] as? String ?? "").contains("declared: order"))
            r = try await http("POST", agent.base + "/v1/sagas/checkout", body: json([:] as [String: Any]))
            #expect(r.status == 400 && (r.json["detail"] as? String ?? "").contains("observed"))
            r = try await http("POST", agent.base + "/v1/sagas/order", body: Data("[1,2]".utf8))
            #expect(r.status == 400 && r.header("Content-Type") == "application/problem+json")
            r = try await http("POST", agent.base + "/v1/sagas/order?id=a%20b", body: json([:] as [String: Any]))
            #expect(r.status == 400)
            r = try await http("GET", agent.base + "/v1/sagas?status=stuck")
            #expect(r.status == 400 && (r.json["detail"] as? String ?? "").contains("needs_intervention"))
            r = try await http("GET", agent.base + "/v1/sagas?type=nope")
            #expect(r.status == 400)
            r = try await http("GET", agent.base + "/v1/sagas/none-such")
            #expect(r.status == 404)
            r = try await http("POST", agent.base + "/v1/sagas/order")
            #expect(r.status == 201 && r.header("Location") == "/v1/sagas/\(r.json["id"] as? String ?? "")")
        }
    }
}

@Suite("sluice sagas", .serialized)
struct SagasCommandTests {
    @Test("sluice sagas start, list, show and check against a running agent; bad input exits 2")
    func commands() async throws {
        try await withSagaAgent(yaml: orderSagaYAML()) { dir, agent, participant in
            let api = ["--api", agent.base]
            var result = try await runSluice(["sagas", "start", "order", "--data", "{\"order_id\": \"o-9\"}", "--id", "cli--fail-payment"] + api, in: dir)
            #expect(result.status == 0 && result.stdout.hasPrefix("cli--fail-payment running"), "\(result.stdout)\(result.stderr)")
            _ = try await SagaClient(base: agent.base).finished("cli--fail-payment")
            result = try await runSluice(["sagas", "list", "--status", "compensated"] + api, in: dir)
            #expect(result.status == 0 && result.stdout.contains("cli--fail-payment") && result.stdout.contains("compensated"), "\(result.stdout)")
            result = try await runSluice(["sagas", "show", "cli--fail-payment"] + api, in: dir)
            #expect(result.status == 0 && result.stdout.contains("payment") && result.stdout.contains("compensation succeeded, 1 attempt(s)"), "\(result.stdout)")
            result = try await runSluice(["sagas", "show", "cli--fail-payment", "--json"] + api, in: dir)
            #expect((try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])?["status"] as? String == "compensated")
            result = try await runSluice(["sagas", "list", "--status", "stuck"] + api, in: dir)
            #expect(result.status == 2 && result.stderr.contains("needs_intervention"))
            result = try await runSluice(["sagas", "start", "order", "--data", "[1]"] + api, in: dir)
            #expect(result.status == 2 && result.stderr.contains("JSON object"))
            result = try await runSluice(["sagas", "start", "nope"] + api, in: dir)
            #expect(result.status == 1 && result.stderr.contains("no saga type nope"))
            result = try await runSluice(["sagas", "check", dir + "/sagas.yaml"], in: dir)
            #expect(result.status == 0 && result.stdout.contains("saga order: 4 steps (create_order → payment → inventory → shipping)"), "\(result.stdout)")
            try "sagas:\n  - type: x\n    steps: []\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
            result = try await runSluice(["sagas", "check", dir + "/bad.yaml"], in: dir)
            #expect(result.status == 2 && result.stderr.contains("bad.yaml:3: saga x: steps must be a non-empty list"), "\(result.stderr)")
        }
    }
}

@Suite("Examples", .serialized)
struct ExampleTests {
    static let scenarios = ["recommendations", "users", "order happy", "order fail-payment", "order fail-inventory", "order fail-shipping",
                            "order timeout-inventory", "order stuck-refund", "payment happy", "payment fail-validate", "payment fail-balance",
                            "payment fail-process", "payment fail-merchant", "payment fail-notify", "payment stuck-refund"]

    @Test("every scenario in examples/ runs with one command and ends as its README says", arguments: scenarios)
    func scenario(_ scenario: String) async throws {
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", packageRoot + "/examples/run.py"] + scenario.split(separator: " ").map(String.init) + ["--count", "2"]
            process.environment = ProcessInfo.processInfo.environment.merging(["SLUICE": sluiceBinary]) { $1 }
            let out = dir + "/out"
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            process.standardError = process.standardOutput
            try process.run()
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { process.interrupt() }
            process.waitUntilExit()
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(process.terminationStatus == 0, "\(scenario):\n\(text)")
            #expect(text.contains("workload done: OK"), "\(text)")
        }
    }
}

@Suite("Saga definitions")
struct SagaDefinitionTests {
    func error(_ yaml: String) -> String {
        var catalog = SagaCatalog()
        do {
            try catalog.add(yaml: yaml, file: "s.yaml")
            return ""
        } catch {
            return error.description
        }
    }

    @Test("bad definitions are refused with the file, the line and the reason")
    func badDefinitions() {
        let step = "      - {name: a, command: {topic: t, type: x.do}, success: x.done, compensation: {command: {type: x.undo}}}\n"
        #expect(error("sagas:\n  - type: s\n    steps:\n" + step + step) == "s.yaml:5: saga s: step name 'a' is used twice (first at line 4); step names must be unique")
        #expect(error("sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do}, success: x.done}\n      - {name: b, command: {type: y.do}, success: y.done}\n")
            .hasPrefix("s.yaml:4: saga s, step a has no compensation"))
        #expect(error("sagas:\n  - type: s\n    steps:\n      - name: a\n        command: {type: x.do, data: {id: \"${steps.b.id}\"}}\n        success: x.done\n        compensation: none\n      - {name: b, command: {type: y.do}, success: y.done}\n")
            .hasPrefix("s.yaml:5: saga s, step a: ${steps.b.id} refers to step 'b', which is unknown or not completed by then"))
        #expect(error("sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do}, success: x.done, retries: 3}\n")
            .hasPrefix("s.yaml:4: unknown field 'retries'"))
        #expect(error("sagas:\n  - type: s\n    steps: [{name: a, command: {type: x.do}, success: x.done}]\nobserved_sagas:\n  - {type: s, start: a, success: b}\n")
            .hasPrefix("s.yaml:5: saga type 's' is already declared at s.yaml:2"))
        #expect(error("sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do}}\n").hasPrefix("s.yaml:4: saga s, step a: success is required"))
        #expect(error("sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do}, success: x.done, timeout_ms: soon}\n")
            .hasPrefix("s.yaml:4: saga s, step a: timeout_ms must be an integer"))
        #expect(error("sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do, data: {v: \"${nothing.here}\"}}, success: x.done}\n")
            .contains("${nothing.here} is not a known reference"))
        #expect(error("observed_sagas:\n  - {type: o, start: a, success: a}\n").contains("'a' is listed under both start and success"))
        #expect(error(orderSagaYAML()) == "")
    }

    @Test("templates: whole references keep their JSON type, references inside text become text, missing ones null")
    func templates() {
        let context = JSONValue.object(["data": .object(["n": .number(3), "items": .array([.string("a")])]), "steps": .object([:])])
        let template = JSONValue.object(["n": .string("${data.n}"), "items": .string("${data.items}"), "text": .string("n=${data.n}! (${ data.n })"),
                                         "missing": .string("${data.none}"), "plain": .bool(true)])
        #expect(Template.render(template, context: context) == .object([
            "n": .number(3), "items": .array([.string("a")]), "text": .string("n=3! (3)"), "missing": .null, "plain": .bool(true),
        ]))
    }

    @Test("sluice serve refuses a bad saga file before binding, naming file and line (exit 2)")
    func serveRefusesBadFile() async throws {
        try await withTemporaryDirectory { dir in
            try "sagas:\n  - type: s\n    steps:\n      - {name: a, command: {type: x.do}, success: x.done}\n      - {name: b, command: {type: y.do}, success: y.done}\n"
                .write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
            let result = try await runSluice(["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                                              "--sagas", dir + "/bad.yaml"], in: dir)
            #expect(result.status == 2)
            #expect(result.stderr.contains("\(dir)/bad.yaml:4: saga s, step a has no compensation"), "\(result.stderr)")
        }
    }
}
