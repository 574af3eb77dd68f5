/* GET /api/gossip/kem-info on the admin listener: what peers need to pin this
 * node, with its CA certification when gossip is on (trust.c). */
#include "akamu.h"
#include "gossip/nodeid.h"

static void kem_info(struct http_req *r, void *arg)
{
    struct akamu *k = arg;

    http_reply_json(r, 200,
                    k->engine ? gsp_engine_kem_info(k->engine) : gsp_kem_info_json(k->identity));
}

int akamu_gossip_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    return http_route(s, HTTP_GET | HTTP_HEAD, "/api/gossip/kem-info", kem_info, k, err);
}
