public import Logging

/// The ids that tie log lines of one request or one event together, carried in a task-local so that every
/// log line written while handling it gets them without passing them through every call.
public struct CorrelationContext: Sendable, Hashable {
    public var correlationId: String
    public var causationId: String?
    public var traceId: String?
    public var spanId: String?
    public var eventId: String?
    public var eventType: String?
    public var topic: String?
    public var partition: Int32?
    public var offset: Int64?

    public init(correlationId: String, causationId: String? = nil, traceId: String? = nil, spanId: String? = nil,
                eventId: String? = nil, eventType: String? = nil, topic: String? = nil, partition: Int32? = nil, offset: Int64? = nil) {
        self.correlationId = correlationId
        self.causationId = causationId
        self.traceId = traceId
        self.spanId = spanId
        self.eventId = eventId
        self.eventType = eventType
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    /// The context as log metadata, under the names in ``LogField``.
    public var metadata: Logger.Metadata {
        var out: Logger.Metadata = [LogField.correlationId: .string(correlationId)]
        if let causationId { out[LogField.causationId] = .string(causationId) }
        if let traceId { out[LogField.traceId] = .string(traceId) }
        if let spanId { out[LogField.spanId] = .string(spanId) }
        if let eventId { out[LogField.eventId] = .string(eventId) }
        if let eventType { out[LogField.eventType] = .string(eventType) }
        if let topic { out[LogField.topic] = .string(topic) }
        if let partition { out[LogField.partition] = .stringConvertible(partition) }
        if let offset { out[LogField.offset] = .stringConvertible(offset) }
        return out
    }
}

public enum Correlation {
    /// The context of the request or event being handled by the current task, if any.
    @TaskLocal public static var current: CorrelationContext?

    /// The longest correlation id accepted, as the `correlationid` attribute or the `X-Correlation-ID` header.
    public static let maxIdLength = 200

    /// Adds the current task's correlation context to every log line.
    public static let metadataProvider = Logger.MetadataProvider {
        current?.metadata ?? [:]
    }

    /// Runs `body` with `context` as the current correlation context.
    public static func with<T: Sendable>(_ context: CorrelationContext, _ body: () async throws -> T) async rethrows -> T {
        try await $current.withValue(context, operation: body)
    }

    /// Parses a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
    public static func parseTraceparent(_ value: String) -> (traceId: String, spanId: String)? {
        let parts = value.split(separator: "-")
        guard parts.count == 4, parts[0].count == 2, parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) }),
              parts[1] != Substring(String(repeating: "0", count: 32)), parts[2] != Substring(String(repeating: "0", count: 16))
        else { return nil }
        return (String(parts[1]).lowercased(), String(parts[2]).lowercased())
    }
}
