/*
 * account.c - ACME accounts (RFC 8555 §7.3): newAccount with contact,
 * terms-of-service and External Account Binding checks, finding an account
 * by its key, account update and deactivation, the orders list, and key
 * rollover (keyChange).
 *
 * Choices where the RFC leaves room (documented for operators and tests):
 *  - contacts: only "mailto:" URIs (anything else: unsupportedContact), one
 *    plain address each (no hfields "?", no "%"-escapes, no lists), at most
 *    AKM_CONTACTS_MAX of at most AKM_CONTACT_MAX bytes, the domain of at
 *    least two LDH labels; otherwise invalidContact.
 *  - the directory advertises termsOfService, so newAccount needs
 *    "termsOfServiceAgreed": true; without it the answer is 403
 *    userActionRequired with "instance" and a Link rel="terms-of-service"
 *    naming the terms (the §7.3.3 mechanism).
 *  - EAB: a malformed binding is 400 malformed; an unknown key id, a MAC
 *    that does not verify and a key already used are 401 unauthorized
 *    (wrong credentials, as for a wrong password). A binding is checked and
 *    spent even when the server does not require one. Keys come from
 *    [server.eab_keys] and from the replicated "eab_keys" table (admin API).
 *  - account update: "status" may be "deactivated" or the current "valid"
 *    (clients echo the object back); "termsOfServiceAgreed": true records a
 *    re-agreement; unknown fields and "orders" are ignored.
 *  - the orders list leaves out invalid orders (§7.1.2.1 "SHOULD NOT")
 *    and pages by AKM_ORDERS_PAGE; the next page is the path
 *    /acme/acct/{id}/orders/{last order id of this page} (a path, not a
 *    query, because the JWS "url" is compared with the request path).
 *  - keyChange: every failed check of the inner JWS is malformed (with the
 *    JWS module's own type for algorithms and keys); a new key already
 *    registered is 409 conflict with that account's Location.
 *
 * Atomicity: the writes of newAccount (account, key mapping, EAB usage) and
 * of keyChange (mapping of the new key, account, removal of the old
 * mapping) each run in one writer transaction: the outer akm_update on the
 * key mapping calls the others, which nest (store_write) in its
 * transaction. Reads inside use that writer transaction (wget), never a
 * reader snapshot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "acme.h"
#include "jws.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD "acme"

#define AKM_CONTACTS_MAX 10
#define AKM_CONTACT_MAX  320 /* "mailto:" + an RFC 5321 path (254) with room */
#define AKM_ORDERS_PAGE  100
#define EAB_KID_MAX      255
#define EAB_KEY_TEXT_MAX ((AKM_JWS_HMAC_KEY_MAX * 4 + 2) / 3)

/* ---- small helpers ---- */

/* Replies the problem of a jws.c return code, what naming the JWS. */
static void jws_fail(struct akamu *k, struct http_req *r, int rc, const char *what, const char *msg)
{
    enum akm_jws_problem p = akm_jws_problem(rc);
    const char *type = akm_jws_problem_type(p);
    int status = p == AKM_JWS_PROB_SERVER_INTERNAL ? 500 : 400;
    json_t *doc;

    type = type ? type + strlen(AKM_PROBLEM_NS) : "malformed";
    doc = akm_problem_new(type, status, "%s: %s", what, msg);
    if (p == AKM_JWS_PROB_BAD_SIG_ALG && doc)
        json_object_set_new(doc, "algorithms", akm_jws_algs_json());
    akm_problem_doc(k, r, status, doc);
}

static void internal(struct akamu *k, struct http_req *r, const char *what, const struct ut_err *e)
{
    ut_log(UT_LOG_ERROR, MOD, "account operation failed", UT_LF_S("op", what),
           UT_LF_S("error", e->msg));
    akm_problem(k, r, 500, "serverInternal", "%s failed", what);
}

static int read_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)doc;
    (void)arg;
    (void)err;
    return 0;
}

/* A document read through the writer: inside a write job this sees the
 * job's own transaction. *out is NULL when absent. */
static int wget(struct akamu *k, const char *tbl, const char *id, json_t **out, struct ut_err *err)
{
    *out = NULL;
    return akm_update(k, tbl, id, read_fn, NULL, out, err);
}

static const char *str_of(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* 1 when the mapping doc (account_keys) names an account that still has
 * the key tp; the account id goes to id_out. A mapping left behind by a
 * keyChange, or by a write lost to a concurrent one on another node, does
 * not count. in_writer: read through the writer transaction. */
static int mapping_live(struct akamu *k, const json_t *map, const char *tp, int in_writer,
                        char id_out[AKM_ID_LEN + 1], struct ut_err *err)
{
    const char *id = str_of(map, "account");
    json_t *acct = NULL;
    int live;

    if (id == NULL || strlen(id) > AKM_ID_LEN)
        return 0;
    if (in_writer) {
        int rc = wget(k, "accounts", id, &acct, err);
        if (rc < 0)
            return rc;
    } else {
        acct = akm_get(k, "accounts", id);
    }
    live =
        acct != NULL && str_of(acct, "thumbprint") && strcmp(str_of(acct, "thumbprint"), tp) == 0;
    json_decref(acct);
    if (live)
        snprintf(id_out, AKM_ID_LEN + 1, "%s", id);
    return live;
}

/* The account registered for key thumbprint tp (reader snapshot), or NULL. */
static json_t *account_by_key(struct akamu *k, const char *tp)
{
    json_t *map = akm_get(k, "account_keys", tp), *acct = NULL;
    char id[AKM_ID_LEN + 1];

    if (map && mapping_live(k, map, tp, 0, id, NULL) == 1)
        acct = akm_get(k, "accounts", id);
    json_decref(map);
    return acct;
}

static void account_url(const struct akamu *k, const char *id, char out[AKM_URL_MAX])
{
    akm_url(k, out, "/acme/acct/%s", id);
}

/* ---- contacts ---- */

static int atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&'*+-/=^_`{|}~", c) != NULL);
}

/* NULL when addr is one plain address, else why not. */
static const char *address_problem(const char *addr)
{
    const char *at = strchr(addr, '@'), *p;
    size_t label = 0, labels = 0;

    if (strchr(addr, '?'))
        return "header fields (\"?\") are not allowed";
    if (strchr(addr, ','))
        return "one address per contact";
    if (strchr(addr, '%'))
        return "percent-encoded addresses are not supported";
    if (at == NULL || strchr(at + 1, '@') || at == addr || at - addr > 64)
        return "not a single address of the form local@domain";
    if (addr[0] == '.' || at[-1] == '.' || strstr(addr, ".."))
        return "bad dots in the local part";
    for (p = addr; p < at; p++) {
        if (!atext(*p) && *p != '.')
            return "character not allowed in the local part";
    }
    if (strlen(at + 1) > 253)
        return "domain too long";
    for (p = at + 1;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || p[-1] == '-')
                return "domain is not made of LDH labels";
            labels++;
            label = 0;
            if (*p == '\0')
                break;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              (*p == '-' && label > 0)) ||
            ++label > 63)
            return "domain is not made of LDH labels";
    }
    if (labels < 2)
        return "domain must have at least two labels";
    return NULL;
}

/* 1 when contact (the payload member, may be NULL) is acceptable; else
 * replies the problem and returns 0. */
static int contacts_ok(struct akamu *k, struct http_req *r, const json_t *contact)
{
    size_t i;
    json_t *v;

    if (contact == NULL || json_is_null(contact))
        return 1;
    if (!json_is_array(contact)) {
        akm_problem(k, r, 400, "malformed", "\"contact\" must be an array of URIs");
        return 0;
    }
    if (json_array_size(contact) > AKM_CONTACTS_MAX) {
        akm_problem(k, r, 400, "invalidContact", "at most %d contacts, not %zu", AKM_CONTACTS_MAX,
                    json_array_size(contact));
        return 0;
    }
    json_array_foreach(contact, i, v)
    {
        const char *s = json_string_value(v), *why;

        if (s == NULL) {
            akm_problem(k, r, 400, "malformed", "contact %zu is not a string", i);
            return 0;
        }
        if (strlen(s) > AKM_CONTACT_MAX) {
            akm_problem(k, r, 400, "invalidContact", "contact %zu is over %d bytes", i,
                        AKM_CONTACT_MAX);
            return 0;
        }
        if (strncasecmp(s, "mailto:", 7) != 0) {
            akm_problem(k, r, 400, "unsupportedContact",
                        "contact \"%.100s\": only mailto: URIs are supported", s);
            return 0;
        }
        if ((why = address_problem(s + 7)) != NULL) {
            akm_problem(k, r, 400, "invalidContact", "contact \"%.340s\": %s", s, why);
            return 0;
        }
    }
    return 1;
}

/* ---- rendering ---- */

json_t *akm_account_render(const struct akamu *k, const json_t *acct)
{
    const char *id = str_of(acct, "id"), *status = str_of(acct, "status");
    const json_t *contact = json_object_get(acct, "contact");
    json_t *created = json_object_get(acct, "created_at");
    char url[AKM_URL_MAX], when[32];
    json_t *out = json_object();

    if (out == NULL || id == NULL) {
        json_decref(out);
        return NULL;
    }
    akm_url(k, url, "/acme/acct/%s/orders", id);
    json_object_set_new(out, "status", json_string(status ? status : "valid"));
    if (json_is_array(contact) && json_array_size(contact) > 0)
        json_object_set_new(out, "contact", json_deep_copy(contact));
    json_object_set_new(out, "termsOfServiceAgreed",
                        json_boolean(json_is_true(json_object_get(acct, "tos_agreed"))));
    json_object_set_new(out, "orders", json_string(url));
    if (json_is_integer(created)) {
        akm_time_text(json_integer_value(created), when);
        json_object_set_new(out, "createdAt", json_string(when));
    }
    return out;
}

static void reply_account(struct akamu *k, struct http_req *r, int status, const json_t *acct,
                          int with_location)
{
    char url[AKM_URL_MAX];
    json_t *doc = akm_account_render(k, acct);

    account_url(k, str_of(acct, "id") ? str_of(acct, "id") : "", url);
    if (doc == NULL) {
        akm_problem(k, r, 500, "serverInternal", "cannot render the account");
        return;
    }
    akm_reply(k, r, status, doc, with_location ? url : NULL);
}

/* ---- External Account Binding (§7.3.4) ---- */

/* The HMAC key of EAB key id kid: [server.eab_keys] first, then the
 * eab_keys table (keys made by the admin API). 1 found, 0 unknown or
 * unusable. key gets AKM_JWS_HMAC_KEY_MAX + 4 bytes of room; the caller
 * wipes it. */
static int eab_key(struct akamu *k, const char *kid, uint8_t *key, size_t *len)
{
    const struct cfg_strmap *m = &k->cfg->server.eab_keys;
    const char *text = NULL;
    json_t *doc = NULL;
    int found = 0;

    for (size_t i = 0; i < m->n && text == NULL; i++) {
        if (strcmp(m->keys[i], kid) == 0)
            text = m->vals[i];
    }
    if (text == NULL && (doc = akm_get(k, "eab_keys", kid)) != NULL)
        text = str_of(doc, "hmac_key");
    if (text && strlen(text) <= EAB_KEY_TEXT_MAX &&
        ut_b64_decode(text, strlen(text), key, len, 1) == 0)
        found = 1;
    json_decref(doc);
    return found;
}

/* Checks the binding eab of the newAccount request c. 0 with the EAB key
 * id in kid_out; else replies the problem and returns -1. */
static int eab_check(struct akamu *k, struct http_req *r, const struct akm_ctx *c,
                     const json_t *eab, char kid_out[EAB_KID_MAX + 1])
{
    uint8_t key[AKM_JWS_HMAC_KEY_MAX + 4];
    size_t keylen = 0;
    struct akm_jws *in = NULL;
    struct ut_err e = {{0}};
    json_t *bound = NULL;
    const char *kid, *url;
    int rc, ret = -1;

    if (!json_is_object(eab)) {
        akm_problem(k, r, 400, "malformed", "\"externalAccountBinding\" must be a JWS object");
        return -1;
    }
    if ((rc = akm_jws_parse_json(eab, AKM_JWS_EAB, &in, &e)) < 0) {
        jws_fail(k, r, rc, "externalAccountBinding", e.msg);
        goto out;
    }
    url = akm_jws_url(in);
    if (strcmp(url, akm_jws_url(c->jws)) != 0) {
        akm_problem(k, r, 400, "malformed",
                    "externalAccountBinding: \"url\" (%.300s) is not the newAccount URL", url);
        goto out;
    }
    kid = akm_jws_kid(in);
    if (strlen(kid) > EAB_KID_MAX || !eab_key(k, kid, key, &keylen)) {
        akm_problem(k, r, 401, "unauthorized", "externalAccountBinding: unknown key id \"%.100s\"",
                    kid);
        goto out;
    }
    if ((rc = akm_jws_verify_hmac(in, key, keylen, &e)) < 0) {
        if (rc == -EBADMSG)
            akm_problem(k, r, 401, "unauthorized",
                        "externalAccountBinding: the MAC does not verify with key \"%.100s\"", kid);
        else
            jws_fail(k, r, rc, "externalAccountBinding", e.msg);
        goto out;
    }
    if ((rc = akm_jws_payload_json(in, &bound, &e)) < 0) {
        akm_problem(k, r, 400, "malformed", "externalAccountBinding payload: %s", e.msg);
        goto out;
    }
    if ((rc = akm_jwk_equal(bound, c->jwk, &e)) != 1) {
        akm_problem(k, r, 400, "malformed",
                    "externalAccountBinding: the payload is not the account key%s%s",
                    rc < 0 ? ": " : "", rc < 0 ? e.msg : "");
        goto out;
    }
    snprintf(kid_out, EAB_KID_MAX + 1, "%s", kid);
    ret = 0;
out:
    ut_memzero(key, sizeof(key));
    json_decref(bound);
    akm_jws_free(in);
    return ret;
}

/* ---- newAccount (§7.3, §7.3.1) ---- */

struct create {
    struct akamu *k;
    const json_t *acct; /* the new account document */
    const char *id;
    const char *tp;
    const char *eab_kid;           /* NULL: no binding */
    char existing[AKM_ID_LEN + 1]; /* set when the key turned out to be registered */
};

static int eab_use_fn(json_t **doc, void *arg, struct ut_err *err)
{
    const struct create *cr = arg;

    if (*doc != NULL) {
        ut_err_set(err, "external account binding key \"%s\" was already used", cr->eab_kid);
        return -EALREADY;
    }
    *doc = json_pack("{s:s, s:I}", "account", cr->id, "used_at", (json_int_t)akm_now());
    return *doc ? 1 : -ENOMEM;
}

/* On account_keys/<thumbprint>, in the writer: creates the account unless
 * the key is registered by then (a concurrent newAccount won). */
static int create_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct create *cr = arg;
    struct akm_put p = {.tbl = "accounts", .id = cr->id, .doc = (json_t *)cr->acct};
    json_t *map;
    int rc;

    cr->existing[0] = '\0'; /* the job may be retried */
    if (*doc != NULL && (rc = mapping_live(cr->k, *doc, cr->tp, 1, cr->existing, err)) != 0)
        return rc < 0 ? rc : 0;
    if (cr->eab_kid &&
        (rc = akm_update(cr->k, "eab_usage", cr->eab_kid, eab_use_fn, cr, NULL, err)) < 0)
        return rc;
    if ((rc = akm_put_all(cr->k, &p, 1, err)) < 0)
        return rc;
    if ((map = json_pack("{s:s}", "account", cr->id)) == NULL)
        return -ENOMEM;
    json_decref(*doc);
    *doc = map;
    return 1;
}

struct new_acct_req {
    const json_t *contact;
    int tos;
    int only_existing;
    const json_t *eab;
};

/* Type checks of the payload members we use; 0 or replied. */
static int parse_new_account(struct akamu *k, struct http_req *r, const json_t *pl,
                             struct new_acct_req *q)
{
    const json_t *tos = json_object_get(pl, "termsOfServiceAgreed"),
                 *only = json_object_get(pl, "onlyReturnExisting");

    memset(q, 0, sizeof(*q));
    if ((tos && !json_is_boolean(tos) && !json_is_null(tos)) ||
        (only && !json_is_boolean(only) && !json_is_null(only))) {
        akm_problem(k, r, 400, "malformed",
                    "\"termsOfServiceAgreed\" and \"onlyReturnExisting\" must be booleans");
        return -1;
    }
    q->contact = json_object_get(pl, "contact");
    if (json_is_null(q->contact))
        q->contact = NULL;
    q->tos = json_is_true(tos);
    q->only_existing = json_is_true(only);
    q->eab = json_object_get(pl, "externalAccountBinding");
    if (json_is_null(q->eab))
        q->eab = NULL;
    return 0;
}

static void tos_required(struct akamu *k, struct http_req *r)
{
    char terms[AKM_URL_MAX], link[AKM_URL_MAX + 32];
    json_t *doc;

    akm_url(k, terms, "/acme/terms");
    snprintf(link, sizeof(link), "<%s>;rel=\"terms-of-service\"", terms);
    http_add_header(r, "Link", link);
    doc = akm_problem_new("userActionRequired", 403,
                          "agree to the terms of service (%s): send \"termsOfServiceAgreed\": true",
                          terms);
    if (doc)
        json_object_set_new(doc, "instance", json_string(terms));
    akm_problem_doc(k, r, 403, doc);
}

static void create_account(struct akamu *k, struct http_req *r, const struct akm_ctx *c,
                           const struct new_acct_req *q, const char *eab_kid)
{
    char id[AKM_ID_LEN + 1], tp[AKM_JWK_THUMB_LEN + 1];
    struct ut_err e = {{0}};
    json_t *jwk = NULL, *acct = NULL, *existing;
    struct create cr = {.k = k};
    int rc;

    akm_new_id(k, id);
    if ((rc = akm_jwk_from_pkey(c->key, &jwk, &e)) < 0 ||
        (rc = akm_jwk_thumbprint(jwk, tp, &e)) < 0) {
        internal(k, r, "newAccount key export", &e);
        goto out;
    }
    acct = json_pack("{s:s, s:s, s:o, s:O, s:s, s:b, s:I}", "id", id, "status", "valid", "contact",
                     q->contact ? json_deep_copy(q->contact) : json_array(), "jwk", jwk,
                     "thumbprint", tp, "tos_agreed", q->tos, "created_at", (json_int_t)akm_now());
    if (acct == NULL) {
        akm_problem(k, r, 500, "serverInternal", "out of memory");
        goto out;
    }
    if (eab_kid)
        json_object_set_new(acct, "eab_kid", json_string(eab_kid));
    cr.acct = acct;
    cr.id = id;
    cr.tp = tp;
    cr.eab_kid = eab_kid;
    rc = akm_update(k, "account_keys", tp, create_fn, &cr, NULL, &e);
    if (rc == -EALREADY) {
        akm_problem(k, r, 401, "unauthorized", "externalAccountBinding: EAB key already used");
        goto out;
    }
    if (rc < 0) {
        internal(k, r, "newAccount", &e);
        goto out;
    }
    if (cr.existing[0]) { /* registered meanwhile: §7.3.1 */
        if ((existing = akm_get(k, "accounts", cr.existing)) == NULL) {
            akm_problem(k, r, 500, "serverInternal", "account %s vanished", cr.existing);
            goto out;
        }
        reply_account(k, r, 200, existing, 1);
        json_decref(existing);
        goto out;
    }
    if (eab_kid)
        ut_log(UT_LOG_INFO, MOD, "account created", UT_LF_S("account", id),
               UT_LF_S("eab_kid", eab_kid));
    else
        ut_log(UT_LOG_INFO, MOD, "account created", UT_LF_S("account", id));
    reply_account(k, r, 201, acct, 1);
out:
    json_decref(acct);
    json_decref(jwk);
}

static void new_account_ctx(struct akamu *k, struct http_req *r, const struct akm_ctx *c)
{
    char eab_kid[EAB_KID_MAX + 1];
    struct new_acct_req q;
    json_t *acct;
    const char *status;

    if (c->payload == NULL) {
        akm_problem(k, r, 400, "malformed", "newAccount needs a JSON object payload");
        return;
    }
    if (parse_new_account(k, r, c->payload, &q) < 0)
        return;
    if ((acct = account_by_key(k, c->thumbprint)) != NULL) {
        status = str_of(acct, "status");
        if (status && strcmp(status, "valid") != 0)
            akm_problem(k, r, 401, "unauthorized", "the account of this key is %s", status);
        else
            reply_account(k, r, 200, acct, 1);
        json_decref(acct);
        return;
    }
    if (q.only_existing) {
        akm_problem(k, r, 400, "accountDoesNotExist", "no account is registered for this key");
        return;
    }
    if (!contacts_ok(k, r, q.contact))
        return;
    if (!q.tos) {
        tos_required(k, r);
        return;
    }
    if (q.eab == NULL && k->cfg->server.external_account_required) {
        akm_problem(k, r, 401, "externalAccountRequired",
                    "this server requires an externalAccountBinding in newAccount");
        return;
    }
    if (q.eab && eab_check(k, r, c, q.eab, eab_kid) < 0)
        return;
    create_account(k, r, c, &q, q.eab ? eab_kid : NULL);
}

static void new_account(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_ctx c;

    if (akm_auth(k, r, AKM_AUTH_JWK, &c) < 0)
        return;
    new_account_ctx(k, r, &c);
    akm_ctx_clear(&c);
}

/* ---- account object: fetch, update, deactivate (§7.3.2, §7.3.6) ---- */

/* Authenticates by kid and checks the kid is the account of the route.
 * 0 or replied (-1; c is then clear). */
static int own_account(struct akamu *k, struct http_req *r, struct akm_ctx *c)
{
    const char *id = http_req_param(r, "id");

    if (akm_auth(k, r, AKM_AUTH_KID, c) < 0)
        return -1;
    if (id == NULL || strcmp(id, c->account_id) != 0) {
        akm_problem(k, r, 403, "unauthorized", "account %s may not act on account %.64s",
                    c->account_id, id ? id : "");
        akm_ctx_clear(c);
        return -1;
    }
    return 0;
}

struct upd {
    const json_t *contact; /* NULL: unchanged */
    int deactivate;
    int tos;
};

static int upd_fn(json_t **doc, void *arg, struct ut_err *err)
{
    const struct upd *u = arg;
    const char *status;

    if (*doc == NULL) {
        ut_err_set(err, "no such account");
        return -ENOENT;
    }
    status = str_of(*doc, "status");
    if (status == NULL || strcmp(status, "valid") != 0) {
        ut_err_set(err, "account is %s", status ? status : "unusable");
        return -EPERM;
    }
    if (u->contact)
        json_object_set_new(*doc, "contact", json_deep_copy(u->contact));
    if (u->tos)
        json_object_set_new(*doc, "tos_agreed", json_true());
    if (u->deactivate) {
        json_object_set_new(*doc, "status", json_string("deactivated"));
        json_object_set_new(*doc, "deactivated_at", json_integer(akm_now()));
    }
    return 1;
}

static void account_update(struct akamu *k, struct http_req *r, const struct akm_ctx *c)
{
    const json_t *pl = c->payload, *status = json_object_get(pl, "status"),
                 *tos = json_object_get(pl, "termsOfServiceAgreed");
    struct upd u = {.contact = json_object_get(pl, "contact")};
    struct ut_err e = {{0}};
    json_t *acct = NULL;
    int rc;

    if (status) {
        const char *s = json_string_value(status);
        if (s && strcmp(s, "deactivated") == 0) {
            u.deactivate = 1;
        } else if (s == NULL || strcmp(s, "valid") != 0) {
            akm_problem(k, r, 400, "malformed",
                        "\"status\" may only be set to \"deactivated\" (RFC 8555 §7.3.6)");
            return;
        }
    }
    if (tos && !json_is_boolean(tos) && !json_is_null(tos)) {
        akm_problem(k, r, 400, "malformed", "\"termsOfServiceAgreed\" must be a boolean");
        return;
    }
    if (json_is_null(u.contact))
        u.contact = NULL;
    u.tos = json_is_true(tos);
    if (!contacts_ok(k, r, u.contact))
        return;
    rc = akm_update(k, "accounts", c->account_id, upd_fn, &u, &acct, &e);
    if (rc == -ENOENT)
        akm_problem(k, r, 400, "accountDoesNotExist", "account %s: %s", c->account_id, e.msg);
    else if (rc == -EPERM)
        akm_problem(k, r, 401, "unauthorized", "account %s: %s", c->account_id, e.msg);
    else if (rc < 0 || acct == NULL)
        internal(k, r, "account update", &e);
    else {
        if (u.deactivate)
            ut_log(UT_LOG_INFO, MOD, "account deactivated", UT_LF_S("account", c->account_id));
        reply_account(k, r, 200, acct, 0);
    }
    json_decref(acct);
}

static void account(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_ctx c;

    if (own_account(k, r, &c) < 0)
        return;
    if (c.payload == NULL)
        reply_account(k, r, 200, c.account, 0);
    else
        account_update(k, r, &c);
    akm_ctx_clear(&c);
}

/* ---- the orders list (§7.1.2.1) ---- */

struct olist {
    const struct akamu *k;
    json_t *urls;
    int n;
    int more;
    char last[AKM_ID_LEN + 1];
};

static int olist_add(const char *id, json_t *doc, void *arg)
{
    struct olist *o = arg;
    const char *status = str_of(doc, "status");
    char url[AKM_URL_MAX];

    if (status && strcmp(status, "invalid") == 0)
        return 0;
    if (o->n == AKM_ORDERS_PAGE) {
        o->more = 1;
        return 1;
    }
    akm_url(o->k, url, "/acme/order/%s", id);
    json_array_append_new(o->urls, json_string(url));
    snprintf(o->last, sizeof(o->last), "%s", id);
    o->n++;
    return 0;
}

static int cursor_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > AKM_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

static void orders(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    const char *cursor = http_req_param(r, "cursor");
    struct olist o = {.k = k};
    char next[AKM_URL_MAX], link[AKM_URL_MAX + 32];
    struct ut_err e = {{0}};
    struct akm_ctx c;

    if (own_account(k, r, &c) < 0)
        return;
    if (!akm_require_post_as_get(k, r, &c))
        goto out;
    if (cursor && !cursor_ok(cursor)) {
        akm_problem(k, r, 400, "malformed", "bad orders page cursor");
        goto out;
    }
    if ((o.urls = json_array()) == NULL ||
        akm_each(k, "orders", "account", c.account_id, cursor, 0, olist_add, &o, &e) < 0) {
        json_decref(o.urls);
        internal(k, r, "orders list", &e);
        goto out;
    }
    if (o.more) {
        akm_url(k, next, "/acme/acct/%s/orders/%s", c.account_id, o.last);
        snprintf(link, sizeof(link), "<%s>;rel=\"next\"", next);
        http_add_header(r, "Link", link);
    }
    akm_reply(k, r, 200, json_pack("{s:o}", "orders", o.urls), NULL);
out:
    akm_ctx_clear(&c);
}

/* ---- keyChange (§7.3.5) ---- */

struct rollover {
    struct akamu *k;
    const char *id;
    const char *old_tp, *new_tp;
    const json_t *new_jwk;
    char other[AKM_ID_LEN + 1]; /* conflict: the account holding the new key */
    json_t *acct;               /* the updated account */
};

static int swap_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct rollover *ro = arg;
    const char *status, *tp;

    if (*doc == NULL) {
        ut_err_set(err, "no such account");
        return -ENOENT;
    }
    status = str_of(*doc, "status");
    tp = str_of(*doc, "thumbprint");
    if (status == NULL || strcmp(status, "valid") != 0) {
        ut_err_set(err, "account is %s", status ? status : "unusable");
        return -EPERM;
    }
    if (tp == NULL || strcmp(tp, ro->old_tp) != 0) {
        ut_err_set(err, "the account key changed during this request");
        return -EPERM;
    }
    json_object_set_new(*doc, "jwk", json_deep_copy(ro->new_jwk));
    json_object_set_new(*doc, "thumbprint", json_string(ro->new_tp));
    json_object_set_new(*doc, "key_changed_at", json_integer(akm_now()));
    return 1;
}

/* On account_keys/<new thumbprint>, in the writer. */
static int claim_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct rollover *ro = arg;
    json_t *map;
    int rc;

    ro->other[0] = '\0'; /* the job may be retried */
    json_decref(ro->acct);
    ro->acct = NULL;
    if (*doc != NULL && (rc = mapping_live(ro->k, *doc, ro->new_tp, 1, ro->other, err)) != 0) {
        if (rc > 0)
            ut_err_set(err, "the new key is registered to account %s", ro->other);
        return rc < 0 ? rc : -EEXIST;
    }
    if ((rc = akm_update(ro->k, "accounts", ro->id, swap_fn, ro, &ro->acct, err)) < 0 ||
        (rc = akm_delete(ro->k, "account_keys", ro->old_tp, err)) < 0)
        return rc;
    if ((map = json_pack("{s:s}", "account", ro->id)) == NULL)
        return -ENOMEM;
    json_decref(*doc);
    *doc = map;
    return 1;
}

/* Checks the inner JWS of c and puts the new key's canonical JWK and
 * thumbprint in *jwk_out and tp. 0 or replied. */
static int key_change_check(struct akamu *k, struct http_req *r, const struct akm_ctx *c,
                            json_t **jwk_out, char tp[AKM_JWK_THUMB_LEN + 1])
{
    struct akm_jws *in = NULL;
    struct ut_err e = {{0}};
    EVP_PKEY *key = NULL;
    json_t *kc = NULL;
    const char *acct;
    int rc, ret = -1;

    *jwk_out = NULL;
    if (c->payload == NULL) {
        akm_problem(k, r, 400, "malformed", "keyChange needs the inner JWS as its payload");
        return -1;
    }
    if ((rc = akm_jws_parse_json(c->payload, AKM_JWS_KEYCHANGE, &in, &e)) < 0) {
        jws_fail(k, r, rc, "keyChange inner JWS", e.msg);
        goto out;
    }
    if (strcmp(akm_jws_url(in), akm_jws_url(c->jws)) != 0) {
        akm_problem(k, r, 400, "malformed",
                    "keyChange: the inner JWS \"url\" is not the outer one");
        goto out;
    }
    if ((rc = akm_jwk_to_pkey(akm_jws_jwk(in), &key, &e)) < 0 ||
        (rc = akm_jws_verify(in, key, &e)) < 0) {
        jws_fail(k, r, rc, "keyChange inner JWS", e.msg);
        goto out;
    }
    if ((rc = akm_jws_payload_json(in, &kc, &e)) < 0) {
        akm_problem(k, r, 400, "malformed", "keyChange inner payload: %s", e.msg);
        goto out;
    }
    acct = str_of(kc, "account");
    if (acct == NULL || strcmp(acct, akm_jws_kid(c->jws)) != 0) {
        akm_problem(k, r, 400, "malformed",
                    "keyChange: \"account\" must be the outer JWS \"kid\" (the account URL)");
        goto out;
    }
    rc = akm_jwk_equal(json_object_get(kc, "oldKey"), json_object_get(c->account, "jwk"), &e);
    if (rc != 1) {
        akm_problem(k, r, 400, "malformed", "keyChange: \"oldKey\" %s%s",
                    rc < 0 ? "is not a usable JWK: " : "is not the account's current key",
                    rc < 0 ? e.msg : "");
        goto out;
    }
    if ((rc = akm_jwk_from_pkey(key, jwk_out, &e)) < 0 ||
        (rc = akm_jwk_thumbprint(*jwk_out, tp, &e)) < 0) {
        internal(k, r, "keyChange key export", &e);
        goto out;
    }
    if (strcmp(tp, c->thumbprint) == 0) {
        akm_problem(k, r, 400, "malformed", "keyChange: the new key is the account's current key");
        goto out;
    }
    ret = 0;
out:
    if (ret < 0) {
        json_decref(*jwk_out);
        *jwk_out = NULL;
    }
    json_decref(kc);
    EVP_PKEY_free(key);
    akm_jws_free(in);
    return ret;
}

static void key_change(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    char tp[AKM_JWK_THUMB_LEN + 1], url[AKM_URL_MAX];
    struct rollover ro = {.k = k};
    struct ut_err e = {{0}};
    json_t *jwk = NULL;
    struct akm_ctx c;
    int rc;

    if (akm_auth(k, r, AKM_AUTH_KID, &c) < 0)
        return;
    if (key_change_check(k, r, &c, &jwk, tp) < 0)
        goto out;
    ro.id = c.account_id;
    ro.old_tp = c.thumbprint;
    ro.new_tp = tp;
    ro.new_jwk = jwk;
    rc = akm_update(k, "account_keys", tp, claim_fn, &ro, NULL, &e);
    if (rc == -EEXIST) {
        account_url(k, ro.other, url);
        http_add_header(r, "Location", url);
        akm_problem(k, r, 409, "conflict", "keyChange: the new key is already in use by %s", url);
    } else if (rc == -EPERM || rc == -ENOENT) {
        akm_problem(k, r, 401, "unauthorized", "keyChange: account %s: %s", c.account_id, e.msg);
    } else if (rc < 0 || ro.acct == NULL) {
        internal(k, r, "keyChange", &e);
    } else {
        ut_log(UT_LOG_INFO, MOD, "account key changed", UT_LF_S("account", c.account_id));
        reply_account(k, r, 200, ro.acct, 0);
    }
out:
    json_decref(ro.acct);
    json_decref(jwk);
    akm_ctx_clear(&c);
}

int akm_account_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(s, HTTP_POST, "/acme/new-account", new_account, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/acct/{id}", account, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/acct/{id}/orders", orders, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/acct/{id}/orders/{cursor}", orders, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/key-change", key_change, k, err)) < 0)
        return rc;
    return 0;
}
