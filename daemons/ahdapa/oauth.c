/*
 * oauth.c - the OAuth family's entry points: state, node signing key and
 * route registration. One concern per file: clients.c scopes.c token.c
 * jwt.c jwks.c introspect.c discovery.c.
 */
#include <errno.h>
#include <stdlib.h>

#include "ahdapa.h"

int ahdapa_oauth_init(struct ahdapa *a, struct ut_err *err)
{
    a->oauth = calloc(1, sizeof(*a->oauth));
    if (a->oauth == NULL) {
        ut_err_set(err, "oauth: out of memory");
        return -ENOMEM;
    }
    a->oauth->a = a;
    return ahdapa_signing_key_init(a, err);
}

int ahdapa_oauth_routes(struct ahdapa *a, struct ut_err *err)
{
    int rc;

    if ((rc = ahdapa_clients_routes(a, err)) < 0 || (rc = ahdapa_scopes_routes(a, err)) < 0 ||
        (rc = ahdapa_token_routes(a, err)) < 0 || (rc = ahdapa_jwks_routes(a, err)) < 0 ||
        (rc = ahdapa_introspect_routes(a, err)) < 0 || (rc = ahdapa_discovery_routes(a, err)) < 0)
        return rc;
    return 0;
}

void ahdapa_oauth_free(struct ahdapa *a)
{
    if (a->oauth == NULL)
        return;
    ahdapa_signing_key_free(a); /* workers have stopped */
    free(a->oauth);
    a->oauth = NULL;
    ahdapa_jwt_thread_cleanup();
}
