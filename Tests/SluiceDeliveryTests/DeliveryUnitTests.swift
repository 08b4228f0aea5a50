import Foundation
import SluiceBroker
@testable import SluiceDelivery
import SluiceLog
import Testing

@Suite("Retry policy and subscriptions")
struct SubscriptionUnitTests {
    @Test("attempt n waits min(initial × multiplier^(n−1), max) plus up to jitter × that, never more")
    func backoff() {
        var policy = RetryPolicy()
        policy.initialBackoffMs = 100
        policy.multiplier = 2
        policy.maxBackoffMs = 1_000
        policy.jitter = 0.1
        #expect(policy.delayBoundsMs(afterAttempt: 1) == 100...110)
        #expect(policy.delayBoundsMs(afterAttempt: 3) == 400...440)
        #expect(policy.delayBoundsMs(afterAttempt: 10) == 1_000...1_100, "capped at max, jitter on top")
        for attempt in 1...12 {
            for random in stride(from: 0.0, to: 1.0, by: 0.125) {
                #expect(policy.delayBoundsMs(afterAttempt: attempt).contains(policy.delayMs(afterAttempt: attempt, random: random)))
            }
        }
    }

    @Test("a definition parses with its defaults, and each bad field is refused naming the field and what is allowed")
    func parse() throws {
        let subscription = try Subscription.parse(["topics": ["orders"], "endpoint": "http://127.0.0.1:8080/events", "filter": "order.*",
                                                   "retry": ["max_attempts": 3]], name: "billing")
        #expect(subscription.name == "billing" && subscription.group == "billing" && subscription.topics == ["orders"])
        #expect(subscription.retry.maxAttempts == 3 && subscription.ordering == .key && subscription.deadLetterTopic(for: "orders") == "orders.dlq")
        #expect(subscription.accepts(eventType: "order.created") && !subscription.accepts(eventType: "payment.done"))
        let bad: [([String: Any], String)] = [
            (["topics": ["orders"]], "endpoint"),
            (["endpoint": "http://127.0.0.1:1/x"], "topics"),
            (["topics": ["orders"], "endpoint": "ftp://x"], "endpoint"),
            (["topics": ["orders"], "endpoint": "http://127.0.0.1:1/x", "ordering": "random"], "ordering"),
            (["topics": ["orders"], "endpoint": "http://127.0.0.1:1/x", "retry": ["initial_backoff_ms": 500, "max_backoff_ms": 100]], "retry.max_backoff_ms"),
            (["topics": ["orders"], "endpoint": "http://127.0.0.1:1/x", "colour": "red"], "colour"),
            (["topics": ["bad topic"], "endpoint": "http://127.0.0.1:1/x"], "topics"),
        ]
        for (object, field) in bad {
            #expect(throws: SubscriptionError.self) { try Subscription.parse(object, name: "s") }
            do {
                _ = try Subscription.parse(object, name: "s")
            } catch {
                #expect(error.field == field, "\(object): \(error.message)")
            }
        }
    }
}

@Suite("Dead letters and attempts")
struct DeadLetterUnitTests {
    @Test("a dead letter keeps the original record and carries its failure history, which reads back as written")
    func roundTrip() throws {
        var event = CloudEvent(id: "e-1", source: "/shop", type: "order.created", data: Array("{}".utf8), datacontenttype: "application/json")
        event.extensions = ["correlationid": "c-1", "partitionkey": "k"]
        var original = event.record(timestamp: 1_700_000_000_000)
        original.offset = 42
        let history = FailureHistory(attempts: 3, firstFailureMillis: 1_700_000_000_100, lastFailureMillis: 1_700_000_000_900, httpStatus: 500,
                                     errorType: .httpError, errorMessage: "HTTP 500: down", replays: 1)
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let record = DeadLetter.record(for: original, topic: "orders", partition: 2, group: "billing", subscription: "billing", history: history,
                                       correlationId: "c-1", traceparent: traceparent)
        let letter = try #require(DeadLetter(topic: "orders.dlq", partition: 2, record: record))
        #expect(letter.originalTopic == "orders" && letter.originalPartition == 2 && letter.originalOffset == 42)
        #expect(letter.subscription == "billing" && letter.group == "billing" && letter.correlationId == "c-1")
        #expect(letter.history == history && letter.traceparent == traceparent)
        #expect(letter.originalRecord.headers == original.headers && letter.originalRecord.value == original.value && letter.originalRecord.key == original.key)
        #expect(DeadLetter(topic: "orders", partition: 0, record: original) == nil, "an ordinary record is not a dead letter")
        let resolution = DeadLetter.resolution(partition: 2, offset: 7, outcome: "delivered", now: 1)
        #expect(DeadLetter.resolved(by: resolution)! == (2, 7))
    }

    @Test("the trace context of an event: its traceparent extension, or a plain record's traceparent header")
    func traceContext() {
        var event = CloudEvent(id: "e-1", source: "/s", type: "t", data: nil, datacontenttype: nil)
        event.extensions["traceparent"] = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"
        let record = event.record(timestamp: 1)
        #expect(Deliverer.traceparent(of: FetchedEvent(topic: "t", partition: 0, offset: 0, timestamp: 1, record: record, event: event))
                == "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
        let plain = Record(timestamp: 1, key: nil, value: Array("x".utf8),
                           headers: [RecordHeader(key: "traceparent", value: Array("00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-00".utf8))])
        #expect(Deliverer.traceparent(of: FetchedEvent(topic: "t", partition: 0, offset: 0, timestamp: 1, record: plain, event: nil))
                == "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-00")
        #expect(Deliverer.traceparent(of: FetchedEvent(topic: "t", partition: 0, offset: 0, timestamp: 1, record: Record(timestamp: 1, key: nil, value: nil), event: nil)) == nil)
    }

    @Test("each outcome's label, HTTP status and failure; answers the app gives in its body and Retry-After")
    func outcomes() {
        let cases: [(AttemptOutcome, String, Int?, Bool)] = [
            (.delivered(status: 200, seconds: 0.01), "delivered", 200, false),
            (.dropped(status: 200), "dropped", 200, false),
            (.rejected(status: 400, message: "bad"), "rejected", 400, true),
            (.httpError(status: 500, message: "down", retryAfterMs: nil), "http_error", 500, true),
            (.timeout(message: "slow"), "timeout", nil, true),
            (.unavailable(status: nil, message: "refused", retryAfterMs: nil), "unavailable", nil, true),
            (.unsupportedVersion(message: "no upcaster"), "unsupported_event_version", nil, true),
        ]
        for (outcome, label, status, failed) in cases {
            #expect(outcome.label == label && outcome.httpStatus == status && (outcome.failure != nil) == failed, "\(label)")
        }
        #expect(Deliverer.declaredStatus(Array(#"{"status": "retry"}"#.utf8)) == "RETRY")
        #expect(Deliverer.declaredStatus(Array("ok".utf8)) == nil)
        #expect(Deliverer.retryAfterMs("3") == 3_000 && Deliverer.retryAfterMs("99999") == 3_600_000 && Deliverer.retryAfterMs("soon") == nil)
        #expect(Deliverer.percentEncodedHeader("café \"x\" 100%") == "caf%C3%A9 %22x%22 100%25")
    }
}
