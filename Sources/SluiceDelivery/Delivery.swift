import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import SluiceTrace

/// What one delivery attempt came to.
enum AttemptOutcome: Sendable {
    case delivered(status: Int, seconds: Double)
    /// 2xx with `{"status": "DROP"}`: the app does not want it; not retried, not dead-lettered.
    case dropped(status: Int)
    /// A 4xx other than 408 and 429: to the DLQ at once.
    case rejected(status: Int, message: String)
    /// 408, 429, a 5xx other than 503, or `{"status": "RETRY"}`.
    case httpError(status: Int, message: String, retryAfterMs: Int64?)
    case timeout(message: String)
    /// Connection refused or reset, or 503: the app is down.
    case unavailable(status: Int?, message: String, retryAfterMs: Int64?)
    /// Not sent: the event cannot be given in the subscription's version. To the DLQ at once.
    case unsupportedVersion(message: String)

    var label: String {
        switch self {
        case .delivered: "delivered"
        case .dropped: "dropped"
        case .rejected: "rejected"
        case .httpError: "http_error"
        case .timeout: "timeout"
        case .unavailable: "unavailable"
        case .unsupportedVersion: "unsupported_event_version"
        }
    }

    /// The app's HTTP status, when it answered.
    var httpStatus: Int? {
        switch self {
        case .delivered(let status, _), .dropped(let status), .rejected(let status, _), .httpError(let status, _, _): status
        case .unavailable(let status, _, _): status
        case .timeout, .unsupportedVersion: nil
        }
    }

    /// What went wrong, or nil when the app took the event (or asked to drop it).
    var failure: String? {
        switch self {
        case .delivered, .dropped: nil
        case .rejected(_, let message), .httpError(_, let message, _), .timeout(let message), .unavailable(_, let message, _),
             .unsupportedVersion(let message): message
        }
    }

    /// Whether the app answered (so it is up, whatever it said).
    var appAnswered: Bool {
        switch self {
        case .delivered, .dropped, .rejected, .httpError: true
        case .timeout, .unavailable, .unsupportedVersion: false
        }
    }
}

/// HTTP headers a delivery carries besides the `ce-*` attributes. A contract, listed in the README.
public enum DeliveryHeader {
    public static let correlationId = "X-Correlation-ID"
    public static let traceparent = "traceparent"
    public static let topic = "X-Sluice-Topic"
    public static let partition = "X-Sluice-Partition"
    public static let offset = "X-Sluice-Offset"
    public static let attempt = "X-Sluice-Attempt"
    public static let subscription = "X-Sluice-Subscription"
    public static let recordTimestamp = "X-Sluice-Record-Timestamp"
    /// The id of the subscription's rewind, on events delivered before it and now delivered again.
    public static let rewind = "X-Sluice-Rewind"
    /// The version an event was published as, when the subscription's `version` had it upcast.
    public static let upcastFrom = "X-Sluice-Upcast-From"
    public static let all = [correlationId, traceparent, topic, partition, offset, attempt, subscription, recordTimestamp, rewind, upcastFrom]
}

/// Sends one event to the app in CloudEvents binary mode and classifies the answer.
struct Deliverer: Sendable {
    let client: HTTPClient
    let subscription: Subscription
    let broker: Broker
    /// OpenTelemetry spans, when `otlp.endpoint` is set: one per attempt.
    let spans: EventSpans?

    typealias Header = DeliveryHeader

    /// The event as the subscription wants it: upcast to its `version` (counted in `sluice_events_upcast_total`), or
    /// why it cannot be.
    func prepare(_ fetched: FetchedEvent) -> Result<(FetchedEvent, upcastFrom: String?), UnsupportedEventVersion> {
        guard let target = subscription.version, let event = fetched.event else { return .success((fetched, nil)) }
        return broker.upcast(event, to: target).map { upcast in
            var out = fetched
            out.event = upcast.event
            return (out, upcast.upcastFrom)
        }
    }

    /// The trace context an event was published under: its `traceparent` extension, or a plain record's
    /// `traceparent` header (as Kafka clients' instrumentation writes it).
    static func traceparent(of fetched: FetchedEvent) -> String? {
        if let event = fetched.event { return event.traceparent }
        return fetched.record.headers.first { $0.key == Header.traceparent }.flatMap { $0.value.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// One attempt; with spans on, inside a `deliver SUBSCRIPTION` span under `parent` (default: the event's own
    /// trace context), whose context the app receives as `traceparent`.
    func attempt(_ fetched: FetchedEvent, attempt: Int, rewind: String? = nil, upcastFrom: String? = nil, parent: String? = nil) async -> AttemptOutcome {
        let parent = parent ?? Self.traceparent(of: fetched)
        guard let spans else { return await send(fetched, attempt: attempt, rewind: rewind, upcastFrom: upcastFrom, traceparent: parent) }
        let span = spans.start("deliver \(subscription.name)", kind: .client, operation: "process", event: fetched.event, topic: fetched.topic,
                               partition: fetched.partition, offset: fetched.offset, parent: parent, extra: [
                                   (SpanAttributeName.subscription, .string(subscription.name)), (SpanAttributeName.consumerGroup, .string(subscription.group)),
                                   (SpanAttributeName.attempt, .int(attempt)), (SpanAttributeName.httpMethod, .string("POST")),
                                   (SpanAttributeName.url, .string(subscription.endpoint)),
                               ])
        let outcome = await send(fetched, attempt: attempt, rewind: rewind, upcastFrom: upcastFrom, traceparent: span.traceparent ?? parent)
        var answered: [(String, EventSpan.Value)] = [(SpanAttributeName.outcome, .string(outcome.label))]
        if let status = outcome.httpStatus { answered.append((SpanAttributeName.httpStatus, .int(status))) }
        span.set(answered)
        if let message = outcome.failure { span.fail(outcome.label, message: message) }
        span.end()
        return outcome
    }

    private func send(_ fetched: FetchedEvent, attempt: Int, rewind: String?, upcastFrom: String?, traceparent: String?) async -> AttemptOutcome {
        var request = HTTPClientRequest(url: subscription.endpoint)
        request.method = .POST
        let event = fetched.event ?? CloudEvent(id: "\(fetched.topic)-\(fetched.partition)-\(fetched.offset)", source: "/sluice/topics/\(fetched.topic)",
                                                type: "sluice.record", data: fetched.record.value, datacontenttype: "application/octet-stream")
        request.headers.add(name: "ce-specversion", value: event.specversion)
        request.headers.add(name: "ce-id", value: event.id)
        request.headers.add(name: "ce-source", value: event.source)
        request.headers.add(name: "ce-type", value: event.type)
        if let time = event.time { request.headers.add(name: "ce-time", value: time) }
        if let subject = event.subject { request.headers.add(name: "ce-subject", value: subject) }
        if let schema = event.dataschema { request.headers.add(name: "ce-dataschema", value: schema) }
        for (name, value) in event.extensions.sorted(by: { $0.key < $1.key }) where name != "traceparent" {
            request.headers.add(name: "ce-" + name, value: Self.percentEncodedHeader(value))
        }
        request.headers.add(name: "Content-Type", value: event.datacontenttype ?? "application/json")
        if let correlation = event.correlationId { request.headers.add(name: Header.correlationId, value: correlation) }
        if let traceparent { request.headers.add(name: Header.traceparent, value: traceparent) }
        request.headers.add(name: Header.topic, value: fetched.topic)
        request.headers.add(name: Header.partition, value: String(fetched.partition))
        request.headers.add(name: Header.offset, value: String(fetched.offset))
        request.headers.add(name: Header.attempt, value: String(attempt))
        request.headers.add(name: Header.subscription, value: subscription.name)
        request.headers.add(name: Header.recordTimestamp, value: String(fetched.timestamp))
        if let rewind { request.headers.add(name: Header.rewind, value: rewind) }
        if let upcastFrom { request.headers.add(name: Header.upcastFrom, value: upcastFrom) }
        request.body = .bytes(ByteBuffer(bytes: event.data ?? []))

        let started = ContinuousClock.now
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .milliseconds(subscription.timeoutMs))
        } catch {
            let elapsed = ContinuousClock.now - started
            let text = String(describing: error)
            // Could not connect (refused, unreachable, connect timeout) or the connection broke: the app is down.
            let connectionFailure = ["connect", "refused", "reset", "unreachable", "closed", "eof"].contains { text.localizedCaseInsensitiveContains($0) }
            if !connectionFailure && (elapsed >= .milliseconds(subscription.timeoutMs) || text.localizedCaseInsensitiveContains("timeout")
                || text.localizedCaseInsensitiveContains("deadline")) {
                return .timeout(message: "no answer within timeout_ms=\(subscription.timeoutMs): \(text)")
            }
            return .unavailable(status: nil, message: "could not reach \(subscription.endpoint): \(text)", retryAfterMs: nil)
        }
        let body = (try? await response.body.collect(upTo: 64 * 1024)).map { Array(buffer: $0) } ?? []
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let status = Int(response.status.code)
        let retryAfter = response.headers.first(name: "Retry-After").flatMap(Self.retryAfterMs)
        let message = "HTTP \(status)" + (body.isEmpty ? "" : ": " + String(decoding: body.prefix(DeadLetterHeader.maxErrorMessageBytes), as: UTF8.self))
        switch status {
        case 200..<300:
            switch Self.declaredStatus(body) {
            case "RETRY": return .httpError(status: status, message: "the app answered {\"status\": \"RETRY\"}", retryAfterMs: retryAfter)
            case "DROP": return .dropped(status: status)
            default: return .delivered(status: status, seconds: seconds)
            }
        case 503: return .unavailable(status: status, message: message, retryAfterMs: retryAfter)
        case 408, 429, 500...599: return .httpError(status: status, message: message, retryAfterMs: retryAfter)
        case 400..<500: return .rejected(status: status, message: message)
        default: return .httpError(status: status, message: message, retryAfterMs: retryAfter)
        }
    }

    /// Dapr's convention: a JSON body `{"status": "SUCCESS" | "RETRY" | "DROP"}`.
    static func declaredStatus(_ body: [UInt8]) -> String? {
        guard body.first == UInt8(ascii: "{"), let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        return (object["status"] as? String)?.uppercased()
    }

    /// Retry-After in seconds (an HTTP-date is honoured too).
    static func retryAfterMs(_ value: String) -> Int64? {
        if let seconds = Int64(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return min(seconds, 3600) * 1000 }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return Int64(max(0, min(date.timeIntervalSinceNow * 1000, 3_600_000)))
    }

    /// Header values must be visible ASCII; anything else is percent-encoded (the CloudEvents HTTP binding's rule).
    static func percentEncodedHeader(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            if byte >= 0x20 && byte < 0x7F && byte != 0x25 && byte != 0x22 { out.unicodeScalars.append(Unicode.Scalar(byte)) } else { out += String(format: "%%%02X", byte) }
        }
        return out
    }
}
