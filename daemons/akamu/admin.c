/*
 * admin.c - the operator API on the admin listener (never the public ACME
 * one): inspect accounts, orders and certificates, revoke a certificate,
 * make External Account Binding keys.
 *
 * Authentication: "Authorization: Bearer <token>", the token being the
 * content of [admin] token_file (read once at start, surrounding
 * whitespace trimmed, at least ADMIN_TOKEN_MIN printable characters, else
 * akamu refuses to start). Only its SHA-256 is kept; requests are compared
 * on that digest in constant time. Without token_file every route answers
 * 403. Replies are plain application/json; errors are
 * {"error","error_description"} (RFC 6749 shape, as the rest of the admin
 * listener), not ACME problem documents.
 *
 * Lists take ?limit (1..ADMIN_LIST_MAX, default ADMIN_LIST_DEFAULT) and
 * ?after (the last id of the previous page, given back as "next" while
 * more may follow), in key order.
 *
 * EAB keys made here live in the replicated table "eab_keys" ({"hmac_key"
 * base64url, "created_at"}) so that every node accepts them: they are
 * secrets and travel to the cluster peers only inside the gossip channel's
 * sealed envelopes. They are shown once, in the reply that creates them,
 * and never logged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "acme.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD "admin"

#define ADMIN_TOKEN_MIN      32
#define ADMIN_TOKEN_FILE_MAX 4096
#define ADMIN_LIST_DEFAULT   100
#define ADMIN_LIST_MAX       1000
#define ADMIN_CURSOR_MAX     128
#define EAB_KID_MAX          64
#define SERIAL_HEX_MAX       40                /* 20-octet serials (RFC 5280 §4.1.2.2) */
#define EAB_KEY_BYTES        32                /* HS256 needs at least 32 (RFC 7518 §3.2) */
#define REVOKE_KEEP_SECS     (7 * 24 * 3600)   /* revocations outlive the certificate by this */
#define REVOKE_DEFAULT_SECS  (400 * 24 * 3600) /* when a certificate has no not_after */

struct admin {
    struct akamu *k;
    int enabled;
    unsigned char token_sha[32];
};

/* One admin listener per process; its routes point here. */
static struct admin the_admin;

/* ---- the token ---- */

static int sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 0;

    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -EIO;
}

static int read_token(const char *path, unsigned char sha[32], struct ut_err *err)
{
    char buf[ADMIN_TOKEN_FILE_MAX + 2];
    size_t n = 0, start = 0;
    struct stat st;
    FILE *f = fopen(path, "re");
    int rc = 0;

    if (f == NULL) {
        ut_err_set(err, "[admin] token_file %s: %s", path, strerror(errno));
        return -errno;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    if (ferror(f)) {
        ut_err_set(err, "[admin] token_file %s: read error", path);
        rc = -EIO;
        goto out;
    }
    if (n > ADMIN_TOKEN_FILE_MAX) {
        ut_err_set(err, "[admin] token_file %s: longer than %d bytes", path, ADMIN_TOKEN_FILE_MAX);
        rc = -EFBIG;
        goto out;
    }
    while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
        n--;
    while (start < n && strchr(" \t\r\n", buf[start]))
        start++;
    if (n - start < ADMIN_TOKEN_MIN) {
        ut_err_set(err, "[admin] token_file %s: the token must be at least %d characters", path,
                   ADMIN_TOKEN_MIN);
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = start; i < n; i++) {
        if (buf[i] < 0x21 || buf[i] > 0x7e) {
            ut_err_set(err,
                       "[admin] token_file %s: the token must be printable ASCII without spaces",
                       path);
            rc = -EINVAL;
            goto out;
        }
    }
    if ((rc = sha256(buf + start, n - start, sha)) < 0) {
        ut_err_set(err, "[admin] token_file %s: cannot hash the token", path);
        goto out;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        ut_log(UT_LOG_WARN, MOD, "token_file is readable by group or others; chmod 600 it",
               UT_LF_S("path", path));
out:
    ut_memzero(buf, sizeof(buf));
    fclose(f);
    return rc;
}

/* 1 when r carries the token; else replies 401/403 and returns 0. */
static int authorized(struct admin *a, struct http_req *r)
{
    const char *h = http_req_header(r, "Authorization");
    unsigned char sha[32];

    if (!a->enabled) {
        http_reply_error(r, 403, "forbidden", "admin API disabled: set [admin] token_file");
        return 0;
    }
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        http_add_header(r, "WWW-Authenticate", "Bearer realm=\"akamu-admin\"");
        http_reply_error(r, 401, "unauthorized", "missing bearer token");
        return 0;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (sha256(h, strlen(h), sha) < 0 || !ut_ct_eq(sha, a->token_sha, sizeof(sha))) {
        http_add_header(r, "WWW-Authenticate",
                        "Bearer realm=\"akamu-admin\", error=\"invalid_token\"");
        http_reply_error(r, 401, "invalid_token", "wrong bearer token");
        return 0;
    }
    return 1;
}

int akm_admin_authorized(struct http_req *r)
{
    return authorized(&the_admin, r);
}

/* ---- views ---- */

static const char *str_of(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static json_t *with_url(const struct akamu *k, json_t *doc, const char *prefix, const char *id)
{
    char url[AKM_URL_MAX];

    akm_url(k, url, "%s%s", prefix, id);
    json_object_set_new(doc, "url", json_string(url));
    return doc;
}

/* The admin view of a certificate document (new reference): without the
 * DER, with its serial, URL and revocation (null when not revoked). */
static json_t *cert_view(struct akamu *k, const char *serial, const json_t *doc)
{
    json_t *v = json_deep_copy(doc), *rev;

    if (v == NULL)
        return NULL;
    json_object_del(v, "der");
    json_object_set_new(v, "serial", json_string(serial));
    if (str_of(doc, "id"))
        with_url(k, v, "/acme/cert/", str_of(doc, "id"));
    rev = akm_get(k, "revocations", serial);
    json_object_set_new(v, "revocation", rev ? rev : json_null());
    return v;
}

static json_t *view(struct akamu *k, const char *tbl, const char *id, const json_t *doc)
{
    if (strcmp(tbl, "certificates") == 0)
        return cert_view(k, id, doc);
    if (strcmp(tbl, "accounts") == 0)
        return with_url(k, json_deep_copy(doc), "/acme/acct/", id);
    return with_url(k, json_deep_copy(doc), "/acme/order/", id);
}

/* ---- lists ---- */

struct rows {
    json_t *ids, *docs;
};

static int collect(const char *id, json_t *doc, void *arg)
{
    struct rows *rw = arg;

    json_array_append_new(rw->ids, json_string(id));
    json_array_append(rw->docs, doc);
    return 0;
}

/* ?limit and ?after; 0 or replied 400. */
static int paging(struct http_req *r, int *limit, const char **after)
{
    const char *l = http_req_query(r, "limit");
    char *end = NULL;
    long v;

    *limit = ADMIN_LIST_DEFAULT;
    *after = http_req_query(r, "after");
    if (l) {
        v = strtol(l, &end, 10);
        if (*l == '\0' || *end != '\0' || v < 1 || v > ADMIN_LIST_MAX) {
            http_reply_error(r, 400, "invalid_request", "limit: expected an integer in 1..1000");
            return -1;
        }
        *limit = (int)v;
    }
    if (*after && (**after == '\0' || strlen(*after) > ADMIN_CURSOR_MAX)) {
        http_reply_error(r, 400, "invalid_request", "after: expected an id from \"next\"");
        return -1;
    }
    return 0;
}

static void list(struct http_req *r, const char *tbl, const char *field, const char *value)
{
    struct admin *a = &the_admin;
    struct rows rw = {json_array(), json_array()};
    struct ut_err e = {{0}};
    const char *after;
    json_t *out = NULL, *items = NULL, *id;
    size_t i;
    int limit, n = 0;

    if (paging(r, &limit, &after) < 0)
        goto out;
    if (rw.ids == NULL || rw.docs == NULL || (items = json_array()) == NULL ||
        (n = akm_each(a->k, tbl, field, value, after, limit, collect, &rw, &e)) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "listing failed", UT_LF_S("table", tbl), UT_LF_S("error", e.msg));
        http_reply_error(r, 500, "server_error", "listing failed");
        goto out;
    }
    json_array_foreach(rw.ids, i, id)
    {
        json_array_append_new(items,
                              view(a->k, tbl, json_string_value(id), json_array_get(rw.docs, i)));
    }
    out = json_pack("{s:O}", tbl, items);
    if (out && n == limit && n > 0)
        json_object_set(out, "next", json_array_get(rw.ids, (size_t)n - 1));
    http_reply_json(r, 200, out);
out:
    json_decref(items);
    json_decref(rw.ids);
    json_decref(rw.docs);
}

static void list_accounts(struct http_req *r, void *arg)
{
    if (authorized(arg, r))
        list(r, "accounts", NULL, NULL);
}

static void list_orders(struct http_req *r, void *arg)
{
    const char *acct = http_req_query(r, "account");

    if (authorized(arg, r))
        list(r, "orders", acct ? "account" : NULL, acct);
}

static void list_certificates(struct http_req *r, void *arg)
{
    const char *acct = http_req_query(r, "account");

    if (authorized(arg, r))
        list(r, "certificates", acct ? "account" : NULL, acct);
}

/* ---- single objects ---- */

static void show(struct http_req *r, const char *tbl, const char *id)
{
    struct admin *a = &the_admin;
    json_t *doc = akm_get(a->k, tbl, id);

    if (doc == NULL) {
        http_reply_error(r, 404, "not_found", "no such object");
        return;
    }
    http_reply_json(r, 200, view(a->k, tbl, id, doc));
    json_decref(doc);
}

static void get_account(struct http_req *r, void *arg)
{
    if (authorized(arg, r))
        show(r, "accounts", http_req_param(r, "id"));
}

static void get_order(struct http_req *r, void *arg)
{
    if (authorized(arg, r))
        show(r, "orders", http_req_param(r, "id"));
}

/* The route's serial in lower-case hex into out; 0, or replied 404. */
static int serial_param(struct http_req *r, char out[SERIAL_HEX_MAX + 1])
{
    const char *s = http_req_param(r, "serial");
    size_t n = strlen(s);

    for (size_t i = 0; i < n && n <= SERIAL_HEX_MAX; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            n = 0;
        else
            out[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    if (n == 0 || n > SERIAL_HEX_MAX) {
        http_reply_error(r, 404, "not_found", "no such certificate (serial: hex digits)");
        return -1;
    }
    out[n] = '\0';
    return 0;
}

/* The certificate (DER as base64url) as one PEM block; NULL when broken. */
static json_t *pem_of(const char *der_b64)
{
    size_t n = der_b64 ? strlen(der_b64) : 0, derlen = 0, b64len, pos = 0;
    unsigned char *der = NULL;
    char *b64 = NULL;
    struct ut_buf pem;
    json_t *out = NULL;

    ut_buf_init(&pem, 4 * n + 256);
    if (n == 0 || (der = malloc(n + 3)) == NULL || ut_b64_decode(der_b64, n, der, &derlen, 1) < 0 ||
        (b64 = malloc(ut_b64_enclen(derlen, 0) + 1)) == NULL)
        goto out;
    ut_b64_encode(der, derlen, b64, 0);
    b64len = strlen(b64);
    if (ut_buf_printf(&pem, "-----BEGIN CERTIFICATE-----\n") < 0)
        goto out;
    for (pos = 0; pos < b64len; pos += 64) {
        if (ut_buf_printf(&pem, "%.64s\n", b64 + pos) < 0)
            goto out;
    }
    if (ut_buf_printf(&pem, "-----END CERTIFICATE-----\n") < 0)
        goto out;
    out = json_string(pem.data);
out:
    ut_buf_free(&pem);
    free(b64);
    free(der);
    return out;
}

static void get_certificate(struct http_req *r, void *arg)
{
    struct admin *a = arg;
    char serial[SERIAL_HEX_MAX + 1];
    json_t *doc, *v;

    if (!authorized(a, r) || serial_param(r, serial) < 0)
        return;
    if ((doc = akm_get(a->k, "certificates", serial)) == NULL) {
        http_reply_error(r, 404, "not_found", "no such certificate");
        return;
    }
    v = cert_view(a->k, serial, doc);
    if (v)
        json_object_set_new(v, "pem", pem_of(str_of(doc, "der")));
    http_reply_json(r, 200, v);
    json_decref(doc);
}

/* ---- revocation ---- */

struct revoke {
    struct akamu *k;
    const char *serial;
    int reason;
    json_t *rev; /* the stored revocation (or the existing one on -EEXIST) */
};

static int read_fn(json_t **doc, void *arg, struct ut_err *err)
{
    (void)doc;
    (void)arg;
    (void)err;
    return 0;
}

/* On certificates/<serial>, in the writer: records the revocation unless
 * there is one. The certificate itself is left as it is. */
static int revoke_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct revoke *rv = arg;
    json_t *not_after;
    int64_t now = akm_now(), until;
    struct akm_put p = {.tbl = "revocations", .id = rv->serial};
    int rc;

    json_decref(rv->rev); /* the job may be retried */
    rv->rev = NULL;
    if (*doc == NULL) {
        ut_err_set(err, "no certificate with serial %s", rv->serial);
        return -ENOENT;
    }
    if ((rc = akm_update(rv->k, "revocations", rv->serial, read_fn, NULL, &rv->rev, err)) < 0)
        return rc;
    if (rv->rev) {
        ut_err_set(err, "certificate %s is already revoked", rv->serial);
        return -EEXIST;
    }
    not_after = json_object_get(*doc, "not_after");
    until = json_is_integer(not_after) ? json_integer_value(not_after) : now + REVOKE_DEFAULT_SECS;
    if (until < now)
        until = now;
    rv->rev = json_pack("{s:i, s:I}", "reason", rv->reason, "revoked_at", (json_int_t)now);
    if (rv->rev == NULL)
        return -ENOMEM;
    p.doc = rv->rev;
    p.expires = (until + REVOKE_KEEP_SECS) * 1000;
    if ((rc = akm_put_all(rv->k, &p, 1, err)) < 0)
        return rc;
    return 0;
}

/* {"reason"}: CRLReason 0..10 except 7 (RFC 5280 §5.3.1); absent: 0. */
static int revoke_reason(struct http_req *r, int *reason)
{
    size_t len = 0;
    const unsigned char *body = http_req_body(r, &len);
    struct ut_err e = {{0}};
    json_t *j, *v;

    *reason = 0;
    if (len == 0)
        return 0;
    if ((j = http_parse_json(body, len, &e)) == NULL) {
        http_reply_error(r, 400, "invalid_request", e.msg);
        return -1;
    }
    v = json_object_get(j, "reason");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10 ||
              json_integer_value(v) == 7)) {
        json_decref(j);
        http_reply_error(r, 400, "invalid_request",
                         "reason: expected a CRLReason code 0..10 other than 7");
        return -1;
    }
    *reason = v ? (int)json_integer_value(v) : 0;
    json_decref(j);
    return 0;
}

static void revoke(struct http_req *r, void *arg)
{
    struct admin *a = arg;
    char serial[SERIAL_HEX_MAX + 1];
    struct revoke rv = {.k = a->k, .serial = serial};
    struct ut_err e = {{0}};
    int rc;

    if (!authorized(a, r) || serial_param(r, serial) < 0 || revoke_reason(r, &rv.reason) < 0)
        return;
    rc = akm_update(a->k, "certificates", serial, revoke_fn, &rv, NULL, &e);
    if (rc == -ENOENT) {
        http_reply_error(r, 404, "not_found", e.msg);
    } else if (rc == -EEXIST) {
        http_reply_error(r, 409, "already_revoked", e.msg);
    } else if (rc < 0) {
        ut_log(UT_LOG_ERROR, MOD, "revocation failed", UT_LF_S("serial", serial),
               UT_LF_S("error", e.msg));
        http_reply_error(r, 500, "server_error", "revocation failed");
    } else {
        ut_log(UT_LOG_INFO, MOD, "certificate revoked", UT_LF_S("serial", serial),
               UT_LF_I("reason", rv.reason), UT_LF_S("by", "admin API"));
        json_object_set_new(rv.rev, "serial", json_string(serial));
        http_reply_json(r, 200, json_incref(rv.rev));
    }
    json_decref(rv.rev);
}

/* ---- EAB keys ---- */

struct eab_new {
    struct akamu *k;
    const char *kid;
    const char *hmac_key;
};

static int eab_store_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct eab_new *en = arg;
    json_t *used = NULL;
    int rc;

    if (*doc != NULL) {
        ut_err_set(err, "EAB key id \"%s\" exists", en->kid);
        return -EEXIST;
    }
    if ((rc = akm_update(en->k, "eab_usage", en->kid, read_fn, NULL, &used, err)) < 0)
        return rc;
    if (used) {
        json_decref(used);
        ut_err_set(err, "EAB key id \"%s\" was used before", en->kid);
        return -EEXIST;
    }
    *doc = json_pack("{s:s, s:I}", "hmac_key", en->hmac_key, "created_at", (json_int_t)akm_now());
    return *doc ? 1 : -ENOMEM;
}

static int kid_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > EAB_KID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* The requested kid (or a random one) into kid; 0 or replied 400/409. */
static int eab_kid(struct admin *a, struct http_req *r, char kid[EAB_KID_MAX + 1])
{
    size_t len = 0;
    const unsigned char *body = http_req_body(r, &len);
    const struct cfg_strmap *m = &a->k->cfg->server.eab_keys;
    struct ut_err e = {{0}};
    unsigned char rnd[12];
    json_t *j = NULL;
    const char *want = NULL;
    int ret = -1;

    if (len > 0 && (j = http_parse_json(body, len, &e)) == NULL) {
        http_reply_error(r, 400, "invalid_request", e.msg);
        return -1;
    }
    if (j && json_object_get(j, "kid") && !json_is_null(json_object_get(j, "kid"))) {
        want = str_of(j, "kid");
        if (want == NULL || !kid_ok(want)) {
            http_reply_error(r, 400, "invalid_request",
                             "kid: 1..64 characters of A-Z a-z 0-9 . _ -");
            goto out;
        }
        snprintf(kid, EAB_KID_MAX + 1, "%s", want);
    } else {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            http_reply_error(r, 500, "server_error", "no randomness");
            goto out;
        }
        memcpy(kid, "eab-", 4);
        ut_b64_encode(rnd, sizeof(rnd), kid + 4, 1);
    }
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->keys[i], kid) == 0) {
            http_reply_error(r, 409, "conflict", "this kid is in [server.eab_keys]");
            goto out;
        }
    }
    ret = 0;
out:
    json_decref(j);
    return ret;
}

static void new_eab_key(struct http_req *r, void *arg)
{
    struct admin *a = arg;
    char kid[EAB_KID_MAX + 1], b64[64];
    unsigned char key[EAB_KEY_BYTES];
    struct eab_new en = {.k = a->k, .kid = kid, .hmac_key = b64};
    struct ut_err e = {{0}};
    int rc;

    if (!authorized(a, r) || eab_kid(a, r, kid) < 0)
        return;
    if (RAND_bytes(key, sizeof(key)) != 1) {
        http_reply_error(r, 500, "server_error", "no randomness");
        return;
    }
    ut_b64_encode(key, sizeof(key), b64, 1);
    ut_memzero(key, sizeof(key));
    rc = akm_update(a->k, "eab_keys", kid, eab_store_fn, &en, NULL, &e);
    if (rc == -EEXIST) {
        http_reply_error(r, 409, "conflict", e.msg);
    } else if (rc < 0) {
        ut_log(UT_LOG_ERROR, MOD, "EAB key creation failed", UT_LF_S("kid", kid),
               UT_LF_S("error", e.msg));
        http_reply_error(r, 500, "server_error", "EAB key creation failed");
    } else {
        ut_log(UT_LOG_INFO, MOD, "EAB key created", UT_LF_S("kid", kid));
        http_add_header(r, "Cache-Control", "no-store");
        http_reply_json(r, 201, json_pack("{s:s, s:s}", "kid", kid, "hmac_key", b64));
    }
    ut_memzero(b64, sizeof(b64));
}

int akm_admin_routes(struct akamu *k, struct http_server *admin, struct ut_err *err)
{
    static const struct {
        int methods;
        const char *path;
        http_handler h;
    } routes[] = {
        {HTTP_GET, "/api/admin/accounts", list_accounts},
        {HTTP_GET, "/api/admin/accounts/{id}", get_account},
        {HTTP_GET, "/api/admin/orders", list_orders},
        {HTTP_GET, "/api/admin/orders/{id}", get_order},
        {HTTP_GET, "/api/admin/certificates", list_certificates},
        {HTTP_GET, "/api/admin/certificates/{serial}", get_certificate},
        {HTTP_POST, "/api/admin/certificates/{serial}/revoke", revoke},
        {HTTP_POST, "/api/admin/eab-keys", new_eab_key},
    };
    struct admin *a = &the_admin;
    int rc;

    memset(a, 0, sizeof(*a));
    a->k = k;
    if (k->cfg->admin.token_file) {
        if ((rc = read_token(k->cfg->admin.token_file, a->token_sha, err)) < 0)
            return rc;
        a->enabled = 1;
    } else {
        ut_log(UT_LOG_INFO, MOD, "admin API disabled (no [admin] token_file)");
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if ((rc = http_route(admin, routes[i].methods, routes[i].path, routes[i].h, a, err)) < 0)
            return rc;
    }
    return 0;
}
