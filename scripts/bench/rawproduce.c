// A Kafka Produce client that does no per-record work while it is timed, to measure what the server can take in:
// before the clock starts it builds record batches v2 the way librdkafka does (values: the lines of EVENTS in
// turn, keys k0…k63, up to 1,000,000 bytes per batch, uncompressed or gzip at level 1, CRC-32C), then it sends them with
// Produce v3, one batch per request, partitions in turn, IN_FLIGHT requests pipelined on one connection, until
// COUNT records are acknowledged. librdkafka (kafkaload produce) spends more than a core of its own building
// and compressing batches on the same 2 cores, so it measures the client as much as the server.
//
//   rawproduce HOST PORT TOPIC PARTITIONS EVENTS COUNT ACKS CODEC [IN_FLIGHT]
//       ACKS 1 or all, CODEC none or gzip, IN_FLIGHT 5 (librdkafka's max.in.flight) unless given;
//       prints records=… batches=… bytes=… errors=… duration_us=…
#include <sys/time.h>
#include <zlib.h>

#include "kafkaraw.h"

enum { BATCH_BYTES = 1000000, HEADER = 61, MAX_IN_FLIGHT = 64 };

static void put_varint(unsigned char **p, int64_t v) {  // zig-zag, as record fields are
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) { *(*p)++ = (unsigned char)(z | 0x80); z >>= 7; }
    *(*p)++ = (unsigned char)z;
}

static uint32_t crc_table[256];
static uint32_t crc32c(const unsigned char *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

typedef struct { unsigned char *bytes; size_t size; int32_t records; } Batch;

// One batch of up to BATCH_BYTES of records, starting at event *next (advanced past the events it holds).
static Batch build_batch(char **events, size_t event_count, size_t *next, long long *key, long long left, int gzip) {
    static unsigned char records[2 * BATCH_BYTES];
    unsigned char *r = records;
    int32_t count = 0;
    int64_t timestamp;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    timestamp = tv.tv_sec * 1000LL + tv.tv_usec / 1000;
    while (count < left) {
        const char *value = events[*next % event_count];
        size_t value_size = strlen(value);
        char k[8];
        int key_size = snprintf(k, sizeof k, "k%lld", *key % 64);
        unsigned char body[16384], *b = body;
        if (value_size > sizeof body - 64) { fprintf(stderr, "rawproduce: an event of %zu bytes\n", value_size); exit(2); }
        *b++ = 0;                 // attributes
        put_varint(&b, 0);        // timestampDelta
        put_varint(&b, count);    // offsetDelta
        put_varint(&b, key_size);
        memcpy(b, k, (size_t)key_size); b += key_size;
        put_varint(&b, (int64_t)value_size);
        memcpy(b, value, value_size); b += value_size;
        put_varint(&b, 0);        // headers
        unsigned char length[10], *l = length;
        put_varint(&l, b - body);
        size_t record_size = (size_t)(l - length) + (size_t)(b - body);
        if (count > 0 && HEADER + (size_t)(r - records) + record_size > BATCH_BYTES) break;
        memcpy(r, length, (size_t)(l - length)); r += l - length;
        memcpy(r, body, (size_t)(b - body)); r += b - body;
        count++; (*next)++; (*key)++;
    }
    size_t payload = (size_t)(r - records);
    unsigned char *batch = malloc(HEADER + payload + 1024);
    if (gzip) {
        z_stream z = {0};
        if (deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);  // level 1, as kafkaload
        z.next_in = records; z.avail_in = (uInt)payload;
        z.next_out = batch + HEADER; z.avail_out = (uInt)(payload + 1024);
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) { fprintf(stderr, "rawproduce: deflate\n"); exit(1); }
        payload = z.total_out;
        deflateEnd(&z);
    } else {
        memcpy(batch + HEADER, records, payload);
    }
    unsigned char *p = batch;
    put64(&p, 0);                                  // baseOffset: the broker assigns it
    put32(&p, (int32_t)(HEADER - 12 + payload));   // batchLength
    put32(&p, -1);                                 // partitionLeaderEpoch
    *p++ = 2;                                      // magic
    unsigned char *crc_at = p; p += 4;
    put16(&p, gzip ? 1 : 0);                       // attributes: the codec
    put32(&p, count - 1);                          // lastOffsetDelta
    put64(&p, timestamp);
    put64(&p, timestamp);
    put64(&p, -1);                                 // producerId: not idempotent
    put16(&p, -1);
    put32(&p, -1);
    put32(&p, count);
    uint32_t crc = crc32c(batch + 21, HEADER - 21 + payload);
    put32(&crc_at, (int32_t)crc);
    return (Batch){batch, HEADER + payload, count};
}

int main(int argc, char **argv) {
    if (argc != 9 && argc != 10) {
        fprintf(stderr, "usage: rawproduce HOST PORT TOPIC PARTITIONS EVENTS COUNT ACKS CODEC [IN_FLIGHT]\n");
        return 2;
    }
    const char *topic = argv[3];
    int partitions = atoi(argv[4]);
    long long count = atoll(argv[6]);
    int16_t acks = strcmp(argv[7], "all") == 0 ? -1 : (int16_t)atoi(argv[7]);
    int gzip = strcmp(argv[8], "gzip") == 0;
    int in_flight = argc == 10 ? atoi(argv[9]) : 5;
    if (partitions < 1 || count < 1 || (acks != 1 && acks != -1) || (!gzip && strcmp(argv[8], "none") != 0)
        || in_flight < 1 || in_flight > MAX_IN_FLIGHT) {
        fprintf(stderr, "rawproduce: PARTITIONS and COUNT at least 1, ACKS 1 or all, CODEC none or gzip, IN_FLIGHT 1 to %d\n", MAX_IN_FLIGHT);
        return 2;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }

    // The events, then every batch and its request, all before the clock starts.
    FILE *file = fopen(argv[5], "r");
    if (!file) die(argv[5]);
    size_t event_count = 0, event_capacity = 1024;
    char **events = malloc(event_capacity * sizeof *events);
    char *line = NULL;
    size_t line_capacity = 0;
    ssize_t length;
    while ((length = getline(&line, &line_capacity, file)) > 0) {
        if (line[length - 1] == '\n') line[--length] = 0;
        if (length == 0) continue;
        if (event_count == event_capacity) events = realloc(events, (event_capacity *= 2) * sizeof *events);
        events[event_count++] = strdup(line);
    }
    fclose(file);
    if (event_count == 0) { fprintf(stderr, "rawproduce: %s holds no events\n", argv[5]); return 2; }

    size_t request_capacity = 1024, request_count = 0, next_event = 0;
    unsigned char **requests = malloc(request_capacity * sizeof *requests);
    size_t *request_sizes = malloc(request_capacity * sizeof *request_sizes);
    long long built = 0, key = 0, bytes = 0;
    size_t topic_size = strlen(topic);
    while (built < count) {
        Batch batch = build_batch(events, event_count, &next_event, &key, count - built, gzip);
        if (request_count == request_capacity) {
            request_capacity *= 2;
            requests = realloc(requests, request_capacity * sizeof *requests);
            request_sizes = realloc(request_sizes, request_capacity * sizeof *request_sizes);
        }
        unsigned char *request = malloc(batch.size + 64 + topic_size), *p = request + 4;
        put16(&p, 0);  // Produce
        put16(&p, 3);
        put32(&p, (int32_t)request_count + 1);
        put16(&p, 10);
        memcpy(p, "rawproduce", 10); p += 10;
        put16(&p, -1);      // transactional_id: null
        put16(&p, acks);
        put32(&p, 30000);   // timeout_ms
        put32(&p, 1);
        put16(&p, (int16_t)topic_size);
        memcpy(p, topic, topic_size); p += topic_size;
        put32(&p, 1);
        put32(&p, (int32_t)(request_count % (size_t)partitions));
        put32(&p, (int32_t)batch.size);
        memcpy(p, batch.bytes, batch.size); p += batch.size;
        unsigned char *q = request;
        put32(&q, (int32_t)(p - request - 4));
        requests[request_count] = request;
        request_sizes[request_count++] = (size_t)(p - request);
        bytes += (long long)batch.size;
        built += batch.records;
        free(batch.bytes);
    }

    int fd = connect_to("rawproduce", argv[1], argv[2]);

    long long errors = 0, start = now_us();
    size_t sent = 0, answered = 0;
    unsigned char response[4096];
    while (answered < request_count) {
        while (sent < request_count && sent - answered < (size_t)in_flight) {
            send_fully(fd, requests[sent], request_sizes[sent]);
            sent++;
        }
        unsigned char head[4];
        read_fully(fd, head, 4);
        size_t size = (size_t)get32(head);
        if (size > sizeof response) { fprintf(stderr, "rawproduce: a %zu-byte response\n", size); return 1; }
        read_fully(fd, response, size);
        if ((size_t)get32(response) != answered + 1) { fprintf(stderr, "rawproduce: a response out of order\n"); return 1; }
        // correlation id, topics [name, partitions [index, error, base offset, log append time]], throttle
        const unsigned char *r = response + 4;
        r += 4;
        r += 2 + get16(r);
        r += 4;
        int16_t error = get16(r + 4);
        if (error != 0) {
            if (errors++ == 0) fprintf(stderr, "rawproduce: partition %d error %d\n", get32(r), error);
        }
        answered++;
    }
    long long duration = now_us() - start;
    printf("records=%lld batches=%zu bytes=%lld errors=%lld duration_us=%lld\n", built, request_count, bytes, errors, duration);
    return 0;
}
