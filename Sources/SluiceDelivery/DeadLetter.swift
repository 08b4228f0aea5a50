import Foundation
public import SluiceLog
import SluiceTelemetry

/// Record headers Sluice adds to dead letters. A contract: `sluice dlq`, replay and anyone reading a DLQ topic
/// with a Kafka tool rely on them.
public enum DeadLetterHeader {
    public static let originalTopic = "sluice.dlq.original.topic"
    public static let originalPartition = "sluice.dlq.original.partition"
    public static let originalOffset = "sluice.dlq.original.offset"
    public static let group = "sluice.dlq.group"
    public static let subscription = "sluice.dlq.subscription"
    public static let attempts = "sluice.dlq.attempts"
    public static let firstFailure = "sluice.dlq.first.failure"
    public static let lastFailure = "sluice.dlq.last.failure"
    public static let httpStatus = "sluice.dlq.http.status"
    public static let errorType = "sluice.dlq.error.type"
    public static let errorMessage = "sluice.dlq.error.message"
    public static let correlationId = "sluice.dlq.correlation.id"
    public static let traceparent = "sluice.dlq.traceparent"
    public static let replays = "sluice.dlq.replays"
    /// On a resolution record: `partition:offset` of the dead letter it resolves.
    public static let resolves = "sluice.dlq.resolves"
    /// On a resolution record: delivered, dead_lettered_again or poisoned.
    public static let outcome = "sluice.dlq.outcome"

    public static let all = [originalTopic, originalPartition, originalOffset, group, subscription, attempts, firstFailure, lastFailure,
                             httpStatus, errorType, errorMessage, correlationId, traceparent, replays, resolves, outcome]

    /// Error messages kept in a dead letter are cut to this many bytes.
    public static let maxErrorMessageBytes = 1024
}

/// Why a delivery failed, as it appears in `error_type` labels and dead-letter headers.
public enum DeliveryErrorType: String, Sendable, CaseIterable {
    /// A 4xx other than 408 and 429: the app refused this event; not retried.
    case rejected
    /// 408, 429 or a 5xx other than 503, or `{"status": "RETRY"}`, on every attempt.
    case httpError = "http_error"
    /// No answer within `timeout_ms` on every attempt.
    case timeout
    /// Connection refused or reset, or 503 (these trip the breaker and never dead-letter an event alone).
    case unavailable
    /// The subscription asks for a version of the event's type that no chain of upcasters reaches from the event's
    /// (or the upcast data does not match that version's schema): not retried.
    case unsupportedEventVersion = "unsupported_event_version"
}

/// The failure history of an event, carried in its dead letter.
public struct FailureHistory: Sendable, Equatable {
    public var attempts: Int
    public var firstFailureMillis: Int64
    public var lastFailureMillis: Int64
    public var httpStatus: Int?
    public var errorType: DeliveryErrorType
    public var errorMessage: String
    public var replays: Int

    /// Adds one failed attempt.
    mutating func failed(at millis: Int64, status: Int?, type: DeliveryErrorType, message: String) {
        attempts += 1
        lastFailureMillis = millis
        httpStatus = status
        errorType = type
        errorMessage = message
    }
}

/// A dead letter as read back from a DLQ topic.
public struct DeadLetter: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var record: Record
    public var originalTopic: String
    public var originalPartition: Int32
    public var originalOffset: Int64
    public var group: String
    public var subscription: String
    public var history: FailureHistory
    public var correlationId: String?
    public var eventType: String?
    /// The trace context of its dead-lettering (the `dead-letter` span's, with spans on; else the event's).
    public var traceparent: String? {
        record.headers.last { $0.key == DeadLetterHeader.traceparent }?.value.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reads the dead-letter headers of a record; nil when it is not a dead letter.
    public init?(topic: String, partition: Int32, record: Record) {
        func header(_ name: String) -> String? {
            record.headers.last { $0.key == name }?.value.map { String(decoding: $0, as: UTF8.self) }
        }
        guard let originalTopic = header(DeadLetterHeader.originalTopic), let p = header(DeadLetterHeader.originalPartition).flatMap(Int32.init),
              let o = header(DeadLetterHeader.originalOffset).flatMap(Int64.init), let type = header(DeadLetterHeader.errorType).flatMap(DeliveryErrorType.init)
        else { return nil }
        self.topic = topic
        self.partition = partition
        self.offset = record.offset
        self.record = record
        self.originalTopic = originalTopic
        self.originalPartition = p
        self.originalOffset = o
        self.group = header(DeadLetterHeader.group) ?? ""
        self.subscription = header(DeadLetterHeader.subscription) ?? ""
        self.history = FailureHistory(
            attempts: header(DeadLetterHeader.attempts).flatMap(Int.init) ?? 0,
            firstFailureMillis: header(DeadLetterHeader.firstFailure).flatMap(Timestamp.parseRFC3339Millis) ?? record.timestamp,
            lastFailureMillis: header(DeadLetterHeader.lastFailure).flatMap(Timestamp.parseRFC3339Millis) ?? record.timestamp,
            httpStatus: header(DeadLetterHeader.httpStatus).flatMap(Int.init), errorType: type,
            errorMessage: header(DeadLetterHeader.errorMessage) ?? "", replays: header(DeadLetterHeader.replays).flatMap(Int.init) ?? 0)
        self.correlationId = header(DeadLetterHeader.correlationId)
        self.eventType = header("ce_type")
    }

    /// The original record: the dead letter without Sluice's headers.
    public var originalRecord: Record {
        var original = record
        original.headers.removeAll { $0.key.hasPrefix("sluice.dlq.") }
        original.offset = originalOffset
        return original
    }

    /// A dead letter for `record` (the original key, value, headers and timestamp, plus the failure headers).
    public static func record(for original: Record, topic: String, partition: Int32, group: String, subscription: String,
                              history: FailureHistory, correlationId: String?, traceparent: String?) -> Record {
        var record = original
        record.headers.removeAll { $0.key.hasPrefix("sluice.dlq.") }
        func add(_ name: String, _ value: String) { record.headers.append(RecordHeader(key: name, value: Array(value.utf8))) }
        add(DeadLetterHeader.originalTopic, topic)
        add(DeadLetterHeader.originalPartition, String(partition))
        add(DeadLetterHeader.originalOffset, String(original.offset))
        add(DeadLetterHeader.group, group)
        add(DeadLetterHeader.subscription, subscription)
        add(DeadLetterHeader.attempts, String(history.attempts))
        add(DeadLetterHeader.firstFailure, Timestamp.rfc3339Millis(millisecondsSinceEpoch: history.firstFailureMillis))
        add(DeadLetterHeader.lastFailure, Timestamp.rfc3339Millis(millisecondsSinceEpoch: history.lastFailureMillis))
        if let status = history.httpStatus { add(DeadLetterHeader.httpStatus, String(status)) }
        add(DeadLetterHeader.errorType, history.errorType.rawValue)
        var message = Array(history.errorMessage.utf8)
        if message.count > DeadLetterHeader.maxErrorMessageBytes {
            message = Array(message.prefix(DeadLetterHeader.maxErrorMessageBytes))
            while !message.isEmpty, String(validating: message, as: UTF8.self) == nil { message.removeLast() }
        }
        record.headers.append(RecordHeader(key: DeadLetterHeader.errorMessage, value: message))
        if let correlationId { add(DeadLetterHeader.correlationId, correlationId) }
        if let traceparent { add(DeadLetterHeader.traceparent, traceparent) }
        add(DeadLetterHeader.replays, String(history.replays))
        record.offset = 0
        return record
    }

    /// A resolution record: marks the dead letter at `partition:offset` of the same DLQ topic as handled.
    public static func resolution(partition: Int32, offset: Int64, outcome: String, now: Int64) -> Record {
        Record(timestamp: now, key: nil, value: nil, headers: [
            RecordHeader(key: DeadLetterHeader.resolves, value: Array("\(partition):\(offset)".utf8)),
            RecordHeader(key: DeadLetterHeader.outcome, value: Array(outcome.utf8)),
        ])
    }

    /// `(partition, offset)` a resolution record resolves, or nil.
    public static func resolved(by record: Record) -> (Int32, Int64)? {
        guard let value = record.headers.first(where: { $0.key == DeadLetterHeader.resolves })?.value else { return nil }
        let parts = String(decoding: value, as: UTF8.self).split(separator: ":")
        guard parts.count == 2, let p = Int32(parts[0]), let o = Int64(parts[1]) else { return nil }
        return (p, o)
    }
}
