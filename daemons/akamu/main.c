/*
 * akamu - ACME (RFC 8555) certificate authority.
 *
 * Startup: config (-c FILE, else $AKAMU_CONFIG, else /etc/akamu/akamu.toml)
 * -> store -> HTTP listener; then the main thread waits for signals:
 * SIGTERM/SIGINT stop gracefully, SIGHUP re-reads the config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acme.h"
#include "akamu.h"
#include "ca.h"
#include "gossip/nodeid.h"
#include "nonce.h"
#include "validate.h"
#include "gossip/nodekey.h"
#include "util/log.h"
#include "util/sig.h"

#define DEFAULT_CONFIG "/etc/akamu/akamu.toml"
#define MOD            "akamu"

static void usage(FILE *f)
{
    fputs("usage: akamu [-c FILE] [--check-config] [--allow-unknown-keys]\n"
          "       akamu --version | --help\n"
          "  -c FILE               config file (default: $AKAMU_CONFIG, else " DEFAULT_CONFIG ")\n"
          "  --check-config        validate the config and exit 0 (valid) or 1\n"
          "  --allow-unknown-keys  warn about unknown config keys instead of refusing\n",
          f);
}

static void apply_log_level(const struct akamu_cfg *c)
{
    enum ut_log_level lvl = UT_LOG_INFO;
    const char *env = getenv("AKAMU_LOG_LEVEL");

    if (env && ut_log_level_parse(env, &lvl) == 0) {
        ut_log_set_level(lvl);
        return;
    }
    if (env)
        ut_logf(UT_LOG_WARN, MOD, "ignoring AKAMU_LOG_LEVEL=\"%s\" (debug|info|warn|error)", env);
    if (ut_log_level_parse(c->log.level, &lvl) == 0)
        ut_log_set_level(lvl);
}

static int load(const char *path, unsigned flags, struct akamu_cfg **out)
{
    struct cfg_report rep;
    int rc;

    cfg_report_init(&rep);
    rc = akamu_cfg_load(path, flags, out, &rep);
    if (rep.text.len)
        fputs(rep.text.data, stderr);
    cfg_report_free(&rep);
    return rc;
}

/* The ACME resources: on the public listener, and on the admin listener
 * where other nodes forward requests (forward.c). */
static int acme_routes(struct akamu *a, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = akm_acme_routes(a, s, err)) < 0 || (rc = akm_account_routes(a, s, err)) < 0 ||
        (rc = akm_order_routes(a, s, err)) < 0 || (rc = akm_authz_routes(a, s, err)) < 0 ||
        (rc = akm_cert_routes(a, s, err)) < 0)
        return rc;
    return 0;
}

/* The CA key and certificate: loaded, or generated on the first start. */
static int ca_open(struct akamu *a, struct ut_err *err)
{
    const struct akamu_cfg *c = a->cfg;
    struct akm_ca_opts o = {
        .key_file = c->ca.key_file,
        .cert_file = c->ca.cert_file,
        .key_type = c->ca.key_type,
        .ca_validity_years = (int)c->ca.ca_validity_years,
    };
    int rc;

    if ((rc = akm_ca_open(&o, &a->ca, err)) < 0) {
        ut_err_prefix(err, "[ca]");
        return rc;
    }
    ut_log(UT_LOG_INFO, MOD, "certificate authority", UT_LF_S("cert_file", c->ca.cert_file),
           UT_LF_S("state", akm_ca_generated(a->ca) ? "generated" : "loaded"),
           UT_LF_S("sha256", akm_ca_fingerprint_hex(a->ca)));
    return 0;
}

/* The validation pool; challenges a previous run left "processing" are
 * queued again once the ACME listener is up (see start). */
static int va_start(struct akamu *a, struct ut_err *err)
{
    const struct akamu_cfg *c = a->cfg;
    struct akm_va_opts o = {
        .resolver = c->server.dns_resolver_addr,
        .http_port = (int)c->server.http_validation_port,
        .tls_alpn_port = (int)c->server.tls_alpn_validation_port,
        .done = akm_va_done,
        .k = a,
    };

    const char **ids;
    int rc;

    if ((rc = akm_va_new(&a->va, &o, err)) < 0)
        return rc;
    if (c->server.caa_identities.n == 0)
        return 0;
    /* akm_va_set_caa copies a NULL-terminated list. */
    ids = calloc(c->server.caa_identities.n + 1, sizeof(*ids));
    if (ids == NULL) {
        ut_err_set(err, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < c->server.caa_identities.n; i++)
        ids[i] = c->server.caa_identities.v[i];
    rc = akm_va_set_caa(a->va, ids, err);
    free(ids);
    return rc;
}

/* base_url without its trailing '/', else derived from listen_addr. */
static int set_base(struct akamu *a, struct ut_err *err)
{
    const char *b = a->cfg->base_url;
    char host[256];
    int port, n;

    if (b) {
        n = snprintf(a->base, sizeof(a->base), "%s", b);
    } else {
        if (cfg_split_hostport(a->cfg->listen_addr, host, sizeof(host), &port) < 0) {
            ut_err_set(err, "listen_addr \"%s\": not host:port", a->cfg->listen_addr);
            return -EINVAL;
        }
        n = snprintf(a->base, sizeof(a->base), "%s://%s%s%s:%d",
                     a->cfg->tls.enabled ? "https" : "http", strchr(host, ':') ? "[" : "",
                     host[0] && strcmp(host, "0.0.0.0") != 0 ? host : "localhost",
                     strchr(host, ':') ? "]" : "", port);
    }
    if (n < 0 || (size_t)n >= sizeof(a->base)) {
        ut_err_set(err, "base_url: longer than %zu bytes", sizeof(a->base) - 1);
        return -ENAMETOOLONG;
    }
    while (n > 0 && a->base[n - 1] == '/')
        a->base[--n] = '\0';
    return 0;
}

static int start_listener(struct akamu *a, struct http_server **out, const char *listen, int tls,
                          int admin, const char *what, struct ut_err *err)
{
    struct http_server_opts ho = {
        .listen = listen,
        .cert_file = tls ? a->cfg->tls.cert_file : NULL,
        .key_file = tls ? a->cfg->tls.key_file : NULL,
        .server_name = "akamu",
    };
    int rc;

    if ((rc = http_server_new(out, &ho, err)) < 0)
        goto out;
    if ((rc = akamu_health_routes(a, *out, err)) < 0)
        goto out;
    if (admin && ((rc = akamu_gossip_routes(a, *out, err)) < 0 ||
                  (rc = akamu_cluster_routes(a, *out, err)) < 0 ||
                  (rc = akm_admin_routes(a, *out, err)) < 0))
        goto out;
    if ((rc = acme_routes(a, *out, err)) < 0)
        goto out;
    if ((rc = http_server_start(*out, err)) < 0)
        goto out;
    ut_log(UT_LOG_INFO, MOD, "listening", UT_LF_S("listener", what), UT_LF_S("listen", listen),
           UT_LF_I("port", http_server_port(*out)), UT_LF_S("tls", tls ? "on" : "off"));
out:
    if (rc < 0)
        ut_err_prefix(err, "%s listener %s", what, listen);
    return rc;
}

static int start(struct akamu *a, struct ut_err *err)
{
    struct store_opts so = {
        .url = a->cfg->database.url,
        .migrations = akamu_migrations,
        .n_migrations = akamu_n_migrations,
    };
    int rc;

    char *node_id = a->node_id;
    struct gsp_wrapkey wrap;
    int created = 0;

    if ((rc = store_open(&a->store, &so, err)) < 0)
        return rc;
    if (a->cfg->gossip.node_id)
        snprintf(node_id, sizeof(a->node_id), "%s", a->cfg->gossip.node_id);
    else if ((rc = gsp_node_id_default(NULL, a->cfg->admin_listen_addr, node_id, sizeof(a->node_id),
                                       err)) < 0)
        return rc;
    if (a->cfg->gossip.wrapping_key_file &&
        (rc = gsp_wrapkey_read_file(a->cfg->gossip.wrapping_key_file, &wrap, err)) < 0)
        return rc;
    rc = gsp_nodekey_load(a->store, node_id, a->cfg->gossip.wrapping_key_file ? &wrap : NULL,
                          &a->identity, &created, err);
    gsp_wrapkey_clear(&wrap);
    if (rc < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "node identity", UT_LF_S("node_id", node_id),
           UT_LF_S("identity", created ? "generated" : "loaded"));
    /* The CA first: it certifies the gossip keys (trust.c). */
    if ((rc = ca_open(a, err)) < 0 || (rc = akamu_cluster_open(a, node_id, err)) < 0)
        return rc;
    if ((rc = set_base(a, err)) < 0 || (rc = akm_nonces_new(&a->nonces, node_id, err)) < 0)
        return rc;
    snprintf(a->tag, sizeof(a->tag), "%s", akm_nonces_tag(a->nonces));
    if ((rc = akm_fwd_new(a, err)) < 0)
        return rc;
    if ((rc = va_start(a, err)) < 0)
        return rc;
    rc = start_listener(a, &a->acme, a->cfg->listen_addr, a->cfg->tls.enabled, 0, "acme", err);
    if (rc < 0)
        return rc;
    if (a->cfg->admin_listen_addr) {
        rc = start_listener(a, &a->admin, a->cfg->admin_listen_addr, 0, 1, "admin", err);
        if (rc < 0)
            return rc;
    }
    if ((rc = akm_authz_resume(a, err)) < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "ready", UT_LF_S("base_url", a->base));
    return 0;
}

static void reload(struct akamu *a, unsigned flags)
{
    struct akamu_cfg *n = NULL;

    if (load(a->cfg->path, flags, &n) < 0) {
        ut_logf(UT_LOG_ERROR, MOD, "config reload refused; keeping the running config");
        return;
    }
    /* Only settings that can change without a restart are taken from the
     * new file; listeners and the database stay as started. */
    apply_log_level(n);
    akamu_cluster_reload(a, n);
    ut_log(UT_LOG_INFO, MOD, "config reloaded", UT_LF_S("path", n->path));
    akamu_cfg_free(n);
}

int main(int argc, char **argv)
{
    struct akamu a = {0};
    struct ut_err err = {{0}};
    const char *path = NULL;
    unsigned flags = 0;
    int check = 0, rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--allow-unknown-keys") == 0) {
            flags |= CFG_ALLOW_UNKNOWN;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("akamu " AKAMU_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "akamu: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL)
        path = getenv("AKAMU_CONFIG");
    if (path == NULL || *path == '\0')
        path = DEFAULT_CONFIG;

    if (load(path, flags, &a.cfg) < 0) {
        fprintf(stderr, "akamu: invalid configuration in %s\n", path);
        return 1;
    }
    if (check) {
        printf("akamu: configuration %s is valid\n", a.cfg->path);
        akamu_cfg_free(a.cfg);
        return 0;
    }
    apply_log_level(a.cfg);
    if (ut_sig_block() < 0) {
        ut_logf(UT_LOG_ERROR, MOD, "cannot block signals");
        goto out;
    }
    if (start(&a, &err) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "startup failed", UT_LF_S("error", err.msg));
        goto out;
    }
    for (;;) {
        if (ut_sig_wait() == UT_SIG_STOP)
            break;
        reload(&a, flags);
    }
    ut_logf(UT_LOG_INFO, MOD, "shutting down");
    rc = 0;
out:
    /* Listeners stop first (no handler can submit a validation any more),
     * then the pool (its callbacks still write objects through the store),
     * then the rest. */
    if (a.acme)
        http_server_stop(a.acme);
    if (a.admin)
        http_server_stop(a.admin);
    akm_va_free(a.va);
    http_server_free(a.acme);
    http_server_free(a.admin);
    akamu_cluster_close(&a);
    akm_fwd_free(&a);
    akm_nonces_free(a.nonces);
    akm_ca_free(a.ca);
    cry_identity_free(a.identity);
    if (a.store)
        store_close(a.store);
    akamu_cfg_free(a.cfg);
    return rc;
}
