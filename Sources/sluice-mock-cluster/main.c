// sluice-mock-cluster: librdkafka's mock Kafka cluster in a process of its own, for tests and trials of
// `log.backend=kafka` without a real cluster.
//
// Prints `bootstrap.servers=HOST:PORT,...` once the brokers listen, then reads one command per line on stdin
// and answers each with `ok` or `error: ...`:
//   topic NAME PARTITIONS [REPLICATION]   create a topic (the mock has no CreateTopics API)
//   down BROKER_ID | up BROKER_ID         take a broker down (its connections are closed) or bring it back
//   leader TOPIC PARTITION BROKER_ID      move a partition's leader (-1: no leader)
//   fail API_KEY ERROR_CODE [COUNT]       the next COUNT (default 1) requests of that API fail with that error
// The cluster ends when stdin closes, so a test that dies takes its cluster with it.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int brokers = argc > 1 ? atoi(argv[1]) : 3;
    if (brokers < 1 || brokers > 16) {
        fprintf(stderr, "usage: sluice-mock-cluster [BROKERS]  (1 to 16 brokers, default 3)\n");
        return 2;
    }
    char error[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    // The handle only owns the cluster: it never connects anywhere, so it has nothing to warn about.
    if (rd_kafka_conf_set(conf, "log_level", "3", error, sizeof error) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "sluice-mock-cluster: %s\n", error);
        return 1;
    }
    rd_kafka_t *handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (!handle) {
        fprintf(stderr, "sluice-mock-cluster: %s\n", error);
        return 1;
    }
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(handle, brokers);
    if (!cluster) {
        fprintf(stderr, "sluice-mock-cluster: the mock cluster did not start\n");
        return 1;
    }
    printf("bootstrap.servers=%s\n", rd_kafka_mock_cluster_bootstraps(cluster));
    fflush(stdout);

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        char name[512];
        int a = 0, b = 0, c = 0;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (sscanf(line, "topic %511s %d %d", name, &a, &b) >= 2) {
            err = rd_kafka_mock_topic_create(cluster, name, a, b > 0 ? b : (brokers < 3 ? brokers : 3));
        } else if (sscanf(line, "down %d", &a) == 1) {
            err = rd_kafka_mock_broker_set_down(cluster, a);
        } else if (sscanf(line, "up %d", &a) == 1) {
            err = rd_kafka_mock_broker_set_up(cluster, a);
        } else if (sscanf(line, "leader %511s %d %d", name, &a, &b) == 3) {
            err = rd_kafka_mock_partition_set_leader(cluster, name, a, b);
        } else if (sscanf(line, "fail %d %d %d", &a, &b, &c) >= 2) {
            if (c < 1) c = 1;
            rd_kafka_resp_err_t *errors = calloc((size_t)c, sizeof *errors);
            for (int i = 0; i < c; i++) errors[i] = (rd_kafka_resp_err_t)b;
            rd_kafka_mock_push_request_errors_array(cluster, (int16_t)a, (size_t)c, errors);
            free(errors);
        } else if (line[0] == '\n') {
            continue;
        } else {
            printf("error: unknown command; use topic NAME PARTITIONS, down ID, up ID, leader TOPIC PARTITION ID or fail API_KEY ERROR_CODE [COUNT]\n");
            fflush(stdout);
            continue;
        }
        if (err) printf("error: %s\n", rd_kafka_err2str(err)); else printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(handle);
    return 0;
}
