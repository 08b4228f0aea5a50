import SluiceBroker
import SluiceTrace

/// The trace hops of deliveries: each attempt, a dead letter, a replay.
extension TraceHop {
    /// A hop about `fetched` for `subscription`, placed at the event's topic, partition and offset.
    static func about(_ fetched: FetchedEvent, kind: Kind, subscription: String, time: Int64) -> TraceHop {
        var hop = TraceHop(kind: kind, time: time)
        hop.eventId = fetched.event?.id
        hop.eventType = fetched.event?.type
        hop.topic = fetched.topic
        hop.partition = fetched.partition
        hop.offset = fetched.offset
        hop.subscription = subscription
        return hop
    }

    static func attempt(_ fetched: FetchedEvent, subscription: String, attempt: Int, outcome: AttemptOutcome, latency: Duration?, time: Int64) -> TraceHop {
        var hop = about(fetched, kind: .delivery, subscription: subscription, time: time)
        hop.attempt = attempt
        hop.outcome = outcome.label
        hop.httpStatus = outcome.httpStatus
        if let latency { hop.latencyMs = Double(latency.components.seconds) * 1000 + Double(latency.components.attoseconds) / 1e15 }
        switch outcome {
        case .delivered, .dropped: hop.final = true
        default: hop.final = false
        }
        return hop
    }
}
