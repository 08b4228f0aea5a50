import NIOCore

// The topic-administration messages (non-flexible versions only). Field order follows Kafka's message
// definitions (clients/src/main/resources/common/message/*.json).

// MARK: - CreateTopics (19)

public struct CreateTopicsRequest: Sendable {
    public struct Topic: Sendable {
        public var name: String
        public var partitions: Int32
        public var replicationFactor: Int16
        public var assignments: [(partition: Int32, brokers: [Int32])]
        public var configs: [(name: String, value: String?)]
    }

    public var topics: [Topic]
    public var timeoutMs: Int32
    public var validateOnly: Bool

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> CreateTopicsRequest {
        let topics = try r.array(minimumElementSize: 16) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            let name = try r.string()
            let partitions = try r.int32()
            let replication = try r.int16()
            let assignments = try r.array(minimumElementSize: 8) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                (partition: try r.int32(), brokers: try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.int32() })
            }
            let configs = try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                (name: try r.string(), value: try r.nullableString())
            }
            return Topic(name: name, partitions: partitions, replicationFactor: replication, assignments: assignments, configs: configs)
        }
        let timeout = try r.int32()
        let validateOnly = version >= 1 ? try r.bool() : false
        return CreateTopicsRequest(topics: topics, timeoutMs: timeout, validateOnly: validateOnly)
    }

    public static func encodeResponse(version: Int16, results: [TopicResult], into w: inout KafkaWriter) {
        if version >= 2 { w.int32(0) }  // throttle_time_ms
        w.array(results) { w, result in
            w.string(result.name)
            w.int16(result.error.rawValue)
            if version >= 1 { w.nullableString(result.message) }
        }
    }
}

/// One topic's outcome in CreateTopics, DeleteTopics and CreatePartitions.
public struct TopicResult: Sendable {
    public var name: String
    public var error: KafkaError
    public var message: String?

    public init(_ name: String, _ error: KafkaError = .none, _ message: String? = nil) {
        self.name = name
        self.error = error
        self.message = message
    }
}

// MARK: - DeleteTopics (20)

public enum DeleteTopics {
    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> (names: [String], timeoutMs: Int32) {
        let names = try r.array(minimumElementSize: 2) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.string() }
        return (names, try r.int32())
    }

    public static func encodeResponse(version: Int16, results: [TopicResult], into w: inout KafkaWriter) {
        if version >= 1 { w.int32(0) }  // throttle_time_ms
        w.array(results) { w, result in
            w.string(result.name)
            w.int16(result.error.rawValue)
        }
    }
}

// MARK: - CreatePartitions (37)

public struct CreatePartitionsRequest: Sendable {
    public var topics: [(name: String, count: Int32, assignments: [[Int32]]?)]
    public var timeoutMs: Int32
    public var validateOnly: Bool

    public static func decode(_ r: inout KafkaReader) throws(KafkaDecodeError) -> CreatePartitionsRequest {
        let topics = try r.array(minimumElementSize: 10) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            let name = try r.string()
            let count = try r.int32()
            let assignments = try r.nullableArray(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in
                try r.array(minimumElementSize: 4) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.int32() }
            }
            return (name: name, count: count, assignments: assignments)
        }
        return CreatePartitionsRequest(topics: topics, timeoutMs: try r.int32(), validateOnly: try r.bool())
    }

    public static func encodeResponse(results: [TopicResult], into w: inout KafkaWriter) {
        w.int32(0)  // throttle_time_ms
        w.array(results) { w, result in
            w.string(result.name)
            w.int16(result.error.rawValue)
            w.nullableString(result.message)
        }
    }
}

// MARK: - DescribeConfigs (32)

public struct DescribeConfigsRequest: Sendable {
    /// Kafka's resource types: 2 is a topic, 4 a broker.
    public static let topicResource: Int8 = 2
    public static let brokerResource: Int8 = 4

    public var resources: [(type: Int8, name: String, keys: [String]?)]
    public var includeSynonyms: Bool
    public var includeDocumentation: Bool

    public static func decode(version: Int16, _ r: inout KafkaReader) throws(KafkaDecodeError) -> DescribeConfigsRequest {
        let resources = try r.array(minimumElementSize: 7) { (r: inout KafkaReader) throws(KafkaDecodeError) in
            let type = try r.int8()
            let name = try r.string()
            let keys = try r.nullableArray(minimumElementSize: 2) { (r: inout KafkaReader) throws(KafkaDecodeError) in try r.string() }
            return (type: type, name: name, keys: keys)
        }
        let synonyms = version >= 1 ? try r.bool() : false
        let documentation = version >= 3 ? try r.bool() : false
        return DescribeConfigsRequest(resources: resources, includeSynonyms: synonyms, includeDocumentation: documentation)
    }
}

/// One setting in a DescribeConfigs answer.
public struct DescribedConfig: Sendable {
    /// Kafka's config sources: where the value came from.
    public enum Source: Int8, Sendable {
        case dynamicTopic = 1
        case staticBroker = 4
        case defaultConfig = 5
    }

    /// Kafka's config types (v3+).
    public enum ValueType: Int8, Sendable {
        case boolean = 1
        case string = 2
        case int = 3
        case long = 5
    }

    public var name: String
    public var value: String?
    public var readOnly: Bool
    public var source: Source
    public var type: ValueType
    public var documentation: String?
    /// Where the value would come from without the topic's own setting (for v1+ synonyms).
    public var synonyms: [(name: String, value: String?, source: Source)]

    public var isDefault: Bool { source == .defaultConfig }
}

public struct DescribedResource: Sendable {
    public var error: KafkaError
    public var message: String?
    public var type: Int8
    public var name: String
    public var configs: [DescribedConfig]
}

public enum DescribeConfigs {
    public static func encodeResponse(version: Int16, resources: [DescribedResource], includeSynonyms: Bool, includeDocumentation: Bool,
                                      into w: inout KafkaWriter) {
        w.int32(0)  // throttle_time_ms
        w.array(resources) { w, resource in
            w.int16(resource.error.rawValue)
            w.nullableString(resource.message)
            w.int8(resource.type)
            w.string(resource.name)
            w.array(resource.configs) { w, config in
                w.string(config.name)
                w.nullableString(config.value)
                w.bool(config.readOnly)
                if version == 0 { w.bool(config.isDefault) } else { w.int8(config.source.rawValue) }
                w.bool(false)  // is_sensitive: no topic setting is a secret
                if version >= 1 {
                    w.array(includeSynonyms ? config.synonyms : []) { w, synonym in
                        w.string(synonym.name)
                        w.nullableString(synonym.value)
                        w.int8(synonym.source.rawValue)
                    }
                }
                if version >= 3 {
                    w.int8(config.type.rawValue)
                    w.nullableString(includeDocumentation ? config.documentation : nil)
                }
            }
        }
    }
}
