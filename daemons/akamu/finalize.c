/*
 * finalize.c - order finalization (RFC 8555 §7.4): the CSR checks, the
 * exactly-once ready -> processing transition, issuance, and the
 * certificate document.
 *
 * Issuance runs synchronously in the handler: signing is local and takes
 * milliseconds (no network, no HSM), so the finalize reply already shows
 * the valid order; "processing" is only seen by a concurrent poller. An
 * order left "processing" by a crash between the two writes becomes
 * invalid when next read (order.c, settle).
 *
 * Exactly once: the ready -> processing update re-checks "ready" inside
 * the writer, so of two concurrent finalize requests on this node one wins
 * and the other gets orderNotReady. Across nodes, finalize requests go to
 * one node (auth.c AKM_AUTH_WORK -> lease.c: the order's lease holder, else
 * its creator; another node only when that one does not answer), and the
 * node that finalizes holds the order's lease: taken in the ready ->
 * processing store job, checked right before signing and again in the
 * store job that stores the certificate (fenced: nothing stored), released
 * there. A node that has not caught up with the cluster since it started
 * does not start a tenure on an order it knew before (lease.c,
 * akm_lease_view_fresh).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme.h"
#include "ca.h"
#include "util/b64.h"
#include "util/log.h"

#define MOD "acme"

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* ---- the CSR against the order ---- */

/* "dns:name" / "ip:address" of a CSR name; IPs rewritten through
 * inet_pton/inet_ntop so the order's canonical text compares equal. */
static void csr_key(const struct akm_name *nm, char *out, size_t outsz)
{
    unsigned char b[16];
    char ip[INET6_ADDRSTRLEN];
    int af = nm->type == AKM_NAME_IP && strchr(nm->value, ':') ? AF_INET6 : AF_INET;

    if (nm->type == AKM_NAME_IP && inet_pton(af, nm->value, b) == 1 &&
        inet_ntop(af, b, ip, sizeof(ip)) != NULL)
        snprintf(out, outsz, "ip:%s", ip);
    else
        snprintf(out, outsz, "%s:%s", nm->type == AKM_NAME_IP ? "ip" : "dns", nm->value);
}

static int has_key(char (*keys)[AKM_NAME_MAX + 8], size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], k) == 0)
            return 1;
    }
    return 0;
}

/* 0 when the CSR names exactly the order's identifiers (as sets); else -1
 * with why[] naming the first difference each way. */
static int names_match(const json_t *order, const struct akm_csr *csr, char *why, size_t whysz)
{
    const json_t *idents = json_object_get(order, "identifiers"), *v;
    size_t n_o = json_array_size(idents), n_c = akm_csr_n_names(csr), i, miss = 0, extra = 0;
    char(*ok)[AKM_NAME_MAX + 8] = calloc(n_o + 1, sizeof(*ok));
    char(*ck)[AKM_NAME_MAX + 8] = calloc(n_c + 1, sizeof(*ck));
    const char *first_miss = NULL, *first_extra = NULL;
    int rc = -1;

    if (ok == NULL || ck == NULL) {
        snprintf(why, whysz, "out of memory");
        goto out;
    }
    json_array_foreach(idents, i, v)
    {
        snprintf(ok[i], sizeof(ok[i]), "%s:%s", str(v, "type") ? str(v, "type") : "",
                 str(v, "value") ? str(v, "value") : "");
    }
    for (i = 0; i < n_c; i++)
        csr_key(akm_csr_name(csr, i), ck[i], sizeof(ck[i]));
    for (i = 0; i < n_o; i++) {
        if (!has_key(ck, n_c, ok[i]) && miss++ == 0)
            first_miss = ok[i];
    }
    for (i = 0; i < n_c; i++) {
        if (!has_key(ok, n_o, ck[i]) && extra++ == 0)
            first_extra = ck[i];
    }
    if (miss == 0 && extra == 0) {
        rc = 0;
        goto out;
    }
    snprintf(why, whysz,
             "the CSR's names differ from the order's identifiers: %zu missing%s%.260s%s, "
             "%zu not in the order%s%.260s%s",
             miss, first_miss ? " (first " : "", first_miss ? first_miss : "",
             first_miss ? ")" : "", extra, first_extra ? " (first " : "",
             first_extra ? first_extra : "", first_extra ? ")" : "");
out:
    free(ok);
    free(ck);
    return rc;
}

/* Decodes and checks the "csr" member; replies the problem itself and
 * returns NULL when it is unacceptable. */
static struct akm_csr *read_csr(struct akamu *k, struct http_req *r, const struct akm_ctx *c,
                                const json_t *order)
{
    const char *b64 = str(c->payload, "csr");
    size_t n = b64 ? strlen(b64) : 0, len = 0;
    unsigned char *der = NULL;
    struct akm_csr *csr = NULL;
    struct ut_err e = {{0}};
    char why[640];
    int rc;

    if (b64 == NULL || n == 0) {
        akm_problem(k, r, 400, "malformed", "finalize needs {\"csr\": base64url DER}");
        goto out;
    }
    if (n > (AKM_CSR_MAX_DER / 3 + 1) * 4) {
        akm_problem(k, r, 400, "badCSR", "CSR larger than %d bytes", AKM_CSR_MAX_DER);
        goto out;
    }
    if ((der = malloc(n * 3 / 4 + 3)) == NULL) {
        akm_problem(k, r, 500, "serverInternal", "out of memory");
        goto out;
    }
    if (ut_b64_decode(b64, n, der, &len, 1) < 0) {
        akm_problem(k, r, 400, "malformed", "\"csr\" is not unpadded base64url");
        goto out;
    }
    if ((rc = akm_csr_parse(der, len, &csr, &e)) < 0) {
        if (rc == -EINVAL)
            akm_problem(k, r, 400, "badCSR", "%s", e.msg);
        else
            akm_problem(k, r, 500, "serverInternal", "CSR: %s", e.msg);
        goto out;
    }
    if (names_match(order, csr, why, sizeof(why)) < 0) {
        akm_problem(k, r, 400, "badCSR", "%s", why);
        goto fail;
    }
    /* RFC 8555 §11.1; and the CA's own key would be refused by issuance */
    if (akm_csr_key_equals(csr, c->key)) {
        akm_problem(k, r, 400, "badCSR", "the CSR's key is the account key");
        goto fail;
    }
    if (akm_csr_key_equals(csr, akm_ca_pubkey(k->ca))) {
        akm_problem(k, r, 400, "badCSR", "the CSR's key is the CA's key");
        goto fail;
    }
    goto out;
fail:
    akm_csr_free(csr);
    csr = NULL;
out:
    free(der);
    return csr;
}

/* ---- the order's transitions ---- */

struct begin {
    struct akamu *k;
    const char *id;
    int64_t now;
    int won;
    int busy;             /* another node holds the order's lease */
    struct akm_take take; /* the lease (won), or its holder (busy) */
    char status[16];      /* the status found when not won */
};

static int begin_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct begin *a = arg;
    const char *st = *doc ? str(*doc, "status") : NULL;

    if (*doc == NULL) {
        ut_err_set(err, "order vanished");
        return -ENOENT;
    }
    snprintf(a->status, sizeof(a->status), "%s", st ? st : "unknown");
    if (!is(st, "ready"))
        return 0;
    if (json_integer_value(json_object_get(*doc, "expires")) <= a->now) {
        json_object_set_new(*doc, "status", json_string("invalid"));
        snprintf(a->status, sizeof(a->status), "invalid");
        return 1;
    }
    json_object_set_new(*doc, "status", json_string("processing"));
    json_object_set_new(*doc, "finalized_by", json_string(a->k->node_id));
    json_object_set_new(*doc, "finalized_at", json_integer(a->now));
    json_object_set_new(*doc, "lease_epoch", json_integer((json_int_t)a->take.epoch));
    a->won = 1;
    return 1;
}

/* ready -> processing with the order's lease taken in the same job. */
static int begin_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct begin *a = arg;
    json_t *o = akm_get_in(a->k, db, "orders", a->id);
    int ready =
        is(str(o, "status"), "ready") && json_integer_value(json_object_get(o, "expires")) > a->now;
    int rc;

    json_decref(o);
    a->won = a->busy = 0;
    if (ready) {
        rc = akm_lease_take(a->k, db, a->id, akm_lease_ttl_ms(a->k, 0), &a->take, err);
        if (rc == -EBUSY) {
            a->busy = 1;
            return 0;
        }
        if (rc < 0)
            return rc;
    }
    return akm_update(a->k, "orders", a->id, begin_fn, a, NULL, err);
}

struct finish {
    struct akamu *k;
    const char *order_id;
    uint64_t epoch;
    const char *serial;
    json_t *cert;   /* the certificate document; NULL: failed */
    json_t *error;  /* the order's error when failed */
    int fenced;     /* out: the lease is not ours any more; nothing stored */
    char why[512];  /* out: why fenced */
    json_t *result; /* out: the order */
};

/* processing -> valid with the certificate document written in the same
 * transaction (a nested store write joins the enclosing one), or
 * processing -> invalid with an error. */
static int finish_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct finish *a = arg;
    struct akm_put p = {"certificates", a->serial, a->cert, 0};
    int rc;

    if (*doc == NULL || !is(str(*doc, "status"), "processing")) {
        ut_err_set(err, "order is no longer processing");
        return -ESTALE;
    }
    if (a->cert == NULL) {
        json_object_set_new(*doc, "status", json_string("invalid"));
        json_object_set(*doc, "error", a->error);
        return 1;
    }
    if ((rc = akm_put_all(a->k, &p, 1, err)) < 0)
        return rc;
    json_object_set_new(*doc, "status", json_string("valid"));
    json_object_set_new(*doc, "certificate", json_string(a->serial));
    return 1;
}

/* Under the lease: the outcome, then the lease released, in one job. */
static int finish_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct finish *a = arg;
    struct ut_err le = {{0}};
    int rc;

    json_decref(a->result);
    a->result = NULL;
    a->fenced = 0;
    if ((rc = akm_lease_check(a->k, db, a->order_id, a->epoch, &le)) < 0) {
        if (rc != -ESTALE) {
            ut_err_set(err, "%s", le.msg);
            return rc;
        }
        a->fenced = 1;
        snprintf(a->why, sizeof(a->why), "%s", le.msg);
        return 0;
    }
    if ((rc = akm_update(a->k, "orders", a->order_id, finish_fn, a, &a->result, err)) < 0)
        return rc;
    return akm_lease_release(a->k, db, a->order_id, a->epoch, err);
}

/* ---- issuance ---- */

/* The certificate document of acme.h. */
static json_t *cert_doc(const struct akm_issued *is_, const char *account, const char *order,
                        const json_t *idents)
{
    char *b64 = malloc(ut_b64_enclen(is_->der_len, 1) + 1);
    json_t *names = json_array(), *v, *doc = NULL;
    size_t i;

    if (b64 == NULL || names == NULL)
        goto out;
    ut_b64_encode(is_->der, is_->der_len, b64, 1);
    json_array_foreach(idents, i, v)
    {
        if (json_array_append(names, json_object_get(v, "value")) < 0)
            goto out;
    }
    doc = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O, s:I}", "id", is_->serial_hex, "account",
                    account, "order", order, "der", b64, "not_after", (json_int_t)is_->not_after,
                    "names", names, "created_at", (json_int_t)akm_now());
out:
    free(b64);
    json_decref(names);
    return doc;
}

static void log_issued(const struct akm_issued *is_, const char *order, const char *account,
                       const json_t *idents)
{
    size_t cap = 1, i;
    const json_t *v;
    char *names;

    json_array_foreach(idents, i, v)
    {
        cap += json_string_length(json_object_get(v, "value")) + 1;
    }
    if ((names = calloc(1, cap)) == NULL)
        return;
    json_array_foreach(idents, i, v)
    {
        if (i)
            strcat(names, ",");
        strcat(names, json_string_value(json_object_get(v, "value")));
    }
    ut_log(UT_LOG_INFO, MOD, "certificate issued", UT_LF_S("serial", is_->serial_hex),
           UT_LF_S("order", order), UT_LF_S("account", account), UT_LF_S("names", names));
    free(names);
}

static void fenced(struct akamu *k, struct http_req *r, const char *oid, uint64_t epoch,
                   const char *why)
{
    akm_lease_log_fenced(oid, epoch, "finalize", oid, why);
    akm_problem(k, r, 500, "serverInternal",
                "this node lost the ownership of order %s during issuance (it was stalled); "
                "nothing was issued here",
                oid);
}

/* Issues for a processing order under lease epoch and stores the outcome.
 * 0, or -1 after replying 500 (the order is then invalid, or stays
 * processing until settle() if even that cannot be stored or the lease was
 * lost). On success *order gets the valid order. */
static int issue(struct akamu *k, struct http_req *r, json_t **order, const struct akm_csr *csr,
                 uint64_t epoch)
{
    const json_t *idents = json_object_get(*order, "identifiers"), *v;
    const char *oid = str(*order, "id"), *acct = str(*order, "account");
    struct akm_name names[AKM_MAX_NAMES];
    struct akm_issue_req req = {0};
    struct akm_issued out = {0};
    struct finish f = {.k = k, .order_id = oid, .epoch = epoch};
    struct ut_err e = {{0}}, e2 = {{0}};
    char crl[AKM_URL_MAX];
    size_t i, n = 0;
    int rc = -1;

    json_array_foreach(idents, i, v)
    {
        if (n == AKM_MAX_NAMES)
            break;
        names[n].type = is(str(v, "type"), "ip") ? AKM_NAME_IP : AKM_NAME_DNS;
        names[n++].value = str(v, "value") ? str(v, "value") : "";
    }
    akm_url(k, crl, "/acme/crl");
    req.csr = csr;
    req.names = names;
    req.n_names = n;
    req.validity_days = (int)k->cfg->ca.validity_days;
    req.crl_url = crl;
    /* A fresh look at the lease right before signing: a node that was
     * stalled past its lease signs nothing. */
    if (akm_lease_check(k, NULL, oid, epoch, &e) < 0) {
        fenced(k, r, oid, epoch, e.msg);
        goto out;
    }
    if (akm_ca_issue(k->ca, &req, &out, &e) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "issuance failed", UT_LF_S("order", oid),
               UT_LF_S("error", e.msg));
        f.error = akm_problem_new("serverInternal", 500, "issuance failed");
    } else {
        f.serial = out.serial_hex;
        if ((f.cert = cert_doc(&out, acct, oid, idents)) == NULL)
            f.error = akm_problem_new("serverInternal", 500, "out of memory");
    }
    if (store_write(k->store, finish_job, &f, &e2) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "storing the issuance result failed", UT_LF_S("order", oid),
               UT_LF_S("error", e2.msg));
        akm_problem(k, r, 500, "serverInternal", "the certificate could not be stored");
        goto out;
    }
    if (f.fenced) {
        fenced(k, r, oid, epoch, f.why);
        goto out;
    }
    if (f.cert == NULL) {
        akm_problem(k, r, 500, "serverInternal", "issuance failed");
        goto out;
    }
    log_issued(&out, oid, acct, idents);
    json_decref(*order);
    *order = f.result;
    f.result = NULL;
    rc = 0;
out:
    json_decref(f.result);
    json_decref(f.cert);
    json_decref(f.error);
    akm_issued_clear(&out);
    return rc;
}

/* §7.4: 403 orderNotReady, saying why when the order knows. */
static void not_ready(struct akamu *k, struct http_req *r, const json_t *order)
{
    const char *st = str(order, "status"), *why = str(json_object_get(order, "error"), "detail");

    if (is(st, "pending"))
        akm_problem(k, r, 403, "orderNotReady",
                    "the order is pending, not ready: its authorizations are not all valid yet");
    else if (why)
        akm_problem(k, r, 403, "orderNotReady", "the order is %s, not ready: %.400s", st ? st : "?",
                    why);
    else
        akm_problem(k, r, 403, "orderNotReady", "the order is %s, not ready", st ? st : "?");
}

void akm_order_finalize(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_ctx c;
    struct akm_csr *csr = NULL;
    struct ut_err e = {{0}};
    struct begin b = {.k = k, .id = http_req_param(r, "id")};
    json_t *order = NULL;
    char url[AKM_URL_MAX];

    if (akm_auth_at(k, r, AKM_AUTH_KID | AKM_AUTH_WORK, "orders", b.id, &c) < 0)
        return;
    if (c.payload == NULL) {
        akm_problem(k, r, 400, "malformed", "finalize needs {\"csr\": base64url DER}");
        goto out;
    }
    if ((order = akm_order_load(k, r, &c, http_req_param(r, "id"))) == NULL)
        goto out;
    if (!is(str(order, "status"), "ready")) {
        not_ready(k, r, order);
        goto out;
    }
    if ((csr = read_csr(k, r, &c, order)) == NULL)
        goto out;
    if (!akm_lease_view_fresh(k, b.id)) {
        http_add_header(r, "Retry-After", "1");
        akm_problem(k, r, 503, "serverInternal",
                    "this node restarted and has not caught up with the cluster yet");
        goto out;
    }
    b.now = akm_now();
    if (store_write(k->store, begin_job, &b, &e) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "order update failed", UT_LF_S("error", e.msg));
        akm_problem(k, r, 500, "serverInternal", "the order could not be updated");
        goto out;
    }
    if (b.busy) {
        akm_forward_holder(k, r, "orders", b.id, &b.take);
        goto out;
    }
    if (!b.won) {
        akm_problem(k, r, 403, "orderNotReady", "the order is %s, not ready", b.status);
        goto out;
    }
    akm_lease_log_take(k, b.id, &b.take, "finalize");
    if (issue(k, r, &order, csr, b.take.epoch) < 0)
        goto out;
    akm_url(k, url, "/acme/order/%s", str(order, "id"));
    akm_reply(k, r, 200, akm_order_render(k, order), url);
out:
    akm_csr_free(csr);
    json_decref(order);
    akm_ctx_clear(&c);
}
