/*
 * ahdapa.h - the daemon's shared state, handed to every endpoint family.
 */
#ifndef AHDAPA_H
#define AHDAPA_H

#include "cfg/cfg.h"
#include "crdt/crdt.h"
#include "crypto/envelope.h"
#include "gossip/driver.h"
#include "gossip/engine.h"
#include "http/http.h"
#include "store/store.h"

struct ahdapa_auth;  /* auth.c and friends: users, sessions, cluster key */
struct ahdapa_oauth; /* token.c and friends: clients, scopes, tokens */

struct ahdapa {
    struct ahdapa_cfg *cfg; /* owned; replaced on SIGHUP reload */
    char node_id[CRY_ENV_ID_MAX + 1];
    char issuer[512]; /* effective issuer URL, no trailing '/' */
    struct store *store;
    struct http_server *http;
    struct cry_identity *identity; /* this node's gossip keys (node_keys) */
    struct crdt_replica *replica;  /* the replicated tables (cluster.c) */
    struct gsp_engine *engine;     /* NULL in single-node mode */
    struct gsp_driver *driver;     /* NULL in single-node mode */
    struct ahdapa_auth *auth;
    struct ahdapa_oauth *oauth;
};

/*
 * Replicated tables (declared in cluster.c; values are JSON text):
 *   clients           LWW        client_id -> client (secret stored hashed)
 *   scopes            LWW        scope name -> {"name","description","claims"}
 *   signing_keys      LWW        kid -> {"kid","node_id","iss","jwk":{public JWK},"expires"}
 *                                (expires: unix ms, 0 while it is its node's active key)
 *   revoked_sessions  grow-only  session id -> {"exp"} (eventual mode logouts)
 *   revoked_tokens    grow-only  jti -> {"exp"} (RFC 7009 revocation)
 *   cluster_keys      LWW        key_id -> {"key_id","set_at"} (ids only, never keys)
 *   cluster_nodes     LWW        the gossip membership (lib/gossip)
 */

/* cluster.c: replica, gossip engine and driver (routes on the main
 * listener; admin routes guarded by ahdapa_require_admin). */
int ahdapa_cluster_open(struct ahdapa *a, struct ut_err *err);
int ahdapa_cluster_routes(struct ahdapa *a, struct ut_err *err);
void ahdapa_cluster_reload(struct ahdapa *a, const struct ahdapa_cfg *n);
void ahdapa_cluster_close(struct ahdapa *a);

/* ui.c: the admin web UI at /ui/ (files embedded by scripts/embed-assets.py
 * into the generated ui_assets.c). */
struct ahd_asset {
    const char *name;         /* basename, e.g. "app.js" */
    const char *content_type; /* from the extension */
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted strong ETag */
};
extern const struct ahd_asset ahd_ui_assets[];
extern const size_t ahd_ui_n_assets;
int ahdapa_ui_routes(struct ahdapa *a, struct ut_err *err);

/* auth.c: users.toml, login/logout/session, cookies, CSRF, cluster key. */
int ahdapa_auth_init(struct ahdapa *a, struct ut_err *err);
int ahdapa_auth_routes(struct ahdapa *a, struct ut_err *err);
void ahdapa_auth_free(struct ahdapa *a);
/* Returns 1 when r carries a valid session of a user in group "admins"
 * (and, for a state-changing method, an X-CSRF-Token equal to the
 * session's csrf_token); otherwise replies 401 or 403 itself and returns 0. */
int ahdapa_require_admin(struct ahdapa *a, struct http_req *r);
/* `ahdapa hash-password`: reads a password on stdin, prints its argon2id
 * PHC string. Returns the process exit status. */
int ahdapa_hash_password_main(void);
/* Reads the cluster key stored by PUT /api/admin/keys/cluster (node-local
 * table auth_keys) as a node-key wrapping key, for main.c before
 * gsp_nodekey_load. Returns 1 and fills out when one is stored, 0 when
 * none is (out cleared), negative on a store error. */
struct gsp_wrapkey;
int ahdapa_auth_wrapkey(struct store *s, struct gsp_wrapkey *out);
/* keys.c: the key this node's secrets at rest (gossip node keys, token
 * signing key) are sealed under now: the stored cluster key, else [gossip]
 * wrapping_key_file when set, else none (they stay in clear). db: a write
 * job's connection (sees the job's transaction) or NULL for this thread's
 * reader. 1 and w filled, 0 when there is none (w cleared), negative with
 * err set (store error, unreadable key file). Clear w with gsp_wrapkey_clear. */
int ahdapa_wrapkey_current(struct ahdapa *a, sqlite3 *db, struct gsp_wrapkey *w,
                           struct ut_err *err);

/* ---- auth internals (auth.c, users.c, session.c, keys.c) ---- */

/* session.c: sealed session cookies (no store, no HTTP: fuzzed alone).
 * cookie = base64url(version 1 || key_id(8) || nonce(12) || AES-256-GCM
 * ciphertext of JSON {sid,sub,groups,csrf,iat,exp} || tag(16)), AAD =
 * AHD_COOKIE_NAME || version || key_id. The AES key is HMAC-SHA256(raw key,
 * "ahdapa session cookie v1"); key_id = SHA-256("ahdapa session key id v1"
 * || raw key)[0..8). */
#define AHD_COOKIE_NAME  "ahdapa_session"
#define AHD_COOKIE_MAX   4096 /* encoded length cap, both ways */
#define AHD_SESSION_SECS (8 * 3600)
#define AHD_KEY_BYTES    32
#define AHD_KID_BYTES    8
#define AHD_SID_MAX      64
#define AHD_USERNAME_MAX 128
#define AHD_CSRF_MAX     64
#define AHD_GROUPS_MAX   32
#define AHD_GROUP_MAX    128

struct ahd_key {
    uint8_t aes[AHD_KEY_BYTES]; /* derived cookie key */
    uint8_t kid[AHD_KID_BYTES];
    char kid_hex[2 * AHD_KID_BYTES + 1];
    int set;
};
struct ahd_session {
    char sid[AHD_SID_MAX + 1];
    char sub[AHD_USERNAME_MAX + 1];
    char csrf[AHD_CSRF_MAX + 1];
    char groups[AHD_GROUPS_MAX][AHD_GROUP_MAX + 1];
    size_t n_groups;
    int64_t iat, exp; /* unix seconds */
};
void ahd_key_init(struct ahd_key *k, const uint8_t raw[AHD_KEY_BYTES]);
void ahd_key_clear(struct ahd_key *k);
/* Fresh sid and csrf (random), iat = now, exp = now + AHD_SESSION_SECS. */
int ahd_session_new(struct ahd_session *s, const char *sub, const char *const *groups,
                    size_t n_groups, int64_t now, struct ut_err *err);
int ahd_session_has_group(const struct ahd_session *s, const char *group);
/* Writes the NUL-terminated cookie value into out[outlen]. */
int ahd_cookie_seal(const struct ahd_key *k, const struct ahd_session *s, char *out, size_t outlen,
                    struct ut_err *err);
/* Opens a cookie value with whichever of keys[0..n) (entries with set == 0
 * skipped) has its key_id. Errors: -EINVAL malformed, -ENOKEY no such key
 * here, -EBADMSG authentication failed or bad payload, -ETIMEDOUT expired
 * (exp <= now). *out is filled only on success. */
int ahd_cookie_open(const struct ahd_key *const *keys, size_t n, const char *cookie, int64_t now,
                    struct ahd_session *out, struct ut_err *err);

/* users.c: the static users file. */
struct ahd_users;
/* path NULL: no users (every login fails). Errors name file:line. */
int ahd_users_load(const char *path, struct ahd_users **out, struct ut_err *err);
void ahd_users_free(struct ahd_users *u);
/* 1 when username/password match (argon2id); 0 otherwise (an unknown user
 * costs the same time as a wrong password). groups and n_groups are borrowed. */
int ahd_users_verify(const struct ahd_users *u, const char *username, const char *password,
                     const char *const **groups, size_t *n_groups);

/* keys.c: key ring storage and PUT /api/admin/keys/cluster. */
int ahd_keys_load(struct ahdapa *a, struct ahd_key *local, struct ahd_key *cluster,
                  struct ut_err *err);
int ahd_keys_routes(struct ahdapa *a, struct ut_err *err);
/* auth.c: swaps in a new cluster key (under the ring's lock). */
void ahd_auth_set_cluster_key(struct ahdapa *a, const struct ahd_key *k);

/* oauth.c and friends: admin API for clients and scopes, /token, /jwks,
 * /introspect, /revoke, discovery documents. */
int ahdapa_oauth_init(struct ahdapa *a, struct ut_err *err);
int ahdapa_oauth_routes(struct ahdapa *a, struct ut_err *err);
void ahdapa_oauth_free(struct ahdapa *a);

/* ---- oauth internals, shared by oauth.c clients.c scopes.c token.c
 * jwt.c jwks.c introspect.c discovery.c ---- */
struct evp_pkey_st;

#define AHDAPA_KID_MAX  64
#define AHDAPA_JWT_MAX  8192 /* longest token accepted by the parser */
#define AHDAPA_TTL_DEF  3600 /* access token lifetime (s) unless the client says */
#define AHDAPA_TTL_MAX  86400
#define AHDAPA_NAME_MAX 128 /* client ids, scope names, claim names */

/* An ES256 key this node signs access tokens with (jwks.c). A signer is
 * never freed while the process serves: after a rotation a worker may still
 * be signing with the one it loaded. Each keeps the one it replaced
 * (older); ahdapa_signing_key_free releases them all at shutdown. */
struct ahdapa_signer {
    struct evp_pkey_st *key; /* private, owned */
    char kid[AHDAPA_KID_MAX];
    struct ahdapa_signer *older;
};

struct ahdapa_oauth {
    struct ahdapa *a;
    /* The active signer: stored by jwks.c only (start, rotation), loaded
     * once per token by workers through ahdapa_signer(). */
    _Atomic(struct ahdapa_signer *) signer;
};

/* jwt.c: compact JWS with ES256 only (no other alg is accepted). */
struct ahdapa_jwt {
    json_t *header;          /* owned, a JSON object */
    json_t *claims;          /* owned, a JSON object */
    const char *signed_part; /* "header.payload" inside the parsed text */
    size_t signed_len;
    unsigned char sig[64]; /* r || s */
};
/* Parses a compact JWS: three base64url parts, header and payload JSON
 * objects (duplicate keys refused), alg "ES256", no "crit", a 64-byte
 * signature, at most AHDAPA_JWT_MAX bytes. Does not verify. 0 or -EINVAL
 * (err says why); on error out holds nothing to free. */
int ahdapa_jwt_parse(const char *tok, size_t len, struct ahdapa_jwt *out, struct ut_err *err);
void ahdapa_jwt_clear(struct ahdapa_jwt *j);
/* Signs header.claims with key (P-256) using a per-thread signing context;
 * returns the malloc'd compact token or NULL with err set. */
char *ahdapa_jwt_sign_es256(struct evp_pkey_st *key, const json_t *header, const json_t *claims,
                            struct ut_err *err);
/* 0 when j's signature verifies under pub (P-256), else -EBADMSG (or
 * -ENOMEM/-EIO). Uses a per-thread context cached for pub. */
int ahdapa_jwt_verify_es256(struct evp_pkey_st *pub, const struct ahdapa_jwt *j);
/* SHA-256 through a per-thread digest context. 0 or -EIO. */
int ahdapa_sha256(const void *p, size_t n, unsigned char out[32]);
/* A new P-256 key pair, or NULL. */
struct evp_pkey_st *ahdapa_p256_generate(void);
/* The public JWK {"kty","crv","x","y","kid","use","alg"} of key. */
json_t *ahdapa_jwk_public(struct evp_pkey_st *key, const char *kid);
/* A P-256 public key from a JWK (kty EC, crv P-256, 32-byte x and y on the
 * curve), or NULL with err set. */
struct evp_pkey_st *ahdapa_jwk_to_pkey(const json_t *jwk, struct ut_err *err);
/* kid = base64url(first 8 bytes of SHA-256(node_id || SEC1 public point)). */
int ahdapa_jwk_kid(const char *node_id, struct evp_pkey_st *key, char kid[AHDAPA_KID_MAX]);
/* Frees this thread's cached contexts (workers do it at exit by themselves). */
void ahdapa_jwt_thread_cleanup(void);
void ahdapa_pkey_free(struct evp_pkey_st *key);

/* jwks.c: the node's signing key (oauth_active_key, migration 5; sealed
 * like the node keys), GET /jwks, POST /api/admin/keys/signing/rotate. */
int ahdapa_signing_key_init(struct ahdapa *a, struct ut_err *err);
int ahdapa_jwks_routes(struct ahdapa *a, struct ut_err *err);
/* The active signer (an atomic load; no lock). Valid until shutdown. */
const struct ahdapa_signer *ahdapa_signer(struct ahdapa *a);
/* Re-seals the stored signing key from old_key (NULL: in clear) to new_key
 * (NULL: clear), as gsp_nodekey_rewrap does for the node keys; a nested
 * store_write when called from a write job. Idempotent; 0 when no key is
 * stored yet; -EACCES when it is sealed under a third key. */
int ahdapa_signing_key_rewrap(struct ahdapa *a, const struct gsp_wrapkey *old_key,
                              const struct gsp_wrapkey *new_key, struct ut_err *err);
/* Frees every signer (the active one and all it replaced). Call after the
 * HTTP workers have stopped, before ahdapa_oauth_free. */
void ahdapa_signing_key_free(struct ahdapa *a);
/* The public key of kid (any node's, from signing_keys) and the issuer it
 * signs for, through a per-thread cache checked against the replica's
 * generation. The key is owned by the cache (valid until the next call on
 * this thread). 0, -ENOENT (unknown or expired kid), -EINVAL. */
int ahdapa_verify_key(struct ahdapa *a, const char *kid, struct evp_pkey_st **key,
                      const char **iss);

/* clients.c / scopes.c: admin API; value helpers. */
int ahdapa_clients_routes(struct ahdapa *a, struct ut_err *err);
int ahdapa_scopes_routes(struct ahdapa *a, struct ut_err *err);
/* The stored client document (json_loads of the clients row), read on
 * this thread's reader; NULL when absent. */
json_t *ahdapa_client_get(struct ahdapa *a, const char *client_id);
/* 1 when s is a valid scope token (RFC 6749 §3.3 NQCHAR, 1..AHDAPA_NAME_MAX). */
int ahdapa_scope_token_ok(const char *s, size_t n);
/* Admin reply helper: 400 {"error":"invalid_request","error_description":...}. */
void ahdapa_reply_bad(struct http_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Signs input[0..len) ("base64url(header).base64url(payload)") with key
 * through this thread's signing context and writes the base64url r || s
 * (86 characters and a NUL) to sig. 0 or -ENOMEM / -EIO. */
int ahdapa_jwt_sign_input(struct evp_pkey_st *key, const char *input, size_t len, char sig[87]);

/* token.c: POST /token and client authentication shared with introspect.c.
 * Authenticates the client of a form request (client_secret_basic or
 * client_secret_post; public clients with allow_public). Returns the client
 * document (caller json_decref) or NULL after replying the RFC 6749 §5.2
 * error itself. The document is shared with this thread's client cache:
 * read it, never modify it. */
json_t *ahdapa_client_auth(struct ahdapa *a, struct http_req *r, const struct http_form *f,
                           int allow_public);
/* Parses the form body of r (Content-Type application/x-www-form-urlencoded
 * required); NULL after replying invalid_request. */
struct http_form *ahdapa_form(struct http_req *r);
int ahdapa_token_routes(struct ahdapa *a, struct ut_err *err);

/* introspect.c: POST /introspect and POST /revoke. */
int ahdapa_introspect_routes(struct ahdapa *a, struct ut_err *err);

/* discovery.c: RFC 8414 and OpenID discovery documents. */
int ahdapa_discovery_routes(struct ahdapa *a, struct ut_err *err);

/* Endpoint families register their routes here. */
int ahdapa_health_routes(struct ahdapa *a, struct ut_err *err);
/* GET /api/gossip/kem-info. */
int ahdapa_gossip_routes(struct ahdapa *a, struct ut_err *err);

/* The schema migrations of ahdapa's database. */
extern const struct store_migration ahdapa_migrations[];
extern const int ahdapa_n_migrations;

#endif
