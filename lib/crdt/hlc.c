/*
 * hlc.c - the hybrid logical clock: 48 bits of unix ms, 16 bits of counter.
 *
 * The state is one atomic word, the last stamp handed out or observed;
 * now() and observe() move it forward with compare-and-swap, so the clock
 * is lock-free and strictly monotonic whatever the wall clock does (stuck,
 * stepping back, many calls in the same millisecond: the counter counts,
 * and a counter overflow simply carries into the millisecond field).
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

struct crdt_hlc {
    _Atomic uint64_t last;
    crdt_clock_fn clock;
    void *arg;
    uint64_t max_skew_ms;
    atomic_uint_fast64_t refused;
};

static uint64_t realtime_ms(void *arg)
{
    struct timespec ts;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int crdt_hlc_new(struct crdt_hlc **out, crdt_clock_fn clock, void *arg, uint64_t max_skew_ms)
{
    struct crdt_hlc *h;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    /* A skew allowance of 2^40 ms is 34 years; anything bigger is a mistake
     * and would let remote stamps reach the sign bit. */
    if (max_skew_ms > (UINT64_C(1) << 40))
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    atomic_init(&h->last, 0);
    atomic_init(&h->refused, 0);
    h->clock = clock != NULL ? clock : realtime_ms;
    h->arg = clock != NULL ? arg : NULL;
    h->max_skew_ms = max_skew_ms != 0 ? max_skew_ms : CRDT_DEF_MAX_SKEW_MS;
    *out = h;
    return 0;
}

void crdt_hlc_free(struct crdt_hlc *h)
{
    free(h);
}

uint64_t crdt_hlc_wall_ms(struct crdt_hlc *h)
{
    uint64_t ms = h->clock(h->arg);

    return ms > CRDT_WALL_MAX_MS ? CRDT_WALL_MAX_MS : ms;
}

uint64_t crdt_hlc_now(struct crdt_hlc *h)
{
    uint64_t wall = CRDT_HLC_MAKE(crdt_hlc_wall_ms(h), 0);
    uint64_t last = atomic_load_explicit(&h->last, memory_order_relaxed);
    uint64_t next;

    do {
        next = wall > last ? wall : last + 1;
    } while (!atomic_compare_exchange_weak_explicit(&h->last, &last, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return next;
}

void crdt_hlc_adopt_(struct crdt_hlc *h, uint64_t stamp)
{
    uint64_t last = atomic_load_explicit(&h->last, memory_order_relaxed);

    while (stamp > last && !atomic_compare_exchange_weak_explicit(
                               &h->last, &last, stamp, memory_order_relaxed, memory_order_relaxed))
        ;
}

int crdt_hlc_observe(struct crdt_hlc *h, uint64_t remote)
{
    uint64_t wall = crdt_hlc_wall_ms(h);

    if (remote >= CRDT_HLC_LIMIT || CRDT_HLC_MS(remote) > wall + h->max_skew_ms) {
        atomic_fetch_add_explicit(&h->refused, 1, memory_order_relaxed);
        return -ERANGE;
    }
    crdt_hlc_adopt_(h, remote);
    return 0;
}

uint64_t crdt_hlc_refused(struct crdt_hlc *h)
{
    return atomic_load_explicit(&h->refused, memory_order_relaxed);
}

uint64_t crdt_hlc_max_skew_(const struct crdt_hlc *h)
{
    return h->max_skew_ms;
}
