// A Kafka Fetch client that does no per-record work, to measure what the server can send: it asks for every
// partition of a topic from offset 0 (Fetch v4, one request in flight), walks the record-batch headers of each
// response to count records and find the next offset, and stops when COUNT records have arrived.
// librdkafka (kafkaload consume) parses every record as well, so it measures the client as much as the server.
//
//   rawfetch HOST PORT TOPIC PARTITIONS COUNT [PASSES]   prints records=… batches=… bytes=… duration_us=… (all passes)
#include "kafkaraw.h"

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: rawfetch HOST PORT TOPIC PARTITIONS COUNT [PASSES]\n");
        return 2;
    }
    const char *topic = argv[3];
    int partitions = atoi(argv[4]);
    long long count = atoll(argv[5]);
    int passes = argc == 7 ? atoi(argv[6]) : 1;
    int64_t offsets[64] = {0};
    if (partitions < 1 || partitions > 64) { fprintf(stderr, "rawfetch: 1 to 64 partitions\n"); return 2; }

    int fd = connect_to("rawfetch", argv[1], argv[2]);

    size_t capacity = 64 << 20;
    unsigned char *response = malloc(capacity);
    unsigned char request[4096];
    long long records = 0, batches = 0, bytes = 0, start = 0;
    int32_t correlation = 0;
    start = now_us();  // after connecting: the first request's read is part of the rate
    for (int pass = 0; pass < passes; pass++) {
        long long target = records + count;
        memset(offsets, 0, sizeof offsets);
        while (records < target) {
            unsigned char *p = request + 4;
            put16(&p, 1);  // Fetch
            put16(&p, 4);
            put32(&p, ++correlation);
            put16(&p, 8);
            memcpy(p, "rawfetch", 8); p += 8;
            put32(&p, -1);       // replica_id
            put32(&p, 500);      // max_wait_ms
            put32(&p, 1);        // min_bytes
            put32(&p, 52428800); // max_bytes
            *p++ = 0;            // isolation_level
            put32(&p, 1);
            put16(&p, (int16_t)strlen(topic));
            memcpy(p, topic, strlen(topic)); p += strlen(topic);
            put32(&p, partitions);
            for (int i = 0; i < partitions; i++) {
                put32(&p, i);
                put64(&p, offsets[i]);
                put32(&p, 4194304);  // partition_max_bytes
            }
            unsigned char *q = request;
            put32(&q, (int32_t)(p - request - 4));
            send_fully(fd, request, (size_t)(p - request));

            unsigned char head[4];
            read_fully(fd, head, 4);
            size_t size = (size_t)get32(head);
            if (size > capacity) { fprintf(stderr, "rawfetch: a %zu-byte response\n", size); return 1; }
            read_fully(fd, response, size);
            bytes += (long long)size + 4;

            const unsigned char *r = response + 4 + 4;  // correlation id, throttle_time_ms
            int32_t topics = get32(r); r += 4;
            for (int t = 0; t < topics; t++) {
                r += 2 + get16(r);
                int32_t parts = get32(r); r += 4;
                for (int k = 0; k < parts; k++) {
                    int32_t index = get32(r);
                    int16_t error = get16(r + 4);
                    if (error != 0) { fprintf(stderr, "rawfetch: partition %d error %d\n", index, error); return 1; }
                    r += 4 + 2 + 8 + 8;
                    int32_t aborted = get32(r); r += 4;
                    if (aborted > 0) r += 16 * aborted;
                    int32_t length = get32(r); r += 4;
                    const unsigned char *batch = r, *end = r + (length > 0 ? length : 0);
                    while (end - batch >= 61) {
                        int32_t batch_length = get32(batch + 8);
                        if (end - batch < 12 + batch_length) break;  // a partial batch at the end
                        int64_t base = get64(batch);
                        int64_t next = base + get32(batch + 23) + 1;
                        if (next > offsets[index]) {
                            records += get32(batch + 57);
                            batches++;
                            offsets[index] = next;
                        }
                        batch += 12 + batch_length;
                    }
                    r = end;
                }
            }
        }
    }
    printf("records=%lld batches=%lld bytes=%lld duration_us=%lld\n", records, batches, bytes, now_us() - start);
    return 0;
}
