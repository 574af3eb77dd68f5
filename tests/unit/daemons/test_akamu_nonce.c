/* akamu nonces: format, single use, node tag, forgery, staleness. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nonce.h"
#include "util/b64.h"

static void test_issue_redeem_once(void **state)
{
    struct akm_nonces *n = NULL;
    struct ut_err e = {{0}};
    char a[AKM_NONCE_LEN + 1], b[AKM_NONCE_LEN + 1], tag[9];

    (void)state;
    assert_int_equal(akm_nonces_new(&n, "127.0.0.1:8081", &e), 0);
    akm_nonce_issue(n, a);
    akm_nonce_issue(n, b);
    assert_int_equal(strlen(a), AKM_NONCE_LEN);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < AKM_NONCE_LEN; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    assert_int_equal(akm_nonce_tag(a, tag), 0);
    assert_string_equal(tag, akm_nonces_tag(n));
    /* Out of order is fine; each works once. */
    assert_int_equal(akm_nonce_redeem(n, b, &e), 0);
    assert_int_equal(akm_nonce_redeem(n, a, &e), 0);
    assert_int_equal(akm_nonce_redeem(n, a, &e), -EALREADY);
    assert_string_equal(e.msg, "nonce: already used");
    assert_int_equal(akm_nonce_redeem(n, b, &e), -EALREADY);
    akm_nonces_free(n);
}

static void test_refusals(void **state)
{
    struct akm_nonces *n = NULL, *other = NULL, *same_id = NULL;
    struct ut_err e = {{0}};
    char a[AKM_NONCE_LEN + 1], x[AKM_NONCE_LEN + 1], bad[AKM_NONCE_LEN + 2];

    (void)state;
    assert_int_equal(akm_nonces_new(&n, "node-a", &e), 0);
    assert_int_equal(akm_nonces_new(&other, "node-b", &e), 0);
    assert_int_equal(akm_nonces_new(&same_id, "node-a", &e), 0); /* a restart */
    assert_string_not_equal(akm_nonces_tag(n), akm_nonces_tag(other));
    assert_string_equal(akm_nonces_tag(n), akm_nonces_tag(same_id));

    akm_nonce_issue(other, x);
    assert_int_equal(akm_nonce_redeem(n, x, &e), -EXDEV);
    akm_nonce_issue(same_id, x); /* same tag, other key: before a restart */
    assert_int_equal(akm_nonce_redeem(n, x, &e), -EBADMSG);

    assert_int_equal(akm_nonce_redeem(n, NULL, &e), -EINVAL);
    assert_int_equal(akm_nonce_redeem(n, "", &e), -EINVAL);
    assert_int_equal(akm_nonce_redeem(n, "short", &e), -EINVAL);
    akm_nonce_issue(n, a);
    /* Every single-character change is refused, and the original still works. */
    for (size_t i = 0; i < AKM_NONCE_LEN; i++) {
        memcpy(bad, a, sizeof(a));
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(akm_nonce_redeem(n, bad, &e), 0);
    }
    memcpy(bad, a, sizeof(a));
    bad[AKM_NONCE_LEN] = 'A';
    bad[AKM_NONCE_LEN + 1] = '\0';
    assert_int_equal(akm_nonce_redeem(n, bad, &e), -EINVAL);
    memcpy(bad, a, sizeof(a));
    bad[5] = '='; /* not base64url */
    assert_int_equal(akm_nonce_redeem(n, bad, &e), -EINVAL);
    assert_int_equal(akm_nonce_redeem(n, a, &e), 0);
    akm_nonces_free(n);
    akm_nonces_free(other);
    akm_nonces_free(same_id);
}

static void test_window(void **state)
{
    struct akm_nonces *n = NULL;
    struct ut_err e = {{0}};
    char first[AKM_NONCE_LEN + 1], last[AKM_NONCE_LEN + 1], mid[AKM_NONCE_LEN + 1];

    (void)state;
    assert_int_equal(akm_nonces_new(&n, "node-a", &e), 0);
    akm_nonce_issue(n, first);
    for (unsigned i = 0; i < AKM_NONCE_WINDOW; i++) {
        akm_nonce_issue(n, last);
        if (i == AKM_NONCE_WINDOW / 2)
            memcpy(mid, last, sizeof(mid));
    }
    /* first's bit now belongs to a newer counter: refused as stale, not
     * mistaken for that one. */
    assert_int_equal(akm_nonce_redeem(n, first, &e), -ESTALE);
    assert_int_equal(akm_nonce_redeem(n, mid, &e), 0);
    assert_int_equal(akm_nonce_redeem(n, last, &e), 0);
    assert_int_equal(akm_nonce_redeem(n, last, &e), -EALREADY);
    akm_nonces_free(n);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_issue_redeem_once),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
