/*
 * cry-tool - developer front end to lib/crypto's KEMs (hex in, hex out).
 *
 *   cry-tool mlkem768 keygen D Z     -> ek=<hex> / dk=<hex>
 *   cry-tool mlkem768 encaps EK M    -> ct=<hex> / ss=<hex>
 *   cry-tool mlkem768 decaps DK C    -> ss=<hex>
 *   cry-tool xwing keygen SEED       -> sk=<hex> / pk=<hex>
 *   cry-tool xwing encaps PK ESEED   -> ct=<hex> / ss=<hex>
 *   cry-tool xwing decaps SK CT      -> ss=<hex>
 *   cry-tool bench [SECONDS]         -> operations per second, one line each
 *
 * Hex input may use either case; output is lower case. Exit status: 0 ok,
 * 1 bad argument (not hex, wrong length, failed FIPS 203 key check) or
 * crypto failure, 2 usage. Used by tests/crypto/run-interop.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/hex.h"
#include "crypto/kem.h"
#include "util/mem.h"

static void usage(void)
{
    fputs("usage: cry-tool mlkem768 keygen D Z | mlkem768 encaps EK M | mlkem768 decaps DK C\n"
          "       cry-tool xwing keygen SEED | xwing encaps PK ESEED | xwing decaps SK CT\n"
          "       cry-tool bench [SECONDS]\n"
          "all arguments are hex strings of fixed length (see the error message)\n",
          stderr);
}

/* Decodes hex argument `name` into exactly n bytes; prints why not and
 * returns -1 otherwise. */
static int parse_hex(const char *name, const char *hex, uint8_t *out, size_t n)
{
    size_t len = strlen(hex);

    if (len != 2 * n) {
        fprintf(stderr, "cry-tool: %s: expected %zu bytes (%zu hex digits), got %zu hex digits\n",
                name, n, 2 * n, len);
        return -1;
    }
    if (ut_hex_decode(hex, len, out, n) < 0) {
        size_t bad = strspn(hex, "0123456789abcdefABCDEF");
        fprintf(stderr, "cry-tool: %s: not a hex string (bad character at offset %zu)\n", name,
                bad);
        return -1;
    }
    return 0;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    printf("%s=", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('\n');
}

/* Reports a library error for argument `name`; returns exit status 1. */
static int report(int rc, const char *name, const char *what)
{
    if (rc == -EINVAL)
        fprintf(stderr, "cry-tool: %s: %s\n", name, what);
    else
        fprintf(stderr, "cry-tool: crypto failure (%d)\n", rc);
    return 1;
}

static int cmd_mlkem(const char *op, char **arg)
{
    static uint8_t ek[CRY_MLKEM768_EK_BYTES], dk[CRY_MLKEM768_DK_BYTES], ct[CRY_MLKEM768_CT_BYTES];
    uint8_t a[32], b[32], ss[CRY_MLKEM_SS_BYTES];
    int rc;

    if (strcmp(op, "keygen") == 0) {
        if (parse_hex("D", arg[0], a, 32) || parse_hex("Z", arg[1], b, 32))
            return 1;
        rc = cry_mlkem768_keygen(a, b, ek, dk);
        if (rc != 0)
            return report(rc, "D/Z", "key generation failed");
        print_hex("ek", ek, sizeof(ek));
        print_hex("dk", dk, sizeof(dk));
    } else if (strcmp(op, "encaps") == 0) {
        if (parse_hex("EK", arg[0], ek, sizeof(ek)) || parse_hex("M", arg[1], a, 32))
            return 1;
        rc = cry_mlkem768_encaps(ek, a, ct, ss);
        if (rc != 0)
            return report(rc, "EK",
                          "encapsulation key check failed (FIPS 203 7.2: a coefficient >= q)");
        print_hex("ct", ct, sizeof(ct));
        print_hex("ss", ss, sizeof(ss));
    } else if (strcmp(op, "decaps") == 0) {
        if (parse_hex("DK", arg[0], dk, sizeof(dk)) || parse_hex("C", arg[1], ct, sizeof(ct)))
            return 1;
        rc = cry_mlkem768_decaps(dk, ct, ss);
        if (rc != 0)
            return report(rc, "DK",
                          "decapsulation key check failed (FIPS 203 7.3: H(ek) mismatch)");
        print_hex("ss", ss, sizeof(ss));
    } else {
        return 2;
    }
    ut_memzero(a, sizeof(a));
    ut_memzero(b, sizeof(b));
    ut_memzero(dk, sizeof(dk));
    ut_memzero(ss, sizeof(ss));
    return 0;
}

static int cmd_xwing(const char *op, char **arg)
{
    static uint8_t pk[CRY_XWING_PK_BYTES], ct[CRY_XWING_CT_BYTES];
    uint8_t sk[CRY_XWING_SK_BYTES], eseed[CRY_XWING_ESEED_BYTES], ss[CRY_XWING_SS_BYTES];
    int rc;

    if (strcmp(op, "keygen") == 0) {
        if (parse_hex("SEED", arg[0], sk, sizeof(sk)))
            return 1;
        rc = cry_xwing_keygen(sk, pk);
        if (rc != 0)
            return report(rc, "SEED", "key generation failed");
        print_hex("sk", sk, sizeof(sk));
        print_hex("pk", pk, sizeof(pk));
    } else if (strcmp(op, "encaps") == 0) {
        if (parse_hex("PK", arg[0], pk, sizeof(pk)) ||
            parse_hex("ESEED", arg[1], eseed, sizeof(eseed)))
            return 1;
        rc = cry_xwing_encaps(pk, eseed, ct, ss);
        if (rc != 0)
            return report(rc, "PK",
                          "ML-KEM encapsulation key check failed (FIPS 203 7.2: a coefficient "
                          ">= q in the first 1184 bytes)");
        print_hex("ct", ct, sizeof(ct));
        print_hex("ss", ss, sizeof(ss));
    } else if (strcmp(op, "decaps") == 0) {
        if (parse_hex("SK", arg[0], sk, sizeof(sk)) || parse_hex("CT", arg[1], ct, sizeof(ct)))
            return 1;
        rc = cry_xwing_decaps(sk, ct, ss);
        if (rc != 0)
            return report(rc, "SK", "decapsulation failed");
        print_hex("ss", ss, sizeof(ss));
    } else {
        return 2;
    }
    ut_memzero(sk, sizeof(sk));
    ut_memzero(eseed, sizeof(eseed));
    ut_memzero(ss, sizeof(ss));
    return 0;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Single-threaded throughput of each operation for about `secs` seconds. */
static int cmd_bench(double secs)
{
    static uint8_t ek[CRY_MLKEM768_EK_BYTES], dk[CRY_MLKEM768_DK_BYTES], ct[CRY_MLKEM768_CT_BYTES];
    static uint8_t pk[CRY_XWING_PK_BYTES], xct[CRY_XWING_CT_BYTES];
    uint8_t seed[64] = {1}, ss[32], sk[32] = {2}, eseed[64] = {3};
    const char *names[] = {"mlkem768 keygen", "mlkem768 encaps", "mlkem768 decaps",
                           "xwing keygen",    "xwing encaps",    "xwing decaps"};

    if (cry_mlkem768_keygen(seed, seed + 32, ek, dk) || cry_xwing_keygen(sk, pk))
        return 1;
    printf("backend %s\n", cry_mlkem_backend());
    for (int op = 0; op < 6; op++) {
        double t0 = now(), t;
        long n = 0;
        int rc = 0;

        do {
            for (int i = 0; i < 50; i++, n++) {
                seed[0] = (uint8_t)n;
                switch (op) {
                case 0:
                    rc |= cry_mlkem768_keygen(seed, seed + 32, ek, dk);
                    break;
                case 1:
                    rc |= cry_mlkem768_encaps(ek, seed, ct, ss);
                    break;
                case 2:
                    rc |= cry_mlkem768_decaps(dk, ct, ss);
                    break;
                case 3:
                    rc |= cry_xwing_keygen(sk, pk);
                    break;
                case 4:
                    rc |= cry_xwing_encaps(pk, eseed, xct, ss);
                    break;
                default:
                    rc |= cry_xwing_decaps(sk, xct, ss);
                    break;
                }
            }
            t = now() - t0;
        } while (t < secs);
        if (rc != 0)
            return 1;
        printf("%-16s %9.0f ops/s  (%.1f us/op)\n", names[op], (double)n / t, t / (double)n * 1e6);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 2;

    if (argc >= 2 && strcmp(argv[1], "bench") == 0 && argc <= 3) {
        double secs = argc == 3 ? strtod(argv[2], NULL) : 1.0;

        return cmd_bench(secs > 0 ? secs : 1.0);
    }
    if (argc >= 3 && strcmp(argv[1], "mlkem768") == 0) {
        int want = strcmp(argv[2], "keygen") == 0 || strcmp(argv[2], "encaps") == 0 ||
                           strcmp(argv[2], "decaps") == 0
                       ? 5
                       : -1;
        if (argc == want)
            rc = cmd_mlkem(argv[2], argv + 3);
    } else if (argc >= 3 && strcmp(argv[1], "xwing") == 0) {
        int want = strcmp(argv[2], "keygen") == 0                                     ? 4
                   : strcmp(argv[2], "encaps") == 0 || strcmp(argv[2], "decaps") == 0 ? 5
                                                                                      : -1;
        if (argc == want)
            rc = cmd_xwing(argv[2], argv + 3);
    }
    if (rc == 2)
        usage();
    return rc;
}
