/* Unit tests for certified pinning (engine.h, "Vouching") with a stub
 * authority: a certified kem-info pins (and persists), an introduction
 * pins the node that was refused, a certified cluster_nodes entry pins a
 * node learned through gossip, another authority's certification or none
 * is refused (counted, logged once), allowed_node_ids is respected, old
 * entries without a certification and seeds work as before, gossip_peers
 * of an earlier version gains its column. */
#define GSP_TEST_DIR_PREFIX "/tmp/test-vouch"
#include "gsp_test.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include "gossip/members.h"

/* ---- a stub authority: "<ca>.<nonce>.<hex sha256(ca nonce id kem sig)>" ---- */

static void digest_hex(const char *ca, unsigned nonce, const char *id, const uint8_t *kem,
                       const uint8_t *pub, char out[65])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t d[32];
    unsigned int n = 0;
    char pre[128];

    snprintf(pre, sizeof(pre), "%s|%u|", ca, nonce);
    assert_non_null(c);
    assert_int_equal(EVP_DigestInit_ex(c, EVP_sha256(), NULL), 1);
    EVP_DigestUpdate(c, pre, strlen(pre));
    EVP_DigestUpdate(c, id, strlen(id) + 1);
    EVP_DigestUpdate(c, kem, CRY_XWING_PK_BYTES);
    EVP_DigestUpdate(c, pub, CRY_P256_PUB_BYTES);
    EVP_DigestFinal_ex(c, d, &n);
    EVP_MD_CTX_free(c);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static char *stub_certify(const char *ca, unsigned nonce, const struct cry_identity *id)
{
    uint8_t kem[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    char hex[65], *s = malloc(256);

    assert_non_null(s);
    cry_identity_public(id, kem, pub);
    digest_hex(ca, nonce, cry_identity_node_id(id), kem, pub, hex);
    snprintf(s, 256, "%s.%u.%s", ca, nonce, hex);
    return s;
}

static int g_verify_calls;

static int stub_verify(void *arg, const char *node_id, const uint8_t kem[CRY_XWING_PK_BYTES],
                       const uint8_t sig_pub[CRY_P256_PUB_BYTES], const char *cert,
                       struct ut_err *err)
{
    const char *ca = arg;
    size_t n = strlen(ca);
    unsigned nonce = 0;
    char hex[65];
    const char *dot;

    g_verify_calls++;
    if (strncmp(cert, ca, n) != 0 || cert[n] != '.') {
        ut_err_set(err, "certified by another CA");
        return -EPERM;
    }
    nonce = (unsigned)strtoul(cert + n + 1, NULL, 10);
    dot = strchr(cert + n + 1, '.');
    digest_hex(ca, nonce, node_id, kem, sig_pub, hex);
    if (dot == NULL || strcmp(dot + 1, hex) != 0) {
        ut_err_set(err, "signature does not verify");
        return -EPERM;
    }
    return 0;
}

static char g_ca_a[] = "ca-A", g_ca_b[] = "ca-B";

static int count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* n is certified by ca (NULL: no certification) and verifies with ca_v
 * (NULL: no verifier). The certification string is kept in certs[]. */
static char *g_certs[16];
static size_t g_n_certs;

static void vouch(struct tnode *n, char *ca, unsigned nonce, char *ca_v)
{
    if (ca != NULL) {
        assert_true(g_n_certs < 16);
        g_certs[g_n_certs] = stub_certify(ca, nonce, n->ident);
        n->vouch_cert = g_certs[g_n_certs++];
    }
    n->vouch_verify = ca_v ? stub_verify : NULL;
    n->vouch_arg = ca_v;
}

static void certs_free(void)
{
    for (size_t i = 0; i < g_n_certs; i++)
        free(g_certs[i]);
    g_n_certs = 0;
}

static char *kem_info_of(struct tnode *b)
{
    json_t *j = gsp_engine_kem_info(b->e);
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    assert_non_null(s);
    return s;
}

/* a fetches b's kem-info as the driver does for a configured URL. */
static int resolve(struct tnode *a, struct tnode *b)
{
    struct ut_err err = {{0}};
    char *doc = kem_info_of(b);
    int rc = gsp_engine_resolve_kem_info(a->e, b->url, doc, strlen(doc), &err);

    free(doc);
    return rc;
}

/* b introduces itself to a (after a refused it). */
static int introduce(struct tnode *a, struct tnode *b)
{
    struct ut_err err = {{0}};
    char *entry = NULL;
    size_t len = 0;
    int rc = gsp_engine_introduction(b->e, &entry, &len);

    if (rc < 0)
        return rc;
    rc = gsp_engine_introduce(a->e, entry, len, &err);
    free(entry);
    return rc;
}

static const char *peer_str(struct tnode *n, const char *peer, const char *name, char *out,
                            size_t len)
{
    json_t *st = gsp_engine_status(n->e), *v;
    size_t i;

    out[0] = '\0';
    json_array_foreach(json_object_get(st, "peers"), i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "node_id")), peer) == 0)
            snprintf(out, len, "%s", json_string_value(json_object_get(v, name)));
    }
    json_decref(st);
    return out;
}

/* ---- (a) a configured URL whose kem-info is certified ---- */

static void test_kem_info_pins(void **state)
{
    struct tnode a, b;
    struct gsp_due d[8];
    char path[128], s[64], *log, *v;
    int st = 0;

    (void)state;
    tn_init(&a, "a.test:1", g_dir);
    tn_init(&b, "b.test:2", NULL);
    a.peers[0] = b.url;
    a.n_peers = 1;
    vouch(&a, g_ca_a, 1, g_ca_a);
    vouch(&b, g_ca_a, 2, g_ca_a);
    log_start();
    tn_open(&a);
    tn_open(&b);
    /* kem-info carries the certification. */
    v = kem_info_of(&b);
    assert_non_null(strstr(v, "\"certification\":\"ca-A.2."));
    free(v);
    assert_int_equal(gsp_engine_due(a.e, d, 8, NULL), 1);
    assert_int_equal(d[0].kind, GSP_DUE_RESOLVE);
    assert_int_equal(resolve(&a, &b), 1); /* pinned now */
    assert_int_equal(resolve(&a, &b), 0); /* already */
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);
    assert_int_equal(tn_stat(&a, b.id, "certified"), 1);
    assert_string_equal(peer_str(&a, b.id, "pinned_by", s, sizeof(s)), "config+certification");
    /* b does not know a yet: refused with 403, then a introduces itself. */
    assert_true(tn_xchg_full(&a, &b, GSP_DUE_ROUND, NULL, 0, 0, &st, NULL, NULL) < 0);
    assert_int_equal(st, 403);
    assert_int_equal(introduce(&b, &a), 0);
    assert_int_equal(introduce(&b, &a), 0); /* again: already pinned, same keys */
    assert_int_equal(tn_stat(&b, a.id, "pinned"), 1);
    assert_string_equal(peer_str(&b, a.id, "pinned_by", s, sizeof(s)), "learned");
    tn_put(&b, "k1", "v1");
    assert_true(tn_sync(&a, &b) > 0);
    v = tn_get(&a, "kv", "k1");
    assert_non_null(v);
    assert_string_equal(v, "v1");
    free(v);
    log = log_stop();
    assert_true(log_has_line(log, "INFO gossip: certified peer pinned peer=\"http://b.test:2\" "
                                  "node_id=\"b.test:2\" source=\"kem-info\""));
    assert_true(log_has_line(log, "INFO gossip: certified peer pinned peer=\"http://a.test:1\" "
                                  "node_id=\"a.test:1\" source=\"introduction\""));
    assert_null(strstr(log, "not certified"));
    free(log);

    /* Persisted like a seed (with its certification): pinned again at the
     * next start without any fetch. */
    tn_close(&a);
    tn_open(&a);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);
    assert_string_equal(peer_str(&a, b.id, "pinned_by", s, sizeof(s)), "config+certification");
    assert_int_equal(gsp_engine_due(a.e, d, 8, NULL), 1);
    assert_int_equal(d[0].kind, GSP_DUE_ROUND);
    /* ...but only while the certification verifies: another CA now. */
    tn_close(&a);
    a.vouch_cert = NULL;
    vouch(&a, g_ca_b, 3, g_ca_b);
    log_start();
    tn_open(&a);
    log = log_stop();
    assert_true(tn_stat(&a, b.id, "pinned") != 1);
    assert_non_null(strstr(log, "WARN gossip: gossip_peers: stored certification no longer "
                                "verifies; not trusted peer=\"b.test:2\""));
    /* ...and b's entry held in cluster_nodes does not vouch for it either. */
    assert_non_null(strstr(log, "cluster's CA peer=\"http://b.test:2\" node_id=\"b.test:2\""));
    free(log);
    tn_free(&a);
    tn_free(&b);
    snprintf(path, sizeof(path), "%s/a.test:1.db", g_dir);
    unlink(path);
    certs_free();
}

/* ---- (c) another CA, or none: refused, counted, logged once ---- */

static void test_uncertified_refused(void **state)
{
    struct tnode a, b, c;
    struct gsp_exchange *x = NULL;
    struct ut_err err = {{0}};
    struct gsp_due d[8];
    uint8_t *msg = NULL;
    size_t ml = 0, n;
    char *log;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    a.peers[0] = b.url;
    a.peers[1] = c.url;
    a.n_peers = 2;
    vouch(&a, g_ca_a, 1, g_ca_a);
    vouch(&b, g_ca_b, 2, g_ca_b); /* another cluster's CA */
    vouch(&c, NULL, 0, NULL);     /* no certification at all */
    log_start();
    tn_open(&a);
    tn_open(&b);
    tn_open(&c);
    assert_int_equal(resolve(&a, &b), 0);
    assert_int_equal(resolve(&a, &b), 0);
    assert_int_equal(resolve(&a, &c), 0);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 0);
    assert_int_equal(tn_stat(&a, c.id, "pinned"), 0);
    assert_int_equal(tn_refusals(&a, b.id, "uncertified"), 2);
    assert_int_equal(tn_refusals(&a, c.id, "uncertified"), 1);
    assert_int_equal(tn_refusals(&a, NULL, "uncertified"), 3);
    /* The spec's line before a peer is pinned. */
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), -ENOKEY);
    /* b cannot get in by introducing itself either. */
    assert_int_equal(introduce(&a, &b), -EPERM);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 0);
    /* Its kem-info is fetched again each interval, in case it was
     * re-certified. */
    g_now += 1000;
    n = gsp_engine_due(a.e, d, 8, NULL);
    assert_true(n >= 2);
    assert_int_equal(d[0].kind, GSP_DUE_RESOLVE);
    log = log_stop();
    assert_true(log_has_line(log, "WARN gossip: peer refused: gossip keys not certified by this "
                                  "cluster's CA peer=\"http://b.test:2\" node_id=\"b.test:2\" "
                                  "reason=\"certified by another CA\""));
    assert_true(log_has_line(log, "WARN gossip: peer refused: gossip keys not certified by this "
                                  "cluster's CA peer=\"http://c.test:3\" node_id=\"c.test:3\" "
                                  "reason=\"no certification\""));
    assert_true(log_has_line(log, "WARN gossip: no KEM key for peer, skipping "
                                  "peer=\"http://b.test:2\""));
    /* Once per node per start. */
    assert_int_equal(count(log, "cluster's CA peer=\"http://b.test:2\""), 1);
    free(log);
    /* An administrator's seed still works. */
    tn_seed(&a, &b);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);
    {
        char s[64];

        assert_string_equal(peer_str(&a, b.id, "pinned_by", s, sizeof(s)), "seed");
    }
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
    certs_free();
}

/* ---- allowed_node_ids still gates certified nodes ---- */

static void test_allowed_node_ids_respected(void **state)
{
    const char *only_c[] = {"c.test:3"};
    struct tnode a, b;
    char *log;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.peers[0] = b.url;
    a.n_peers = 1;
    a.allowed[0] = only_c[0];
    a.n_allowed = 1;
    vouch(&a, g_ca_a, 1, g_ca_a);
    vouch(&b, g_ca_a, 2, g_ca_a);
    log_start();
    tn_open(&a);
    tn_open(&b);
    assert_int_equal(resolve(&a, &b), 0);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 0);
    assert_int_equal(introduce(&a, &b), -EPERM);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 0);
    assert_int_equal(tn_refusals(&a, b.id, "not_allowed"), 2);
    assert_int_equal(tn_refusals(&a, NULL, "uncertified"), 0);
    log = log_stop();
    assert_true(log_has_line(log, "WARN gossip: peer refused: not in allowed_node_ids "
                                  "peer=\"http://b.test:2\" node_id=\"b.test:2\""));
    free(log);
    tn_free(&a);
    tn_free(&b);
    certs_free();
}

/* ---- (b) a certified cluster_nodes entry learned through gossip ---- */

static void learn_case(char *c_ca, const char *const *allowed, size_t n_allowed,
                       const char *want_refusal)
{
    int want = want_refusal == NULL;
    struct tnode a, b, c;
    struct gsp_exchange *x = NULL;
    struct ut_err err = {{0}};
    uint8_t *msg = NULL;
    size_t ml = 0;
    int rc;

    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    for (size_t i = 0; i < n_allowed; i++)
        a.allowed[i] = allowed[i];
    a.n_allowed = n_allowed;
    a.peers[0] = b.url;
    a.n_peers = 1;
    vouch(&a, g_ca_a, 1, g_ca_a);
    vouch(&b, g_ca_a, 2, g_ca_a);
    vouch(&c, c_ca, 3, c_ca);
    tn_open(&b);
    tn_open(&c);
    tn_seed(&b, &c); /* b trusts c whatever its CA (an administrator's choice) */
    tn_seed(&c, &b);
    assert_true(tn_sync(&b, &c) > 0); /* b holds c's entry */
    tn_open(&a);
    assert_int_equal(resolve(&a, &b), 1);
    assert_int_equal(introduce(&b, &a), 0);
    assert_true(tn_sync(&a, &b) > 0); /* a learns c's entry through b */
    {
        char *v = tn_get(&a, "cluster_nodes", c.id);

        assert_non_null(v);
        if (c_ca != NULL)
            assert_non_null(strstr(v, "\"certification\""));
        free(v);
    }
    rc = gsp_engine_begin(a.e, c.id, GSP_DUE_ROUND, &msg, &ml, &x, &err);
    if (want) {
        char s[64];

        assert_int_equal(rc, 0);
        gsp_engine_fail(a.e, x, 0, "test");
        free(msg);
        assert_int_equal(tn_stat(&a, c.id, "certified"), 1);
        assert_string_equal(peer_str(&a, c.id, "pinned_by", s, sizeof(s)), "learned");
        assert_int_equal(tn_stat(&a, c.id, "learned"), 1);
    } else {
        assert_int_equal(rc, -ENOKEY);
        /* c has no peer record here (never trusted): the totals count it. */
        assert_int_equal(tn_refusals(&a, NULL, want_refusal), 1);
    }
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
    certs_free();
}

static void test_learned_entry(void **state)
{
    const char *only_b[] = {"b.test:2"};
    const char *b_and_c[] = {"b.test:2", "c.test:3"};

    (void)state;
    learn_case(g_ca_a, NULL, 0, NULL);             /* same CA: pinned */
    learn_case(g_ca_a, b_and_c, 2, NULL);          /* listed: pinned */
    learn_case(g_ca_a, only_b, 1, "not_allowed");  /* certified but not listed */
    learn_case(g_ca_b, NULL, 0, "uncertified");    /* another CA */
    learn_case(NULL, NULL, 0, "uncertified");      /* no certification */
    learn_case(g_ca_b, b_and_c, 2, "uncertified"); /* listed, but another CA */
}

/* ---- old entries and engines without a verifier work as before ---- */

static void test_compat(void **state)
{
    const char *both[] = {"b.test:2", "c.test:3"};
    struct gsp_member m;
    struct ut_err err = {{0}};
    struct tnode a, b, c;
    char *json = NULL, *v;
    size_t len = 0;

    (void)state;
    /* An entry without certification parses; one with parses too and
     * keeps it; a malformed certification is refused. */
    tn_init(&a, "a.test:1", NULL);
    assert_int_equal(gsp_member_make(a.ident, NULL, a.url, g_now, NULL, &json, &len, &err), 0);
    assert_null(strstr(json, "certification"));
    assert_int_equal(gsp_member_parse((uint8_t *)json, len, &m, &err), 0);
    assert_string_equal(m.cert, "");
    free(json);
    assert_int_equal(gsp_member_make(a.ident, NULL, a.url, g_now, "x.1.ab", &json, &len, &err), 0);
    assert_int_equal(gsp_member_parse((uint8_t *)json, len, &m, &err), 0);
    assert_string_equal(m.cert, "x.1.ab");
    free(json);
    assert_int_equal(gsp_member_make(a.ident, NULL, a.url, g_now, "bad cert", &json, &len, &err),
                     -EINVAL);
    tn_free(&a);

    /* No verifier anywhere (ahdapa): learning needs allowed_node_ids, as
     * before, even when the entry carries a certification. */
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    a.allowed[0] = both[0];
    a.allowed[1] = both[1];
    a.n_allowed = 2;
    vouch(&c, g_ca_a, 3, g_ca_a);
    tn_open(&b);
    tn_open(&c);
    tn_seed(&b, &c);
    tn_seed(&c, &b);
    assert_true(tn_sync(&b, &c) > 0);
    tn_open(&a);
    tn_seed(&a, &b);
    tn_seed(&b, &a);
    assert_true(tn_sync(&a, &b) > 0);
    assert_int_equal(tn_stat(&a, c.id, "pinned"), 1);
    assert_int_equal(tn_stat(&a, c.id, "certified"), 0);
    /* kem-info without an engine certification has none. */
    v = kem_info_of(&a);
    assert_null(strstr(v, "certification"));
    free(v);
    /* No verifier: introductions are not served. */
    assert_int_equal(introduce(&a, &c), -ENOTSUP);
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
    certs_free();

    /* A verifier, and an old entry without certification from a seeded
     * peer: applied and the seed keeps working. */
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    vouch(&a, g_ca_a, 1, g_ca_a);
    tn_open(&a);
    tn_open(&b);
    tn_seed(&a, &b);
    tn_seed(&b, &a);
    tn_put(&b, "k", "1");
    assert_true(tn_sync(&a, &b) > 0);
    v = tn_get(&a, "cluster_nodes", b.id);
    assert_non_null(v);
    assert_null(strstr(v, "certification"));
    free(v);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);
    assert_int_equal(tn_refusals(&a, NULL, "uncertified"), 0);
    tn_free(&a);
    tn_free(&b);
    certs_free();
}

/* ---- our own entry: certified, not rewritten at every start ---- */

static void test_own_entry(void **state)
{
    struct gsp_engine *e = NULL;
    struct gsp_engine_opts eo = {0};
    struct ut_err err = {{0}};
    struct tnode a;
    char before[512], after[512], *v;

    (void)state;
    tn_init(&a, "own.test:1", g_dir);
    vouch(&a, g_ca_a, 1, g_ca_a);
    tn_open(&a);
    v = tn_get(&a, "cluster_nodes", a.id);
    assert_non_null(strstr(v, "\"certification\":\"ca-A.1."));
    free(v);
    tn_vv(&a, before, sizeof(before));
    /* Restart with a fresh (different, still valid) certification: the
     * held one verifies, so the entry is not rewritten. */
    tn_close(&a);
    vouch(&a, g_ca_a, 2, g_ca_a);
    tn_open(&a);
    tn_vv(&a, after, sizeof(after));
    assert_string_equal(before, after);
    /* ...and kem-info serves the held one (stable across restarts). */
    v = kem_info_of(&a);
    assert_non_null(strstr(v, "\"certification\":\"ca-A.1."));
    free(v);
    /* Restart under another CA: the held one no longer verifies. */
    tn_close(&a);
    vouch(&a, g_ca_b, 3, g_ca_b);
    tn_open(&a);
    v = tn_get(&a, "cluster_nodes", a.id);
    assert_non_null(strstr(v, "\"certification\":\"ca-B.3."));
    free(v);
    /* An own certification that does not verify is a configuration error. */
    eo.identity = a.ident;
    eo.vouch_cert = g_certs[0]; /* ca-A's, checked by ca-B */
    eo.vouch_verify = stub_verify;
    eo.vouch_arg = g_ca_b;
    tn_close(&a);
    tn_open(&a);
    eo.store = a.s;
    eo.replica = a.r;
    gsp_engine_free(a.e); /* the replica's change callback is the engine's */
    a.e = NULL;
    assert_int_equal(gsp_engine_new(&e, &eo, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "own certification does not verify"));
    eo.vouch_verify = NULL;
    assert_int_equal(gsp_engine_new(&e, &eo, &err), -EINVAL);
    crdt_replica_free(a.r);
    store_close(a.s);
    a.r = NULL;
    a.s = NULL;
    tn_free(&a);
    certs_free();
}

/* ---- gossip_peers made by an earlier version ---- */

static void test_old_gossip_peers(void **state)
{
    struct tnode a, b;
    char path[160];
    sqlite3 *db;
    uint8_t kem[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    sqlite3_stmt *st;

    (void)state;
    tn_init(&a, "old.test:1", g_dir);
    tn_init(&b, "b.test:2", NULL);
    snprintf(path, sizeof(path), "%s/old.test:1.db", g_dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE gossip_peers (node_id TEXT PRIMARY KEY NOT NULL,"
                                  " url TEXT NOT NULL DEFAULT '', kem_public_key BLOB NOT NULL,"
                                  " signing_public_key BLOB NOT NULL, seeded_ms INTEGER NOT NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    cry_identity_public(b.ident, kem, pub);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO gossip_peers VALUES(?1, ?2, ?3, ?4, 1)", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, b.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b.url, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, kem, sizeof(kem), SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, pub, sizeof(pub), SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    vouch(&a, g_ca_a, 1, g_ca_a);
    tn_open(&a);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);
    assert_int_equal(tn_stat(&a, b.id, "seeded"), 1);
    tn_close(&a);
    /* The column was added; the seed row reads as a seed (''). */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT certification FROM gossip_peers", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "");
    sqlite3_finalize(st);
    sqlite3_close(db);
    tn_free(&a);
    tn_free(&b);
    unlink(path);
    certs_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kem_info_pins),
        cmocka_unit_test(test_uncertified_refused),
        cmocka_unit_test(test_allowed_node_ids_respected),
        cmocka_unit_test(test_learned_entry),
        cmocka_unit_test(test_compat),
        cmocka_unit_test(test_own_entry),
        cmocka_unit_test(test_old_gossip_peers),
    };

    ut_log_set_level(UT_LOG_WARN);
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
