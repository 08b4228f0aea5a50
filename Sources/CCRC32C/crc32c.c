// CRC-32C (Castagnoli) with the CPU's own instruction: x86-64 SSE 4.2 `crc32`, or ARMv8's `crc32c*`.
// SluiceLog's CRC32C picks this when the CPU has it and its table-driven code otherwise; both give the
// same checksum (tested against each other and against Kafka's check value).
//
// The instruction takes 3 cycles to give its result but can start one every cycle, so one running CRC uses a
// third of it. Long buffers are cut into three lanes computed side by side, and the lanes' CRCs are joined by
// "shifting" a CRC over a lane's length of zero bytes, which is linear: four table lookups (tables built once,
// from the polynomial, by squaring the one-zero-bit operator as zlib's crc32_combine does).
#include "crc32c.h"

#include <string.h>

enum { LONG_LANE = 8192, SHORT_LANE = 256 };

static uint32_t shift_long[4][256];   // the CRC register after LONG_LANE more zero bytes, by byte of the register
static uint32_t shift_short[4][256];  // the same for SHORT_LANE

static uint32_t gf2_times(const uint32_t *matrix, uint32_t vector) {
    uint32_t sum = 0;
    for (; vector; vector >>= 1, matrix++) {
        if (vector & 1) sum ^= *matrix;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *matrix) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(matrix, matrix[n]);
}

// The operator that appends `length` zero bytes (a power of two) to a CRC register.
static void zeros_operator(uint32_t *even, size_t length) {
    uint32_t odd[32];
    odd[0] = 0x82F63B78u;  // one zero bit
    for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
    gf2_square(even, odd);  // two zero bits
    gf2_square(odd, even);  // four
    do {
        gf2_square(even, odd);  // eight, then 32, 128, …
        length >>= 1;
        if (length == 0) return;
        gf2_square(odd, even);  // 16, 64, …
        length >>= 1;
    } while (length);
    memcpy(even, odd, sizeof odd);
}

static void zeros_tables(uint32_t tables[4][256], size_t length) {
    uint32_t op[32];
    zeros_operator(op, length);
    for (uint32_t n = 0; n < 256; n++) {
        tables[0][n] = gf2_times(op, n);
        tables[1][n] = gf2_times(op, n << 8);
        tables[2][n] = gf2_times(op, n << 16);
        tables[3][n] = gf2_times(op, n << 24);
    }
}

__attribute__((constructor)) static void build_shift_tables(void) {
    zeros_tables(shift_long, LONG_LANE);
    zeros_tables(shift_short, SHORT_LANE);
}

static inline uint32_t shift(uint32_t tables[4][256], uint32_t crc) {
    return tables[0][crc & 0xFF] ^ tables[1][(crc >> 8) & 0xFF] ^ tables[2][(crc >> 16) & 0xFF] ^ tables[3][crc >> 24];
}

// Three lanes of `lane` bytes each from p, continuing register `crc`: the CRC register after all 3 × lane bytes.
#define THREE_LANES(STEP, crc, p, lane, tables)                          \
    do {                                                                 \
        uint64_t c0 = (crc), c1 = 0, c2 = 0;                             \
        for (const unsigned char *end = (p) + (lane); (p) < end; (p) += 8) { \
            uint64_t w0, w1, w2;                                         \
            memcpy(&w0, (p), 8);                                         \
            memcpy(&w1, (p) + (lane), 8);                                \
            memcpy(&w2, (p) + 2 * (lane), 8);                            \
            c0 = STEP(c0, w0);                                           \
            c1 = STEP(c1, w1);                                           \
            c2 = STEP(c2, w2);                                           \
        }                                                                \
        c0 = shift(tables, (uint32_t)c0) ^ (uint32_t)c1;                 \
        (crc) = shift(tables, (uint32_t)c0) ^ (uint32_t)c2;              \
        (p) += 2 * (lane);                                               \
    } while (0)

#if defined(__x86_64__)
#include <nmmintrin.h>

int sluice_crc32c_hardware_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

#define X86_STEP(c, w) _mm_crc32_u64((c), (w))

__attribute__((target("sse4.2")))
uint32_t sluice_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t c = ~crc;
    for (; count >= 3 * LONG_LANE; count -= 3 * LONG_LANE) THREE_LANES(X86_STEP, c, p, LONG_LANE, shift_long);
    for (; count >= 3 * SHORT_LANE; count -= 3 * SHORT_LANE) THREE_LANES(X86_STEP, c, p, SHORT_LANE, shift_short);
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        count -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (count > 0) {
        c32 = _mm_crc32_u8(c32, *p++);
        count--;
    }
    return ~c32;
}

#elif defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#include <asm/hwcap.h>

int sluice_crc32c_hardware_available(void) {
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0;
}

#define ARM_STEP(c, w) __crc32cd((uint32_t)(c), (w))

__attribute__((target("crc")))
uint32_t sluice_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint32_t c = ~crc;
    for (; count >= 3 * LONG_LANE; count -= 3 * LONG_LANE) THREE_LANES(ARM_STEP, c, p, LONG_LANE, shift_long);
    for (; count >= 3 * SHORT_LANE; count -= 3 * SHORT_LANE) THREE_LANES(ARM_STEP, c, p, SHORT_LANE, shift_short);
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __crc32cd(c, word);
        p += 8;
        count -= 8;
    }
    while (count > 0) {
        c = __crc32cb(c, *p++);
        count--;
    }
    return ~c;
}

#else

int sluice_crc32c_hardware_available(void) { return 0; }

uint32_t sluice_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return crc;
}

#endif
