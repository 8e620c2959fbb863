// CRC-32C for chunk and metadata checksums. Hardware path: SSE4.2 `crc32`
// (8 bytes per instruction); portable path: one 256-entry table.
//
// Long buffers: one `crc32` chain is latency-bound (3 cycles per 8 bytes while
// the CPU can issue one per cycle), so we run three independent chains over
// three consecutive blocks and merge them with a carry-less multiply (PCLMULQDQ).
#include "crc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <wmmintrin.h>
#endif

#define POLY 0x82F63B78u   // Castagnoli, bit-reflected

static uint32_t table[256];
static int have_sse42 = -1;
static int have_pclmul = -1;
static void init_table_and_detect(void);

// Runs at load time, before any thread can call snap_crc32c.
__attribute__((constructor)) static void crc32c_init(void) {
    init_table_and_detect();
}

static void init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
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

// --- Three-way interleave -------------------------------------------------
//
// Math (all polynomials over GF(2), mod P, in the reflected bit order where
// bit i of a 32-bit value is the coefficient of x^(31-i)):
//   * The raw CRC state is linear, so for blocks A|B|C of n bytes each,
//       crc(s, A|B|C) = crc(s, A)·x^(16n) + crc(0, B)·x^(8n) + crc(0, C).
//   * A 32x32 carry-less product of two reflected values, read as a reflected
//     64-bit value, is a·b·x; and crc32q(0, v) = v·x^32. So
//       crc32q(0, clmul(s, x^(8n-33))) = s·x^(8n),
//     i.e. one multiply plus one crc32 shifts a state forward over n zero bytes.
//   * crc32q(c, v ^ w) = crc32q(c, v) ^ w·x^32, so the shifted A and B states
//     are folded into the last 8 bytes of block C instead of a separate step.
//
// Block sizes are multiples of 8 bytes: n = 8k, 1 <= k <= KMAX. shift_k[j]
// holds x^(64j-33) mod P for j = 1...2*KMAX (shift by n uses j=k, 2n j=2k).
#define KMAX 512                // largest block 4 KiB: 12 KiB per round
#define MIN_INTERLEAVE 128      // measured: below ~96 bytes the merge costs more than it saves
static uint32_t shift_k[2 * KMAX + 1];

// Multiplies a reflected value by x^(8*bytes) mod P, one bit at a time. Only
// used to build shift_k at load time.
static uint32_t mul_xpow8(uint32_t v, unsigned bytes) {
    for (unsigned i = 0; i < 8 * bytes; i++) v = (v & 1) ? (v >> 1) ^ POLY : v >> 1;
    return v;
}

static void init_shift_table(void) {
    uint32_t v = 1;                  // x^31 (bit 0) = x^(64*1-33)
    shift_k[0] = 0;                  // unused
    for (unsigned j = 1; j <= 2 * KMAX; j++) {
        shift_k[j] = v;
        v = mul_xpow8(v, 8);         // next: times x^64
    }
}

__attribute__((target("sse4.2,pclmul")))
static inline uint64_t clmul32(uint32_t a, uint32_t b) {
    __m128i r = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)a), _mm_cvtsi32_si128((int)b), 0x00);
    return (uint64_t)_mm_cvtsi128_si64(r);
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

__attribute__((target("sse4.2,pclmul")))
static uint32_t crc_hw3(uint32_t crc, const unsigned char *p, size_t len) {
    while (len >= MIN_INTERLEAVE) {
        size_t k = len / 24;
        if (k > KMAX) k = KMAX;
        size_t n = 8 * k;
        const unsigned char *a = p, *b = p + n, *c = p + 2 * n;
        const unsigned char *a_end = a + n - 8;   // last word of each block handled below
        uint64_t ca = crc, cb = 0, cc = 0;
        while (a < a_end) {
            ca = __builtin_ia32_crc32di(ca, load64(a));
            cb = __builtin_ia32_crc32di(cb, load64(b));
            cc = __builtin_ia32_crc32di(cc, load64(c));
            a += 8; b += 8; c += 8;
        }
        ca = __builtin_ia32_crc32di(ca, load64(a));
        cb = __builtin_ia32_crc32di(cb, load64(b));
        uint64_t carry = clmul32((uint32_t)ca, shift_k[2 * k]) ^ clmul32((uint32_t)cb, shift_k[k]);
        crc = (uint32_t)__builtin_ia32_crc32di(cc, load64(c) ^ carry);
        p += 3 * n; len -= 3 * n;
    }
    return crc_hw(crc, p, len);
}
#endif

static void init_table_and_detect(void) {
    init_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    have_pclmul = have_sse42 && __builtin_cpu_supports("pclmul") ? 1 : 0;
    if (have_pclmul) init_shift_table();
#else
    have_sse42 = 0;
    have_pclmul = 0;
#endif
}

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (have_pclmul > 0 && len >= MIN_INTERLEAVE) return ~crc_hw3(crc, p, len);
    if (have_sse42 > 0) return ~crc_hw(crc, p, len);
#endif
    return ~crc_sw(crc, p, len);
}
