/* GET /healthz: liveness for load balancers and the demo's readiness wait. */
#include "ahdapa.h"

static void healthz(struct http_req *r, void *arg)
{
    (void)arg;
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

int ahdapa_health_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_GET | HTTP_HEAD, "/healthz", healthz, a, err);
}
