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

    init(tracer: any Tracer) { self.tracer = tracer }

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
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return (EventSpans(tracer: backend.factory), backend.service)
    }

    /// Starts a span under `parent` (a W3C traceparent; nil or malformed starts a new trace).
    public func start(_ name: String, kind: EventSpan.Kind, parent: String?) -> EventSpan {
        var context = InstrumentationContext.topLevel
        if let parent { tracer.extract(["traceparent": parent], into: &context, using: HeaderExtractor()) }
        let span = tracer.startSpan(name, context: context, ofKind: kind.otel)
        var carrier: [String: String] = [:]
        tracer.inject(span.context, into: &carrier, using: HeaderInjector())
        return EventSpan(span: span, traceparent: carrier["traceparent"])
    }

    /// A span about one event: `publish`, `deliver`, `dead-letter` and `replay` all carry the event's CloudEvents
    /// attributes and where it is in the log.
    public func start(_ name: String, kind: EventSpan.Kind, operation: String, event: CloudEvent?, topic: String, partition: Int32? = nil,
                      offset: Int64? = nil, parent: String?) -> EventSpan {
        let span = start(name, kind: kind, parent: parent)
        span.span.updateAttributes { attributes in
            attributes[SpanAttributeName.messagingSystem] = "sluice"
            attributes[SpanAttributeName.messagingOperation] = operation
            attributes[SpanAttributeName.destination] = topic
            if let partition { attributes[SpanAttributeName.partition] = String(partition) }
            if let offset { attributes[SpanAttributeName.offset] = Int(offset) }
            if let event {
                attributes[SpanAttributeName.eventId] = event.id
                attributes[SpanAttributeName.messageId] = event.id
                attributes[SpanAttributeName.eventSource] = event.source
                attributes[SpanAttributeName.eventType] = event.type
                attributes[SpanAttributeName.eventSpecVersion] = event.specversion
                if let subject = event.subject { attributes[SpanAttributeName.eventSubject] = subject }
                if let correlation = event.correlationId { attributes[SpanAttributeName.correlationId] = correlation }
            }
        }
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

    fileprivate let span: any Span
    /// The span's own context, to hand on (nil when the tracer made none).
    public let traceparent: String?

    public func set(_ name: String, _ value: String) { span.updateAttributes { $0[name] = value } }
    public func set(_ name: String, _ value: Int) { span.updateAttributes { $0[name] = value } }

    /// Marks the span failed: `error.type` and the status message.
    public func fail(_ errorType: String, message: String) {
        span.updateAttributes { $0[SpanAttributeName.errorType] = errorType }
        span.setStatus(SpanStatus(code: .error, message: message))
    }

    public func end() { span.end() }
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
