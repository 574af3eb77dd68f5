/* ahdapa's config schema and cross-key checks. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"

#define OFF(f) offsetof(struct ahdapa_cfg, f)
#define DAY    86400

static const struct cfg_section sections[] = {
    {"server", CFG_NO_PRESENT, "listener and identity"},
    {"database", CFG_NO_PRESENT, "this node's own database"},
    {"tls", OFF(tls.present), "HTTPS for the listener; trust anchors for peers"},
    {"users", CFG_NO_PRESENT, "static users"},
    {"gssapi", CFG_NO_PRESENT, "Kerberos / SPNEGO"},
    {"gossip", OFF(gossip.present), "replication; absent = single-node mode"},
    {"cluster", CFG_NO_PRESENT, "cluster behaviour"},
    {"log", CFG_NO_PRESENT, "logging"},
};

static const struct cfg_key keys[] = {
    {"server", "listen", CFG_K_HOSTPORT, OFF(server.listen), "0.0.0.0:8080", 0, 0, 0, NULL,
     "address the HTTP(S) listener binds"},
    {"server", "issuer", CFG_K_URL, OFF(server.issuer), NULL, 0, 0, 0, NULL,
     "issuer URL (RFC 8414); default: derived from listen and [tls]"},
    {"server", "realm", CFG_K_STR, OFF(server.realm), "ahdapa", 0, 1, 256, NULL,
     "realm name shown to users and in WWW-Authenticate"},
    {"database", "url", CFG_K_DBURL, OFF(database.url), "sqlite://ahdapa.db", 0, 0, 0, NULL,
     "sqlite:///abs/path, sqlite://relative/path (to the config folder), or postgresql://..."},
    {"tls", "cert_file", CFG_K_PATH, OFF(tls.cert_file), NULL, 0, 0, 0, NULL,
     "PEM certificate chain served by the listener"},
    {"tls", "key_file", CFG_K_PATH, OFF(tls.key_file), NULL, 0, 0, 0, NULL,
     "PEM private key of cert_file"},
    {"tls", "ca_file", CFG_K_PATH, OFF(tls.ca_file), NULL, 0, 0, 0, NULL,
     "PEM trust anchors for outbound HTTPS to peers; default: system store"},
    {"users", "static_file", CFG_K_PATH, OFF(users.static_file), NULL, 0, 0, 0, NULL,
     "users.toml with [[users]] username, password_hash (argon2id), groups"},
    {"gssapi", "keytab", CFG_K_PATH, OFF(gssapi.keytab), NULL, 0, 0, 0, NULL,
     "Kerberos keytab; a missing file disables GSSAPI"},
    {"gossip", "node_id", CFG_K_TOKEN, OFF(gossip.node_id), NULL, 0, 1, 255, NULL,
     "this node's gossip id; default: host:port of issuer, else of listen"},
    {"gossip", "wrapping_key_file", CFG_K_PATH, OFF(gossip.wrapping_key_file), NULL, 0, 0, 0, NULL,
     "base64 of 32 bytes; seals this node's private gossip keys at rest"},
    {"gossip", "peers", CFG_K_URLV, OFF(gossip.peers), NULL, 0, 0, 0, NULL,
     "base URLs of the other nodes"},
    {"gossip", "interval_secs", CFG_K_INT, OFF(gossip.interval_secs), NULL, 15, 1, DAY, NULL,
     "seconds between anti-entropy rounds"},
    {"gossip", "allowed_node_ids", CFG_K_STRV, OFF(gossip.allowed_node_ids), NULL, 0, 0, 0, NULL,
     "when non-empty, only these node ids may join"},
    {"gossip", "tombstone_ttl_secs", CFG_K_INT, OFF(gossip.tombstone_ttl_secs), NULL, 7 * DAY, 60,
     3650LL * DAY, NULL, "how long deletions are kept before GC"},
    {"cluster", "distributed_mode", CFG_K_ENUM, OFF(cluster.distributed_mode), "off", 0, 0, 0,
     "off|eventual", "eventual: logouts replicate through revoked_sessions"},
    {"log", "level", CFG_K_ENUM, OFF(log.level), "info", 0, 0, 0, "debug|info|warn|error",
     "log level; env AHDAPA_LOG_LEVEL overrides"},
};

static const struct cfg_schema schema = {
    "ahdapa",
    sections,
    sizeof(sections) / sizeof(sections[0]),
    keys,
    sizeof(keys) / sizeof(keys[0]),
};

int ahdapa_cfg_load(const char *path, unsigned flags, struct ahdapa_cfg **out,
                    struct cfg_report *rep)
{
    struct ahdapa_cfg *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL)
        return -ENOMEM;
    rc = cfg_schema_load(&schema, path, flags, c, rep);
    if (rc == 0 && c->tls.present && (c->tls.cert_file == NULL || c->tls.key_file == NULL)) {
        cfg_report_error(rep, path, 0, "[tls] needs both cert_file and key_file");
        rc = -EINVAL;
    }
    if (rc == 0 && c->gossip.present && c->gossip.peers.n > 0 && !c->tls.present)
        cfg_report_warn(rep, path, 0,
                        "[gossip] peers without [tls]: gossip is sealed end to end, but the "
                        "admin API and cookies travel in clear");
    if (rc < 0) {
        ahdapa_cfg_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ahdapa_cfg_free(struct ahdapa_cfg *c)
{
    if (c == NULL)
        return;
    cfg_schema_free(&schema, c);
    free(c);
}

const struct cfg_schema *cfg_ahdapa_schema(void)
{
    return &schema;
}
