/*
 * authz.c - authorizations (RFC 8555 §7.1.4, deactivation §7.5.2) and
 * challenges (§7.1.5, responding §7.5.1, §8): the two resources, their
 * renderers, the client's response that hands a challenge to the
 * validation pool (validate.c), the pool's results (akm_va_done) and the
 * start-up resubmission of validations a previous run left "processing".
 *
 * Transitions. Each runs inside the store's writer (akm_update, or a
 * store_write job made of nested akm_update calls, which share the job's
 * transaction), so on this node the check guarding a write cannot
 * interleave with another write:
 *   challenge pending -> processing        the client's response (start_job)
 *   challenge processing -> valid|invalid  akm_va_done, in one job with
 *   authz pending -> valid|invalid         (valid: expires = now + authz_expiry_secs)
 *   authz pending|valid -> deactivated     the client (§7.5.2)
 *   authz pending|valid -> expired         whenever one of the above, or a
 *                                          read, finds it past "expires"
 * After an authorization changed, its order is recomputed
 * (akm_order_refresh, order.c); after a deactivation, every pending or
 * ready order of the account that lists it (order.c reuses valid
 * authorizations in later orders).
 *
 * Policies where RFC 8555 leaves room:
 *  - Only the owning account sees an authorization or a challenge; another
 *    account gets the same 404 "malformed" as an unknown id, so ids cannot
 *    be probed.
 *  - An authorization accepts POST-as-GET or {"status":"deactivated"};
 *    any other payload is malformed. Deactivating an authorization that is
 *    neither pending nor valid is malformed.
 *  - Any JSON object is a response to a challenge (§7.5.1 sends "{}";
 *    members are ignored). Responding to a challenge that is no longer
 *    pending returns it unchanged with 200 (idempotent, as Boulder).
 *    Responding while the authorization is not pending, or while another
 *    challenge of it is processing, is malformed (one validation per
 *    authorization at a time).
 *  - A full validation queue: the challenge goes back to pending and the
 *    client gets 503 rateLimited with Retry-After (§6.6).
 *
 * Ownership (lease.c). The node that moves a challenge pending ->
 * processing takes the order's lease in the same store job (a validation's
 * lease outlives its deadline); the result is written only if that lease
 * is still ours with the same epoch and not expired (else it is dropped:
 * "stale order owner fenced"), and the lease is released with the last
 * result of the order's validations. A challenge left "processing" whose
 * lease is free or expired (its owner stopped) is validated again by the
 * node that next reads it or its authorization (akm_authz_adopt), under a
 * new epoch; a restarted node resubmits only what it still holds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme.h"
#include "util/log.h"

#define MOD              "acme"
#define RETRY_AFTER_SECS 5
#define PAGE             64 /* ids per akm_each call */

static const char *str(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* ---- renderers ---- */

json_t *akm_chall_render(const struct akamu *k, const json_t *ch)
{
    const char *id = str(ch, "id"), *type = str(ch, "type"), *status = str(ch, "status"),
               *token = str(ch, "token");
    const json_t *validated = json_object_get(ch, "validated"),
                 *error = json_object_get(ch, "error");
    char url[AKM_URL_MAX], t[32];
    json_t *o;

    if (id == NULL || type == NULL || status == NULL || token == NULL)
        return NULL;
    akm_url(k, url, "/acme/chall/%s", id);
    o = json_pack("{s:s, s:s, s:s, s:s}", "type", type, "url", url, "status", status, "token",
                  token);
    if (o && json_is_integer(validated)) {
        akm_time_text(json_integer_value(validated), t);
        json_object_set_new(o, "validated", json_string(t));
    }
    if (o && json_is_object(error))
        json_object_set_new(o, "error", json_deep_copy(error));
    return o;
}

/* §7.1.4: a pending authorization lists every challenge, a valid one the
 * challenge that was validated, an invalid one those that failed (all of
 * them when none did, e.g. after deactivation). Challenges not replicated
 * to this node yet are left out. */
json_t *akm_authz_render(struct akamu *k, const json_t *az)
{
    const char *status = str(az, "status");
    const json_t *ident = json_object_get(az, "identifier"),
                 *ids = json_object_get(az, "challenges");
    const json_t *expires = json_object_get(az, "expires");
    int final = is(status, "valid") || is(status, "invalid");
    json_t *all = json_array(), *done = json_array(), *o = NULL, *v, *ch, *rc;
    char t[32];
    size_t i;

    if (all == NULL || done == NULL || status == NULL || str(ident, "type") == NULL ||
        str(ident, "value") == NULL || !json_is_integer(expires))
        goto out;
    json_array_foreach(ids, i, v)
    {
        if (!json_is_string(v) || (ch = akm_get(k, "challenges", json_string_value(v))) == NULL)
            continue;
        if ((rc = akm_chall_render(k, ch)) != NULL) {
            if (final && is(str(ch, "status"), status))
                json_array_append(done, rc);
            json_array_append_new(all, rc);
        }
        json_decref(ch);
    }
    akm_time_text(json_integer_value(expires), t);
    o = json_pack("{s:{s:s, s:s}, s:s, s:s, s:O}", "identifier", "type", str(ident, "type"),
                  "value", str(ident, "value"), "status", status, "expires", t, "challenges",
                  json_array_size(done) ? done : all);
    if (o && json_is_true(json_object_get(az, "wildcard")))
        json_object_set_new(o, "wildcard", json_true());
out:
    json_decref(all);
    json_decref(done);
    return o;
}

/* ---- transitions ---- */

/* One authorization transition, expiry first (see the header). */
struct az_step {
    int64_t now;
    const char *to;  /* NULL: apply expiry only */
    int from_valid;  /* `to` also from "valid" (deactivation) */
    int64_t expires; /* > 0: the new "expires" when moving */
    int changed;     /* out: the document was written */
    int moved;       /* out: ... to `to` */
};

static int az_step_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct az_step *s = arg;
    const char *st;

    s->changed = s->moved = 0; /* a store job may run again: start over */
    if (*doc == NULL) {
        ut_err_set(err, "authorization not found");
        return -ENOENT;
    }
    st = str(*doc, "status");
    if (!is(st, "pending") && !is(st, "valid"))
        return 0;
    if (s->now > json_integer_value(json_object_get(*doc, "expires"))) {
        json_object_set_new(*doc, "status", json_string("expired"));
    } else if (s->to && (is(st, "pending") || s->from_valid)) {
        json_object_set_new(*doc, "status", json_string(s->to));
        if (s->expires > 0)
            json_object_set_new(*doc, "expires", json_integer(s->expires));
        s->moved = 1;
    } else {
        return 0;
    }
    s->changed = 1;
    return 1;
}

static int needs_expiry(const json_t *az, int64_t now)
{
    const char *st = str(az, "status");

    return (is(st, "pending") || is(st, "valid")) &&
           now > json_integer_value(json_object_get(az, "expires"));
}

static void refresh_order(struct akamu *k, const json_t *az)
{
    struct ut_err e = {{0}};
    const char *order = str(az, "order");

    if (order && akm_order_refresh(k, order, &e) < 0)
        ut_log(UT_LOG_WARN, MOD, "order refresh failed", UT_LF_S("order", order),
               UT_LF_S("error", e.msg));
}

static int read_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)doc;
    (void)arg;
    (void)err;
    return 0;
}

/* tbl/id as seen inside a store job: a nested akm_update writing nothing. */
static int job_read(struct akamu *k, const char *tbl, const char *id, json_t **out,
                    struct ut_err *err)
{
    *out = NULL;
    return akm_update(k, tbl, id, read_fn, NULL, out, err);
}

/* tbl/id when it exists and belongs to account, else NULL. */
static json_t *get_owned(struct akamu *k, const char *tbl, const char *id, const char *account)
{
    json_t *doc = id ? akm_get(k, tbl, id) : NULL;

    if (doc && !is(str(doc, "account"), account)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

/* A page of ids from akm_each, and where to go on from. */
struct id_page {
    const char *authz; /* orders: those listing this authorization */
    char ids[PAGE][AKM_ID_LEN + 1];
    int n;
    char last[1025]; /* the last key seen (at most CRDT_KEY_MAX) */
};

static int order_using_fn(const char *id, json_t *doc, void *arg)
{
    struct id_page *p = arg;
    const char *st = str(doc, "status");
    json_t *v;
    size_t i;

    snprintf(p->last, sizeof(p->last), "%s", id);
    if ((!is(st, "pending") && !is(st, "ready")) || strlen(id) > AKM_ID_LEN)
        return 0;
    json_array_foreach(json_object_get(doc, "authorizations"), i, v)
    {
        if (is(json_string_value(v), p->authz)) {
            snprintf(p->ids[p->n++], AKM_ID_LEN + 1, "%s", id);
            break;
        }
    }
    return 0;
}

/* After a deactivation: every pending or ready order of the account that
 * lists the authorization, not only the one that created it (order.c
 * reuses valid authorizations in later orders). */
static void refresh_orders_using(struct akamu *k, const char *account, const char *authz_id)
{
    struct id_page *p = calloc(1, sizeof(*p));
    struct ut_err e = {{0}};
    int rc;

    if (p == NULL)
        return;
    p->authz = authz_id;
    do {
        p->n = 0;
        rc = akm_each(k, "orders", "account", account, p->last[0] ? p->last : NULL, PAGE,
                      order_using_fn, p, &e);
        for (int i = 0; i < p->n; i++) {
            if (akm_order_refresh(k, p->ids[i], &e) < 0)
                ut_log(UT_LOG_WARN, MOD, "order refresh failed", UT_LF_S("order", p->ids[i]),
                       UT_LF_S("error", e.msg));
        }
    } while (rc == PAGE);
    if (rc < 0)
        ut_log(UT_LOG_WARN, MOD, "cannot list the orders of an account",
               UT_LF_S("account", account), UT_LF_S("error", e.msg));
    free(p);
}

/* ---- POST /acme/authz/{id} ---- */

static void authz_post(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    const char *id = http_req_param(r, "id");
    struct az_step s = {.now = akm_now()};
    struct ut_err e = {{0}};
    struct akm_ctx c;
    json_t *az = NULL, *doc;

    if (akm_auth_at(k, r, AKM_AUTH_KID, "authorizations", id, &c) < 0)
        return;
    if ((az = get_owned(k, "authorizations", id, c.account_id)) == NULL) {
        akm_problem(k, r, 404, "malformed", "no such authorization: %.64s", id);
        goto out;
    }
    if (c.payload) {
        if (!is(str(c.payload, "status"), "deactivated")) {
            akm_problem(k, r, 400, "malformed",
                        "an authorization takes POST-as-GET or {\"status\":\"deactivated\"}");
            goto out;
        }
        s.to = "deactivated";
        s.from_valid = 1;
    }
    if (s.to || needs_expiry(az, s.now)) {
        json_decref(az);
        az = NULL;
        if (akm_update(k, "authorizations", id, az_step_fn, &s, &az, &e) < 0 || az == NULL) {
            akm_problem(k, r, 500, "serverInternal", "authorization %s: %s", id, e.msg);
            goto out;
        }
        if (s.moved)
            refresh_orders_using(k, c.account_id, id);
        else if (s.changed)
            refresh_order(k, az);
    }
    if (s.to && !s.moved) {
        akm_problem(k, r, 400, "malformed",
                    "authorization %s is %s: only a pending or valid one can be deactivated", id,
                    str(az, "status") ? str(az, "status") : "unusable");
        goto out;
    }
    if (s.moved)
        ut_log(UT_LOG_INFO, MOD, "authorization deactivated", UT_LF_S("authz", id),
               UT_LF_S("account", c.account_id));
    if (!s.to && is(str(az, "status"), "pending"))
        akm_authz_adopt(k, id);
    if ((doc = akm_authz_render(k, az)) == NULL) {
        akm_problem(k, r, 500, "serverInternal", "authorization %s cannot be rendered", id);
        goto out;
    }
    akm_reply(k, r, 200, doc, NULL);
out:
    json_decref(az);
    akm_ctx_clear(&c);
}

/* ---- POST /acme/chall/{id} ---- */

static int copy(char *dst, size_t n, const char *src)
{
    size_t l = strlen(src);

    if (l >= n)
        return -1;
    memcpy(dst, src, l + 1);
    return 0;
}

/* The pool's job for challenge ch of authorization az; key authorization
 * token "." thumbprint of the account key (§8.1). Wildcards are validated
 * on the base name (the authorization should not carry "*." anyway). */
static int make_job(const json_t *ch, const json_t *az, const char *thumbprint,
                    struct akm_va_job *vj, struct ut_err *err)
{
    const json_t *ident = json_object_get(az, "identifier");
    const char *id = str(ch, "id"), *type = str(ch, "type"), *token = str(ch, "token");
    const char *itype = str(ident, "type"), *value = str(ident, "value");
    int n;

    memset(vj, 0, sizeof(*vj));
    if (id == NULL || type == NULL || token == NULL || itype == NULL || value == NULL ||
        thumbprint == NULL || *thumbprint == '\0') {
        ut_err_set(err, "challenge %s: incomplete challenge, authorization or account",
                   id ? id : "?");
        return -EINVAL;
    }
    if (strncmp(value, "*.", 2) == 0)
        value += 2;
    n = snprintf(vj->key_auth, sizeof(vj->key_auth), "%s.%s", token, thumbprint);
    if (copy(vj->chall_id, sizeof(vj->chall_id), id) < 0 ||
        copy(vj->type, sizeof(vj->type), type) < 0 ||
        copy(vj->id_type, sizeof(vj->id_type), itype) < 0 ||
        copy(vj->value, sizeof(vj->value), value) < 0 ||
        copy(vj->token, sizeof(vj->token), token) < 0 || n < 0 ||
        (size_t)n >= sizeof(vj->key_auth)) {
        ut_err_set(err, "challenge %s: a field is too long for a validation job", id);
        return -ENAMETOOLONG;
    }
    return 0;
}

static int set_processing_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)arg;
    (void)err;
    if (*doc == NULL || !is(str(*doc, "status"), "pending"))
        return 0;
    json_object_set_new(*doc, "status", json_string("processing"));
    return 1;
}

static int revert_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)arg;
    (void)err;
    if (*doc == NULL || !is(str(*doc, "status"), "processing"))
        return 0;
    json_object_set_new(*doc, "status", json_string("pending"));
    return 1;
}

/* A challenge the pool did not take goes back to pending (the client may
 * respond again). */
static void revert(struct akamu *k, const char *chall_id)
{
    struct ut_err e = {{0}};

    if (akm_update(k, "challenges", chall_id, revert_fn, NULL, NULL, &e) < 0)
        ut_log(UT_LOG_ERROR, MOD, "cannot put a challenge back to pending",
               UT_LF_S("challenge", chall_id), UT_LF_S("error", e.msg));
}

enum start_outcome {
    START_UNCHANGED,
    START_OK,
    START_AUTHZ_NOT_PENDING,
    START_BUSY,
    START_LEASE_BUSY, /* another node holds the order's lease */
};

struct start_job {
    struct akamu *k;
    const char *chall_id;
    struct az_step s; /* expiry only */
    enum start_outcome outcome;
    json_t *chall, *authz;         /* out, owned by the caller */
    char order_id[AKM_ID_LEN + 1]; /* out: the order whose lease we took ("": none) */
    struct akm_take take;          /* out */
};

/* The order of an authorization document into out ("" when it names none). */
static void order_of(const json_t *az, char out[AKM_ID_LEN + 1])
{
    const char *o = str(az, "order");

    out[0] = '\0';
    if (o && strlen(o) == AKM_ID_LEN)
        memcpy(out, o, AKM_ID_LEN + 1);
}

/* pending -> processing, exactly once: the challenge, its authorization
 * and the authorization's other challenges are read in the same writer
 * transaction as the write. */
static int start_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct start_job *j = arg;
    const char *authz_id;
    json_t *v, *sib;
    size_t i;
    int rc, busy;

    json_decref(j->chall);
    json_decref(j->authz);
    j->chall = j->authz = NULL;
    j->outcome = START_UNCHANGED;
    j->order_id[0] = '\0';
    if ((rc = job_read(j->k, "challenges", j->chall_id, &j->chall, err)) < 0)
        return rc;
    if (j->chall == NULL) {
        ut_err_set(err, "challenge %s not found", j->chall_id);
        return -ENOENT;
    }
    if (!is(str(j->chall, "status"), "pending"))
        return 0;
    authz_id = str(j->chall, "authz");
    rc = akm_update(j->k, "authorizations", authz_id ? authz_id : "", az_step_fn, &j->s, &j->authz,
                    err);
    if (rc < 0)
        return rc;
    if (!is(str(j->authz, "status"), "pending")) {
        j->outcome = START_AUTHZ_NOT_PENDING;
        return 0;
    }
    json_array_foreach(json_object_get(j->authz, "challenges"), i, v)
    {
        if (!json_is_string(v) || is(json_string_value(v), j->chall_id))
            continue;
        if ((rc = job_read(j->k, "challenges", json_string_value(v), &sib, err)) < 0)
            return rc;
        busy = sib && is(str(sib, "status"), "processing");
        json_decref(sib);
        if (busy) {
            j->outcome = START_BUSY;
            return 0;
        }
    }
    order_of(j->authz, j->order_id);
    if (j->order_id[0]) {
        rc = akm_lease_take(j->k, db, j->order_id, akm_lease_ttl_ms(j->k, 1), &j->take, err);
        if (rc == -EBUSY) {
            j->outcome = START_LEASE_BUSY;
            return 0;
        }
        if (rc < 0)
            return rc;
    }
    json_decref(j->chall);
    j->chall = NULL;
    rc = akm_update(j->k, "challenges", j->chall_id, set_processing_fn, NULL, &j->chall, err);
    if (rc < 0)
        return rc;
    j->outcome = START_OK;
    return 0;
}

/* Queues vj, which the caller marked in flight (akm_inflight_add): on
 * failure the mark goes. */
static int submit_claimed(struct akamu *k, const struct akm_va_job *vj, struct ut_err *err)
{
    int rc;

    if (k->va == NULL) {
        ut_err_set(err, "no validation pool");
        rc = -ENOSYS;
    } else {
        rc = akm_va_submit(k->va, vj, err);
    }
    if (rc < 0)
        akm_inflight_del(k, vj->chall_id);
    return rc;
}

/* §7.5.1. 0 with *out the challenge to render, -1 after replying, 1 when
 * the request went to the order's lease holder. */
static int respond(struct akamu *k, struct http_req *r, const struct akm_ctx *c, const char *id,
                   json_t **out)
{
    struct start_job j = {.k = k, .chall_id = id, .s = {.now = akm_now()}};
    struct ut_err e = {{0}};
    struct akm_va_job vj;
    char secs[16];
    int rc, claim, claimed;

    /* Marked in flight before it turns "processing", so that a read here
     * never takes it over in between (akm_authz_adopt). Already marked:
     * it is processing here, and the job below leaves it unchanged. */
    claim = akm_inflight_add(k, id);
    claimed = claim == 0;
    rc = store_write(k->store, start_job_fn, &j, &e);
    if (claimed && (rc < 0 || j.outcome != START_OK))
        akm_inflight_del(k, id);
    if (rc == 0 && j.s.changed)
        refresh_order(k, j.authz);
    if (rc < 0) {
        akm_problem(k, r, 500, "serverInternal", "challenge %s: %s", id, e.msg);
        goto fail;
    }
    switch (j.outcome) {
    case START_UNCHANGED:
        break;
    case START_AUTHZ_NOT_PENDING:
        akm_problem(k, r, 400, "malformed",
                    "authorization %s is %s: its challenges can no longer be answered",
                    str(j.chall, "authz"),
                    str(j.authz, "status") ? str(j.authz, "status") : "unusable");
        goto fail;
    case START_BUSY:
        akm_problem(k, r, 400, "malformed",
                    "another challenge of this authorization is being validated");
        goto fail;
    case START_LEASE_BUSY:
        if (akm_forward_holder(k, r, "challenges", j.order_id, &j.take) == 1) {
            json_decref(j.chall);
            json_decref(j.authz);
            return 1;
        }
        goto fail; /* replied 503 */
    case START_OK:
        if (j.order_id[0])
            akm_lease_log_take(k, j.order_id, &j.take, "validation");
        rc = make_job(j.chall, j.authz, c->thumbprint, &vj, &e);
        if (rc == 0 && !claimed) {
            /* a concurrent response holds the mark; it will find the
             * challenge pending again and submit it */
            ut_err_set(&e, "challenge %s: %s", id,
                       claim == -EEXIST ? "another response to it is being handled"
                                        : "cannot track its validation (out of memory)");
            rc = claim;
        }
        if (rc == 0) {
            memcpy(vj.order_id, j.order_id, sizeof(vj.order_id));
            vj.epoch = j.take.epoch;
            rc = submit_claimed(k, &vj, &e);
        } else if (claimed) {
            akm_inflight_del(k, id);
        }
        if (rc < 0) {
            revert(k, id);
            if (rc == -EBUSY) {
                snprintf(secs, sizeof(secs), "%d", RETRY_AFTER_SECS);
                http_add_header(r, "Retry-After", secs);
                akm_problem(k, r, 503, "rateLimited",
                            "too many validations in progress; retry in %d seconds",
                            RETRY_AFTER_SECS);
            } else {
                akm_problem(k, r, 500, "serverInternal", "challenge %s: %s", id, e.msg);
            }
            goto fail;
        }
        ut_log(UT_LOG_DEBUG, MOD, "validation queued", UT_LF_S("challenge", id),
               UT_LF_S("type", vj.type), UT_LF_S("identifier", vj.value));
        break;
    }
    *out = j.chall;
    json_decref(j.authz);
    return 0;
fail:
    json_decref(j.chall);
    json_decref(j.authz);
    return -1;
}

void akm_chall_post(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    const char *id = http_req_param(r, "id"), *authz;
    char up[AKM_URL_MAX], link[AKM_URL_MAX + 16];
    struct akm_ctx c;
    json_t *ch, *doc;

    if (akm_auth_at(k, r, AKM_AUTH_KID | AKM_AUTH_WORK, "challenges", id, &c) < 0)
        return;
    if ((ch = get_owned(k, "challenges", id, c.account_id)) == NULL) {
        akm_problem(k, r, 404, "malformed", "no such challenge: %.64s", id);
        goto out;
    }
    if (c.payload) {
        json_decref(ch);
        ch = NULL;
        if (respond(k, r, &c, id, &ch) != 0)
            goto out;
    }
    authz = str(ch, "authz");
    if (authz && is(str(ch, "status"), "processing"))
        akm_authz_adopt(k, authz);
    if (authz == NULL || (doc = akm_chall_render(k, ch)) == NULL) {
        akm_problem(k, r, 500, "serverInternal", "challenge %s cannot be rendered", id);
        goto out;
    }
    akm_url(k, up, "/acme/authz/%s", authz);
    snprintf(link, sizeof(link), "<%s>;rel=\"up\"", up);
    http_add_header(r, "Link", link);
    akm_reply(k, r, 200, doc, NULL);
out:
    json_decref(ch);
    akm_ctx_clear(&c);
}

int akm_authz_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(s, HTTP_POST, "/acme/authz/{id}", authz_post, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/chall/{id}", akm_chall_post, k, err)) < 0)
        return rc;
    return 0;
}

/* ---- validation results (a pool thread; no request here) ---- */

struct done_job {
    struct akamu *k;
    const struct akm_va_job *vj;
    int ok;
    const json_t *problem;
    struct az_step s;
    int applied;   /* out: the challenge left "processing" */
    int fenced;    /* out: the lease is not ours any more; nothing written */
    int released;  /* out: the order's lease was released */
    char why[512]; /* out: why fenced */
    json_t *authz; /* out */
};

static int chall_result_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct done_job *j = arg;

    (void)err;
    if (*doc == NULL || !is(str(*doc, "status"), "processing"))
        return 0;
    if (j->ok) {
        json_object_set_new(*doc, "status", json_string("valid"));
        json_object_set_new(*doc, "validated", json_integer(j->s.now));
        json_object_del(*doc, "error");
    } else {
        json_object_set_new(*doc, "status", json_string("invalid"));
        json_object_set_new(*doc, "error", json_deep_copy(j->problem));
    }
    j->applied = 1;
    return 1;
}

/* 1 when a challenge of the order other than `except` is "processing" (in
 * the store job's view). */
static int order_busy(struct akamu *k, sqlite3 *db, const char *order_id, const char *except)
{
    json_t *o = akm_get_in(k, db, "orders", order_id), *az, *v, *w, *ch;
    size_t i, n;
    int busy = 0;

    json_array_foreach(json_object_get(o, "authorizations"), i, v)
    {
        if ((az = akm_get_in(k, db, "authorizations", json_string_value(v))) == NULL)
            continue;
        json_array_foreach(json_object_get(az, "challenges"), n, w)
        {
            const char *id = json_string_value(w);

            if (id == NULL || is(id, except) || (ch = akm_get_in(k, db, "challenges", id)) == NULL)
                continue;
            busy = is(str(ch, "status"), "processing");
            json_decref(ch);
            if (busy)
                break;
        }
        json_decref(az);
        if (busy)
            break;
    }
    json_decref(o);
    return busy;
}

static int done_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct done_job *j = arg;
    const char *oid = j->vj->order_id;
    struct ut_err le = {{0}}, re = {{0}};
    struct akm_take t;
    json_t *ch = NULL;
    const char *authz_id;
    int rc;

    json_decref(j->authz);
    j->authz = NULL;
    j->applied = j->fenced = j->released = j->s.changed = j->s.moved = 0;
    /* Fencing: the result counts only under the lease it was started with. */
    if (oid[0] && (rc = akm_lease_check(j->k, db, oid, j->vj->epoch, &le)) < 0) {
        if (rc != -ESTALE) {
            ut_err_set(err, "%s", le.msg);
            return rc;
        }
        j->fenced = 1;
        snprintf(j->why, sizeof(j->why), "%s", le.msg);
        return 0;
    }
    rc = akm_update(j->k, "challenges", j->vj->chall_id, chall_result_fn, j, &ch, err);
    if (rc < 0 || !j->applied)
        goto out;
    /* A challenge without its authorization still records its result. */
    if ((authz_id = str(ch, "authz")) != NULL &&
        (rc = akm_update(j->k, "authorizations", authz_id, az_step_fn, &j->s, &j->authz, err)) < 0)
        goto out;
    /* The order follows in the same transaction (pending -> ready or
     * invalid): one commit per validation result, not two. Its failure
     * (rolled back alone: a nested savepoint) keeps the result; the next
     * read of the order recomputes it (order.c settle). */
    if (j->s.changed && str(j->authz, "order") &&
        akm_order_refresh_in(j->k, db, str(j->authz, "order"), &re) < 0)
        ut_log(UT_LOG_WARN, MOD, "order refresh failed", UT_LF_S("order", str(j->authz, "order")),
               UT_LF_S("error", re.msg));
    /* The order's last validation ends the tenure; until then it is renewed. */
    if (oid[0]) {
        if (order_busy(j->k, db, oid, j->vj->chall_id)) {
            rc = akm_lease_take(j->k, db, oid, akm_lease_ttl_ms(j->k, 1), &t, err);
        } else {
            rc = akm_lease_release(j->k, db, oid, j->vj->epoch, err);
            j->released = rc == 0;
        }
    }
out:
    json_decref(ch);
    return rc;
}

void akm_va_done(struct akamu *k, const struct akm_va_job *vj, int ok, json_t *problem)
{
    struct done_job j = {.k = k, .vj = vj, .ok = ok};
    struct ut_err e = {{0}};

    if (!ok && problem == NULL)
        problem = akm_problem_new("serverInternal", 500, "validation failed without a reason");
    j.problem = problem;
    j.s.now = akm_now();
    j.s.to = ok ? "valid" : "invalid";
    if (ok)
        j.s.expires = j.s.now + k->cfg->server.authz_expiry_secs;
    if (store_write(k->store, done_job_fn, &j, &e) < 0) {
        /* Left "processing": taken over once its lease expires (a read),
         * or resubmitted by the next start while the lease is ours. */
        ut_log(UT_LOG_ERROR, MOD, "cannot record a validation result",
               UT_LF_S("challenge", vj->chall_id), UT_LF_S("error", e.msg));
    } else if (j.fenced) {
        akm_lease_log_fenced(vj->order_id, vj->epoch, "validation", vj->chall_id, j.why);
    } else if (!j.applied) {
        ut_log(UT_LOG_DEBUG, MOD, "stale validation result ignored",
               UT_LF_S("challenge", vj->chall_id));
    } else {
        /* validate.c logs the outcome with its details at INFO */
        ut_log(UT_LOG_DEBUG, MOD, "validation result recorded", UT_LF_S("challenge", vj->chall_id),
               UT_LF_S("status", ok ? "valid" : "invalid"),
               UT_LF_S("authz", j.s.moved     ? j.s.to
                                : j.s.changed ? "expired"
                                              : "unchanged"),
               UT_LF_S("lease", j.released ? "released" : "kept"));
    }
    /* Only now: until the result is stored, a read must not take it over. */
    akm_inflight_del(k, vj->chall_id);
    json_decref(j.authz);
    json_decref(problem);
}

/* ---- taking over validations an owner left "processing" ---- */

struct adopt_job {
    struct akamu *k;
    const char *chall_id, *order_id;
    int taken;            /* out */
    struct akm_take take; /* out */
};

/* Re-checks "processing" and takes the order's lease, in one store job. */
static int adopt_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct adopt_job *j = arg;
    json_t *ch = akm_get_in(j->k, db, "challenges", j->chall_id);
    int rc = 0;

    j->taken = 0;
    if (is(str(ch, "status"), "processing")) {
        rc = akm_lease_take(j->k, db, j->order_id, akm_lease_ttl_ms(j->k, 1), &j->take, err);
        j->taken = rc == 0;
        if (rc == -EBUSY)
            rc = 0;
    }
    json_decref(ch);
    return rc;
}

/* Validates challenge id, left "processing", here under a new tenure of
 * its order's lease (or a renewal of ours), unless it runs here already or
 * another node's lease on the order is live. only_ours_live: only when the
 * lease is ours and live (a restart in a cluster: an expired lease may
 * have been taken meanwhile by a node we have not heard from yet).
 * 1 submitted, 0 left alone, -1 it cannot be validated (a broken
 * document, the pool refused it). */
static int adopt_one(struct akamu *k, const char *id, int only_ours_live)
{
    json_t *ch = NULL, *az = NULL, *acct = NULL;
    struct adopt_job j = {.k = k, .chall_id = id};
    char oid[AKM_ID_LEN + 1];
    struct ut_err e = {{0}};
    struct akm_va_job vj;
    struct akm_lease l;
    int live, rc = 0;

    if (akm_inflight_add(k, id) < 0)
        return 0; /* running here (or no memory to track it: later) */
    ch = akm_get(k, "challenges", id);
    if (!is(str(ch, "status"), "processing"))
        goto out;
    az = str(ch, "authz") ? akm_get(k, "authorizations", str(ch, "authz")) : NULL;
    acct = str(ch, "account") ? akm_get(k, "accounts", str(ch, "account")) : NULL;
    order_of(az, oid);
    if (oid[0] == '\0') {
        ut_err_set(&e, "challenge %s: no order to take a lease on", id);
        rc = -1;
        goto out;
    }
    if (akm_lease_get(k, NULL, oid, &l, &e) < 0) {
        rc = -1;
        goto out;
    }
    live = akm_lease_live(&l, akm_lease_now_ms(k));
    if (live && strcmp(l.owner, k->node_id) != 0)
        goto out;
    if (only_ours_live && !(live && strcmp(l.owner, k->node_id) == 0))
        goto out;
    j.order_id = oid;
    if (store_write(k->store, adopt_job_fn, &j, &e) < 0) {
        rc = -1;
        goto out;
    }
    if (!j.taken)
        goto out;
    if (make_job(ch, az, str(acct, "thumbprint"), &vj, &e) < 0) {
        rc = -1;
        goto out;
    }
    memcpy(vj.order_id, oid, sizeof(vj.order_id));
    vj.epoch = j.take.epoch;
    if (k->va == NULL) {
        ut_err_set(&e, "no validation pool");
        rc = -1;
        goto out;
    }
    if (akm_va_submit(k->va, &vj, &e) < 0) {
        rc = -1;
        goto out;
    }
    akm_lease_log_take(k, oid, &j.take, "validation");
    ut_log(j.take.renewed ? UT_LOG_DEBUG : UT_LOG_INFO, MOD, "validation taken over",
           UT_LF_S("challenge", id), UT_LF_S("order", oid), UT_LF_I("epoch", j.take.epoch),
           UT_LF_S("from", j.take.prev_owner));
    rc = 1;
out:
    if (rc < 0)
        ut_log(UT_LOG_WARN, MOD, "cannot take over a validation", UT_LF_S("challenge", id),
               UT_LF_S("error", e.msg));
    if (rc != 1)
        akm_inflight_del(k, id);
    json_decref(ch);
    json_decref(az);
    json_decref(acct);
    return rc;
}

void akm_authz_adopt(struct akamu *k, const char *authz_id)
{
    json_t *az = akm_get(k, "authorizations", authz_id), *v, *ch;
    size_t i;

    if (!is(str(az, "status"), "pending"))
        goto out;
    json_array_foreach(json_object_get(az, "challenges"), i, v)
    {
        const char *id = json_string_value(v);
        int take;

        if (id == NULL || akm_inflight_has(k, id) || (ch = akm_get(k, "challenges", id)) == NULL)
            continue;
        take = is(str(ch, "status"), "processing");
        json_decref(ch);
        if (take)
            adopt_one(k, id, 0);
    }
out:
    json_decref(az);
}

/* ---- start-up: validations a previous run left "processing" ---- */

static int collect_fn(const char *id, json_t *doc, void *arg)
{
    struct id_page *p = arg;

    (void)doc;
    snprintf(p->last, sizeof(p->last), "%s", id);
    if (strlen(id) <= AKM_ID_LEN)
        snprintf(p->ids[p->n++], AKM_ID_LEN + 1, "%s", id);
    return 0;
}

/* Single node: every challenge left "processing" is ours to resubmit. In a
 * cluster only those whose order lease this node still holds (a quick
 * restart); the others are taken over by whichever node next reads them,
 * once that node's view shows the lease free or expired. */
int akm_authz_resume(struct akamu *k, struct ut_err *err)
{
    struct id_page *p = calloc(1, sizeof(*p));
    int only_ours = k->cfg->gossip.present;
    int rc, submitted = 0, seen = 0, reverted = 0;

    if (p == NULL) {
        ut_err_set(err, "resuming validations: out of memory");
        return -ENOMEM;
    }
    do {
        p->n = 0;
        rc = akm_each(k, "challenges", "status", "processing", p->last[0] ? p->last : NULL, PAGE,
                      collect_fn, p, err);
        if (rc < 0)
            goto out;
        for (int i = 0; i < p->n; i++) {
            int one = adopt_one(k, p->ids[i], only_ours);

            submitted += one == 1;
            if (one < 0) {
                /* cannot be validated: back to pending (the client may respond again) */
                revert(k, p->ids[i]);
                reverted++;
            }
        }
        seen += p->n;
    } while (rc == PAGE);
    if (seen > 0)
        ut_log(UT_LOG_INFO, MOD, "validations resumed", UT_LF_I("challenges", seen),
               UT_LF_I("submitted", submitted), UT_LF_I("reverted", reverted),
               UT_LF_I("left", seen - submitted - reverted));
    rc = 0;
out:
    free(p);
    return rc;
}
