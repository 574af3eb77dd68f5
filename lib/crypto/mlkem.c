/*
 * mlkem.c - ML-KEM-768 (FIPS 203), written from the standard, plus the
 * public API of kem.h (input checks, backend selection, *_rand variants).
 *
 * Parameters (FIPS 203 §8, ML-KEM-768): n = 256, q = 3329, k = 3,
 * eta1 = eta2 = 2, du = 10, dv = 4.
 *
 * Representation: a polynomial is 256 uint16_t coefficients, always fully
 * reduced to [0, q) between operations (no Montgomery domain for data).
 * Multiplications by the NTT constants use Montgomery reduction with the
 * constants pre-scaled by 2^16 (mont_mul); matrix-vector products
 * accumulate unreduced in 32 bits and are reduced once with a Barrett-style
 * multiply-shift (reduce32). Every reduction ends in one masked
 * subtraction (csubq), never a branch.
 *
 * Constant time: secret values (d, z, m, s, e, y, r, m', K', K-bar, the
 * re-encryption comparison) never reach a branch condition, a memory index
 * or a division. Rounding divisions by q (Compress) use divq(), a
 * multiply-shift with a masked correction. The only data-dependent branches
 * are in SampleNTT's rejection sampling, whose input (rho, from ek) is
 * public. tests/crypto/ct_valgrind checks this with memcheck.
 *
 * Every secret intermediate on the stack is wiped with ut_memzero before
 * returning. Public intermediates (the matrix A, t-hat, ciphertext parts
 * computed from public data) are not.
 */
#include "crypto/kem.h"

#include <errno.h>
#include <string.h>

#include <openssl/rand.h>

#include "crypto/mlkem_internal.h"
#include "util/mem.h"

#define MLKEM_N       256
#define MLKEM_Q       3329
#define MLKEM_K       3
#define MLKEM_DU      10
#define MLKEM_DV      4
#define POLY_BYTES    384 /* ByteEncode12 of one polynomial */
#define POLYVEC_BYTES (MLKEM_K * POLY_BYTES)
#define C1_BYTES      (32 * MLKEM_DU * MLKEM_K) /* 960 */
#define C2_BYTES      (32 * MLKEM_DV)           /* 128 */
#define PRF_BYTES     (64 * 2)                  /* eta = 2 */

/* dk = dk_PKE (1152) || ek (1184) || H(ek) (32) || z (32) */
#define DK_EK_OFF POLYVEC_BYTES
#define DK_H_OFF  (DK_EK_OFF + CRY_MLKEM768_EK_BYTES)
#define DK_Z_OFF  (DK_H_OFF + 32)

_Static_assert(C1_BYTES + C2_BYTES == CRY_MLKEM768_CT_BYTES, "ciphertext size");
_Static_assert(DK_Z_OFF + 32 == CRY_MLKEM768_DK_BYTES, "dk size");
_Static_assert(POLYVEC_BYTES + 32 == CRY_MLKEM768_EK_BYTES, "ek size");

typedef struct {
    uint16_t c[MLKEM_N];
} poly;

/*
 * Constants of the NTT, as printed in FIPS 203 Appendix A:
 * ZETAS = zeta^BitRev7(i) mod q (zeta = 17; Alg. 9/10), GAMMAS =
 * zeta^(2 BitRev7(i) + 1) mod q (Alg. 11). They are stored in Montgomery
 * form (c * 2^16 mod q, converted by the compiler) for mont_mul().
 */
// clang-format off
#define ZETAS(F) \
    F(   1) F(1729) F(2580) F(3289) F(2642) F( 630) F(1897) F( 848) \
    F(1062) F(1919) F( 193) F( 797) F(2786) F(3260) F( 569) F(1746) \
    F( 296) F(2447) F(1339) F(1476) F(3046) F(  56) F(2240) F(1333) \
    F(1426) F(2094) F( 535) F(2882) F(2393) F(2879) F(1974) F( 821) \
    F( 289) F( 331) F(3253) F(1756) F(1197) F(2304) F(2277) F(2055) \
    F( 650) F(1977) F(2513) F( 632) F(2865) F(  33) F(1320) F(1915) \
    F(2319) F(1435) F( 807) F( 452) F(1438) F(2868) F(1534) F(2402) \
    F(2647) F(2617) F(1481) F( 648) F(2474) F(3110) F(1227) F( 910) \
    F(  17) F(2761) F( 583) F(2649) F(1637) F( 723) F(2288) F(1100) \
    F(1409) F(2662) F(3281) F( 233) F( 756) F(2156) F(3015) F(3050) \
    F(1703) F(1651) F(2789) F(1789) F(1847) F( 952) F(1461) F(2687) \
    F( 939) F(2308) F(2437) F(2388) F( 733) F(2337) F( 268) F( 641) \
    F(1584) F(2298) F(2037) F(3220) F( 375) F(2549) F(2090) F(1645) \
    F(1063) F( 319) F(2773) F( 757) F(2099) F( 561) F(2466) F(2594) \
    F(2804) F(1092) F( 403) F(1026) F(1143) F(2150) F(2775) F( 886) \
    F(1722) F(1212) F(1874) F(1029) F(2110) F(2935) F( 885) F(2154)

#define GAMMAS(F) \
    F(  17) F(3312) F(2761) F( 568) F( 583) F(2746) F(2649) F( 680) \
    F(1637) F(1692) F( 723) F(2606) F(2288) F(1041) F(1100) F(2229) \
    F(1409) F(1920) F(2662) F( 667) F(3281) F(  48) F( 233) F(3096) \
    F( 756) F(2573) F(2156) F(1173) F(3015) F( 314) F(3050) F( 279) \
    F(1703) F(1626) F(1651) F(1678) F(2789) F( 540) F(1789) F(1540) \
    F(1847) F(1482) F( 952) F(2377) F(1461) F(1868) F(2687) F( 642) \
    F( 939) F(2390) F(2308) F(1021) F(2437) F( 892) F(2388) F( 941) \
    F( 733) F(2596) F(2337) F( 992) F( 268) F(3061) F( 641) F(2688) \
    F(1584) F(1745) F(2298) F(1031) F(2037) F(1292) F(3220) F( 109) \
    F( 375) F(2954) F(2549) F( 780) F(2090) F(1239) F(1645) F(1684) \
    F(1063) F(2266) F( 319) F(3010) F(2773) F( 556) F( 757) F(2572) \
    F(2099) F(1230) F( 561) F(2768) F(2466) F( 863) F(2594) F( 735) \
    F(2804) F( 525) F(1092) F(2237) F( 403) F(2926) F(1026) F(2303) \
    F(1143) F(2186) F(2150) F(1179) F(2775) F( 554) F( 886) F(2443) \
    F(1722) F(1607) F(1212) F(2117) F(1874) F(1455) F(1029) F(2300) \
    F(2110) F(1219) F(2935) F( 394) F( 885) F(2444) F(2154) F(1175)
// clang-format on

#define MONT(c) ((uint16_t)(((uint32_t)(c) << 16) % MLKEM_Q)),

static const uint16_t zetas_mont[128] = {ZETAS(MONT)};
static const uint16_t gammas_mont[128] = {GAMMAS(MONT)};

/* ---- modular arithmetic (all branch-free) ---------------------------- */

/* floor(2^32 / q): reduce32/divq estimate x/q as (x * M) >> 32, which is
 * the true quotient or one less for every 32-bit x (the error term
 * x * (2^32/q - M) / 2^32 is below 0.45). */
#define BARRETT_M 1290167u

/* r - q if r >= q, else r; for r < 2q. The mask is all-ones exactly when
 * r - q wrapped around. */
static inline uint16_t csubq(uint32_t r)
{
    uint32_t t = r - MLKEM_Q;

    t += MLKEM_Q & (0u - (t >> 31));
    return (uint16_t)t;
}

/* x mod q for any 32-bit x. */
static inline uint16_t reduce32(uint32_t x)
{
    uint32_t t = (uint32_t)(((uint64_t)x * BARRETT_M) >> 32);

    return csubq(x - t * MLKEM_Q);
}

/* floor(x / q) for any 32-bit x, without a division instruction (whose
 * latency can depend on the operand). */
static inline uint32_t divq(uint32_t x)
{
    uint32_t t = (uint32_t)(((uint64_t)x * BARRETT_M) >> 32);
    uint32_t r = x - t * MLKEM_Q; /* in [0, 2q) */

    return t + ((MLKEM_Q - 1 - r) >> 31); /* +1 when r >= q */
}

/* -q^-1 mod 2^16, for Montgomery reduction with R = 2^16. */
#define QINV_NEG 3327u

/* p * 2^-16 mod q, as a value in [0, 2q), for p < q * 2^16. t is chosen so
 * that p + t q is divisible by 2^16; everything fits in 32 bits. */
static inline uint32_t mont_reduce(uint32_t p)
{
    uint32_t t = (p * QINV_NEG) & 0xffff;

    return (p + t * MLKEM_Q) >> 16;
}

/* a * c mod q in [0, q), for a < 2q and cm = c * 2^16 mod q (a constant in
 * Montgomery form from the tables above). */
static inline uint16_t mont_mul(uint32_t a, uint32_t cm)
{
    return csubq(mont_reduce(a * cm));
}

/* ---- polynomial arithmetic -------------------------------------------- */

static void poly_add(poly *r, const poly *a, const poly *b)
{
    for (int i = 0; i < MLKEM_N; i++)
        r->c[i] = csubq((uint32_t)a->c[i] + b->c[i]);
}

static void poly_sub(poly *r, const poly *a, const poly *b)
{
    for (int i = 0; i < MLKEM_N; i++)
        r->c[i] = csubq((uint32_t)a->c[i] + MLKEM_Q - b->c[i]);
}

/* One layer of FIPS 203 Alg. 9 (NTT). Inlined with a constant len so the
 * compiler can vectorize the butterflies (branch-free either way). */
static inline __attribute__((always_inline)) void ntt_layer(poly *f, int len, int *k)
{
    for (int start = 0; start < MLKEM_N; start += 2 * len) {
        uint32_t zeta = zetas_mont[(*k)++];

        for (int j = start; j < start + len; j++) {
            uint32_t t = mont_mul(f->c[j + len], zeta);

            f->c[j + len] = csubq(f->c[j] + MLKEM_Q - t);
            f->c[j] = csubq(f->c[j] + t);
        }
    }
}

/* FIPS 203 Alg. 9 (NTT), in place: len = 128, 64, ..., 2. */
static void poly_ntt(poly *f)
{
    int k = 1;

    ntt_layer(f, 128, &k);
    ntt_layer(f, 64, &k);
    ntt_layer(f, 32, &k);
    ntt_layer(f, 16, &k);
    ntt_layer(f, 8, &k);
    ntt_layer(f, 4, &k);
    ntt_layer(f, 2, &k);
}

/* One layer of FIPS 203 Alg. 10 (NTT^-1), zetas taken in reverse order. */
static inline __attribute__((always_inline)) void invntt_layer(poly *f, int len, int *k)
{
    for (int start = 0; start < MLKEM_N; start += 2 * len) {
        uint32_t zeta = zetas_mont[(*k)--];

        for (int j = start; j < start + len; j++) {
            uint32_t t = f->c[j];

            f->c[j] = csubq(t + f->c[j + len]);
            f->c[j + len] = mont_mul(f->c[j + len] + MLKEM_Q - t, zeta);
        }
    }
}

/* FIPS 203 Alg. 10 (NTT^-1), in place: len = 2, 4, ..., 128, then the
 * factor 128^-1 = 3303 mod q. */
static void poly_invntt(poly *f)
{
    const uint32_t f128 = ((uint32_t)3303 << 16) % MLKEM_Q; /* Montgomery form */
    int k = 127;

    invntt_layer(f, 2, &k);
    invntt_layer(f, 4, &k);
    invntt_layer(f, 8, &k);
    invntt_layer(f, 16, &k);
    invntt_layer(f, 32, &k);
    invntt_layer(f, 64, &k);
    invntt_layer(f, 128, &k);
    for (int j = 0; j < MLKEM_N; j++)
        f->c[j] = mont_mul(f->c[j], f128);
}

/* acc += a * b in the NTT domain (Alg. 11 MultiplyNTTs with Alg. 12
 * BaseCaseMultiply), left unreduced: each call adds less than 3.4e7 per
 * coefficient, so up to 126 calls fit in 32 bits (we make k = 3) before
 * acc_reduce(). mont_reduce(a1 b1) = a1 b1 2^-16 and gammas_mont carries
 * the matching 2^16. */
static void basemul_acc(uint32_t acc[MLKEM_N], const poly *a, const poly *b)
{
    for (int i = 0; i < 128; i++) {
        uint32_t a0 = a->c[2 * i], a1 = a->c[2 * i + 1];
        uint32_t b0 = b->c[2 * i], b1 = b->c[2 * i + 1];

        acc[2 * i] += a0 * b0 + mont_reduce(a1 * b1) * gammas_mont[i];
        acc[2 * i + 1] += a0 * b1 + a1 * b0;
    }
}

static void acc_reduce(poly *r, const uint32_t acc[MLKEM_N])
{
    for (int i = 0; i < MLKEM_N; i++)
        r->c[i] = reduce32(acc[i]);
}

/* ---- encoding and compression (Alg. 5, 6 and §4.2.1) ----------------- */

/* ByteEncode_d of 256 coefficients (each < 2^d) into 32*d bytes. Bits are
 * taken least significant first, as in Alg. 5. */
static void byte_encode(uint8_t *out, const poly *f, unsigned d)
{
    uint32_t acc = 0;
    unsigned bits = 0;

    for (int i = 0; i < MLKEM_N; i++) {
        acc |= (uint32_t)f->c[i] << bits;
        bits += d;
        while (bits >= 8) {
            *out++ = (uint8_t)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
}

/* ByteDecode_d without the final "mod q" (values are < 2^d). */
static void byte_decode_raw(poly *f, const uint8_t *in, unsigned d)
{
    uint32_t acc = 0, mask = (1u << d) - 1;
    unsigned bits = 0;

    for (int i = 0; i < MLKEM_N; i++) {
        while (bits < d) {
            acc |= (uint32_t)*in++ << bits;
            bits += 8;
        }
        f->c[i] = (uint16_t)(acc & mask);
        acc >>= d;
        bits -= d;
    }
}

/* ByteDecode_12: integers mod q, so 12-bit values in [q, 4096) wrap. Used on
 * secret dk_PKE too, hence the branch-free csubq. */
static void poly_frombytes(poly *f, const uint8_t in[POLY_BYTES])
{
    byte_decode_raw(f, in, 12);
    for (int i = 0; i < MLKEM_N; i++)
        f->c[i] = csubq(f->c[i]);
}

/* Compress_d(x) = round(2^d x / q) mod 2^d, round half up. Adding
 * floor(q/2) = 1664 instead of q/2 gives the same result because no
 * multiple of q lies strictly between two consecutive integers. */
static void poly_compress(poly *f, unsigned d)
{
    for (int i = 0; i < MLKEM_N; i++)
        f->c[i] = (uint16_t)(divq(((uint32_t)f->c[i] << d) + MLKEM_Q / 2) & ((1u << d) - 1));
}

/* Decompress_d(y) = round(q y / 2^d) = (q y + 2^(d-1)) >> d. */
static void poly_decompress(poly *f, unsigned d)
{
    for (int i = 0; i < MLKEM_N; i++)
        f->c[i] = (uint16_t)(((uint32_t)f->c[i] * MLKEM_Q + (1u << (d - 1))) >> d);
}

/* ---- sampling (Alg. 7 and 8) ------------------------------------------ */

/* SampleNTT(rho || x || y): rejection sampling from SHAKE128. Branches on
 * the XOF output, which is public (a function of rho, part of ek). */
static void sample_ntt(poly *a, const uint8_t rho[32], uint8_t x, uint8_t y)
{
    struct cry_keccak xof;
    uint8_t seed[34], buf[CRY_SHAKE128_RATE];
    int j = 0;

    memcpy(seed, rho, 32);
    seed[32] = x;
    seed[33] = y;
    cry_keccak_init(&xof, CRY_SHAKE128_RATE);
    cry_keccak_absorb(&xof, seed, sizeof(seed));
    cry_keccak_finish(&xof, 0x1f);
    while (j < MLKEM_N) {
        cry_keccak_squeeze(&xof, buf, sizeof(buf));
        for (size_t p = 0; p + 3 <= sizeof(buf) && j < MLKEM_N; p += 3) {
            uint16_t d1 = (uint16_t)(buf[p] | ((buf[p + 1] & 0x0f) << 8));
            uint16_t d2 = (uint16_t)((buf[p + 1] >> 4) | (buf[p + 2] << 4));

            if (d1 < MLKEM_Q)
                a->c[j++] = d1;
            if (d2 < MLKEM_Q && j < MLKEM_N)
                a->c[j++] = d2;
        }
    }
}

/* SamplePolyCBD_2 of PRF_2(seed, nonce) = SHAKE256(seed || nonce, 128 bytes).
 * Coefficient i is (b[4i] + b[4i+1]) - (b[4i+2] + b[4i+3]) mod q; the bit
 * counts are formed with masks and adds, never with a branch. */
static void sample_cbd2(poly *f, const uint8_t seed[32], uint8_t nonce)
{
    uint8_t in[33], buf[PRF_BYTES];

    memcpy(in, seed, 32);
    in[32] = nonce;
    cry_shake256(buf, sizeof(buf), in, sizeof(in));
    for (int i = 0; i < PRF_BYTES / 4; i++) {
        uint32_t w = (uint32_t)buf[4 * i] | (uint32_t)buf[4 * i + 1] << 8 |
                     (uint32_t)buf[4 * i + 2] << 16 | (uint32_t)buf[4 * i + 3] << 24;
        /* each 2-bit field now holds the sum of its two input bits */
        uint32_t s = (w & 0x55555555u) + ((w >> 1) & 0x55555555u);

        for (int j = 0; j < 8; j++) {
            uint32_t a = (s >> (4 * j)) & 3, b = (s >> (4 * j + 2)) & 3;

            f->c[8 * i + j] = csubq(a + MLKEM_Q - b);
        }
    }
    ut_memzero(in, sizeof(in));
    ut_memzero(buf, sizeof(buf));
}

/* ---- K-PKE (Alg. 13-15) ----------------------------------------------- */

/* K-PKE.KeyGen(d): writes ek (1184 bytes) and dk_PKE (1152 bytes). The matrix
 * entry A[i][j] = SampleNTT(rho || j || i) is generated when needed. */
static void kpke_keygen(uint8_t ek[CRY_MLKEM768_EK_BYTES], uint8_t dkpke[POLYVEC_BYTES],
                        const uint8_t d[32])
{
    uint8_t in[33], g[64]; /* g = rho || sigma */
    poly s[MLKEM_K], e, t, a;
    uint32_t acc[MLKEM_N];
    uint8_t nonce = 0;

    memcpy(in, d, 32);
    in[32] = MLKEM_K; /* domain separation by k (FIPS 203 final) */
    cry_sha3_512(g, in, sizeof(in));
    CRY_DECLASSIFY(g, 32); /* rho is published in ek */
    for (int i = 0; i < MLKEM_K; i++) {
        sample_cbd2(&s[i], g + 32, nonce++);
        poly_ntt(&s[i]);
    }
    for (int i = 0; i < MLKEM_K; i++) {
        sample_cbd2(&e, g + 32, nonce++);
        poly_ntt(&e);
        memset(acc, 0, sizeof(acc));
        for (int j = 0; j < MLKEM_K; j++) {
            sample_ntt(&a, g, (uint8_t)j, (uint8_t)i);
            basemul_acc(acc, &a, &s[j]);
        }
        acc_reduce(&t, acc);
        poly_add(&t, &t, &e);
        byte_encode(ek + i * POLY_BYTES, &t, 12);
    }
    memcpy(ek + POLYVEC_BYTES, g, 32);
    for (int i = 0; i < MLKEM_K; i++)
        byte_encode(dkpke + i * POLY_BYTES, &s[i], 12);

    ut_memzero(in, sizeof(in));
    ut_memzero(g, sizeof(g));
    ut_memzero(s, sizeof(s));
    ut_memzero(&e, sizeof(e));
    ut_memzero(&t, sizeof(t));
    ut_memzero(acc, sizeof(acc));
}

/* K-PKE.Encrypt(ek, m, r) -> c. ek is assumed to have passed the §7.2
 * check, or to come from a dk that passed §7.3 (its coefficients are
 * reduced mod q on decoding either way). */
static void kpke_encrypt(uint8_t c[CRY_MLKEM768_CT_BYTES], const uint8_t ek[CRY_MLKEM768_EK_BYTES],
                         const uint8_t m[32], const uint8_t r[32])
{
    const uint8_t *rho = ek + POLYVEC_BYTES;
    poly y[MLKEM_K], p, a, e;
    uint32_t acc[MLKEM_N];
    uint8_t nonce = 0;

    for (int i = 0; i < MLKEM_K; i++) {
        sample_cbd2(&y[i], r, nonce++);
        poly_ntt(&y[i]);
    }
    /* u[i] = NTT^-1(sum_j A[j][i] * y[j]) + e1[i], A[j][i] = SampleNTT(rho||i||j) */
    for (int i = 0; i < MLKEM_K; i++) {
        memset(acc, 0, sizeof(acc));
        for (int j = 0; j < MLKEM_K; j++) {
            sample_ntt(&a, rho, (uint8_t)i, (uint8_t)j);
            basemul_acc(acc, &a, &y[j]);
        }
        acc_reduce(&p, acc);
        poly_invntt(&p);
        sample_cbd2(&e, r, (uint8_t)(MLKEM_K + i)); /* e1[i]: nonces k..2k-1 */
        poly_add(&p, &p, &e);
        poly_compress(&p, MLKEM_DU);
        byte_encode(c + i * 32 * MLKEM_DU, &p, MLKEM_DU);
    }
    /* v = NTT^-1(t^T * y) + e2 + Decompress_1(m) */
    memset(acc, 0, sizeof(acc));
    for (int j = 0; j < MLKEM_K; j++) {
        poly_frombytes(&a, ek + j * POLY_BYTES);
        basemul_acc(acc, &a, &y[j]);
    }
    acc_reduce(&p, acc);
    poly_invntt(&p);
    sample_cbd2(&e, r, 2 * MLKEM_K); /* e2 */
    poly_add(&p, &p, &e);
    for (int i = 0; i < MLKEM_N; i++) {
        uint32_t bit = (m[i / 8] >> (i % 8)) & 1;

        /* Decompress_1(bit) = bit * 1665, selected with a mask */
        e.c[i] = (uint16_t)((0u - bit) & ((MLKEM_Q + 1) / 2));
    }
    poly_add(&p, &p, &e);
    poly_compress(&p, MLKEM_DV);
    byte_encode(c + C1_BYTES, &p, MLKEM_DV);

    ut_memzero(y, sizeof(y));
    ut_memzero(&p, sizeof(p));
    ut_memzero(acc, sizeof(acc));
    ut_memzero(&e, sizeof(e));
}

/* K-PKE.Decrypt(dk_PKE, c) -> m. */
static void kpke_decrypt(uint8_t m[32], const uint8_t dkpke[POLYVEC_BYTES],
                         const uint8_t c[CRY_MLKEM768_CT_BYTES])
{
    poly p, u, s, v;
    uint32_t acc[MLKEM_N];

    memset(acc, 0, sizeof(acc));
    for (int i = 0; i < MLKEM_K; i++) {
        byte_decode_raw(&u, c + i * 32 * MLKEM_DU, MLKEM_DU);
        poly_decompress(&u, MLKEM_DU);
        poly_ntt(&u);
        poly_frombytes(&s, dkpke + i * POLY_BYTES);
        basemul_acc(acc, &s, &u);
    }
    acc_reduce(&p, acc);
    poly_invntt(&p);
    byte_decode_raw(&v, c + C1_BYTES, MLKEM_DV);
    poly_decompress(&v, MLKEM_DV);
    poly_sub(&v, &v, &p); /* w = v - NTT^-1(s^T * NTT(u)) */
    poly_compress(&v, 1);
    byte_encode(m, &v, 1);

    ut_memzero(&p, sizeof(p));
    ut_memzero(acc, sizeof(acc));
    ut_memzero(&s, sizeof(s));
    ut_memzero(&v, sizeof(v));
}

/* ---- ML-KEM internal algorithms (Alg. 16-18) -------------------------- */

void cry_mlkem768_builtin_keygen(const uint8_t d[32], const uint8_t z[32],
                                 uint8_t ek[CRY_MLKEM768_EK_BYTES],
                                 uint8_t dk[CRY_MLKEM768_DK_BYTES])
{
    kpke_keygen(ek, dk, d);
    memcpy(dk + DK_EK_OFF, ek, CRY_MLKEM768_EK_BYTES);
    cry_sha3_256(dk + DK_H_OFF, ek, CRY_MLKEM768_EK_BYTES);
    memcpy(dk + DK_Z_OFF, z, 32);
}

void cry_mlkem768_builtin_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                                 uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    uint8_t in[64], g[64]; /* in = m || H(ek); g = K || r */

    memcpy(in, m, 32);
    cry_sha3_256(in + 32, ek, CRY_MLKEM768_EK_BYTES);
    cry_sha3_512(g, in, sizeof(in));
    kpke_encrypt(ct, ek, m, g + 32);
    memcpy(ss, g, CRY_MLKEM_SS_BYTES);
    ut_memzero(in, sizeof(in));
    ut_memzero(g, sizeof(g));
}

/* Keeps the compiler from reasoning about the value of a mask (and turning
 * a masked select back into a branch). */
static inline uint8_t value_barrier_u8(uint8_t x)
{
    __asm__("" : "+r"(x));
    return x;
}

void cry_mlkem768_builtin_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                                 const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                                 uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    uint8_t in[64], g[64], kbar[32], cprime[CRY_MLKEM768_CT_BYTES];
    struct cry_keccak j;
    uint8_t keep;

    kpke_decrypt(in, dk, ct); /* m' */
    memcpy(in + 32, dk + DK_H_OFF, 32);
    cry_sha3_512(g, in, sizeof(in)); /* (K', r') = G(m' || h) */
    /* K-bar = J(z || c) = SHAKE256(z || c, 32) */
    cry_keccak_init(&j, CRY_SHAKE256_RATE);
    cry_keccak_absorb(&j, dk + DK_Z_OFF, 32);
    cry_keccak_absorb(&j, ct, CRY_MLKEM768_CT_BYTES);
    cry_keccak_finish(&j, 0x1f);
    cry_keccak_squeeze(&j, kbar, sizeof(kbar));
    kpke_encrypt(cprime, dk + DK_EK_OFF, in, g + 32);
    /* keep = 0xff when c == c' (return K'), 0x00 otherwise (return K-bar).
     * ut_ct_eq's running time does not depend on where the bytes differ. */
    keep = value_barrier_u8((uint8_t)(0u - (unsigned)ut_ct_eq(ct, cprime, sizeof(cprime))));
    for (int i = 0; i < CRY_MLKEM_SS_BYTES; i++)
        ss[i] = (uint8_t)((g[i] & keep) | (kbar[i] & (uint8_t)~keep));

    ut_memzero(in, sizeof(in));
    ut_memzero(g, sizeof(g));
    ut_memzero(kbar, sizeof(kbar));
    ut_memzero(cprime, sizeof(cprime));
    cry_keccak_wipe(&j);
}

/* ---- public API (kem.h) ----------------------------------------------- */

const char *cry_mlkem_backend(void)
{
#ifdef CRY_HAVE_OPENSSL_MLKEM
    return "openssl";
#else
    return "builtin";
#endif
}

/* §7.2: ByteEncode12(ByteDecode12(ek)) == ek, i.e. every 12-bit value < q.
 * ek is public, so the comparison may exit early. */
int cry_mlkem768_check_ek(const uint8_t ek[CRY_MLKEM768_EK_BYTES])
{
    poly t;

    for (int i = 0; i < MLKEM_K; i++) {
        byte_decode_raw(&t, ek + i * POLY_BYTES, 12);
        for (int j = 0; j < MLKEM_N; j++) {
            if (t.c[j] >= MLKEM_Q)
                return -EINVAL;
        }
    }
    return 0;
}

/* §7.3: H(ek embedded in dk) == h embedded in dk. Both are public parts of
 * dk; the secret parts (dk_PKE, z) are not looked at. */
int cry_mlkem768_check_dk(const uint8_t dk[CRY_MLKEM768_DK_BYTES])
{
    uint8_t h[32];

    cry_sha3_256(h, dk + DK_EK_OFF, CRY_MLKEM768_EK_BYTES);
    return ut_ct_eq(h, dk + DK_H_OFF, 32) ? 0 : -EINVAL;
}

int cry_mlkem768_keygen(const uint8_t d[32], const uint8_t z[32], uint8_t ek[CRY_MLKEM768_EK_BYTES],
                        uint8_t dk[CRY_MLKEM768_DK_BYTES])
{
#ifdef CRY_HAVE_OPENSSL_MLKEM
    return cry_mlkem768_ossl_keygen(d, z, ek, dk);
#else
    cry_mlkem768_builtin_keygen(d, z, ek, dk);
    return 0;
#endif
}

int cry_mlkem768_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                        uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    if (cry_mlkem768_check_ek(ek) != 0)
        return -EINVAL;
#ifdef CRY_HAVE_OPENSSL_MLKEM
    return cry_mlkem768_ossl_encaps(ek, m, ct, ss);
#else
    cry_mlkem768_builtin_encaps(ek, m, ct, ss);
    return 0;
#endif
}

int cry_mlkem768_decaps_unchecked(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                                  const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                                  uint8_t ss[CRY_MLKEM_SS_BYTES])
{
#ifdef CRY_HAVE_OPENSSL_MLKEM
    return cry_mlkem768_ossl_decaps(dk, ct, ss);
#else
    cry_mlkem768_builtin_decaps(dk, ct, ss);
    return 0;
#endif
}

int cry_mlkem768_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                        const uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    if (cry_mlkem768_check_dk(dk) != 0)
        return -EINVAL;
    return cry_mlkem768_decaps_unchecked(dk, ct, ss);
}

int cry_mlkem768_keygen_rand(uint8_t ek[CRY_MLKEM768_EK_BYTES], uint8_t dk[CRY_MLKEM768_DK_BYTES])
{
    uint8_t seed[64];
    int rc = -EIO;

    if (RAND_bytes(seed, sizeof(seed)) == 1)
        rc = cry_mlkem768_keygen(seed, seed + 32, ek, dk);
    ut_memzero(seed, sizeof(seed));
    return rc;
}

int cry_mlkem768_encaps_rand(const uint8_t ek[CRY_MLKEM768_EK_BYTES],
                             uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    uint8_t m[32];
    int rc = -EIO;

    if (RAND_bytes(m, sizeof(m)) == 1)
        rc = cry_mlkem768_encaps(ek, m, ct, ss);
    ut_memzero(m, sizeof(m));
    return rc;
}
