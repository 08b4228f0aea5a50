import Foundation
public import SluiceBroker
import SluiceLog
import SluiceTelemetry
import SluiceTrace
import Synchronization

/// Which dead letters a replay re-delivers, and how fast.
public struct ReplayRequest: Sendable {
    /// Only letters of this subscription (letters always go back to their own subscription only).
    public var subscription: String?
    public var eventType: String?
    public var errorType: DeliveryErrorType?
    public var fromMillis: Int64?
    public var toMillis: Int64?
    public var partition: Int32?
    public var fromOffset: Int64?
    public var toOffset: Int64?
    /// Events per second, within ``rateLimits``; nil is unlimited.
    public var ratePerSecond: Double?

    /// The replay rates accepted: from one event in 1,000 seconds to a million a second.
    public static let rateLimits: ClosedRange<Double> = 0.001...1_000_000
    public var limit: Int?

    public init() {}
}

/// Progress of one replay.
public struct ReplayProgress: Sendable {
    public var id: String
    public var dlqTopic: String
    public var state: String
    public var matched: Int
    public var done: Int
    public var delivered: Int
    public var deadLetteredAgain: Int
    public var poisoned: Int
    public var skipped: Int
    public var startedMillis: Int64
    public var finishedMillis: Int64?
    public var error: String?
}

/// Dead letters: their index and depths, one letter, and replays (each letter back to its own subscription, with
/// its retry policy, at an optional rate).
extension DeliveryService {
    public func deadLetterSummary() -> [(topic: String, depth: Int, oldestMillis: Int64?)] {
        index.refresh(named: dlqTopicNames)
        return index.summary()
    }

    /// Unresolved dead letters per subscription (a subscription without any is absent).
    public func deadLetterDepths() -> [String: Int] {
        index.refresh(named: dlqTopicNames)
        return index.depthBySubscription()
    }

    /// Brings the index up to date with the DLQ topics (and `topic`) now, from the embedded log or the cluster.
    func refreshDeadLetters(also topic: String? = nil) async {
        let names = dlqTopicNames.union(topic.map { [$0] } ?? [])
        if broker.isRemote { await index.refreshFromCluster(named: names) } else { index.refresh(named: names) }
    }

    public func deadLetters(_ topic: String, limit: Int) async throws(BrokerError) -> [DeadLetter] {
        await refreshDeadLetters(also: topic)
        return try await index.unresolved(topic, limit: limit)
    }

    public func deadLetter(_ topic: String, partition: Int32, offset: Int64) async throws(BrokerError) -> (DeadLetter, resolved: Bool)? {
        await refreshDeadLetters(also: topic)
        guard let letter = try await index.letter(topic, partition: partition, offset: offset) else { return nil }
        return (letter, !index.isUnresolved(topic, partition: partition, offset: offset))
    }

    /// Starts a replay of the matching unresolved dead letters of `topic`; each goes back to its own subscription
    /// only (never to every consumer of the topic).
    public func startReplay(_ topic: String, _ request: ReplayRequest) async throws(BrokerError) -> ReplayProgress {
        if let name = request.subscription, subscription(name) == nil {
            throw BrokerError(.notFound, "subscription \(name) does not exist", attribute: "subscription")
        }
        var letters = try await deadLetters(topic, limit: .max).filter { letter in
            if let name = request.subscription, letter.subscription != name { return false }
            if let type = request.eventType, !RouteRule(pattern: type, topic: "-").matches(letter.eventType ?? "") { return false }
            if let error = request.errorType, letter.history.errorType != error { return false }
            if let from = request.fromMillis, letter.history.lastFailureMillis < from { return false }
            if let to = request.toMillis, letter.history.lastFailureMillis > to { return false }
            if let partition = request.partition, letter.partition != partition { return false }
            if let from = request.fromOffset, letter.offset < from { return false }
            if let to = request.toOffset, letter.offset > to { return false }
            return true
        }
        if let limit = request.limit { letters = Array(letters.prefix(limit)) }
        let id = UUID().uuidString.lowercased()
        let progress = ReplayProgress(id: id, dlqTopic: topic, state: "running", matched: letters.count, done: 0, delivered: 0, deadLetteredAgain: 0,
                                      poisoned: 0, skipped: 0, startedMillis: currentTimeMillis(), finishedMillis: nil, error: nil)
        replays.withLock { $0[id] = progress }
        logger.info("replay started", metadata: ["dlq.topic": .string(topic), "replay.id": .string(id), "matched": .stringConvertible(letters.count)])
        Task { await self.replay(id: id, letters: letters, rate: request.ratePerSecond) }
        return progress
    }

    public func replayProgress(_ id: String) -> ReplayProgress? { replays.withLock { $0[id] } }

    fileprivate func replay(id: String, letters: [DeadLetter], rate: Double?) async {
        // Clamped again here so that no caller can make the interval overflow a Duration.
        let interval = rate.map { Duration.seconds(1 / min(max($0, ReplayRequest.rateLimits.lowerBound), ReplayRequest.rateLimits.upperBound)) }
        var next = ContinuousClock.now
        for letter in letters {
            if let interval {
                try? await Task.sleep(until: next, clock: .continuous)
                next = max(next + interval, ContinuousClock.now - interval)
            }
            let outcome = await replayOne(letter, replay: id)
            broker.metrics.counter(MetricName.dlqReplayed, letter.topic, outcome).increment()
            replays.withLock { all in
                guard var progress = all[id] else { return }
                progress.done += 1
                switch outcome {
                case "delivered": progress.delivered += 1
                case "poisoned": progress.poisoned += 1
                case "dead_lettered_again": progress.deadLetteredAgain += 1
                default: progress.skipped += 1
                }
                all[id] = progress
            }
        }
        replays.withLock { all in
            all[id]?.state = "done"
            all[id]?.finishedMillis = currentTimeMillis()
        }
        await refreshDeadLetters()
        let final = replays.withLock { $0[id] }
        logger.info("replay finished", metadata: [
            "replay.id": .string(id), "delivered": .stringConvertible(final?.delivered ?? 0),
            "dead_lettered_again": .stringConvertible(final?.deadLetteredAgain ?? 0), "poisoned": .stringConvertible(final?.poisoned ?? 0),
            "skipped": .stringConvertible(final?.skipped ?? 0),
        ])
    }

    /// Re-delivers one dead letter to its own subscription with that subscription's retry policy, and traces what
    /// came of it (unless skipped: then nothing happened).
    fileprivate func replayOne(_ letter: DeadLetter, replay id: String) async -> String {
        let original = letter.originalRecord
        let fetched = FetchedEvent(topic: letter.originalTopic, partition: letter.originalPartition, offset: letter.originalOffset,
                                   timestamp: original.timestamp, record: original, event: CloudEvent(record: original))
        // With spans on, the replay is a span under the dead-lettering's, and its attempts are under it.
        let span = spans?.start("replay \(letter.subscription)", kind: .internal, operation: "process", event: fetched.event, topic: fetched.topic,
                                partition: fetched.partition, offset: fetched.offset, parent: letter.traceparent ?? Deliverer.traceparent(of: fetched),
                                extra: [(SpanAttributeName.subscription, .string(letter.subscription)), (SpanAttributeName.deadLetterTopic, .string(letter.topic)),
                                        (SpanAttributeName.replayId, .string(id))])
        let result = await replayAttempts(letter, fetched, parent: span?.traceparent)
        if let span {
            span.set([(SpanAttributeName.outcome, .string(result))])
            if result == "dead_lettered_again" || result == "poisoned" { span.fail(result, message: "the replay failed again: \(result)") }
            span.end()
        }
        if let traces, result != "skipped", let correlation = letter.correlationId ?? fetched.event?.correlationId {
            var hop = TraceHop.about(fetched, kind: .replay, subscription: letter.subscription, time: currentTimeMillis())
            hop.outcome = result
            traces.record(hop, correlationId: correlation)
        }
        return result
    }

    fileprivate func replayAttempts(_ letter: DeadLetter, _ fetched: FetchedEvent, parent: String?) async -> String {
        guard index.isUnresolved(letter.topic, partition: letter.partition, offset: letter.offset),
              let subscription = subscription(letter.subscription) else { return "skipped" }
        let trace = fetched.event?.traceparent.flatMap(Correlation.parseTraceparent)
        let context = CorrelationContext(correlationId: letter.correlationId ?? fetched.event?.correlationId ?? "", causationId: fetched.event?.causationId,
                                         traceId: trace?.traceId, spanId: trace?.spanId, eventId: fetched.event?.id, eventType: fetched.event?.type,
                                         topic: fetched.topic, partition: fetched.partition, offset: fetched.offset)
        let deliverer = Deliverer(client: client, subscription: subscription, broker: broker, spans: spans)
        var history = letter.history
        history.replays += 1
        var failures = 0
        var attempt = 0
        // Upcast once, as the subscription would: a letter of an unsupported version is delivered once upcasters exist.
        let prepared = deliverer.prepare(fetched)
        while true {
            attempt += 1
            let outcome: AttemptOutcome
            switch prepared {
            case .success(let (event, upcastFrom)): outcome = await deliverer.attempt(event, attempt: attempt, upcastFrom: upcastFrom, parent: parent)
            case .failure(let failure): outcome = .unsupportedVersion(message: failure.message)
            }
            broker.metrics.counter(MetricName.deliveryAttempts, subscription.name, outcome.label).increment()
            let now = currentTimeMillis()
            switch outcome {
            case .delivered, .dropped:
                do {
                    try await writer.resolve(letter, outcome: "delivered")
                } catch {
                    return "skipped"
                }
                Correlation.$current.withValue(context) {
                    logger.info("dead letter replayed and delivered", metadata: [LogField.subscription: .string(subscription.name), "dlq.topic": .string(letter.topic)])
                }
                return "delivered"
            case .rejected(let status, let message):
                history.failed(at: now, status: status, type: .rejected, message: message)
                failures = subscription.retry.maxAttempts
            case .httpError(let status, let message, _):
                history.failed(at: now, status: status, type: .httpError, message: message)
                failures += 1
            case .timeout(let message):
                history.failed(at: now, status: nil, type: .timeout, message: message)
                failures += 1
            case .unsupportedVersion(let message):
                history.failed(at: now, status: nil, type: .unsupportedEventVersion, message: message)
                failures = subscription.retry.maxAttempts
            case .unavailable:
                // The app is down: that is not this event's failure. The letter stays as it is.
                failures += 1
                if failures >= subscription.retry.maxAttempts {
                    Correlation.$current.withValue(context) {
                        logger.warning("replay skipped: the app is unavailable; the dead letter stays as it was", metadata: [LogField.subscription: .string(subscription.name)])
                    }
                    return "skipped"
                }
            }
            if failures >= subscription.retry.maxAttempts {
                do {
                    let result = try await writer.requeue(letter, history: history, maxReplays: subscription.maxReplays)
                    Correlation.$current.withValue(context) {
                        logger.warning(result == "poisoned" ? "replay failed again; parked as poison for a human" : "replay failed again; back in the DLQ",
                                       metadata: [LogField.subscription: .string(subscription.name), "replays": .stringConvertible(history.replays),
                                                  "error.type": .string(history.errorType.rawValue)])
                    }
                    return result
                } catch {
                    return "skipped"
                }
            }
            try? await Task.sleep(for: .milliseconds(subscription.retry.delayMs(afterAttempt: failures, random: Double.random(in: 0..<1))))
        }
    }
}
