/*
 * cluster_api.c - GET /api/admin/cluster on the admin listener, behind the
 * admin API's bearer token (admin.c): this node, its peers (how each was
 * pinned, last contact, lag from the version vectors) and the live row
 * count of every replicated table. docs/operations.md, "Cluster status".
 *
 * Lag per peer and origin, from the engine's version vectors: "behind" =
 * our seq - the peer's (entries of that origin we hold and the peer has not
 * acknowledged), "ahead" = the peer's seq - ours (entries it holds that we
 * lack). The peer's vector is what it last stated (raised by what our
 * responses declared complete), so a peer that was never contacted has
 * "lag": null.
 */
#include <stdio.h>
#include <string.h>

#include "acme.h"
#include "akamu.h"

static uint64_t seq_of(json_t *vv, const char *origin)
{
    json_t *v = json_object_get(vv, origin);

    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* {"behind": {origin: n}, "ahead": {origin: n}, "behind_total", "ahead_total"}
 * over the union of origins; only non-zero entries are listed. */
static json_t *lag_json(json_t *ours, json_t *theirs)
{
    json_t *behind = json_object(), *ahead = json_object(), *v;
    uint64_t bt = 0, at = 0;
    const char *o;

    if (behind == NULL || ahead == NULL)
        goto oom;
    json_object_foreach(ours, o, v)
    {
        uint64_t a = seq_of(ours, o), b = seq_of(theirs, o);

        if (a > b) {
            json_object_set_new(behind, o, json_integer((json_int_t)(a - b)));
            bt += a - b;
        }
    }
    json_object_foreach(theirs, o, v)
    {
        uint64_t a = seq_of(ours, o), b = seq_of(theirs, o);

        if (b > a) {
            json_object_set_new(ahead, o, json_integer((json_int_t)(b - a)));
            at += b - a;
        }
    }
    return json_pack("{s:o, s:o, s:I, s:I}", "behind", behind, "ahead", ahead, "behind_total",
                     (json_int_t)bt, "ahead_total", (json_int_t)at);
oom:
    json_decref(behind);
    json_decref(ahead);
    return NULL;
}

static json_t *peers_json(json_t *st)
{
    json_t *out = json_array(), *p, *ours = json_object_get(st, "vv");
    size_t i;

    json_array_foreach(json_object_get(st, "peers"), i, p)
    {
        json_t *pvv = json_object_get(p, "vv");
        json_t *o = json_pack(
            "{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "node_id",
            json_object_get(p, "node_id"), "url", json_object_get(p, "url"), "pinned",
            json_object_get(p, "pinned"), "pinned_by", json_object_get(p, "pinned_by"), "certified",
            json_object_get(p, "certified"), "configured", json_object_get(p, "configured"),
            "last_contact_ms", json_object_get(p, "last_success_ms"), "last_ok",
            json_object_get(p, "last_ok"), "in_sync", json_object_get(p, "in_sync"));

        if (o == NULL)
            continue;
        json_object_set_new(o, "lag", json_is_object(pvv) ? lag_json(ours, pvv) : json_null());
        json_object_set(o, "refusals", json_object_get(p, "refusals"));
        json_array_append_new(out, o);
    }
    return out;
}

static json_t *counts_json(struct akamu *a)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(a->store, &err);
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && db != NULL && i < akamu_n_tables; i++) {
        uint64_t n = 0;

        if (crdt_count(a->replica, db, akamu_tables[i].name, &n, &err) == 0)
            json_object_set_new(o, akamu_tables[i].name, json_integer((json_int_t)n));
        else
            json_object_set_new(o, akamu_tables[i].name, json_null());
    }
    return o;
}

static void cluster_status(struct http_req *r, void *arg)
{
    struct akamu *a = arg;
    json_t *root, *st = NULL;

    if (!akm_admin_authorized(r))
        return;
    if (a->engine != NULL)
        st = gsp_engine_status(a->engine);
    root = json_pack("{s:s, s:s, s:o, s:o}", "node_id", a->node_id, "mode",
                     a->engine ? "cluster" : "single-node", "peers",
                     st ? peers_json(st) : json_array(), "counts", counts_json(a));
    if (root != NULL && st != NULL) {
        json_object_set(root, "url", json_object_get(st, "url"));
        json_object_set(root, "vv", json_object_get(st, "vv"));
        json_object_set(root, "members", json_object_get(st, "members"));
    }
    json_decref(st);
    if (root == NULL) {
        http_reply_error(r, 500, "server_error", "out of memory");
        return;
    }
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, root);
}

int akamu_cluster_api_routes(struct akamu *a, struct http_server *admin, struct ut_err *err)
{
    return http_route(admin, HTTP_GET, "/api/admin/cluster", cluster_status, a, err);
}
