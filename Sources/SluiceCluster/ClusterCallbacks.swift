import CRdKafka
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

/// One partition of the reader: started at the offset of the first read, kept running while reads follow on
/// where the last ended, restarted when a read asks for another offset. Reads of one partition take turns.
final class PartitionReader: @unchecked Sendable {
    private let lock = NSLock()
    private var started = false
    private var next: Int64 = 0

    /// Records from `offset`: those below `available` (the end the cluster gave just before) are waited for up to
    /// ``dataWaitMs``, since they exist; beyond them, only the first record is waited for, up to `maxWaitMs`.
    func read(_ topic: OpaquePointer, partition: Int32, from offset: Int64, available: Int64, maxRecords: Int, maxBytes: Int, maxWaitMs: Int64,
              description: String) throws(BrokerError) -> [Record] {
        lock.lock()
        defer { lock.unlock() }
        if !started || next != offset {
            if started { rd_kafka_consume_stop(topic, partition) }
            started = false
            guard rd_kafka_consume_start(topic, partition, offset) == 0 else {
                throw BrokerError(.unavailable, "\(description): reading from \(offset) could not start (\(String(cString: rd_kafka_err2str(rd_kafka_last_error()))))", retryAfter: 1)
            }
            started = true
            next = offset
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let pollDeadline = start + UInt64(max(maxWaitMs, 0)) * 1_000_000
        let dataDeadline = start + UInt64(Self.dataWaitMs) * 1_000_000
        var available = available
        var records: [Record] = []
        var bytes = 0
        while records.count < maxRecords && bytes < maxBytes {
            let now = DispatchTime.now().uptimeNanoseconds
            let deadline = next < available ? dataDeadline : (records.isEmpty ? pollDeadline : now)
            let wait = deadline > now ? Int32(min((deadline - now) / 1_000_000, 1000)) : 0
            guard let message = rd_kafka_consume(topic, partition, wait) else {
                if DispatchTime.now().uptimeNanoseconds < deadline { continue }
                break
            }
            defer { rd_kafka_message_destroy(message) }
            let error = message.pointee.err
            if error == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                // An end reached before records below `available` were appended (left in the queue by an earlier
                // read) is stale: the records are there to be read.
                if message.pointee.offset < available && next < available { continue }
                // The end as the partition's leader sees it now (under read_committed, the last stable offset).
                available = min(available, next)
                if records.isEmpty && DispatchTime.now().uptimeNanoseconds < pollDeadline { continue }
                break
            }
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                rd_kafka_consume_stop(topic, partition)
                started = false
                if error == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || error == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET {
                    throw BrokerError(.notFound, "\(description): offset \(offset) is out of range")
                }
                throw BrokerError(.unavailable, "\(description): \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
            }
            guard message.pointee.offset >= next else { continue }  // already returned
            let record = Self.record(message)
            bytes += (record.value?.count ?? 0) + (record.key?.count ?? 0)
            records.append(record)
            next = record.offset + 1
        }
        return records
    }

    /// How long records known to exist are waited for before the read answers with what it has.
    static let dataWaitMs = 5000

    func stop(_ topic: OpaquePointer, partition: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if started { rd_kafka_consume_stop(topic, partition) }
        started = false
    }

    static func record(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> Record {
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8]? {
            guard let pointer else { return nil }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &type)
        var headers: [RecordHeader] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(RecordHeader(key: name.map { String(cString: $0) } ?? "",
                                            value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        return Record(offset: message.pointee.offset, timestamp: timestamp, key: bytes(message.pointee.key, message.pointee.key_len),
                      value: bytes(message.pointee.payload, message.pointee.len), headers: headers)
    }
}

/// librdkafka's admin calls, made synchronous on a queue of their own.
enum Admin {
    static func run(_ handle: OpaquePointer, what: String, request: (OpaquePointer, OpaquePointer) throws(BrokerError) -> Void,
                    result: (OpaquePointer) -> [OpaquePointer]) throws(BrokerError) {
        guard let queue = rd_kafka_queue_new(handle) else { throw BrokerError(.internal, "librdkafka could not make a queue") }
        defer { rd_kafka_queue_destroy(queue) }
        guard let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_ANY) else { throw BrokerError(.internal, "librdkafka could not make admin options") }
        defer { rd_kafka_AdminOptions_destroy(options) }
        var reason = [CChar](repeating: 0, count: 256)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, KafkaCluster.requestTimeoutMs, &reason, reason.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, KafkaCluster.requestTimeoutMs, &reason, reason.count)
        try request(queue, options)
        guard let event = rd_kafka_queue_poll(queue, KafkaCluster.requestTimeoutMs + 1000) else {
            throw BrokerError(.unavailable, "cannot \(what): no answer within \(KafkaCluster.requestTimeoutMs) ms; retry when a broker is reachable", retryAfter: 1)
        }
        defer { rd_kafka_event_destroy(event) }
        let error = rd_kafka_event_error(event)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let reason = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(error))
            if error == RD_KAFKA_RESP_ERR__TIMED_OUT && reason.contains("controller") {
                throw BrokerError(.notImplemented, "cannot \(what): no controller took the request within \(KafkaCluster.requestTimeoutMs) ms (\(reason)); create the topic with the cluster's own tools")
            }
            throw mapped(error, "cannot \(what): \(reason)")
        }
        for topic in result(event) {
            let error = rd_kafka_topic_result_error(topic)
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                let reason = rd_kafka_topic_result_error_string(topic).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(error))
                throw mapped(error, "cannot \(what): \(reason)")
            }
        }
    }

    static func mapped(_ error: rd_kafka_resp_err_t, _ message: String) -> BrokerError {
        switch error {
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: BrokerError(.conflict, message)
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: BrokerError(.notFound, message)
        case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS, RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, RD_KAFKA_RESP_ERR_INVALID_CONFIG,
             RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
            BrokerError.badRequest(message, attribute: nil)
        case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION, RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
            BrokerError(.notImplemented, message + " (the cluster does not offer this request; create the topic with the cluster's own tools)")
        default: BrokerError(.unavailable, message, retryAfter: 1)
        }
    }
}
