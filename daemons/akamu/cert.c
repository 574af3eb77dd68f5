/*
 * cert.c - certificates: download (RFC 8555 §7.4.2), revocation (§7.6)
 * and the CRL (RFC 5280 §5) at GET /acme/crl.
 *
 * Policies where RFC 8555 leaves room (as Boulder unless said):
 *  - Download needs the account that ordered the certificate; any other
 *    account gets the same 404 "malformed" as an unknown serial.
 *  - revokeCert with a "kid": the account that ordered the certificate,
 *    else 403 unauthorized. Revocation by another account holding valid
 *    authorizations for every name (which §7.6 allows) is not offered.
 *    With a "jwk": the request must be signed by the certificate's own
 *    key, else 403 unauthorized.
 *  - A certificate this CA did not sign, or that is not in "certificates",
 *    is 404 malformed ("unable to find certificate").
 *  - An expired certificate is not revoked (403 unauthorized): it would
 *    drop out of the CRL at once.
 *  - "reason" absent means 0 (unspecified). Accepted: 0, 1 keyCompromise,
 *    3 affiliationChanged, 4 superseded, 5 cessationOfOperation,
 *    9 privilegeWithdrawn; anything else is badRevocationReason (2 and 10
 *    are CA compromises, 6 certificateHold cannot be undone here, 8 is for
 *    delta CRLs, 7 is unused). A reason that is not an integer: malformed.
 *  - A revocation is the grow-only fact revocations[serial] =
 *    {"reason","revoked_at","not_after"}, kept until a day after the
 *    certificate expires; alreadyRevoked is checked in the writer job
 *    that writes it, so one node never revokes twice.
 *  - The CRL lists every revocation whose certificate has not expired,
 *    thisUpdate = now, nextUpdate = now + 1 day, cRLNumber = the time of
 *    thisUpdate in unix milliseconds (grows on every node as time does).
 *    It is built and signed on each request.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "acme.h"
#include "ca.h"
#include "util/b64.h"
#include "util/hex.h"
#include "util/log.h"

#define MOD           "acme"
#define CRL_NEXT_SECS 86400
#define KEEP_SECS     86400 /* a revocation outlives its certificate by this */

static const char *str(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* base64url text of at most max decoded bytes -> malloc'd *out. */
static int b64u_bytes(const char *s, size_t max, uint8_t **out, size_t *len)
{
    size_t n = s ? strlen(s) : 0;

    *out = NULL;
    if (n == 0 || n > (max + 2) / 3 * 4)
        return -EINVAL;
    if ((*out = malloc(n / 4 * 3 + 3)) == NULL)
        return -ENOMEM;
    if (ut_b64_decode(s, n, *out, len, 1) < 0 || *len == 0 || *len > max) {
        free(*out);
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}

/* ---- POST /acme/cert/{id} ---- */

static void cert_post(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    const char *id = http_req_param(r, "id");
    struct ut_err e = {{0}};
    struct akm_ctx c;
    json_t *doc = NULL;
    uint8_t *der = NULL;
    char *pem = NULL;
    size_t len = 0, pem_len = 0;

    if (akm_auth(k, r, AKM_AUTH_KID, &c) < 0)
        return;
    if (!akm_require_post_as_get(k, r, &c))
        goto out;
    doc = id ? akm_get(k, "certificates", id) : NULL;
    if (doc == NULL || !is(str(doc, "account"), c.account_id)) {
        akm_problem(k, r, 404, "malformed", "no such certificate: %.64s", id);
        goto out;
    }
    if (b64u_bytes(str(doc, "der"), AKM_CERT_MAX_DER, &der, &len) < 0 ||
        akm_ca_chain_pem(k->ca, der, len, &pem, &pem_len, &e) < 0) {
        akm_problem(k, r, 500, "serverInternal", "certificate %s: stored certificate unusable: %s",
                    id, e.msg[0] ? e.msg : "bad base64url");
        goto out;
    }
    akm_reply_headers(k, r);
    http_reply(r, 200, "application/pem-certificate-chain", pem, pem_len);
out:
    free(pem);
    free(der);
    json_decref(doc);
    akm_ctx_clear(&c);
}

/* ---- POST /acme/revoke-cert ---- */

static int reason_ok(json_int_t v)
{
    return v == 0 || v == 1 || v == 3 || v == 4 || v == 5 || v == 9;
}

static int read_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)doc;
    (void)arg;
    (void)err;
    return 0;
}

struct revoke_job {
    struct akamu *k;
    struct akm_put p;
    int already; /* out */
};

/* The check and the write in one writer transaction (nested store jobs). */
static int revoke_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct revoke_job *j = arg;
    json_t *cur = NULL;
    int rc;

    (void)db;
    j->already = 0;
    if ((rc = akm_update(j->k, "revocations", j->p.id, read_fn, NULL, &cur, err)) < 0)
        return rc;
    if (cur) {
        j->already = 1;
        json_decref(cur);
        return 0;
    }
    return akm_put_all(j->k, &j->p, 1, err);
}

static void revoke(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_cert_info ci;
    struct revoke_job j = {.k = k};
    struct ut_err e = {{0}};
    struct akm_ctx c;
    const json_t *jr;
    json_t *doc = NULL, *fact = NULL;
    json_int_t reason = 0;
    int64_t now = akm_now();
    uint8_t *der = NULL;
    size_t len = 0;
    char t[32];
    int rc;

    memset(&ci, 0, sizeof(ci));
    if (akm_auth(k, r, AKM_AUTH_KID | AKM_AUTH_JWK, &c) < 0)
        return;
    if (c.payload == NULL || !json_is_string(json_object_get(c.payload, "certificate"))) {
        akm_problem(k, r, 400, "malformed",
                    "revokeCert takes {\"certificate\": base64url DER, \"reason\"?: int}");
        goto out;
    }
    if ((jr = json_object_get(c.payload, "reason")) != NULL) {
        if (!json_is_integer(jr)) {
            akm_problem(k, r, 400, "malformed", "\"reason\" must be an integer");
            goto out;
        }
        reason = json_integer_value(jr);
    }
    if (!reason_ok(reason)) {
        akm_problem(k, r, 400, "badRevocationReason",
                    "reason %lld is not accepted; use 0, 1, 3, 4, 5 or 9 (RFC 5280 §5.3.1)",
                    (long long)reason);
        goto out;
    }
    rc = b64u_bytes(str(c.payload, "certificate"), AKM_CERT_MAX_DER, &der, &len);
    if (rc == 0 && (rc = akm_cert_info(der, len, &ci, &e)) < 0 && rc != -ENOMEM)
        rc = -EINVAL;
    if (rc < 0) {
        if (rc == -ENOMEM)
            akm_problem(k, r, 500, "serverInternal", "out of memory");
        else
            akm_problem(k, r, 400, "malformed", "\"certificate\": %s",
                        e.msg[0] ? e.msg : "not base64url (unpadded) of at most 64 KiB");
        goto out;
    }
    if (akm_ca_issued_by(k->ca, der, len, &e) < 0 ||
        (doc = akm_get(k, "certificates", ci.serial_hex)) == NULL) {
        akm_problem(k, r, 404, "malformed", "unable to find certificate %s among those issued here",
                    ci.serial_hex);
        goto out;
    }
    if (c.jwk ? EVP_PKEY_eq(c.key, ci.pubkey) != 1 : !is(str(doc, "account"), c.account_id)) {
        akm_problem(k, r, 403, "unauthorized",
                    c.jwk ? "the request is not signed by the certificate's key"
                          : "this account did not order the certificate");
        goto out;
    }
    if (ci.not_after < now) {
        akm_time_text(ci.not_after, t);
        akm_problem(k, r, 403, "unauthorized", "certificate %s expired at %s", ci.serial_hex, t);
        goto out;
    }
    fact = json_pack("{s:I, s:I, s:I}", "reason", reason, "revoked_at", (json_int_t)now,
                     "not_after", (json_int_t)ci.not_after);
    j.p = (struct akm_put){.tbl = "revocations",
                           .id = ci.serial_hex,
                           .doc = fact,
                           .expires = (ci.not_after + KEEP_SECS) * 1000};
    if (fact == NULL || store_write(k->store, revoke_job_fn, &j, &e) < 0) {
        akm_problem(k, r, 500, "serverInternal", "revoking %s: %s", ci.serial_hex,
                    fact ? e.msg : "out of memory");
        goto out;
    }
    if (j.already) {
        akm_problem(k, r, 400, "alreadyRevoked", "certificate %s is already revoked",
                    ci.serial_hex);
        goto out;
    }
    ut_log(UT_LOG_INFO, MOD, "certificate revoked", UT_LF_S("serial", ci.serial_hex),
           UT_LF_I("reason", reason), UT_LF_S("by", c.jwk ? "certificate-key" : "account"));
    akm_reply_headers(k, r);
    http_reply(r, 200, NULL, NULL, 0);
out:
    json_decref(fact);
    json_decref(doc);
    free(der);
    akm_cert_info_clear(&ci);
    akm_ctx_clear(&c);
}

/* ---- GET /acme/crl ---- */

struct crl_list {
    struct akamu *k;
    int64_t now;
    struct akm_revoked *v;
    size_t n, cap;
    int rc;
};

static int crl_add(const char *id, json_t *doc, void *arg)
{
    struct crl_list *l = arg;
    const json_t *na = json_object_get(doc, "not_after");
    json_int_t reason = json_integer_value(json_object_get(doc, "reason"));
    struct akm_revoked e = {.revoked_at = json_integer_value(json_object_get(doc, "revoked_at"))};
    int64_t not_after = INT64_MAX;
    json_t *cert;
    void *p;

    if (ut_hex_decode(id, strlen(id), e.serial, sizeof(e.serial)) < 0)
        return 0; /* not a serial of ours */
    if (json_is_integer(na)) {
        not_after = json_integer_value(na);
    } else if ((cert = akm_get(l->k, "certificates", id)) != NULL) {
        /* a revocation written without "not_after" */
        not_after = json_integer_value(json_object_get(cert, "not_after"));
        json_decref(cert);
    }
    if (not_after < l->now)
        return 0;
    e.reason = reason >= 0 && reason <= 10 && reason != 7 ? (int)reason : 0;
    if (l->n == l->cap) {
        if (l->cap >= AKM_CRL_MAX_ENTRY) {
            l->rc = -E2BIG;
            return 1;
        }
        l->cap = l->cap ? 2 * l->cap : 64;
        if ((p = realloc(l->v, l->cap * sizeof(*l->v))) == NULL) {
            l->rc = -ENOMEM;
            return 1;
        }
        l->v = p;
    }
    l->v[l->n++] = e;
    return 0;
}

static void crl_get(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct crl_list l = {.k = k};
    struct ut_err e = {{0}};
    struct timespec ts;
    uint8_t *der = NULL;
    size_t len = 0;
    uint64_t number;
    int rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    l.now = (int64_t)ts.tv_sec;
    number = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    rc = akm_each(k, "revocations", NULL, NULL, NULL, 0, crl_add, &l, &e);
    if (rc >= 0 && l.rc < 0) {
        rc = l.rc;
        ut_err_set(&e, "%s", rc == -E2BIG ? "too many revocations for one CRL" : "out of memory");
    }
    if (rc >= 0)
        rc = akm_ca_crl(k->ca, l.v, l.n, l.now, l.now + CRL_NEXT_SECS, number, &der, &len, &e);
    if (rc < 0) {
        ut_log(UT_LOG_ERROR, MOD, "cannot build the CRL", UT_LF_S("error", e.msg));
        akm_problem(k, r, 500, "serverInternal", "cannot build the CRL");
        goto out;
    }
    http_add_header(r, "Cache-Control", "public, max-age=0, no-cache");
    http_reply(r, 200, "application/pkix-crl", der, len);
out:
    free(der);
    free(l.v);
}

int akm_cert_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(s, HTTP_POST, "/acme/cert/{id}", cert_post, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/revoke-cert", revoke, k, err)) < 0 ||
        (rc = http_route(s, HTTP_GET | HTTP_HEAD, "/acme/crl", crl_get, k, err)) < 0)
        return rc;
    return 0;
}
