/*
 * sim.c - the in-process gossip simulator (see sim.h).
 *
 * Model of one exchange: requester A calls gsp_engine_begin(); the sealed
 * request travels (delay, loss, duplication, partition) to B, which runs
 * gsp_engine_handle(); the response (or an HTTP error status) travels back
 * and A calls gsp_engine_finish() (or gsp_engine_fail()). A request or
 * response that never arrives makes A call gsp_engine_fail() after
 * timeout_ms, as the HTTP driver does. A duplicated request is handled
 * twice by B (the engine must refuse or tolerate the replay), but only the
 * first copy's response goes back: the requester waits on one connection.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crdt/crdt.h"
#include "crypto/envelope.h"
#include "gossip/engine.h"
#include "gossip/nodeid.h"
#include "store/store.h"
#include "util/log.h"

#define DUE_MAX      64
#define POLLS_PER_MS 256 /* due() calls per node per virtual ms before we move on */
#define URL_PREFIX   "sim://"
#define HEADER_NAME  "X-Sim-Node-Id"
#define FACT_TTL_MS  (30ull * 24 * 3600 * 1000)

/* ---------------------------------------------------------------- PRNG */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);

    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_u64(struct rng *r) /* xoshiro256** */
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return n == 0 ? 0 : rng_u64(r) % n;
}

static int rng_chance(struct rng *r, double p)
{
    return p > 0 && (double)(rng_u64(r) >> 11) * 0x1.0p-53 < p;
}

static void rng_bytes(struct rng *r, uint8_t *out, size_t n)
{
    while (n > 0) {
        uint64_t v = rng_u64(r);
        size_t k = n < 8 ? n : 8;
        memcpy(out, &v, k);
        out += k;
        n -= k;
    }
}

/* ---------------------------------------------------------------- events */

enum ev_kind { EV_REQ = 1, EV_RESP, EV_TIMEOUT, EV_UP };

struct ev {
    uint64_t t, seq;
    int kind;
    int status;  /* EV_RESP: HTTP status */
    uint32_t id; /* exchange id, or node (EV_UP) */
    uint8_t *msg;
    size_t len;
};

struct heap {
    struct ev *v;
    size_t n, cap;
};

static int ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(struct heap *h, const struct ev *e)
{
    size_t i;

    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->v = realloc(h->v, h->cap * sizeof(*h->v));
        if (h->v == NULL)
            abort();
    }
    i = h->n++;
    while (i > 0 && ev_less(e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = *e;
}

static void heap_pop(struct heap *h, struct ev *out)
{
    struct ev last;
    size_t i = 0;

    *out = h->v[0];
    last = h->v[--h->n];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && ev_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!ev_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
}

/* ---------------------------------------------------------------- oracle */

struct oent {
    char *tbl, *key;
    uint8_t *val; /* NULL for a tombstone */
    size_t len;
    uint64_t hlc, seq;
    unsigned origin; /* node index */
    int deleted;
    int64_t expires;
    long row; /* sim_check: index of the matching dumped row, -1 */
};

struct ack {
    size_t ent;
    uint64_t hlc;
    unsigned origin;
};

/* ---------------------------------------------------------------- nodes */

struct sim;

struct node {
    struct sim *sim;
    unsigned idx;
    char id[16];
    char url[32];
    int64_t skew;
    struct rng rng; /* the engine's random bytes */
    unsigned incarnation;
    struct store *store;
    struct crdt_replica *rep;
    struct gsp_engine *eng;
    struct cry_identity *ident;
    char *kem_info;
    size_t kem_len;
    char db_url[256];
    int up;
    int group;
    uint64_t wake; /* global time of the next due() call */
    int poke;
    uint64_t polls_ms; /* the ms polls counts for */
    unsigned polls;
    uint64_t next_shuffle;
    unsigned *chosen; /* fan-out: the peers this round may contact */
    size_t n_chosen;
    unsigned *nbr; /* fan-out pool (pinned neighbours) */
    size_t n_nbr, cap_nbr;
    uint64_t acc_hlc_refused, acc_engine_refusals; /* earlier incarnations */
    size_t live_x;     /* exchanges this node started that are still open */
    struct crdt_vv vv; /* cached by node_vv() */
    uint64_t vv_gen;
    int vv_valid;
};

struct xch {
    struct gsp_exchange *x; /* NULL once finished or failed */
    uint32_t from, to;
    unsigned from_inc;
    int answered; /* a copy of the request got its response sent */
};

struct sim {
    struct sim_opts o;
    uint64_t now;
    uint64_t ev_seq;
    struct rng net, work, misc;
    struct node *nodes;
    struct heap heap;
    struct xch *xch;
    size_t n_xch, cap_xch;
    char dir[64];
    int changed;
    unsigned lag; /* the node that differed at the last convergence check */
    struct sim_stats st;
    /* oracle */
    struct oent *ent;
    size_t n_ent, cap_ent;
    size_t *tab; /* open addressing: index+1 into ent, 0 empty */
    size_t tab_cap;
    struct ack *acks;
    size_t n_acks, cap_acks;
    uint64_t fact_counter;
    uint64_t val_counter;
};

static const struct crdt_table_def tables[] = {
    {"kv", CRDT_LWW},
    {"revoked", CRDT_GROW_ONLY},
    {"cluster_nodes", CRDT_LWW},
};
static const char *const count_tables[] = {"kv", "revoked"};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static void vlog(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(struct sim *s, const char *fmt, ...)
{
    va_list ap;

    if (!s->o.verbose)
        return;
    fprintf(stderr, "[sim t=+%" PRIu64 "ms] ", s->now - SIM_EPOCH_MS);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint64_t node_clock(void *arg)
{
    struct node *n = arg;

    return (uint64_t)((int64_t)n->sim->now + n->skew);
}

static int node_rand(void *arg, uint8_t *out, size_t len)
{
    struct node *n = arg;

    rng_bytes(&n->rng, out, len);
    return 0;
}

/* The engine's wake-up (writer thread, before store_write returns). */
static void node_wake(void *arg)
{
    struct node *n = arg;

    n->poke = 1;
}

static int node_of_url(const struct sim *s, const char *url)
{
    char *end;
    unsigned long v;

    if (strncmp(url, URL_PREFIX "n", strlen(URL_PREFIX) + 1) != 0)
        return -1;
    v = strtoul(url + strlen(URL_PREFIX) + 1, &end, 10);
    if (*end != '\0' || v >= s->o.n)
        return -1;
    return (int)v;
}

static int node_of_id(const struct sim *s, const char *id)
{
    char *end;
    unsigned long v;

    if (id[0] != 'n')
        return -1;
    v = strtoul(id + 1, &end, 10);
    if (*end != '\0' || v >= s->o.n)
        return -1;
    return (int)v;
}

static int reachable(const struct sim *s, unsigned a, unsigned b)
{
    return s->nodes[a].group == s->nodes[b].group;
}

static uint64_t engine_refusals(struct gsp_engine *e)
{
    json_t *st = gsp_engine_status(e), *ref, *v;
    const char *k;
    uint64_t sum = 0;

    ref = json_object_get(json_object_get(st, "totals"), "refusals");
    json_object_foreach(ref, k, v)
    {
        (void)k;
        if (json_is_integer(v))
            sum += (uint64_t)json_integer_value(v);
    }
    json_decref(st);
    return sum;
}

static void nbr_add(struct node *n, unsigned j)
{
    for (size_t i = 0; i < n->n_nbr; i++)
        if (n->nbr[i] == j)
            return;
    if (n->n_nbr == n->cap_nbr) {
        n->cap_nbr = n->cap_nbr ? n->cap_nbr * 2 : 8;
        n->nbr = xrealloc(n->nbr, n->cap_nbr * sizeof(*n->nbr));
    }
    n->nbr[n->n_nbr++] = j;
}

/* Fan-out: picks `fanout` random neighbours of the pool; until the next
 * interval the driver acts only on due items for them. */
static void pick_peers(struct sim *s, struct node *n)
{
    size_t k = s->o.fanout < n->n_nbr ? s->o.fanout : n->n_nbr;

    n->chosen = xrealloc(n->chosen, (n->n_nbr + 1) * sizeof(*n->chosen));
    memcpy(n->chosen, n->nbr, n->n_nbr * sizeof(*n->chosen));
    for (size_t i = 0; i < k; i++) { /* partial Fisher-Yates */
        size_t j = i + rng_below(&s->misc, n->n_nbr - i);
        unsigned t = n->chosen[i];
        n->chosen[i] = n->chosen[j];
        n->chosen[j] = t;
    }
    n->n_chosen = k;
}

static int is_chosen(const struct node *n, unsigned peer)
{
    for (size_t i = 0; i < n->n_chosen; i++)
        if (n->chosen[i] == peer)
            return 1;
    return 0;
}

static int node_start(struct sim *s, struct node *n, struct ut_err *err)
{
    struct crdt_opts co = {.origin = n->id,
                           .tables = tables,
                           .n_tables = sizeof(tables) / sizeof(tables[0]),
                           .tombstone_ttl_ms = s->o.tombstone_ttl_ms,
                           .max_skew_ms = s->o.max_skew_ms,
                           .clock = node_clock,
                           .clock_arg = n};
    struct gsp_engine_opts eo = {0};
    const char **peers = NULL;
    char(*urls)[32] = NULL;
    size_t n_peers = 0;
    int rc;

    if (n->store == NULL) {
        struct store_opts so = {.url = n->db_url};
        if ((rc = store_open(&n->store, &so, err)) < 0)
            return rc;
    }
    if ((rc = crdt_replica_open(&n->rep, n->store, &co, err)) < 0)
        return rc;
    n->incarnation++;
    rng_seed(&n->rng, s->o.seed, ((uint64_t)n->idx << 20) ^ n->incarnation ^ 0x5eedull << 40);
    if (s->o.topo == SIM_TOPO_MESH_RESOLVE) {
        urls = xrealloc(NULL, s->o.n * sizeof(*urls));
        peers = xrealloc(NULL, s->o.n * sizeof(*peers));
        for (unsigned j = 0; j < s->o.n; j++) {
            if (j == n->idx)
                continue;
            snprintf(urls[n_peers], sizeof(urls[0]), "%s", s->nodes[j].url);
            peers[n_peers] = urls[n_peers];
            n_peers++;
        }
    } else if (s->o.topo == SIM_TOPO_FANOUT) {
        pick_peers(s, n);
        n->next_shuffle = (s->now / s->o.interval_ms + 1) * s->o.interval_ms;
    }
    eo.store = n->store;
    eo.replica = n->rep;
    eo.identity = n->ident;
    eo.self_url = n->url;
    eo.peers = peers;
    eo.n_peers = n_peers;
    eo.count_tables = count_tables;
    eo.n_count_tables = sizeof(count_tables) / sizeof(count_tables[0]);
    eo.log_module = "gossip";
    eo.header_name = HEADER_NAME;
    eo.interval_ms = s->o.interval_ms;
    eo.push_delay_ms = s->o.push_delay_ms;
    eo.page_bytes = s->o.page_bytes;
    eo.skip_max = s->o.skip_max;
    eo.retry_ms = s->o.retry_ms;
    eo.sessions = s->o.sessions;
    eo.clock = node_clock;
    eo.clock_arg = n;
    eo.rand = node_rand;
    eo.rand_arg = n;
    rc = gsp_engine_new(&n->eng, &eo, err);
    free(urls);
    free(peers);
    if (rc < 0) {
        ut_err_prefix(err, "node %s: gsp_engine_new", n->id);
        crdt_replica_free(n->rep);
        n->rep = NULL;
        return rc;
    }
    gsp_engine_set_wakeup(n->eng, node_wake, n);
    n->up = 1;
    n->wake = s->now;
    n->poke = 1;
    s->changed = 1;
    return 0;
}

static void node_stop(struct sim *s, struct node *n)
{
    /* The requester side of every exchange in flight dies with the process. */
    for (size_t i = s->n_xch; i-- > 0 && n->live_x > 0;) {
        struct xch *x = &s->xch[i];
        if (x->x != NULL && x->from == n->idx) {
            gsp_engine_fail(n->eng, x->x, 0, "simulated restart");
            x->x = NULL;
            n->live_x--;
            s->st.fails++;
        }
    }
    if (n->eng != NULL) {
        n->acc_engine_refusals += engine_refusals(n->eng);
        gsp_engine_free(n->eng);
        n->eng = NULL;
    }
    crdt_vv_free(&n->vv);
    n->vv_valid = 0;
    if (n->rep != NULL) {
        n->acc_hlc_refused += crdt_hlc_refused(crdt_replica_hlc(n->rep));
        crdt_replica_free(n->rep);
        n->rep = NULL;
    }
    if (s->o.file_stores && n->store != NULL) {
        store_close(n->store);
        n->store = NULL;
    }
    n->up = 0;
}

/* Deterministic keys from the seed (cry_identity_load), so a rerun with
 * the same seed produces the same bytes everywhere. */
static int node_identity(struct sim *s, struct node *n, struct ut_err *err)
{
    uint8_t seed[CRY_XWING_SK_BYTES], priv[CRY_P256_PRIV_BYTES];
    json_t *j;
    int rc;

    rng_bytes(&s->misc, seed, sizeof(seed));
    rng_bytes(&s->misc, priv, sizeof(priv));
    priv[0] &= 0x7f; /* < the group order */
    priv[31] |= 1;   /* nonzero */
    rc = cry_identity_load(n->id, seed, priv, &n->ident, err);
    memset(seed, 0, sizeof(seed));
    memset(priv, 0, sizeof(priv));
    if (rc < 0)
        return rc;
    j = gsp_kem_info_json(n->ident);
    n->kem_info = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (n->kem_info == NULL) {
        ut_err_set(err, "node %s: kem-info", n->id);
        return -ENOMEM;
    }
    n->kem_len = strlen(n->kem_info);
    return 0;
}

static int seed_pair(struct sim *s, unsigned a, unsigned b, int with_url, struct ut_err *err)
{
    struct node *na = &s->nodes[a], *nb = &s->nodes[b];
    int rc = gsp_engine_seed(na->eng, nb->kem_info, nb->kem_len, with_url ? nb->url : NULL, err);

    if (rc < 0)
        ut_err_prefix(err, "seed %s with %s", na->id, nb->id);
    return rc;
}

int sim_new(struct sim **out, const struct sim_opts *o, struct ut_err *err)
{
    struct sim *s = calloc(1, sizeof(*s));
    int rc = 0;

    *out = NULL;
    if (s == NULL)
        return -ENOMEM;
    s->o = *o;
    if (s->o.n == 0 || s->o.n > 9999) {
        free(s);
        ut_err_set(err, "sim: n must be 1..9999");
        return -EINVAL;
    }
    if (s->o.interval_ms == 0)
        s->o.interval_ms = 1000;
    if (s->o.fanout == 0)
        s->o.fanout = 2;
    if (s->o.pool == 0)
        s->o.pool = 8;
    if (s->o.delay_max_ms == 0) {
        s->o.delay_min_ms = 1;
        s->o.delay_max_ms = 40;
    }
    if (s->o.delay_min_ms == 0)
        s->o.delay_min_ms = 1;
    if (s->o.delay_max_ms < s->o.delay_min_ms)
        s->o.delay_max_ms = s->o.delay_min_ms;
    if (s->o.timeout_ms == 0)
        s->o.timeout_ms = 2000;
    if (s->o.n_keys == 0)
        s->o.n_keys = 64;
    if (s->o.check_ms == 0)
        s->o.check_ms = s->o.interval_ms / 20 ? s->o.interval_ms / 20 : 1;
    s->now = SIM_EPOCH_MS;
    rng_seed(&s->net, s->o.seed, 1);
    rng_seed(&s->work, s->o.seed, 2);
    rng_seed(&s->misc, s->o.seed, 3);
    if (s->o.file_stores) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/gsp-sim-XXXXXX");
        if (mkdtemp(s->dir) == NULL) {
            free(s);
            ut_err_set(err, "sim: mkdtemp: %s", strerror(errno));
            return -errno;
        }
    }
    s->nodes = calloc(s->o.n, sizeof(*s->nodes));
    if (s->nodes == NULL) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    for (unsigned i = 0; i < s->o.n; i++) {
        struct node *n = &s->nodes[i];
        n->sim = s;
        n->idx = i;
        snprintf(n->id, sizeof(n->id), "n%04u", i);
        snprintf(n->url, sizeof(n->url), URL_PREFIX "%s", n->id);
        if (s->o.file_stores)
            snprintf(n->db_url, sizeof(n->db_url), "sqlite://%s/%s.db", s->dir, n->id);
        else
            snprintf(n->db_url, sizeof(n->db_url), "sqlite::memory:");
        if ((rc = node_identity(s, n, err)) < 0)
            return rc;
    }
    if (s->o.topo == SIM_TOPO_FANOUT) {
        /* A ring (connectivity guaranteed) plus `pool` random neighbours,
         * pinned in both directions. */
        for (unsigned i = 0; i < s->o.n && s->o.n > 1; i++) {
            unsigned j = (i + 1) % s->o.n;
            nbr_add(&s->nodes[i], j);
            nbr_add(&s->nodes[j], i);
            for (unsigned k = 0; k < s->o.pool; k++) {
                j = (unsigned)rng_below(&s->misc, s->o.n - 1);
                j += j >= i;
                nbr_add(&s->nodes[i], j);
                nbr_add(&s->nodes[j], i);
            }
        }
    }
    for (unsigned i = 0; i < s->o.n; i++)
        if ((rc = node_start(s, &s->nodes[i], err)) < 0)
            return rc;
    for (unsigned i = 0; i < s->o.n; i++) {
        struct node *n = &s->nodes[i];
        if (s->o.topo == SIM_TOPO_FANOUT) {
            for (size_t k = 0; k < n->n_nbr; k++)
                if ((rc = seed_pair(s, i, n->nbr[k], 1, err)) < 0)
                    return rc;
        } else {
            for (unsigned j = 0; j < s->o.n; j++)
                if (j != i && (rc = seed_pair(s, i, j, s->o.topo == SIM_TOPO_MESH, err)) < 0)
                    return rc;
        }
        n->poke = 1;
    }
    vlog(s, "%u nodes up (seed %" PRIu64 ")", s->o.n, s->o.seed);
    return 0;
}

void sim_free(struct sim *s)
{
    struct ev e;

    if (s == NULL)
        return;
    while (s->heap.n > 0) {
        heap_pop(&s->heap, &e);
        free(e.msg);
    }
    free(s->heap.v);
    for (unsigned i = 0; i < s->o.n && s->nodes; i++) {
        struct node *n = &s->nodes[i];
        node_stop(s, n);
        if (n->store != NULL)
            store_close(n->store);
        cry_identity_free(n->ident);
        free(n->kem_info);
        free(n->nbr);
        free(n->chosen);
    }
    free(s->nodes);
    free(s->xch);
    for (size_t i = 0; i < s->n_ent; i++) {
        free(s->ent[i].tbl);
        free(s->ent[i].key);
        free(s->ent[i].val);
    }
    free(s->ent);
    free(s->tab);
    free(s->acks);
    if (s->dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "sim: could not remove %s\n", s->dir);
    }
    free(s);
}

uint64_t sim_seed(const struct sim *s)
{
    return s->o.seed;
}

unsigned sim_n(const struct sim *s)
{
    return s->o.n;
}

uint64_t sim_now(const struct sim *s)
{
    return s->now;
}

uint64_t sim_interval(const struct sim *s)
{
    return s->o.interval_ms;
}

const char *sim_node_id(const struct sim *s, unsigned i)
{
    return i < s->o.n ? s->nodes[i].id : "?";
}

int sim_is_up(const struct sim *s, unsigned i)
{
    return i < s->o.n && s->nodes[i].up;
}

/* ---------------------------------------------------------------- network */

static void push_ev(struct sim *s, uint64_t t, int kind, uint32_t id, uint8_t *msg, size_t len,
                    int status)
{
    struct ev e = {.t = t, .seq = s->ev_seq++, .kind = kind, .status = status, .id = id};

    e.msg = msg;
    e.len = len;
    heap_push(&s->heap, &e);
}

static uint64_t net_delay(struct sim *s)
{
    uint64_t d = s->o.delay_min_ms + rng_below(&s->net, s->o.delay_max_ms - s->o.delay_min_ms + 1);

    if (rng_chance(&s->net, s->o.straggle))
        d += rng_below(&s->net, 20ull * s->o.delay_max_ms + 1);
    return d;
}

/* Puts a message on the wire from -> to (ownership of msg passes). */
static void send_msg(struct sim *s, int kind, uint32_t xid, unsigned from, unsigned to,
                     uint8_t *msg, size_t len, int status)
{
    s->st.msgs++;
    s->st.bytes += len;
    if (!reachable(s, from, to)) {
        s->st.partitioned++;
        free(msg);
        return;
    }
    if (rng_chance(&s->net, s->o.loss)) {
        s->st.lost++;
        free(msg);
        return;
    }
    if (rng_chance(&s->net, s->o.dup)) {
        uint8_t *copy = NULL;
        if (msg != NULL) {
            copy = xrealloc(NULL, len);
            memcpy(copy, msg, len);
        }
        s->st.duplicated++;
        s->st.msgs++;
        s->st.bytes += len;
        push_ev(s, s->now + net_delay(s), kind, xid, copy, len, status);
    }
    push_ev(s, s->now + net_delay(s), kind, xid, msg, len, status);
}

static uint32_t new_xch(struct sim *s, struct gsp_exchange *x, unsigned from, unsigned to)
{
    if (s->n_xch == s->cap_xch) {
        s->cap_xch = s->cap_xch ? s->cap_xch * 2 : 4096;
        s->xch = xrealloc(s->xch, s->cap_xch * sizeof(*s->xch));
    }
    s->xch[s->n_xch] = (struct xch){.x = x, .from = from, .to = to};
    s->xch[s->n_xch].from_inc = s->nodes[from].incarnation;
    s->nodes[from].live_x++;
    return (uint32_t)s->n_xch++;
}

static void on_request(struct sim *s, struct ev *e)
{
    struct xch *xc = &s->xch[e->id];
    struct node *to = &s->nodes[xc->to];
    struct ut_err err = {{0}};
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int status = 0, rc;

    if (!to->up || !reachable(s, xc->from, xc->to)) {
        s->st.partitioned++;
        return;
    }
    rc = gsp_engine_handle(to->eng, e->msg, e->len, s->nodes[xc->from].id, &resp, &rlen, &status,
                           &err);
    to->poke = 1;
    s->changed = 1;
    if (rc == 0) {
        s->st.handled++;
        if (status == 0)
            status = 200;
    } else {
        s->st.handle_refused++;
        s->st.refused_409 += status == 409;
        if (status == 0 || status == 200)
            status = 500;
        free(resp);
        resp = NULL;
        rlen = 0;
        vlog(s, "%s refused request from %s: %d %s", to->id, s->nodes[xc->from].id, status,
             err.msg);
    }
    if (xc->answered) { /* a duplicate: nobody waits for this response */
        free(resp);
        return;
    }
    xc->answered = 1;
    send_msg(s, EV_RESP, e->id, xc->to, xc->from, resp, rlen, status);
}

static void on_response(struct sim *s, struct ev *e)
{
    struct xch *xc = &s->xch[e->id];
    struct node *from = &s->nodes[xc->from];
    struct ut_err err = {{0}};
    struct gsp_exchange *x = xc->x;
    int rc;

    if (x == NULL) { /* timed out, restarted, or a duplicate */
        s->st.late++;
        return;
    }
    if (!from->up || !reachable(s, xc->to, xc->from)) {
        s->st.partitioned++; /* the requester times out */
        return;
    }
    xc->x = NULL;
    from->live_x--;
    from->poke = 1;
    s->changed = 1;
    if (e->status == 200) {
        rc = gsp_engine_finish(from->eng, x, e->msg, e->len, &err);
        if (rc == 0) {
            s->st.finished++;
        } else {
            s->st.finish_errors++;
            vlog(s, "%s: finish(%s) failed: %s", from->id, s->nodes[xc->to].id, err.msg);
        }
    } else {
        char why[32];
        snprintf(why, sizeof(why), "HTTP %d", e->status);
        gsp_engine_fail(from->eng, x, e->status, why);
        s->st.fails++;
    }
}

static void on_timeout(struct sim *s, struct ev *e)
{
    struct xch *xc = &s->xch[e->id];
    struct node *from = &s->nodes[xc->from];

    if (xc->x == NULL)
        return;
    gsp_engine_fail(from->eng, xc->x, 0, "simulated timeout");
    xc->x = NULL;
    from->live_x--;
    from->poke = 1;
    s->st.fails++;
    s->st.timeouts++;
}

static void do_due_item(struct sim *s, struct node *n, const struct gsp_due *d)
{
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL;
    size_t len = 0;
    uint32_t xid;
    int to;

    if (d->kind == GSP_DUE_RESOLVE) {
        /* The kem-info fetch: instantaneous, but it needs a path. */
        to = node_of_url(s, d->url);
        if (to < 0 || !s->nodes[to].up || !reachable(s, n->idx, (unsigned)to))
            return;
        if (gsp_engine_resolve_url(n->eng, d->url, s->nodes[to].id, &err) < 0)
            vlog(s, "%s: resolve %s: %s", n->id, d->url, err.msg);
        s->st.resolves++;
        return;
    }
    if (d->url[0] == '\0')
        return; /* no URL: the peer contacts us */
    to = node_of_url(s, d->url);
    if (to < 0 || node_of_id(s, d->node_id) != to) {
        vlog(s, "%s: due item for %s has url '%s'", n->id, d->node_id, d->url);
        s->st.begin_errors++;
        return;
    }
    if (gsp_engine_begin(n->eng, d->node_id, d->kind, &msg, &len, &x, &err) < 0) {
        s->st.begin_errors++;
        vlog(s, "%s: begin(%s): %s", n->id, d->node_id, err.msg);
        return;
    }
    s->st.exchanges++;
    xid = new_xch(s, x, n->idx, (unsigned)to);
    push_ev(s, s->now + s->o.timeout_ms, EV_TIMEOUT, xid, NULL, 0, 0);
    send_msg(s, EV_REQ, xid, n->idx, (unsigned)to, msg, len, 0);
}

static void node_due(struct sim *s, struct node *n)
{
    struct gsp_due due[DUE_MAX];
    uint64_t next = 0, wake;
    size_t k, acted = 0;

    if (s->o.topo == SIM_TOPO_FANOUT && s->now >= n->next_shuffle) {
        pick_peers(s, n);
        while (n->next_shuffle <= s->now)
            n->next_shuffle += s->o.interval_ms;
    }
    if (n->polls_ms != s->now) {
        n->polls_ms = s->now;
        n->polls = 0;
    }
    n->polls++;
    k = gsp_engine_due(n->eng, due, DUE_MAX, &next);
    for (size_t i = 0; i < k; i++) {
        if (s->o.topo == SIM_TOPO_FANOUT && due[i].kind != GSP_DUE_RESOLVE) {
            int to = node_of_id(s, due[i].node_id);
            if (to < 0 || !is_chosen(n, (unsigned)to)) {
                s->st.not_chosen++;
                continue; /* not one of this round's fan-out */
            }
        }
        do_due_item(s, n, &due[i]);
        acted++;
    }
    /* Like the HTTP driver: items were due, so ask again at once. */
    n->poke = acted > 0 && n->polls < POLLS_PER_MS;
    if (next == 0)
        wake = s->now + s->o.interval_ms;
    else
        wake = (uint64_t)((int64_t)next - n->skew);
    if (wake <= s->now)
        wake = s->now + 1;
    if (s->o.topo == SIM_TOPO_FANOUT && n->next_shuffle < wake)
        wake = n->next_shuffle;
    n->wake = wake;
}

/* Processes everything due at s->now, then moves s->now to the next
 * event (at most limit). Returns 1 when limit was reached. */
static int step(struct sim *s, uint64_t limit)
{
    uint64_t next = UINT64_MAX;
    int busy = 1;

    while (busy) {
        busy = 0;
        while (s->heap.n > 0 && s->heap.v[0].t <= s->now) {
            struct ev e;
            heap_pop(&s->heap, &e);
            busy = 1;
            switch (e.kind) {
            case EV_REQ:
                on_request(s, &e);
                break;
            case EV_RESP:
                on_response(s, &e);
                break;
            case EV_TIMEOUT:
                on_timeout(s, &e);
                break;
            case EV_UP: {
                struct ut_err err = {{0}};
                if (node_start(s, &s->nodes[e.id], &err) < 0) {
                    fprintf(stderr, "sim: restart of %s failed: %s\n", s->nodes[e.id].id, err.msg);
                    abort();
                }
                vlog(s, "%s up again", s->nodes[e.id].id);
                break;
            }
            }
            free(e.msg);
        }
        for (unsigned i = 0; i < s->o.n; i++) {
            struct node *n = &s->nodes[i];
            if (n->up && (n->poke || n->wake <= s->now)) {
                node_due(s, n);
                busy = 1;
            }
        }
    }
    if (s->heap.n > 0)
        next = s->heap.v[0].t;
    for (unsigned i = 0; i < s->o.n; i++)
        if (s->nodes[i].up && s->nodes[i].wake < next)
            next = s->nodes[i].wake;
    if (next > limit) {
        s->now = limit;
        return 1;
    }
    s->now = next > s->now ? next : s->now + 1;
    return 0;
}

int sim_run(struct sim *s, uint64_t ms, struct ut_err *err)
{
    uint64_t end = s->now + ms;

    (void)err;
    while (!step(s, end))
        ;
    return 0;
}

void sim_set_loss(struct sim *s, double loss, double dup, double straggle)
{
    s->o.loss = loss;
    s->o.dup = dup;
    s->o.straggle = straggle;
}

void sim_partition(struct sim *s, const int *group)
{
    for (unsigned i = 0; i < s->o.n; i++)
        s->nodes[i].group = group[i];
    vlog(s, "partition");
}

void sim_partition_random(struct sim *s, unsigned k)
{
    int *g = xrealloc(NULL, s->o.n * sizeof(*g));
    unsigned *perm = xrealloc(NULL, s->o.n * sizeof(*perm));

    if (k < 1)
        k = 1;
    if (k > s->o.n)
        k = s->o.n;
    for (unsigned i = 0; i < s->o.n; i++)
        perm[i] = i;
    for (unsigned i = s->o.n - 1; i > 0; i--) {
        unsigned j = (unsigned)rng_below(&s->misc, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* The first k of the permutation found the groups; the rest join one. */
    for (unsigned i = 0; i < s->o.n; i++)
        g[perm[i]] = i < k ? (int)i : (int)rng_below(&s->misc, k);
    sim_partition(s, g);
    free(g);
    free(perm);
}

void sim_set_fanout(struct sim *s, unsigned fanout)
{
    s->o.fanout = fanout ? fanout : 1;
}

void sim_heal(struct sim *s)
{
    for (unsigned i = 0; i < s->o.n; i++)
        s->nodes[i].group = 0;
    vlog(s, "healed");
}

int sim_restart(struct sim *s, unsigned i, uint64_t down_ms, struct ut_err *err)
{
    struct node *n;

    if (i >= s->o.n || !s->nodes[i].up) {
        ut_err_set(err, "sim_restart: node %u is not up", i);
        return -EINVAL;
    }
    n = &s->nodes[i];
    node_stop(s, n);
    s->st.restarts++;
    vlog(s, "%s restarting (down %" PRIu64 " ms)", n->id, down_ms);
    if (down_ms == 0)
        return node_start(s, n, err);
    push_ev(s, s->now + down_ms, EV_UP, i, NULL, 0, 0);
    return 0;
}

void sim_set_skew(struct sim *s, unsigned i, int64_t skew_ms)
{
    if (i < s->o.n)
        s->nodes[i].skew = skew_ms;
}

void sim_random_skew(struct sim *s, int64_t max_ms)
{
    for (unsigned i = 0; i < s->o.n; i++)
        s->nodes[i].skew =
            max_ms > 0 ? (int64_t)rng_below(&s->misc, 2 * (uint64_t)max_ms + 1) - max_ms : 0;
}

/* ---------------------------------------------------------------- oracle */

static uint64_t hash_key(const char *tbl, const char *key)
{
    uint64_t h = 1469598103934665603ull;

    for (const char *p = tbl; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0x1f) * 1099511628211ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static struct oent *oracle_find(struct sim *s, const char *tbl, const char *key, int create)
{
    size_t i;

    if (create && (s->n_ent + 1) * 2 > s->tab_cap) {
        size_t cap = s->tab_cap ? s->tab_cap * 2 : 1024;
        free(s->tab);
        s->tab = calloc(cap, sizeof(*s->tab));
        if (s->tab == NULL)
            abort();
        s->tab_cap = cap;
        for (size_t k = 0; k < s->n_ent; k++) {
            i = hash_key(s->ent[k].tbl, s->ent[k].key) & (cap - 1);
            while (s->tab[i] != 0)
                i = (i + 1) & (cap - 1);
            s->tab[i] = k + 1;
        }
    }
    if (s->tab_cap == 0)
        return NULL;
    i = hash_key(tbl, key) & (s->tab_cap - 1);
    while (s->tab[i] != 0) {
        struct oent *e = &s->ent[s->tab[i] - 1];
        if (strcmp(e->tbl, tbl) == 0 && strcmp(e->key, key) == 0)
            return e;
        i = (i + 1) & (s->tab_cap - 1);
    }
    if (!create)
        return NULL;
    if (s->n_ent == s->cap_ent) {
        s->cap_ent = s->cap_ent ? s->cap_ent * 2 : 256;
        s->ent = xrealloc(s->ent, s->cap_ent * sizeof(*s->ent));
    }
    s->ent[s->n_ent] = (struct oent){.tbl = strdup(tbl), .key = strdup(key), .row = -1};
    if (s->ent[s->n_ent].tbl == NULL || s->ent[s->n_ent].key == NULL)
        abort();
    s->tab[i] = ++s->n_ent;
    return &s->ent[s->n_ent - 1];
}

/* The crdt.h order: hlc, then origin bytewise (shorter first on a tie). */
static int stamp_cmp(uint64_t ha, const char *oa, uint64_t hb, const char *ob)
{
    size_t la = strlen(oa), lb = strlen(ob);
    int c;

    if (ha != hb)
        return ha < hb ? -1 : 1;
    c = memcmp(oa, ob, la < lb ? la : lb);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : la > lb;
}

struct wjob {
    struct node *n;
    const char *tbl, *key;
    const void *val;
    size_t len;
    int64_t expires;
    int del;
    /* out: the row as committed */
    uint64_t hlc, seq;
    int deleted;
    char origin[CRY_ENV_ID_MAX + 1];
};

static int wjob_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct wjob *j = arg;
    sqlite3_stmt *st;
    int rc;

    if (j->del)
        rc = crdt_delete(j->n->rep, db, j->tbl, j->key, err);
    else
        rc = crdt_put(j->n->rep, db, j->tbl, j->key, j->val, j->len, j->expires, err);
    if (rc < 0)
        return rc;
    st = store_stmt(j->n->store, db,
                    "SELECT hlc, origin, seq, deleted FROM crdt_rows WHERE tbl = ?1 AND key = ?2",
                    err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, j->tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        ut_err_set(err, "sim: row %s/%s missing right after the write", j->tbl, j->key);
        return -EIO;
    }
    j->hlc = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(j->origin, sizeof(j->origin), "%s", (const char *)sqlite3_column_text(st, 1));
    j->seq = (uint64_t)sqlite3_column_int64(st, 2);
    j->deleted = sqlite3_column_int(st, 3);
    sqlite3_reset(st);
    return 0;
}

int sim_write(struct sim *s, unsigned node, const char *tbl, const char *key, const void *value,
              size_t len, struct ut_err *err)
{
    struct wjob j = {0};
    struct oent *e;
    int rc;

    if (node >= s->o.n || !s->nodes[node].up) {
        ut_err_set(err, "sim_write: node %u is down", node);
        return -EAGAIN;
    }
    j.n = &s->nodes[node];
    j.tbl = tbl;
    j.key = key;
    j.val = value;
    j.len = len;
    j.del = value == NULL;
    j.expires = strcmp(tbl, "revoked") == 0 ? (int64_t)(s->now + FACT_TTL_MS) : 0;
    rc = store_write(j.n->store, wjob_fn, &j, err);
    if (rc < 0)
        return rc;
    /* Acknowledged: into the oracle. */
    if (strcmp(j.origin, j.n->id) != 0 || j.deleted != j.del) {
        ut_err_set(err, "sim_write: %s/%s at %s committed as origin %s deleted %d", tbl, key,
                   j.n->id, j.origin, j.deleted);
        return -EPROTO;
    }
    e = oracle_find(s, tbl, key, 1);
    if (e->hlc == 0 || stamp_cmp(j.hlc, j.origin, e->hlc, s->nodes[e->origin].id) > 0) {
        free(e->val);
        e->val = NULL;
        e->len = len;
        if (!j.del) {
            e->val = xrealloc(NULL, len);
            memcpy(e->val, value, len);
        } else {
            e->len = 0;
        }
        e->hlc = j.hlc;
        e->seq = j.seq;
        e->origin = node;
        e->deleted = j.del;
        e->expires = j.expires;
    }
    if (s->n_acks == s->cap_acks) {
        s->cap_acks = s->cap_acks ? s->cap_acks * 2 : 1024;
        s->acks = xrealloc(s->acks, s->cap_acks * sizeof(*s->acks));
    }
    s->acks[s->n_acks++] = (struct ack){.ent = (size_t)(e - s->ent), .hlc = j.hlc, .origin = node};
    if (j.del)
        s->st.deletes++;
    else
        s->st.writes++;
    j.n->poke = 1;
    s->changed = 1;
    return 0;
}

static int random_up_node(struct sim *s)
{
    unsigned start = (unsigned)rng_below(&s->work, s->o.n);

    for (unsigned k = 0; k < s->o.n; k++) {
        unsigned i = (start + k) % s->o.n;
        if (s->nodes[i].up)
            return (int)i;
    }
    return -1;
}

int sim_random_op(struct sim *s, unsigned del_pct, struct ut_err *err)
{
    int node = random_up_node(s);
    char key[48], val[160];
    size_t len;
    unsigned r;

    if (node < 0)
        return 0;
    r = (unsigned)rng_below(&s->work, 100);
    if (r < 10) { /* a new fact */
        snprintf(key, sizeof(key), "fact-%" PRIu64, ++s->fact_counter);
        len = (size_t)snprintf(val, sizeof(val), "{\"by\":\"%s\",\"n\":%" PRIu64 "}",
                               s->nodes[node].id, s->fact_counter);
        return sim_write(s, (unsigned)node, "revoked", key, val, len, err);
    }
    snprintf(key, sizeof(key), "k%03u", (unsigned)rng_below(&s->work, s->o.n_keys));
    if (rng_below(&s->work, 100) < del_pct)
        return sim_write(s, (unsigned)node, "kv", key, NULL, 0, err);
    len = (size_t)snprintf(val, sizeof(val), "v-%s-%" PRIu64 "-", s->nodes[node].id,
                           ++s->val_counter);
    /* A random tail; one value in eight is binary (NUL bytes included). */
    {
        size_t tail = (size_t)rng_below(&s->work, 64);
        int bin = rng_below(&s->work, 8) == 0;
        for (size_t i = 0; i < tail && len < sizeof(val); i++)
            val[len++] =
                bin ? (char)rng_below(&s->work, 256) : (char)('a' + rng_below(&s->work, 26));
    }
    return sim_write(s, (unsigned)node, "kv", key, val, len, err);
}

int sim_workload(struct sim *s, unsigned ops, uint64_t ms, unsigned del_pct, struct ut_err *err)
{
    uint64_t start = s->now;
    int rc;

    for (unsigned i = 0; i < ops; i++) {
        uint64_t at = start + (ops > 1 ? ms * i / ops : 0);
        if (at > s->now && (rc = sim_run(s, at - s->now, err)) < 0)
            return rc;
        if ((rc = sim_random_op(s, del_pct, err)) < 0)
            return rc;
    }
    if (start + ms > s->now)
        return sim_run(s, start + ms - s->now, err);
    return 0;
}

struct gcjob {
    struct node *n;
    uint64_t purged;
};

static int gc_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct gcjob *j = arg;
    uint64_t p = 0;
    int rc = crdt_gc(j->n->rep, db, &p, err);

    j->purged += p;
    return rc;
}

int sim_gc(struct sim *s, uint64_t *purged, struct ut_err *err)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < s->o.n; i++) {
        struct gcjob j = {.n = &s->nodes[i]};
        int rc;
        if (!s->nodes[i].up)
            continue;
        if ((rc = store_write(s->nodes[i].store, gc_fn, &j, err)) < 0)
            return rc;
        total += j.purged;
    }
    if (purged)
        *purged = total;
    return 0;
}

/* ---------------------------------------------------------------- checks */

struct row {
    char *tbl, *key, *origin;
    uint8_t *val;
    size_t len;
    int vtype;
    uint64_t hlc, seq;
    int deleted;
    int64_t expires;
};

struct dump {
    struct row *r;
    size_t n, cap;
    uint8_t digest[32];
};

static void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->r[i].tbl);
        free(d->r[i].key);
        free(d->r[i].origin);
        free(d->r[i].val);
    }
    free(d->r);
    memset(d, 0, sizeof(*d));
}

static char *col_str(sqlite3_stmt *st, int c)
{
    const char *p = (const char *)sqlite3_column_text(st, c);
    char *r = strdup(p ? p : "");

    if (r == NULL)
        abort();
    return r;
}

static int node_dump(struct sim *s, struct node *n, struct dump *d, int keep, struct ut_err *err)
{
    sqlite3 *db = store_reader(n->store, err);
    sqlite3_stmt *st;
    EVP_MD_CTX *md;
    int rc;

    (void)s;
    memset(d, 0, sizeof(*d));
    if (db == NULL)
        return -EIO;
    st = store_stmt(n->store, db,
                    "SELECT tbl, key, value, hlc, origin, seq, deleted, expires FROM crdt_rows "
                    "ORDER BY tbl, key",
                    err);
    if (st == NULL)
        return -EIO;
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        abort();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < 8; c++) {
            int type = sqlite3_column_type(st, c);
            const void *p = sqlite3_column_blob(st, c);
            int64_t len = sqlite3_column_bytes(st, c);
            EVP_DigestUpdate(md, &type, sizeof(type));
            EVP_DigestUpdate(md, &len, sizeof(len));
            if (p != NULL && len > 0)
                EVP_DigestUpdate(md, p, (size_t)len);
        }
        if (!keep)
            continue;
        if (d->n == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 256;
            d->r = xrealloc(d->r, d->cap * sizeof(*d->r));
        }
        struct row *r = &d->r[d->n++];
        r->tbl = col_str(st, 0);
        r->key = col_str(st, 1);
        r->vtype = sqlite3_column_type(st, 2);
        r->len = (size_t)sqlite3_column_bytes(st, 2);
        r->val = xrealloc(NULL, r->len);
        if (r->len)
            memcpy(r->val, sqlite3_column_blob(st, 2), r->len);
        r->hlc = (uint64_t)sqlite3_column_int64(st, 3);
        r->origin = col_str(st, 4);
        r->seq = (uint64_t)sqlite3_column_int64(st, 5);
        r->deleted = sqlite3_column_int(st, 6);
        r->expires = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    EVP_DigestFinal_ex(md, d->digest, NULL);
    EVP_MD_CTX_free(md);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "%s: dump: %s", n->id, sqlite3_errstr(rc));
        return -EIO;
    }
    return 0;
}

static void fmt_row(const struct row *r, char *out, size_t n)
{
    char v[48];
    size_t k = 0;

    for (size_t i = 0; i < r->len && k + 4 < sizeof(v); i++) {
        unsigned char c = r->val[i];
        if (c >= 0x20 && c < 0x7f)
            v[k++] = (char)c;
        else
            k += (size_t)snprintf(v + k, sizeof(v) - k, "\\%02x", c);
    }
    v[k < sizeof(v) ? k : sizeof(v) - 1] = '\0';
    snprintf(out, n,
             "%s/%s hlc=%" PRIu64 " origin=%s seq=%" PRIu64 " del=%d exp=%" PRId64
             " value(%zu,type %d)=\"%s\"",
             r->tbl, r->key, r->hlc, r->origin, r->seq, r->deleted, r->expires, r->len, r->vtype,
             v);
}

/* Describes the first difference between two dumps. */
static void dump_diff(const struct dump *a, const struct dump *b, const char *na, const char *nb,
                      struct ut_err *err)
{
    size_t i = 0, j = 0;
    char ra[400], rb[400];

    while (i < a->n && j < b->n) {
        const struct row *x = &a->r[i], *y = &b->r[j];
        int c = strcmp(x->tbl, y->tbl);
        if (c == 0)
            c = strcmp(x->key, y->key);
        if (c < 0) {
            fmt_row(x, ra, sizeof(ra));
            ut_err_set(err, "replicas differ: only %s has %s", na, ra);
            return;
        }
        if (c > 0) {
            fmt_row(y, rb, sizeof(rb));
            ut_err_set(err, "replicas differ: only %s has %s", nb, rb);
            return;
        }
        if (x->hlc != y->hlc || strcmp(x->origin, y->origin) != 0 || x->seq != y->seq ||
            x->deleted != y->deleted || x->expires != y->expires || x->len != y->len ||
            x->vtype != y->vtype || (x->len && memcmp(x->val, y->val, x->len) != 0)) {
            fmt_row(x, ra, sizeof(ra));
            fmt_row(y, rb, sizeof(rb));
            ut_err_set(err, "replicas differ: %s has %s; %s has %s", na, ra, nb, rb);
            return;
        }
        i++;
        j++;
    }
    if (i < a->n) {
        fmt_row(&a->r[i], ra, sizeof(ra));
        ut_err_set(err, "replicas differ: only %s has %s", na, ra);
    } else if (j < b->n) {
        fmt_row(&b->r[j], rb, sizeof(rb));
        ut_err_set(err, "replicas differ: only %s has %s", nb, rb);
    } else {
        ut_err_set(err, "replicas differ (column types/NULLs only)");
    }
}

static int vv_equal(const struct crdt_vv *a, const struct crdt_vv *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->origin[i], b->origin[i]) != 0 || a->seq[i] != b->seq[i])
            return 0;
    return 1;
}

static int load_vv(struct node *n, struct crdt_vv *vv, struct ut_err *err)
{
    sqlite3 *db = store_reader(n->store, err);

    memset(vv, 0, sizeof(*vv));
    if (db == NULL)
        return -EIO;
    return crdt_vv_load(n->rep, db, vv, err);
}

/* Node i's version vector, reloaded only when its generation moved (the
 * generation is a change counter, not comparable between nodes). */
static const struct crdt_vv *node_vv(struct node *n, struct ut_err *err)
{
    uint64_t g = crdt_generation(n->rep);

    if (n->vv_valid && g == n->vv_gen)
        return &n->vv;
    crdt_vv_free(&n->vv);
    n->vv_valid = 0;
    if (load_vv(n, &n->vv, err) < 0)
        return NULL;
    n->vv_gen = g;
    n->vv_valid = 1;
    return &n->vv;
}

/* 1 when every node is up and all version vectors are equal. Starts with
 * the node that differed last time, so a check while far from
 * convergence usually costs one or two vector loads. */
static int converged(struct sim *s, struct ut_err *err)
{
    const struct crdt_vv *v0, *vi;

    for (unsigned i = 0; i < s->o.n; i++)
        if (!s->nodes[i].up) {
            ut_err_set(err, "%s is down", s->nodes[i].id);
            return 0;
        }
    if ((v0 = node_vv(&s->nodes[0], err)) == NULL)
        return 0;
    for (unsigned k = 0; k < s->o.n; k++) {
        unsigned i = (s->lag + k) % s->o.n;
        if (i == 0)
            continue;
        if ((vi = node_vv(&s->nodes[i], err)) == NULL)
            return 0;
        if (!vv_equal(v0, vi)) {
            size_t a = 0;
            while (a < v0->n && a < vi->n && strcmp(v0->origin[a], vi->origin[a]) == 0 &&
                   v0->seq[a] == vi->seq[a])
                a++;
            ut_err_set(err, "version vector of %s differs from %s's at %s: %" PRIu64 " vs %" PRIu64,
                       s->nodes[i].id, s->nodes[0].id,
                       a < vi->n   ? vi->origin[a]
                       : a < v0->n ? v0->origin[a]
                                   : "?",
                       a < vi->n ? vi->seq[a] : 0, a < v0->n ? v0->seq[a] : 0);
            s->lag = i;
            return 0;
        }
    }
    return 1;
}

int sim_converge(struct sim *s, uint64_t max_ms, uint64_t *took_ms, struct ut_err *err)
{
    uint64_t start = s->now, end = s->now + max_ms, report = s->now, last_check = 0;

    s->changed = 1;
    for (;;) {
        if (s->changed && (s->now >= last_check + s->o.check_ms || s->now >= end)) {
            s->changed = 0;
            last_check = s->now;
            if (converged(s, err)) {
                if (took_ms)
                    *took_ms = s->now - start;
                vlog(s, "converged after %" PRIu64 " ms", s->now - start);
                return 0;
            }
        }
        if (s->now >= end)
            break;
        if (s->o.verbose && s->now >= report + 10 * s->o.interval_ms) {
            report = s->now;
            vlog(s, "not converged yet: %s", err ? err->msg : "");
        }
        if (step(s, end))
            s->changed = 1; /* one last look */
    }
    {
        char why[UT_ERR_MAX];
        converged(s, err);
        snprintf(why, sizeof(why), "%s", err ? err->msg : "");
        ut_err_set(err, "no convergence within %" PRIu64 " ms (seed %" PRIu64 "): %s", max_ms,
                   s->o.seed, why);
    }
    return -ETIMEDOUT;
}

static int row_matches(const struct row *r, const struct oent *e, const struct sim *s)
{
    if (r->hlc != e->hlc || strcmp(r->origin, s->nodes[e->origin].id) != 0 || r->seq != e->seq ||
        r->deleted != e->deleted)
        return 0;
    if (e->deleted)
        return 1;
    return r->len == e->len && memcmp(r->val, e->val, e->len) == 0 && r->expires == e->expires;
}

int sim_check(struct sim *s, int allow_purged, struct ut_err *err)
{
    struct dump d0, di;
    char rb[400];
    int rc;

    for (unsigned i = 0; i < s->o.n; i++)
        if (!s->nodes[i].up) {
            ut_err_set(err, "sim_check: %s is down", s->nodes[i].id);
            return -EAGAIN;
        }
    if ((rc = node_dump(s, &s->nodes[0], &d0, 1, err)) < 0)
        return rc;
    /* 1. Byte-identical replicas. */
    for (unsigned i = 1; i < s->o.n; i++) {
        if ((rc = node_dump(s, &s->nodes[i], &di, 0, err)) < 0)
            goto out;
        if (memcmp(di.digest, d0.digest, sizeof(d0.digest)) != 0) {
            dump_free(&di);
            if ((rc = node_dump(s, &s->nodes[i], &di, 1, err)) == 0)
                dump_diff(&d0, &di, s->nodes[0].id, s->nodes[i].id, err);
            dump_free(&di);
            ut_err_prefix(err, "seed %" PRIu64, s->o.seed);
            rc = -EPROTO;
            goto out;
        }
        dump_free(&di);
    }
    /* 2. Exactly the oracle's winners (kv and revoked). */
    for (size_t k = 0; k < s->n_ent; k++)
        s->ent[k].row = -1;
    for (size_t i = 0; i < d0.n; i++) {
        const struct row *r = &d0.r[i];
        struct oent *e;
        if (strcmp(r->tbl, "kv") != 0 && strcmp(r->tbl, "revoked") != 0)
            continue;
        e = oracle_find(s, r->tbl, r->key, 0);
        fmt_row(r, rb, sizeof(rb));
        if (e == NULL) {
            ut_err_set(err, "seed %" PRIu64 ": row nobody wrote: %s", s->o.seed, rb);
            rc = -EPROTO;
            goto out;
        }
        if (!row_matches(r, e, s)) {
            ut_err_set(err,
                       "seed %" PRIu64 ": %s is not the max-(hlc,origin) write, which is "
                       "hlc=%" PRIu64 " origin=%s seq=%" PRIu64 " del=%d%s",
                       s->o.seed, rb, e->hlc, s->nodes[e->origin].id, e->seq, e->deleted,
                       (!e->deleted && r->deleted)   ? " (a live write was lost)"
                       : (e->deleted && !r->deleted) ? " (a deleted key resurrected)"
                                                     : "");
            rc = -EPROTO;
            goto out;
        }
        e->row = (long)i;
    }
    for (size_t k = 0; k < s->n_ent; k++) {
        const struct oent *e = &s->ent[k];
        if (e->row >= 0 || (e->deleted && allow_purged))
            continue;
        ut_err_set(err,
                   "seed %" PRIu64 ": acknowledged write lost: %s/%s hlc=%" PRIu64
                   " origin=%s seq=%" PRIu64 " del=%d is on no replica",
                   s->o.seed, e->tbl, e->key, e->hlc, s->nodes[e->origin].id, e->seq, e->deleted);
        rc = -EPROTO;
        goto out;
    }
    /* 3. Every acknowledged write is there or beaten by a greater entry
     * (implied by 2, checked on its own terms). */
    for (size_t a = 0; a < s->n_acks; a++) {
        const struct ack *w = &s->acks[a];
        const struct oent *e = &s->ent[w->ent];
        const struct row *r = e->row >= 0 ? &d0.r[e->row] : NULL;
        if (r == NULL ? !(e->deleted && allow_purged)
                      : stamp_cmp(r->hlc, r->origin, w->hlc, s->nodes[w->origin].id) < 0) {
            ut_err_set(err,
                       "seed %" PRIu64 ": acknowledged write %s/%s hlc=%" PRIu64 " origin=%s lost",
                       s->o.seed, e->tbl, e->key, w->hlc, s->nodes[w->origin].id);
            rc = -EPROTO;
            goto out;
        }
    }
    rc = 0;
out:
    dump_free(&d0);
    return rc;
}

int sim_has_writes_of(struct sim *s, unsigned origin_node, unsigned at_node)
{
    struct dump d;
    struct ut_err err = {{0}};
    int found_all = 1;

    if (node_dump(s, &s->nodes[at_node], &d, 1, &err) < 0)
        return -1;
    for (size_t k = 0; k < s->n_ent && found_all; k++) {
        const struct oent *e = &s->ent[k];
        int found = 0;
        if (e->origin != origin_node)
            continue;
        for (size_t i = 0; i < d.n && !found; i++)
            found = strcmp(d.r[i].tbl, e->tbl) == 0 && strcmp(d.r[i].key, e->key) == 0 &&
                    d.r[i].hlc == e->hlc && strcmp(d.r[i].origin, s->nodes[origin_node].id) == 0;
        found_all = found;
    }
    dump_free(&d);
    return found_all;
}

int sim_key_state(struct sim *s, unsigned node, const char *tbl, const char *key)
{
    struct ut_err err = {{0}};
    struct node *n;
    sqlite3_stmt *st;
    sqlite3 *db;
    int rc;

    if (node >= s->o.n || !s->nodes[node].up)
        return -EAGAIN;
    n = &s->nodes[node];
    if ((db = store_reader(n->store, &err)) == NULL)
        return -EIO;
    st =
        store_stmt(n->store, db, "SELECT deleted FROM crdt_rows WHERE tbl = ?1 AND key = ?2", &err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = sqlite3_column_int(st, 0) ? 0 : 1;
    else
        rc = rc == SQLITE_DONE ? -ENOENT : -EIO;
    sqlite3_reset(st);
    return rc;
}

json_t *sim_status(struct sim *s, unsigned i)
{
    if (i >= s->o.n || !s->nodes[i].up || s->nodes[i].eng == NULL)
        return NULL;
    return gsp_engine_status(s->nodes[i].eng);
}

void sim_stats(struct sim *s, struct sim_stats *out)
{
    *out = s->st;
    out->hlc_refused = 0;
    out->engine_refusals = 0;
    for (unsigned i = 0; i < s->o.n; i++) {
        struct node *n = &s->nodes[i];
        out->hlc_refused += n->acc_hlc_refused;
        out->engine_refusals += n->acc_engine_refusals;
        if (n->rep)
            out->hlc_refused += crdt_hlc_refused(crdt_replica_hlc(n->rep));
        if (n->eng)
            out->engine_refusals += engine_refusals(n->eng);
    }
}

void sim_print_stats(struct sim *s, const char *label)
{
    struct sim_stats t;

    sim_stats(s, &t);
    fprintf(stderr,
            "[sim %s] seed=%" PRIu64 " n=%u virtual=%" PRIu64 "ms writes=%" PRIu64
            " deletes=%" PRIu64 " restarts=%" PRIu64 "\n"
            "[sim %s]   exchanges=%" PRIu64 " finished=%" PRIu64 " finish_err=%" PRIu64
            " fails=%" PRIu64 " (timeouts %" PRIu64 ") begin_err=%" PRIu64 " resolves=%" PRIu64
            " not_chosen=%" PRIu64 "\n"
            "[sim %s]   handled=%" PRIu64 " refused=%" PRIu64 " (409 replay %" PRIu64
            ") engine_refusals=%" PRIu64 " hlc_refused=%" PRIu64 "\n"
            "[sim %s]   msgs=%" PRIu64 " bytes=%" PRIu64 " lost=%" PRIu64 " duplicated=%" PRIu64
            " partitioned=%" PRIu64 " late=%" PRIu64 "\n",
            label, s->o.seed, s->o.n, s->now - SIM_EPOCH_MS, t.writes, t.deletes, t.restarts, label,
            t.exchanges, t.finished, t.finish_errors, t.fails, t.timeouts, t.begin_errors,
            t.resolves, t.not_chosen, label, t.handled, t.handle_refused, t.refused_409,
            t.engine_refusals, t.hlc_refused, label, t.msgs, t.bytes, t.lost, t.duplicated,
            t.partitioned, t.late);
}
