/* GET /healthz on both listeners. */
#include "akamu.h"

static void healthz(struct http_req *r, void *arg)
{
    (void)arg;
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

int akamu_health_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    return http_route(s, HTTP_GET | HTTP_HEAD, "/healthz", healthz, k, err);
}
