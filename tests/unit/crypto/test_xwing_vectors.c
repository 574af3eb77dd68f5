/*
 * X-Wing against the draft's test vectors (shared/vectors/xwing/
 * test-vectors.json, draft-connolly-cfrg-xwing-kem -06..-10, read at run
 * time from the folder given as argv[1]). For each of the 3 vectors:
 * keygen(seed) = pk, encaps(pk, eseed) = (ct, ss), decaps(sk, ct) = ss.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/kem.h"
#include "kem_test_util.h"

static void test_xwing_vectors(void **state)
{
    json_t *root = kt_load("xwing/test-vectors.json"), *v;
    size_t i;
    int n = 0;

    (void)state;
    assert_true(json_is_array(root));
    json_array_foreach(root, i, v)
    {
        static uint8_t pk[CRY_XWING_PK_BYTES], want_pk[CRY_XWING_PK_BYTES];
        static uint8_t ct[CRY_XWING_CT_BYTES], want_ct[CRY_XWING_CT_BYTES];
        uint8_t seed[32], sk[32], eseed[64], ss[32], want_ss[32];
        int id = (int)i;

        kt_hex_field(v, "seed", seed, sizeof(seed), id);
        kt_hex_field(v, "sk", sk, sizeof(sk), id);
        kt_hex_field(v, "pk", want_pk, sizeof(want_pk), id);
        kt_hex_field(v, "eseed", eseed, sizeof(eseed), id);
        kt_hex_field(v, "ct", want_ct, sizeof(want_ct), id);
        kt_hex_field(v, "ss", want_ss, sizeof(want_ss), id);
        assert_memory_equal(seed, sk, 32); /* sk is the seed itself */

        assert_int_equal(cry_xwing_keygen(seed, pk), 0);
        if (memcmp(pk, want_pk, sizeof(pk)) != 0)
            fail_msg("vector %d: pk differs", id);
        assert_int_equal(cry_xwing_encaps(want_pk, eseed, ct, ss), 0);
        if (memcmp(ct, want_ct, sizeof(ct)) != 0)
            fail_msg("vector %d: ct differs", id);
        if (memcmp(ss, want_ss, sizeof(ss)) != 0)
            fail_msg("vector %d: encaps ss differs", id);
        memset(ss, 0, sizeof(ss));
        assert_int_equal(cry_xwing_decaps(sk, want_ct, ss), 0);
        if (memcmp(ss, want_ss, sizeof(ss)) != 0)
            fail_msg("vector %d: decaps ss differs", id);
        n++;
    }
    assert_int_equal(n, 3);
    json_decref(root);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xwing_vectors),
    };

    vectors_dir = argc > 1 ? argv[1] : NULL;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
