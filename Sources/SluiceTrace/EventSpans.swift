import Foundation
public import Logging
import OTel
public import ServiceLifecycle
public import SluiceBroker
import SluiceLog
import Tracing

/// OpenTelemetry spans of an event's journey — publish, delivery attempts, dead letters, replays, saga steps —
/// exported over OTLP/HTTP by swift-otel (`otlp.endpoint`). Each span continues the W3C `traceparent` it is given
/// and hands on its own, which the caller puts on the event or the delivered request. Off (no endpoint), nothing
/// holds an `EventSpans` and no span work is done.
public struct EventSpans: Sendable {
    private let tracer: any Tracer
    /// Whether the sampler follows the parent's decision (the default, `parentbased_*`): then a parent that is not
    /// sampled makes no span at all, and its context is handed on as it came (W3C allows passing it unchanged).
    let followsParent: Bool

    init(tracer: any Tracer, followsParent: Bool) {
        self.tracer = tracer
        self.followsParent = followsParent
    }

    /// Whether `OTEL_TRACES_SAMPLER` (unset: `parentbased_always_on`) follows the parent's sampled flag.
    static func samplerFollowsParent(_ environment: [String: String]) -> Bool {
        let sampler = environment["OTEL_TRACES_SAMPLER"]?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return sampler.isEmpty || sampler.hasPrefix("parentbased_")
    }

    /// Whether `traceparent` is well formed with the sampled flag clear (`00-…-…-00`, or any flags without bit 0).
    static func isUnsampled(_ traceparent: String) -> Bool {
        let bytes = Array(traceparent.utf8)
        guard bytes.count == 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-"),
              let flags = UInt8(String(decoding: bytes[53...], as: UTF8.self), radix: 16) else { return false }
        return flags & 1 == 0
    }

    /// The tracer and the service that batches and exports its spans (run it in the agent's service group, listed
    /// before the services that make spans, so that it stops after them and sends what they ended).
    public static func otlp(config: SluiceConfig, logger: Logger) throws -> (spans: EventSpans, exporter: any Service)? {
        guard let url = config.otlpTracesURL else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = config.string("otlp.service.name")
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.otlpExporter.endpoint = url
        // A broker makes a span or two per event: batches larger and more often than the SDK's defaults (2,048 queued,
        // 512 a request, every 5 s), or most spans would be dropped at a few thousand events a second. OTEL_BSP_*
        // variables still override these.
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        configuration.traces.batchSpanProcessor.maxQueueSize = 16_384
        configuration.traces.batchSpanProcessor.maxExportBatchSize = 4_096
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (EventSpans(tracer: backend.factory, followsParent: samplerFollowsParent(ProcessInfo.processInfo.environment)), backend.service)
    }

    /// Starts a span under `parent` (a W3C traceparent; nil or malformed starts a new trace).
    public func start(_ name: String, kind: EventSpan.Kind, parent: String?) -> EventSpan {
        if followsParent, let parent, Self.isUnsampled(parent) { return EventSpan(span: nil, traceparent: parent) }
        var context = InstrumentationContext.topLevel
        if let parent { tracer.extract(["traceparent": parent], into: &context, using: HeaderExtractor()) }
        let span = tracer.startSpan(name, context: context, ofKind: kind.otel)
        var carrier: [String: String] = [:]
        tracer.inject(span.context, into: &carrier, using: HeaderInjector())
        return EventSpan(span: span, traceparent: carrier["traceparent"])
    }

    /// A span about one event: `publish`, `deliver`, `dead-letter` and `replay` all carry the event's CloudEvents
    /// attributes and where it is in the log, plus `extra`. The attributes are set in one go (each update of a
    /// span's attributes copies them).
    public func start(_ name: String, kind: EventSpan.Kind, operation: String, event: CloudEvent?, topic: String, partition: Int32? = nil,
                      offset: Int64? = nil, parent: String?, extra: [(String, EventSpan.Value)] = []) -> EventSpan {
        let span = start(name, kind: kind, parent: parent)
        guard let open = span.span, open.isRecording else { return span }
        var attributes: [String: SpanAttribute] = [:]
        attributes.reserveCapacity(12 + extra.count)
        attributes[SpanAttributeName.messagingSystem] = .string("sluice")
        attributes[SpanAttributeName.messagingOperation] = .string(operation)
        attributes[SpanAttributeName.destination] = .string(topic)
        if let partition { attributes[SpanAttributeName.partition] = .string(String(partition)) }
        if let offset { attributes[SpanAttributeName.offset] = .int64(offset) }
        if let event {
            attributes[SpanAttributeName.eventId] = .string(event.id)
            attributes[SpanAttributeName.messageId] = .string(event.id)
            attributes[SpanAttributeName.eventSource] = .string(event.source)
            attributes[SpanAttributeName.eventType] = .string(event.type)
            attributes[SpanAttributeName.eventSpecVersion] = .string(event.specversion)
            if let subject = event.subject { attributes[SpanAttributeName.eventSubject] = .string(subject) }
            if let correlation = event.correlationId { attributes[SpanAttributeName.correlationId] = .string(correlation) }
        }
        for (key, value) in extra { attributes[key] = value.attribute }
        open.attributes = SpanAttributes(attributes)
        return span
    }
}

/// One open span. End it exactly once.
public struct EventSpan: Sendable {
    public enum Kind: Sendable {
        case producer, consumer, client, `internal`

        var otel: SpanKind {
            switch self {
            case .producer: .producer
            case .consumer: .consumer
            case .client: .client
            case .internal: .internal
            }
        }
    }

    /// An attribute's value.
    public enum Value: Sendable {
        case string(String)
        case int(Int)

        var attribute: SpanAttribute {
            switch self {
            case .string(let text): .string(text)
            case .int(let number): .int64(Int64(number))
            }
        }
    }

    /// nil when no span was made (its parent is not sampled and the sampler follows the parent).
    fileprivate let span: (any Span)?
    /// The context to hand on: the span's own, or the unsampled parent's as it came (nil when the tracer made none).
    public let traceparent: String?

    /// Adds attributes, in one update.
    public func set(_ attributes: [(String, Value)]) {
        guard let span, span.isRecording, !attributes.isEmpty else { return }
        span.updateAttributes { current in
            for (key, value) in attributes { current.set(key, value: value.attribute) }
        }
    }

    /// Marks the span failed: `error.type` and the status message.
    public func fail(_ errorType: String, message: String) {
        set([(SpanAttributeName.errorType, .string(errorType))])
        span?.setStatus(SpanStatus(code: .error, message: message))
    }

    public func end() { span?.end() }
}

/// Span attribute names: OpenTelemetry's messaging, CloudEvents, HTTP and error conventions, and Sluice's own
/// (`sluice.*`). A contract, listed in the README.
public enum SpanAttributeName {
    public static let messagingSystem = "messaging.system"
    public static let messagingOperation = "messaging.operation.type"
    public static let destination = "messaging.destination.name"
    public static let partition = "messaging.destination.partition.id"
    public static let offset = "messaging.kafka.offset"
    public static let messageId = "messaging.message.id"
    public static let consumerGroup = "messaging.consumer.group.name"
    public static let eventId = "cloudevents.event_id"
    public static let eventSource = "cloudevents.event_source"
    public static let eventType = "cloudevents.event_type"
    public static let eventSpecVersion = "cloudevents.event_spec_version"
    public static let eventSubject = "cloudevents.event_subject"
    public static let httpMethod = "http.request.method"
    public static let httpStatus = "http.response.status_code"
    public static let url = "url.full"
    public static let errorType = "error.type"
    public static let correlationId = "sluice.correlation_id"
    public static let subscription = "sluice.subscription"
    public static let attempt = "sluice.delivery.attempt"
    public static let outcome = "sluice.delivery.outcome"
    public static let deadLetterTopic = "sluice.dlq.topic"
    public static let replayId = "sluice.replay.id"
    public static let sagaId = "sluice.saga.id"
    public static let sagaType = "sluice.saga.type"
    public static let sagaStep = "sluice.saga.step"
    public static let all = [messagingSystem, messagingOperation, destination, partition, offset, messageId, consumerGroup,
                             eventId, eventSource, eventType, eventSpecVersion, eventSubject, httpMethod, httpStatus, url, errorType,
                             correlationId, subscription, attempt, outcome, deadLetterTopic, replayId, sagaId, sagaType, sagaStep]
}

private struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

private struct HeaderInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}
