/// Field names of Sluice's JSON log lines (ECS-style). These are a contract: dashboards, Loki and Elasticsearch
/// queries and `sluice logs` filters are written against them.
public enum LogField {
    public static let timestamp = "@timestamp"
    public static let level = "log.level"
    public static let message = "message"
    public static let logger = "log.logger"
    public static let serviceName = "service.name"
    public static let ecsVersion = "ecs.version"

    public static let correlationId = "correlation_id"
    public static let causationId = "causation_id"
    public static let traceId = "trace.id"
    public static let spanId = "span.id"
    public static let eventId = "event.id"
    public static let eventType = "event.type"
    public static let topic = "topic"
    public static let partition = "partition"
    public static let offset = "offset"
    public static let group = "group"
    public static let member = "member.id"
    public static let subscription = "subscription"
    public static let sagaId = "saga.id"
    public static let sagaType = "saga.type"
    public static let sagaStep = "saga.step"
    public static let sagaStatus = "saga.status"
    /// The peer of a connection (`host:port`) and the client id it sent (Kafka listener).
    public static let clientAddress = "client.address"
    public static let clientId = "client.id"
    public static let kafkaAPI = "kafka.api"
    public static let kafkaError = "kafka.error"
    /// Where an offset reset or subscription rewind went (`earliest`, `datetime …`, `shift by -10`), and the rewind's id.
    public static let resetTo = "reset.to"
    public static let rewindId = "rewind.id"
    /// An event failing its schema: the version checked, the JSON pointer into its data and the keyword that failed.
    public static let schemaVersion = "schema.version"
    public static let schemaPointer = "schema.pointer"
    public static let schemaKeyword = "schema.keyword"
    /// A transaction: its id, how many partitions it spans, how long it was open (ms).
    public static let transactionId = "transaction.id"
    public static let transactionPartitions = "transaction.partitions"
    public static let transactionAge = "transaction.age_ms"

    /// Every field above.
    public static let all = [timestamp, level, message, logger, serviceName, ecsVersion, correlationId, causationId, traceId, spanId,
                             eventId, eventType, topic, partition, offset, group, member, subscription, sagaId, sagaType, sagaStep, sagaStatus,
                             clientAddress, clientId, kafkaAPI, kafkaError, resetTo, rewindId, schemaVersion, schemaPointer, schemaKeyword,
                             transactionId, transactionPartitions, transactionAge]

    /// Fields the handler writes itself; metadata with these keys is moved under `metadata.` instead.
    public static let core: Set<String> = [timestamp, level, message, logger, serviceName, ecsVersion]
    /// The ECS version the field layout follows.
    public static let ecsVersionValue = "8.11.0"
}
