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
    public static let idempotenceWindowEvents = MetricFamily(
        name: "sluice_producer_idempotence_window_events",
        help: "Published events the idempotence window remembers by source and id (at most idempotence.window.max.events).", labels: [])
    public static let idempotenceEvictions = MetricFamily(
        name: "sluice_producer_idempotence_evictions_total",
        help: "Events forgotten by the idempotence window before idempotence.window.ms passed, because idempotence.window.max.events were remembered; a re-send of one is written again.",
        labels: [])
    public static let idempotenceWindowCovered = MetricFamily(
        name: "sluice_producer_idempotence_window_covered_seconds",
        help: "How far back re-sends are recognised now: idempotence.window.ms, or less while evictions shorten it (the age of the newest event forgotten early).",
        labels: [])

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
    public static let partitionLastStableOffset = MetricFamily(
        name: "sluice_partition_last_stable_offset",
        help: "First offset read_committed readers may not see yet: the oldest open transaction's first offset, else the log end offset.",
        labels: ["topic", "partition"])
    public static let partitionSizeBytes = MetricFamily(
        name: "sluice_partition_size_bytes", help: "Bytes in the partition's segments.", labels: ["topic", "partition"])
    public static let partitionLastAppend = MetricFamily(
        name: "sluice_partition_last_append_timestamp_seconds", help: "Unix time of the partition's last append.", labels: ["topic", "partition"])
    // Transactions
    public static let transactions = MetricFamily(
        name: "sluice_transactions_total",
        help: "Transactions ended, by outcome: committed, aborted (by the producer or a failed write), timed_out (open longer than transaction.timeout.ms), recovered_aborted and recovered_committed (finished after a crash).",
        labels: ["outcome"])
    public static let transactionsOpen = MetricFamily(
        name: "sluice_transactions_open", help: "Transactions begun and not yet ended.", labels: [])
    public static let transactionOldestOpen = MetricFamily(
        name: "sluice_transaction_oldest_open_seconds", help: "Age of the oldest open transaction; 0 when none is open.", labels: [])
    public static let topicPartitions = MetricFamily(
        name: "sluice_topic_partitions", help: "Number of partitions of the topic.", labels: ["topic"])

    public static let topicPartitionsRecommended = MetricFamily(
        name: "sluice_topic_partitions_recommended",
        help: "Partitions the topic should have: the partition rule applied to its peak produce rate (1m/5m), partition.throughput.bytes and the members of its largest group, clamped to [3, 100].",
        labels: ["topic"])
    public static let topicProduceRate = MetricFamily(
        name: "sluice_topic_produce_bytes_per_second", help: "Mean bytes per second published to the topic over the window (1m, 5m).",
        labels: ["topic", "window"])

    // Consumer groups (rendered by the lag monitor's background pass)
    public static let groupLag = MetricFamily(
        name: "sluice_consumer_group_lag", help: "Records after the committed offset (or the log start, if retention passed it) up to the last stable offset (the log end under isolation.level=read_uncommitted).",
        labels: ["group", "topic", "partition"])
    public static let groupLagSeconds = MetricFamily(
        name: "sluice_consumer_group_lag_seconds", help: "Age of the first unconsumed record (now minus its timestamp); 0 when caught up.",
        labels: ["group", "topic", "partition"])
    public static let groupExpiredRecords = MetricFamily(
        name: "sluice_consumer_group_expired_records", help: "Records deleted by retention before the group read them (log start minus committed offset).",
        labels: ["group", "topic", "partition"])
    public static let groupCommittedOffset = MetricFamily(
        name: "sluice_consumer_group_committed_offset", help: "The group's committed offset (the next offset it will read).",
        labels: ["group", "topic", "partition"])
    public static let groupCommitAge = MetricFamily(
        name: "sluice_consumer_group_commit_age_seconds", help: "Seconds since the group last committed this partition.",
        labels: ["group", "topic", "partition"])
    public static let groupLagSum = MetricFamily(
        name: "sluice_consumer_group_lag_sum", help: "Lag in records summed over the topic's partitions (always exported, whatever lag.max.series).",
        labels: ["group", "topic"])
    public static let groupLagSecondsMax = MetricFamily(
        name: "sluice_consumer_group_lag_seconds_max", help: "Largest lag in seconds over the topic's partitions (always exported).",
        labels: ["group", "topic"])
    public static let groupMembers = MetricFamily(
        name: "sluice_consumer_group_members", help: "Members of the consumer group.", labels: ["group"])
    public static let groupState = MetricFamily(
        name: "sluice_consumer_group_state", help: "1 for the group's current state (empty, stable, rebalancing), 0 for the others.",
        labels: ["group", "state"])
    public static let groupStatus = MetricFamily(
        name: "sluice_consumer_group_status",
        help: "Worst partition status of the group: 0 OK, 1 WARN (lag growing), 2 STALL (commits without progress), 3 STOP (no commits while lagging), 4 ERR (lag seconds over the SLO).",
        labels: ["group"])
    public static let groupSeriesOmitted = MetricFamily(
        name: "sluice_consumer_group_lag_series_omitted", help: "Per-partition consumer-group series left out by lag.max.series.", labels: [])
    public static let lagEvaluationDuration = MetricFamily(
        name: "sluice_consumer_lag_evaluation_seconds", help: "Duration of the last background lag computation.", labels: [])
    public static let groupRebalances = MetricFamily(
        name: "sluice_consumer_group_rebalances_total", help: "Rebalances of the consumer group (joins, leaves, expiries, partition changes).",
        labels: ["group"])

    // Push delivery, dead letters and replay
    public static let dlqEvents = MetricFamily(
        name: "sluice_dlq_events_total", help: "Events written to a dead-letter topic, by original topic, event type and error type.",
        labels: ["topic", "event_type", "error_type"])
    public static let dlqDepth = MetricFamily(
        name: "sluice_dlq_depth", help: "Dead letters not yet resolved (delivered by a replay, dead-lettered again or parked as poison).",
        labels: ["dlq_topic"])
    public static let dlqOldestAge = MetricFamily(
        name: "sluice_dlq_oldest_age_seconds", help: "Age of the oldest unresolved dead letter (since its last failure); 0 when none.",
        labels: ["dlq_topic"])
    public static let deliveryAttempts = MetricFamily(
        name: "sluice_delivery_attempts_total",
        help: "Delivery attempts by outcome: delivered, dropped (the app said DROP), rejected (4xx), http_error (408, 429, 5xx, RETRY), timeout, unavailable (refused, reset, 503).",
        labels: ["subscription", "outcome"])
    public static let deliveryRetries = MetricFamily(
        name: "sluice_delivery_retries_total", help: "Attempts that were retries of an earlier failed attempt.", labels: ["subscription"])
    public static let processingDuration = MetricFamily(
        name: "sluice_event_processing_duration_seconds", help: "Time the app took to answer a delivery it accepted (2xx).",
        labels: ["subscription", "event_type"])
    public static let deliveryInFlight = MetricFamily(
        name: "sluice_delivery_in_flight", help: "Events taken from the log and not yet finished (being delivered, waiting to retry, or queued behind their key).",
        labels: ["subscription"])
    public static let deliveryOldestPending = MetricFamily(
        name: "sluice_delivery_oldest_pending_age_seconds", help: "Age (since publishing) of the oldest unfinished event; 0 when none.",
        labels: ["subscription"])
    public static let poisonEvents = MetricFamily(
        name: "sluice_poison_events_total", help: "Events parked in <topic>.poison after max_replays failed replays.", labels: ["topic"])
    public static let dlqReplayed = MetricFamily(
        name: "sluice_dlq_replayed_total", help: "Dead letters replayed, by outcome: delivered, dead_lettered_again, poisoned, skipped.",
        labels: ["dlq_topic", "outcome"])
    public static let schemaValidations = MetricFamily(
        name: "sluice_schema_validations_total",
        help: "Published events checked against their schema, by result: valid, invalid, unknown_version (the type has schemas, not this version), not_json.",
        labels: ["topic", "type", "version", "result"])
    public static let eventsUpcast = MetricFamily(
        name: "sluice_events_upcast_total",
        help: "Events handed out as a later version of their type than they were published as (subscriptions and reads with a version), by type and versions.",
        labels: ["type", "from", "to"])
    public static let rewinds = MetricFamily(
        name: "sluice_subscription_rewinds_total", help: "Rewinds of the subscription (POST /v1/subscriptions/{name}/rewind).", labels: ["subscription"])
    public static let rewindRemaining = MetricFamily(
        name: "sluice_subscription_rewind_remaining_events",
        help: "Events of the subscription's last rewind not yet re-delivered (up to where it was when rewound); 0 once caught up.",
        labels: ["subscription"])
    public static let breakerState = MetricFamily(
        name: "sluice_circuit_breaker_state", help: "1 for the subscription's breaker state (closed, open, half_open), 0 for the others.",
        labels: ["subscription", "state"])
    public static let breakerTransitions = MetricFamily(
        name: "sluice_circuit_breaker_transitions_total", help: "Breaker state changes, by the state entered.", labels: ["subscription", "state"])

    // Sagas
    public static let sagaStarted = MetricFamily(
        name: "sluice_saga_started_total", help: "Sagas started (orchestrated: by the API or a trigger event; observed: by their start event).",
        labels: ["saga_type"])
    public static let sagaCompletions = MetricFamily(
        name: "sluice_saga_completions_total",
        help: "Sagas finished, by final status: completed, compensated, failed, timed_out, needs_intervention.", labels: ["saga_type", "status"])
    public static let sagaDuration = MetricFamily(
        name: "sluice_saga_duration_seconds", help: "Time from a saga's start to its final status, by that status.", labels: ["saga_type", "status"])
    public static let sagaStepDuration = MetricFamily(
        name: "sluice_saga_step_duration_seconds", help: "Time from sending a step's command to its reply or timeout, by outcome: succeeded, failed, timed_out.",
        labels: ["saga_type", "step", "outcome"])
    public static let sagasInFlight = MetricFamily(
        name: "sluice_sagas_in_flight", help: "Sagas running or compensating.", labels: ["saga_type"])
    public static let sagaOldestInFlight = MetricFamily(
        name: "sluice_saga_oldest_in_flight_age_seconds", help: "Age of the oldest saga still running or compensating (0 when none): stuck-saga detection.",
        labels: ["saga_type"])
    public static let sagaCompensations = MetricFamily(
        name: "sluice_saga_compensations_total", help: "Compensation attempts, by outcome: succeeded, failed (a failure reply), timed_out.",
        labels: ["saga_type", "step", "outcome"])

    // Traces
    public static let tracesInFlight = MetricFamily(
        name: "sluice_traces_in_flight", help: "Correlation traces with an event awaiting a delivery or a saga not final, with progress within trace.stale.ms.", labels: [])
    public static let tracesStale = MetricFamily(
        name: "sluice_traces_stale", help: "Correlation traces in flight without progress for trace.stale.ms.", labels: [])
    public static let traceDuration = MetricFamily(
        name: "sluice_trace_duration_seconds", help: "Time from a trace's first hop to its last, observed when it completes, by the type of its first event.",
        labels: ["event_type"])
    public static let traceIndexTraces = MetricFamily(
        name: "sluice_trace_index_traces", help: "Correlation traces held by the trace index (bounded by trace.max.traces).", labels: [])
    public static let traceIndexBytes = MetricFamily(
        name: "sluice_trace_index_bytes", help: "Bytes of hops held by the trace index (bounded by trace.max.traces × trace.max.hops).", labels: [])

    // HTTP
    public static let httpRequests = MetricFamily(
        name: "sluice_http_requests_total", help: "HTTP API requests by route template, method and status code.",
        labels: ["route", "method", "status"])

    // Kafka listener
    public static let kafkaRequests = MetricFamily(
        name: "sluice_kafka_requests_total", help: "Kafka protocol requests by API, version and error code name (NONE when it succeeded).",
        labels: ["api", "version", "error"])
    public static let kafkaRequestDuration = MetricFamily(
        name: "sluice_kafka_request_duration_seconds", help: "Time from reading a Kafka request to writing its response (a long-polling Fetch includes its wait).",
        labels: ["api"])
    public static let kafkaConnections = MetricFamily(
        name: "sluice_kafka_connections", help: "Open connections to the Kafka listener.", labels: [])
    public static let kafkaReceivedBytes = MetricFamily(
        name: "sluice_kafka_received_bytes_total", help: "Bytes of Kafka request frames read.", labels: [])
    public static let kafkaSentBytes = MetricFamily(
        name: "sluice_kafka_sent_bytes_total", help: "Bytes of Kafka response frames written.", labels: [])

    // Kafka cluster (log.backend=kafka), from librdkafka's statistics and the agent's own calls
    public static let clusterBrokersUp = MetricFamily(
        name: "sluice_cluster_brokers_up", help: "Brokers of the cluster the producer is connected to (state UP); 0 means the cluster is unreachable.", labels: [])
    public static let clusterBrokers = MetricFamily(
        name: "sluice_cluster_brokers", help: "Brokers the cluster's metadata names.", labels: [])
    public static let clusterRequestLatency = MetricFamily(
        name: "sluice_cluster_request_latency_seconds", help: "Mean round-trip time of requests to a broker over the last statistics interval.", labels: ["broker"])
    public static let clusterThrottle = MetricFamily(
        name: "sluice_cluster_throttle_seconds", help: "Mean time a broker throttled the producer over the last statistics interval.", labels: ["broker"])
    public static let clusterErrors = MetricFamily(
        name: "sluice_cluster_errors_total", help: "Transmit and receive errors and request timeouts towards a broker.", labels: ["broker"])
    public static let clusterQueueMessages = MetricFamily(
        name: "sluice_cluster_queue_messages", help: "Events handed to the cluster's producer and not yet acknowledged.", labels: [])
    public static let clusterRequests = MetricFamily(
        name: "sluice_cluster_requests_total", help: "Requests the agent made to the cluster itself (beside producing and fetching), by request and outcome.",
        labels: ["request", "status"])

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

    /// Every family above, for the contract tests and documentation checks.
    public static let all: [MetricFamily] = [
        eventsPublished, publishDuration, producerBatchBytes, producerBatchRecords, producerCompressionRatio, producerBufferBytes,
        producerBufferFull, idempotenceWindowEvents, idempotenceEvictions, idempotenceWindowCovered, producerConfigInfo, consumerConfigInfo, partitionLogEndOffset, partitionLogStartOffset,
        partitionLastStableOffset, transactions, transactionsOpen, transactionOldestOpen, partitionSizeBytes, partitionLastAppend, topicPartitions, topicPartitionsRecommended, topicProduceRate, groupLag,
        groupLagSeconds, groupExpiredRecords, groupCommittedOffset, groupCommitAge, groupLagSum, groupLagSecondsMax, groupMembers,
        groupState, groupStatus, groupSeriesOmitted, lagEvaluationDuration, groupRebalances, httpRequests, kafkaRequests, kafkaRequestDuration,
        kafkaConnections, kafkaReceivedBytes, kafkaSentBytes, clusterBrokersUp, clusterBrokers, clusterRequestLatency, clusterThrottle, clusterErrors,
        clusterQueueMessages, clusterRequests, logLinesDropped,
        dlqEvents, dlqDepth, dlqOldestAge, deliveryAttempts, deliveryRetries, processingDuration, deliveryInFlight,
        deliveryOldestPending, poisonEvents, dlqReplayed, schemaValidations, eventsUpcast, rewinds, rewindRemaining, breakerState, breakerTransitions, sagaStarted, sagaCompletions, sagaDuration, sagaStepDuration, sagasInFlight,
        sagaOldestInFlight, sagaCompensations, tracesInFlight, tracesStale, traceDuration, traceIndexTraces, traceIndexBytes, processResidentMemory, processVirtualMemory, processCPUSeconds, processOpenFDs, processMaxFDs, processStartTime,
    ]
}
