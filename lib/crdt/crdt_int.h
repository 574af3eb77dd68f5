/*
 * crdt_int.h - shared internals of lib/crdt (not installed, not for other
 * modules).
 */
#ifndef CRDT_CRDT_INT_H
#define CRDT_CRDT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "crdt/crdt.h"

/* Every stamp we store is below 2^63, so SQLite's signed INTEGER compares
 * them correctly: local wall clocks are clamped to CRDT_WALL_MAX_MS (year
 * 6429) and remote stamps at or beyond 2^63 are refused as skew. */
#define CRDT_WALL_MAX_MS ((UINT64_C(1) << 47) - 1)
#define CRDT_HLC_LIMIT   (UINT64_C(1) << 63)
#define CRDT_SEQ_LIMIT   (UINT64_C(1) << 63)

#define CRDT_DEF_TOMBSTONE_TTL_MS (UINT64_C(7) * 24 * 3600 * 1000)
#define CRDT_LEASE_TABLE          "crdt_leases"
#define CRDT_GC_INTERVAL_MAX_MS   (UINT64_C(10) * 60 * 1000)
#define CRDT_GC_INTERVAL_MIN_MS   UINT64_C(1000)
/* Names in the node-local table crdt_meta(name, value). */
#define CRDT_META_GC_MARK     "gc_mark_ms"     /* newest purged tombstone, unix ms */
#define CRDT_META_RESYNC_FROM "resync_horizon" /* horizon stamp when the re-sync began */

struct crdt_tbl {
    char *name;
    size_t len;
    enum crdt_kind kind;
    /* As the replica's pending/generation, for this table alone. */
    atomic_uint_fast64_t pending, generation;
};

struct crdt_replica {
    struct store *s;
    struct crdt_hlc *hlc;
    char *origin;
    size_t origin_len;
    struct crdt_tbl *tables; /* declared tables, then crdt_leases */
    size_t n_tables;
    uint64_t tombstone_ttl_ms;

    /* Changes made by jobs since the last commit hook (a dirty count):
     * bumped on the writer thread by writes, taken by the hook. */
    atomic_uint_fast64_t pending;
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t last_skew_log_ms;

    pthread_mutex_t cb_mu; /* guards cb, cb_arg */
    crdt_change_fn cb;
    void *cb_arg;

    /* GC (gc.c): runs and rows purged by crdt_gc_run; the unix ms of the
     * newest tombstone any crdt_gc purged (mirrors crdt_meta). */
    atomic_uint_fast64_t gc_runs, gc_purged, gc_mark_ms;
    /* Re-sync (resync.c): the horizon stamp recorded by crdt_resync_begin,
     * 0 when none is open (mirrors crdt_meta). */
    atomic_uint_fast64_t resync_from;

    /* The optional GC thread (gc_thread.c), NULL when not started. */
    struct crdt_gc_thread *gc_thread;
};

/* Clock skew: stamps are adopted only with this check done. */
uint64_t crdt_hlc_max_skew_(const struct crdt_hlc *h);
/* Raises the clock to at least stamp without the skew check, for stamps we
 * already hold in the database (a put must beat the row it replaces). */
void crdt_hlc_adopt_(struct crdt_hlc *h, uint64_t stamp);

/* The declared table (or the built-in lease table) called name; NULL when
 * unknown. */
const struct crdt_tbl *crdt_tbl_find_(const struct crdt_replica *r, const char *name);
/* 0 when name is a well-formed table name ([a-z_][a-z0-9_]*, at most
 * CRDT_TABLE_NAME_MAX), else -EINVAL. */
int crdt_tbl_name_ok_(const char *name);
/* Validates a key: -EINVAL when NULL/empty, -E2BIG over CRDT_KEY_MAX. *len
 * gets its length. */
int crdt_key_check_(const char *key, size_t *len);
/* 0 when origin is 1..CRDT_ORIGIN_MAX printable ASCII (0x21..0x7e). */
int crdt_origin_ok_(const char *origin, size_t *len);
/* Writes a printable, bounded rendering of a key (or any string) into buf
 * for error messages: bytes outside 0x20..0x7e and '"' '\\' as \xNN,
 * truncated with "..." past 64 input bytes. */
const char *crdt_show_(const char *s, char *buf, size_t n);
#define CRDT_SHOW_MAX 280

/* Resolves the table of a call: -EINVAL for a malformed name, -ENOENT for
 * one not declared (err filled, prefixed with fn). */
int crdt_tbl_get_(const struct crdt_replica *r, const char *fn, const char *name,
                  const struct crdt_tbl **out, struct ut_err *err);

/* Prepares (through the store's statement cache) or fails with err. */
sqlite3_stmt *crdt_stmt_(struct crdt_replica *r, sqlite3 *db, const char *sql, struct ut_err *err);
/* err: "<fn>: <what>: <sqlite message>"; returns the mapped -errno. */
int crdt_db_err_(struct ut_err *err, sqlite3 *db, const char *fn, const char *what);

/* Records that a job changed replicated state (for the commit hook). */
static inline void crdt_mark_dirty_(struct crdt_replica *r)
{
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
}

/* The same for a change to rows of table t (one of r->tables). */
static inline void crdt_mark_table_dirty_(struct crdt_replica *r, const struct crdt_tbl *t)
{
    atomic_fetch_add_explicit(&r->tables[t - r->tables].pending, 1, memory_order_relaxed);
    crdt_mark_dirty_(r);
}

/* Rows of any table may have changed (GC, re-sync). */
static inline void crdt_mark_all_dirty_(struct crdt_replica *r)
{
    for (size_t i = 0; i < r->n_tables; i++)
        atomic_fetch_add_explicit(&r->tables[i].pending, 1, memory_order_relaxed);
    crdt_mark_dirty_(r);
}

/* crdt_put, also for the built-in tables when internal is nonzero. */
int crdt_put_internal_(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
                       const void *value, size_t value_len, int64_t expires, int internal,
                       struct ut_err *err);

/* The wall clock (unix ms) and the GC horizon stamp derived from it. */
uint64_t crdt_horizon_hlc_(struct crdt_replica *r, uint64_t wall_ms);

/* crdt_meta: reads name (0 when absent) / upserts it (inside a job). */
int crdt_meta_get_(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t *value,
                   struct ut_err *err);
int crdt_meta_set_(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t value,
                   struct ut_err *err);
/* Drops the key's re-sync mark (resync.c); inside a job. */
int crdt_resync_confirm_(struct crdt_replica *r, sqlite3 *db, const struct crdt_tbl *t,
                         const char *key, size_t key_len, struct ut_err *err);
/* Stops and joins the GC thread, if any (gc_thread.c). */
void crdt_gc_thread_stop_(struct crdt_replica *r);

#endif
