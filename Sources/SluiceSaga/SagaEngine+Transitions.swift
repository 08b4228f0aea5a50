import Foundation
import SluiceSchema
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// The state machine. Every function here runs inside the loop's lock and only changes `state` and `effects`;
/// recording and publishing happen after, in ``SagaEngine/iterate()``.
extension SagaEngine {
    func startLocked(_ request: StartRequest, now: Int64, state: inout EngineState, effects: inout Effects) -> Result<Started, BrokerError> {
        guard let definition = catalog.saga(request.type) else {
            // Requested through another agent whose definitions differ.
            return .failure(BrokerError(.notFound, "no saga type \(request.type) on the agent that owns saga \(request.id); declare the same sagas on every agent"))
        }
        if let existing = state.instances[request.id] {
            guard existing.type == request.type else { return .failure(BrokerError(.conflict, "saga id \(request.id) is already used by a saga of type \(existing.type)")) }
            return .success(Started(saga: existing, created: false))
        }
        let saga = begin(definition, id: request.id, data: request.data, causation: nil, origin: request.originCorrelationId,
                         traceparent: request.traceparent,
                         now: now, state: &state, effects: &effects)
        return .success(Started(saga: saga, created: true))
    }

    @discardableResult
    func begin(_ definition: SagaDefinition, id: String, data: JSONValue, causation: String?, origin: String?, traceparent: String?, now: Int64,
               state: inout EngineState, effects: inout Effects) -> SagaInstance {
        var saga = SagaInstance(id: id, type: definition.type, kind: .orchestrated, status: .running, data: data, startedAt: now)
        saga.causationId = causation
        saga.traceparent = traceparent
        saga.originCorrelationId = origin == id ? nil : origin
        saga.steps = definition.steps.map { StepState(name: $0.name, compensation: $0.compensation == nil ? nil : CompensationState()) }
        saga.outcomePublished = definition.outcomeTopic == nil
        state.instances[id] = saga
        state.active.insert(id)
        metrics.started(definition.type)
        log(&effects, .info, "saga started", saga, extra: origin.map { ["origin.correlation_id": .string($0)] } ?? [:])
        dispatchStep(0, key: id, definition, now: now, state: &state, effects: &effects)
        effects.changed[id] = "started"
        return state.instances[id]!
    }

    func dispatchStep(_ index: Int, key: String, _ definition: SagaDefinition, now: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        let step = definition.steps[index]
        let id = "\(saga.id).\(step.name)"
        saga.current = index
        saga.steps[index].status = .dispatched
        saga.steps[index].commandId = id
        saga.steps[index].dispatchedAt = now
        state.instances[key] = saga
        effects.commands.append(command(step.command, saga: saga, definition: definition, id: id, step: step.name,
                                        causation: stepCausation(saga, index: index), after: .nothing))
        effects.changed[key] = "step_dispatched"
    }

    // MARK: - Events

    /// An event from a watched topic: a trigger, a reply, or a step of an observed saga. On a cluster, an event
    /// forwarded to saga-topic `partition` moves only the sagas of that partition (the others' owners have it too).
    func handle(_ fetched: FetchedEvent, partition: Int32? = nil, now: Int64, state: inout EngineState, effects: inout Effects) {
        guard let event = fetched.event else { return }
        let partitions = state.statePartitions
        func here(_ key: String) -> Bool { partition.map { Self.partition(of: key, partitions: partitions) == $0 } ?? true }
        for definition in catalog.sagas where definition.triggerType == event.type && (definition.triggerTopic.map { $0 == fetched.topic } ?? true) {
            let id = Self.sagaId(trigger: event, type: definition.type)
            guard state.instances[id] == nil, here(id) else { continue }
            var data = event.data.flatMap(JSONValue.parse) ?? .object([:])
            if data.objectValue == nil { data = .object(["event": data]) }
            begin(definition, id: id, data: data, causation: event.id, origin: event.correlationId, traceparent: event.traceparent, now: now,
                  state: &state, effects: &effects)
        }
        guard let correlation = event.correlationId else { return }
        if here(correlation), let saga = state.instances[correlation], saga.kind == .orchestrated, !saga.status.isFinal, let definition = catalog.saga(saga.type) {
            reply(event, key: correlation, definition, now: now, state: &state, effects: &effects)
        }
        for definition in catalog.observed where definition.allTypes.contains(event.type) && (definition.topics.map { $0.contains(fetched.topic) } ?? true)
            && here(SagaInstance.observedKey(type: definition.type, correlationId: correlation)) {
            observe(event, timestamp: fetched.timestamp, correlation: correlation, definition, now: now, state: &state, effects: &effects)
        }
    }

    func reply(_ event: CloudEvent, key: String, _ definition: SagaDefinition, now: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        switch saga.status {
        case .running:
            let index = saga.current
            let step = definition.steps[index]
            let success = step.success.contains(event.type)
            guard saga.steps[index].status == .dispatched, success || step.failure.contains(event.type) else { return }
            if let causation = event.causationId, causation != saga.steps[index].commandId {
                log(&effects, .debug, "reply ignored: its causationid is not the step's command", saga, extra: [LogField.eventId: .string(event.id)])
                return
            }
            saga.steps[index].finishedAt = now
            saga.traceparent = event.traceparent ?? saga.traceparent
            saga.steps[index].replyType = event.type
            saga.steps[index].replyId = event.id
            let milliseconds = now - (saga.steps[index].dispatchedAt ?? now)
            if success {
                saga.steps[index].status = .succeeded
                saga.replies[step.name] = event.data.flatMap(JSONValue.parse) ?? .null
                state.instances[key] = saga
                metrics.step(saga.type, step.name, "succeeded", milliseconds: milliseconds)
                log(&effects, .info, "saga step succeeded", saga, step: step.name, extra: [LogField.eventType: .string(event.type)])
                if index + 1 < definition.steps.count {
                    dispatchStep(index + 1, key: key, definition, now: now, state: &state, effects: &effects)
                    effects.changed[key] = "step_succeeded"
                } else {
                    finish(key, .completed, at: now, state: &state, effects: &effects)
                }
            } else {
                saga.steps[index].status = .failed
                saga.steps[index].error = "replied \(event.type)"
                state.instances[key] = saga
                metrics.step(saga.type, step.name, "failed", milliseconds: milliseconds)
                startCompensation(key, definition, failedStep: index, reason: "step \(step.name) failed: replied \(event.type)", timedOut: false,
                                  now: now, state: &state, effects: &effects)
            }
        case .compensating:
            guard let head = saga.compensations.first, let compensation = definition.steps[head].compensation,
                  let attempt = saga.steps[head].compensation, attempt.status == .dispatched else { return }
            let success = compensation.success.contains(event.type)
            guard success || compensation.failure.contains(event.type) else { return }
            if let causation = event.causationId, causation != attempt.commandId { return }
            saga.steps[head].compensation!.replyType = event.type
            saga.traceparent = event.traceparent ?? saga.traceparent
            state.instances[key] = saga
            if success {
                compensationSucceeded(key, definition, now: now, state: &state, effects: &effects)
            } else {
                compensationFailed(key, definition, reason: "replied \(event.type)", outcome: "failed", now: now, state: &state, effects: &effects)
            }
        default:
            return
        }
    }

    // MARK: - Compensation

    /// Undoes the completed steps (and a timed-out one, whose effect is unknown) in reverse order.
    func startCompensation(_ key: String, _ definition: SagaDefinition, failedStep index: Int, reason: String, timedOut: Bool, now: Int64,
                           state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        saga.failedStep = definition.steps[index].name
        saga.failureReason = reason
        saga.timedOut = timedOut
        var queue: [Int] = []
        if saga.steps[index].status == .timedOut && definition.steps[index].compensation != nil { queue.append(index) }
        for earlier in stride(from: index - 1, through: 0, by: -1) where saga.steps[earlier].status == .succeeded && definition.steps[earlier].compensation != nil {
            queue.append(earlier)
        }
        saga.compensations = queue
        state.instances[key] = saga
        log(&effects, .warning, "saga failed: \(reason)", saga, step: saga.failedStep, extra: ["saga.compensations": .string(queue.map { definition.steps[$0].name }.joined(separator: ","))])
        if queue.isEmpty {
            finish(key, timedOut ? .timedOut : .failed, at: now, state: &state, effects: &effects)
        } else {
            state.instances[key]!.status = .compensating
            dispatchCompensation(key, definition, now: now, state: &state, effects: &effects)
            effects.changed[key] = "compensation_started"
        }
    }

    func dispatchCompensation(_ key: String, _ definition: SagaDefinition, now: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        let head = saga.compensations[0]
        let step = definition.steps[head]
        let compensation = step.compensation!
        var attempt = saga.steps[head].compensation ?? CompensationState()
        attempt.attempts += 1
        attempt.status = .dispatched
        attempt.dispatchedAt = now
        attempt.retryAt = nil
        let id = "\(saga.id).\(step.name).compensate.\(attempt.attempts)"
        attempt.commandId = id
        saga.steps[head].compensation = attempt
        state.instances[key] = saga
        effects.commands.append(command(compensation.command, saga: saga, definition: definition, id: id, step: step.name,
                                        causation: compensationCausation(saga),
                                        after: compensation.success.isEmpty ? .compensationDone(step: head, commandId: id) : .nothing))
        effects.changed[key] = "compensation_dispatched"
    }

    func compensationSucceeded(_ key: String, _ definition: SagaDefinition, now: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        let head = saga.compensations.removeFirst()
        saga.steps[head].compensation!.status = .succeeded
        saga.steps[head].compensation!.finishedAt = now
        state.instances[key] = saga
        metrics.compensation(saga.type, definition.steps[head].name, "succeeded")
        log(&effects, .info, "saga compensation succeeded", saga, step: definition.steps[head].name)
        if saga.compensations.isEmpty {
            finish(key, saga.timedOut ? .timedOut : .compensated, at: now, state: &state, effects: &effects)
        } else {
            dispatchCompensation(key, definition, now: now, state: &state, effects: &effects)
            effects.changed[key] = "compensation_succeeded"
        }
    }

    /// A failed or timed-out attempt: retried with backoff until the step's retry.max_attempts, then the saga
    /// needs an operator (later compensations wait: they may depend on this one).
    func compensationFailed(_ key: String, _ definition: SagaDefinition, reason: String, outcome: String, now: Int64,
                            state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        let head = saga.compensations[0]
        let step = definition.steps[head]
        let retry = step.compensation!.retry
        var attempt = saga.steps[head].compensation!
        attempt.lastError = reason
        metrics.compensation(saga.type, step.name, outcome)
        if attempt.attempts >= retry.maxAttempts {
            attempt.status = .gaveUp
            attempt.finishedAt = now
            saga.steps[head].compensation = attempt
            saga.failureReason = (saga.failureReason ?? "") + "; compensation of \(step.name) failed \(attempt.attempts) time(s), last: \(reason)"
            state.instances[key] = saga
            log(&effects, .error, "saga needs intervention: compensation of \(step.name) failed \(attempt.attempts) time(s)", saga, step: step.name)
            finish(key, .needsIntervention, at: now, state: &state, effects: &effects)
        } else {
            attempt.status = .waitingRetry
            attempt.retryAt = now + retry.delayMs(afterAttempt: attempt.attempts, random: Double.random(in: 0..<1))
            saga.steps[head].compensation = attempt
            state.instances[key] = saga
            log(&effects, .warning, "saga compensation attempt \(attempt.attempts) failed (\(reason)); retrying", saga, step: step.name)
            effects.changed[key] = "compensation_retry_scheduled"
        }
    }

    // MARK: - Finishing

    func finish(_ key: String, _ status: SagaStatus, at time: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        saga.status = status
        saga.finishedAt = max(time, saga.startedAt)
        state.instances[key] = saga
        state.active.remove(key)
        state.finishedOrder.append(key)
        metrics.finished(saga)
        log(&effects, status == .completed ? .info : .warning, "saga \(status.rawValue)", saga,
            extra: ["saga.duration_seconds": .stringConvertible(saga.durationSeconds ?? 0)])
        if saga.kind == .orchestrated, let definition = catalog.saga(saga.type), let outcome = outcomeCommand(saga, definition) {
            effects.commands.append(outcome)
        }
        effects.changed[key] = "finished"
        if state.finishedOrder.count > Self.retainedFinished + 1000 {
            let drop = state.finishedOrder.count - Self.retainedFinished
            for old in state.finishedOrder.prefix(drop) where state.instances[old]?.status.isFinal == true && effects.changed[old] == nil {
                state.instances.removeValue(forKey: old)
            }
            state.finishedOrder.removeFirst(drop)
        }
    }

    /// A command whose publish was confirmed: fire-and-forget compensations are done then; outcome events noted.
    func published(_ command: OutgoingCommand, now: Int64, state: inout EngineState, effects: inout Effects) {
        guard let saga = state.instances[command.key] else { return }
        switch command.after {
        case .nothing:
            return
        case .outcomePublished:
            state.instances[command.key]!.outcomePublished = true
            effects.changed[command.key] = "outcome_published"
        case .compensationDone(let step, let commandId):
            guard saga.status == .compensating, saga.compensations.first == step, saga.steps[step].compensation?.commandId == commandId,
                  saga.steps[step].compensation?.status == .dispatched, let definition = catalog.saga(saga.type) else { return }
            compensationSucceeded(command.key, definition, now: now, state: &state, effects: &effects)
        }
    }

    // MARK: - Timers

    func fireTimers(now: Int64, state: inout EngineState, effects: inout Effects) {
        for key in Array(state.active) {
            guard let saga = state.instances[key] else { continue }
            if saga.kind == .observed {
                guard let definition = catalog.observed.first(where: { $0.type == saga.type }), now >= saga.startedAt + definition.timeoutMs else { continue }
                if saga.status == .compensating {
                    state.instances[key]!.failureReason = "no compensated event within \(definition.timeoutMs) ms"
                    finish(key, .failed, at: now, state: &state, effects: &effects)
                } else {
                    state.instances[key]!.failureReason = "no outcome event within \(definition.timeoutMs) ms"
                    state.instances[key]!.timedOut = true
                    finish(key, .timedOut, at: now, state: &state, effects: &effects)
                }
                continue
            }
            guard let definition = catalog.saga(saga.type) else { continue }
            switch saga.status {
            case .running:
                let index = saga.current
                guard saga.steps[index].status == .dispatched, let dispatched = saga.steps[index].dispatchedAt else { continue }
                if definition.timeoutMs > 0 && now >= saga.startedAt + definition.timeoutMs {
                    timeOut(key, definition, step: index, reason: "the saga did not finish within \(definition.timeoutMs) ms", now: now, state: &state, effects: &effects)
                } else if now >= dispatched + definition.steps[index].timeoutMs {
                    timeOut(key, definition, step: index, reason: "step \(definition.steps[index].name) got no reply within \(definition.steps[index].timeoutMs) ms",
                            now: now, state: &state, effects: &effects)
                }
            case .compensating:
                guard let head = saga.compensations.first, let compensation = definition.steps[head].compensation,
                      let attempt = saga.steps[head].compensation else { continue }
                if attempt.status == .dispatched, !compensation.success.isEmpty, let at = attempt.dispatchedAt, now >= at + compensation.timeoutMs {
                    compensationFailed(key, definition, reason: "no reply within \(compensation.timeoutMs) ms", outcome: "timed_out", now: now, state: &state, effects: &effects)
                } else if attempt.status == .waitingRetry, let retryAt = attempt.retryAt, now >= retryAt {
                    dispatchCompensation(key, definition, now: now, state: &state, effects: &effects)
                }
            default:
                continue
            }
        }
    }

    func timeOut(_ key: String, _ definition: SagaDefinition, step index: Int, reason: String, now: Int64, state: inout EngineState, effects: inout Effects) {
        var saga = state.instances[key]!
        saga.steps[index].status = .timedOut
        saga.steps[index].finishedAt = now
        saga.steps[index].error = reason
        state.instances[key] = saga
        metrics.step(saga.type, definition.steps[index].name, "timed_out", milliseconds: now - (saga.steps[index].dispatchedAt ?? now))
        startCompensation(key, definition, failedStep: index, reason: reason, timedOut: true, now: now, state: &state, effects: &effects)
    }

    // MARK: - Observed sagas

    func observe(_ event: CloudEvent, timestamp: Int64, correlation: String, _ definition: ObservedSagaDefinition, now: Int64,
                 state: inout EngineState, effects: inout Effects) {
        let key = SagaInstance.observedKey(type: definition.type, correlationId: correlation)
        if definition.start.contains(event.type) {
            guard state.instances[key] == nil else { return }
            var saga = SagaInstance(id: correlation, type: definition.type, kind: .observed, status: .running,
                                    data: event.data.flatMap(JSONValue.parse) ?? .null, startedAt: timestamp)
            saga.causationId = event.id
            saga.lastEventType = event.type
            saga.outcomePublished = true
            state.instances[key] = saga
            state.active.insert(key)
            metrics.started(definition.type)
            log(&effects, .info, "observed saga started", saga, extra: [LogField.eventType: .string(event.type)])
            effects.changed[key] = "started"
            if let early = state.earlyOutcomes.removeValue(forKey: key) {
                observe(early.event, timestamp: early.timestamp, correlation: correlation, definition, now: now, state: &state, effects: &effects)
            }
            return
        }
        guard var saga = state.instances[key], !saga.status.isFinal else {
            if state.instances[key] == nil {
                // Read before its start event (another partition): kept until the start comes, a bounded number.
                if state.earlyOutcomes.count >= Self.retainedFinished { state.earlyOutcomes.removeAll() }
                state.earlyOutcomes[key] = (event, timestamp)
            }
            return
        }
        saga.lastEventType = event.type
        if definition.success.contains(event.type) {
            guard saga.status == .running else { return }
            state.instances[key] = saga
            finish(key, .completed, at: timestamp, state: &state, effects: &effects)
        } else if definition.failure.contains(event.type) {
            guard saga.status == .running else { return }
            saga.failureReason = event.type
            state.instances[key] = saga
            if definition.compensated.isEmpty {
                finish(key, .failed, at: timestamp, state: &state, effects: &effects)
            } else {
                state.instances[key]!.status = .compensating
                log(&effects, .warning, "observed saga failed (\(event.type)); waiting for its compensation", saga)
                effects.changed[key] = "failed"
            }
        } else if definition.compensated.contains(event.type) {
            state.instances[key] = saga
            finish(key, .compensated, at: timestamp, state: &state, effects: &effects)
        }
    }

    // MARK: - Commands

    /// What templates see: `saga.id`, `saga.type`, `data.…` and `steps.NAME.…`.
    func context(_ saga: SagaInstance) -> JSONValue {
        .object(["saga": .object(["id": .string(saga.id), "type": .string(saga.type)]), "data": saga.data, "steps": .object(saga.replies)])
    }

    func command(_ command: SagaCommand, saga: SagaInstance, definition: SagaDefinition, id: String, step: String, causation: String?,
                 after: OutgoingCommand.AfterPublish) -> OutgoingCommand {
        let data: JSONValue
        if let template = command.template {
            data = Template.render(template, context: context(saga))
        } else {
            // The seed's way: the saga's data updated with every reply so far.
            var merged = saga.data.objectValue ?? [:]
            for step in definition.steps {
                if let reply = saga.replies[step.name]?.objectValue { merged.merge(reply) { _, new in new } }
            }
            data = .object(merged)
        }
        var event = CloudEvent(id: id, source: "/sluice/sagas/\(definition.type)", type: command.type, data: data.bytes, datacontenttype: "application/json")
        event.time = Timestamp.rfc3339Millis()
        event.extensions = ["correlationid": saga.id, "partitionkey": saga.id, "sagatype": definition.type, "sagastep": step]
        if let causation { event.extensions["causationid"] = causation }
        if let traceparent = saga.traceparent { event.extensions["traceparent"] = traceparent }
        return OutgoingCommand(key: saga.key, topic: command.topic ?? broker.route(eventType: command.type), event: event, after: after)
    }

    func stepCausation(_ saga: SagaInstance, index: Int) -> String? {
        index == 0 ? saga.causationId : saga.steps[index - 1].replyId
    }

    /// Compensations are caused by the failure reply (nil after a timeout).
    func compensationCausation(_ saga: SagaInstance) -> String? {
        saga.steps.first { $0.name == saga.failedStep }?.replyId
    }

    /// `saga.<status>` to the outcome topic, once the saga is final.
    func outcomeCommand(_ saga: SagaInstance, _ definition: SagaDefinition) -> OutgoingCommand? {
        guard let topic = definition.outcomeTopic, saga.status.isFinal, !saga.outcomePublished else { return nil }
        var payload: [String: JSONValue] = [
            "saga_id": .string(saga.id), "saga_type": .string(saga.type), "status": .string(saga.status.rawValue), "data": saga.data,
            "duration_seconds": .number(saga.durationSeconds ?? 0),
        ]
        if let failed = saga.failedStep { payload["failed_step"] = .string(failed) }
        if let reason = saga.failureReason { payload["reason"] = .string(reason) }
        var event = CloudEvent(id: "\(saga.id).outcome", source: "/sluice/sagas/\(definition.type)", type: "saga.\(saga.status.rawValue)",
                               data: JSONValue.object(payload).bytes, datacontenttype: "application/json")
        event.time = Timestamp.rfc3339Millis()
        event.extensions = ["correlationid": saga.id, "partitionkey": saga.id, "sagatype": definition.type]
        if let last = saga.steps.last(where: { $0.replyId != nil })?.replyId { event.extensions["causationid"] = last }
        if let traceparent = saga.traceparent { event.extensions["traceparent"] = traceparent }
        return OutgoingCommand(key: saga.key, topic: topic, event: event, after: .outcomePublished)
    }

    /// The id of the saga a trigger event starts: the same event (source and id) always gives the same saga,
    /// so a trigger read twice starts one saga.
    static func sagaId(trigger event: CloudEvent, type: String) -> String {
        let text = type + "\u{0}" + event.source + "\u{0}" + event.id
        let hex = String(StableHash.fnv1a(text), radix: 16).leftPadded(16) + String(StableHash.fnv1a(text, seed: 0x84222325cbf29ce4), radix: 16).leftPadded(16)
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    /// A saga log line, written once the batch has left the lock (see ``SagaEngine/write(_:)``).
    func log(_ effects: inout Effects, _ level: Logger.Level, _ message: String, _ saga: SagaInstance, step: String? = nil, extra: Logger.Metadata = [:]) {
        var metadata: Logger.Metadata = [
            LogField.correlationId: .string(saga.id), LogField.sagaId: .string(saga.id), LogField.sagaType: .string(saga.type),
            LogField.sagaStatus: .string(saga.status.rawValue),
        ]
        if let step = step ?? saga.currentStep { metadata[LogField.sagaStep] = .string(step) }
        metadata.merge(extra) { _, new in new }
        effects.logs.append((level, message, metadata))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
