/*
 * Unit tests for lib/crypto's KEMs beyond the published vectors: the
 * builtin Keccak against OpenSSL, ML-KEM-768 and X-Wing round trips with
 * random keys, implicit rejection of tampered ciphertexts, the FIPS 203
 * key checks on hand-made bad keys, X-Wing with low-order X25519 inputs,
 * and (with OpenSSL >= 3.5) the builtin against the OpenSSL backend.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "crypto/kem.h"
#include "crypto/mlkem_internal.h"
#include "kem_test_util.h"

enum { EK = CRY_MLKEM768_EK_BYTES, DK = CRY_MLKEM768_DK_BYTES, CT = CRY_MLKEM768_CT_BYTES };

#define DK_EK_OFF 1152
#define DK_H_OFF  (DK_EK_OFF + EK)
#define DK_Z_OFF  (DK_H_OFF + 32)

static void rnd(void *p, size_t n)
{
    assert_int_equal(RAND_bytes(p, (int)n), 1);
}

/* Sets the i-th 12-bit coefficient of an encoded ek (ByteEncode12 packs
 * two coefficients into three bytes, least significant bits first). */
static void set_coeff12(uint8_t *ek, size_t i, unsigned v)
{
    uint8_t *p = ek + 3 * (i / 2);

    if (i % 2 == 0) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)((p[1] & 0xf0) | (v >> 8));
    } else {
        p[1] = (uint8_t)((p[1] & 0x0f) | ((v & 0x0f) << 4));
        p[2] = (uint8_t)(v >> 4);
    }
}

static void test_keccak_vs_openssl(void **state)
{
    static uint8_t in[1500], a[700], b[700];

    (void)state;
    rnd(in, sizeof(in));
    /* lengths around every rate boundary (72, 136, 168) and multi-block */
    for (size_t len = 0; len <= sizeof(in); len += (len < 400 ? 1 : 97)) {
        cry_sha3_256(a, in, len);
        kt_evp("SHA3-256", b, 32, in, len, NULL, 0);
        assert_memory_equal(a, b, 32);
        cry_sha3_512(a, in, len);
        kt_evp("SHA3-512", b, 64, in, len, NULL, 0);
        assert_memory_equal(a, b, 64);
        cry_shake128(a, 500, in, len);
        kt_evp("SHAKE128", b, 500, in, len, NULL, 0);
        assert_memory_equal(a, b, 500);
        cry_shake256(a, 300, in, len);
        kt_evp("SHAKE256", b, 300, in, len, NULL, 0);
        assert_memory_equal(a, b, 300);
    }
}

/* Absorbing and squeezing in odd pieces gives the one-shot result. */
static void test_keccak_incremental(void **state)
{
    static const size_t pieces[] = {1, 7, 8, 13, 168, 0, 200, 3};
    static uint8_t in[1000], a[700], b[700];
    struct cry_keccak k;
    size_t off = 0, pi = 0;

    (void)state;
    rnd(in, sizeof(in));
    cry_keccak_init(&k, CRY_SHAKE128_RATE);
    while (off < sizeof(in)) {
        size_t n = pieces[pi++ % 8];

        n = n > sizeof(in) - off ? sizeof(in) - off : n;
        cry_keccak_absorb(&k, in + off, n);
        off += n;
    }
    cry_keccak_finish(&k, 0x1f);
    off = pi = 0;
    while (off < sizeof(a)) {
        size_t n = pieces[pi++ % 8];

        n = n > sizeof(a) - off ? sizeof(a) - off : n;
        cry_keccak_squeeze(&k, a + off, n);
        off += n;
    }
    cry_keccak_wipe(&k);
    cry_shake128(b, sizeof(b), in, sizeof(in));
    assert_memory_equal(a, b, sizeof(a));
}

static void test_mlkem_round_trip(void **state)
{
    static uint8_t ek[EK], dk[DK], ct[CT];
    uint8_t ss1[32], ss2[32];

    (void)state;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(cry_mlkem768_keygen_rand(ek, dk), 0);
        assert_int_equal(cry_mlkem768_check_ek(ek), 0);
        assert_int_equal(cry_mlkem768_check_dk(dk), 0);
        assert_memory_equal(dk + DK_EK_OFF, ek, EK);
        assert_int_equal(cry_mlkem768_encaps_rand(ek, ct, ss1), 0);
        assert_int_equal(cry_mlkem768_decaps(dk, ct, ss2), 0);
        assert_memory_equal(ss1, ss2, 32);
    }
}

/* Deterministic entry points: same inputs, same outputs; other m, other ct. */
static void test_mlkem_deterministic(void **state)
{
    static uint8_t ek1[EK], dk1[DK], ek2[EK], dk2[DK], ct1[CT], ct2[CT];
    uint8_t d[32], z[32], m[32], ss1[32], ss2[32];

    (void)state;
    rnd(d, 32);
    rnd(z, 32);
    rnd(m, 32);
    assert_int_equal(cry_mlkem768_keygen(d, z, ek1, dk1), 0);
    assert_int_equal(cry_mlkem768_keygen(d, z, ek2, dk2), 0);
    assert_memory_equal(ek1, ek2, EK);
    assert_memory_equal(dk1, dk2, DK);
    assert_memory_equal(dk1 + DK_Z_OFF, z, 32);
    assert_int_equal(cry_mlkem768_encaps(ek1, m, ct1, ss1), 0);
    assert_int_equal(cry_mlkem768_encaps(ek1, m, ct2, ss2), 0);
    assert_memory_equal(ct1, ct2, CT);
    assert_memory_equal(ss1, ss2, 32);
    m[0] ^= 1;
    assert_int_equal(cry_mlkem768_encaps(ek1, m, ct2, ss2), 0);
    assert_memory_not_equal(ct1, ct2, CT);
    assert_memory_not_equal(ss1, ss2, 32);
}

/* A tampered ciphertext decapsulates without error to J(z || c'), which
 * differs from the real secret. Positions cover u (c1) and v (c2). */
static void test_mlkem_implicit_rejection(void **state)
{
    static const size_t pos[] = {0, 1, 319, 500, 959, 960, 1000, 1087};
    static uint8_t ek[EK], dk[DK], ct[CT];
    uint8_t ss[32], bad[32], j[32];

    (void)state;
    assert_int_equal(cry_mlkem768_keygen_rand(ek, dk), 0);
    assert_int_equal(cry_mlkem768_encaps_rand(ek, ct, ss), 0);
    for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            ct[pos[i]] ^= (uint8_t)(1u << bit);
            assert_int_equal(cry_mlkem768_decaps(dk, ct, bad), 0);
            assert_memory_not_equal(ss, bad, 32);
            kt_evp("SHAKE256", j, 32, dk + DK_Z_OFF, 32, ct, CT);
            assert_memory_equal(bad, j, 32);
            ct[pos[i]] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(cry_mlkem768_decaps(dk, ct, bad), 0);
    assert_memory_equal(ss, bad, 32);
}

/* §7.2: a coefficient >= q anywhere in t-hat makes ek invalid; q - 1 is
 * fine; the 32 bytes of rho are not checked. */
static void test_mlkem_bad_ek(void **state)
{
    static const size_t idx[] = {0, 1, 255, 256, 511, 767};
    static const unsigned bad_vals[] = {3329, 3330, 4095};
    static uint8_t ek[EK], dk[DK], orig[EK], ct[CT];
    uint8_t ss[32], m[32] = {7};

    (void)state;
    assert_int_equal(cry_mlkem768_keygen_rand(orig, dk), 0);
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        for (size_t v = 0; v < 3; v++) {
            memcpy(ek, orig, EK);
            set_coeff12(ek, idx[i], bad_vals[v]);
            assert_int_equal(cry_mlkem768_check_ek(ek), -EINVAL);
            assert_int_equal(cry_mlkem768_encaps(ek, m, ct, ss), -EINVAL);
            assert_int_equal(cry_mlkem768_encaps_rand(ek, ct, ss), -EINVAL);
        }
        memcpy(ek, orig, EK);
        set_coeff12(ek, idx[i], 3328);
        assert_int_equal(cry_mlkem768_check_ek(ek), 0);
        assert_int_equal(cry_mlkem768_encaps(ek, m, ct, ss), 0);
    }
    memcpy(ek, orig, EK);
    memset(ek + 1152, 0xff, 32); /* rho: any bytes are valid */
    assert_int_equal(cry_mlkem768_check_ek(ek), 0);
}

/* §7.3: dk is refused when H(ek) stored in dk does not match the embedded
 * ek (either one changed); changes to dk_PKE or z are not detectable. */
static void test_mlkem_bad_dk(void **state)
{
    static uint8_t ek[EK], dk[DK], bad[DK], ct[CT];
    uint8_t ss[32], ss2[32];

    (void)state;
    assert_int_equal(cry_mlkem768_keygen_rand(ek, dk), 0);
    assert_int_equal(cry_mlkem768_encaps_rand(ek, ct, ss), 0);
    memcpy(bad, dk, DK);
    bad[DK_H_OFF + 5] ^= 0x20; /* wrong hash */
    assert_int_equal(cry_mlkem768_check_dk(bad), -EINVAL);
    assert_int_equal(cry_mlkem768_decaps(bad, ct, ss2), -EINVAL);
    memcpy(bad, dk, DK);
    bad[DK_EK_OFF + 100] ^= 0x01; /* ek no longer matches its hash */
    assert_int_equal(cry_mlkem768_check_dk(bad), -EINVAL);
    assert_int_equal(cry_mlkem768_decaps(bad, ct, ss2), -EINVAL);
    memcpy(bad, dk, DK);
    bad[DK_Z_OFF] ^= 0x01; /* z is outside the check... */
    assert_int_equal(cry_mlkem768_check_dk(bad), 0);
    assert_int_equal(cry_mlkem768_decaps(bad, ct, ss2), 0);
    assert_memory_equal(ss, ss2, 32); /* ...and unused for a valid ct */
}

static void test_backend_name(void **state)
{
    (void)state;
#ifdef CRY_HAVE_OPENSSL_MLKEM
    assert_string_equal(cry_mlkem_backend(), "openssl");
#else
    assert_string_equal(cry_mlkem_backend(), "builtin");
#endif
}

#ifdef CRY_HAVE_OPENSSL_MLKEM
/* The OpenSSL backend and the builtin code must agree byte for byte. */
static void test_backends_agree(void **state)
{
    static uint8_t ek1[EK], dk1[DK], ek2[EK], dk2[DK], ct1[CT], ct2[CT];
    uint8_t d[32], z[32], m[32], ss1[32], ss2[32];

    (void)state;
    for (int i = 0; i < 20; i++) {
        rnd(d, 32);
        rnd(z, 32);
        rnd(m, 32);
        assert_int_equal(cry_mlkem768_keygen(d, z, ek1, dk1), 0);
        cry_mlkem768_builtin_keygen(d, z, ek2, dk2);
        assert_memory_equal(ek1, ek2, EK);
        assert_memory_equal(dk1, dk2, DK);
        assert_int_equal(cry_mlkem768_encaps(ek1, m, ct1, ss1), 0);
        cry_mlkem768_builtin_encaps(ek1, m, ct2, ss2);
        assert_memory_equal(ct1, ct2, CT);
        assert_memory_equal(ss1, ss2, 32);
        ct1[i] ^= 1;
        assert_int_equal(cry_mlkem768_decaps(dk1, ct1, ss1), 0);
        cry_mlkem768_builtin_decaps(dk1, ct1, ss2);
        assert_memory_equal(ss1, ss2, 32);
    }
}
#endif

static void test_xwing_round_trip(void **state)
{
    static uint8_t pk[CRY_XWING_PK_BYTES], ct[CRY_XWING_CT_BYTES];
    uint8_t sk[32], ss1[32], ss2[32], bad[32];

    (void)state;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(cry_xwing_keygen_rand(sk, pk), 0);
        assert_int_equal(cry_xwing_encaps_rand(pk, ct, ss1), 0);
        assert_int_equal(cry_xwing_decaps(sk, ct, ss2), 0);
        assert_memory_equal(ss1, ss2, 32);
        /* tamper with the ML-KEM part, then with the X25519 part */
        ct[i * 37] ^= 0x04;
        assert_int_equal(cry_xwing_decaps(sk, ct, bad), 0);
        assert_memory_not_equal(ss1, bad, 32);
        ct[i * 37] ^= 0x04;
        ct[CRY_MLKEM768_CT_BYTES + i] ^= 0x10;
        assert_int_equal(cry_xwing_decaps(sk, ct, bad), 0);
        assert_memory_not_equal(ss1, bad, 32);
    }
}

static void test_xwing_bad_pk(void **state)
{
    static uint8_t pk[CRY_XWING_PK_BYTES], ct[CRY_XWING_CT_BYTES];
    uint8_t sk[32], eseed[64] = {1}, ss[32];

    (void)state;
    assert_int_equal(cry_xwing_keygen_rand(sk, pk), 0);
    set_coeff12(pk, 100, 4000);
    assert_int_equal(cry_xwing_encaps(pk, eseed, ct, ss), -EINVAL);
    assert_int_equal(cry_xwing_encaps_rand(pk, ct, ss), -EINVAL);
}

/* ss per the draft's combiner, computed from the parts with OpenSSL. */
static void xwing_expected(uint8_t ss[32], const uint8_t ss_m[32], const uint8_t ss_x[32],
                           const uint8_t ct_x[32], const uint8_t pk_x[32])
{
    uint8_t buf[32 * 4 + 6];

    memcpy(buf, ss_m, 32);
    memcpy(buf + 32, ss_x, 32);
    memcpy(buf + 64, ct_x, 32);
    memcpy(buf + 96, pk_x, 32);
    memcpy(buf + 128, "\x5c\x2e\x2f\x2f\x5e\x5c", 6);
    kt_evp("SHA3-256", ss, 32, buf, sizeof(buf), NULL, 0);
}

/* Low-order X25519 inputs (u = 0 and u = 1): RFC 7748 X25519 gives 32 zero
 * bytes, which the draft uses as ss_X without an error. Our decapsulation
 * must return that value, not fail; the expected ss is rebuilt from the
 * draft's formulas (SHAKE256 expansion, ML-KEM decaps, SHA3-256 combiner). */
static void test_xwing_low_order(void **state)
{
    static uint8_t pk[CRY_XWING_PK_BYTES], pk2[CRY_XWING_PK_BYTES], ct[CRY_XWING_CT_BYTES];
    static uint8_t ek[EK], dk[DK];
    uint8_t sk[32], exp[96], ss_m[32], zero[32] = {0}, ss[32], want[32];
    uint8_t eseed[64];

    (void)state;
    assert_int_equal(cry_xwing_keygen_rand(sk, pk), 0);
    assert_int_equal(cry_xwing_encaps_rand(pk, ct, ss), 0);
    kt_evp("SHAKE256", exp, 96, sk, 32, NULL, 0);
    assert_int_equal(cry_mlkem768_keygen(exp, exp + 32, ek, dk), 0);
    assert_memory_equal(ek, pk, EK);
    assert_int_equal(cry_mlkem768_decaps(dk, ct, ss_m), 0);
    for (int u = 0; u < 2; u++) {
        memset(ct + CT, 0, 32);
        ct[CT] = (uint8_t)u;
        assert_int_equal(cry_xwing_decaps(sk, ct, ss), 0);
        xwing_expected(want, ss_m, zero, ct + CT, pk + EK);
        assert_memory_equal(ss, want, 32);
    }
    /* encapsulation to a low-order pk_X works the same way */
    memcpy(pk2, pk, sizeof(pk));
    memset(pk2 + EK, 0, 32);
    rnd(eseed, sizeof(eseed));
    assert_int_equal(cry_xwing_encaps(pk2, eseed, ct, ss), 0);
    assert_int_equal(cry_mlkem768_encaps(pk2, eseed, ct, ss_m), 0); /* overwrites ct_M only */
    xwing_expected(want, ss_m, zero, ct + CT, pk2 + EK);
    assert_memory_equal(ss, want, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keccak_vs_openssl),
        cmocka_unit_test(test_keccak_incremental),
        cmocka_unit_test(test_mlkem_round_trip),
        cmocka_unit_test(test_mlkem_deterministic),
        cmocka_unit_test(test_mlkem_implicit_rejection),
        cmocka_unit_test(test_mlkem_bad_ek),
        cmocka_unit_test(test_mlkem_bad_dk),
        cmocka_unit_test(test_backend_name),
#ifdef CRY_HAVE_OPENSSL_MLKEM
        cmocka_unit_test(test_backends_agree),
#endif
        cmocka_unit_test(test_xwing_round_trip),
        cmocka_unit_test(test_xwing_bad_pk),
        cmocka_unit_test(test_xwing_low_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
