/*
 * mlkem_keccak.c - Keccak-f[1600] and the SHA3/SHAKE sponges (FIPS 202)
 * used by the builtin ML-KEM. Written from FIPS 202 §3 and §5: the round
 * constants and rotation offsets below were generated from the spec's
 * algorithms 2 and 5 (LFSR rc(t), offsets (t+1)(t+2)/2 mod 64).
 *
 * Lanes are stored as host integers and converted to/from bytes in little
 * endian explicitly, so the code is independent of host byte order. Every
 * loop bound and index is public (lengths only); no branch depends on data.
 */
#include "crypto/mlkem_internal.h"

#include <string.h>

#include "util/mem.h"

static const uint64_t keccak_rc[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

#define ROL64(x, n) (((x) << (n)) | ((x) >> (64 - (n)))) /* 0 < n < 64 */

/*
 * One round (theta, rho, pi, chi, iota) reading lanes A0..A24 and writing
 * E0..E24; lane (x, y) is number x + 5y. rho and pi are folded together:
 * output row y' takes the lanes A[(x + 3y') mod 5, x] rotated by their rho
 * offsets (FIPS 202 §3.2.2-3.2.3), then chi combines each row of five.
 */
#define KECCAK_ROUND(A, E, rc)                                                                     \
    do {                                                                                           \
        uint64_t c0 = A##0 ^ A##5 ^ A##10 ^ A##15 ^ A##20;                                         \
        uint64_t c1 = A##1 ^ A##6 ^ A##11 ^ A##16 ^ A##21;                                         \
        uint64_t c2 = A##2 ^ A##7 ^ A##12 ^ A##17 ^ A##22;                                         \
        uint64_t c3 = A##3 ^ A##8 ^ A##13 ^ A##18 ^ A##23;                                         \
        uint64_t c4 = A##4 ^ A##9 ^ A##14 ^ A##19 ^ A##24;                                         \
        uint64_t d0 = c4 ^ ROL64(c1, 1), d1 = c0 ^ ROL64(c2, 1), d2 = c1 ^ ROL64(c3, 1);           \
        uint64_t d3 = c2 ^ ROL64(c4, 1), d4 = c3 ^ ROL64(c0, 1);                                   \
        uint64_t b0, b1, b2, b3, b4;                                                               \
        b0 = A##0 ^ d0;                                                                            \
        b1 = ROL64(A##6 ^ d1, 44);                                                                 \
        b2 = ROL64(A##12 ^ d2, 43);                                                                \
        b3 = ROL64(A##18 ^ d3, 21);                                                                \
        b4 = ROL64(A##24 ^ d4, 14);                                                                \
        E##0 = b0 ^ (~b1 & b2) ^ (rc);                                                             \
        E##1 = b1 ^ (~b2 & b3);                                                                    \
        E##2 = b2 ^ (~b3 & b4);                                                                    \
        E##3 = b3 ^ (~b4 & b0);                                                                    \
        E##4 = b4 ^ (~b0 & b1);                                                                    \
        b0 = ROL64(A##3 ^ d3, 28);                                                                 \
        b1 = ROL64(A##9 ^ d4, 20);                                                                 \
        b2 = ROL64(A##10 ^ d0, 3);                                                                 \
        b3 = ROL64(A##16 ^ d1, 45);                                                                \
        b4 = ROL64(A##22 ^ d2, 61);                                                                \
        E##5 = b0 ^ (~b1 & b2);                                                                    \
        E##6 = b1 ^ (~b2 & b3);                                                                    \
        E##7 = b2 ^ (~b3 & b4);                                                                    \
        E##8 = b3 ^ (~b4 & b0);                                                                    \
        E##9 = b4 ^ (~b0 & b1);                                                                    \
        b0 = ROL64(A##1 ^ d1, 1);                                                                  \
        b1 = ROL64(A##7 ^ d2, 6);                                                                  \
        b2 = ROL64(A##13 ^ d3, 25);                                                                \
        b3 = ROL64(A##19 ^ d4, 8);                                                                 \
        b4 = ROL64(A##20 ^ d0, 18);                                                                \
        E##10 = b0 ^ (~b1 & b2);                                                                   \
        E##11 = b1 ^ (~b2 & b3);                                                                   \
        E##12 = b2 ^ (~b3 & b4);                                                                   \
        E##13 = b3 ^ (~b4 & b0);                                                                   \
        E##14 = b4 ^ (~b0 & b1);                                                                   \
        b0 = ROL64(A##4 ^ d4, 27);                                                                 \
        b1 = ROL64(A##5 ^ d0, 36);                                                                 \
        b2 = ROL64(A##11 ^ d1, 10);                                                                \
        b3 = ROL64(A##17 ^ d2, 15);                                                                \
        b4 = ROL64(A##23 ^ d3, 56);                                                                \
        E##15 = b0 ^ (~b1 & b2);                                                                   \
        E##16 = b1 ^ (~b2 & b3);                                                                   \
        E##17 = b2 ^ (~b3 & b4);                                                                   \
        E##18 = b3 ^ (~b4 & b0);                                                                   \
        E##19 = b4 ^ (~b0 & b1);                                                                   \
        b0 = ROL64(A##2 ^ d2, 62);                                                                 \
        b1 = ROL64(A##8 ^ d3, 55);                                                                 \
        b2 = ROL64(A##14 ^ d4, 39);                                                                \
        b3 = ROL64(A##15 ^ d0, 41);                                                                \
        b4 = ROL64(A##21 ^ d1, 2);                                                                 \
        E##20 = b0 ^ (~b1 & b2);                                                                   \
        E##21 = b1 ^ (~b2 & b3);                                                                   \
        E##22 = b2 ^ (~b3 & b4);                                                                   \
        E##23 = b3 ^ (~b4 & b0);                                                                   \
        E##24 = b4 ^ (~b0 & b1);                                                                   \
    } while (0)

void cry_keccak_f1600(uint64_t s[25])
{
    uint64_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3], a4 = s[4], a5 = s[5], a6 = s[6];
    uint64_t a7 = s[7], a8 = s[8], a9 = s[9], a10 = s[10], a11 = s[11], a12 = s[12];
    uint64_t a13 = s[13], a14 = s[14], a15 = s[15], a16 = s[16], a17 = s[17], a18 = s[18];
    uint64_t a19 = s[19], a20 = s[20], a21 = s[21], a22 = s[22], a23 = s[23], a24 = s[24];
    uint64_t e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15, e16, e17, e18,
        e19, e20, e21, e22, e23, e24;

    for (int round = 0; round < 24; round += 2) {
        KECCAK_ROUND(a, e, keccak_rc[round]);
        KECCAK_ROUND(e, a, keccak_rc[round + 1]);
    }
    s[0] = a0, s[1] = a1, s[2] = a2, s[3] = a3, s[4] = a4, s[5] = a5, s[6] = a6, s[7] = a7;
    s[8] = a8, s[9] = a9, s[10] = a10, s[11] = a11, s[12] = a12, s[13] = a13, s[14] = a14;
    s[15] = a15, s[16] = a16, s[17] = a17, s[18] = a18, s[19] = a19, s[20] = a20, s[21] = a21;
    s[22] = a22, s[23] = a23, s[24] = a24;
}

static inline uint64_t load64_le(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void cry_keccak_init(struct cry_keccak *k, size_t rate)
{
    memset(k->s, 0, sizeof(k->s));
    k->rate = rate;
    k->pos = 0;
}

void cry_keccak_absorb(struct cry_keccak *k, const uint8_t *in, size_t len)
{
    /* Byte-wise up to a lane boundary, then whole lanes, then the tail. */
    while (len > 0) {
        if (k->pos % 8 == 0 && len >= 8) {
            k->s[k->pos / 8] ^= load64_le(in);
            k->pos += 8;
            in += 8;
            len -= 8;
        } else {
            k->s[k->pos / 8] ^= (uint64_t)*in << (8 * (k->pos % 8));
            k->pos++;
            in++;
            len--;
        }
        if (k->pos == k->rate) {
            cry_keccak_f1600(k->s);
            k->pos = 0;
        }
    }
}

void cry_keccak_finish(struct cry_keccak *k, uint8_t ds)
{
    /* pad10*1 with the domain bits: ds at the first free byte, 0x80 in the
     * last byte of the block (they may coincide, hence XOR). */
    k->s[k->pos / 8] ^= (uint64_t)ds << (8 * (k->pos % 8));
    k->s[(k->rate - 1) / 8] ^= (uint64_t)0x80 << (8 * ((k->rate - 1) % 8));
    cry_keccak_f1600(k->s);
    k->pos = 0;
}

void cry_keccak_squeeze(struct cry_keccak *k, uint8_t *out, size_t len)
{
    while (len > 0) {
        if (k->pos == k->rate) {
            cry_keccak_f1600(k->s);
            k->pos = 0;
        }
        if (k->pos % 8 == 0 && len >= 8 && k->pos + 8 <= k->rate) {
            uint64_t v = k->s[k->pos / 8];

            for (int i = 0; i < 8; i++)
                out[i] = (uint8_t)(v >> (8 * i));
            k->pos += 8;
            out += 8;
            len -= 8;
        } else {
            *out++ = (uint8_t)(k->s[k->pos / 8] >> (8 * (k->pos % 8)));
            k->pos++;
            len--;
        }
    }
}

void cry_keccak_wipe(struct cry_keccak *k)
{
    ut_memzero(k, sizeof(*k));
}

static void one_shot(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen, size_t rate,
                     uint8_t ds)
{
    struct cry_keccak k;

    cry_keccak_init(&k, rate);
    cry_keccak_absorb(&k, in, inlen);
    cry_keccak_finish(&k, ds);
    cry_keccak_squeeze(&k, out, outlen);
    cry_keccak_wipe(&k);
}

void cry_sha3_256(uint8_t out[32], const uint8_t *in, size_t len)
{
    one_shot(out, 32, in, len, CRY_SHA3_256_RATE, 0x06);
}

void cry_sha3_512(uint8_t out[64], const uint8_t *in, size_t len)
{
    one_shot(out, 64, in, len, CRY_SHA3_512_RATE, 0x06);
}

void cry_shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen)
{
    one_shot(out, outlen, in, inlen, CRY_SHAKE128_RATE, 0x1f);
}

void cry_shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen)
{
    one_shot(out, outlen, in, inlen, CRY_SHAKE256_RATE, 0x1f);
}
