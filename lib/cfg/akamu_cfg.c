/* akamu's config schema and cross-key checks. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"
#include "util/b64.h"

#define OFF(f) offsetof(struct akamu_cfg, f)
#define DAY    86400

static const struct cfg_section sections[] = {
    {"", CFG_NO_PRESENT, "listeners"},
    {"database", CFG_NO_PRESENT, "this node's own database"},
    {"ca", CFG_NO_PRESENT, "the issuing CA (keys stay on this node)"},
    {"server", CFG_NO_PRESENT, "ACME behaviour"},
    {"tls", CFG_NO_PRESENT, "HTTPS on the public ACME listener"},
    {"admin", CFG_NO_PRESENT, "the admin API on admin_listen_addr"},
    {"gossip", OFF(gossip.present), "replication; absent = single-node mode"},
    {"log", CFG_NO_PRESENT, "logging"},
};

static const struct cfg_key keys[] = {
    {"", "listen_addr", CFG_K_HOSTPORT, OFF(listen_addr), "0.0.0.0:8443", 0, 0, 0, NULL,
     "public ACME listener"},
    {"", "base_url", CFG_K_URL, OFF(base_url), NULL, 0, 0, 0, NULL,
     "external URL every ACME URL starts with; default: derived from listen_addr"},
    {"", "admin_listen_addr", CFG_K_HOSTPORT, OFF(admin_listen_addr), "127.0.0.1:8081", 0, 0, 0,
     NULL, "admin API and gossip listener (keep it off the public network)"},
    {"database", "url", CFG_K_DBURL, OFF(database.url), "sqlite://akamu.db", 0, 0, 0, NULL,
     "sqlite:///abs/path, sqlite://relative/path (to the config folder), or postgresql://..."},
    {"ca", "key_file", CFG_K_PATH, OFF(ca.key_file), "ca.key", 0, 0, 0, NULL,
     "CA private key (PEM); generated on first start when missing"},
    {"ca", "cert_file", CFG_K_PATH, OFF(ca.cert_file), "ca.pem", 0, 0, 0, NULL,
     "CA certificate (PEM); generated on first start when missing"},
    {"ca", "key_type", CFG_K_ENUM, OFF(ca.key_type), "ec:P-256", 0, 0, 0,
     "ec:P-256|ec:P-384|rsa:2048|rsa:3072|rsa:4096|ed25519", "CA key type when generating"},
    {"ca", "validity_days", CFG_K_INT, OFF(ca.validity_days), NULL, 90, 1, 3650, NULL,
     "lifetime of issued certificates"},
    {"ca", "ca_validity_years", CFG_K_INT, OFF(ca.ca_validity_years), NULL, 10, 1, 100, NULL,
     "lifetime of a generated CA certificate"},
    {"server", "external_account_required", CFG_K_BOOL, OFF(server.external_account_required), NULL,
     0, 0, 0, NULL, "newAccount must carry External Account Binding"},
    {"server", "order_expiry_secs", CFG_K_INT, OFF(server.order_expiry_secs), NULL, 7 * DAY, 60,
     365LL * DAY, NULL, "pending orders expire after this"},
    {"server", "authz_expiry_secs", CFG_K_INT, OFF(server.authz_expiry_secs), NULL, 30 * DAY, 60,
     365LL * DAY, NULL, "valid authorizations are reused until this"},
    {"server", "eab_keys", CFG_K_STRMAP, OFF(server.eab_keys), NULL, 0, 0, 0, NULL,
     "table: key id = base64url HMAC key (each usable once)"},
    {"server", "http_validation_port", CFG_K_INT, OFF(server.http_validation_port), NULL, 80, 1,
     65535, NULL, "port http-01 validation connects to"},
    {"server", "tls_alpn_validation_port", CFG_K_INT, OFF(server.tls_alpn_validation_port), NULL,
     443, 1, 65535, NULL, "port tls-alpn-01 validation connects to"},
    {"server", "dns_resolver_addr", CFG_K_STR, OFF(server.dns_resolver_addr), NULL, 0, 1, 300, NULL,
     "\"ip\" or \"ip:port\" of the resolver used for all validation lookups"},
    {"server", "caa_identities", CFG_K_STRV, OFF(server.caa_identities), NULL, 0, 0, 0, NULL,
     "issuer domain names CAA \"issue\" records may name for this CA; empty: no CAA check"},
    {"tls", "enabled", CFG_K_BOOL, OFF(tls.enabled), NULL, 0, 0, 0, NULL,
     "serve the ACME listener over HTTPS"},
    {"tls", "cert_file", CFG_K_PATH, OFF(tls.cert_file), NULL, 0, 0, 0, NULL,
     "PEM certificate chain for the ACME listener"},
    {"tls", "key_file", CFG_K_PATH, OFF(tls.key_file), NULL, 0, 0, 0, NULL,
     "PEM private key of cert_file"},
    {"admin", "token_file", CFG_K_PATH, OFF(admin.token_file), NULL, 0, 0, 0, NULL,
     "file holding the admin API bearer token (>= 32 characters); unset: admin API off"},
    {"gossip", "node_id", CFG_K_TOKEN, OFF(gossip.node_id), NULL, 0, 1, 255, NULL,
     "this node's gossip id; default: host:port of admin_listen_addr"},
    {"gossip", "wrapping_key_file", CFG_K_PATH, OFF(gossip.wrapping_key_file), NULL, 0, 0, 0, NULL,
     "base64 of 32 bytes; seals this node's private gossip keys at rest"},
    {"gossip", "peers", CFG_K_URLV, OFF(gossip.peers), NULL, 0, 0, 0, NULL,
     "admin base URLs of the other nodes"},
    {"gossip", "interval_secs", CFG_K_INT, OFF(gossip.interval_secs), NULL, 15, 1, DAY, NULL,
     "seconds between anti-entropy rounds"},
    {"gossip", "tombstone_ttl_secs", CFG_K_INT, OFF(gossip.tombstone_ttl_secs), NULL, 7 * DAY, 60,
     3650LL * DAY, NULL, "how long deletions are kept before GC"},
    {"gossip", "ownership_ttl_secs", CFG_K_INT, OFF(gossip.ownership_ttl_secs), NULL, 150, 5, DAY,
     NULL, "order ownership lease before another node may take over"},
    {"gossip", "allowed_node_ids", CFG_K_STRV, OFF(gossip.allowed_node_ids), NULL, 0, 0, 0, NULL,
     "when non-empty, only these node ids may join"},
    {"log", "level", CFG_K_ENUM, OFF(log.level), "info", 0, 0, 0, "debug|info|warn|error",
     "log level; env AKAMU_LOG_LEVEL overrides"},
};

static const struct cfg_schema schema = {
    "akamu", sections, sizeof(sections) / sizeof(sections[0]), keys, sizeof(keys) / sizeof(keys[0]),
};

/* "ip" or "ip:port" / "[v6]:port". */
static int check_resolver(const char *s)
{
    char host[256];
    int port;

    if (cfg_split_hostport(s, host, sizeof(host), &port) == 0)
        return port > 0 ? 0 : -EINVAL;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == ':' || (*p >= 'a' && *p <= 'f') ||
              (*p >= 'A' && *p <= 'F')))
            return -EINVAL;
    return 0;
}

static void cross_checks(struct akamu_cfg *c, const char *path, struct cfg_report *rep)
{
    if (c->tls.enabled && (c->tls.cert_file == NULL || c->tls.key_file == NULL))
        cfg_report_error(rep, path, 0, "[tls] enabled = true needs cert_file and key_file");
    if (c->server.dns_resolver_addr && check_resolver(c->server.dns_resolver_addr) < 0)
        cfg_report_error(rep, path, 0,
                         "key 'server.dns_resolver_addr': expected \"ip\" or \"ip:port\", "
                         "found \"%s\"",
                         c->server.dns_resolver_addr);
    for (size_t i = 0; i < c->server.eab_keys.n; i++) {
        const char *v = c->server.eab_keys.vals[i];
        unsigned char raw[512];
        size_t n = strlen(v), rawlen = 0;
        if (n == 0 || n > 600 || ut_b64_decode(v, n, raw, &rawlen, 1) < 0 || rawlen < 32)
            cfg_report_error(rep, path, 0,
                             "key 'server.eab_keys.%s': expected a base64url HMAC key of at "
                             "least 32 bytes",
                             c->server.eab_keys.keys[i]);
    }
    if (c->server.external_account_required && c->server.eab_keys.n == 0)
        cfg_report_warn(rep, path, 0,
                        "external_account_required = true but no [server.eab_keys]: no "
                        "account can be created until keys are added");
    if (c->admin_listen_addr && strcmp(c->admin_listen_addr, c->listen_addr) == 0)
        cfg_report_error(rep, path, 0, "admin_listen_addr must differ from listen_addr (%s)",
                         c->listen_addr);
}

int akamu_cfg_load(const char *path, unsigned flags, struct akamu_cfg **out, struct cfg_report *rep)
{
    struct akamu_cfg *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL)
        return -ENOMEM;
    rc = cfg_schema_load(&schema, path, flags, c, rep);
    if (rc == 0) {
        cross_checks(c, path, rep);
        if (rep && rep->n_errors)
            rc = -EINVAL;
    }
    if (rc < 0) {
        akamu_cfg_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void akamu_cfg_free(struct akamu_cfg *c)
{
    if (c == NULL)
        return;
    cfg_schema_free(&schema, c);
    free(c);
}

const struct cfg_schema *cfg_akamu_schema(void)
{
    return &schema;
}
