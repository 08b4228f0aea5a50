// A librdkafka load client for the Kafka listener benchmark (`scripts/bench/kafka.sh` builds and runs it).
//
//   kafkaload produce BROKER TOPIC EVENTS COUNT ACKS CODEC   COUNT records (values: the lines of EVENTS in turn,
//                                                             ~1 KiB JSON; keys k0…k63), acks 1 or all, codec
//                                                             none or gzip (level 1, the agent's default);
//                                                             linger.ms=5, batch.size=1 MiB
//   kafkaload consume BROKER TOPIC COUNT                      reads every partition from the beginning (no group)
//                                                             until COUNT records have arrived
//
// Prints one line: RESULT records=N bytes=B duration_us=D errors=E
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static long long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    if (m->err) {
        if (failed++ < 3) fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        delivered++;
    }
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char error[256];
    if (rd_kafka_conf_set(conf, name, value, error, sizeof error) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s=%s: %s\n", name, value, error);
        exit(2);
    }
}

static int produce(const char *broker, const char *topic, const char *events, long long count, const char *acks, const char *codec) {
    FILE *file = fopen(events, "r");
    if (!file) { perror(events); return 2; }
    char **lines = NULL;
    size_t n = 0, cap = 0, len = 0;
    char *line = NULL;
    ssize_t got;
    while ((got = getline(&line, &len, file)) > 0) {
        if (line[got - 1] == '\n') line[--got] = 0;
        if (n == cap) lines = realloc(lines, (cap = cap ? cap * 2 : 1024) * sizeof *lines);
        lines[n++] = strdup(line);
    }
    fclose(file);
    if (n == 0) { fprintf(stderr, "%s has no events\n", events); return 2; }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", broker);
    set(conf, "acks", acks);
    set(conf, "compression.codec", codec);
    // The agent's default level for its own gzip (compression.level=1), so both paths compress alike.
    if (strcmp(codec, "gzip") == 0) set(conf, "compression.level", "1");
    set(conf, "linger.ms", "5");
    set(conf, "batch.size", "1048576");
    set(conf, "queue.buffering.max.kbytes", "262144");
    set(conf, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char error[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (!rk) { fprintf(stderr, "%s\n", error); return 2; }

    long long bytes = 0, start = now_us();
    for (long long i = 0; i < count; i++) {
        const char *value = lines[i % n];
        size_t size = strlen(value);
        char key[8];
        int key_len = snprintf(key, sizeof key, "k%lld", i % 64);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)key_len),
                                        RD_KAFKA_V_VALUE((void *)value, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 10);
        }
        if (err) { fprintf(stderr, "produce: %s\n", rd_kafka_err2str(err)); return 1; }
        bytes += (long long)size;
        if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    long long elapsed = now_us() - start;
    printf("RESULT records=%lld bytes=%lld duration_us=%lld errors=%lld\n", delivered, bytes, elapsed, failed + (count - delivered - failed));
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}

static int consume(const char *broker, const char *topic, long long count) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", broker);
    set(conf, "group.id", "kafkaload-unused");  // required by the API; no group is joined (assign, no commits)
    set(conf, "enable.auto.commit", "false");
    set(conf, "fetch.max.bytes", "52428800");
    set(conf, "max.partition.fetch.bytes", "4194304");
    char error[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (!rk) { fprintf(stderr, "%s\n", error); return 2; }
    const rd_kafka_metadata_t *metadata;
    rd_kafka_topic_t *handle = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, handle, &metadata, 10000) || metadata->topic_cnt != 1) { fprintf(stderr, "no metadata for %s\n", topic); return 2; }
    int partitions = metadata->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(handle);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);

    long long received = 0, bytes = 0, errors = 0, start = 0, deadline = now_us() + 120000000LL;
    while (received < count && now_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors++ < 3) fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
        } else {
            if (received == 0) start = now_us();  // from the first record: connection set-up is not the fetch rate
            received++;
            bytes += (long long)m->len;
        }
        rd_kafka_message_destroy(m);
    }
    long long elapsed = now_us() - start;
    printf("RESULT records=%lld bytes=%lld duration_us=%lld errors=%lld\n", received, bytes, elapsed, errors + (count - received));
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return received == count ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 8 && strcmp(argv[1], "produce") == 0) return produce(argv[2], argv[3], argv[4], atoll(argv[5]), argv[6], argv[7]);
    if (argc == 5 && strcmp(argv[1], "consume") == 0) return consume(argv[2], argv[3], atoll(argv[4]));
    fprintf(stderr, "usage: kafkaload produce BROKER TOPIC EVENTS COUNT ACKS CODEC | kafkaload consume BROKER TOPIC COUNT\n");
    return 2;
}
