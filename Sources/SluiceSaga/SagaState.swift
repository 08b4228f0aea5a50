import Foundation
public import SluiceSchema
import SluiceTelemetry

/// Where a saga is. The last five are final and are the `status` label of `sluice_saga_completions_total`.
public enum SagaStatus: String, Sendable, Codable, CaseIterable {
    case running, compensating
    case completed, compensated, failed
    case timedOut = "timed_out"
    case needsIntervention = "needs_intervention"

    public var isFinal: Bool { self != .running && self != .compensating }
    public static let finals: [SagaStatus] = allCases.filter(\.isFinal)
}

public enum StepStatus: String, Sendable, Codable {
    case pending, dispatched, succeeded, failed
    case timedOut = "timed_out"
}

public enum CompensationStatus: String, Sendable, Codable {
    case pending, dispatched
    /// A failed attempt; the next goes out at `retryAt`.
    case waitingRetry = "waiting_retry"
    case succeeded
    /// Out of attempts: the saga needs an operator.
    case gaveUp = "gave_up"
}

public struct CompensationState: Sendable, Codable, Equatable {
    public var status: CompensationStatus = .pending
    public var attempts = 0
    public var commandId: String?
    public var dispatchedAt: Int64?
    public var retryAt: Int64?
    public var finishedAt: Int64?
    public var lastError: String?
    public var replyType: String?
}

public struct StepState: Sendable, Codable, Equatable {
    public var name: String
    public var status: StepStatus = .pending
    public var commandId: String?
    public var dispatchedAt: Int64?
    public var finishedAt: Int64?
    public var replyType: String?
    public var replyId: String?
    public var error: String?
    public var compensation: CompensationState?
}

/// One saga, as the engine keeps it and as every record of the saga topic carries it (the latest record of a
/// saga, by ``version``, is its state).
public struct SagaInstance: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable { case orchestrated, observed }

    public var id: String
    public var type: String
    public var kind: Kind
    public var status: SagaStatus
    public var version = 0
    public var data: JSONValue
    /// Reply data per completed step (`${steps.NAME.…}` in templates).
    public var replies: [String: JSONValue] = [:]
    public var startedAt: Int64
    public var finishedAt: Int64?
    /// The event that started it (a trigger or, for observed sagas, the start event), or nil for API starts.
    public var causationId: String?
    /// The correlation id of the request or event that started it, when it was not the saga id.
    public var originCorrelationId: String?
    public var current = 0
    public var steps: [StepState] = []
    /// Step indexes still to compensate, next first.
    public var compensations: [Int] = []
    public var failedStep: String?
    public var failureReason: String?
    /// Whether the failure was a timeout (the final status is then `timed_out`).
    public var timedOut = false
    /// The W3C trace context of what last moved it (the start request or trigger, then each reply); its commands
    /// carry it as their `traceparent`, so a saga's steps join the trace of the request that started it.
    public var traceparent: String?
    /// Observed sagas: the last event type seen.
    public var lastEventType: String?
    /// Whether the outcome event (outcome_topic) went out.
    public var outcomePublished = false

    /// The map key: orchestrated sagas by id, observed ones by type and correlation id.
    public var key: String { kind == .orchestrated ? id : Self.observedKey(type: type, correlationId: id) }
    static func observedKey(type: String, correlationId: String) -> String { type + "\u{1F}" + correlationId }

    public var durationSeconds: Double? { finishedAt.map { Double($0 - startedAt) / 1000 } }
    public var currentStep: String? { status == .running && steps.indices.contains(current) ? steps[current].name : nil }
}

extension SagaInstance {
    private static func time(_ millis: Int64?) -> Any { millis.map { Timestamp.rfc3339Millis(millisecondsSinceEpoch: $0) } ?? NSNull() }

    /// The list entry the API returns.
    public var summaryObject: [String: Any] {
        var object: [String: Any] = [
            "id": id, "type": type, "kind": kind.rawValue, "status": status.rawValue, "started_at": Self.time(startedAt),
            "finished_at": Self.time(finishedAt), "duration_seconds": durationSeconds.map { $0 as Any } ?? NSNull(),
        ]
        let step: String? = currentStep ?? (status == .compensating ? compensations.first.map { steps[$0].name } : nil)
        object["current_step"] = step.map { $0 as Any } ?? NSNull()
        if let failedStep { object["failed_step"] = failedStep }
        if let failureReason { object["reason"] = failureReason }
        return object
    }

    /// Everything about the saga: its data, every step with times and outcome, and compensations.
    public var detailObject: [String: Any] {
        var object = summaryObject
        object["data"] = data.foundation
        object["version"] = version
        if let causationId { object["causation_id"] = causationId }
        if let originCorrelationId { object["origin_correlation_id"] = originCorrelationId }
        if let lastEventType { object["last_event_type"] = lastEventType }
        object["steps"] = steps.map { step -> [String: Any] in
            var entry: [String: Any] = ["name": step.name, "status": step.status.rawValue]
            if let id = step.commandId { entry["command_id"] = id }
            entry["dispatched_at"] = Self.time(step.dispatchedAt)
            entry["finished_at"] = Self.time(step.finishedAt)
            if let start = step.dispatchedAt, let end = step.finishedAt { entry["duration_seconds"] = Double(end - start) / 1000 }
            if let type = step.replyType { entry["reply_type"] = type }
            if let id = step.replyId { entry["reply_id"] = id }
            if let error = step.error { entry["error"] = error }
            if let reply = replies[step.name] { entry["reply_data"] = reply.foundation }
            if let compensation = step.compensation, compensation.status != .pending {
                var c: [String: Any] = ["status": compensation.status.rawValue, "attempts": compensation.attempts]
                if let id = compensation.commandId { c["command_id"] = id }
                c["dispatched_at"] = Self.time(compensation.dispatchedAt)
                c["finished_at"] = Self.time(compensation.finishedAt)
                if let retryAt = compensation.retryAt { c["retry_at"] = Self.time(retryAt) }
                if let error = compensation.lastError { c["last_error"] = error }
                if let type = compensation.replyType { c["reply_type"] = type }
                entry["compensation"] = c
            }
            return entry
        }
        return object
    }
}
