/*
 * ct_valgrind - constant-time check of the KEMs with valgrind memcheck.
 *
 * Memcheck reports a conditional jump or a memory address that depends on
 * "undefined" bytes. Marking the secret inputs undefined (client request
 * VALGRIND_MAKE_MEM_UNDEFINED) therefore turns every secret-dependent
 * branch or table index into a memcheck error, anywhere in the call tree.
 * Outputs that are public (ek, ct, pk) or that we compare are marked
 * defined again before use. Run through tests/crypto/run-ct.sh, which uses
 * valgrind --error-exitcode=1: zero errors is the pass criterion.
 *
 * Limits: memcheck sees branches and addresses, not instruction timing
 * (a variable-latency division would pass; mlkem.c uses none). Built with
 * -DCRY_CT_VALGRIND, which only enables CRY_DECLASSIFY on rho (public by
 * definition: it is the last 32 bytes of ek).
 *
 * What is secret per operation:
 *   mlkem keygen:  d, z              mlkem encaps: m (ek is public)
 *   mlkem decaps:  dk_PKE and z inside dk. ek and H(ek) inside dk are
 *                  public (the §7.3 check compares them with a branch).
 *   xwing keygen:  seed              xwing encaps: eseed (pk is public)
 *   xwing decaps:  sk (the seed)
 *
 * Usage: ct_valgrind MODE, MODE one of the names in `modes` below, or
 * "canary": a deliberate secret-dependent branch that valgrind MUST flag
 * (run-ct.sh requires that run to fail, proving the harness can fail).
 * Exit 0 when the outputs are right (valgrind decides the CT verdict).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <valgrind/memcheck.h>

#include "crypto/kem.h"

#define SECRET(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define PUBLIC(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))

enum { EK = CRY_MLKEM768_EK_BYTES, DK = CRY_MLKEM768_DK_BYTES, CT = CRY_MLKEM768_CT_BYTES };

static uint8_t ek[EK], dk[DK], ct[CT], ek2[EK], dk2[DK], ct2[CT];
static uint8_t xpk[CRY_XWING_PK_BYTES], xct[CRY_XWING_CT_BYTES];
static uint8_t xpk2[CRY_XWING_PK_BYTES], xct2[CRY_XWING_CT_BYTES];

/* Fixed, arbitrary inputs: the check is about code paths, not values. */
static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + 31 * i + (i >> 3));
}

static int check(int ok, const char *what)
{
    if (!ok)
        fprintf(stderr, "ct_valgrind: %s\n", what);
    return ok ? 0 : 1;
}

static int mlkem_keygen(void)
{
    uint8_t d[32], z[32];
    int rc;

    fill(d, 32, 1);
    fill(z, 32, 2);
    if (cry_mlkem768_keygen(d, z, ek, dk) != 0) /* reference, all defined */
        return 1;
    SECRET(d, 32);
    SECRET(z, 32);
    rc = cry_mlkem768_keygen(d, z, ek2, dk2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(ek2, EK);
    PUBLIC(dk2, DK);
    return check(rc == 0 && memcmp(ek, ek2, EK) == 0 && memcmp(dk, dk2, DK) == 0, "keygen");
}

static int mlkem_encaps(void)
{
    uint8_t d[32], z[32], m[32], ss[32], ss2[32];
    int rc;

    fill(d, 32, 1);
    fill(z, 32, 2);
    fill(m, 32, 3);
    if (cry_mlkem768_keygen(d, z, ek, dk) != 0 || cry_mlkem768_encaps(ek, m, ct, ss) != 0)
        return 1;
    SECRET(m, 32);
    rc = cry_mlkem768_encaps(ek, m, ct2, ss2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(ct2, CT);
    PUBLIC(ss2, 32);
    return check(rc == 0 && memcmp(ct, ct2, CT) == 0 && memcmp(ss, ss2, 32) == 0, "encaps");
}

static int mlkem_decaps(int tamper)
{
    uint8_t d[32], z[32], m[32], ss[32], ss2[32], ref[32];
    int rc;

    fill(d, 32, 1);
    fill(z, 32, 2);
    fill(m, 32, 3);
    if (cry_mlkem768_keygen(d, z, ek, dk) != 0 || cry_mlkem768_encaps(ek, m, ct, ss) != 0)
        return 1;
    if (tamper)
        ct[CT / 2] ^= 0x08;
    if (cry_mlkem768_decaps(dk, ct, ref) != 0)
        return 1;
    SECRET(dk, 1152);         /* dk_PKE */
    SECRET(dk + DK - 32, 32); /* z */
    rc = cry_mlkem768_decaps(dk, ct, ss2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(ss2, 32);
    PUBLIC(dk, DK);
    return check(rc == 0 && memcmp(ss2, ref, 32) == 0 && (memcmp(ss2, ss, 32) == 0) == !tamper,
                 tamper ? "decaps (tampered)" : "decaps");
}

static int xwing_keygen(void)
{
    uint8_t seed[32];
    int rc;

    fill(seed, 32, 4);
    if (cry_xwing_keygen(seed, xpk) != 0)
        return 1;
    SECRET(seed, 32);
    rc = cry_xwing_keygen(seed, xpk2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(xpk2, sizeof(xpk2));
    return check(rc == 0 && memcmp(xpk, xpk2, sizeof(xpk)) == 0, "xwing keygen");
}

static int xwing_encaps(void)
{
    uint8_t seed[32], eseed[64], ss[32], ss2[32];
    int rc;

    fill(seed, 32, 4);
    fill(eseed, 64, 5);
    if (cry_xwing_keygen(seed, xpk) != 0 || cry_xwing_encaps(xpk, eseed, xct, ss) != 0)
        return 1;
    SECRET(eseed, 64);
    rc = cry_xwing_encaps(xpk, eseed, xct2, ss2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(xct2, sizeof(xct2));
    PUBLIC(ss2, 32);
    return check(rc == 0 && memcmp(xct, xct2, sizeof(xct)) == 0 && memcmp(ss, ss2, 32) == 0,
                 "xwing encaps");
}

static int xwing_decaps(int tamper)
{
    uint8_t seed[32], eseed[64], ss[32], ss2[32], ref[32];
    int rc;

    fill(seed, 32, 4);
    fill(eseed, 64, 5);
    if (cry_xwing_keygen(seed, xpk) != 0 || cry_xwing_encaps(xpk, eseed, xct, ss) != 0)
        return 1;
    if (tamper)
        xct[100] ^= 0x40;
    if (cry_xwing_decaps(seed, xct, ref) != 0)
        return 1;
    SECRET(seed, 32);
    rc = cry_xwing_decaps(seed, xct, ss2);
    PUBLIC(&rc, sizeof(rc));
    PUBLIC(ss2, 32);
    return check(rc == 0 && memcmp(ss2, ref, 32) == 0 && (memcmp(ss2, ss, 32) == 0) == !tamper,
                 tamper ? "xwing decaps (tampered)" : "xwing decaps");
}

static int mlkem_decaps_valid(void)
{
    return mlkem_decaps(0);
}

static int mlkem_decaps_tampered(void)
{
    return mlkem_decaps(1);
}

static int xwing_decaps_valid(void)
{
    return xwing_decaps(0);
}

static int xwing_decaps_tampered(void)
{
    return xwing_decaps(1);
}

/* A secret-dependent branch on purpose: valgrind must report it. */
static int canary(void)
{
    uint8_t secret[32];
    volatile int sink = 0;

    fill(secret, 32, 6);
    SECRET(secret, 32);
    if (secret[0] & 1)
        sink++;
    return sink < 0;
}

static const struct {
    const char *name;
    int (*fn)(void);
} modes[] = {
    {"mlkem-keygen", mlkem_keygen},
    {"mlkem-encaps", mlkem_encaps},
    {"mlkem-decaps", mlkem_decaps_valid},
    {"mlkem-decaps-tampered", mlkem_decaps_tampered},
    {"xwing-keygen", xwing_keygen},
    {"xwing-encaps", xwing_encaps},
    {"xwing-decaps", xwing_decaps_valid},
    {"xwing-decaps-tampered", xwing_decaps_tampered},
    {"canary", canary},
};

int main(int argc, char **argv)
{
    const char *mode = argc == 2 ? argv[1] : "";

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(mode, modes[i].name) == 0)
            return modes[i].fn();
    }
    fputs("usage: ct_valgrind MODE; modes:", stderr);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        fprintf(stderr, " %s", modes[i].name);
    fputc('\n', stderr);
    return 2;
}
