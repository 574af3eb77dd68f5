/* GET /api/gossip/kem-info: what peers and operators need to pin this node. */
#include "ahdapa.h"
#include "gossip/nodeid.h"

static void kem_info(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;

    http_reply_json(r, 200, gsp_kem_info_json(a->identity));
}

int ahdapa_gossip_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_GET | HTTP_HEAD, "/api/gossip/kem-info", kem_info, a, err);
}
