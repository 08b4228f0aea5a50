import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs over the same topics as `POST/DELETE /v1/topics`.
extension KafkaRequestHandler {
    /// Kafka topic properties whose value Sluice fixes: described read-only, and accepted at creation only with
    /// that value.
    static let fixedTopicProperties: [(name: String, value: String, type: DescribedConfig.ValueType, documentation: String)] = [
        ("cleanup.policy", "delete", .string, "Old segments are deleted by retention.ms and retention.bytes; compaction is not supported."),
        ("compression.type", "producer", .string, "Batches are stored as the producer compressed them."),
        ("message.timestamp.type", "CreateTime", .string, "Record timestamps are the producer's."),
        ("min.insync.replicas", "1", .int, "One broker holds every partition; acks=all waits for the fsync."),
    ]

    static let topicDocumentation: [String: String] = [
        "segment.bytes": "Roll to a new segment file once the active one would exceed this size.",
        "segment.ms": "Roll once the active segment's first batch is older than this.",
        "retention.ms": "Delete sealed segments whose newest record is older than this; -1 keeps forever.",
        "retention.bytes": "Delete the oldest sealed segments while the partition is larger than this; -1 means no limit.",
        "max.message.bytes": "The largest record batch accepted, in bytes.",
        "index.interval.bytes": "Bytes of log between two sparse index entries.",
        "flush.policy": "When appends are fsynced: sync (before the answer, group commit), interval (every flush.ms), os.",
        "flush.ms": "With flush.policy=interval, how often partitions are fsynced.",
    ]

    static let longProperties: Set<String> = ["segment.ms", "retention.ms", "retention.bytes", "flush.ms"]

    // MARK: CreateTopics

    func createTopics(_ request: CreateTopicsRequest, session: KafkaSession) -> [TopicResult] {
        var seen: [String: Int] = [:]
        for topic in request.topics { seen[topic.name, default: 0] += 1 }
        return request.topics.map { topic in
            guard seen[topic.name] == 1 else { return TopicResult(topic.name, .invalidRequest, "topic \(topic.name) is named more than once in the request") }
            let result = createTopic(topic, validateOnly: request.validateOnly)
            if result.error != .none {
                logger.warning("Kafka CreateTopics refused", metadata: [
                    LogField.topic: .string(topic.name), LogField.kafkaError: .string(result.error.description),
                    "reason": .string(result.message ?? ""), LogField.clientId: .string(session.clientId ?? ""),
                    LogField.clientAddress: .string(session.clientAddress),
                ])
            }
            return result
        }
    }

    private func createTopic(_ topic: CreateTopicsRequest.Topic, validateOnly: Bool) -> TopicResult {
        do {
            try TopicName.validate(topic.name)
        } catch {
            return TopicResult(topic.name, .invalidTopic, "\(error)")
        }
        guard topic.replicationFactor == -1 || topic.replicationFactor == 1 else {
            return TopicResult(topic.name, .invalidReplicationFactor, "Sluice is one broker: replication factor must be 1 or -1 (the default), not \(topic.replicationFactor)")
        }
        if let stray = topic.assignments.first(where: { $0.brokers != [Self.nodeId] }) {
            return TopicResult(topic.name, .invalidRequest, "partition \(stray.partition) is assigned to brokers \(stray.brokers); Sluice has only broker \(Self.nodeId)")
        }
        let partitions = topic.assignments.isEmpty ? Int(topic.partitions) : topic.assignments.count
        let count = partitions == -1 ? broker.config.int("num.partitions") : partitions
        guard (1...10_000).contains(count) else {
            return TopicResult(topic.name, .invalidPartitions, "number of partitions must be from 1 to 10000 (or -1 for num.partitions), not \(partitions)")
        }
        var properties: [String: String] = [:]
        for (name, value) in topic.configs {
            guard let value else { continue }  // null: the default
            if let fixed = Self.fixedTopicProperties.first(where: { $0.name == name }) {
                guard value == fixed.value else {
                    return TopicResult(topic.name, .invalidConfig, "\(name)=\(value) is not supported; Sluice always uses \(name)=\(fixed.value)")
                }
                continue
            }
            properties[name] = value
        }
        do {
            _ = try broker.log.defaults.applying(properties)
        } catch {
            return TopicResult(topic.name, .invalidConfig, "\(error)")
        }
        if broker.topic(topic.name) != nil { return TopicResult(topic.name, .topicAlreadyExists, "topic \(topic.name) already exists") }
        if validateOnly { return TopicResult(topic.name) }
        do throws(BrokerError) {
            try broker.createTopic(topic.name, partitions: count, config: properties)
            return TopicResult(topic.name)
        } catch {
            switch error.kind {
            case .conflict: return TopicResult(topic.name, .topicAlreadyExists, error.message)
            case .badRequest: return TopicResult(topic.name, .invalidRequest, error.message)
            default: return TopicResult(topic.name, .kafkaStorageError, error.message)
            }
        }
    }

    // MARK: DeleteTopics

    func deleteTopics(_ names: [String], session: KafkaSession) async -> [TopicResult] {
        var results: [TopicResult] = []
        for name in names {
            guard broker.topic(name) != nil else {
                results.append(TopicResult(name, .unknownTopicOrPartition))
                continue
            }
            do throws(BrokerError) {
                try await broker.deleteTopic(name)
                await groups.coordinator.topicDeleted(name)
                logger.info("Kafka DeleteTopics", metadata: [
                    LogField.topic: .string(name), LogField.clientId: .string(session.clientId ?? ""), LogField.clientAddress: .string(session.clientAddress),
                ])
                results.append(TopicResult(name))
            } catch {
                results.append(TopicResult(name, error.kind == .notFound ? .unknownTopicOrPartition : .kafkaStorageError, error.message))
            }
        }
        return results
    }

    // MARK: CreatePartitions

    func createPartitions(_ request: CreatePartitionsRequest, session: KafkaSession) -> [TopicResult] {
        request.topics.map { topic in
            guard let existing = broker.topic(topic.name) else {
                return TopicResult(topic.name, .unknownTopicOrPartition, "topic \(topic.name) does not exist")
            }
            let current = existing.partitions.count
            guard Int(topic.count) > current else {
                return TopicResult(topic.name, .invalidPartitions, "topic \(topic.name) has \(current) partitions; partitions can only be added, so ask for more than \(current)")
            }
            guard topic.count <= 10_000 else { return TopicResult(topic.name, .invalidPartitions, "at most 10000 partitions, not \(topic.count)") }
            if let assignments = topic.assignments {
                guard assignments.count == Int(topic.count) - current, assignments.allSatisfy({ $0 == [Self.nodeId] }) else {
                    return TopicResult(topic.name, .invalidRequest, "each new partition must be assigned to broker \(Self.nodeId) alone (or leave assignments null)")
                }
            }
            if request.validateOnly { return TopicResult(topic.name) }
            do throws(BrokerError) {
                try broker.addPartitions(topic.name, count: Int(topic.count))
                logger.info("Kafka CreatePartitions", metadata: [
                    LogField.topic: .string(topic.name), "partitions": .stringConvertible(topic.count),
                    LogField.clientId: .string(session.clientId ?? ""), LogField.clientAddress: .string(session.clientAddress),
                ])
                return TopicResult(topic.name)
            } catch {
                return TopicResult(topic.name, error.kind == .badRequest ? .invalidPartitions : .kafkaStorageError, error.message)
            }
        }
    }

    // MARK: DescribeConfigs

    func describeConfigs(_ request: DescribeConfigsRequest) -> [DescribedResource] {
        request.resources.map { resource in
            guard resource.type == DescribeConfigsRequest.topicResource else {
                return DescribedResource(error: .invalidRequest, message: "only topic configs (resource type 2) are described; Sluice's own settings are in `sluice config reference`",
                                         type: resource.type, name: resource.name, configs: [])
            }
            guard let topic = broker.topic(resource.name) else {
                return DescribedResource(error: .unknownTopicOrPartition, message: "topic \(resource.name) does not exist",
                                         type: resource.type, name: resource.name, configs: [])
            }
            let defaults = broker.log.defaults.properties
            var configs: [DescribedConfig] = topic.config.properties.sorted { $0.key < $1.key }.map { name, value in
                let fallback = defaults[name]
                let source: DescribedConfig.Source = fallback == value ? .defaultConfig : .dynamicTopic
                let type: DescribedConfig.ValueType = name == "flush.policy" ? .string : Self.longProperties.contains(name) ? .long : .int
                var synonyms: [(name: String, value: String?, source: DescribedConfig.Source)] = []
                if source == .dynamicTopic { synonyms.append((name, value, .dynamicTopic)) }
                if let fallback { synonyms.append((name, fallback, .defaultConfig)) }
                return DescribedConfig(name: name, value: value, readOnly: false, source: source, type: type,
                                       documentation: Self.topicDocumentation[name], synonyms: synonyms)
            }
            configs += Self.fixedTopicProperties.map {
                DescribedConfig(name: $0.name, value: $0.value, readOnly: true, source: .defaultConfig, type: $0.type,
                                documentation: $0.documentation, synonyms: [($0.name, $0.value, .defaultConfig)])
            }
            if let keys = resource.keys { configs = configs.filter { keys.contains($0.name) } }
            return DescribedResource(error: .none, message: nil, type: resource.type, name: resource.name, configs: configs)
        }
    }
}
