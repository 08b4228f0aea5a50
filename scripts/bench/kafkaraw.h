// What the raw Kafka clients of the benchmark (rawfetch.c, rawproduce.c) share: big-endian fields, a blocking
// loopback connection, and whole reads and writes on it. Header-only; each client includes it once.
#ifndef SLUICE_KAFKARAW_H
#define SLUICE_KAFKARAW_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static inline void die(const char *what) { perror(what); exit(1); }

static inline void put16(unsigned char **p, int16_t v) { uint16_t n = htons((uint16_t)v); memcpy(*p, &n, 2); *p += 2; }
static inline void put32(unsigned char **p, int32_t v) { uint32_t n = htonl((uint32_t)v); memcpy(*p, &n, 4); *p += 4; }
static inline void put64(unsigned char **p, int64_t v) { put32(p, (int32_t)(v >> 32)); put32(p, (int32_t)v); }
static inline int16_t get16(const unsigned char *p) { uint16_t n; memcpy(&n, p, 2); return (int16_t)ntohs(n); }
static inline int32_t get32(const unsigned char *p) { uint32_t n; memcpy(&n, p, 4); return (int32_t)ntohl(n); }
static inline int64_t get64(const unsigned char *p) { return ((int64_t)get32(p) << 32) | (uint32_t)get32(p + 4); }

// A TCP connection to HOST:PORT (an IPv4 address) with Nagle off; exits 2 naming `program` for a bad address.
static inline int connect_to(const char *program, const char *host, const char *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) { fprintf(stderr, "%s: not an IPv4 address\n", program); exit(2); }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline void read_fully(int fd, unsigned char *buffer, size_t count) {
    while (count > 0) {
        ssize_t n = recv(fd, buffer, count, 0);
        if (n <= 0) die("recv");
        buffer += n;
        count -= (size_t)n;
    }
}

static inline void send_fully(int fd, const unsigned char *buffer, size_t count) {
    while (count > 0) {
        ssize_t n = send(fd, buffer, count, 0);
        if (n <= 0) die("send");
        buffer += n;
        count -= (size_t)n;
    }
}

#endif
