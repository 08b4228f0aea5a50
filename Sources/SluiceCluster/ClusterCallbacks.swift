import CRdKafkaLoader
import Dispatch
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import Synchronization

/// What librdkafka's callbacks reach through the handles' opaque pointer.
final class CallbackContext: Sendable {
    let logger: Logger
    let metrics: SluiceMetrics
    /// Each broker's error count at the last statistics, so the counter grows by the difference.
    let errorCounts = Mutex<[String: Int64]>([:])

    init(logger: Logger, metrics: SluiceMetrics) {
        self.logger = logger
        self.metrics = metrics
    }

    static func from(_ opaque: UnsafeMutableRawPointer?) -> CallbackContext? {
        opaque.map { Unmanaged<CallbackContext>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Publishes librdkafka's statistics (a JSON document every `statistics.interval.ms`) as `sluice_cluster_*`.
    func statistics(_ json: Data) {
        guard let root = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else { return }
        if let queued = root["msg_cnt"] as? NSNumber { metrics.gauge(MetricName.clusterQueueMessages).set(queued.doubleValue) }
        guard let brokers = root["brokers"] as? [String: Any] else { return }
        var up = Set<Int>()
        for case let broker as [String: Any] in brokers.values {
            guard let node = (broker["nodeid"] as? NSNumber)?.intValue, node >= 0 else { continue }
            let id = String(node)
            if broker["state"] as? String == "UP" { up.insert(node) }
            if let rtt = (broker["rtt"] as? [String: Any])?["avg"] as? NSNumber {
                metrics.gauge(MetricName.clusterRequestLatency, id).set(rtt.doubleValue / 1_000_000)
            }
            if let throttle = (broker["throttle"] as? [String: Any])?["avg"] as? NSNumber {
                metrics.gauge(MetricName.clusterThrottle, id).set(throttle.doubleValue / 1000)
            }
            let errors = ["txerrs", "rxerrs", "req_timeouts"].reduce(Int64(0)) { $0 + ((broker[$1] as? NSNumber)?.int64Value ?? 0) }
            let previous = errorCounts.withLock { counts in
                defer { counts[id] = errors }
                return counts[id] ?? 0
            }
            let counter = metrics.counter(MetricName.clusterErrors, id)
            if errors > previous { counter.increment(by: Int64(errors - previous)) }
        }
        metrics.gauge(MetricName.clusterBrokersUp).set(Double(up.count))
    }
}

// librdkafka's callbacks: C functions that find their context through the handle's opaque pointer.

/// A delivery report: the record is acknowledged (with its offset) or has failed for good.
let deliveryReport: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    let slot = Unmanaged<DeliverySlot>.fromOpaque(opaque).takeRetainedValue()
    if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        slot.pending.delivered(slot.index, offset: message.pointee.offset)
    } else {
        let reason = String(cString: rd_kafka_err2str(message.pointee.err))
        slot.pending.failed(slot.index, KafkaCluster.publishError(message.pointee.err, reason, description: slot.pending.description))
    }
}

let statistics: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int, UnsafeMutableRawPointer?) -> Int32 = { _, json, length, opaque in
    if let json, let context = CallbackContext.from(opaque) {
        context.statistics(Data(bytes: json, count: length))
    }
    return 0  // librdkafka frees the JSON
}

let clientError: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { _, code, reason, opaque in
    guard let context = CallbackContext.from(opaque) else { return }
    let text = reason.map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(rd_kafka_resp_err_t(code)))
    context.logger.warning("cluster client: \(text)", metadata: ["error.code": .string(String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(code))))])
}

/// librdkafka's own log lines, at their syslog level, through Sluice's logger.
let clientLog: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { handle, level, facility, line in
    guard let handle, let context = CallbackContext.from(rd_kafka_opaque(handle)), let line else { return }
    let text = String(cString: line)
    // The producer and the reader share the passed-through properties; each ignores the other's.
    if text.contains("will be ignored by this") { return }
    let metadata: Logger.Metadata = ["librdkafka.facility": .string(facility.map { String(cString: $0) } ?? "")]
    switch level {
    case ...2: context.logger.error("librdkafka: \(text)", metadata: metadata)
    case 3: return  // errors also come to the error callback, which logs them once
    case 4: context.logger.warning("librdkafka: \(text)", metadata: metadata)
    case 5, 6: context.logger.info("librdkafka: \(text)", metadata: metadata)
    default: context.logger.debug("librdkafka: \(text)", metadata: metadata)
    }
}

/// A producer made from `conf` (which it takes over) whose callbacks report through `context`: delivery reports
/// resolve appends, errors and log lines go to the agent's log, and with `statistics` librdkafka's statistics feed
/// the `sluice_cluster_*` gauges. librdkafka's refusal is a ``ConfigError``.
func makeProducer(_ conf: OpaquePointer, context: CallbackContext, statistics: Bool) throws(ConfigError) -> OpaquePointer {
    rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
    rd_kafka_conf_set_dr_msg_cb(conf, deliveryReport)
    if statistics { rd_kafka_conf_set_stats_cb(conf, SluiceCluster.statistics) }
    rd_kafka_conf_set_error_cb(conf, clientError)
    rd_kafka_conf_set_log_cb(conf, clientLog)
    var reason = [CChar](repeating: 0, count: 512)
    guard let producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &reason, reason.count) else {
        rd_kafka_conf_destroy(conf)
        throw ConfigError(errorText(reason))
    }
    return producer
}

/// One record's place in an append, carried through librdkafka as the message's opaque pointer.
final class DeliverySlot: Sendable {
    let pending: PendingAppend
    let index: Int
    init(_ pending: PendingAppend, _ index: Int) {
        self.pending = pending
        self.index = index
    }
}

/// The records of one append waiting for their delivery reports: done when every record handed over is reported
/// and the rest were refused.
final class PendingAppend: Sendable {
    let description: String
    private struct State {
        var offsets: [Int64]
        var remaining: Int
        var error: BrokerError?
        var refusal: BrokerError?
        var continuation: CheckedContinuation<Result<[Int64], BrokerError>, Never>?
        var finished: Result<[Int64], BrokerError>?
        /// The waiter gave up (its task was cancelled); the reports still come and are dropped.
        var abandoned = false
    }
    private let state: Mutex<State>

    init(count: Int, waited: Bool, description: String) {
        self.description = description
        state = Mutex(State(offsets: [Int64](repeating: -1, count: count), remaining: count))
    }

    var refusal: BrokerError? { state.withLock { $0.refusal } }

    func delivered(_ index: Int, offset: Int64) {
        finish { $0.offsets[index] = offset }
    }

    func failed(_ index: Int, _ error: BrokerError) {
        finish { state in
            if state.error == nil { state.error = error }
        }
    }

    /// Records `from` on were refused before reaching the producer.
    func refuse(from index: Int, _ error: BrokerError) {
        finish(count: state.withLock { $0.offsets.count } - index) { state in
            state.refusal = error
            if state.error == nil { state.error = error }
        }
    }

    private func finish(count: Int = 1, _ change: (inout State) -> Void) {
        let resume = state.withLock { state -> (CheckedContinuation<Result<[Int64], BrokerError>, Never>, Result<[Int64], BrokerError>)? in
            change(&state)
            state.remaining -= count
            guard state.remaining == 0 else { return nil }
            let result: Result<[Int64], BrokerError> = state.error.map { .failure($0) } ?? .success(state.offsets)
            state.finished = result
            guard let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, result)
        }
        if let (continuation, result) = resume { continuation.resume(returning: result) }
    }

    /// The offsets once every record is reported, or the first error; a cancelled wait ends at once.
    func result() async -> Result<[Int64], BrokerError> {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Result<[Int64], BrokerError>? in
                    if let finished = state.finished { return finished }
                    if state.abandoned { return .failure(Self.abandoned) }
                    state.continuation = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiting = state.withLock { state -> CheckedContinuation<Result<[Int64], BrokerError>, Never>? in
                state.abandoned = true
                defer { state.continuation = nil }
                return state.continuation
            }
            waiting?.resume(returning: .failure(Self.abandoned))
        }
    }

    static let abandoned = BrokerError(.unavailable, "the wait for the cluster's acknowledgement was given up", retryAfter: 1)
}
