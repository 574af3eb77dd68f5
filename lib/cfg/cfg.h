/*
 * cfg.h - typed configuration for ahdapa and akamu.
 *
 * A daemon config is a plain struct filled from TOML through a schema: a
 * table of keys, each with a type, a default and a range. Loading checks
 * every key and collects every problem (not just the first) as lines of
 * the form
 *   FILE:LINE: key 'gossip.interval_secs': expected integer in 1..86400, found string "2"
 *   FILE:LINE: unknown key 'gossip.peer' (did you mean 'peers'?)
 * Unknown keys and sections are errors unless CFG_ALLOW_UNKNOWN is given,
 * when they become warnings. Relative paths resolve against the folder of
 * the config file. All strings in a loaded config are owned by it.
 */
#ifndef CFG_CFG_H
#define CFG_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define CFG_ALLOW_UNKNOWN 0x1u

/* Everything a load has to say: one problem per line in text. */
struct cfg_report {
    int n_errors;
    int n_warnings;
    struct ut_buf text; /* owned; free with cfg_report_free */
};

void cfg_report_init(struct cfg_report *r);
void cfg_report_free(struct cfg_report *r);

struct cfg_strv {
    char **v; /* owned */
    size_t n;
};

/* A TOML table of string values (e.g. EAB key id -> HMAC key). */
struct cfg_strmap {
    char **keys; /* owned */
    char **vals; /* owned */
    size_t n;
};

/* ---- ahdapa ---- */
struct ahdapa_cfg {
    char *path; /* the file loaded (absolute) */
    struct {
        char *listen; /* "host:port" */
        char *issuer; /* NULL: derived from listen and TLS at start */
        char *realm;
    } server;
    struct {
        char *url; /* sqlite:///abs/path (resolved), sqlite::memory:, postgresql://... */
    } database;
    struct {
        bool present; /* [tls] given: serve HTTPS */
        char *cert_file, *key_file, *ca_file;
    } tls;
    struct {
        char *static_file;
    } users;
    struct {
        char *keytab;
    } gssapi;
    struct {
        bool present;            /* no [gossip]: single-node mode */
        char *node_id;           /* NULL: derived from issuer / listen */
        char *wrapping_key_file; /* NULL: node keys in clear until a cluster key exists */
        struct cfg_strv peers;
        int64_t interval_secs;
        struct cfg_strv allowed_node_ids;
        int64_t tombstone_ttl_secs;
    } gossip;
    struct {
        char *distributed_mode; /* "off" | "eventual" */
    } cluster;
    struct {
        char *level; /* debug | info | warn | error */
    } log;
};

/* ---- akamu ---- */
struct akamu_cfg {
    char *path;
    char *listen_addr;       /* public ACME listener */
    char *base_url;          /* every URL in responses starts with it */
    char *admin_listen_addr; /* admin API + gossip; NULL: none */
    struct {
        char *url;
    } database;
    struct {
        char *key_file, *cert_file;
        char *key_type; /* ec:P-256 | ec:P-384 | rsa:2048 | rsa:3072 | rsa:4096 | ed25519 */
        int64_t validity_days;
        int64_t ca_validity_years;
    } ca;
    struct {
        bool external_account_required;
        int64_t order_expiry_secs;
        int64_t authz_expiry_secs;
        struct cfg_strmap eab_keys; /* kid -> base64url HMAC key */
        int64_t http_validation_port;
        int64_t tls_alpn_validation_port;
        char *dns_resolver_addr;        /* NULL: system resolver */
        struct cfg_strv caa_identities; /* RFC 8659 issuer domains; empty: no CAA check */
    } server;
    struct {
        bool enabled;
        char *cert_file, *key_file;
    } tls;
    struct {
        char *token_file; /* NULL: the ACME admin API answers 403 */
    } admin;
    struct {
        bool present;
        char *node_id;           /* NULL: derived from admin_listen_addr */
        char *wrapping_key_file; /* NULL: node keys stored in clear */
        struct cfg_strv peers;
        int64_t interval_secs;
        int64_t tombstone_ttl_secs;
        int64_t ownership_ttl_secs;
        struct cfg_strv allowed_node_ids;
    } gossip;
    struct {
        char *level;
    } log;
};

/* Load and check a config file. Returns 0 (warnings may still be in rep),
 * or a negative error with every problem in rep. On error *out is NULL.
 * rep must not be NULL (initialise it with cfg_report_init). */
int ahdapa_cfg_load(const char *path, unsigned flags, struct ahdapa_cfg **out,
                    struct cfg_report *rep);
void ahdapa_cfg_free(struct ahdapa_cfg *c);

int akamu_cfg_load(const char *path, unsigned flags, struct akamu_cfg **out,
                   struct cfg_report *rep);
void akamu_cfg_free(struct akamu_cfg *c);

/* Splits "host:port", "[v6]:port" or ":port" (host "" = all addresses).
 * host gets at most hostlen-1 bytes. 0 or -EINVAL. */
int cfg_split_hostport(const char *s, char *host, size_t hostlen, int *port);

/* Writes the schema (section, key, type, default, range, help) as a
 * Markdown table; docs/config.md is checked against it by a test. */
void cfg_schema_markdown(struct ut_buf *out, int which /* 0 ahdapa, 1 akamu */);

#endif
