/// Every metric family Sluice exports: name, help text and label names, in one place. These names are a
/// contract — dashboards and alert rules are written against them — and the README lists them.
public struct MetricFamily: Sendable, Hashable {
    public var name: String
    public var help: String
    public var labels: [String]
}

public enum MetricName {
    // Publishing
    public static let eventsPublished = MetricFamily(
        name: "sluice_events_published_total", help: "Events received for publishing, by outcome (written, duplicate, rejected, failed).",
        labels: ["topic", "event_type", "status"])
    public static let publishDuration = MetricFamily(
        name: "sluice_publish_duration_seconds", help: "Time from receiving a publish request to acknowledging it, by acks setting.",
        labels: ["acks"])
    public static let producerBatchBytes = MetricFamily(
        name: "sluice_producer_batch_bytes", help: "Size of record batches as stored (after compression).", labels: [])
    public static let producerBatchRecords = MetricFamily(
        name: "sluice_producer_batch_records", help: "Records per record batch.", labels: [])
    public static let producerCompressionRatio = MetricFamily(
        name: "sluice_producer_compression_ratio", help: "Uncompressed ÷ stored bytes of all batches written to the topic since start.",
        labels: ["topic"])
    public static let producerBufferBytes = MetricFamily(
        name: "sluice_producer_buffer_bytes", help: "Bytes of accepted events not yet written to the log (bounded by buffer.memory).", labels: [])
    public static let producerBufferFull = MetricFamily(
        name: "sluice_producer_buffer_full_total", help: "Publish requests refused with 429 because buffer.memory was full.", labels: [])

    // Tuning, as configured
    public static let producerConfigInfo = MetricFamily(
        name: "sluice_producer_config_info", help: "Producer settings in effect (value is always 1).",
        labels: ["acks", "compression_type", "enable_idempotence"])
    public static let consumerConfigInfo = MetricFamily(
        name: "sluice_consumer_config_info", help: "Consumer settings in effect (value is always 1).",
        labels: ["auto_offset_reset", "enable_auto_commit"])

    // Partitions
    public static let partitionLogEndOffset = MetricFamily(
        name: "sluice_partition_log_end_offset", help: "Offset the next record of the partition will get.", labels: ["topic", "partition"])
    public static let partitionLogStartOffset = MetricFamily(
        name: "sluice_partition_log_start_offset", help: "First offset still in the partition.", labels: ["topic", "partition"])
    public static let partitionSizeBytes = MetricFamily(
        name: "sluice_partition_size_bytes", help: "Bytes in the partition's segments.", labels: ["topic", "partition"])
    public static let partitionLastAppend = MetricFamily(
        name: "sluice_partition_last_append_timestamp_seconds", help: "Unix time of the partition's last append.", labels: ["topic", "partition"])
    public static let topicPartitions = MetricFamily(
        name: "sluice_topic_partitions", help: "Number of partitions of the topic.", labels: ["topic"])

    // HTTP
    public static let httpRequests = MetricFamily(
        name: "sluice_http_requests_total", help: "HTTP API requests by route template, method and status code.",
        labels: ["route", "method", "status"])

    // Logging
    public static let logLinesDropped = MetricFamily(
        name: "sluice_log_lines_dropped_total", help: "Log lines dropped because the reader of standard output stopped reading.", labels: [])

    // Process
    public static let processResidentMemory = MetricFamily(
        name: "process_resident_memory_bytes", help: "Resident memory size in bytes.", labels: [])
    public static let processVirtualMemory = MetricFamily(
        name: "process_virtual_memory_bytes", help: "Virtual memory size in bytes.", labels: [])
    public static let processCPUSeconds = MetricFamily(
        name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", labels: [])
    public static let processOpenFDs = MetricFamily(
        name: "process_open_fds", help: "Number of open file descriptors.", labels: [])
    public static let processMaxFDs = MetricFamily(
        name: "process_max_fds", help: "Maximum number of open file descriptors.", labels: [])
    public static let processStartTime = MetricFamily(
        name: "process_start_time_seconds", help: "Start time of the process since the Unix epoch in seconds.", labels: [])
}
