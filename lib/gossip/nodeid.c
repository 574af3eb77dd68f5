#include "gossip/nodeid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cfg/cfg.h"
#include "util/b64.h"

int gsp_node_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > CRY_ENV_ID_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e)
            return -EINVAL;
    return 0;
}

/* host:port from the authority of an http(s) URL (default ports filled). */
static int from_url(const char *url, char *out, size_t outlen)
{
    const char *a, *end;
    int https = strncmp(url, "https://", 8) == 0;
    size_t n;

    if (!https && strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    a = url + (https ? 8 : 7);
    end = a + strcspn(a, "/?#");
    n = (size_t)(end - a);
    if (n == 0 || memchr(a, '@', n))
        return -EINVAL;
    /* Has an explicit port when the last ':' comes after any ']'. */
    const char *colon = NULL, *rb = NULL;
    for (const char *p = a; p < end; p++) {
        if (*p == ':')
            colon = p;
        if (*p == ']')
            rb = p;
    }
    if (colon && (!rb || colon > rb)) {
        if (n >= outlen)
            return -EINVAL;
        memcpy(out, a, n);
        out[n] = '\0';
        return 0;
    }
    if ((size_t)snprintf(out, outlen, "%.*s:%d", (int)n, a, https ? 443 : 80) >= outlen)
        return -EINVAL;
    return 0;
}

int gsp_node_id_default(const char *url, const char *listen, char *out, size_t outlen,
                        struct ut_err *err)
{
    char host[256];
    int port;

    if (url && *url) {
        if (from_url(url, out, outlen) < 0 || gsp_node_id_valid(out) < 0) {
            ut_err_set(err, "cannot derive a node id from \"%s\"; set [gossip] node_id", url);
            return -EINVAL;
        }
        return 0;
    }
    if (listen == NULL || cfg_split_hostport(listen, host, sizeof(host), &port) < 0) {
        ut_err_set(err, "cannot derive a node id from listen address \"%s\"", listen ? listen : "");
        return -EINVAL;
    }
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        if (gethostname(host, sizeof(host)) < 0) {
            ut_err_set(err, "cannot derive a node id: no host name; set [gossip] node_id");
            return -EINVAL;
        }
        host[sizeof(host) - 1] = '\0';
    }
    if ((size_t)snprintf(out, outlen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port) >=
            outlen ||
        gsp_node_id_valid(out) < 0) {
        ut_err_set(err, "derived node id \"%s\" is not valid; set [gossip] node_id", out);
        return -EINVAL;
    }
    return 0;
}

json_t *gsp_kem_info_json(const struct cry_identity *id)
{
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    char pk64[((CRY_XWING_PK_BYTES + 2) / 3) * 4 + 1];
    char pub64[((CRY_P256_PUB_BYTES + 2) / 3) * 4 + 1];

    cry_identity_public(id, pk, pub);
    ut_b64_encode(pk, sizeof(pk), pk64, 1);
    ut_b64_encode(pub, sizeof(pub), pub64, 1);
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "node_id", cry_identity_node_id(id), "kem_alg",
                     "X-Wing", "kem_public_key", pk64, "signing_alg", "ES256", "signing_public_key",
                     pub64);
}
