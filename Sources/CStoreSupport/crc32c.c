// CRC-32C for chunk and metadata checksums. Hardware path: SSE4.2 `crc32`
// (8 bytes per instruction); portable path: one 256-entry table.
#include "crc32c.h"
#include <string.h>

static uint32_t table[256];
static int have_sse42 = -1;
static void init_table_and_detect(void);

// Runs at load time, before any thread can call snap_crc32c.
__attribute__((constructor)) static void crc32c_init(void) {
    init_table_and_detect();
}

static void init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len) {
    while (len--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len) {
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8; len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

static void init_table_and_detect(void) {
    init_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    have_sse42 = 0;
#endif
}

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (have_sse42 > 0) return ~crc_hw(crc, p, len);
#endif
    return ~crc_sw(crc, p, len);
}
