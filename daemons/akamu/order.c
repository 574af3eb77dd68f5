/*
 * order.c - newOrder (RFC 8555 §7.4), the order resource (§7.1.3) and the
 * order state machine (§7.1.6): pending -> ready when every authorization
 * is valid; pending/ready -> invalid when one fails or the order expires.
 * finalize.c moves ready -> processing -> valid (or invalid).
 *
 * Identifiers are stored normalized (DNS names lower case with the "*."
 * of a wildcard kept, IP addresses in inet_ntop's canonical text), so
 * finalize compares them with the CSR's names as strings.
 *
 * Authorization reuse (§7.1.4 lets the server do it; Boulder does): a
 * valid authorization of the same account for the same identifier and
 * wildcard flag is reused when it outlives the new order (expires >= now +
 * order_expiry_secs). So a ready order never loses an authorization to
 * time, and the order's own expiry needs no capping.
 *
 * Another account's order answers 404 exactly like an absent one (as
 * Boulder does), so order ids cannot be probed.
 *
 * In a cluster the node that finalizes holds the order's lease (lease.c):
 * an order left "processing" is given up (invalid) as soon as that lease
 * is no longer live, and a pending order's reader takes over validations
 * its owner left "processing" (akm_authz_adopt).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "acme.h"
#include "ca.h"
#include "util/b64.h"
#include "util/log.h"

#define MOD "acme"

#define RAW_IDENTIFIERS_MAX 1000             /* array entries read before dedup */
#define TOKEN_BYTES         32               /* challenge token entropy */
#define GC_GRACE_SECS       (30 * 24 * 3600) /* pending objects kept past expiry */
#define STALE_ISSUE_SECS    300              /* a "processing" order older than this died */

struct ident {
    char type[4];                 /* "dns" | "ip" */
    char value[AKM_NAME_MAX + 1]; /* normalized; "*." kept for wildcards */
    int wildcard;
    char authz[AKM_ID_LEN + 1]; /* a reusable valid authorization, or "" */
    int64_t authz_expires;
    int64_t authz_min; /* reuse only authorizations living at least this long */
};

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t num(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static int is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* A member given with a value other than null. */
static int present(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    return v && !json_is_null(v);
}

/* ---- identifiers ---- */

static int ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Lower-cases the DNS name in (length n) into out[AKM_NAME_MAX + 1] and
 * checks it: LDH labels of 1..63 characters without a leading or trailing
 * '-', "--" at positions 3-4 only in "xn--" (punycode; other R-LDH labels
 * are reserved, RFC 5890 §2.3.1), at least two labels after an optional
 * "*." first label, at most AKM_NAME_MAX characters, no trailing dot, and
 * a last label not all digits (so no IPv4 literal). NULL when valid, else
 * why not. */
static const char *dns_check(const char *in, size_t n, char *out, int *wildcard)
{
    const char *name = out;
    size_t i, start, labels = 0, digits = 0;

    *wildcard = 0;
    if (n == 0)
        return "empty DNS name";
    if (n > AKM_NAME_MAX)
        return "DNS name longer than 253 characters";
    for (i = 0; i < n; i++)
        out[i] = in[i] >= 'A' && in[i] <= 'Z' ? (char)(in[i] - 'A' + 'a') : in[i];
    out[n] = '\0';
    if (n >= 2 && out[0] == '*' && out[1] == '.') {
        *wildcard = 1;
        name += 2;
    }
    if (out[n - 1] == '.')
        return "DNS name ends with a dot";
    for (i = 0, start = 0;; i++) {
        char c = name[i];

        if (c == '.' || c == '\0') {
            size_t len = i - start;
            const char *l = name + start;

            if (len == 0)
                return "empty label in DNS name";
            if (len > 63)
                return "DNS label longer than 63 characters";
            if (l[0] == '-' || l[len - 1] == '-')
                return "DNS label starts or ends with '-'";
            if (len >= 4 && l[2] == '-' && l[3] == '-' && !(l[0] == 'x' && l[1] == 'n'))
                return "DNS label with \"--\" in positions 3-4 that is not \"xn--\" (reserved)";
            labels++;
            digits = strspn(l, "0123456789") == len;
            if (c == '\0')
                break;
            start = i + 1;
            continue;
        }
        if (c == '*')
            return "a wildcard must be the whole first label (\"*.\")";
        if (!ldh(c))
            return "invalid character in DNS name (only letters, digits, '-' and a leading "
                   "\"*.\")";
    }
    if (labels < 2)
        return *wildcard ? "a wildcard needs at least two labels after \"*.\""
                         : "DNS name needs at least two labels";
    if (digits)
        return "DNS name whose last label is all digits (an IP address needs type \"ip\")";
    return NULL;
}

/* RFC 8738: an IPv4 or IPv6 literal (no zone, no brackets), rewritten in
 * inet_ntop's canonical text (RFC 5952 for IPv6). */
static const char *ip_check(const char *in, char *out, size_t outsz)
{
    unsigned char b[16];
    int af = strchr(in, ':') ? AF_INET6 : AF_INET;

    if (inet_pton(af, in, b) != 1)
        return af == AF_INET6 ? "not an IPv6 address" : "not an IPv4 address";
    if (af == AF_INET && (b[0] == 0 || b[0] >= 224))
        return "unspecified, multicast or reserved IPv4 address";
    if (af == AF_INET6) {
        static const unsigned char zero[16];

        if (memcmp(b, zero, 16) == 0 || b[0] == 0xff)
            return "unspecified or multicast IPv6 address";
    }
    if (inet_ntop(af, b, out, (socklen_t)outsz) == NULL)
        return "IP address cannot be rendered";
    return NULL;
}

/* A problem of one identifier (RFC 8555 §6.7.1 subproblem shape). */
static json_t *ident_problem(const char *type, const char *id_type, const char *value,
                             const char *why)
{
    json_t *p = akm_problem_new(type, 400, "%s \"%.260s\": %s", id_type, value, why);

    if (p)
        json_object_set_new(p, "identifier",
                            json_pack("{s:s, s:s}", "type", id_type, "value", value));
    return p;
}

/* One problem for the whole request: the only subproblem itself, or a
 * problem carrying them all, typed like them when they agree. */
static json_t *collect_problems(json_t *subs)
{
    size_t n = json_array_size(subs), i;
    const char *type = str(json_array_get(subs, 0), "type");
    json_t *p, *s;

    if (n == 1)
        return json_incref(json_array_get(subs, 0));
    json_array_foreach(subs, i, s)
    {
        if (!is(str(s, "type"), type))
            type = AKM_PROBLEM_NS "malformed";
    }
    p = akm_problem_new(type + strlen(AKM_PROBLEM_NS), 400,
                        "%zu identifiers are not acceptable; first: %s", n,
                        str(json_array_get(subs, 0), "detail"));
    if (p)
        json_object_set(p, "subproblems", subs);
    return p;
}

/* Reads payload "identifiers" into ids[AKM_MAX_NAMES] (normalized,
 * duplicates dropped). 0, or -1 with *problem set (status in it). */
static int parse_identifiers(const json_t *payload, struct ident *ids, size_t *n, json_t **problem)
{
    const json_t *arr = json_object_get(payload, "identifiers"), *it;
    json_t *subs = json_array();
    size_t i, j;
    int rc = -1;

    *n = 0;
    *problem = NULL;
    if (subs == NULL)
        goto out;
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        *problem = akm_problem_new("malformed", 400,
                                   "\"identifiers\" must be a non-empty array of "
                                   "{\"type\", \"value\"} objects");
        goto out;
    }
    if (json_array_size(arr) > RAW_IDENTIFIERS_MAX) {
        *problem =
            akm_problem_new("malformed", 400, "more than %d identifiers", RAW_IDENTIFIERS_MAX);
        goto out;
    }
    json_array_foreach(arr, i, it)
    {
        const char *type = str(it, "type"), *value = str(it, "value"), *why;
        struct ident cur;
        size_t vlen = json_string_length(json_object_get(it, "value"));

        memset(&cur, 0, sizeof(cur));
        if (!json_is_object(it) || type == NULL || value == NULL) {
            *problem = akm_problem_new("malformed", 400,
                                       "identifiers[%zu]: not a {\"type\": string, "
                                       "\"value\": string} object",
                                       i);
            goto out;
        }
        if (strcmp(type, "dns") == 0 || strcmp(type, "ip") == 0) {
            why = vlen != strlen(value) ? "NUL byte in the value"
                  : type[0] == 'd'      ? dns_check(value, vlen, cur.value, &cur.wildcard)
                                        : ip_check(value, cur.value, sizeof(cur.value));
        } else {
            if (json_array_append_new(subs, ident_problem("unsupportedIdentifier", type, value,
                                                          "identifier type not supported "
                                                          "(\"dns\" and \"ip\" are)")) < 0)
                goto out;
            continue;
        }
        if (why) {
            if (json_array_append_new(subs, ident_problem("rejectedIdentifier", type, value, why)) <
                0)
                goto out;
            continue;
        }
        snprintf(cur.type, sizeof(cur.type), "%s", type);
        for (j = 0; j < *n; j++) {
            if (strcmp(ids[j].type, cur.type) == 0 && strcmp(ids[j].value, cur.value) == 0)
                break;
        }
        if (j < *n)
            continue; /* a duplicate */
        if (*n == AKM_MAX_NAMES) {
            *problem = akm_problem_new("malformed", 400, "more than %d distinct identifiers",
                                       AKM_MAX_NAMES);
            goto out;
        }
        ids[(*n)++] = cur;
    }
    if (json_array_size(subs) > 0) {
        *problem = collect_problems(subs);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0 && *problem == NULL)
        *problem = akm_problem_new("serverInternal", 500, "out of memory");
    json_decref(subs);
    return rc;
}

/* ---- authorization reuse ---- */

/* The authorization's "reuse" member, indexed (cluster.c): the account, the
 * identifier type and value, "*." kept for a wildcard. newOrder looks up
 * each identifier's candidates by it, so the cost does not grow with the
 * account's history. Authorizations stored before this member existed are
 * simply not reused (fresh ones are always correct). */
static int reuse_key(char *out, size_t n, const char *account, const struct ident *d)
{
    int w = snprintf(out, n, "%s %s %s", account, d->type, d->value);

    return w < 0 || (size_t)w >= n ? -1 : 0;
}

#define REUSE_KEY_MAX (AKM_ID_LEN + AKM_NAME_MAX + 8)

static int reuse_cb(const char *id, json_t *az, void *arg)
{
    struct ident *d = arg;
    int64_t exp = json_integer_value(json_object_get(az, "expires"));

    if (!is(str(az, "status"), "valid") || exp < d->authz_min || strlen(id) > AKM_ID_LEN ||
        exp <= d->authz_expires)
        return 0;
    snprintf(d->authz, sizeof(d->authz), "%s", id);
    d->authz_expires = exp;
    return 0;
}

/* Fills ids[i].authz with the account's longest-lived valid authorization
 * for each identifier that lives at least until min_expires. */
static int find_reusable(struct akamu *k, const char *account, struct ident *ids, size_t n,
                         int64_t min_expires, struct ut_err *err)
{
    char key[REUSE_KEY_MAX];

    for (size_t i = 0; i < n; i++) {
        ids[i].authz_min = min_expires;
        if (reuse_key(key, sizeof(key), account, &ids[i]) < 0)
            continue;
        if (akm_each(k, "authorizations", "reuse", key, NULL, 0, reuse_cb, &ids[i], err) < 0)
            return -EIO;
    }
    return 0;
}

/* ---- creation ---- */

static json_t *new_challenge(struct akamu *k, const char *authz, const char *account,
                             const char *type)
{
    unsigned char rnd[TOKEN_BYTES];
    char id[AKM_ID_LEN + 1], token[64];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    ut_b64_encode(rnd, sizeof(rnd), token, 1);
    akm_new_id(k, id);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "authz", authz, "account", account,
                     "type", type, "token", token, "status", "pending");
}

/* Adds a pending authorization for d and its challenges to keep (which
 * owns them) and p. Returns the authorization id (borrowed from keep) or
 * NULL. */
static const char *new_authz(struct akamu *k, const char *account, const char *order,
                             const struct ident *d, int64_t expires, json_t *keep,
                             struct akm_put *p, size_t *np)
{
    static const char *const dns_types[] = {"http-01", "dns-01", "tls-alpn-01", NULL};
    static const char *const wild_types[] = {"dns-01", NULL};
    static const char *const ip_types[] = {"http-01", "tls-alpn-01", NULL};
    const char *const *types = strcmp(d->type, "ip") == 0 ? ip_types
                               : d->wildcard              ? wild_types
                                                          : dns_types;
    int64_t gc = (expires + GC_GRACE_SECS) * 1000;
    char id[AKM_ID_LEN + 1], key[REUSE_KEY_MAX];
    json_t *az, *chs = json_array(), *ch;

    akm_new_id(k, id);
    if (chs == NULL || reuse_key(key, sizeof(key), account, d) < 0) {
        json_decref(chs);
        return NULL;
    }
    az = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:b, s:s, s:I, s:o, s:s}", "id", id, "account",
                   account, "order", order, "identifier", "type", d->type, "value",
                   d->wildcard ? d->value + 2 : d->value, "wildcard", d->wildcard, "status",
                   "pending", "expires", (json_int_t)expires, "challenges", chs, "reuse", key);
    if (az == NULL || json_array_append_new(keep, az) < 0)
        return NULL;
    p[(*np)++] = (struct akm_put){"authorizations", str(az, "id"), az, gc};
    for (size_t i = 0; types[i]; i++) {
        if ((ch = new_challenge(k, str(az, "id"), account, types[i])) == NULL ||
            json_array_append_new(keep, ch) < 0 ||
            json_array_append_new(chs, json_string(str(ch, "id"))) < 0)
            return NULL;
        p[(*np)++] = (struct akm_put){"challenges", str(ch, "id"), ch, gc};
    }
    return str(az, "id");
}

/* Writes the order, its new authorizations and their challenges in one
 * transaction. *out gets the order document. */
static int create_order(struct akamu *k, const char *account, const struct ident *ids, size_t n,
                        json_t **out, struct ut_err *err)
{
    int64_t now = akm_now(), expires = now + k->cfg->server.order_expiry_secs;
    json_t *keep = json_array(), *idents = json_array(), *authzs = json_array(), *order = NULL;
    struct akm_put *p = calloc(1 + n * 4, sizeof(*p));
    char id[AKM_ID_LEN + 1];
    size_t np = 1;
    int ready = 1, rc = -ENOMEM;

    *out = NULL;
    if (keep == NULL || idents == NULL || authzs == NULL || p == NULL)
        goto out;
    akm_new_id(k, id);
    for (size_t i = 0; i < n; i++) {
        const char *az = ids[i].authz;

        if (json_array_append_new(
                idents, json_pack("{s:s, s:s}", "type", ids[i].type, "value", ids[i].value)) < 0)
            goto out;
        if (az[0] == '\0') {
            ready = 0;
            if ((az = new_authz(k, account, id, &ids[i], expires, keep, p, &np)) == NULL)
                goto out;
        }
        if (json_array_append_new(authzs, json_string(az)) < 0)
            goto out;
    }
    order = json_pack("{s:s, s:s, s:s, s:I, s:O, s:O, s:I}", "id", id, "account", account, "status",
                      ready ? "ready" : "pending", "expires", (json_int_t)expires, "identifiers",
                      idents, "authorizations", authzs, "created_at", (json_int_t)now);
    if (order == NULL)
        goto out;
    p[0] = (struct akm_put){"orders", str(order, "id"), order, (expires + GC_GRACE_SECS) * 1000};
    if ((rc = akm_put_all(k, p, np, err)) < 0)
        goto out;
    *out = order;
    order = NULL;
out:
    if (rc == -ENOMEM)
        ut_err_set(err, "new order: out of memory");
    json_decref(order);
    json_decref(keep);
    json_decref(idents);
    json_decref(authzs);
    free(p);
    return rc;
}

static void new_order(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_ctx c;
    struct ut_err e = {{0}};
    struct ident *ids = NULL;
    json_t *problem = NULL, *order = NULL;
    char url[AKM_URL_MAX];
    size_t n = 0;

    if (akm_auth(k, r, AKM_AUTH_KID, &c) < 0)
        return;
    if (c.payload == NULL) {
        akm_problem(k, r, 400, "malformed", "newOrder needs a payload with \"identifiers\"");
        goto out;
    }
    if (present(c.payload, "notBefore") || present(c.payload, "notAfter")) {
        akm_problem(k, r, 400, "malformed", "notBefore/notAfter are not supported");
        goto out;
    }
    if ((ids = calloc(AKM_MAX_NAMES, sizeof(*ids))) == NULL) {
        akm_problem(k, r, 500, "serverInternal", "out of memory");
        goto out;
    }
    if (parse_identifiers(c.payload, ids, &n, &problem) < 0) {
        akm_problem_doc(k, r, (int)num(problem, "status"), problem);
        goto out;
    }
    if (find_reusable(k, c.account_id, ids, n, akm_now() + k->cfg->server.order_expiry_secs, &e) <
        0) {
        /* reuse is an optimization: fresh authorizations are always correct */
        ut_log(UT_LOG_WARN, MOD, "authorization reuse lookup failed", UT_LF_S("error", e.msg));
        for (size_t i = 0; i < n; i++)
            ids[i].authz[0] = '\0';
    }
    if (create_order(k, c.account_id, ids, n, &order, &e) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "storing a new order failed", UT_LF_S("error", e.msg));
        akm_problem(k, r, 500, "serverInternal", "the order could not be stored");
        goto out;
    }
    akm_url(k, url, "/acme/order/%s", str(order, "id"));
    akm_reply(k, r, 201, akm_order_render(k, order), url);
out:
    json_decref(order);
    free(ids);
    akm_ctx_clear(&c);
}

/* ---- the order resource ---- */

/* The status as of now: a pending or ready order past its expiry is
 * invalid even before that is stored. */
static const char *effective_status(const json_t *order, int64_t now)
{
    const char *st = str(order, "status");

    if ((is(st, "pending") || is(st, "ready")) && num(order, "expires") <= now)
        return "invalid";
    return st ? st : "invalid";
}

json_t *akm_order_render(struct akamu *k, const json_t *order)
{
    const char *id = str(order, "id"), *cert = str(order, "certificate");
    const char *st = effective_status(order, akm_now());
    json_t *doc, *azs = json_array(), *v;
    char url[AKM_URL_MAX], t[32];
    size_t i;

    if (id == NULL || azs == NULL) {
        json_decref(azs);
        return NULL;
    }
    json_array_foreach(json_object_get(order, "authorizations"), i, v)
    {
        akm_url(k, url, "/acme/authz/%s", json_string_value(v));
        json_array_append_new(azs, json_string(url));
    }
    akm_time_text(num(order, "expires"), t);
    akm_url(k, url, "/acme/order/%s/finalize", id);
    doc = json_pack("{s:s, s:s, s:O, s:o, s:s}", "status", st, "expires", t, "identifiers",
                    json_object_get(order, "identifiers"), "authorizations", azs, "finalize", url);
    if (doc == NULL)
        return NULL;
    if (json_object_get(order, "error"))
        json_object_set(doc, "error", json_object_get(order, "error"));
    if (is(st, "valid") && cert) {
        akm_url(k, url, "/acme/cert/%s", cert);
        json_object_set_new(doc, "certificate", json_string(url));
    }
    return doc;
}

/* An issuance that died: the order has been "processing" for longer than
 * any issuance takes, or the finalizing node's lease on it (taken with the
 * move to "processing") is no longer live under the same epoch: that node
 * can no longer store a certificate for it (finalize.c fences on the
 * lease), so nobody will. */
static int issuance_dead(struct akamu *k, const json_t *order, int64_t now)
{
    const char *by = str(order, "finalized_by");
    struct akm_lease l;

    if (num(order, "finalized_at") + STALE_ISSUE_SECS < now)
        return 1;
    if (by == NULL || !json_is_integer(json_object_get(order, "lease_epoch")) ||
        akm_lease_get(k, NULL, str(order, "id"), &l, NULL) < 0)
        return 0; /* an order from before the leases: the time limit only */
    return !akm_lease_live(&l, akm_lease_now_ms(k)) || strcmp(l.owner, by) != 0 ||
           l.epoch != (uint64_t)num(order, "lease_epoch");
}

struct settle {
    int64_t now;
    int dead;      /* the issuance of the order as read died */
    int64_t epoch; /* ... under this lease epoch */
};

/* Stores what time has decided: expiry of pending/ready orders, and an
 * order left "processing" by an issuance that died (a crash between
 * finalize's two writes) becomes invalid. */
static int settle_fn(json_t **doc, void *arg, struct ut_err *err)
{
    const struct settle *a = arg;
    int64_t now = a->now;
    const char *st = *doc ? str(*doc, "status") : NULL;

    (void)err;
    if (st && strcmp(effective_status(*doc, now), st) != 0) {
        json_object_set_new(*doc, "status", json_string("invalid"));
        return 1;
    }
    if (is(st, "processing") && a->dead && num(*doc, "lease_epoch") == a->epoch) {
        json_object_set_new(*doc, "status", json_string("invalid"));
        json_object_set_new(
            *doc, "error",
            akm_problem_new("serverInternal", 500, "issuance was interrupted; create a new order"));
        return 1;
    }
    return 0;
}

static int refresh(struct akamu *k, sqlite3 *db, const char *order_id, json_t **out,
                   struct ut_err *err);

/* Brings a just-read order up to date before it is shown or finalized.
 * A pending or ready order is also recomputed from its authorizations:
 * that heals a refresh lost to a crash, and catches a reused
 * authorization deactivated since (its refresh names another order). */
static void settle(struct akamu *k, json_t **order)
{
    struct settle a = {.now = akm_now()};
    const char *st = str(*order, "status");
    struct ut_err e = {{0}};
    json_t *res = NULL;
    int rc;

    if (is(st, "processing")) {
        a.dead = issuance_dead(k, *order, a.now);
        a.epoch = num(*order, "lease_epoch");
    }
    if (strcmp(effective_status(*order, a.now), st ? st : "") != 0 || a.dead)
        rc = akm_update(k, "orders", str(*order, "id"), settle_fn, &a, &res, &e);
    else if (is(st, "pending") || is(st, "ready"))
        rc = refresh(k, NULL, str(*order, "id"), &res, &e);
    else
        return;
    if (rc < 0) {
        /* rendering still shows the effective status */
        ut_log(UT_LOG_WARN, MOD, "updating an order failed", UT_LF_S("order", str(*order, "id")),
               UT_LF_S("error", e.msg));
        return;
    }
    if (res) {
        json_decref(*order);
        *order = res;
    }
}

json_t *akm_order_load(struct akamu *k, struct http_req *r, const struct akm_ctx *c, const char *id)
{
    json_t *o = id && strlen(id) <= AKM_ID_LEN ? akm_get(k, "orders", id) : NULL;

    if (o == NULL || !is(str(o, "account"), c->account_id) || !is(str(o, "id"), id)) {
        json_decref(o);
        akm_problem(k, r, 404, "malformed", "no order \"%.64s\" for this account", id ? id : "");
        return NULL;
    }
    settle(k, &o);
    return o;
}

/* A client may poll only the order: validations its owner left
 * "processing" are taken over here as from an authorization read. */
static void adopt_validations(struct akamu *k, const json_t *o)
{
    const json_t *v;
    size_t i;

    json_array_foreach(json_object_get(o, "authorizations"), i, v)
    {
        if (json_is_string(v))
            akm_authz_adopt(k, json_string_value(v));
    }
}

static void order_get(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    struct akm_ctx c;
    json_t *o;

    if (akm_auth_at(k, r, AKM_AUTH_KID, "orders", http_req_param(r, "id"), &c) < 0)
        return;
    if (!akm_require_post_as_get(k, r, &c))
        goto out;
    if ((o = akm_order_load(k, r, &c, http_req_param(r, "id"))) == NULL)
        goto out;
    if (is(str(o, "status"), "pending"))
        adopt_validations(k, o);
    /* §7.4: the client polls a processing order */
    if (is(str(o, "status"), "processing"))
        http_add_header(r, "Retry-After", "1");
    akm_reply(k, r, 200, akm_order_render(k, o), NULL);
    json_decref(o);
out:
    akm_ctx_clear(&c);
}

/* ---- the state machine after validation results ---- */

enum verdict { AZ_VALID, AZ_WAIT, AZ_FAILED };

static enum verdict authz_verdict(const json_t *az, int64_t now)
{
    const char *st = str(az, "status");

    if (az == NULL || num(az, "expires") <= now)
        return AZ_FAILED;
    if (is(st, "valid"))
        return AZ_VALID;
    if (is(st, "pending") || is(st, "processing"))
        return AZ_WAIT;
    return AZ_FAILED; /* invalid, deactivated, expired, revoked, unknown */
}

/* The order's "error" for a failed authorization: the error of its failed
 * challenge when there is one, else a generic unauthorized. */
static json_t *authz_error(struct akamu *k, const char *az_id, const json_t *az)
{
    const json_t *ident = json_object_get(az, "identifier"), *v;
    json_t *err = NULL;
    size_t i;

    json_array_foreach(json_object_get(az, "challenges"), i, v)
    {
        json_t *ch = akm_get(k, "challenges", json_string_value(v));

        if (ch && json_is_object(json_object_get(ch, "error")))
            err = json_deep_copy(json_object_get(ch, "error"));
        json_decref(ch);
        if (err)
            return err;
    }
    if (az == NULL)
        return akm_problem_new("serverInternal", 500, "authorization %s is missing", az_id);
    return akm_problem_new("unauthorized", 403, "authorization for %s \"%s\" is %s",
                           str(ident, "type") ? str(ident, "type") : "?",
                           str(ident, "value") ? str(ident, "value") : "?",
                           num(az, "expires") <= akm_now() ? "expired"
                           : str(az, "status")             ? str(az, "status")
                                                           : "unusable");
}

struct refresh {
    const char *target; /* "ready" | "invalid" */
    json_t *error;      /* for "invalid" */
};

static int refresh_fn(json_t **doc, void *arg, struct ut_err *err)
{
    struct refresh *a = arg;
    const char *st = *doc ? str(*doc, "status") : NULL;

    (void)err;
    if (is(a->target, "invalid") && (is(st, "pending") || is(st, "ready"))) {
        json_object_set_new(*doc, "status", json_string("invalid"));
        if (a->error)
            json_object_set(*doc, "error", a->error);
        return 1;
    }
    if (is(a->target, "ready") && is(st, "pending")) {
        json_object_set_new(*doc, "status", json_string("ready"));
        return 1;
    }
    return 0;
}

/* The authorizations are read outside the order's update: every caller has
 * committed its own authorization change before calling (or, with db, made
 * it in the same store job, whose reads see it), so the last of concurrent
 * callers sees all of them; and the transitions are monotonic
 * (pending -> ready -> invalid), which refresh_fn re-checks. Ready orders
 * are looked at too: a deactivated authorization invalidates them. db: the
 * store job's connection, or NULL (a reader; the update is a job of its
 * own). */
static json_t *get(struct akamu *k, sqlite3 *db, const char *tbl, const char *id)
{
    return db ? akm_get_in(k, db, tbl, id) : akm_get(k, tbl, id);
}

static int refresh(struct akamu *k, sqlite3 *db, const char *order_id, json_t **out,
                   struct ut_err *err)
{
    json_t *o = get(k, db, "orders", order_id), *v;
    struct refresh a = {0};
    int64_t now = akm_now();
    int all_valid = 1, rc = 0;
    size_t i;

    if (o == NULL) {
        ut_err_set(err, "order %s: not found", order_id);
        return -ENOENT;
    }
    if (!is(str(o, "status"), "pending") && !is(str(o, "status"), "ready"))
        goto out;
    json_array_foreach(json_object_get(o, "authorizations"), i, v)
    {
        const char *az_id = json_string_value(v);
        json_t *az = az_id ? get(k, db, "authorizations", az_id) : NULL;
        enum verdict vd = authz_verdict(az, now);

        if (vd == AZ_FAILED) {
            a.target = "invalid";
            a.error = authz_error(k, az_id ? az_id : "?", az);
        }
        all_valid &= vd == AZ_VALID;
        json_decref(az);
        if (a.target)
            break;
    }
    if (a.target == NULL && all_valid)
        a.target = "ready";
    if (a.target)
        rc = akm_update(k, "orders", order_id, refresh_fn, &a, out, err);
out:
    json_decref(a.error);
    json_decref(o);
    return rc;
}

int akm_order_refresh(struct akamu *k, const char *order_id, struct ut_err *err)
{
    return refresh(k, NULL, order_id, NULL, err);
}

int akm_order_refresh_in(struct akamu *k, sqlite3 *db, const char *order_id, struct ut_err *err)
{
    return refresh(k, db, order_id, NULL, err);
}

int akm_order_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(s, HTTP_POST, "/acme/new-order", new_order, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/order/{id}", order_get, k, err)) < 0 ||
        (rc = http_route(s, HTTP_POST, "/acme/order/{id}/finalize", akm_order_finalize, k, err)) <
            0)
        return rc;
    return 0;
}
