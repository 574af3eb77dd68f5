/*
 * replay.c - the nonce replay cache of one peer.
 *
 * Storage: a FIFO ring of (nonce, timestamp) in arrival order plus an
 * open-addressing hash (linear probing, backward-shift deletion) of ring
 * positions. Both grow by doubling up to `max` entries, so an idle peer
 * costs a few KiB, a busy one at most max * 28 bytes (+ the hash).
 *
 * Soundness: an entry may be dropped only (a) when its timestamp has left
 * the acceptance window, or (b) oldest-first when the ring is full. Either
 * way the dropped timestamp raises `watermark`, and every nonce whose
 * timestamp is <= watermark is refused. So a replay of a dropped nonce is
 * refused even if the clock is moved back; the cost of (b) under overload
 * is that late messages older than the newest dropped one are refused too.
 *
 * Only messages whose signature verified reach this cache, so only a
 * pinned peer can fill its own cache; the hash is keyed anyway.
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RP_MIN 64

struct rp_entry {
    uint8_t nonce[CRY_ENV_NONCE_BYTES];
    uint64_t ts;
};

struct env_replay {
    struct rp_entry *ring; /* ring[(head + i) % cap], i < count */
    size_t cap, head, count, max;
    uint32_t *hash; /* ring position + 1; 0 = empty */
    size_t hcap;    /* power of two, 2 * cap */
    uint64_t watermark;
    uint64_t k0, k1;
};

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t slot_of(const struct env_replay *r, const uint8_t *nonce)
{
    uint64_t h = mix(load64(nonce) ^ r->k0) ^ mix(load64(nonce + 8) ^ r->k1 ^ 0x5bd1e995);

    return (size_t)h & (r->hcap - 1);
}

struct env_replay *env_replay_new(size_t max, const uint8_t key[16])
{
    struct env_replay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->max = max < RP_MIN ? RP_MIN : max;
    if (r->max > UINT32_MAX / 4)
        r->max = UINT32_MAX / 4;
    r->k0 = load64(key);
    r->k1 = load64(key + 8);
    return r;
}

void env_replay_free(struct env_replay *r)
{
    if (r == NULL)
        return;
    free(r->ring);
    free(r->hash);
    free(r);
}

size_t env_replay_count(const struct env_replay *r)
{
    return r->count;
}

/* Hash slot holding ring position pos (which must be present). */
static size_t find_pos(const struct env_replay *r, size_t pos)
{
    size_t i = slot_of(r, r->ring[pos].nonce);

    while (r->hash[i] != pos + 1)
        i = (i + 1) & (r->hcap - 1);
    return i;
}

static void hash_insert(struct env_replay *r, size_t pos)
{
    size_t i = slot_of(r, r->ring[pos].nonce);

    while (r->hash[i] != 0)
        i = (i + 1) & (r->hcap - 1);
    r->hash[i] = (uint32_t)(pos + 1);
}

/* Removes slot i, shifting back later members of its probe run so every
 * lookup still finds its key without tombstones. */
static void hash_delete(struct env_replay *r, size_t i)
{
    size_t mask = r->hcap - 1, j = i;

    r->hash[i] = 0;
    for (;;) {
        size_t k;

        j = (j + 1) & mask;
        if (r->hash[j] == 0)
            return;
        k = slot_of(r, r->ring[r->hash[j] - 1].nonce);
        /* Move j back to i unless its home k lies cyclically in (i, j]. */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        r->hash[i] = r->hash[j];
        r->hash[j] = 0;
        i = j;
    }
}

static void drop_head(struct env_replay *r)
{
    struct rp_entry *e = &r->ring[r->head];

    hash_delete(r, find_pos(r, r->head));
    if (e->ts > r->watermark)
        r->watermark = e->ts;
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

static int grow(struct env_replay *r)
{
    size_t cap = r->cap ? r->cap * 2 : RP_MIN, hcap = 1;
    struct rp_entry *ring;
    uint32_t *hash;

    if (cap > r->max)
        cap = r->max;
    while (hcap < cap * 2) /* load factor <= 1/2, power of two for masking */
        hcap <<= 1;
    ring = malloc(cap * sizeof(*ring));
    hash = calloc(hcap, sizeof(*hash));
    if (ring == NULL || hash == NULL) {
        free(ring);
        free(hash);
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->count; i++)
        ring[i] = r->ring[(r->head + i) % r->cap];
    free(r->ring);
    free(r->hash);
    r->ring = ring;
    r->hash = hash;
    r->cap = cap;
    r->hcap = hcap;
    r->head = 0;
    for (size_t i = 0; i < r->count; i++)
        hash_insert(r, i);
    return 0;
}

int env_replay_check_insert(struct env_replay *r, const uint8_t nonce[CRY_ENV_NONCE_BYTES],
                            uint64_t ts, uint64_t horizon)
{
    size_t i, pos;

    while (r->count > 0 && r->ring[r->head].ts < horizon)
        drop_head(r);
    if (ts <= r->watermark)
        return CRY_ENV_E_REPLAY;
    if (r->count > 0) {
        for (i = slot_of(r, nonce); r->hash[i] != 0; i = (i + 1) & (r->hcap - 1))
            if (memcmp(r->ring[r->hash[i] - 1].nonce, nonce, CRY_ENV_NONCE_BYTES) == 0)
                return CRY_ENV_E_REPLAY;
    }
    if (r->count == r->cap) {
        if (r->cap < r->max) {
            if (grow(r) != 0)
                return -ENOMEM;
        } else {
            drop_head(r);
            if (ts <= r->watermark)
                return CRY_ENV_E_REPLAY;
        }
    }
    pos = (r->head + r->count) % r->cap;
    memcpy(r->ring[pos].nonce, nonce, CRY_ENV_NONCE_BYTES);
    r->ring[pos].ts = ts;
    r->count++;
    hash_insert(r, pos);
    return 0;
}
