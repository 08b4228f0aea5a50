import Foundation
import SluiceBroker
import SluiceTelemetry

/// The API's JSON forms of traces (`GET /v1/traces/{id}`, `GET /v1/traces`).
extension Trace {
    /// The trace: status, times, totals, what is still awaited, the hops in time order and the causation tree.
    public var jsonObject: [String: Any] {
        var failures = 0
        var attempts = 0
        var deadLetters = 0
        var replays = 0
        var sagas: Set<String> = []
        for hop in hops {
            switch hop.kind {
            case .delivery:
                attempts += 1
                if hop.outcome != "delivered" && hop.outcome != "dropped" { failures += 1 }
            case .deadLetter: deadLetters += 1
            case .replay: replays += 1
            case .saga: if let id = hop.sagaId { sagas.insert(id) }
            case .event: break
            }
        }
        let events = hops.filter { $0.kind == .event }
        return [
            "correlation_id": correlationId,
            "status": status.rawValue,
            "started_at": Timestamp.rfc3339Millis(millisecondsSinceEpoch: firstMillis),
            "last_activity_at": Timestamp.rfc3339Millis(millisecondsSinceEpoch: lastMillis),
            "duration_ms": max(0, lastMillis - firstMillis),
            "totals": [
                "events": events.count, "hops": hops.count + droppedHops, "delivery_attempts": attempts, "failures": failures,
                "dead_letters": deadLetters, "replays": replays, "sagas": sagas.count, "dropped_hops": droppedHops,
            ],
            "pending": ["deliveries": pendingDeliveries, "sagas": openSagas],
            "linked_sagas": aliases.sorted(),
            "hops": hops.map(\.jsonObject),
            "tree": causationTree(),
        ]
    }

    /// Events as a forest: an event's children are the events whose causation id is its id; each node carries
    /// what became of it per subscription and the sagas it started.
    func causationTree() -> [[String: Any]] {
        let events = hops.filter { $0.kind == .event }
        let ids = Set(events.compactMap(\.eventId))
        var children: [String: [TraceHop]] = [:]
        var roots: [TraceHop] = []
        for event in events {
            if let cause = event.causationId, ids.contains(cause), cause != event.eventId {
                children[cause, default: []].append(event)
            } else {
                roots.append(event)
            }
        }
        var seen: Set<String> = []
        func node(_ event: TraceHop, depth: Int) -> [String: Any] {
            var object: [String: Any] = [
                "event_id": event.eventId ?? "", "type": event.eventType ?? "", "topic": event.topic ?? "",
                "partition": event.partition ?? 0, "offset": event.offset ?? 0,
                "time": Timestamp.rfc3339Millis(millisecondsSinceEpoch: event.time),
            ]
            if let source = event.source { object["source"] = source }
            let mine = hops.filter { $0.kind != .event && $0.kind != .saga && $0.topic == event.topic && $0.partition == event.partition && $0.offset == event.offset }
            var deliveries: [[String: Any]] = []
            for subscription in Set(mine.compactMap(\.subscription)).sorted() {
                let theirs = mine.filter { $0.subscription == subscription }
                let outcome: String
                if theirs.contains(where: { $0.kind == .replay && $0.outcome == "delivered" }) {
                    outcome = "replayed"
                } else if theirs.contains(where: { $0.kind == .deadLetter }) {
                    outcome = "dead_lettered"
                } else {
                    outcome = theirs.last(where: { $0.kind == .delivery })?.outcome ?? "pending"
                }
                deliveries.append(["subscription": subscription, "attempts": theirs.filter { $0.kind == .delivery }.count, "outcome": outcome])
            }
            for subscription in (event.expected ?? []) where !mine.contains(where: { $0.subscription == subscription }) {
                deliveries.append(["subscription": subscription, "attempts": 0, "outcome": "pending"])
            }
            object["deliveries"] = deliveries
            let started = Set(hops.filter { $0.kind == .saga && $0.causationId != nil && $0.causationId == event.eventId }.compactMap(\.sagaId))
            if !started.isEmpty { object["sagas_started"] = started.sorted() }
            var kids: [[String: Any]] = []
            if let id = event.eventId, !seen.contains(id), depth < 64 {
                seen.insert(id)
                kids = (children[id] ?? []).map { node($0, depth: depth + 1) }
            }
            object["children"] = kids
            return object
        }
        return roots.map { node($0, depth: 0) }
    }
}

extension TraceHop {
    /// The hop with its time as RFC 3339 and milliseconds, and only the fields it has.
    public var jsonObject: [String: Any] {
        var object: [String: Any] = ["kind": kind.rawValue, "time": Timestamp.rfc3339Millis(millisecondsSinceEpoch: time), "time_ms": time]
        if let eventId { object["event_id"] = eventId }
        if let eventType { object["event_type"] = eventType }
        if let source { object["source"] = source }
        if let causationId { object["causation_id"] = causationId }
        if let topic { object["topic"] = topic }
        if let partition { object["partition"] = partition }
        if let offset { object["offset"] = offset }
        if let subscription { object["subscription"] = subscription }
        if let attempt { object["attempt"] = attempt }
        if let httpStatus { object["http_status"] = httpStatus }
        if let outcome { object["outcome"] = outcome }
        if let latencyMs { object["latency_ms"] = (latencyMs * 1000).rounded() / 1000 }
        if let sagaId { object["saga_id"] = sagaId }
        if let sagaType { object["saga_type"] = sagaType }
        if let sagaStatus { object["saga_status"] = sagaStatus }
        if let step { object["step"] = step }
        if let final { object["final"] = final }
        if let expected { object["expected_subscriptions"] = expected }
        return object
    }
}

extension TraceSummary {
    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "correlation_id": correlationId, "status": status.rawValue,
            "started_at": Timestamp.rfc3339Millis(millisecondsSinceEpoch: firstMillis),
            "last_activity_at": Timestamp.rfc3339Millis(millisecondsSinceEpoch: lastMillis),
            "duration_ms": max(0, lastMillis - firstMillis), "events": events, "hops": hops,
        ]
        if let firstEventType { object["first_event_type"] = firstEventType }
        return object
    }
}
