/* Unit tests for the typed config schema (lib/cfg/cfg.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg/cfg.h"

static char g_dir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/test-cfg-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The spec's demo node config (contrib/demo/cluster/node1.toml shape). */
static const char spec_node1[] = "[server]\n"
                                 "listen = \"127.0.0.1:8080\"\n"
                                 "issuer = \"https://127.0.0.1:8080\"\n"
                                 "\n"
                                 "[database]\n"
                                 "url = \"sqlite:///tmp/ahdapa-node1.db\"\n"
                                 "\n"
                                 "[users]\n"
                                 "static_file = \"users.toml\"\n"
                                 "\n"
                                 "[gssapi]\n"
                                 "keytab = \"/nonexistent/keytab\"\n"
                                 "\n"
                                 "[gossip]\n"
                                 "peers            = [\"https://127.0.0.1:8081\", "
                                 "\"https://127.0.0.1:8082\"]\n"
                                 "interval_secs    = 2\n"
                                 "allowed_node_ids = [\"127.0.0.1:8080\", \"127.0.0.1:8081\", "
                                 "\"127.0.0.1:8082\"]\n"
                                 "\n"
                                 "[cluster]\n"
                                 "distributed_mode = \"eventual\"\n"
                                 "\n"
                                 "[tls]\n"
                                 "cert_file = \"tls/cert.pem\"\n"
                                 "key_file = \"/abs/key.pem\"\n"
                                 "ca_file = \"tls/ca.pem\"\n";

static void test_ahdapa_spec_config(void **state)
{
    struct cfg_report rep;
    struct ahdapa_cfg *c = NULL;
    char want[128];
    const char *p;

    (void)state;
    cfg_report_init(&rep);
    p = write_file("node1.toml", spec_node1);
    assert_int_equal(ahdapa_cfg_load(p, 0, &c, &rep), 0);
    assert_int_equal(rep.n_errors, 0);
    assert_int_equal(rep.n_warnings, 0);
    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    assert_string_equal(c->server.issuer, "https://127.0.0.1:8080");
    assert_string_equal(c->database.url, "sqlite:///tmp/ahdapa-node1.db");
    snprintf(want, sizeof(want), "%s/users.toml", g_dir);
    assert_string_equal(c->users.static_file, want);
    snprintf(want, sizeof(want), "%s/tls/cert.pem", g_dir);
    assert_string_equal(c->tls.cert_file, want);
    assert_string_equal(c->tls.key_file, "/abs/key.pem");
    assert_true(c->tls.present);
    assert_true(c->gossip.present);
    assert_int_equal(c->gossip.peers.n, 2);
    assert_string_equal(c->gossip.peers.v[1], "https://127.0.0.1:8082");
    assert_int_equal(c->gossip.interval_secs, 2);
    assert_int_equal(c->gossip.allowed_node_ids.n, 3);
    assert_int_equal(c->gossip.tombstone_ttl_secs, 604800);
    assert_string_equal(c->cluster.distributed_mode, "eventual");
    assert_string_equal(c->gssapi.keytab, "/nonexistent/keytab");
    ahdapa_cfg_free(c);
    cfg_report_free(&rep);
}

static void test_ahdapa_defaults(void **state)
{
    struct cfg_report rep;
    struct ahdapa_cfg *c = NULL;
    char want[128];
    const char *p;

    (void)state;
    cfg_report_init(&rep);
    p = write_file("empty.toml", "# nothing\n");
    assert_int_equal(ahdapa_cfg_load(p, 0, &c, &rep), 0);
    assert_string_equal(c->server.listen, "0.0.0.0:8080");
    assert_null(c->server.issuer);
    snprintf(want, sizeof(want), "sqlite://%s/ahdapa.db", g_dir);
    assert_string_equal(c->database.url, want);
    assert_false(c->tls.present);
    assert_false(c->gossip.present);
    assert_int_equal(c->gossip.interval_secs, 15);
    assert_string_equal(c->cluster.distributed_mode, "off");
    assert_string_equal(c->log.level, "info");
    ahdapa_cfg_free(c);
    cfg_report_free(&rep);
}

static void test_dburl_forms(void **state)
{
    struct cfg_report rep;
    struct ahdapa_cfg *c = NULL;
    char want[128];
    const char *p;

    (void)state;
    cfg_report_init(&rep);
    p = write_file("db.toml", "[database]\nurl = \"sqlite://data/n.db\"\n");
    assert_int_equal(ahdapa_cfg_load(p, 0, &c, &rep), 0);
    snprintf(want, sizeof(want), "sqlite://%s/data/n.db", g_dir);
    assert_string_equal(c->database.url, want);
    ahdapa_cfg_free(c);
    p = write_file("db.toml", "[database]\nurl = \"postgresql://u@db/ahdapa\"\n");
    assert_int_equal(ahdapa_cfg_load(p, 0, &c, &rep), 0);
    assert_string_equal(c->database.url, "postgresql://u@db/ahdapa");
    ahdapa_cfg_free(c);
    p = write_file("db.toml", "[database]\nurl = \"mysql://x\"\n");
    assert_int_equal(ahdapa_cfg_load(p, 0, &c, &rep), -EINVAL);
    assert_null(c);
    assert_non_null(strstr(rep.text.data, "db.toml:2: key 'database.url': expected a database "
                                          "URL"));
    assert_non_null(strstr(rep.text.data, "found string \"mysql://x\""));
    cfg_report_free(&rep);
}

/* Loads text and expects failure whose report contains want. */
static void expect_error(const char *text, const char *want, int daemon)
{
    struct cfg_report rep;
    struct ahdapa_cfg *a = NULL;
    struct akamu_cfg *k = NULL;
    const char *p;
    int rc;

    cfg_report_init(&rep);
    p = write_file("bad.toml", text);
    rc = daemon == 0 ? ahdapa_cfg_load(p, 0, &a, &rep) : akamu_cfg_load(p, 0, &k, &rep);
    if (rc == 0 || rep.text.data == NULL || strstr(rep.text.data, want) == NULL)
        fail_msg("want error containing [%s], got rc=%d report:\n%s", want, rc,
                 rep.text.data ? rep.text.data : "(empty)");
    assert_null(a);
    assert_null(k);
    cfg_report_free(&rep);
}

static void test_ahdapa_errors(void **state)
{
    (void)state;
    expect_error("[gossip]\npeers = []\ninterval_secs = \"2\"\n",
                 "bad.toml:3: key 'gossip.interval_secs': expected integer in 1..86400, found "
                 "string \"2\"",
                 0);
    expect_error("[gossip]\ninterval_secs = 0\n",
                 "bad.toml:2: key 'gossip.interval_secs': expected integer in 1..86400, found "
                 "integer 0",
                 0);
    expect_error("[gossip]\npeer = [\"https://a:1\"]\n",
                 "bad.toml:2: unknown key 'gossip.peer' (did you mean 'peers'?)", 0);
    expect_error("[sever]\nlisten = \"x:1\"\n",
                 "bad.toml:1: unknown section 'sever' (did you mean 'server'?)", 0);
    expect_error("[cluster]\ndistributed_mode = \"strong\"\n",
                 "key 'cluster.distributed_mode': expected one of off|eventual, found string "
                 "\"strong\"",
                 0);
    expect_error("[server]\nlisten = \"8080\"\n", "key 'server.listen': expected \"host:port\"", 0);
    expect_error("[server]\nlisten = \"h:70000\"\n", "key 'server.listen'", 0);
    expect_error("[gossip]\npeers = [\"https://ok:1\", \"ftp://x\"]\n",
                 "key 'gossip.peers': expected an http:// or https:// URL (element 2), found "
                 "string \"ftp://x\"",
                 0);
    expect_error("[tls]\ncert_file = \"c.pem\"\n", "[tls] needs both cert_file and key_file", 0);
    expect_error("server = 1\n", "'server' must be a section ([server]), found integer 1", 0);
    expect_error("[server]\nlisten = \"a:1\"\nlisten = \"b:2\"\n", "invalid TOML: line 3", 0);
    expect_error("[server]\nissuer = \"not a url\"\n", "expected an http:// or https:// URL", 0);
    expect_error("[log]\nlevel = 3\n", "key 'log.level': expected string, found integer 3", 0);
    /* Several problems are all reported. */
    expect_error("[server]\nlisten = 1\n[gossip]\ninterval_secs = true\n", "found boolean true", 0);
}

static void test_missing_file(void **state)
{
    struct cfg_report rep;
    struct ahdapa_cfg *c = NULL;

    (void)state;
    cfg_report_init(&rep);
    assert_int_equal(ahdapa_cfg_load("/nonexistent/x.toml", 0, &c, &rep), -ENOENT);
    assert_non_null(strstr(rep.text.data, "/nonexistent/x.toml: cannot open config file"));
    cfg_report_free(&rep);
}

static void test_allow_unknown(void **state)
{
    struct cfg_report rep;
    struct ahdapa_cfg *c = NULL;
    const char *p;

    (void)state;
    cfg_report_init(&rep);
    p = write_file("unk.toml", "[server]\nlistn = \"a:1\"\n[extra]\nx = 1\n");
    assert_int_equal(ahdapa_cfg_load(p, CFG_ALLOW_UNKNOWN, &c, &rep), 0);
    assert_int_equal(rep.n_errors, 0);
    assert_int_equal(rep.n_warnings, 2);
    assert_non_null(strstr(rep.text.data, "unk.toml:2: warning: unknown key 'server.listn' "
                                          "(did you mean 'listen'?), ignored"));
    ahdapa_cfg_free(c);
    cfg_report_free(&rep);
}

static const char spec_akamu[] = "listen_addr = \"0.0.0.0:8443\"\n"
                                 "base_url = \"https://acme.example.com\"\n"
                                 "admin_listen_addr = \"0.0.0.0:8081\"\n"
                                 "[database]\n"
                                 "url = \"sqlite:///var/lib/akamu/akamu.db\"\n"
                                 "[ca]\n"
                                 "key_file = \"ca.key\"\n"
                                 "cert_file = \"ca.pem\"\n"
                                 "key_type = \"ec:P-384\"\n"
                                 "[server]\n"
                                 "external_account_required = true\n"
                                 "dns_resolver_addr = \"127.0.0.1:5353\"\n"
                                 "[server.eab_keys]\n"
                                 "kid-1 = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ\"\n"
                                 "[gossip]\n"
                                 "# URLs of all other cluster nodes (admin base URL).\n"
                                 "peers = [\n"
                                 "\"http://node2.acme.internal:8081\",\n"
                                 "\"http://node3.acme.internal:8081\",\n"
                                 "]\n"
                                 "interval_secs = 15\n"
                                 "tombstone_ttl_secs = 604800\n"
                                 "ownership_ttl_secs = 150\n";

static void test_akamu_spec_config(void **state)
{
    struct cfg_report rep;
    struct akamu_cfg *c = NULL;
    char want[128];
    const char *p;

    (void)state;
    cfg_report_init(&rep);
    p = write_file("akamu.toml", spec_akamu);
    assert_int_equal(akamu_cfg_load(p, 0, &c, &rep), 0);
    assert_string_equal(c->listen_addr, "0.0.0.0:8443");
    assert_string_equal(c->base_url, "https://acme.example.com");
    assert_string_equal(c->admin_listen_addr, "0.0.0.0:8081");
    snprintf(want, sizeof(want), "%s/ca.key", g_dir);
    assert_string_equal(c->ca.key_file, want);
    assert_string_equal(c->ca.key_type, "ec:P-384");
    assert_int_equal(c->ca.validity_days, 90);
    assert_int_equal(c->ca.ca_validity_years, 10);
    assert_true(c->server.external_account_required);
    assert_int_equal(c->server.eab_keys.n, 1);
    assert_string_equal(c->server.eab_keys.keys[0], "kid-1");
    assert_int_equal(c->server.http_validation_port, 80);
    assert_int_equal(c->server.tls_alpn_validation_port, 443);
    assert_string_equal(c->server.dns_resolver_addr, "127.0.0.1:5353");
    assert_false(c->tls.enabled);
    assert_true(c->gossip.present);
    assert_int_equal(c->gossip.peers.n, 2);
    assert_int_equal(c->gossip.interval_secs, 15);
    assert_int_equal(c->gossip.ownership_ttl_secs, 150);
    akamu_cfg_free(c);

    /* Defaults with an empty file; no [gossip] = single node. */
    p = write_file("akamu0.toml", "");
    assert_int_equal(akamu_cfg_load(p, 0, &c, &rep), 0);
    assert_false(c->gossip.present);
    assert_string_equal(c->ca.key_type, "ec:P-256");
    assert_int_equal(c->gossip.tombstone_ttl_secs, 604800);
    assert_int_equal(c->gossip.ownership_ttl_secs, 150);
    akamu_cfg_free(c);
    cfg_report_free(&rep);
}

static void test_akamu_errors(void **state)
{
    (void)state;
    expect_error("[ca]\nkey_type = \"rsa:1024\"\n",
                 "bad.toml:2: key 'ca.key_type': expected one of "
                 "ec:P-256|ec:P-384|rsa:2048|rsa:3072|rsa:4096|ed25519, found string "
                 "\"rsa:1024\"",
                 1);
    expect_error("[ca]\nvalidity_days = -1\n", "expected integer in 1..3650, found integer -1", 1);
    expect_error("[tls]\nenabled = true\n", "[tls] enabled = true needs cert_file and key_file", 1);
    expect_error("[server.eab_keys]\nk = \"short\"\n",
                 "key 'server.eab_keys.k': expected a base64url HMAC key", 1);
    expect_error("[server]\neab_keys = { k = 1 }\n",
                 "key 'server.eab_keys': expected a string for 'k', found integer 1", 1);
    expect_error("[server]\ndns_resolver_addr = \"dns.google\"\n",
                 "key 'server.dns_resolver_addr': expected \"ip\" or \"ip:port\"", 1);
    expect_error("listen_addr = \"0.0.0.0:1\"\nadmin_listen_addr = \"0.0.0.0:1\"\n",
                 "admin_listen_addr must differ from listen_addr", 1);
    expect_error("base_url = \"acme.example.com\"\n", "key 'base_url': expected an http", 1);
    expect_error("[gossip]\nownership_ttl = 150\n",
                 "unknown key 'gossip.ownership_ttl' (did you mean 'ownership_ttl_secs'?)", 1);
}

static void test_hostport(void **state)
{
    char h[64];
    int port;

    (void)state;
    assert_int_equal(cfg_split_hostport("127.0.0.1:8080", h, sizeof(h), &port), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(cfg_split_hostport(":443", h, sizeof(h), &port), 0);
    assert_string_equal(h, "");
    assert_int_equal(cfg_split_hostport("[::1]:0", h, sizeof(h), &port), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(cfg_split_hostport("::1:80", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("h:", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("h:65536", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("h:-1", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("h:1x", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("a b:1", h, sizeof(h), &port), -EINVAL);
    assert_int_equal(cfg_split_hostport("", h, sizeof(h), &port), -EINVAL);
}

static void test_schema_markdown(void **state)
{
    struct ut_buf b;

    (void)state;
    ut_buf_init(&b, 1 << 20);
    cfg_schema_markdown(&b, 0);
    assert_non_null(strstr(b.data, "| `gossip.interval_secs` | integer | `15` | 1..86400 |"));
    assert_non_null(strstr(b.data, "`off`, `eventual`"));
    ut_buf_reset(&b);
    cfg_schema_markdown(&b, 1);
    assert_non_null(strstr(b.data, "| `gossip.ownership_ttl_secs` | integer | `150` |"));
    ut_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ahdapa_spec_config), cmocka_unit_test(test_ahdapa_defaults),
        cmocka_unit_test(test_dburl_forms),        cmocka_unit_test(test_ahdapa_errors),
        cmocka_unit_test(test_missing_file),       cmocka_unit_test(test_allow_unknown),
        cmocka_unit_test(test_akamu_spec_config),  cmocka_unit_test(test_akamu_errors),
        cmocka_unit_test(test_hostport),           cmocka_unit_test(test_schema_markdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
