import AsyncHTTPClient
import Dispatch
import Foundation
import Logging
import Prometheus
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import SluiceTrace
import Synchronization

/// The circuit breaker of one subscription.
public enum BreakerState: String, Sendable, CaseIterable {
    case closed
    case open
    case halfOpen = "half_open"
}

/// Per partition: offsets taken from the log and not finished yet, in order. The offset to commit is the lowest
/// unfinished one — so after a crash only unfinished events are delivered again.
struct OffsetTracker {
    private var order: [Int64] = []
    private var head = 0
    private var done: Set<Int64> = []
    private(set) var timestamps: [Int64: Int64] = [:]
    /// One past the last offset taken.
    var next: Int64

    init(next: Int64) { self.next = next }

    mutating func taken(_ offset: Int64, timestamp: Int64) {
        order.append(offset)
        timestamps[offset] = timestamp
        next = max(next, offset + 1)
    }

    mutating func finished(_ offset: Int64) {
        done.insert(offset)
        timestamps.removeValue(forKey: offset)
        while head < order.count, done.contains(order[head]) {
            done.remove(order[head])
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    var commitOffset: Int64 { head < order.count ? order[head] : next }
    var oldestTimestamp: Int64? { head < order.count ? timestamps[order[head]] : nil }
}

/// Delivers one subscription: a member of its consumer group that polls, hands events to the app with the
/// ordering mode's rules, retries with backoff, dead-letters per-event failures, pauses behind a circuit
/// breaker while the app is down, and commits the lowest unfinished offset of each partition.
actor SubscriptionRunner {
    let subscription: Subscription
    let groups: GroupCoordinator
    let deliverer: Deliverer
    let deadLetters: DeadLetterWriter
    let logger: Logger
    let metrics: SluiceMetrics
    let traces: TraceIndex?

    struct Pending: Sendable {
        var fetched: FetchedEvent
        var key: String
        var attempts = 0
        /// Failures that were the event's own (not the app being down); they lead to the DLQ.
        var eventFailures = 0
        var firstFailure: Int64?
        var lastFailure: Int64?
        var lastStatus: Int?
        var lastError: DeliveryErrorType?
        var lastMessage = ""
        /// The version the event was published as, when it is delivered upcast.
        var upcastFrom: String?
        /// Why the event cannot be given in the subscription's version (it goes to the DLQ instead).
        var unsupported: String?
    }

    /// The runner's membership in the subscription's group (on the embedded log or the cluster).
    private var member: (any GroupMember)?
    private var queues: [String: [Pending]] = [:]
    private var ready: [String] = []
    private var readyHead = 0
    private var busyKeys: Set<String> = []
    private var attempting = 0
    private var unfinished = 0
    private var trackers: [TopicPartition: OffsetTracker] = [:]
    private var committed: [TopicPartition: Int64] = [:]
    private var lastCommit = ContinuousClock.now
    private var lastContact = ContinuousClock.now
    /// Set from outside the actor: a loop whose polls return at once (the broker ends long polls when shutdown
    /// begins) would otherwise keep the actor busy, and an isolated stop() would never get its turn.
    private let stopFlag = Atomic<Bool>(false)
    private var stopping: Bool { stopFlag.load(ordering: .acquiring) }
    private var committing = false

    private var breaker = BreakerState.closed
    private var consecutiveUnavailable = 0
    private var openInterval: Int64
    private var probeInFlight = false

    private let maxBuffered: Int
    private let inFlightGauge: Gauge
    private let oldestPendingGauge: Gauge
    /// The rewind still being caught up with (nil once every partition is past where it was).
    private var rewind: SubscriptionRewind?
    private let rewindGauge: Gauge
    private let rewindCompleted: @Sendable (String) -> Void

    init(subscription: Subscription, groups: GroupCoordinator, client: HTTPClient, deadLetters: DeadLetterWriter, logger: Logger,
         rewind: SubscriptionRewind? = nil, rewindCompleted: @escaping @Sendable (String) -> Void = { _ in }, traces: TraceIndex? = nil,
         spans: EventSpans? = nil) {
        self.subscription = subscription
        self.traces = traces
        self.rewind = rewind
        self.rewindCompleted = rewindCompleted
        self.groups = groups
        self.deliverer = Deliverer(client: client, subscription: subscription, broker: groups.broker, spans: spans)
        self.deadLetters = deadLetters
        self.logger = logger
        self.metrics = groups.broker.metrics
        self.openInterval = subscription.breaker.openMs
        self.maxBuffered = max(subscription.concurrency * 8, 256)
        self.inFlightGauge = metrics.gauge(MetricName.deliveryInFlight, subscription.name)
        self.oldestPendingGauge = metrics.gauge(MetricName.deliveryOldestPending, subscription.name)
        self.rewindGauge = metrics.gauge(MetricName.rewindRemaining, subscription.name)
        // Counters that alerts take increase() of start at 0, so that their first event counts.
        for topic in subscription.topics { _ = metrics.counter(MetricName.poisonEvents, topic) }
        for state in BreakerState.allCases {
            metrics.gauge(MetricName.breakerState, subscription.name, state.rawValue).set(Double(state == .closed ? 1 : 0))
        }
    }

    var breakerState: BreakerState { breaker }
    var pendingCount: Int { unfinished }

    // MARK: - The loop

    /// Polls, dispatches and commits until `stop()`; then waits for attempts in progress and commits.
    func run() async {
        while !stopping {
            do {
                if member == nil { try await join() }
                // While the breaker is open nothing new is taken; half-open with nothing pending, a poll finds the probe.
                let canPoll = unfinished < maxBuffered && (breaker == .closed || (breaker == .halfOpen && unfinished == 0))
                if canPoll {
                    let room = min(maxBuffered - unfinished, groups.broker.config.int("max.poll.records"))
                    let result = try await member!.poll(maxRecords: room, waitMs: 100)
                    lastContact = .now
                    take(result)
                    // A poll that came back empty at once (shutdown ended long polls) must not starve the actor's
                    // other work: finished attempts and retries are queued on it.
                    if result.events.isEmpty { await Task.yield() }
                } else {
                    if ContinuousClock.now - lastContact > .seconds(1), let member {
                        try await member.heartbeat()
                        lastContact = .now
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                try await commitIfDue(force: false)
            } catch let error as BrokerError where error.kind == .notFound && member != nil {
                logger.warning("delivery member was removed from its group; rejoining", metadata: [
                    LogField.subscription: .string(subscription.name), LogField.group: .string(subscription.group), "error": .string(error.message),
                ])
                await rejoin()
            } catch {
                logger.error("delivery loop error; retrying in 1 s", metadata: [LogField.subscription: .string(subscription.name), "error": .string("\(error)")])
                try? await Task.sleep(for: .seconds(1))
            }
            publishGauges()
        }
        // Let attempts in progress finish (bounded by the attempt timeout), then commit what is done.
        let deadline = ContinuousClock.now + .milliseconds(subscription.timeoutMs + 1000)
        while attempting > 0 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        try? await commitIfDue(force: true)
        if let member { await member.leave() }
    }

    nonisolated func stop() { stopFlag.store(true, ordering: .releasing) }

    private func join() async throws(BrokerError) {
        member = try await groups.member(of: subscription.group, options: MemberOptions(
            topics: subscription.topics, clientId: "sluice-" + subscription.name, strategy: nil, sessionTimeoutMs: nil,
            autoCommit: false, offsetReset: subscription.startFrom))
        lastContact = .now
    }

    /// After the member was removed: wait for attempts in progress, drop what was buffered (it is read again
    /// from the committed offsets) and join again.
    private func rejoin() async {
        while attempting > 0 { try? await Task.sleep(for: .milliseconds(10)) }
        queues = [:]
        ready = []
        readyHead = 0
        busyKeys = []
        unfinished = 0
        trackers = [:]
        committed = [:]
        await member?.leave()
        member = nil
    }

    /// Takes polled events: filtered ones finish at once, the rest queue by ordering key.
    private func take(_ result: PollResult) {
        for (tp, position) in result.positions where trackers[tp] == nil {
            trackers[tp] = OffsetTracker(next: position)
            committed[tp] = committed[tp] ?? -1
        }
        // Positions of partitions polled without events move the commit point too (e.g. after a reset).
        for (tp, position) in result.positions {
            if let next = trackers[tp]?.next, position > next { trackers[tp]!.next = position }
        }
        for fetched in result.events {
            let tp = TopicPartition(fetched.topic, fetched.partition)
            trackers[tp, default: OffsetTracker(next: fetched.offset)].taken(fetched.offset, timestamp: fetched.timestamp)
            let type = fetched.event?.type ?? "sluice.record"
            guard subscription.accepts(eventType: type) else {
                trackers[tp]!.finished(fetched.offset)
                continue
            }
            let key: String
            switch subscription.ordering {
            case .key: key = fetched.event?.partitionKey.map { "\(tp)/k/\($0)" } ?? "\(tp)/o/\(fetched.offset)"
            case .partition: key = tp.description
            case .none: key = "\(tp)/o/\(fetched.offset)"
            }
            var pending = Pending(fetched: fetched, key: key)
            switch deliverer.prepare(fetched) {
            case .success(let (prepared, upcastFrom)):
                pending.fetched = prepared
                pending.upcastFrom = upcastFrom
            case .failure(let failure):
                pending.unsupported = failure.message
            }
            unfinished += 1
            if queues[key] == nil { queues[key] = [] }
            queues[key]!.append(pending)
            if queues[key]!.count == 1 && !busyKeys.contains(key) { ready.append(key) }
        }
        dispatch()
    }

    // MARK: - Dispatch and outcomes

    private func dispatch() {
        while !stopping && attempting < subscription.concurrency && readyHead < ready.count {
            // An event that cannot be given in the subscription's version is not sent: the breaker has no say.
            if let head = queues[ready[readyHead]]?.first, let message = head.unsupported {
                let key = ready[readyHead]
                readyHead += 1
                busyKeys.insert(key)
                attempting += 1
                Task { await self.completed(key: key, outcome: .unsupportedVersion(message: message), latency: nil) }
                continue
            }
            switch breaker {
            case .open: return
            case .halfOpen where probeInFlight: return
            case .halfOpen: probeInFlight = true
            case .closed: break
            }
            let key = ready[readyHead]
            readyHead += 1
            if readyHead > 4096 && readyHead * 2 > ready.count {
                ready.removeFirst(readyHead)
                readyHead = 0
            }
            guard var pending = queues[key]?.first else { continue }
            busyKeys.insert(key)
            attempting += 1
            pending.attempts += 1
            queues[key]![0] = pending
            let attempt = pending.attempts
            let fetched = pending.fetched
            let deliverer = self.deliverer
            let replayOf = rewind?.isReplay(TopicPartition(fetched.topic, fetched.partition), fetched.offset) == true ? rewind?.id : nil
            let upcastFrom = pending.upcastFrom
            if attempt > 1 { metrics.counter(MetricName.deliveryRetries, subscription.name).increment() }
            Task {
                let started = ContinuousClock.now
                let outcome = await deliverer.attempt(fetched, attempt: attempt, rewind: replayOf, upcastFrom: upcastFrom)
                await self.completed(key: key, outcome: outcome, latency: started.duration(to: .now))
            }
        }
    }

    private func completed(key: String, outcome: AttemptOutcome, latency: Duration?) async {
        attempting -= 1
        guard var pending = queues[key]?.first else { return }
        let event = pending.fetched.event
        let context = correlation(pending)
        if let traces, let correlation = event?.correlationId {
            traces.record(.attempt(pending.fetched, subscription: subscription.name, attempt: max(pending.attempts, 1), outcome: outcome, latency: latency,
                                   time: currentTimeMillis()), correlationId: correlation)
        }
        if case .unsupportedVersion(let message) = outcome {
            record(&pending, now: currentTimeMillis(), status: nil, type: .unsupportedEventVersion, message: message)
            queues[key]![0] = pending
            await deadLetter(key: key, pending: pending)
            dispatch()
            return
        }
        metrics.counter(MetricName.deliveryAttempts, subscription.name, outcome.label).increment()
        updateBreaker(after: outcome)
        let now = currentTimeMillis()
        switch outcome {
        case .delivered(_, let seconds):
            metrics.durationHistogram(MetricName.processingDuration, subscription.name, event?.type ?? "sluice.record")
                .record(.nanoseconds(Int64(seconds * 1e9)))
            Correlation.$current.withValue(context) {
                logger.debug("event delivered", metadata: [LogField.subscription: .string(subscription.name), "attempt": .stringConvertible(pending.attempts)])
            }
            finish(key)
        case .dropped(let status):
            Correlation.$current.withValue(context) {
                logger.warning("the app asked to drop the event; not retried", metadata: [
                    LogField.subscription: .string(subscription.name), "http.response.status_code": .stringConvertible(status),
                ])
            }
            finish(key)
        case .rejected(let status, let message):
            record(&pending, now: now, status: status, type: .rejected, message: message)
            queues[key]![0] = pending
            await deadLetter(key: key, pending: pending)
        case .httpError(let status, let message, let retryAfter):
            record(&pending, now: now, status: status, type: .httpError, message: message)
            pending.eventFailures += 1
            queues[key]![0] = pending
            await retryOrDeadLetter(key: key, pending: pending, retryAfterMs: retryAfter)
        case .timeout(let message):
            record(&pending, now: now, status: nil, type: .timeout, message: message)
            pending.eventFailures += 1
            queues[key]![0] = pending
            await retryOrDeadLetter(key: key, pending: pending, retryAfterMs: nil)
        case .unavailable(let status, let message, let retryAfter):
            // The app is down: the event waits for it (the breaker decides when to try again); never dead-lettered for this.
            record(&pending, now: now, status: status, type: .unavailable, message: message)
            queues[key]![0] = pending
            scheduleRetry(key: key, pending: pending, retryAfterMs: retryAfter, attemptForBackoff: max(1, pending.attempts))
        case .unsupportedVersion:
            break  // handled above
        }
        dispatch()
    }

    private func record(_ pending: inout Pending, now: Int64, status: Int?, type: DeliveryErrorType, message: String) {
        pending.firstFailure = pending.firstFailure ?? now
        pending.lastFailure = now
        pending.lastStatus = status
        pending.lastError = type
        pending.lastMessage = message
    }

    private func retryOrDeadLetter(key: String, pending: Pending, retryAfterMs: Int64?) async {
        if pending.eventFailures >= subscription.retry.maxAttempts {
            await deadLetter(key: key, pending: pending)
        } else {
            scheduleRetry(key: key, pending: pending, retryAfterMs: retryAfterMs, attemptForBackoff: pending.eventFailures)
        }
    }

    private func scheduleRetry(key: String, pending: Pending, retryAfterMs: Int64?, attemptForBackoff: Int) {
        let delay = max(subscription.retry.delayMs(afterAttempt: attemptForBackoff, random: Double.random(in: 0..<1)), retryAfterMs ?? 0)
        Correlation.$current.withValue(correlation(pending)) {
            logger.info("delivery failed; retrying", metadata: [
                LogField.subscription: .string(subscription.name), "attempt": .stringConvertible(pending.attempts),
                "error.type": .string(pending.lastError?.rawValue ?? ""), "error.message": .string(pending.lastMessage),
                "retry_in_ms": .stringConvertible(delay),
            ])
        }
        Task {
            try? await Task.sleep(for: .milliseconds(delay))
            self.retryDue(key: key)
        }
    }

    private func retryDue(key: String) {
        ready.append(key)
        dispatch()
    }

    private func deadLetter(key: String, pending: Pending) async {
        let history = FailureHistory(attempts: pending.attempts, firstFailureMillis: pending.firstFailure ?? currentTimeMillis(),
                                     lastFailureMillis: pending.lastFailure ?? currentTimeMillis(), httpStatus: pending.lastStatus,
                                     errorType: pending.lastError ?? .rejected, errorMessage: pending.lastMessage, replays: 0)
        let context = correlation(pending)
        let dlqTopic = subscription.deadLetterTopic(for: pending.fetched.topic)
        let eventContext = Deliverer.traceparent(of: pending.fetched)
        let span = deliverer.spans?.start("dead-letter \(dlqTopic)", kind: .producer, operation: "send", event: pending.fetched.event,
                                          topic: pending.fetched.topic, partition: pending.fetched.partition, offset: pending.fetched.offset,
                                          parent: eventContext, extra: [
                                              (SpanAttributeName.subscription, .string(subscription.name)), (SpanAttributeName.deadLetterTopic, .string(dlqTopic)),
                                              (SpanAttributeName.attempt, .int(pending.attempts)), (SpanAttributeName.errorType, .string(history.errorType.rawValue)),
                                          ])
        defer { span?.end() }
        // Durable before the offset can be committed: nothing accepted is lost between the topic and its DLQ.
        while true {
            do {
                try await deadLetters.write(pending.fetched, subscription: subscription, history: history,
                                            traceparent: span?.traceparent ?? eventContext)
                break
            } catch {
                // Stopping: the event stays unfinished, so its offset is not committed and it is delivered
                // (and dead-lettered) again after the restart.
                if Task.isCancelled { return }
                logger.error("could not write a dead letter; retrying in 1 s", metadata: [LogField.subscription: .string(subscription.name), "error": .string(error.message)])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        if let traces, let correlation = pending.fetched.event?.correlationId {
            var hop = TraceHop.about(pending.fetched, kind: .deadLetter, subscription: subscription.name, time: currentTimeMillis())
            hop.outcome = history.errorType.rawValue
            hop.attempt = pending.attempts
            hop.httpStatus = pending.lastStatus
            hop.final = true
            traces.record(hop, correlationId: correlation)
        }
        Correlation.$current.withValue(context) {
            logger.warning("event dead-lettered", metadata: [
                LogField.subscription: .string(subscription.name), "dlq.topic": .string(dlqTopic),
                "attempts": .stringConvertible(pending.attempts), "error.type": .string(history.errorType.rawValue), "error.message": .string(history.errorMessage),
            ])
        }
        finish(key)
    }

    /// The head event of `key` is done: its offset may be committed, and the next event of the key may go.
    private func finish(_ key: String) {
        guard let pending = queues[key]?.first else { return }
        queues[key]!.removeFirst()
        busyKeys.remove(key)
        unfinished -= 1
        let tp = TopicPartition(pending.fetched.topic, pending.fetched.partition)
        trackers[tp]?.finished(pending.fetched.offset)
        if queues[key]!.isEmpty {
            queues.removeValue(forKey: key)
        } else {
            ready.append(key)
        }
    }

    // MARK: - Circuit breaker

    private func updateBreaker(after outcome: AttemptOutcome) {
        if case .unavailable = outcome {
            consecutiveUnavailable += 1
            if breaker == .halfOpen {
                probeInFlight = false
                openInterval = min(openInterval * 2, subscription.breaker.maxOpenMs)
                transition(to: .open, reason: "the probe failed")
            } else if breaker == .closed && consecutiveUnavailable >= subscription.breaker.failureThreshold {
                openInterval = subscription.breaker.openMs
                transition(to: .open, reason: "\(consecutiveUnavailable) deliveries in a row found the app unavailable")
            }
        } else if outcome.appAnswered {
            consecutiveUnavailable = 0
            if breaker != .closed {
                probeInFlight = false
                openInterval = subscription.breaker.openMs
                transition(to: .closed, reason: "the app answered")
            }
        } else if breaker == .halfOpen {
            // A timeout on the probe: the app is not back yet.
            probeInFlight = false
            openInterval = min(openInterval * 2, subscription.breaker.maxOpenMs)
            transition(to: .open, reason: "the probe timed out")
        }
    }

    private func transition(to state: BreakerState, reason: String) {
        let from = breaker
        breaker = state
        for candidate in BreakerState.allCases {
            metrics.gauge(MetricName.breakerState, subscription.name, candidate.rawValue).set(Double(candidate == state ? 1 : 0))
        }
        metrics.counter(MetricName.breakerTransitions, subscription.name, state.rawValue).increment()
        let metadata: Logger.Metadata = [
            LogField.subscription: .string(subscription.name), "breaker.from": .string(from.rawValue), "breaker.to": .string(state.rawValue),
            "reason": .string(reason), "probe_in_ms": .stringConvertible(state == .open ? openInterval : 0),
        ]
        if state == .closed { logger.notice("circuit breaker closed: deliveries resume", metadata: metadata) } else { logger.warning("circuit breaker \(state == .open ? "opened: deliveries paused" : "half-open: probing")", metadata: metadata) }
        if state == .open {
            let interval = openInterval
            Task {
                try? await Task.sleep(for: .milliseconds(interval))
                self.probe()
            }
        }
    }

    private func probe() {
        guard breaker == .open else { return }
        transition(to: .halfOpen, reason: "open interval passed")
        dispatch()
    }

    // MARK: - Commits and gauges

    /// Commits the lowest unfinished offsets every 100 ms. The commit (an fsync) runs beside the loop, so a slow
    /// disk never delays the next poll; `force` (at shutdown) waits for it.
    private func commitIfDue(force: Bool) async throws {
        if force {
            while committing { try? await Task.sleep(for: .milliseconds(5)) }
        } else if committing || ContinuousClock.now - lastCommit <= .milliseconds(100) {
            return
        }
        guard let member else { return }
        lastCommit = .now
        var offsets: [(TopicPartition, Int64, String)] = []
        for (tp, tracker) in trackers where committed[tp] != tracker.commitOffset {
            offsets.append((tp, tracker.commitOffset, ""))
        }
        guard !offsets.isEmpty else { return }
        committing = true
        if force {
            await commit(offsets, member: member)
        } else {
            Task { await self.commit(offsets, member: member) }
        }
    }

    private func commit(_ offsets: [(TopicPartition, Int64, String)], member: any GroupMember) async {
        defer { committing = false }
        do {
            try await member.commit(offsets)
            for (tp, offset, _) in offsets { committed[tp] = offset }
            lastContact = .now
        } catch where error.kind == .conflict {
            // A partition moved away (another member of the group); its offsets are no longer ours to commit.
            for (tp, _, _) in offsets { committed[tp] = trackers[tp]?.commitOffset }
        } catch {
            // Not fatal: the next round commits again (or the loop rejoins if the member is gone).
            logger.warning("commit failed; retrying", metadata: [LogField.subscription: .string(subscription.name), "error": .string(error.message)])
        }
    }

    private func publishGauges() {
        inFlightGauge.set(Double(unfinished))
        let oldest = trackers.values.compactMap(\.oldestTimestamp).min()
        oldestPendingGauge.set(oldest.map { max(0, Double(currentTimeMillis() - $0) / 1000) } ?? 0)
        if let rewind {
            let remaining = rewind.remaining(positions: committed.filter { $0.value >= 0 })
            rewindGauge.set(Double(remaining))
            if remaining == 0 {
                self.rewind = nil
                logger.notice("subscription rewind complete: every event delivered before it was delivered again", metadata: [
                    LogField.subscription: .string(subscription.name), LogField.rewindId: .string(rewind.id), "events": .stringConvertible(rewind.total),
                ])
                rewindCompleted(rewind.id)
            }
        }
    }

    private func correlation(_ pending: Pending) -> CorrelationContext {
        let event = pending.fetched.event
        let trace = event?.traceparent.flatMap(Correlation.parseTraceparent)
        return CorrelationContext(correlationId: event?.correlationId ?? "", causationId: event?.causationId, traceId: trace?.traceId,
                                  spanId: trace?.spanId, eventId: event?.id, eventType: event?.type, topic: pending.fetched.topic,
                                  partition: pending.fetched.partition, offset: pending.fetched.offset)
    }
}
