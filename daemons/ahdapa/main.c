/*
 * ahdapa - OAuth 2.0 / OpenID Connect authorization server.
 *
 * Startup: config (-c FILE, else $AHDAPA_CONFIG, else /etc/ahdapa/ahdapa.toml)
 * -> store -> HTTP listener; then the main thread waits for signals:
 * SIGTERM/SIGINT stop gracefully, SIGHUP re-reads the config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ahdapa.h"
#include "gossip/nodeid.h"
#include "gossip/nodekey.h"
#include "util/log.h"
#include "util/sig.h"

#define DEFAULT_CONFIG "/etc/ahdapa/ahdapa.toml"
#define MOD            "ahdapa"

static void usage(FILE *f)
{
    fputs("usage: ahdapa [-c FILE] [--check-config] [--allow-unknown-keys]\n"
          "       ahdapa hash-password      (password on stdin; prints an argon2id hash)\n"
          "       ahdapa --version | --help\n"
          "  -c FILE               config file (default: $AHDAPA_CONFIG, else " DEFAULT_CONFIG ")\n"
          "  --check-config        validate the config and exit 0 (valid) or 1\n"
          "  --allow-unknown-keys  warn about unknown config keys instead of refusing\n",
          f);
}

static void apply_log_level(const struct ahdapa_cfg *c)
{
    enum ut_log_level lvl = UT_LOG_INFO;
    const char *env = getenv("AHDAPA_LOG_LEVEL");

    if (env && ut_log_level_parse(env, &lvl) == 0) {
        ut_log_set_level(lvl);
        return;
    }
    if (env)
        ut_logf(UT_LOG_WARN, MOD, "ignoring AHDAPA_LOG_LEVEL=\"%s\" (debug|info|warn|error)", env);
    if (ut_log_level_parse(c->log.level, &lvl) == 0)
        ut_log_set_level(lvl);
}

static int load(const char *path, unsigned flags, struct ahdapa_cfg **out)
{
    struct cfg_report rep;
    int rc;

    cfg_report_init(&rep);
    rc = ahdapa_cfg_load(path, flags, out, &rep);
    if (rep.text.len)
        fputs(rep.text.data, stderr);
    cfg_report_free(&rep);
    return rc;
}

/* The issuer: [server] issuer, else derived from the listen address and
 * whether TLS is on (a wildcard host becomes the machine's host name). */
static int effective_issuer(struct ahdapa *a, struct ut_err *err)
{
    char host[256];
    size_t n;
    int port;

    if (a->cfg->server.issuer) {
        snprintf(a->issuer, sizeof(a->issuer), "%s", a->cfg->server.issuer);
    } else {
        if (cfg_split_hostport(a->cfg->server.listen, host, sizeof(host), &port) < 0) {
            ut_err_set(err, "cannot derive the issuer from listen \"%s\"", a->cfg->server.listen);
            return -EINVAL;
        }
        if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
            if (gethostname(host, sizeof(host)) < 0)
                snprintf(host, sizeof(host), "localhost");
            host[sizeof(host) - 1] = '\0';
        }
        snprintf(a->issuer, sizeof(a->issuer), strchr(host, ':') ? "%s://[%s]:%d" : "%s://%s:%d",
                 a->cfg->tls.present ? "https" : "http", host, port);
    }
    n = strlen(a->issuer);
    while (n > 0 && a->issuer[n - 1] == '/')
        a->issuer[--n] = '\0';
    return 0;
}

static int start(struct ahdapa *a, struct ut_err *err)
{
    struct store_opts so = {
        .url = a->cfg->database.url,
        .migrations = ahdapa_migrations,
        .n_migrations = ahdapa_n_migrations,
    };
    struct http_server_opts ho = {
        .listen = a->cfg->server.listen,
        .cert_file = a->cfg->tls.present ? a->cfg->tls.cert_file : NULL,
        .key_file = a->cfg->tls.present ? a->cfg->tls.key_file : NULL,
        .server_name = "ahdapa",
    };
    char *node_id = a->node_id;
    struct gsp_wrapkey wrap;
    int created = 0, rc;

    if ((rc = effective_issuer(a, err)) < 0)
        return rc;
    if ((rc = store_open(&a->store, &so, err)) < 0)
        return rc;
    if (a->cfg->gossip.node_id)
        snprintf(node_id, sizeof(a->node_id), "%s", a->cfg->gossip.node_id);
    else if ((rc = gsp_node_id_default(a->issuer, a->cfg->server.listen, node_id,
                                       sizeof(a->node_id), err)) < 0)
        return rc;
    /* Node keys (and the token signing key, jwks.c) are sealed at rest
     * under the cluster key once one was set (PUT /api/admin/keys/cluster),
     * else under [gossip] wrapping_key_file when set (docs/operations.md). */
    if ((rc = ahdapa_wrapkey_current(a, NULL, &wrap, err)) < 0)
        return rc;
    rc =
        gsp_nodekey_load(a->store, node_id, wrap.id[0] ? &wrap : NULL, &a->identity, &created, err);
    gsp_wrapkey_clear(&wrap);
    if (rc < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "node identity", UT_LF_S("node_id", node_id),
           UT_LF_S("identity", created ? "generated" : "loaded"));
    if ((rc = ahdapa_cluster_open(a, err)) < 0 || (rc = ahdapa_auth_init(a, err)) < 0 ||
        (rc = ahdapa_oauth_init(a, err)) < 0)
        return rc;
    if ((rc = http_server_new(&a->http, &ho, err)) < 0)
        return rc;
    if ((rc = ahdapa_health_routes(a, err)) < 0 || (rc = ahdapa_gossip_routes(a, err)) < 0 ||
        (rc = ahdapa_cluster_routes(a, err)) < 0 || (rc = ahdapa_auth_routes(a, err)) < 0 ||
        (rc = ahdapa_oauth_routes(a, err)) < 0 || (rc = ahdapa_ui_routes(a, err)) < 0)
        return rc;
    if ((rc = http_server_start(a->http, err)) < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "ready", UT_LF_S("listen", a->cfg->server.listen),
           UT_LF_I("port", http_server_port(a->http)),
           UT_LF_S("tls", a->cfg->tls.present ? "on" : "off"));
    return 0;
}

static void reload(struct ahdapa *a, unsigned flags)
{
    struct ahdapa_cfg *n = NULL;

    if (load(a->cfg->path, flags, &n) < 0) {
        ut_logf(UT_LOG_ERROR, MOD, "config reload refused; keeping the running config");
        return;
    }
    /* Only settings that can change without a restart are taken from the
     * new file; listeners and the database stay as started. */
    apply_log_level(n);
    ahdapa_cluster_reload(a, n);
    ut_log(UT_LOG_INFO, MOD, "config reloaded", UT_LF_S("path", n->path));
    ahdapa_cfg_free(n);
}

int main(int argc, char **argv)
{
    struct ahdapa a = {0};
    struct ut_err err = {{0}};
    const char *path = NULL;
    unsigned flags = 0;
    int check = 0, rc = 1;

    if (argc == 2 && strcmp(argv[1], "hash-password") == 0)
        return ahdapa_hash_password_main();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--allow-unknown-keys") == 0) {
            flags |= CFG_ALLOW_UNKNOWN;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("ahdapa " AHDAPA_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ahdapa: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL)
        path = getenv("AHDAPA_CONFIG");
    if (path == NULL || *path == '\0')
        path = DEFAULT_CONFIG;

    if (load(path, flags, &a.cfg) < 0) {
        fprintf(stderr, "ahdapa: invalid configuration in %s\n", path);
        return 1;
    }
    if (check) {
        printf("ahdapa: configuration %s is valid\n", a.cfg->path);
        ahdapa_cfg_free(a.cfg);
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
    if (a.http) {
        http_server_stop(a.http);
        http_server_free(a.http);
    }
    ahdapa_oauth_free(&a);
    ahdapa_auth_free(&a);
    ahdapa_cluster_close(&a);
    cry_identity_free(a.identity);
    if (a.store)
        store_close(a.store);
    ahdapa_cfg_free(a.cfg);
    return rc;
}
