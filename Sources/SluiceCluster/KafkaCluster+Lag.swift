import CRdKafkaLoader
import Foundation
public import SluiceBroker
import SluiceLog

/// What the lag monitor asks of the cluster: which groups, and their committed offsets.
extension KafkaCluster {
    public func lagGroups() async -> [String: (members: Int, topics: Set<String>)] {
        var groups = joinedGroups.withLock { $0.filter { $0.value.members > 0 || $0.value.keep } .mapValues { ($0.members, $0.topics) } }
        guard let allow = lagAllow else { return groups }
        let producer = UncheckedHandle(producer)
        let names = await attempt { () async throws(BrokerError) -> [String] in
            try await blocking { () throws(BrokerError) -> [String] in
                var list: UnsafePointer<rd_kafka_group_list>?
                let error = rd_kafka_list_groups(producer.pointer, nil, &list, Self.requestTimeoutMs)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let list else {
                    throw BrokerError(.unavailable, "listing the cluster's groups failed: \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
                }
                defer { rd_kafka_group_list_destroy(list) }
                return (0..<Int(list.pointee.group_cnt)).map { String(cString: list.pointee.groups[$0].group) }
            }
        }
        counted("list_groups", (try? names.get()) != nil)
        if case .failure(let error) = names, !listGroupsWarned.exchange(true, ordering: .acquiringAndReleasing) {
            logger.warning("lag.groups: the cluster's groups cannot be listed (\(error.message)); only the subscriptions' groups get lag metrics")
        }
        for name in (try? names.get()) ?? [] where groups[name] == nil && Self.wholeMatch(allow, name) && !(lagDeny.map { Self.wholeMatch($0, name) } ?? false) {
            groups[name] = (0, [])
        }
        return groups
    }

    static func wholeMatch(_ expression: NSRegularExpression, _ text: String) -> Bool {
        let range = NSRange(text.startIndex..., in: text)
        return expression.firstMatch(in: text, options: [.anchored], range: range).map { $0.range == range } ?? false
    }

    public func committedOffsets(group: String, topics wanted: Set<String>) async throws(BrokerError) -> [TopicPartition: Int64] {
        let producer = UncheckedHandle(producer)
        let description = description
        // The partitions are named: not every cluster answers "all of the group's partitions" (the mock does not).
        let known = topics()
        let partitions = (wanted.isEmpty ? Set(known.keys.filter { !$0.hasPrefix("__") }) : wanted).sorted().flatMap { topic in
            (0..<Int32(known[topic] ?? 0)).map { TopicPartition(topic, $0) }
        }
        guard !partitions.isEmpty else { return [:] }
        let outcome = await attempt { () async throws(BrokerError) -> [TopicPartition: Int64] in
            try await blocking { () throws(BrokerError) -> [TopicPartition: Int64] in
                guard let queue = rd_kafka_queue_new(producer.pointer) else { throw BrokerError(.internal, "librdkafka could not make a queue") }
                defer { rd_kafka_queue_destroy(queue) }
                guard let options = rd_kafka_AdminOptions_new(producer.pointer, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS) else {
                    throw BrokerError(.internal, "librdkafka could not make admin options")
                }
                defer { rd_kafka_AdminOptions_destroy(options) }
                var reason = [CChar](repeating: 0, count: 256)
                _ = rd_kafka_AdminOptions_set_request_timeout(options, Self.requestTimeoutMs, &reason, reason.count)
                guard let list = rd_kafka_topic_partition_list_new(Int32(partitions.count)) else { throw BrokerError(.internal, "librdkafka could not make a list") }
                defer { rd_kafka_topic_partition_list_destroy(list) }
                for tp in partitions { rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition) }
                var request: [OpaquePointer?] = [rd_kafka_ListConsumerGroupOffsets_new(group, list)]
                rd_kafka_ListConsumerGroupOffsets(producer.pointer, &request, 1, options, queue)
                rd_kafka_ListConsumerGroupOffsets_destroy_array(&request, 1)
                guard let event = rd_kafka_queue_poll(queue, Self.requestTimeoutMs + 1000) else {
                    throw BrokerError(.unavailable, "\(description) did not give group \(group)'s offsets in time", retryAfter: 1)
                }
                defer { rd_kafka_event_destroy(event) }
                let error = rd_kafka_event_error(event)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    throw BrokerError(.unavailable, "\(description): group \(group)'s offsets: \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
                }
                var count = 0
                guard let results = rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(event), &count) else { return [:] }
                var offsets: [TopicPartition: Int64] = [:]
                for index in 0..<count {
                    guard let result = results[index] else { continue }
                    if let failure = rd_kafka_group_result_error(result) {
                        throw BrokerError(.unavailable, "\(description): group \(group)'s offsets: \(String(cString: rd_kafka_error_string(failure)))", retryAfter: 1)
                    }
                    guard let list = rd_kafka_group_result_partitions(result) else { continue }
                    for item in 0..<Int(list.pointee.cnt) {
                        let entry = list.pointee.elems[item]
                        if entry.err == RD_KAFKA_RESP_ERR_NO_ERROR, entry.offset >= 0 {
                            offsets[TopicPartition(String(cString: entry.topic), entry.partition)] = entry.offset
                        }
                    }
                }
                return offsets
            }
        }
        counted("offset_fetch", (try? outcome.get()) != nil)
        return try outcome.get()
    }
}
