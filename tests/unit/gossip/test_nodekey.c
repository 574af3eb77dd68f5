/* Unit tests for lib/gossip node identity: node_keys storage, wrapping at
 * rest, node id derivation, the kem-info document. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gossip/nodeid.h"
#include "gossip/nodekey.h"
#include "util/b64.h"

static const struct store_migration migs[] = {{1, NULL}};

static char g_dir[64];
static char g_url[128];

static struct store *open_store(void)
{
    struct store_migration m[] = {{1, gsp_nodekey_schema_sql}};
    struct store_opts o = {.url = g_url, .migrations = m, .n_migrations = 1};
    struct ut_err err = {{0}};
    struct store *s = NULL;

    (void)migs;
    if (store_open(&s, &o, &err) < 0)
        fail_msg("store_open: %s", err.msg);
    return s;
}

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/test-nodekey-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_url, sizeof(g_url), "sqlite://%s/n.db", g_dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void publics(const struct cry_identity *id, uint8_t pk[CRY_XWING_PK_BYTES],
                    uint8_t pub[CRY_P256_PUB_BYTES])
{
    cry_identity_public(id, pk, pub);
}

static void test_create_then_reload(void **state)
{
    struct ut_err err = {{0}};
    struct cry_identity *a = NULL, *b = NULL;
    uint8_t pk1[CRY_XWING_PK_BYTES], pub1[CRY_P256_PUB_BYTES];
    uint8_t pk2[CRY_XWING_PK_BYTES], pub2[CRY_P256_PUB_BYTES];
    struct store *s = open_store();
    int created = -1;

    (void)state;
    assert_int_equal(gsp_nodekey_load(s, "127.0.0.1:8080", NULL, &a, &created, &err), 0);
    assert_int_equal(created, 1);
    assert_string_equal(cry_identity_node_id(a), "127.0.0.1:8080");
    publics(a, pk1, pub1);
    store_close(s);

    /* A restart loads the very same keys. */
    s = open_store();
    assert_int_equal(gsp_nodekey_load(s, "127.0.0.1:8080", NULL, &b, &created, &err), 0);
    assert_int_equal(created, 0);
    publics(b, pk2, pub2);
    assert_memory_equal(pk1, pk2, sizeof(pk1));
    assert_memory_equal(pub1, pub2, sizeof(pub1));

    /* Keys are bound to the node id. */
    cry_identity_free(b);
    b = NULL;
    assert_int_equal(gsp_nodekey_load(s, "10.0.0.9:8080", NULL, &b, NULL, &err), -EEXIST);
    assert_null(b);
    assert_non_null(strstr(err.msg, "holds the keys of node id \"127.0.0.1:8080\""));
    cry_identity_free(a);
    store_close(s);
}

static void test_wrapping(void **state)
{
    struct ut_err err = {{0}};
    struct cry_identity *a = NULL, *b = NULL;
    struct gsp_wrapkey k1, k2;
    uint8_t raw[32];
    uint8_t pk1[CRY_XWING_PK_BYTES], pub1[CRY_P256_PUB_BYTES];
    uint8_t pk2[CRY_XWING_PK_BYTES], pub2[CRY_P256_PUB_BYTES];
    char wid[GSP_WRAPKEY_ID_LEN + 1];
    struct store *s;

    (void)state;
    memset(raw, 1, sizeof(raw));
    gsp_wrapkey_init(&k1, raw);
    memset(raw, 2, sizeof(raw));
    gsp_wrapkey_init(&k2, raw);
    assert_int_equal(strlen(k1.id), GSP_WRAPKEY_ID_LEN);
    assert_string_not_equal(k1.id, k2.id);

    s = open_store();
    assert_int_equal(gsp_nodekey_load(s, "n1", NULL, &a, NULL, &err), 0);
    publics(a, pk1, pub1);
    assert_int_equal(gsp_nodekey_wrap_id(s, wid, &err), 0);
    assert_string_equal(wid, "");

    /* Clear -> k1. */
    assert_int_equal(gsp_nodekey_rewrap(s, NULL, &k1, &err), 0);
    assert_int_equal(gsp_nodekey_wrap_id(s, wid, &err), 0);
    assert_string_equal(wid, k1.id);
    assert_int_equal(gsp_nodekey_rewrap(s, NULL, &k1, &err), 0); /* idempotent */

    /* Without the key, or with another one: refused, naming the key id. */
    assert_int_equal(gsp_nodekey_load(s, "n1", NULL, &b, NULL, &err), -EACCES);
    assert_non_null(strstr(err.msg, k1.id));
    assert_int_equal(gsp_nodekey_load(s, "n1", &k2, &b, NULL, &err), -EACCES);
    assert_null(b);

    /* With k1: the same keys. */
    assert_int_equal(gsp_nodekey_load(s, "n1", &k1, &b, NULL, &err), 0);
    publics(b, pk2, pub2);
    assert_memory_equal(pk1, pk2, sizeof(pk1));
    assert_memory_equal(pub1, pub2, sizeof(pub1));
    cry_identity_free(b);
    b = NULL;

    /* k1 -> k2 needs k1 (a wrong old key is refused, row unchanged). */
    assert_int_equal(gsp_nodekey_rewrap(s, &k2, &k2, &err), -EACCES);
    assert_int_equal(gsp_nodekey_wrap_id(s, wid, &err), 0);
    assert_string_equal(wid, k1.id);
    assert_int_equal(gsp_nodekey_rewrap(s, &k1, &k2, &err), 0);
    assert_int_equal(gsp_nodekey_wrap_id(s, wid, &err), 0);
    assert_string_equal(wid, k2.id);
    assert_int_equal(gsp_nodekey_rewrap(s, &k1, NULL, &err), -EACCES);
    assert_int_equal(gsp_nodekey_rewrap(s, &k2, NULL, &err), 0);
    assert_int_equal(gsp_nodekey_load(s, "n1", NULL, &b, NULL, &err), 0);
    publics(b, pk2, pub2);
    assert_memory_equal(pk1, pk2, sizeof(pk1));
    cry_identity_free(a);
    cry_identity_free(b);
    gsp_wrapkey_clear(&k1);
    gsp_wrapkey_clear(&k2);
    store_close(s);
}

static int corrupt_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    const char *sql = arg;

    (void)err;
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static void test_corruption_detected(void **state)
{
    struct ut_err err = {{0}};
    struct cry_identity *a = NULL;
    struct gsp_wrapkey k;
    uint8_t raw[32] = {7};
    struct store *s = open_store();

    (void)state;
    assert_int_equal(gsp_nodekey_load(s, "n2", NULL, &a, NULL, &err), 0);
    cry_identity_free(a);
    a = NULL;
    /* A public key that does not belong to the secret. */
    assert_int_equal(store_write(s, corrupt_job,
                                 "UPDATE node_keys SET signing_public_key = "
                                 "zeroblob(65)",
                                 &err),
                     0);
    assert_int_equal(gsp_nodekey_load(s, "n2", NULL, &a, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "do not match"));
    /* A truncated clear secret. */
    assert_int_equal(
        store_write(s, corrupt_job, "UPDATE node_keys SET secret = substr(secret, 1, 10)", &err),
        0);
    assert_int_equal(gsp_nodekey_load(s, "n2", NULL, &a, NULL, &err), -EBADMSG);
    store_close(s);

    /* A sealed secret with a flipped byte. */
    s = open_store();
    assert_int_equal(store_write(s, corrupt_job, "DELETE FROM node_keys", &err), 0);
    gsp_wrapkey_init(&k, raw);
    assert_int_equal(gsp_nodekey_load(s, "n3", &k, &a, NULL, &err), 0);
    cry_identity_free(a);
    a = NULL;
    assert_int_equal(store_write(s, corrupt_job,
                                 "UPDATE node_keys SET secret = "
                                 "substr(secret,1,20) || x'00' || substr(secret,22)",
                                 &err),
                     0);
    assert_int_equal(gsp_nodekey_load(s, "n3", &k, &a, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "does not open"));
    store_close(s);
}

static void test_node_id_default(void **state)
{
    struct ut_err err = {{0}};
    char id[300];

    (void)state;
    assert_int_equal(
        gsp_node_id_default("https://127.0.0.1:8080", "0.0.0.0:1", id, sizeof(id), &err), 0);
    assert_string_equal(id, "127.0.0.1:8080");
    assert_int_equal(
        gsp_node_id_default("https://idp.example.com/realms/x", NULL, id, sizeof(id), &err), 0);
    assert_string_equal(id, "idp.example.com:443");
    assert_int_equal(gsp_node_id_default("http://[::1]/", NULL, id, sizeof(id), &err), 0);
    assert_string_equal(id, "[::1]:80");
    assert_int_equal(gsp_node_id_default(NULL, "127.0.0.1:8081", id, sizeof(id), &err), 0);
    assert_string_equal(id, "127.0.0.1:8081");
    assert_int_equal(gsp_node_id_default(NULL, "0.0.0.0:8081", id, sizeof(id), &err), 0);
    assert_non_null(strstr(id, ":8081"));
    assert_null(strstr(id, "0.0.0.0"));
    assert_int_equal(gsp_node_id_default("ftp://x", NULL, id, sizeof(id), &err), -EINVAL);
    assert_int_equal(gsp_node_id_default("https://u@h:1", NULL, id, sizeof(id), &err), -EINVAL);
    assert_int_equal(gsp_node_id_valid("a b"), -EINVAL);
    assert_int_equal(gsp_node_id_valid(""), -EINVAL);
    assert_int_equal(gsp_node_id_valid("127.0.0.1:8080"), 0);
}

static void test_kem_info(void **state)
{
    struct ut_err err = {{0}};
    struct cry_identity *a = NULL;
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    uint8_t dec[2048];
    size_t n;
    json_t *j;
    const char *s;

    (void)state;
    assert_int_equal(cry_identity_generate("127.0.0.1:8082", &a, &err), 0);
    cry_identity_public(a, pk, pub);
    j = gsp_kem_info_json(a);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "node_id")), "127.0.0.1:8082");
    assert_string_equal(json_string_value(json_object_get(j, "kem_alg")), "X-Wing");
    assert_string_equal(json_string_value(json_object_get(j, "signing_alg")), "ES256");
    s = json_string_value(json_object_get(j, "kem_public_key"));
    assert_int_equal(ut_b64_decode(s, strlen(s), dec, &n, 1), 0);
    assert_int_equal(n, CRY_XWING_PK_BYTES);
    assert_memory_equal(dec, pk, n);
    s = json_string_value(json_object_get(j, "signing_public_key"));
    assert_int_equal(ut_b64_decode(s, strlen(s), dec, &n, 1), 0);
    assert_int_equal(n, CRY_P256_PUB_BYTES);
    assert_int_equal(dec[0], 0x04);
    assert_memory_equal(dec, pub, n);
    json_decref(j);
    cry_identity_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_then_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_detected, setup, teardown),
        cmocka_unit_test(test_node_id_default),
        cmocka_unit_test(test_kem_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
