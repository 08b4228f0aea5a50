// One load client for Sluice and its peers, so that each gets the same events over the same number of
// connections: `scripts/bench/peers.sh` builds and runs it.
//
//   peerload sluice HOST:PORT EVENTS CONNECTIONS BATCH SECONDS   POST /v1/topics/bench/events (BATCH 1: one
//                                                                structured event; else a batch of BATCH), or
//                                                                to $PEERLOAD_PATH
//   peerload redis  HOST:PORT EVENTS CONNECTIONS BATCH SECONDS   XADD bench * e EVENT, BATCH pipelined
//   peerload nats   HOST:PORT EVENTS CONNECTIONS BATCH SECONDS   JetStream publish to bench.events (BATCH 1:
//                                                                wait for each ack; else BATCH in flight)
//   peerload nats-setup HOST:PORT                                creates the file-backed stream BENCH
//   peerload nats-count HOST:PORT                                prints "messages bytes" of stream BENCH
//
// EVENTS is a file of one JSON event per line (scripts/bench/events.py) whose id is 16 '@'; every send
// overwrites it with a unique hex id (process, connection number and counter), so idempotence never sees a repeat.
// Each connection is a thread doing blocking round trips. Prints one line:
//   RESULT acked=N requests=R duration_us=D errors=E p50_us=P p99_us=Q
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

static char **events;
static size_t *event_lengths;
static size_t event_count;
static const char *target, *host;
static int port, batch, seconds;
static volatile int stop_now;

typedef struct {
    int index;
    uint64_t acked, requests, errors;
    uint32_t *latencies;  // microseconds per round trip
    size_t latency_count, latency_capacity;
} Worker;

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void die(const char *what) {
    fprintf(stderr, "peerload: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void load_events(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    size_t capacity = 1024;
    events = malloc(capacity * sizeof *events);
    event_lengths = malloc(capacity * sizeof *event_lengths);
    char *line = NULL;
    size_t size = 0;
    ssize_t n;
    while ((n = getline(&line, &size, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        if (n == 0) continue;
        if (event_count == capacity) {
            capacity *= 2;
            events = realloc(events, capacity * sizeof *events);
            event_lengths = realloc(event_lengths, capacity * sizeof *event_lengths);
        }
        events[event_count] = strdup(line);
        event_lengths[event_count++] = (size_t)n;
    }
    fclose(f);
    if (event_count == 0) { fprintf(stderr, "peerload: %s has no events\n", path); exit(2); }
}

/// Copies event `n` of worker `w` into `out` with a unique id; returns its length.
static size_t next_event(Worker *w, uint64_t n, char *out) {
    size_t i = (w->index * 7919 + n) % event_count;
    memcpy(out, events[i], event_lengths[i]);
    char *id = strstr(out, "@@@@@@@@@@@@@@@@");
    if (id) {
        char hex[17];
        snprintf(hex, sizeof hex, "%04x%04x%08llx", (unsigned)getpid() & 0xffff, w->index & 0xffff, (unsigned long long)n & 0xffffffffULL);
        memcpy(id, hex, 16);
    }
    return event_lengths[i];
}

static void record(Worker *w, uint64_t started) {
    if (w->latency_count == w->latency_capacity) {
        w->latency_capacity = w->latency_capacity ? w->latency_capacity * 2 : 65536;
        w->latencies = realloc(w->latencies, w->latency_capacity * sizeof *w->latencies);
    }
    w->latencies[w->latency_count++] = (uint32_t)(now_us() - started);
}

static int connect_tcp(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) { fprintf(stderr, "peerload: %s is not an IPv4 address\n", host); exit(2); }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t n = send(fd, data, length, MSG_NOSIGNAL);
        if (n < 0) { if (errno == EINTR) continue; die("send"); }
        data += n;
        length -= (size_t)n;
    }
}

/// A read buffer over a socket.
typedef struct { int fd; char *data; size_t start, end, capacity; } Reader;

static void fill(Reader *r) {
    if (r->start > 0 && r->start == r->end) r->start = r->end = 0;
    if (r->end == r->capacity) {
        if (r->start > 0) {
            memmove(r->data, r->data + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        } else {
            r->capacity *= 2;
            r->data = realloc(r->data, r->capacity);
        }
    }
    ssize_t n = recv(r->fd, r->data + r->end, r->capacity - r->end, 0);
    if (n <= 0) { if (n < 0 && errno == EINTR) return; fprintf(stderr, "peerload: the server closed the connection\n"); exit(1); }
    r->end += (size_t)n;
}

/// Returns the next line (without CRLF), reading more as needed.
static char *read_line(Reader *r, size_t *length) {
    for (;;) {
        char *crlf = memmem(r->data + r->start, r->end - r->start, "\r\n", 2);
        if (crlf) {
            char *line = r->data + r->start;
            *length = (size_t)(crlf - line);
            r->start += *length + 2;
            return line;
        }
        fill(r);
    }
}

static void skip_bytes(Reader *r, size_t count) {
    while (r->end - r->start < count) fill(r);
    r->start += count;
}

/// Where Sluice requests go: $PEERLOAD_PATH, e.g. /v1/events?atomic=true (routed by type, one transaction).
static const char *sluice_path = "/v1/topics/bench/events";

static void *run_sluice(void *arg) {
    Worker *w = arg;
    int fd = connect_tcp();
    Reader reader = {.fd = fd, .data = malloc(65536), .capacity = 65536};
    size_t body_capacity = (size_t)batch * 1400 + 64;
    char *body = malloc(body_capacity), *request = malloc(body_capacity + 512);
    uint64_t n = 0;
    while (!stop_now) {
        size_t length = 0;
        if (batch > 1) body[length++] = '[';
        for (int i = 0; i < batch; i++) {
            if (i > 0) body[length++] = ',';
            length += next_event(w, n++, body + length);
        }
        if (batch > 1) body[length++] = ']';
        int head = snprintf(request, 512, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                            sluice_path, host, batch > 1 ? "application/cloudevents-batch+json" : "application/cloudevents+json", length);
        memcpy(request + head, body, length);
        uint64_t started = now_us();
        send_all(fd, request, (size_t)head + length);
        size_t line_length;
        char *status_line = read_line(&reader, &line_length);
        int status = line_length > 12 ? atoi(status_line + 9) : 0;
        size_t content_length = 0;
        for (;;) {
            char *line = read_line(&reader, &line_length);
            if (line_length == 0) break;
            if (line_length > 15 && strncasecmp(line, "content-length:", 15) == 0) content_length = strtoul(line + 15, NULL, 10);
        }
        skip_bytes(&reader, content_length);
        record(w, started);
        w->requests++;
        if (status == 200 || status == 202) w->acked += (uint64_t)batch; else w->errors++;
    }
    close(fd);
    return NULL;
}

static void *run_redis(void *arg) {
    Worker *w = arg;
    int fd = connect_tcp();
    Reader reader = {.fd = fd, .data = malloc(65536), .capacity = 65536};
    char *commands = malloc((size_t)batch * 1500 + 64);
    uint64_t n = 0;
    while (!stop_now) {
        size_t length = 0;
        for (int i = 0; i < batch; i++) {
            char event[2048];
            size_t size = next_event(w, n++, event);
            length += (size_t)sprintf(commands + length, "*5\r\n$4\r\nXADD\r\n$5\r\nbench\r\n$1\r\n*\r\n$1\r\ne\r\n$%zu\r\n", size);
            memcpy(commands + length, event, size);
            length += size;
            memcpy(commands + length, "\r\n", 2);
            length += 2;
        }
        uint64_t started = now_us();
        send_all(fd, commands, length);
        for (int i = 0; i < batch; i++) {
            size_t line_length;
            char *line = read_line(&reader, &line_length);
            if (line[0] == '$') {
                long size = strtol(line + 1, NULL, 10);
                if (size >= 0) skip_bytes(&reader, (size_t)size + 2);
                w->acked++;
            } else {
                w->errors++;
            }
        }
        record(w, started);
        w->requests++;
    }
    close(fd);
    return NULL;
}

static void check(natsStatus s, const char *what) {
    if (s != NATS_OK) { fprintf(stderr, "peerload: %s: %s\n", what, natsStatus_GetText(s)); exit(1); }
}

static void nats_connect(natsConnection **nc, jsCtx **js, int max_pending) {
    char url[256];
    snprintf(url, sizeof url, "nats://%s:%d", host, port);
    check(natsConnection_ConnectTo(nc, url), "connect");
    jsOptions options;
    jsOptions_Init(&options);
    options.PublishAsync.MaxPending = max_pending;
    check(natsConnection_JetStream(js, *nc, &options), "JetStream");
}

static void *run_nats(void *arg) {
    Worker *w = arg;
    natsConnection *nc;
    jsCtx *js;
    nats_connect(&nc, &js, batch);
    uint64_t n = 0;
    char event[2048], id[32];
    jsPubOptions options;
    while (!stop_now) {
        uint64_t started = now_us();
        if (batch == 1) {
            size_t size = next_event(w, n++, event);
            jsPubOptions_Init(&options);
            memcpy(id, strstr(event, "\"id\":\"") + 6, 16); id[16] = 0;
            options.MsgId = id;
            jsPubAck *ack = NULL;
            jsErrCode code = 0;
            if (js_Publish(&ack, js, "bench.events", event, (int)size, &options, &code) == NATS_OK) w->acked++; else w->errors++;
            jsPubAck_Destroy(ack);
        } else {
            for (int i = 0; i < batch; i++) {
                size_t size = next_event(w, n++, event);
                jsPubOptions_Init(&options);
                memcpy(id, strstr(event, "\"id\":\"") + 6, 16); id[16] = 0;
                options.MsgId = id;
                if (js_PublishAsync(js, "bench.events", event, (int)size, &options) != NATS_OK) w->errors++;
            }
            jsPubOptions_Init(&options);
            options.MaxWait = 30000;
            natsMsgList pending = {0};
            if (js_PublishAsyncComplete(js, &options) != NATS_OK && js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
                w->errors += (uint64_t)pending.Count;
                natsMsgList_Destroy(&pending);
            }
            w->acked += (uint64_t)batch;  // errors counted above are subtracted in main
        }
        record(w, started);
        w->requests++;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return NULL;
}

static int compare(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void split_address(const char *address) {
    static char buffer[256];
    snprintf(buffer, sizeof buffer, "%s", address);
    char *colon = strrchr(buffer, ':');
    if (!colon) { fprintf(stderr, "peerload: %s is not HOST:PORT\n", address); exit(2); }
    *colon = 0;
    host = buffer;
    port = atoi(colon + 1);
}

int main(int argc, char **argv) {
    if (getenv("PEERLOAD_PATH")) sluice_path = getenv("PEERLOAD_PATH");
    if (argc >= 3 && (strcmp(argv[1], "nats-setup") == 0 || strcmp(argv[1], "nats-count") == 0)) {
        split_address(argv[2]);
        natsConnection *nc;
        jsCtx *js;
        nats_connect(&nc, &js, 1);
        jsErrCode code = 0;
        if (strcmp(argv[1], "nats-setup") == 0) {
            jsStreamConfig config;
            jsStreamConfig_Init(&config);
            const char *subjects[] = {"bench.events"};
            config.Name = "BENCH";
            config.Subjects = subjects;
            config.SubjectsLen = 1;
            config.Storage = js_FileStorage;
            check(js_AddStream(NULL, js, &config, NULL, &code), "add stream");
        } else {
            jsStreamInfo *info = NULL;
            check(js_GetStreamInfo(&info, js, "BENCH", NULL, &code), "stream info");
            printf("%llu %llu\n", (unsigned long long)info->State.Msgs, (unsigned long long)info->State.Bytes);
            jsStreamInfo_Destroy(info);
        }
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        return 0;
    }
    if (argc != 7) {
        fprintf(stderr, "usage: peerload sluice|redis|nats HOST:PORT EVENTS CONNECTIONS BATCH SECONDS\n"
                        "       peerload nats-setup|nats-count HOST:PORT\n");
        return 2;
    }
    target = argv[1];
    split_address(argv[2]);
    load_events(argv[3]);
    int connections = atoi(argv[4]);
    batch = atoi(argv[5]);
    seconds = atoi(argv[6]);
    if (connections < 1 || batch < 1 || seconds < 1) { fprintf(stderr, "peerload: CONNECTIONS, BATCH and SECONDS must be positive\n"); return 2; }
    void *(*run)(void *) = strcmp(target, "sluice") == 0 ? run_sluice : strcmp(target, "redis") == 0 ? run_redis
                         : strcmp(target, "nats") == 0 ? run_nats : NULL;
    if (!run) { fprintf(stderr, "peerload: unknown target %s\n", target); return 2; }
    Worker *workers = calloc((size_t)connections, sizeof *workers);
    pthread_t *threads = calloc((size_t)connections, sizeof *threads);
    uint64_t started = now_us();
    for (int i = 0; i < connections; i++) {
        workers[i].index = i;
        pthread_create(&threads[i], NULL, run, &workers[i]);
    }
    sleep((unsigned)seconds);
    stop_now = 1;
    for (int i = 0; i < connections; i++) pthread_join(threads[i], NULL);
    uint64_t duration = now_us() - started;
    uint64_t acked = 0, requests = 0, errors = 0;
    size_t total = 0;
    for (int i = 0; i < connections; i++) { acked += workers[i].acked; requests += workers[i].requests; errors += workers[i].errors; total += workers[i].latency_count; }
    if (strcmp(target, "nats") == 0 && batch > 1) acked -= errors;
    uint32_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < connections; i++) { memcpy(all + k, workers[i].latencies, workers[i].latency_count * sizeof *all); k += workers[i].latency_count; }
    qsort(all, total, sizeof *all, compare);
    printf("RESULT acked=%llu requests=%llu duration_us=%llu errors=%llu p50_us=%u p99_us=%u\n", (unsigned long long)acked,
           (unsigned long long)requests, (unsigned long long)duration, (unsigned long long)errors,
           total ? all[total / 2] : 0, total ? all[(size_t)(total * 0.99)] : 0);
    return 0;
}
