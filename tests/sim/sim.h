/*
 * sim.h - the in-process gossip simulator: N real gossip engines (each
 * with its own store, CRDT replica and identity) driven on virtual time
 * through a simulated network (delay, loss, duplication, reordering,
 * partitions), node restarts and clock skew. An oracle records every
 * acknowledged write; sim_check() proves that every replica holds the
 * same bytes and that they are exactly the max-(hlc, origin) entry per key.
 *
 * Everything is deterministic from the seed (sim_opts.seed): the network,
 * the workload, the engines' random bytes and the node keys all come from
 * one PRNG, and the store's writer threads are only ever used
 * synchronously. Print the seed, rerun with it, get the same run.
 *
 * Virtual time: one global clock (unix ms, starting at SIM_EPOCH_MS); node
 * i reads global + skew[i]. The simulator is a discrete-event loop: it
 * jumps to the next message delivery, exchange timeout, node restart or
 * engine deadline (gsp_engine_due's next_ms), so idle stretches cost
 * nothing.
 */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define SIM_EPOCH_MS UINT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

enum sim_topo {
    /* Every node pins every other one with its URL (gsp_engine_seed with a
     * url): the engine contacts all of them. */
    SIM_TOPO_MESH = 0,
    /* Every node pins every other one without a URL and gets the others as
     * configured `peers` URLs ("sim://<id>"): exercises GSP_DUE_RESOLVE. */
    SIM_TOPO_MESH_RESOLVE,
    /* Fan-out: each node pins a random pool of neighbours (a ring plus
     * `pool` random nodes, both directions, with URLs); at every interval
     * boundary the simulator picks `fanout` of them and, until the next
     * boundary, acts only on the engine's due items for those (the others
     * are left pending): each round contacts `fanout` random peers. The
     * engine itself has no fan-out option: it contacts every pinned peer
     * with a URL each interval. */
    SIM_TOPO_FANOUT,
};

struct sim_opts {
    uint64_t seed;
    unsigned n;
    enum sim_topo topo;
    unsigned fanout; /* SIM_TOPO_FANOUT: peers contacted per round (default 2) */
    unsigned pool;   /* SIM_TOPO_FANOUT: random neighbours pinned per node (default 8) */
    int file_stores; /* stores in a temp dir (restarts close and reopen them) */
    int sessions;    /* engine session keys */
    /* engine */
    uint64_t interval_ms;   /* default 1000 (virtual) */
    uint64_t push_delay_ms; /* 0: engine default */
    uint64_t retry_ms;      /* 0: engine default */
    size_t page_bytes;      /* 0: engine default */
    unsigned skip_max;      /* 0: engine default */
    /* crdt */
    uint64_t max_skew_ms;      /* 0: CRDT_DEF_MAX_SKEW_MS */
    uint64_t tombstone_ttl_ms; /* 0: crdt default (7 days) */
    /* network */
    uint32_t delay_min_ms; /* one-way delay, uniform in [min, max]; default 1..40 */
    uint32_t delay_max_ms;
    double loss;         /* probability that a message is lost */
    double dup;          /* probability that a message is delivered twice */
    double straggle;     /* probability of a long delay (up to 20 x delay_max) */
    uint64_t timeout_ms; /* requester gives up (gsp_engine_fail); default 2000 */
    /* workload */
    unsigned n_keys;   /* kv key space (default 64): small = many conflicts */
    uint64_t check_ms; /* sim_converge looks at most this often (default interval/20) */
    int verbose;       /* progress lines on stderr */
};

struct sim;

int sim_new(struct sim **out, const struct sim_opts *o, struct ut_err *err);
void sim_free(struct sim *s);
uint64_t sim_seed(const struct sim *s);
unsigned sim_n(const struct sim *s);
uint64_t sim_now(const struct sim *s); /* global virtual time, unix ms */
uint64_t sim_interval(const struct sim *s);
const char *sim_node_id(const struct sim *s, unsigned i);

/* Runs the event loop for ms of virtual time. */
int sim_run(struct sim *s, uint64_t ms, struct ut_err *err);

/* ---- network ---- */

void sim_set_loss(struct sim *s, double loss, double dup, double straggle);
/* group[i] for every node: nodes in different groups cannot talk (messages
 * in flight between them are lost too). */
void sim_partition(struct sim *s, const int *group);
/* Splits the nodes into k random non-empty groups. */
void sim_partition_random(struct sim *s, unsigned k);
void sim_heal(struct sim *s);
/* SIM_TOPO_FANOUT: peers contacted per round from now on. */
void sim_set_fanout(struct sim *s, unsigned fanout);

/* ---- faults on nodes ---- */

/* Stops node i now (its exchanges in flight fail, engine and replica are
 * freed; with file stores the store is closed too) and starts it again
 * after down_ms from what it persisted. */
int sim_restart(struct sim *s, unsigned i, uint64_t down_ms, struct ut_err *err);
int sim_is_up(const struct sim *s, unsigned i);
void sim_set_skew(struct sim *s, unsigned i, int64_t skew_ms);
/* Gives every node a random skew in [-max_ms, +max_ms]. */
void sim_random_skew(struct sim *s, int64_t max_ms);

/* ---- workload (every acknowledged write goes to the oracle) ---- */

/* value NULL: delete. tbl "kv" (LWW) or "revoked" (grow-only). */
int sim_write(struct sim *s, unsigned node, const char *tbl, const char *key, const void *value,
              size_t len, struct ut_err *err);
/* One random operation at a random up node: put/delete on "kv" (keys from
 * the key space), or a new fact in "revoked". del_pct: percentage of
 * deletes among kv writes. */
int sim_random_op(struct sim *s, unsigned del_pct, struct ut_err *err);
/* ops random operations spread evenly over ms of virtual time (the
 * network keeps running in between). */
int sim_workload(struct sim *s, unsigned ops, uint64_t ms, unsigned del_pct, struct ut_err *err);
/* crdt_gc on every up node. */
int sim_gc(struct sim *s, uint64_t *purged, struct ut_err *err);

/* ---- convergence and checks ---- */

/* Runs until every node is up and all version vectors are equal, at most
 * max_ms. 0 and *took_ms (optional) = virtual time it took, or -ETIMEDOUT
 * (err says which nodes lag). Looks every check_ms of virtual time when
 * something changed; a node's vector is reloaded only when its
 * crdt_generation moved. */
int sim_converge(struct sim *s, uint64_t max_ms, uint64_t *took_ms, struct ut_err *err);
/* The full check: every replica's crdt_rows dump (tbl, key, value, hlc,
 * origin, seq, deleted, expires in (tbl, key) order) is byte-identical, the
 * kv and revoked rows are exactly the oracle's max-(hlc, origin) entry per
 * key (a tombstone may be absent after GC: allow_purged), every
 * acknowledged write is present or beaten by a greater entry, no deleted
 * key is live. */
int sim_check(struct sim *s, int allow_purged, struct ut_err *err);
/* Every replica holds the oracle's winner for every kv key written at
 * node `origin_node` (used to show refused entries are absent/present). */
int sim_has_writes_of(struct sim *s, unsigned origin_node, unsigned at_node);

/* State of (tbl, key) at node: 1 live, 0 tombstone, -ENOENT absent, or
 * another negative errno. */
int sim_key_state(struct sim *s, unsigned node, const char *tbl, const char *key);

/* Node i's gsp_engine_status() (new reference; NULL when it is down). Its
 * "contact" object and "totals" show GC and re-syncs (docs/replication.md
 * section 8). */
struct json_t;
struct json_t *sim_status(struct sim *s, unsigned i);

struct sim_stats {
    uint64_t writes, deletes; /* acknowledged */
    uint64_t exchanges;       /* gsp_engine_begin succeeded */
    uint64_t finished;        /* gsp_engine_finish returned 0 */
    uint64_t finish_errors;   /* gsp_engine_finish returned < 0 */
    uint64_t fails;           /* gsp_engine_fail calls (timeouts, HTTP errors, restarts) */
    uint64_t timeouts;
    uint64_t begin_errors;
    uint64_t resolves;
    uint64_t not_chosen;     /* due items left alone: not in this round's fan-out */
    uint64_t handled;        /* gsp_engine_handle returned 0 */
    uint64_t handle_refused; /* gsp_engine_handle returned < 0 */
    uint64_t refused_409;    /* ... of them replays */
    uint64_t msgs, bytes;    /* sent, including duplicates */
    uint64_t lost, duplicated, partitioned, late;
    uint64_t restarts;
    uint64_t hlc_refused;     /* crdt_hlc_refused summed over nodes (and incarnations) */
    uint64_t engine_refusals; /* sum of the engines' refusal counters */
};
void sim_stats(struct sim *s, struct sim_stats *out);
void sim_print_stats(struct sim *s, const char *label);

#endif
