import CRdKafkaLoader
import SluiceBroker

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
