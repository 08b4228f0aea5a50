import Foundation
import Hummingbird
import SluiceBroker
import SluiceDelivery
import SluiceLog
import SluiceSaga
import SluiceTelemetry
import SluiceTrace

/// `GET /v1/flow`: the event-flow map — producers' sources → topics → subscriptions → endpoints, and sagas → the
/// topics of their commands and replies — from what the agent has seen and is configured with.
extension APIRoutes {
    func registerFlow(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.flow)) { _, _ in try await flow() }
    }

    func flow() async throws -> Response {
        let broker = try self.broker
        let delivery = try holder.requireDelivery()
        let sagas = try holder.requireSagas()
        let names = broker.topicNames.filter { !$0.hasPrefix("__") }
        let flows = holder.flows
        flows?.retain(topics: Set(names))
        let producers: [[String: Any]] = (flows?.producers ?? []).map {
            ["source": $0.source, "topic": $0.topic, "events": $0.events, "last_seen": Timestamp.rfc3339Millis(millisecondsSinceEpoch: $0.lastSeenMillis)]
        }
        let topics: [[String: Any]] = names.map { name in
            ["name": name, "partitions": broker.topic(name)?.partitions.count ?? 0, "dead_letter": delivery.isDeadLetterTopic(name)]
        }
        let depths = delivery.deadLetterDepths()
        var subscriptions: [[String: Any]] = []
        for (subscription, _) in delivery.subscriptions {
            var entry: [String: Any] = [
                "name": subscription.name, "topics": subscription.topics, "endpoint": subscription.endpoint,
                "dlq_topics": Array(Set(subscription.topics.map(subscription.deadLetterTopic(for:)))).sorted(),
                "dlq_depth": depths[subscription.name] ?? 0,
            ]
            if let filter = subscription.filter { entry["filter"] = filter }
            if let status = await delivery.status(subscription.name) { entry["circuit_breaker_state"] = status.breaker.rawValue }
            subscriptions.append(entry)
        }
        var sagaEntries: [[String: Any]] = sagas.catalog.sagas.map { definition in
            var entry: [String: Any] = [
                "type": definition.type, "kind": "orchestrated",
                "steps": definition.steps.map { step -> [String: Any] in
                    var object: [String: Any] = ["name": step.name, "command_topic": step.command.topic ?? broker.route(eventType: step.command.type),
                                                 "command_type": step.command.type]
                    if let reply = step.replyTopic { object["reply_topic"] = reply }
                    return object
                },
            ]
            if let trigger = definition.triggerType {
                entry["trigger"] = ["type": trigger, "topic": definition.triggerTopic ?? broker.route(eventType: trigger)]
            }
            if let outcome = definition.outcomeTopic { entry["outcome_topic"] = outcome }
            return entry
        }
        sagaEntries += sagas.catalog.observed.map { definition in
            ["type": definition.type, "kind": "observed", "topics": definition.topics ?? Array(Set(definition.allTypes.map { broker.route(eventType: $0) })).sorted()]
        }
        return jsonResponse(["producers": producers, "topics": topics, "subscriptions": subscriptions, "sagas": sagaEntries,
                             "producers_seen": flows != nil])
    }
}
