/*
 * Users, sessions, CSRF and the admin guard:
 *   POST /api/auth/login    {"username","password"} -> session cookie
 *   POST /api/auth/logout   ends the session (X-CSRF-Token required)
 *   GET  /api/auth/session  the current user
 * Sessions are sealed cookies (session.c) under the cluster key once set,
 * else the node-local key (keys.c); both are accepted. Logout revokes the
 * session id: in the replicated revoked_sessions table with
 * distributed_mode = "eventual", else in the node-local table
 * local_revoked_sessions. Login attempts are limited per source address.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ahdapa.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD            "auth"
#define LOGIN_BODY_MAX 8192
/* Token bucket per source address: RL_BURST attempts at once, then one
 * every RL_REFILL_MS (10 a minute). RL_SLOTS addresses are tracked; a new
 * address takes a free or full bucket, else evicts by hash. */
#define RL_BURST     5
#define RL_REFILL_MS 6000
#define RL_SLOTS     1024
#define RL_ADDR_MAX  64

struct rl_slot {
    char addr[RL_ADDR_MAX];
    double tokens;
    int64_t last_ms;
};

struct ahdapa_auth {
    struct ahd_users *users;
    pthread_rwlock_t lock; /* guards local, cluster */
    struct ahd_key local, cluster;
    pthread_mutex_t rl_lock;
    struct rl_slot rl[RL_SLOTS];
    int eventual;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

int ahdapa_auth_init(struct ahdapa *a, struct ut_err *err)
{
    struct ahdapa_auth *au = ut_xcalloc(1, sizeof(*au));
    int rc;

    pthread_rwlock_init(&au->lock, NULL);
    pthread_mutex_init(&au->rl_lock, NULL);
    a->auth = au;
    au->eventual = a->cfg->cluster.distributed_mode &&
                   strcmp(a->cfg->cluster.distributed_mode, "eventual") == 0;
    if ((rc = ahd_users_load(a->cfg->users.static_file, &au->users, err)) < 0)
        return rc;
    if ((rc = ahd_keys_load(a, &au->local, &au->cluster, err)) < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "sessions ready",
           UT_LF_S("key", au->cluster.set ? au->cluster.kid_hex : "node-local"),
           UT_LF_S("revocation", au->eventual ? "eventual" : "off"));
    return 0;
}

void ahdapa_auth_free(struct ahdapa *a)
{
    struct ahdapa_auth *au = a->auth;

    if (au == NULL)
        return;
    ahd_users_free(au->users);
    ahd_key_clear(&au->local);
    ahd_key_clear(&au->cluster);
    pthread_rwlock_destroy(&au->lock);
    pthread_mutex_destroy(&au->rl_lock);
    free(au);
    a->auth = NULL;
}

void ahd_auth_set_cluster_key(struct ahdapa *a, const struct ahd_key *k)
{
    pthread_rwlock_wrlock(&a->auth->lock);
    a->auth->cluster = *k;
    pthread_rwlock_unlock(&a->auth->lock);
}

static void rl_reset(struct rl_slot *s, const char *addr, int64_t now)
{
    snprintf(s->addr, sizeof(s->addr), "%s", addr);
    s->tokens = RL_BURST;
    s->last_ms = now;
}

/* 0 when addr may try now; else the seconds to wait. */
static int rl_take(struct ahdapa_auth *au, const char *addr)
{
    struct rl_slot *s = NULL;
    unsigned h = 2166136261u;
    int64_t now = now_ms();
    int wait = 0;

    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    pthread_mutex_lock(&au->rl_lock);
    for (unsigned i = 0; i < 8 && s == NULL; i++) {
        struct rl_slot *c = &au->rl[(h + i) % RL_SLOTS];
        double t = c->tokens + (double)(now - c->last_ms) / RL_REFILL_MS;

        if (strcmp(c->addr, addr) == 0) {
            s = c;
        } else if (c->addr[0] == '\0' || t >= RL_BURST) {
            s = c; /* free, or full again: as good as new */
            rl_reset(s, addr, now);
        }
    }
    if (s == NULL) { /* all probed slots busy: evict the first */
        s = &au->rl[h % RL_SLOTS];
        rl_reset(s, addr, now);
    }
    s->tokens += (double)(now - s->last_ms) / RL_REFILL_MS;
    if (s->tokens > RL_BURST)
        s->tokens = RL_BURST;
    s->last_ms = now;
    if (s->tokens >= 1.0)
        s->tokens -= 1.0;
    else
        wait = (int)((1.0 - s->tokens) * RL_REFILL_MS / 1000) + 1;
    pthread_mutex_unlock(&au->rl_lock);
    return wait;
}

/* The value of our cookie in the Cookie header, copied into out. */
static int cookie_value(struct http_req *r, char *out, size_t outlen)
{
    const char *h = http_req_header(r, "Cookie");
    const size_t nl = sizeof(AHD_COOKIE_NAME) - 1;

    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        const char *end = strchr(h, ';');
        size_t n = end ? (size_t)(end - h) : strlen(h);

        if (n > nl && strncmp(h, AHD_COOKIE_NAME "=", nl + 1) == 0) {
            n -= nl + 1;
            if (n >= outlen)
                return -1;
            memcpy(out, h + nl + 1, n);
            out[n] = '\0';
            return 0;
        }
        h = end;
    }
    return -1;
}

/* 1 when sid was revoked (replicated or node-local), 0 if not, <0 on error. */
static int is_revoked(struct ahdapa *a, const char *sid, struct ut_err *err)
{
    sqlite3 *db = store_reader(a->store, err);
    sqlite3_stmt *st;
    uint8_t *v = NULL;
    size_t n = 0;
    int rc;

    if (db == NULL)
        return -EIO;
    rc = crdt_get(a->replica, db, "revoked_sessions", sid, &v, &n, err);
    free(v);
    if (rc == 0)
        return 1;
    if (rc != -ENOENT)
        return rc;
    st = store_stmt(a->store, db, "SELECT 1 FROM local_revoked_sessions WHERE sid = ?1", err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    ut_err_set(err, "local_revoked_sessions: %s", sqlite3_errmsg(db));
    return -EIO;
}

/* Fills s from the request's cookie. Returns 0, or -1 with err saying why
 * there is no valid session (nothing is replied). */
static int session_check(struct ahdapa *a, struct http_req *r, struct ahd_session *s,
                         struct ut_err *err)
{
    char cookie[AHD_COOKIE_MAX + 1];
    const struct ahd_key *ring[2];
    int rc;

    if (cookie_value(r, cookie, sizeof(cookie)) < 0) {
        ut_err_set(err, "no session cookie; log in first");
        return -1;
    }
    pthread_rwlock_rdlock(&a->auth->lock);
    ring[0] = &a->auth->cluster;
    ring[1] = &a->auth->local;
    rc = ahd_cookie_open(ring, 2, cookie, now_s(), s, err);
    pthread_rwlock_unlock(&a->auth->lock);
    ut_memzero(cookie, sizeof(cookie));
    if (rc == 0 && (rc = is_revoked(a, s->sid, err)) == 1) {
        ut_err_set(err, "session cookie: the session was ended (logout)");
        rc = -EKEYREVOKED;
    }
    if (rc < 0) {
        ut_log(UT_LOG_DEBUG, MOD, "session refused", UT_LF_S("error", err->msg),
               UT_LF_S("peer", http_req_peer(r)));
        return -1;
    }
    return 0;
}

/* Fills s from the request's cookie, or replies 401 and returns -1. */
static int current_session(struct ahdapa *a, struct http_req *r, struct ahd_session *s)
{
    struct ut_err err = {{0}};

    if (session_check(a, r, s, &err) < 0) {
        http_reply_error(r, 401, "unauthorized", err.msg);
        return -1;
    }
    return 0;
}

static int safe_method(struct http_req *r)
{
    return (http_req_method(r) & (HTTP_GET | HTTP_HEAD | HTTP_OPTIONS)) != 0;
}

/* 1 when the X-CSRF-Token header matches the session (constant time). */
static int csrf_ok(struct http_req *r, const struct ahd_session *s)
{
    const char *h = http_req_header(r, "X-CSRF-Token");
    size_t n = strlen(s->csrf);

    return h && strlen(h) == n && ut_ct_eq(h, s->csrf, n);
}

int ahdapa_require_admin(struct ahdapa *a, struct http_req *r)
{
    struct ahd_session s;

    if (current_session(a, r, &s) < 0)
        return 0;
    if (!ahd_session_has_group(&s, "admins")) {
        http_reply_error(r, 403, "forbidden", "the admin API needs a user in group 'admins'");
        return 0;
    }
    if (!safe_method(r) && !csrf_ok(r, &s)) {
        http_reply_error(r, 403, "csrf", "missing or wrong X-CSRF-Token header");
        return 0;
    }
    return 1;
}

static void set_cookie(struct ahdapa *a, struct http_req *r, const char *value, int max_age)
{
    char h[AHD_COOKIE_MAX + 128];

    snprintf(h, sizeof(h), "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s", AHD_COOKIE_NAME,
             value, max_age, a->cfg->tls.present ? "; Secure" : "");
    http_add_header(r, "Set-Cookie", h);
    http_add_header(r, "Cache-Control", "no-store");
    ut_memzero(h, sizeof(h));
}

static json_t *session_doc(const struct ahd_session *s)
{
    json_t *g = json_array();

    for (size_t i = 0; i < s->n_groups; i++)
        json_array_append_new(g, json_string(s->groups[i]));
    return json_pack("{s:s, s:o, s:s, s:I}", "username", s->sub, "groups", g, "csrf_token", s->csrf,
                     "expires_at", (json_int_t)s->exp);
}

/* Parses the login body into username/password (borrowed from *j). */
static int login_input(struct http_req *r, json_t **j, const char **user, const char **pw)
{
    const char *ct = http_req_header(r, "Content-Type");
    const unsigned char *body;
    struct ut_err err = {{0}};
    size_t len;

    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
        http_reply_error(r, 415, "invalid_request", "Content-Type must be application/json");
        return -1;
    }
    body = http_req_body(r, &len);
    if (len > LOGIN_BODY_MAX) {
        http_reply_error(r, 413, "invalid_request", "login body larger than 8192 bytes");
        return -1;
    }
    if ((*j = http_parse_json(body, len, &err)) == NULL) {
        http_reply_error(r, 400, "invalid_request", err.msg);
        return -1;
    }
    *user = json_string_value(json_object_get(*j, "username"));
    *pw = json_string_value(json_object_get(*j, "password"));
    if (*user == NULL || *pw == NULL || **user == '\0') {
        http_reply_error(r, 400, "invalid_request",
                         "\"username\" and \"password\" must be non-empty strings");
        return -1;
    }
    return 0;
}

static void login(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct ahd_session s;
    char cookie[AHD_COOKIE_MAX + 1], ra[16];
    struct ut_err err = {{0}};
    const char *user, *pw, *const *groups = NULL;
    size_t n_groups = 0;
    json_t *j = NULL;
    int wait, rc;

    if (login_input(r, &j, &user, &pw) < 0)
        goto out;
    /* Only well-formed attempts cost a token: the limit is on guessing. */
    if ((wait = rl_take(a->auth, http_req_peer(r))) > 0) {
        snprintf(ra, sizeof(ra), "%d", wait);
        http_add_header(r, "Retry-After", ra);
        http_reply_error(r, 429, "slow_down", "too many login attempts from this address");
        goto out;
    }
    if (!ahd_users_verify(a->auth->users, user, pw, &groups, &n_groups)) {
        ut_log(UT_LOG_INFO, MOD, "login failed", UT_LF_S("peer", http_req_peer(r)));
        http_reply_error(r, 401, "invalid_grant", "wrong user name or password");
        goto out;
    }
    pthread_rwlock_rdlock(&a->auth->lock);
    rc = ahd_session_new(&s, user, groups, n_groups, now_s(), &err);
    if (rc == 0)
        rc = ahd_cookie_seal(a->auth->cluster.set ? &a->auth->cluster : &a->auth->local, &s, cookie,
                             sizeof(cookie), &err);
    pthread_rwlock_unlock(&a->auth->lock);
    if (rc < 0) {
        ut_log(UT_LOG_ERROR, MOD, "cannot issue a session", UT_LF_S("error", err.msg));
        http_reply_error(r, 500, "server_error", "cannot issue a session");
        goto out;
    }
    ut_log(UT_LOG_INFO, MOD, "login", UT_LF_S("user", s.sub), UT_LF_S("peer", http_req_peer(r)));
    set_cookie(a, r, cookie, AHD_SESSION_SECS);
    ut_memzero(cookie, sizeof(cookie));
    http_reply_json(r, 200, session_doc(&s));
out:
    if (j) {
        json_t *p = json_object_get(j, "password");

        if (json_is_string(p)) /* scrub our copy of the password */
            ut_memzero((char *)json_string_value(p), json_string_length(p));
        json_decref(j);
    }
}

struct revoke_job {
    struct ahdapa *a;
    const struct ahd_session *s;
};

static int revoke_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct revoke_job *j = arg;
    char doc[64];
    sqlite3_stmt *st;
    int rc;

    if (j->a->auth->eventual) {
        snprintf(doc, sizeof(doc), "{\"exp\":%lld}", (long long)j->s->exp);
        return crdt_put(j->a->replica, db, "revoked_sessions", j->s->sid, doc, strlen(doc),
                        j->s->exp * 1000, err);
    }
    /* Expired rows are dropped here: the cookie itself stops working then. */
    st = store_stmt(j->a->store, db, "DELETE FROM local_revoked_sessions WHERE exp < ?1", err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_int64(st, 1, now_s());
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    st = store_stmt(j->a->store, db,
                    "INSERT OR IGNORE INTO local_revoked_sessions (sid, exp) VALUES (?1, ?2)", err);
    if (rc != SQLITE_DONE || st == NULL) {
        ut_err_set(err, "local_revoked_sessions: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    sqlite3_bind_text(st, 1, j->s->sid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->s->exp);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "local_revoked_sessions: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    return 0;
}

static void logout(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct ahd_session s;
    struct ut_err err = {{0}};
    struct revoke_job j = {.a = a, .s = &s};

    if (current_session(a, r, &s) < 0)
        return;
    if (!csrf_ok(r, &s)) {
        http_reply_error(r, 403, "csrf", "missing or wrong X-CSRF-Token header");
        return;
    }
    if (store_write(a->store, revoke_job, &j, &err) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "logout not recorded", UT_LF_S("error", err.msg));
        http_reply_error(r, 500, "server_error", "the logout could not be recorded");
        return;
    }
    ut_log(UT_LOG_INFO, MOD, "logout", UT_LF_S("user", s.sub));
    set_cookie(a, r, "", 0);
    http_reply_json(r, 200, json_pack("{s:s}", "status", "logged_out"));
}

/* GET /api/auth/session: 401 without a valid session, except with
 * ?optional=1 (the web UI's page-load probe, which must not fail in the
 * browser console): then 200 {"authenticated": false, "reason"}. */
static void session(struct http_req *r, void *arg)
{
    const char *opt = http_req_query(r, "optional");
    struct ut_err err = {{0}};
    struct ahd_session s;
    json_t *doc;

    http_add_header(r, "Cache-Control", "no-store");
    if (opt && strcmp(opt, "1") == 0) {
        if (session_check(arg, r, &s, &err) < 0) {
            http_reply_json(r, 200, json_pack("{s:b, s:s}", "authenticated", 0, "reason", err.msg));
            return;
        }
    } else if (current_session(arg, r, &s) < 0) {
        return;
    }
    doc = session_doc(&s);
    json_object_set_new(doc, "authenticated", json_true());
    http_reply_json(r, 200, doc);
}

int ahdapa_auth_routes(struct ahdapa *a, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(a->http, HTTP_POST, "/api/auth/login", login, a, err)) < 0 ||
        (rc = http_route(a->http, HTTP_POST, "/api/auth/logout", logout, a, err)) < 0 ||
        (rc = http_route(a->http, HTTP_GET | HTTP_HEAD, "/api/auth/session", session, a, err)) < 0)
        return rc;
    return ahd_keys_routes(a, err);
}
