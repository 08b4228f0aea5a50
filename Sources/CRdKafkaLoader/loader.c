// Trampolines for the librdkafka functions the cluster backend calls (see CRdKafkaLoader.h and CLibraryLoader.h).
// A function added to the cluster backend's code must be added to RDKAFKA_FUNCTIONS: the link fails with an
// undefined symbol until it is.
#include "CRdKafkaLoader.h"
#include "CLibraryLoader.h"

#define RDKAFKA_FUNCTIONS(X) \
    X(rd_kafka_AdminOptions_destroy) \
    X(rd_kafka_AdminOptions_new) \
    X(rd_kafka_AdminOptions_set_operation_timeout) \
    X(rd_kafka_AdminOptions_set_request_timeout) \
    X(rd_kafka_CreateTopics) \
    X(rd_kafka_CreateTopics_result_topics) \
    X(rd_kafka_DeleteTopic_destroy) \
    X(rd_kafka_DeleteTopic_new) \
    X(rd_kafka_DeleteTopics) \
    X(rd_kafka_DeleteTopics_result_topics) \
    X(rd_kafka_ListConsumerGroupOffsets) \
    X(rd_kafka_ListConsumerGroupOffsets_destroy_array) \
    X(rd_kafka_ListConsumerGroupOffsets_new) \
    X(rd_kafka_ListConsumerGroupOffsets_result_groups) \
    X(rd_kafka_NewTopic_destroy) \
    X(rd_kafka_NewTopic_new) \
    X(rd_kafka_NewTopic_set_config) \
    X(rd_kafka_abort_transaction) \
    X(rd_kafka_assign) \
    X(rd_kafka_assignment) \
    X(rd_kafka_begin_transaction) \
    X(rd_kafka_commit) \
    X(rd_kafka_commit_transaction) \
    X(rd_kafka_conf_destroy) \
    X(rd_kafka_conf_new) \
    X(rd_kafka_conf_set) \
    X(rd_kafka_conf_set_dr_msg_cb) \
    X(rd_kafka_conf_set_error_cb) \
    X(rd_kafka_conf_set_log_cb) \
    X(rd_kafka_conf_set_opaque) \
    X(rd_kafka_conf_set_rebalance_cb) \
    X(rd_kafka_conf_set_stats_cb) \
    X(rd_kafka_consume) \
    X(rd_kafka_consume_start) \
    X(rd_kafka_consume_stop) \
    X(rd_kafka_consumer_close) \
    X(rd_kafka_consumer_poll) \
    X(rd_kafka_destroy) \
    X(rd_kafka_err2name) \
    X(rd_kafka_err2str) \
    X(rd_kafka_error_code) \
    X(rd_kafka_error_destroy) \
    X(rd_kafka_error_is_fatal) \
    X(rd_kafka_error_string) \
    X(rd_kafka_event_CreateTopics_result) \
    X(rd_kafka_event_DeleteTopics_result) \
    X(rd_kafka_event_ListConsumerGroupOffsets_result) \
    X(rd_kafka_event_destroy) \
    X(rd_kafka_event_error) \
    X(rd_kafka_event_error_string) \
    X(rd_kafka_flush) \
    X(rd_kafka_group_list_destroy) \
    X(rd_kafka_group_result_error) \
    X(rd_kafka_group_result_partitions) \
    X(rd_kafka_header_add) \
    X(rd_kafka_header_get_all) \
    X(rd_kafka_headers_destroy) \
    X(rd_kafka_headers_new) \
    X(rd_kafka_incremental_assign) \
    X(rd_kafka_incremental_unassign) \
    X(rd_kafka_init_transactions) \
    X(rd_kafka_last_error) \
    X(rd_kafka_list_groups) \
    X(rd_kafka_message_destroy) \
    X(rd_kafka_message_headers) \
    X(rd_kafka_message_timestamp) \
    X(rd_kafka_metadata) \
    X(rd_kafka_metadata_destroy) \
    X(rd_kafka_new) \
    X(rd_kafka_opaque) \
    X(rd_kafka_outq_len) \
    X(rd_kafka_poll) \
    X(rd_kafka_poll_set_consumer) \
    X(rd_kafka_position) \
    X(rd_kafka_produceva) \
    X(rd_kafka_query_watermark_offsets) \
    X(rd_kafka_queue_destroy) \
    X(rd_kafka_queue_new) \
    X(rd_kafka_queue_poll) \
    X(rd_kafka_rebalance_protocol) \
    X(rd_kafka_subscribe) \
    X(rd_kafka_topic_destroy) \
    X(rd_kafka_topic_name) \
    X(rd_kafka_topic_new) \
    X(rd_kafka_topic_partition_list_add) \
    X(rd_kafka_topic_partition_list_destroy) \
    X(rd_kafka_topic_partition_list_new) \
    X(rd_kafka_topic_result_error) \
    X(rd_kafka_topic_result_error_string) \
    X(rd_kafka_version_str) \

#define SLUICE_LIBRARY_PREFIX sluice_rdkafka_
SLUICE_LIBRARY(RDKAFKA_FUNCTIONS)

int sluice_rdkafka_load(const char *path, char *error, size_t error_size) {
    return sluice_library_load(path ? path : "librdkafka.so.1", library_names, library_pointers, SLUICE_LIBRARY_COUNT,
                               &library_loaded, path != NULL, error, error_size);
}
