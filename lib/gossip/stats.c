/*
 * stats.c - the engine's counters: per peer and in total, as the status
 * JSON of GET /api/gossip/status and as Prometheus text for /metrics.
 *
 * Per-peer series carry a peer="<node id>" label and are named
 * <prefix>_peer_*; the totals (which also count refusals of senders that
 * are no peer at all) are <prefix>_* without labels, so sum() over the
 * per-peer series never double-counts.
 */
#include "gossip/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void gsp_count_refusal_(struct gsp_counters *c, const char *reason)
{
    size_t i;

    if (reason == NULL)
        reason = "other";
    for (i = 0; i < c->n_ref; i++) {
        if (strncmp(c->ref[i].reason, reason, GSP_REASON_LEN - 1) == 0) {
            c->ref[i].n++;
            return;
        }
    }
    if (c->n_ref == GSP_MAX_REASONS) {
        /* Full: the last slot becomes the catch-all. */
        snprintf(c->ref[GSP_MAX_REASONS - 1].reason, GSP_REASON_LEN, "other");
        c->ref[GSP_MAX_REASONS - 1].n++;
        return;
    }
    snprintf(c->ref[i].reason, GSP_REASON_LEN, "%s", reason);
    c->ref[i].n = 1;
    c->n_ref++;
}

void gsp_refuse_(struct gsp_engine *e, struct gsp_peer *p, const char *reason)
{
    if (p != NULL)
        gsp_count_refusal_(&p->c, reason);
    gsp_count_refusal_(&e->total, reason);
}

/* ---- status JSON ---- */

static json_t *counters_json(const struct gsp_counters *c)
{
    json_t *o = json_object(), *r = json_object();

    if (o == NULL || r == NULL) {
        json_decref(o);
        json_decref(r);
        return NULL;
    }
    for (size_t i = 0; i < c->n_ref; i++)
        json_object_set_new(r, c->ref[i].reason, json_integer((json_int_t)c->ref[i].n));
#define SET(name) json_object_set_new(o, #name, json_integer((json_int_t)c->name))
    SET(pushes);
    SET(rounds);
    SET(skips);
    SET(exchanges);
    SET(served);
    SET(failures);
    SET(bytes_out);
    SET(bytes_in);
    SET(entries_sent);
    SET(entries_received);
    SET(entries_applied);
    SET(last_success_ms);
#undef SET
    json_object_set_new(o, "refusals", r);
    return o;
}

static json_t *vv_json(const struct gsp_vv *v)
{
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && v != NULL && i < v->n; i++)
        json_object_set_new(o, v->origin[i], json_integer((json_int_t)v->seq[i]));
    return o;
}

/* The persisted version vector, read afresh: the engine's cached copy is
 * refreshed only by its own exchanges, so it lags on a node that only
 * answers peers. NULL when it cannot be read. */
static json_t *fresh_vv_json(struct gsp_engine *e)
{
    struct ut_err err = {{0}};
    struct crdt_vv vv = {0};
    sqlite3 *db = store_reader(e->store, &err);
    json_t *o = NULL;

    if (db == NULL || crdt_vv_load(e->replica, db, &vv, &err) < 0)
        goto out;
    o = json_object();
    for (size_t i = 0; o != NULL && i < vv.n; i++)
        json_object_set_new(o, vv.origin[i], json_integer((json_int_t)vv.seq[i]));
out:
    crdt_vv_free(&vv);
    return o;
}

/* Totals of the engine's periodic work and re-syncs (contact.c), added to
 * "totals" (caller holds mu). */
static void gc_totals(struct gsp_engine *e, json_t *t)
{
    uint64_t runs = 0, purged = 0;

    crdt_gc_stats(e->replica, &runs, &purged);
    json_object_set_new(t, "gc_runs", json_integer((json_int_t)runs));
    json_object_set_new(t, "gc_purged", json_integer((json_int_t)purged));
    json_object_set_new(t, "resyncs", json_integer((json_int_t)e->resyncs));
    json_object_set_new(t, "resync_dropped", json_integer((json_int_t)e->resync_dropped));
    json_object_set_new(t, "resync_yields", json_integer((json_int_t)e->resync_yields));
}

/* "contact": the last contact, the staleness check and the re-sync pass
 * (docs/replication.md section 8). suspects: rows still awaiting
 * confirmation, or -1 when unknown. Caller holds mu. */
static json_t *contact_json(struct gsp_engine *e, long long suspects)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "last_contact_ms", json_integer((json_int_t)e->last_contact_ms));
    json_object_set_new(o, "gc_mark_ms", json_integer((json_int_t)crdt_gc_mark(e->replica)));
    json_object_set_new(o, "gc_interval_ms", json_integer((json_int_t)e->gc_every_ms));
    json_object_set_new(o, "armed", json_boolean(e->armed && !e->pass));
    json_object_set_new(o, "armed_last_contact_ms",
                        json_integer((json_int_t)(e->armed ? e->armed_lc_ms : 0)));
    json_object_set_new(o, "resync", json_boolean(e->pass));
    json_object_set_new(o, "first_sync", json_boolean(e->armed && e->armed_lc_ms == 0));
    json_object_set_new(o, "resync_source", json_string(e->pass ? e->pass_source : ""));
    json_object_set_new(o, "resync_suspects", json_integer(suspects));
    return o;
}

/* How a pinned peer came to be trusted (engine.h, status). */
static const char *pinned_by(const struct gsp_peer *p)
{
    if (!p->pinned)
        return "";
    if (p->src & PEER_SEEDED)
        return "seed";
    if ((p->src & PEER_CERTIFIED) && (p->src & PEER_CONFIGURED))
        return "config+certification";
    return "learned";
}

json_t *gsp_engine_status(struct gsp_engine *e)
{
    json_t *root = json_object(), *peers = json_array(), *totals;
    json_t *vv = fresh_vv_json(e);
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(e->store, &err);
    uint64_t suspects = 0;
    long long sus = -1;

    if (db != NULL && crdt_resync_count(e->replica, db, &suspects, &err) == 0)
        sus = (long long)suspects;

    if (root == NULL || peers == NULL) {
        json_decref(root);
        json_decref(peers);
        json_decref(vv);
        return NULL;
    }
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_peers; i++) {
        const struct gsp_peer *p = e->peers[i];
        json_t *o = counters_json(&p->c);

        if (o == NULL || strcmp(p->node_id, e->self_id) == 0) {
            json_decref(o);
            continue;
        }
        json_object_set_new(o, "node_id", json_string(p->node_id));
        json_object_set_new(o, "url", json_string(p->url));
        json_object_set_new(o, "pinned", json_boolean(p->pinned));
        json_object_set_new(o, "pinned_by", json_string(pinned_by(p)));
        json_object_set_new(o, "certified", json_boolean(p->pinned && (p->src & PEER_CERTIFIED)));
        json_object_set_new(o, "configured", json_boolean(p->src & PEER_CONFIGURED));
        json_object_set_new(o, "seeded", json_boolean(p->src & PEER_SEEDED));
        json_object_set_new(o, "learned", json_boolean(p->src & PEER_LEARNED));
        json_object_set_new(o, "last_ok", json_boolean(p->last_ok));
        json_object_set_new(
            o, "in_sync",
            json_boolean(p->pvv_known && e->self_vv_ok && gsp_vv_le(&e->self_vv, &p->pvv)));
        json_object_set_new(o, "generation", json_integer((json_int_t)p->peer_gen));
        json_object_set_new(o, "last_success_ms", json_integer((json_int_t)p->c.last_success_ms));
        json_object_set_new(o, "vv", p->pvv_known ? vv_json(&p->pvv) : json_null());
        json_array_append_new(peers, o);
    }
    json_object_set_new(root, "node_id", json_string(e->self_id));
    json_object_set_new(root, "url", json_string(e->self_url));
    json_object_set_new(root, "peers", peers);
    totals = counters_json(&e->total);
    if (totals != NULL)
        gc_totals(e, totals);
    json_object_set_new(root, "totals", totals);
    json_object_set_new(root, "contact", contact_json(e, sus));
    json_object_set_new(root, "generation", json_integer((json_int_t)crdt_generation(e->replica)));
    json_object_set_new(root, "vv", vv ? vv : vv_json(&e->self_vv));
    json_object_set_new(root, "members", json_integer((json_int_t)e->n_members));
    pthread_mutex_unlock(&e->mu);
    return root;
}

/* ---- Prometheus text ---- */

/* A label value with \ " and newlines escaped (exposition format 0.0.4). */
static int put_label(struct ut_buf *b, const char *s)
{
    int rc = 0;

    for (; *s && rc == 0; s++) {
        if (*s == '\\' || *s == '"')
            rc = ut_buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            rc = ut_buf_append(b, "\\n", 2);
        else
            rc = ut_buf_putc(b, *s);
    }
    return rc;
}

struct metric {
    const char *name, *type, *help;
    size_t off; /* offset of the uint64_t in struct gsp_counters */
};

#define M(n, t, h)                                                                                 \
    {                                                                                              \
#n, t, h, offsetof(struct gsp_counters, n)                                                 \
    }
static const struct metric metrics[] = {
    M(pushes, "counter", "Eager pushes started (a local change sent within push_delay_ms)."),
    M(rounds, "counter", "Periodic anti-entropy rounds started."),
    M(skips, "counter", "Periodic rounds skipped because the peer was known to be in sync."),
    M(exchanges, "counter", "Outgoing exchanges started (pushes, rounds, continuations)."),
    M(served, "counter", "Incoming sync requests answered."),
    M(failures, "counter", "Outgoing exchanges that failed."),
    M(bytes_out, "counter", "Sealed bytes sent (requests and responses)."),
    M(bytes_in, "counter", "Sealed bytes received (requests and responses)."),
    M(entries_sent, "counter", "Replicated entries sent."),
    M(entries_received, "counter", "Replicated entries received."),
    M(entries_applied, "counter", "Received entries that won the merge and were stored."),
    M(last_success_ms, "gauge", "Unix time (ms) of the last successful outgoing exchange."),
};
#undef M

static uint64_t field(const struct gsp_counters *c, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)c + off, sizeof(v));
    return v;
}

static const char *suffix(const struct metric *m)
{
    return strcmp(m->type, "counter") == 0 ? "_total" : "";
}

int gsp_engine_metrics(struct gsp_engine *e, const char *prefix, struct ut_buf *out)
{
    int rc = 0;

    if (prefix == NULL)
        prefix = "gossip";
    pthread_mutex_lock(&e->mu);
    for (size_t k = 0; k < sizeof(metrics) / sizeof(metrics[0]) && rc == 0; k++) {
        const struct metric *m = &metrics[k];

        rc = ut_buf_printf(out, "# HELP %s_%s%s %s\n# TYPE %s_%s%s %s\n%s_%s%s %llu\n", prefix,
                           m->name, suffix(m), m->help, prefix, m->name, suffix(m), m->type, prefix,
                           m->name, suffix(m), (unsigned long long)field(&e->total, m->off));
        if (rc == 0)
            rc = ut_buf_printf(out, "# HELP %s_peer_%s%s %s (per peer)\n# TYPE %s_peer_%s%s %s\n",
                               prefix, m->name, suffix(m), m->help, prefix, m->name, suffix(m),
                               m->type);
        for (size_t i = 0; i < e->n_peers && rc == 0; i++) {
            const struct gsp_peer *p = e->peers[i];

            if (p->node_id[0] == '\0' || strcmp(p->node_id, e->self_id) == 0)
                continue;
            rc = ut_buf_printf(out, "%s_peer_%s%s{peer=\"", prefix, m->name, suffix(m));
            if (rc == 0)
                rc = put_label(out, p->node_id);
            if (rc == 0)
                rc = ut_buf_printf(out, "\"} %llu\n", (unsigned long long)field(&p->c, m->off));
        }
    }
    if (rc == 0)
        rc = ut_buf_printf(out,
                           "# HELP %s_refusals_total Messages or entries refused, by reason.\n"
                           "# TYPE %s_refusals_total counter\n",
                           prefix, prefix);
    for (size_t i = 0; i < e->total.n_ref && rc == 0; i++)
        rc = ut_buf_printf(out, "%s_refusals_total{reason=\"%s\"} %llu\n", prefix,
                           e->total.ref[i].reason, (unsigned long long)e->total.ref[i].n);
    if (rc == 0)
        rc = ut_buf_printf(out,
                           "# HELP %s_peer_refusals_total Refusals by peer and reason.\n"
                           "# TYPE %s_peer_refusals_total counter\n",
                           prefix, prefix);
    for (size_t i = 0; i < e->n_peers && rc == 0; i++) {
        const struct gsp_peer *p = e->peers[i];

        for (size_t r = 0; r < p->c.n_ref && rc == 0; r++) {
            rc = ut_buf_printf(out, "%s_peer_refusals_total{peer=\"", prefix);
            if (rc == 0)
                rc = put_label(out, p->node_id);
            if (rc == 0)
                rc = ut_buf_printf(out, "\",reason=\"%s\"} %llu\n", p->c.ref[r].reason,
                                   (unsigned long long)p->c.ref[r].n);
        }
    }
    if (rc == 0)
        rc = ut_buf_printf(out,
                           "# HELP %s_peers Peers known (configured, seeded or learned).\n"
                           "# TYPE %s_peers gauge\n%s_peers %zu\n"
                           "# HELP %s_peer_pinned 1 when the peer's keys are pinned.\n"
                           "# TYPE %s_peer_pinned gauge\n",
                           prefix, prefix, prefix, e->n_peers, prefix, prefix);
    for (size_t i = 0; i < e->n_peers && rc == 0; i++) {
        const struct gsp_peer *p = e->peers[i];

        if (p->node_id[0] == '\0' || strcmp(p->node_id, e->self_id) == 0)
            continue;
        rc = ut_buf_printf(out, "%s_peer_pinned{peer=\"", prefix);
        if (rc == 0)
            rc = put_label(out, p->node_id);
        if (rc == 0)
            rc = ut_buf_printf(out, "\"} %d\n", p->pinned);
    }
    if (rc == 0)
        rc = ut_buf_printf(out,
                           "# HELP %s_generation Changes applied to the local replica.\n"
                           "# TYPE %s_generation gauge\n%s_generation %llu\n",
                           prefix, prefix, prefix, (unsigned long long)crdt_generation(e->replica));
    if (rc == 0) {
        uint64_t runs = 0, purged = 0;

        crdt_gc_stats(e->replica, &runs, &purged);
        rc = ut_buf_printf(
            out,
            "# HELP %s_gc_runs_total GC runs (tombstones and expired facts purged).\n"
            "# TYPE %s_gc_runs_total counter\n%s_gc_runs_total %llu\n"
            "# HELP %s_gc_purged_total Rows purged by GC.\n"
            "# TYPE %s_gc_purged_total counter\n%s_gc_purged_total %llu\n"
            "# HELP %s_resyncs_total Re-sync passes completed after a long absence.\n"
            "# TYPE %s_resyncs_total counter\n%s_resyncs_total %llu\n"
            "# HELP %s_resync_dropped_total Rows dropped by re-syncs (deleted elsewhere).\n"
            "# TYPE %s_resync_dropped_total counter\n%s_resync_dropped_total %llu\n"
            "# HELP %s_resync_active 1 while a re-sync pass is open.\n"
            "# TYPE %s_resync_active gauge\n%s_resync_active %d\n"
            "# HELP %s_last_contact_ms Unix time (ms) of the last successful exchange either way.\n"
            "# TYPE %s_last_contact_ms gauge\n%s_last_contact_ms %llu\n",
            prefix, prefix, prefix, (unsigned long long)runs, prefix, prefix, prefix,
            (unsigned long long)purged, prefix, prefix, prefix, (unsigned long long)e->resyncs,
            prefix, prefix, prefix, (unsigned long long)e->resync_dropped, prefix, prefix, prefix,
            e->pass, prefix, prefix, prefix, (unsigned long long)e->last_contact_ms);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}
