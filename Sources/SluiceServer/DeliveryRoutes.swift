import Foundation
import Hummingbird
import SluiceBroker
import SluiceDelivery
import SluiceLog
import SluiceTelemetry

/// Subscriptions and dead letters in the v1 API.
extension APIRoutes {
    var delivery: DeliveryService {
        get throws { try holder.requireDelivery() }
    }

    func registerDelivery(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.subscriptions)) { _, _ in try await listSubscriptions() }
        router.get(RouterPath(HTTPPath.subscription)) { _, context in try await getSubscription(context) }
        router.put(RouterPath(HTTPPath.subscription)) { request, context in try await putSubscription(request, context) }
        router.post(RouterPath(HTTPPath.subscriptionRewind)) { request, context in try await rewindSubscription(request, context) }
        router.delete(RouterPath(HTTPPath.subscription)) { _, context in
            try await self.delivery.delete(try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        router.get(RouterPath(HTTPPath.deadLetterTopics)) { _, _ in try listDeadLetterTopics() }
        router.get(RouterPath(HTTPPath.deadLetterTopic)) { request, context in try await listDeadLetters(request, context) }
        router.get(RouterPath(HTTPPath.deadLetter)) { _, context in try await showDeadLetter(context) }
        router.post(RouterPath(HTTPPath.replay)) { request, context in try await startReplay(request, context) }
        router.get(RouterPath(HTTPPath.replayJob)) { _, context in
            guard let progress = try self.delivery.replayProgress(try context.parameters.require("id")) else {
                throw BrokerError(.notFound, "no replay with that id (replays are kept in memory until the agent restarts)")
            }
            return jsonResponse(Self.describe(progress))
        }
    }

    func describe(_ subscription: Subscription, fromFile: Bool, status: (breaker: BreakerState, pending: Int)?, dlqDepth: Int) -> [String: Any] {
        var object = subscription.jsonObject
        object["source"] = fromFile ? "config file" : "api"
        object["dlq_depth"] = dlqDepth
        if let (rewind, remaining) = (try? delivery)?.rewind(of: subscription.name) {
            object["rewind"] = Self.describe(rewind, remaining: remaining)
        }
        if let status {
            object["circuit_breaker_state"] = status.breaker.rawValue
            object["in_flight"] = status.pending
        }
        return object
    }

    func listSubscriptions() async throws -> Response {
        let delivery = try self.delivery
        var list: [[String: Any]] = []
        let depths = delivery.deadLetterDepths()
        for (subscription, fromFile) in delivery.subscriptions {
            list.append(describe(subscription, fromFile: fromFile, status: await delivery.status(subscription.name), dlqDepth: depths[subscription.name] ?? 0))
        }
        return jsonResponse(["subscriptions": list])
    }

    func getSubscription(_ context: AgentRequestContext) async throws -> Response {
        let delivery = try self.delivery
        let name = try context.parameters.require("name")
        guard let entry = delivery.subscriptions.first(where: { $0.subscription.name == name }) else {
            throw BrokerError(.notFound, "subscription \(name) does not exist; create it with PUT \(HTTPPath.subscriptions)/\(name)")
        }
        return jsonResponse(describe(entry.subscription, fromFile: entry.fromFile, status: await delivery.status(name),
                                     dlqDepth: delivery.deadLetterDepths()[name] ?? 0))
    }

    func putSubscription(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        let object = try await jsonObjectBody(request, example: "{\"topics\": [\"orders\"], \"endpoint\": \"http://127.0.0.1:8080/events\"}")
        if let given = object["name"] as? String, given != name {
            throw BrokerError.badRequest("the body names subscription \(given) but the path names \(name)", attribute: "name")
        }
        let subscription: Subscription
        do {
            subscription = try Subscription.parse(object, name: name)
        } catch {
            throw BrokerError.badRequest(error.message, attribute: error.field)
        }
        let delivery = try self.delivery
        let created = try await delivery.put(subscription)
        return jsonResponse(describe(subscription, fromFile: false, status: nil, dlqDepth: delivery.deadLetterDepths()[name] ?? 0), status: created ? .created : .ok)
    }

    static func describe(_ rewind: SubscriptionRewind, remaining: Int64) -> [String: Any] {
        [
            "id": rewind.id, "to": rewind.target, "requested_by": rewind.requestedBy,
            "started_at": Timestamp.rfc3339Millis(millisecondsSinceEpoch: rewind.startedMillis),
            "completed_at": rewind.completedMillis.map { Timestamp.rfc3339Millis(millisecondsSinceEpoch: $0) } ?? NSNull(),
            "events": rewind.total, "remaining": remaining,
            "partitions": rewind.partitions.map { ["topic": $0.partition.topic, "partition": Int($0.partition.partition), "from": $0.from, "until": $0.until] },
        ]
    }

    func rewindSubscription(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        let object = try await jsonObjectBody(request, example: "{\"to\": \"earliest\"}")
        let target = try Self.resetTarget(object)
        let dryRun = try booleanField(object, "dry_run") ?? false
        let (rewind, rows) = try await delivery.rewind(name, to: target, dryRun: dryRun, requester: context.clientAddress)
        var out = JSONWriter()
        out.beginObject()
        out.field("dry_run", bool: dryRun)
        writeResetRows(rows, into: &out)
        if !dryRun { out.field("rewind_id", string: rewind.id) }
        out.field("subscription", string: name)
        out.field("to", string: target.description)
        out.field("events", int: rewind.total)
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    // MARK: - Dead letters

    func listDeadLetterTopics() throws -> Response {
        let summary = try delivery.deadLetterSummary().map { entry -> [String: Any] in
            var object: [String: Any] = ["topic": entry.topic, "depth": entry.depth]
            object["oldest_failure"] = entry.oldestMillis.map { Timestamp.rfc3339Millis(millisecondsSinceEpoch: $0) } ?? NSNull()
            return object
        }
        return jsonResponse(["dlq_topics": summary])
    }

    func listDeadLetters(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let topic = try context.parameters.require("dlqTopic")
        let limit = Int(try Self.queryInteger(request, "limit", range: 1...100_000) ?? 100)
        let letters = try await delivery.deadLetters(topic, limit: limit)
        return jsonResponse(["dlq_topic": topic, "dead_letters": letters.map { Self.describe($0, full: false) }])
    }

    func showDeadLetter(_ context: AgentRequestContext) async throws -> Response {
        let topic = try context.parameters.require("dlqTopic")
        guard let partition = Int32(try context.parameters.require("partition")), let offset = Int64(try context.parameters.require("offset")) else {
            throw BrokerError.badRequest("partition and offset must be integers", attribute: "offset")
        }
        guard let (letter, resolved) = try await delivery.deadLetter(topic, partition: partition, offset: offset) else {
            throw BrokerError(.notFound, "\(topic)/\(partition) offset \(offset) is not a dead letter (it may be a resolution record)")
        }
        var object = Self.describe(letter, full: true)
        object["resolved"] = resolved
        return jsonResponse(object)
    }

    static func describe(_ letter: DeadLetter, full: Bool) -> [String: Any] {
        var object: [String: Any] = [
            "partition": Int(letter.partition), "offset": letter.offset, "original_topic": letter.originalTopic,
            "original_partition": Int(letter.originalPartition), "original_offset": letter.originalOffset, "subscription": letter.subscription,
            "group": letter.group, "attempts": letter.history.attempts, "replays": letter.history.replays,
            "first_failure": Timestamp.rfc3339Millis(millisecondsSinceEpoch: letter.history.firstFailureMillis),
            "last_failure": Timestamp.rfc3339Millis(millisecondsSinceEpoch: letter.history.lastFailureMillis),
            "error_type": letter.history.errorType.rawValue, "error_message": letter.history.errorMessage,
            "event_type": letter.eventType ?? NSNull(), "correlation_id": letter.correlationId ?? NSNull(),
            "http_status": letter.history.httpStatus ?? NSNull(),
        ]
        if full {
            let original = letter.originalRecord
            if let event = CloudEvent(record: original) {
                var writer = JSONWriter()
                event.writeJSON(into: &writer)
                object["event"] = (try? JSONSerialization.jsonObject(with: Data(writer.bytes))) ?? NSNull()
            }
            object["key_base64"] = original.key.map { Data($0).base64EncodedString() } ?? NSNull()
            object["value_base64"] = original.value.map { Data($0).base64EncodedString() } ?? NSNull()
            var headers: [String: String] = [:]
            for header in letter.record.headers { headers[header.key] = header.value.map { String(decoding: $0, as: UTF8.self) } ?? "" }
            object["headers"] = headers
        }
        return object
    }

    static func describe(_ progress: ReplayProgress) -> [String: Any] {
        [
            "id": progress.id, "dlq_topic": progress.dlqTopic, "state": progress.state, "matched": progress.matched, "done": progress.done,
            "delivered": progress.delivered, "dead_lettered_again": progress.deadLetteredAgain, "poisoned": progress.poisoned,
            "skipped": progress.skipped, "started": Timestamp.rfc3339Millis(millisecondsSinceEpoch: progress.startedMillis),
            "finished": progress.finishedMillis.map { Timestamp.rfc3339Millis(millisecondsSinceEpoch: $0) } ?? NSNull(),
        ]
    }

    func startReplay(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let topic = try context.parameters.require("dlqTopic")
        let body = try await request.body.collect(upTo: 64 * 1024)
        var object: [String: Any] = [:]
        if body.readableBytes > 0 {
            guard let parsed = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                throw BrokerError.badRequest("the body must be a JSON object of filters such as {\"event_type\": \"order.*\", \"rate_limit\": 50}", attribute: nil)
            }
            object = parsed
        }
        let known: Set = ["subscription", "event_type", "error_type", "from", "to", "partition", "from_offset", "to_offset", "rate_limit", "limit"]
        for key in object.keys where !known.contains(key) {
            throw BrokerError.badRequest("unknown replay filter '\(key)'; known: \(known.sorted().joined(separator: ", "))", attribute: key)
        }
        var replay = ReplayRequest()
        func string(_ key: String) throws -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String, !text.isEmpty else { throw BrokerError.badRequest("'\(key)' must be a non-empty string", attribute: key) }
            return text
        }
        func time(_ key: String) throws -> Int64? {
            guard let text = try string(key) else { return nil }
            guard let millis = Timestamp.parseRFC3339Millis(text) else {
                throw BrokerError.badRequest("'\(key)' must be an RFC 3339 time such as 2026-11-22T10:00:00Z", attribute: key)
            }
            return millis
        }
        replay.subscription = try string("subscription")
        replay.eventType = try string("event_type")
        if let text = try string("error_type") {
            guard let type = DeliveryErrorType(rawValue: text) else {
                throw BrokerError.badRequest("'error_type' must be one of \(DeliveryErrorType.allCases.map(\.rawValue).joined(separator: ", "))", attribute: "error_type")
            }
            replay.errorType = type
        }
        replay.fromMillis = try time("from")
        replay.toMillis = try time("to")
        if let partition = try integerField(object, "partition") { replay.partition = Int32(clamping: partition) }
        replay.fromOffset = try integerField(object, "from_offset")
        replay.toOffset = try integerField(object, "to_offset")
        if let limit = try integerField(object, "limit") {
            guard limit >= 1 else { throw BrokerError.badRequest("'limit' must be at least 1", attribute: "limit") }
            replay.limit = Int(limit)
        }
        if let rate = object["rate_limit"] {
            guard let number = rate as? NSNumber, String(cString: number.objCType) != "c", ReplayRequest.rateLimits.contains(number.doubleValue) else {
                throw BrokerError.badRequest("'rate_limit' must be events per second from \(ReplayRequest.rateLimits.lowerBound) to \(Int(ReplayRequest.rateLimits.upperBound))", attribute: "rate_limit")
            }
            replay.ratePerSecond = number.doubleValue
        }
        let progress = try await delivery.startReplay(topic, replay)
        return jsonResponse(Self.describe(progress), status: .accepted)
    }
}
