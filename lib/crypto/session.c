/*
 * session.c - per-peer state of a cry_env: the nonce replay cache and the
 * session keys (docs/gossip-wire.md §5), under one mutex.
 *
 * Per peer we keep:
 *   - the replay cache of its X-Wing requests' nonces (replay.c);
 *   - up to ENV_IN_SLOTS sessions it offered us, each with a sliding
 *     window of the counters already seen. More than one, because a peer
 *     with several requests in flight offers several sessions before it
 *     confirms one and then keeps only the last one confirmed. When full,
 *     the least recently added-or-used session goes: the one the peer
 *     actually uses is the most recently used, so it stays;
 *   - the one confirmed session we use to send to it, with its next counter.
 * Nothing here does crypto: critical sections are a few memcpy's long.
 * Peer states are created only for pinned peers whose signature verified
 * (or that we send to), and there are at most CRY_ENV_MAX_PEERS.
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "util/mem.h"

#define ENV_IN_SLOTS 8
#define WIN          ((uint64_t)CRY_ENV_REPLAY_WINDOW)

struct env_in {
    int used;
    uint64_t tick; /* ps->tick at the last add or use, for LRU */
    struct env_session s;
    struct env_window win;
};

struct env_peer {
    uint8_t id[CRY_ENV_ID_MAX];
    size_t id_len;
    struct env_replay *replay; /* created at its first X-Wing request */
    struct env_in in[ENV_IN_SLOTS];
    int has_out;
    struct env_session out;
    uint64_t out_next; /* next counter to send, 1-based */
};

struct env_peers {
    pthread_mutex_t lock;
    struct env_limits lim;
    uint8_t hkey[16]; /* replay hash key */
    uint64_t tick;
    struct env_peer **p;
    size_t n, cap;
};

int env_window_check_set(struct env_window *w, uint64_t ctr)
{
    if (ctr > w->top) {
        if (ctr - w->top >= WIN) {
            memset(w->bits, 0, sizeof(w->bits));
        } else {
            /* Slots of counters (top, ctr] still hold bits of counters one
             * window older: clear them as the window slides over them. */
            for (uint64_t k = 1, n = ctr - w->top; k <= n; k++) { /* no wrap at 2^64-1 */
                uint64_t c = w->top + k;

                w->bits[(c % WIN) / 64] &= ~(1ULL << (c % 64));
            }
        }
        w->top = ctr;
    } else if (w->top - ctr >= WIN) {
        return CRY_ENV_E_COUNTER_OLD;
    } else if (w->bits[(ctr % WIN) / 64] & (1ULL << (ctr % 64))) {
        return CRY_ENV_E_COUNTER_REPLAY;
    }
    w->bits[(ctr % WIN) / 64] |= 1ULL << (ctr % 64);
    return 0;
}

struct env_peers *env_peers_new(const struct env_limits *lim)
{
    struct env_peers *ps = calloc(1, sizeof(*ps));

    if (ps == NULL)
        return NULL;
    if (pthread_mutex_init(&ps->lock, NULL) != 0) {
        free(ps);
        return NULL;
    }
    ps->lim = *lim;
    /* Not a secret that protects anything but hash-flooding resistance. */
    if (RAND_bytes(ps->hkey, sizeof(ps->hkey)) != 1)
        memset(ps->hkey, 0x5a, sizeof(ps->hkey));
    return ps;
}

static void peer_free(struct env_peer *p)
{
    env_replay_free(p->replay);
    ut_memzero(p, sizeof(*p));
    free(p);
}

void env_peers_free(struct env_peers *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++)
        peer_free(ps->p[i]);
    free(ps->p);
    pthread_mutex_destroy(&ps->lock);
    free(ps);
}

/* The state of peer id; created when create is set. NULL when absent, out
 * of memory or the table is full. Caller holds the lock. */
static struct env_peer *peer_get(struct env_peers *ps, const uint8_t *id, size_t len, int create)
{
    struct env_peer *p;

    for (size_t i = 0; i < ps->n; i++)
        if (ps->p[i]->id_len == len && memcmp(ps->p[i]->id, id, len) == 0)
            return ps->p[i];
    if (!create || ps->n == CRY_ENV_MAX_PEERS || len == 0 || len > CRY_ENV_ID_MAX)
        return NULL;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        struct env_peer **np = realloc(ps->p, cap * sizeof(*np));

        if (np == NULL)
            return NULL;
        ps->p = np;
        ps->cap = cap;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    memcpy(p->id, id, len);
    p->id_len = len;
    ps->p[ps->n++] = p;
    return p;
}

static uint64_t age(uint64_t now, uint64_t created)
{
    return now > created ? now - created : 0;
}

int env_peers_nonce(struct env_peers *ps, const uint8_t *id, size_t id_len,
                    const uint8_t nonce[CRY_ENV_NONCE_BYTES], uint64_t ts, uint64_t now)
{
    struct env_peer *p;
    uint64_t horizon = now > ps->lim.max_age_ms ? now - ps->lim.max_age_ms : 0;
    int rc = -ENOMEM;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 1);
    if (p == NULL) {
        rc = ps->n == CRY_ENV_MAX_PEERS ? -E2BIG : -ENOMEM;
        goto out;
    }
    if (p->replay == NULL)
        p->replay = env_replay_new(ps->lim.replay_max, ps->hkey);
    if (p->replay == NULL)
        goto out;
    /* Entries older than the acceptance window (ts < now - max_age) can
     * never be accepted again: the timestamp check refuses them first. */
    rc = env_replay_check_insert(p->replay, nonce, ts, horizon);
out:
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

int env_peers_add_in(struct env_peers *ps, const uint8_t *id, size_t id_len,
                     const struct env_session *s)
{
    struct env_peer *p;
    struct env_in *slot = NULL;
    int rc = 0;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 1);
    if (p == NULL) {
        rc = ps->n == CRY_ENV_MAX_PEERS ? -E2BIG : -ENOMEM;
        goto out;
    }
    for (int i = 0; i < ENV_IN_SLOTS; i++) {
        struct env_in *in = &p->in[i];

        if (!in->used) {
            slot = in;
            break;
        }
        if (slot == NULL || in->tick < slot->tick)
            slot = in;
    }
    ut_memzero(slot, sizeof(*slot));
    slot->s = *s;
    slot->used = 1;
    slot->tick = ++ps->tick;
out:
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

int env_peers_use_in(struct env_peers *ps, const uint8_t *id, size_t id_len,
                     const uint8_t sid[CRY_ENV_SID_BYTES], uint64_t ctr, uint64_t now,
                     struct env_session *s)
{
    struct env_peer *p;
    struct env_in *in = NULL;
    int rc = CRY_ENV_E_NO_SESSION;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 0);
    for (int i = 0; p && i < ENV_IN_SLOTS; i++)
        if (p->in[i].used && memcmp(p->in[i].s.sid, sid, CRY_ENV_SID_BYTES) == 0)
            in = &p->in[i];
    if (in == NULL)
        goto out;
    /* Our clock at the offer vs now; the sender rekeys at session_age by
     * its own clock, max_skew covers the messages still in flight. */
    if (age(now, in->s.created_ms) > ps->lim.session_age_ms + ps->lim.max_skew_ms) {
        ut_memzero(in, sizeof(*in)); /* useless from now on */
        rc = CRY_ENV_E_SESSION_EXPIRED;
        goto out;
    }
    if (ctr > ps->lim.session_msgs) {
        rc = CRY_ENV_E_SESSION_EXPIRED;
        goto out;
    }
    rc = env_window_check_set(&in->win, ctr);
    if (rc == 0) {
        *s = in->s;
        in->tick = ++ps->tick;
    }
out:
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

int env_peers_set_out(struct env_peers *ps, const uint8_t *id, size_t id_len,
                      const struct env_session *s)
{
    struct env_peer *p;
    int rc = 0;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 1);
    if (p == NULL) {
        rc = ps->n == CRY_ENV_MAX_PEERS ? -E2BIG : -ENOMEM;
    } else if (!p->has_out || s->created_ms >= p->out.created_ms) {
        ut_memzero(&p->out, sizeof(p->out));
        p->out = *s;
        p->out_next = 1;
        p->has_out = 1;
    }
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

int env_peers_take_out(struct env_peers *ps, const uint8_t *id, size_t id_len, uint64_t now,
                       struct env_session *s, uint64_t *ctr)
{
    struct env_peer *p;
    int found = 0;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 0);
    if (p == NULL || !p->has_out)
        goto out;
    if (age(now, p->out.created_ms) >= ps->lim.session_age_ms ||
        p->out_next > ps->lim.session_msgs) {
        ut_memzero(&p->out, sizeof(p->out)); /* due for rekeying */
        p->has_out = 0;
        goto out;
    }
    *s = p->out;
    *ctr = p->out_next++;
    found = 1;
out:
    pthread_mutex_unlock(&ps->lock);
    return found;
}

void env_peers_drop_out(struct env_peers *ps, const uint8_t *id, size_t id_len)
{
    struct env_peer *p;

    pthread_mutex_lock(&ps->lock);
    p = peer_get(ps, id, id_len, 0);
    if (p != NULL) {
        ut_memzero(&p->out, sizeof(p->out));
        p->has_out = 0;
    }
    pthread_mutex_unlock(&ps->lock);
}
