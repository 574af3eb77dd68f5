/* Unit tests for the gossip engine (lib/gossip/engine.h): 2-3 in-process
 * engines on sqlite stores and a virtual clock, messages carried by direct
 * calls (begin -> handle -> finish). Membership, convergence, paging,
 * zstd, restarts, skips, eager push, forgery, allowed_node_ids, refusals,
 * exact log lines, status and metrics. */
#include "gsp_test.h"

#include <zstd.h>

#include "crypto/sign.h"
#include "gossip/members.h"
#include "gossip/proto.h"

static void pair(struct tnode *a, struct tnode *b)
{
    tn_open(a);
    tn_open(b);
    tn_seed(a, b);
    tn_seed(b, a);
}

static void assert_value(struct tnode *n, const char *key, const char *want)
{
    char *v = tn_get(n, "kv", key);

    if (want == NULL) {
        if (v != NULL)
            fail_msg("%s: %s is \"%s\", want absent", n->id, key, v);
    } else {
        if (v == NULL)
            fail_msg("%s: %s is absent, want \"%s\"", n->id, key, want);
        assert_string_equal(v, want);
    }
    free(v);
}

static void assert_same_vv(struct tnode *a, struct tnode *b)
{
    char va[1024], vb[1024];

    tn_vv(a, va, sizeof(va));
    tn_vv(b, vb, sizeof(vb));
    assert_string_equal(va, vb);
}

/* A test-side envelope endpoint speaking as `as` to peers pinned in it
 * (to craft messages the engine itself would never send). */
struct tenv {
    struct cry_keystore *ks;
    struct cry_env *env;
};

static void tenv_open(struct tenv *t, struct tnode *as, struct tnode *to)
{
    struct cry_env_config c = {.clock = t_clock, .clock_arg = as};
    uint8_t kem[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    struct ut_err err = {{0}};

    assert_int_equal(cry_keystore_new(&t->ks), 0);
    cry_identity_public(to->ident, kem, pub);
    assert_int_equal(cry_keystore_pin(t->ks, to->id, kem, pub, &err), 0);
    assert_int_equal(cry_env_new(as->ident, t->ks, &c, &t->env, &err), 0);
}

static void tenv_close(struct tenv *t)
{
    cry_env_free(t->env);
    cry_keystore_free(t->ks);
}

/* Seals a request carrying payload from t to `to` and hands it to to's
 * engine with header hdr. Returns the HTTP status. */
static int tenv_send(struct tenv *t, struct tnode *to, const char *hdr, const uint8_t *payload,
                     size_t len)
{
    struct ut_err err = {{0}};
    uint8_t *msg = NULL, *resp = NULL;
    size_t ml = 0, rl = 0;
    int st = 0;

    assert_int_equal(cry_env_seal_request(t->env, to->id, payload, len, &msg, &ml, NULL, &err), 0);
    gsp_engine_handle(to->e, msg, ml, hdr, &resp, &rl, &st, &err);
    free(msg);
    free(resp);
    return st;
}

/* A request payload with one crafted entry (and an empty vv). */
static void craft_request(const struct crdt_entry *ce, uint8_t **out, size_t *len)
{
    struct gsp_vv empty = {0};
    struct gsp_msg_out mo = {0};
    struct ut_buf eb;
    struct gsp_vv through = {0};
    struct ut_err err = {{0}};

    ut_buf_init(&eb, 1u << 20);
    assert_int_equal(gsp_entry_encode(&eb, ce), 0);
    mo.kind = GSP_MSG_REQUEST;
    mo.vv = &empty;
    mo.entries = (const uint8_t *)eb.data;
    mo.entries_len = eb.len;
    mo.n_entries = 1;
    mo.through = &through;
    assert_int_equal(gsp_msg_encode(&mo, 1u << 20, out, len, NULL, &err), 0);
    ut_buf_free(&eb);
}

/* ---- membership and refusal of unknown senders ---- */

static void test_seed_and_unknown_sender(void **state)
{
    struct tnode a, b;
    struct ut_err err = {{0}};
    char *doc;
    int st = 0;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_open(&a);
    tn_open(&b);
    tn_seed(&a, &b); /* b does not know a */
    assert_true(tn_xchg_full(&a, &b, GSP_DUE_ROUND, NULL, 0, 0, &st, NULL, NULL) < 0);
    assert_int_equal(st, 403);
    assert_int_equal(tn_refusals(&b, NULL, "unknown_sender"), 1);
    assert_int_equal(tn_refusals(&a, b.id, "http_403"), 1);
    assert_int_equal(tn_stat(&a, b.id, "failures"), 1);

    tn_seed(&b, &a);
    assert_int_equal(tn_xchg(&a, &b), 0);
    assert_int_equal(tn_stat(&b, a.id, "served"), 1);

    /* Bad seeds: not JSON, our own id, a truncated key. */
    assert_int_equal(gsp_engine_seed(a.e, "{", 1, NULL, &err), -EINVAL);
    doc = tn_kem_info(&a);
    assert_int_equal(gsp_engine_seed(a.e, doc, strlen(doc), NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "own id"));
    free(doc);
    {
        json_t *j = gsp_kem_info_json(b.ident);
        char *s;

        json_object_set_new(j, "signing_public_key", json_string("AAAA"));
        s = json_dumps(j, JSON_COMPACT);
        assert_int_equal(gsp_engine_seed(a.e, s, strlen(s), NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "signing_public_key"));
        free(s);
        json_decref(j);
    }
    assert_int_equal(gsp_engine_peer_count(a.e), 1);
    tn_free(&a);
    tn_free(&b);
}

/* ---- convergence ---- */

static void test_converge_both_ways(void **state)
{
    struct tnode a, b;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    pair(&a, &b);
    tn_put(&a, "k1", "v1");
    tn_put(&a, "k2", "v2");
    tn_put(&b, "k3", "v3");
    g_now += 1;
    tn_del(&b, "k1"); /* a tombstone for a key b never saw, later than a's put */
    assert_true(tn_sync(&a, &b) > 0);
    assert_value(&a, "k1", NULL);
    assert_value(&b, "k1", NULL);
    assert_value(&a, "k2", "v2");
    assert_value(&b, "k2", "v2");
    assert_value(&a, "k3", "v3");
    assert_value(&b, "k3", "v3");
    assert_same_vv(&a, &b);

    /* A delete and an update flow the other way (b as requester). */
    g_now += 1;
    tn_del(&a, "k3");
    tn_put(&a, "k2", "v2b");
    assert_true(tn_sync(&b, &a) > 0);
    assert_value(&b, "k3", NULL);
    assert_value(&b, "k2", "v2b");
    assert_same_vv(&a, &b);
    assert_int_equal(tn_count(&a, "cluster_nodes"), 2);
    assert_int_equal(tn_count(&b, "cluster_nodes"), 2);
    tn_free(&a);
    tn_free(&b);
}

/* ---- paging ---- */

static void test_paging_resume(void **state)
{
    struct tnode a, b, c;
    long long before, lost, total;
    char key[32];
    int i;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    a.page_bytes = b.page_bytes = c.page_bytes = 256;
    pair(&a, &b);
    tn_open(&c);
    tn_seed(&a, &c);
    tn_seed(&c, &a);
    tn_put_many(&a, "kv", "p", 200, "vvvvvvvvvv", 0);

    /* b pulls a's 201 entries (200 + a's cluster_nodes entry) in pages. */
    for (i = 0; i < 5; i++)
        assert_int_equal(tn_xchg(&b, &a), 0);
    assert_true(tn_more_due(&b, &a));
    before = tn_stat(&a, NULL, "entries_sent");
    assert_true(before > 0 && before < 201);
    /* One response is lost on the way back. */
    assert_int_equal(tn_xchg_full(&b, &a, GSP_DUE_MORE, NULL, 0, 1, NULL, NULL, NULL), 0);
    lost = tn_stat(&a, NULL, "entries_sent") - before;
    assert_true(lost > 0);
    g_now += 5000; /* past the back-off */
    assert_true(tn_sync(&b, &a) > 0);
    total = tn_stat(&a, NULL, "entries_sent");
    /* Everything once, plus exactly the page that was lost: nothing that
     * was acknowledged was sent again. */
    assert_int_equal(total, 201 + lost);
    for (i = 0; i < 200; i += 37) {
        snprintf(key, sizeof(key), "p%d", i);
        assert_value(&b, key, "vvvvvvvvvv");
    }
    assert_same_vv(&a, &b);

    /* Pushing side: a pages its entries into c with its requests. */
    assert_int_equal(tn_xchg(&a, &c), 0); /* learns c's vv */
    for (i = 0; i < 4; i++)
        assert_int_equal(tn_xchg_full(&a, &c, GSP_DUE_MORE, NULL, 0, 0, NULL, NULL, NULL), 0);
    before = tn_stat(&a, c.id, "entries_sent");
    assert_int_equal(tn_xchg_full(&a, &c, GSP_DUE_MORE, NULL, 0, 1, NULL, NULL, NULL), 0);
    lost = tn_stat(&a, c.id, "entries_sent") - before;
    assert_true(lost > 0);
    g_now += 5000;
    assert_true(tn_sync(&a, &c) > 0);
    /* c applied the "lost" page already; a, not knowing, sends it again
     * once: a's 201 entries, b's cluster_nodes entry (forwarded), and the
     * one page whose acknowledgement was lost. */
    assert_int_equal(tn_stat(&a, c.id, "entries_sent"), 202 + lost);
    assert_same_vv(&a, &c);
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
}

/* ---- zstd ---- */

static void test_zstd_and_bomb(void **state)
{
    struct tnode a, b;
    struct gsp_msg m;
    struct gsp_msg_out mo = {0};
    struct crdt_entry ce = {.tbl = "kv", .key = "k", .hlc = 5, .origin = "o", .seq = 1};
    struct ut_buf eb;
    struct ut_err err = {{0}};
    uint8_t *p = NULL, zeros[65536] = {0};
    size_t len = 0, resp_len = 0, raw = 0;
    int compressed = 0;
    char big[1001];

    (void)state;
    /* Payload level: compressed above the threshold, round trip. */
    memset(big, 'x', 1000);
    big[1000] = '\0';
    ce.value = (const uint8_t *)big;
    ce.value_len = 1000;
    ut_buf_init(&eb, 1u << 20);
    for (int i = 0; i < 10; i++)
        assert_int_equal(gsp_entry_encode(&eb, &ce), 0);
    mo.kind = GSP_MSG_RESPONSE;
    mo.entries = (const uint8_t *)eb.data;
    mo.entries_len = eb.len;
    mo.n_entries = 10;
    assert_int_equal(gsp_msg_encode(&mo, 4096, &p, &len, &compressed, &err), 0);
    assert_int_equal(compressed, 1);
    assert_int_equal(p[0], GSP_HDR_ZSTD);
    assert_true(len < 1000);
    assert_int_equal(gsp_msg_decode(p, len, gsp_max_plain(1u << 20), &m, &err), 0);
    assert_int_equal(m.n_entries, 10);
    assert_int_equal(m.entries[9].value_len, 1000);
    assert_memory_equal(m.entries[9].value, big, 1000);
    assert_true(m.compressed);
    gsp_msg_free(&m);
    free(p);
    /* Below the threshold: plain CBOR. */
    mo.n_entries = 1;
    mo.entries_len = eb.len / 10;
    assert_int_equal(gsp_msg_encode(&mo, 4096, &p, &len, &compressed, &err), 0);
    assert_int_equal(compressed, 0);
    assert_int_equal(p[0], GSP_HDR_CBOR);
    free(p);
    ut_buf_free(&eb);

    /* A zstd bomb: 8 MiB of zeros in a small frame that declares it. */
    {
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        size_t cap = ZSTD_compressBound(sizeof(zeros)) * 128 + 64, pos = 1;
        uint8_t *bomb = malloc(cap);
        ZSTD_outBuffer ob = {bomb + 1, cap - 1, 0};

        assert_non_null(bomb);
        bomb[0] = GSP_HDR_ZSTD;
        ZSTD_CCtx_setPledgedSrcSize(cc, 128 * sizeof(zeros));
        for (int i = 0; i < 128; i++) {
            ZSTD_inBuffer ib = {zeros, sizeof(zeros), 0};
            ZSTD_compressStream2(cc, &ob, &ib, i == 127 ? ZSTD_e_end : ZSTD_e_continue);
        }
        pos += ob.pos;
        assert_true(pos < 4096); /* tiny on the wire */
        assert_int_equal(gsp_msg_decode(bomb, pos, gsp_max_plain(1u << 20), &m, &err), -E2BIG);
        assert_non_null(strstr(err.msg, "inflates"));

        /* Sent to an engine inside a valid envelope: 413. */
        tn_init(&a, "a.test:1", NULL);
        tn_init(&b, "b.test:2", NULL);
        pair(&a, &b);
        {
            struct tenv t;

            tenv_open(&t, &a, &b);
            assert_int_equal(tenv_send(&t, &b, a.id, bomb, pos), 413);
            tenv_close(&t);
        }
        assert_int_equal(tn_refusals(&b, a.id, "payload"), 1);
        /* A frame without its content size is refused too. */
        ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
        {
            ZSTD_inBuffer ib = {zeros, 100, 0};
            ob = (ZSTD_outBuffer){bomb + 1, cap - 1, 0};
            ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end);
            assert_int_equal(gsp_msg_decode(bomb, ob.pos + 1, 1u << 20, &m, &err), -EBADMSG);
        }
        ZSTD_freeCCtx(cc);
        free(bomb);
    }

    /* Engine level: 100 compressible values travel in far fewer bytes. */
    tn_put_many(&a, "kv", "z", 100, "x", 1000);
    raw = 100 * 1000;
    assert_int_equal(tn_xchg_full(&b, &a, GSP_DUE_ROUND, NULL, 0, 0, NULL, NULL, &resp_len), 0);
    assert_true(resp_len < raw / 10);
    {
        char *v = tn_get(&b, "kv", "z99");

        assert_non_null(v);
        assert_int_equal(strlen(v), 1000);
        free(v);
    }
    tn_free(&a);
    tn_free(&b);
}

/* ---- restart ---- */

static void test_restart_resumes(void **state)
{
    struct tnode a, b;
    long long s1;

    (void)state;
    tn_init(&a, "a.test:1", g_dir);
    tn_init(&b, "b.test:2", g_dir);
    pair(&a, &b);
    tn_put_many(&a, "kv", "r", 500, "value", 0);
    assert_true(tn_sync(&b, &a) > 0);
    assert_same_vv(&a, &b);
    s1 = tn_stat(&a, NULL, "entries_sent");
    assert_true(s1 >= 500);

    /* b restarts (same file, same identity): pins and vv come back. */
    tn_close(&b);
    tn_open(&b);
    assert_int_equal(tn_stat(&b, a.id, "pinned"), 1);
    tn_put_many(&a, "kv", "n", 5, "new", 0);
    assert_true(tn_sync(&b, &a) > 0);
    assert_int_equal(tn_stat(&a, NULL, "entries_sent") - s1, 5);
    assert_value(&b, "n4", "new");

    /* a restarts: b sends a only what a lacks. */
    tn_close(&a);
    tn_open(&a);
    s1 = tn_stat(&b, NULL, "entries_sent");
    tn_put_many(&b, "kv", "m", 3, "mmm", 0);
    assert_true(tn_sync(&a, &b) > 0);
    assert_int_equal(tn_stat(&b, NULL, "entries_sent") - s1, 3);
    assert_value(&a, "m2", "mmm");
    assert_same_vv(&a, &b);
    tn_free(&a);
    tn_free(&b);
}

/* ---- scheduling: generation skips, eager push, the write/round race ---- */

static int due_kind(struct tnode *a, struct tnode *b, uint64_t *next)
{
    struct gsp_due d[16];
    size_t n = gsp_engine_due(a->e, d, 16, next);

    for (size_t i = 0; i < n; i++)
        if (strcmp(d[i].node_id, b->id) == 0)
            return (int)d[i].kind;
    return 0;
}

static void test_generation_skips(void **state)
{
    struct tnode a, b;
    int rounds = 0;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.skip_max = 4;
    pair(&a, &b);
    assert_true(tn_sync(&a, &b) > 0);
    assert_int_equal(tn_stat(&a, NULL, "skips"), 0);
    for (int i = 0; i < 12; i++) {
        int k;

        g_now += 1000;
        k = due_kind(&a, &b, NULL);
        if (k == GSP_DUE_ROUND) {
            rounds++;
            assert_int_equal(tn_xchg(&a, &b), 0);
        } else {
            assert_int_equal(k, 0);
        }
    }
    /* skip, skip, skip, round: every 4th interval is a real round. */
    assert_int_equal(rounds, 3);
    assert_int_equal(tn_stat(&a, NULL, "skips"), 9);
    assert_int_equal(tn_stat(&a, b.id, "skips"), 9);
    /* A local change ends the skipping: the next interval is a round (or
     * the eager push before it). */
    tn_put(&a, "x", "1");
    g_now += 1000;
    assert_true(due_kind(&a, &b, NULL) == GSP_DUE_PUSH);
    tn_free(&a);
    tn_free(&b);
}

static void test_eager_push(void **state)
{
    struct tnode a, b;
    uint64_t next = 0;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    pair(&a, &b);
    assert_true(tn_sync(&a, &b) > 0);
    g_now += 100;
    assert_int_equal(due_kind(&a, &b, NULL), 0);

    tn_put(&a, "e1", "x");
    assert_int_equal(due_kind(&a, &b, &next), 0); /* not before push_delay */
    assert_int_equal(next, g_now + GSP_DEF_PUSH_DELAY_MS);
    g_now += 5;
    tn_put(&a, "e2", "y"); /* coalesced into the same push */
    assert_int_equal(due_kind(&a, &b, NULL), 0);
    g_now += 5;
    assert_int_equal(due_kind(&a, &b, NULL), GSP_DUE_PUSH);
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_PUSH, NULL, 0, 0, NULL, NULL, NULL), 0);
    assert_value(&b, "e1", "x");
    assert_value(&b, "e2", "y");
    assert_int_equal(tn_stat(&a, b.id, "pushes"), 1);
    assert_int_equal(tn_stat(&a, b.id, "entries_sent") >= 2, 1);
    g_now += 100;
    assert_int_equal(due_kind(&a, &b, NULL), 0); /* in sync again: nothing */
    /* Applying b's own entries does not make a push them back to b. */
    tn_put(&b, "from_b", "1");
    assert_true(tn_sync(&b, &a) > 0);
    g_now += 100;
    assert_int_equal(due_kind(&a, &b, NULL), 0);
    tn_free(&a);
    tn_free(&b);
}

static void test_write_during_round(void **state)
{
    struct tnode a, b;
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL, *resp = NULL;
    size_t ml = 0, rl = 0;
    int st = 0, k;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    pair(&a, &b);
    assert_true(tn_sync(&a, &b) > 0);
    /* The request is built, then a local write lands before the answer. */
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), 0);
    tn_put(&a, "race", "1");
    assert_int_equal(gsp_engine_handle(b.e, msg, ml, a.id, &resp, &rl, &st, &err), 0);
    assert_int_equal(gsp_engine_finish(a.e, x, resp, rl, &err), 0);
    free(msg);
    free(resp);
    assert_value(&b, "race", NULL);
    /* The write is neither lost nor skipped: it is pushed next. */
    g_now += GSP_DEF_PUSH_DELAY_MS;
    k = due_kind(&a, &b, NULL);
    assert_true(k == GSP_DUE_PUSH || k == GSP_DUE_MORE);
    assert_int_equal(tn_xchg_full(&a, &b, (enum gsp_due_kind)k, NULL, 0, 0, NULL, NULL, NULL), 0);
    assert_value(&b, "race", "1");
    assert_same_vv(&a, &b);
    tn_free(&a);
    tn_free(&b);
}

/* A responder raises its copy of the requester's vv by what its response
 * declared complete. When that response is lost, the copy is too high; a
 * later push starting from it must not make the receiver skip the gap. */
static void test_stale_belief(void **state)
{
    struct tnode a, b;
    char va[1024], vb[1024];

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    pair(&a, &b);
    assert_true(tn_sync(&a, &b) > 0);
    tn_put(&a, "k1", "1");
    /* b pulls k1, the response is lost: a now believes b has k1. */
    assert_int_equal(tn_xchg_full(&b, &a, GSP_DUE_ROUND, NULL, 0, 1, NULL, NULL, NULL), 0);
    assert_value(&b, "k1", NULL);
    g_now += 10;
    tn_put(&a, "k2", "2");
    g_now += 10;
    /* a pushes k2 only; b applies it but must not claim k1. */
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_PUSH, NULL, 0, 0, NULL, NULL, NULL), 0);
    assert_value(&b, "k2", "2");
    assert_value(&b, "k1", NULL);
    tn_vv(&a, va, sizeof(va));
    tn_vv(&b, vb, sizeof(vb));
    assert_string_not_equal(va, vb);
    /* a learned b's real vv from that response and sends the gap at once. */
    assert_true(tn_more_due(&a, &b));
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_MORE, NULL, 0, 0, NULL, NULL, NULL), 0);
    assert_value(&b, "k1", "1");
    assert_same_vv(&a, &b);
    tn_free(&a);
    tn_free(&b);
}

/* ---- clock skew: refused entries are not skipped over ---- */

static void test_clock_skew(void **state)
{
    struct tnode a, b;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    b.max_skew_ms = 5000; /* b accepts stamps at most 5 s ahead */
    pair(&a, &b);
    assert_true(tn_sync(&b, &a) > 0);
    b.skew = -10000; /* now b's clock falls 10 s behind */
    tn_put(&a, "s", "ahead");
    assert_int_equal(tn_xchg(&b, &a), 0);
    assert_value(&b, "s", NULL);
    assert_true(tn_refusals(&b, a.id, "clock_skew") > 0);
    /* No hot loop: b does not ask for the same page again at once. */
    assert_int_equal(tn_more_due(&b, &a), 0);
    /* Once b's clock catches up, the next round delivers. */
    g_now += 6000;
    assert_true(tn_sync(&b, &a) > 0);
    assert_value(&b, "s", "ahead");
    tn_free(&a);
    tn_free(&b);
}

/* ---- cluster_nodes: forgery and rotation ---- */

/* An identity carrying `as_id` but the keys of `keys`. */
static struct cry_identity *impersonate(const char *as_id, const struct cry_identity *keys)
{
    uint8_t seed[CRY_XWING_SK_BYTES], priv[CRY_P256_PRIV_BYTES];
    struct cry_identity *id = NULL;
    struct ut_err err = {{0}};

    cry_identity_export_secret(keys, seed, priv);
    assert_int_equal(cry_identity_load(as_id, seed, priv, &id, &err), 0);
    return id;
}

static void test_member_forgery(void **state)
{
    struct tnode a, b, c;
    struct cry_identity *fake = NULL, *c2 = NULL;
    struct crdt_entry ce = {0};
    struct ut_err err = {{0}};
    struct tenv tb;
    char *json = NULL, *held = NULL, *now_held = NULL;
    uint8_t *pl = NULL;
    size_t jl = 0, pll = 0;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    pair(&a, &b);
    tn_open(&c);
    tn_seed(&a, &c);
    tn_seed(&c, &a);
    assert_true(tn_sync(&a, &c) > 0);
    held = tn_get(&a, "cluster_nodes", c.id);
    assert_non_null(held);

    /* 1. b writes a row for c with its own crdt origin. */
    fake = impersonate(c.id, b.ident);
    g_now += 10;
    assert_int_equal(gsp_member_make(fake, NULL, "http://evil", g_now, NULL, &json, &jl, &err), 0);
    {
        struct wctx w = {&b, "cluster_nodes", c.id, json, 0, 0};
        assert_int_equal(store_write(b.s, write_job, &w, &err), 0);
    }
    assert_true(tn_sync(&a, &b) > 0);
    now_held = tn_get(&a, "cluster_nodes", c.id);
    assert_string_equal(now_held, held);
    free(now_held);
    assert_true(tn_refusals(&a, b.id, "member_entry") >= 1);

    /* 2. b crafts an entry under c's origin, self-signed by b's key. */
    tenv_open(&tb, &b, &a);
    ce.tbl = "cluster_nodes";
    ce.key = c.id;
    ce.value = (const uint8_t *)json;
    ce.value_len = jl;
    ce.hlc = CRDT_HLC_MAKE(g_now + 1, 0);
    ce.origin = c.id;
    ce.seq = 1000;
    craft_request(&ce, &pl, &pll);
    assert_int_equal(tenv_send(&tb, &a, b.id, pl, pll), 200);
    free(pl);
    free(json);
    now_held = tn_get(&a, "cluster_nodes", c.id);
    assert_string_equal(now_held, held);
    free(now_held);

    /* 3. A "rotation" signed by a key that is not c's. */
    assert_int_equal(cry_identity_generate(c.id, &c2, &err), 0);
    assert_int_equal(gsp_member_make(c2, fake, "http://evil", g_now + 2, NULL, &json, &jl, &err),
                     0);
    ce.value = (const uint8_t *)json;
    ce.value_len = jl;
    ce.hlc = CRDT_HLC_MAKE(g_now + 2, 0);
    ce.seq = 1001;
    craft_request(&ce, &pl, &pll);
    assert_int_equal(tenv_send(&tb, &a, b.id, pl, pll), 200);
    free(pl);
    free(json);
    now_held = tn_get(&a, "cluster_nodes", c.id);
    assert_string_equal(now_held, held);
    free(now_held);
    assert_true(tn_refusals(&a, b.id, "member_entry") >= 3);

    /* 4. A real rotation (new key signed by c's old one), relayed by b:
     * taken, and a re-pins c to the new key. */
    assert_int_equal(gsp_member_make(c2, c.ident, c.url, g_now + 3, NULL, &json, &jl, &err), 0);
    ce.value = (const uint8_t *)json;
    ce.value_len = jl;
    ce.hlc = CRDT_HLC_MAKE(g_now + 3, 0);
    ce.seq = 1002;
    craft_request(&ce, &pl, &pll);
    assert_int_equal(tenv_send(&tb, &a, b.id, pl, pll), 200);
    free(pl);
    now_held = tn_get(&a, "cluster_nodes", c.id);
    assert_string_equal(now_held, json);
    free(now_held);
    free(json);
    {
        struct tnode c2n = c;
        struct tenv tc;
        uint8_t *p2 = NULL;
        size_t l2 = 0;
        struct gsp_vv empty = {0};
        struct gsp_msg_out mo = {.kind = GSP_MSG_REQUEST, .vv = &empty};

        c2n.ident = c2;
        tenv_open(&tc, &c2n, &a);
        assert_int_equal(gsp_msg_encode(&mo, 4096, &p2, &l2, NULL, &err), 0);
        assert_int_equal(tenv_send(&tc, &a, c.id, p2, l2), 200);
        free(p2);
        tenv_close(&tc);
        /* The old key is no longer accepted for c. */
        tenv_open(&tc, &c, &a);
        assert_int_equal(gsp_msg_encode(&mo, 4096, &p2, &l2, NULL, &err), 0);
        assert_int_equal(tenv_send(&tc, &a, c.id, p2, l2), 403);
        free(p2);
        tenv_close(&tc);
    }
    tenv_close(&tb);
    free(held);
    cry_identity_free(fake);
    cry_identity_free(c2);
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
}

/* ---- allowed_node_ids gates learned nodes ---- */

static void learn_case(const char *const *allowed, size_t n_allowed, int want_pinned)
{
    struct tnode a, b, c;
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL;
    size_t ml = 0;
    int rc;

    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    tn_init(&c, "c.test:3", NULL);
    for (size_t i = 0; i < n_allowed; i++)
        a.allowed[i] = allowed[i];
    a.n_allowed = n_allowed;
    tn_open(&b);
    tn_open(&c);
    tn_seed(&b, &c);
    tn_seed(&c, &b);
    assert_true(tn_sync(&b, &c) > 0); /* b holds c's cluster_nodes entry */
    tn_open(&a);
    tn_seed(&a, &b);
    tn_seed(&b, &a);
    assert_true(tn_sync(&a, &b) > 0); /* a learns c's entry through b */
    {
        char *v = tn_get(&a, "cluster_nodes", c.id);

        assert_non_null(v);
        assert_non_null(strstr(v, c.id));
        free(v);
    }
    assert_int_equal(tn_stat(&a, c.id, "pinned"), want_pinned ? 1 : -1);
    rc = gsp_engine_begin(a.e, c.id, GSP_DUE_ROUND, &msg, &ml, &x, &err);
    if (want_pinned) {
        assert_int_equal(rc, 0);
        assert_int_equal(tn_stat(&a, c.id, "learned"), 1);
        gsp_engine_fail(a.e, x, 0, "test");
        free(msg);
    } else {
        assert_int_equal(rc, -ENOKEY);
        if (n_allowed > 0) {
            /* ...and an administrator cannot seed it either. */
            char *doc = tn_kem_info(&c);
            assert_int_equal(gsp_engine_seed(a.e, doc, strlen(doc), NULL, &err), -EPERM);
            free(doc);
        }
    }
    tn_free(&a);
    tn_free(&b);
    tn_free(&c);
}

static void test_allowed_node_ids(void **state)
{
    const char *both[] = {"b.test:2", "c.test:3"};
    const char *only_b[] = {"b.test:2"};

    (void)state;
    learn_case(both, 2, 1);
    learn_case(only_b, 1, 0);
    /* Without allowed_node_ids only seeded nodes are trusted. */
    learn_case(NULL, 0, 0);
}

/* ---- refusals: header mismatch, replay ---- */

static void test_header_mismatch(void **state)
{
    struct tnode a, b;
    char *log;
    int st = 0;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    pair(&a, &b);
    log_start();
    assert_true(tn_xchg_full(&a, &b, GSP_DUE_ROUND, "c.test:3", 1, 0, &st, NULL, NULL) < 0);
    assert_int_equal(st, 403);
    assert_true(tn_xchg_full(&a, &b, GSP_DUE_ROUND, NULL, 1, 0, &st, NULL, NULL) < 0);
    assert_int_equal(st, 403);
    log = log_stop();
    assert_int_equal(tn_refusals(&b, a.id, "node_id_header"), 2);
    assert_true(log_has_line(log, "WARN gossip: X-Akamu-Node-Id header rejected by peer "
                                  "peer=\"http://b.test:2\""));
    assert_non_null(strstr(log, "WARN gossip: sync request refused peer=\"a.test:1\" "
                                "reason=\"node_id_header\" status=403"));
    free(log);
    assert_int_equal(tn_xchg(&a, &b), 0); /* the right header works */
    tn_free(&a);
    tn_free(&b);
}

static void replay_case(int sessions)
{
    struct tnode a, b;
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL, *r1 = NULL, *r2 = NULL;
    size_t ml = 0, l1 = 0, l2 = 0;
    int st = 0;

    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.sessions = b.sessions = sessions;
    pair(&a, &b);
    assert_true(tn_sync(&a, &b) > 0); /* sessions: later requests use one */
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), 0);
    assert_int_equal(gsp_engine_handle(b.e, msg, ml, a.id, &r1, &l1, &st, &err), 0);
    assert_int_equal(st, 200);
    assert_true(gsp_engine_handle(b.e, msg, ml, a.id, &r2, &l2, &st, &err) < 0);
    assert_int_equal(st, 409);
    assert_null(r2);
    assert_int_equal(gsp_engine_finish(a.e, x, r1, l1, &err), 0);
    assert_true(tn_refusals(&b, NULL, sessions ? "counter_replay" : "replay") == 1);
    free(msg);
    free(r1);
    tn_free(&a);
    tn_free(&b);
}

static void test_replay(void **state)
{
    (void)state;
    replay_case(0);
    replay_case(1);
}

/* ---- exact log lines ---- */

static void test_log_lines(void **state)
{
    struct tnode a, b, z;
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL, *resp = NULL;
    size_t ml = 0, rl = 0;
    int st = 0;
    char *log;

    (void)state;
    tn_init(&z, "z.test:9", NULL);
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.peers[0] = "http://b.test:2/";
    a.n_peers = 1;
    b.peers[0] = "http://a.test:1";
    b.n_peers = 1;
    log_start();
    tn_open(&z); /* no peers at all */
    tn_open(&a);
    tn_open(&b);
    /* The configured URL resolves to b, which is not pinned yet. */
    assert_int_equal(gsp_engine_resolve_url(a.e, "http://b.test:2", b.id, &err), 0);
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), -ENOKEY);
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), -ENOKEY);
    tn_seed(&a, &b);
    tn_seed(&b, &a);
    tn_put(&b, "k1", "1");
    tn_put(&b, "k2", "2");
    assert_true(tn_sync(&a, &b) > 0);
    /* A response that does not verify. */
    assert_int_equal(gsp_engine_begin(a.e, b.id, GSP_DUE_ROUND, &msg, &ml, &x, &err), 0);
    assert_int_equal(gsp_engine_handle(b.e, msg, ml, a.id, &resp, &rl, &st, &err), 0);
    resp[rl - 1] ^= 1;
    assert_true(gsp_engine_finish(a.e, x, resp, rl, &err) < 0);
    free(msg);
    free(resp);
    log = log_stop();
    assert_true(log_has_line(log, "WARN gossip: no peers configured — loop disabled"));
    assert_true(log_has_line(log, "WARN gossip: no KEM key for peer, skipping "
                                  "peer=\"http://b.test:2\""));
    assert_true(log_has_line(log, "INFO gossip: first-contact merge complete "
                                  "peer=\"http://b.test:2\" accounts=0 kv=2 cluster_nodes=2"));
    assert_true(log_has_line(log, "WARN gossip: verify_and_open response failed "
                                  "peer=\"http://b.test:2\" reason=\"signature\""));
    /* "no KEM key" once per peer state, not per attempt. */
    assert_ptr_equal(strstr(strstr(log, "no KEM key") + 1, "no KEM key"), NULL);
    /* a has a configured peer: no "loop disabled" from a. */
    assert_ptr_equal(strstr(strstr(log, "loop disabled") + 1, "loop disabled"), NULL);
    free(log);
    assert_int_equal(tn_refusals(&a, b.id, "no_key"), 2);
    assert_int_equal(tn_refusals(&a, b.id, "signature"), 1);
    tn_free(&z);
    tn_free(&a);
    tn_free(&b);
}

/* ---- resolution and peer lists ---- */

static void test_resolve_and_reload(void **state)
{
    struct tnode a, b;
    struct ut_err err = {{0}};
    struct gsp_due d[8];
    const char *urls[] = {"http://c.test:3"};
    size_t n;

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.peers[0] = "http://b.test:2/";
    a.peers[1] = a.url; /* our own URL in a shared list is ignored */
    a.n_peers = 2;
    tn_open(&a);
    tn_open(&b);
    assert_int_equal(gsp_engine_peer_count(a.e), 1);
    n = gsp_engine_due(a.e, d, 8, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].kind, GSP_DUE_RESOLVE);
    assert_string_equal(d[0].url, "http://b.test:2");
    assert_string_equal(d[0].node_id, "");
    assert_int_equal(gsp_engine_due(a.e, d, 8, NULL), 0); /* not again at once */
    assert_int_equal(gsp_engine_resolve_url(a.e, "http://nowhere", b.id, &err), -ENOENT);
    assert_int_equal(gsp_engine_resolve_url(a.e, "http://b.test:2", b.id, &err), 0);
    tn_seed(&a, &b);
    tn_seed(&b, &a);
    n = gsp_engine_due(a.e, d, 8, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].kind, GSP_DUE_ROUND);
    assert_string_equal(d[0].node_id, b.id);
    assert_string_equal(d[0].url, "http://b.test:2");
    assert_int_equal(tn_stat(&a, b.id, "configured"), 1);
    assert_int_equal(tn_stat(&a, b.id, "seeded"), 1);

    /* SIGHUP: the list now names c only. b stays (seeded), not configured. */
    assert_int_equal(gsp_engine_set_peers(a.e, urls, 1, &err), 0);
    assert_int_equal(gsp_engine_peer_count(a.e), 2);
    assert_int_equal(tn_stat(&a, b.id, "configured"), 0);
    n = gsp_engine_due(a.e, d, 8, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].kind, GSP_DUE_RESOLVE);
    assert_string_equal(d[0].url, "http://c.test:3");
    tn_free(&a);
    tn_free(&b);
}

/* ---- observability and idle cost ---- */

static void test_status_and_metrics(void **state)
{
    struct tnode a, b;
    struct ut_buf m;
    json_t *st;
    size_t q1 = 0, r1 = 0, q2 = 0, r2 = 0;
    char line[256];

    (void)state;
    tn_init(&a, "a.test:1", NULL);
    tn_init(&b, "b.test:2", NULL);
    a.sessions = b.sessions = 1;
    pair(&a, &b);
    tn_put(&a, "k", "v");
    assert_true(tn_sync(&a, &b) > 0);
    /* Idle exchanges: the second names both vvs by hash. */
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_ROUND, NULL, 0, 0, NULL, &q1, &r1), 0);
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_ROUND, NULL, 0, 0, NULL, &q2, &r2), 0);
    print_message("idle exchange with sessions: request %zu + response %zu = %zu bytes\n", q2, r2,
                  q2 + r2);
    assert_true(q2 + r2 <= q1 + r1);
    assert_true(q2 + r2 < 600);
    g_now += 10;
    tn_put(&a, "k2", "v2");
    g_now += 10;
    assert_int_equal(due_kind(&a, &b, NULL), GSP_DUE_PUSH);
    assert_int_equal(tn_xchg_full(&a, &b, GSP_DUE_PUSH, NULL, 0, 0, NULL, NULL, NULL), 0);
    gsp_engine_fail(NULL, NULL, 0, NULL); /* NULL exchange: no-op */

    st = gsp_engine_status(a.e);
    assert_string_equal(json_string_value(json_object_get(st, "node_id")), a.id);
    assert_true(json_is_integer(json_object_get(st, "generation")));
    assert_true(json_is_object(json_object_get(st, "vv")));
    assert_int_equal(json_array_size(json_object_get(st, "peers")), 1);
    json_decref(st);
    assert_int_equal(tn_stat(&a, b.id, "pushes"), 1);
    assert_true(tn_stat(&a, b.id, "rounds") >= 3);
    assert_true(tn_stat(&a, b.id, "bytes_out") > 0);
    assert_true(tn_stat(&a, b.id, "bytes_in") > 0);
    assert_true(tn_stat(&a, b.id, "last_success_ms") == (long long)g_now);
    assert_true(tn_stat(&b, a.id, "entries_received") >= 2);
    assert_int_equal(tn_stat(&a, b.id, "pinned"), 1);

    ut_buf_init(&m, 1u << 20);
    assert_int_equal(gsp_engine_metrics(a.e, "akamu_gossip", &m), 0);
    assert_non_null(strstr(m.data, "# TYPE akamu_gossip_pushes_total counter\n"));
    assert_non_null(strstr(m.data, "\nakamu_gossip_pushes_total 1\n"));
    snprintf(line, sizeof(line), "\nakamu_gossip_peer_pushes_total{peer=\"%s\"} 1\n", b.id);
    assert_non_null(strstr(m.data, line));
    assert_non_null(strstr(m.data, "akamu_gossip_peer_bytes_out_total{peer=\"b.test:2\"} "));
    assert_non_null(strstr(m.data, "akamu_gossip_skips_total "));
    assert_non_null(strstr(m.data, "akamu_gossip_peer_pinned{peer=\"b.test:2\"} 1\n"));
    ut_buf_free(&m);
    ut_buf_init(&m, 1u << 20);
    {
        int stc = 0;
        assert_true(tn_xchg_full(&a, &b, GSP_DUE_ROUND, "x", 1, 0, &stc, NULL, NULL) < 0);
    }
    assert_int_equal(gsp_engine_metrics(b.e, "akamu_gossip", &m), 0);
    assert_non_null(strstr(m.data, "akamu_gossip_refusals_total{reason=\"node_id_header\"} 1\n"));
    assert_non_null(strstr(m.data, "akamu_gossip_peer_refusals_total{peer=\"a.test:1\","
                                   "reason=\"node_id_header\"} 1\n"));
    ut_buf_free(&m);
    tn_free(&a);
    tn_free(&b);
}

/* ---- payload decoder limits ---- */

static void test_payload_limits(void **state)
{
    struct gsp_msg m;
    struct ut_err err = {{0}};
    /* {0: 1, 1: 0, 0: 1}: repeated key */
    static const uint8_t dup[] = {0x00, 0xa3, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01};
    /* indefinite map */
    static const uint8_t indef[] = {0x00, 0xbf, 0x00, 0x01, 0x01, 0x00, 0xff};
    /* {0: 2, 1: 0}: unknown version */
    static const uint8_t ver[] = {0x00, 0xa2, 0x00, 0x02, 0x01, 0x00};
    /* {0: 1, 1: 0, 6: [ ...2^32 entries... ]} */
    static const uint8_t huge[] = {0x00, 0xa3, 0x00, 0x01, 0x01, 0x00,
                                   0x06, 0x9a, 0xff, 0xff, 0xff, 0xff};
    /* {0: 1, 1: 0, 3: {"b": 1, "a": 2}}: vv out of order */
    static const uint8_t order[] = {0x00, 0xa3, 0x00, 0x01, 0x01, 0x00, 0x03,
                                    0xa2, 0x61, 'b',  0x01, 0x61, 'a',  0x02};
    /* {0: 1, 1: 0} + trailing byte */
    static const uint8_t trail[] = {0x00, 0xa2, 0x00, 0x01, 0x01, 0x00, 0x00};
    static const uint8_t ok[] = {0x00, 0xa2, 0x00, 0x01, 0x01, 0x00};

    (void)state;
    assert_int_equal(gsp_msg_decode(ok, sizeof(ok), 1024, &m, &err), 0);
    gsp_msg_free(&m);
    assert_int_equal(gsp_msg_decode(dup, sizeof(dup), 1024, &m, &err), -EBADMSG);
    assert_int_equal(gsp_msg_decode(indef, sizeof(indef), 1024, &m, &err), -EBADMSG);
    assert_int_equal(gsp_msg_decode(ver, sizeof(ver), 1024, &m, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "version"));
    assert_int_equal(gsp_msg_decode(huge, sizeof(huge), 1024, &m, &err), -E2BIG);
    assert_int_equal(gsp_msg_decode(order, sizeof(order), 1024, &m, &err), -EBADMSG);
    assert_int_equal(gsp_msg_decode(trail, sizeof(trail), 1024, &m, &err), -EBADMSG);
    assert_int_equal(gsp_msg_decode(ok, sizeof(ok), 2, &m, &err), -E2BIG);
    assert_int_equal(gsp_msg_decode(ok, 1, 1024, &m, &err), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_and_unknown_sender),
        cmocka_unit_test(test_converge_both_ways),
        cmocka_unit_test(test_paging_resume),
        cmocka_unit_test(test_zstd_and_bomb),
        cmocka_unit_test(test_restart_resumes),
        cmocka_unit_test(test_generation_skips),
        cmocka_unit_test(test_eager_push),
        cmocka_unit_test(test_write_during_round),
        cmocka_unit_test(test_stale_belief),
        cmocka_unit_test(test_clock_skew),
        cmocka_unit_test(test_member_forgery),
        cmocka_unit_test(test_allowed_node_ids),
        cmocka_unit_test(test_header_mismatch),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_resolve_and_reload),
        cmocka_unit_test(test_status_and_metrics),
        cmocka_unit_test(test_payload_limits),
    };

    ut_log_set_level(UT_LOG_WARN);
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
