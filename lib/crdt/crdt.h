/*
 * crdt.h - replicated state: hybrid logical clock, one LWW map per
 * replicated table with tombstones, grow-only "revocation" tables, per-origin
 * sequence numbers with a persisted version vector, GC with a horizon, and
 * leases with fencing epochs. Design: docs/replication.md.
 *
 * Storage. All replicated rows of every table live in one SQLite table,
 *   crdt_rows(tbl, key, value, hlc, origin, seq, deleted, expires)
 * PRIMARY KEY (tbl, key) WITHOUT ROWID, indexed by (origin, seq). `value`
 * is the application's data (daemons store JSON text so SQLite's json
 * functions and expression indexes work on it): a value that is valid UTF-8
 * without NUL bytes is stored as TEXT, any other as a BLOB (the choice
 * depends only on the bytes, so every replica stores the same row; reads
 * return the bytes unchanged either way). hlc, seq and expires are INTEGER;
 * every stored hlc and seq is below 2^63, so SQLite's signed comparison is
 * the unsigned one. The CRDT metadata sits in the same row, so there is no
 * second copy of the state. A view per declared table
 * (`CREATE VIEW <name> AS SELECT key, value, hlc, origin FROM crdt_rows
 *  WHERE tbl = '<name>' AND deleted = 0`) is created for reading.
 *   crdt_vv(origin PRIMARY KEY, seq)  the version vector; the row of our own
 *                                     origin is also our write counter.
 * crdt_replica_open() creates these (IF NOT EXISTS) through store_write;
 * the built-in LWW table "crdt_leases" (leases, below) gets a view too. A
 * table name already used by a table or index of the application is an
 * error (-EEXIST); a view of that name with other SQL is replaced.
 *
 * Ordering. An entry wins over another for the same (tbl, key) when its
 * (hlc, origin) is greater (hlc as unsigned 64-bit, then origin bytewise,
 * memcmp over the shorter length, shorter first on a tie). Tombstones take
 * part like any entry. Equal (hlc, origin) means the same write: a no-op.
 * Merge is therefore idempotent, commutative and associative.
 *
 * Writes. A daemon writes inside its own store_write() job, on the writer's
 * db: crdt_put()/crdt_delete() stamp a fresh HLC, take the next own seq
 * (from crdt_vv, in the same transaction, so a rolled-back job leaves no
 * gap) and upsert the row. The merge rule is the WHERE clause of that
 * upsert, so a write never overwrites a greater row: when the stored row's
 * stamp is ahead of our clock (written before a restart by a clock that was
 * ahead), the clock adopts that stamp and the write is stamped after it.
 * After the batch commits, the replica's change callback runs (on the
 * store's writer thread, before the batch's store_write calls return; keep
 * it short: the gossip engine only sets a flag and wakes its loop).
 *
 * Sequence numbers. A row's (origin, seq) names the write in its origin's
 * log. Each origin numbers its own writes 1, 2, 3... The version vector
 * vv[O] = the highest seq of origin O this replica has received complete
 * (see crdt_vv_advance). A delta for a peer with vector pv is every row with
 * seq > pv[origin], per origin in seq order (crdt_scan). Our own vv row is
 * raised in the same transaction as each local write, so any snapshot that
 * shows vv[self] = n holds all our rows up to n. A node whose database was
 * lost restarts its counter at 0: it must learn its old counter (peers send
 * their rows of its origin and crdt_vv_advance raises vv[self]) before it
 * writes, or rejoin under a new origin.
 *
 * GC. Tombstones whose hlc is older than now - tombstone_ttl are deleted by
 * crdt_gc() (a daemon runs it every crdt_gc_interval_ms: the gossip driver,
 * or crdt_gc_autorun without gossip). The GC horizon is now - tombstone_ttl:
 * an incoming live entry or tombstone older than the horizon for a key this
 * replica does not hold is ignored (a long-absent node cannot resurrect
 * deleted state), unless we never saw that write and are catching up
 * (crdt_apply_ex, CRDT_APPLY_UNSEEN). A live
 * LWW row with expires > 0 is treated like a tombstone once expired: purged
 * when expires has passed and its hlc is older than the horizon (purging it
 * earlier would let an older version of it come back). Live LWW rows
 * without expiry are never purged. Reads do not filter on expires: it is a
 * GC hint, the application checks its own expiry.
 * Grow-only tables hold facts (revoked sessions, tokens, certificates): no
 * delete, no horizon rule; a row is dropped by GC only after its own
 * `expires` (unix ms) has passed, and a copy arriving after that is refused
 * (CRDT_EXPIRED), so GC cannot undo a revocation that still matters. Two
 * versions of one fact merge by (hlc, origin) like LWW rows.
 *
 * Re-sync. A node that was out of contact while others purged tombstones
 * may still hold the rows they deleted. It re-syncs from one peer (see
 * "re-sync" below and docs/replication.md section 8); nothing is deleted
 * until that peer has sent everything it holds.
 *
 * Node-local tables (never replicated): crdt_meta(name, value) (the GC mark
 * and the re-sync state) and crdt_suspect(tbl, key) (rows awaiting
 * confirmation during a re-sync).
 *
 * Clock. An HLC is 48 bits of unix milliseconds and a 16-bit counter. A
 * remote entry stamped more than max_skew_ms ahead of our wall clock is
 * refused (-ERANGE), logged and counted, never adopted.
 *
 * Threads: crdt_hlc and crdt_replica are thread-safe. Functions taking a db
 * must run on the thread that owns it (a store_write job, or a reader).
 *
 * Errors: 0 (or a documented positive result) on success, else a negative
 * errno with err naming the bad input: -EINVAL malformed names/arguments,
 * -E2BIG a key or value over CRDT_KEY_MAX / CRDT_VALUE_MAX (local writes),
 * -ENOENT a table not declared, -EPERM a forbidden write, SQLite errors
 * mapped by store_sqlite_errno().
 */
#ifndef CRDT_CRDT_H
#define CRDT_CRDT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

/* ---- hybrid logical clock ---- */

#define CRDT_HLC_MS(h)       ((h) >> 16)
#define CRDT_HLC_MAKE(ms, c) (((uint64_t)(ms) << 16) | ((uint64_t)(c)&0xffffu))
#define CRDT_DEF_MAX_SKEW_MS 30000u

typedef uint64_t (*crdt_clock_fn)(void *arg); /* wall clock, unix ms */

struct crdt_hlc;
/* clock NULL: CLOCK_REALTIME. max_skew_ms 0: CRDT_DEF_MAX_SKEW_MS. */
int crdt_hlc_new(struct crdt_hlc **out, crdt_clock_fn clock, void *arg, uint64_t max_skew_ms);
void crdt_hlc_free(struct crdt_hlc *h);
/* A stamp greater than every stamp returned or observed before: max(wall
 * clock with counter 0, last + 1). Lock-free; a stuck or backwards wall
 * clock makes the counter count, and a counter overflow carries into the
 * millisecond field. */
uint64_t crdt_hlc_now(struct crdt_hlc *h);
/* Takes a remote stamp into account. -ERANGE (counted, nothing adopted)
 * when its ms are more than max_skew_ms ahead of the wall clock, or it is
 * >= 2^63. max_skew_ms above 2^40 is refused by crdt_hlc_new (-EINVAL). */
int crdt_hlc_observe(struct crdt_hlc *h, uint64_t remote);
/* The wall clock in unix ms (clamped below 2^47, the year 6429). */
uint64_t crdt_hlc_wall_ms(struct crdt_hlc *h);
/* Number of remote stamps refused for skew so far. */
uint64_t crdt_hlc_refused(struct crdt_hlc *h);

/* ---- replica ---- */

/* Input limits: beyond them calls fail with -E2BIG (keys, values) or
 * -EINVAL (names). A key is any NUL-free byte string of 1..CRDT_KEY_MAX
 * bytes. */
#define CRDT_KEY_MAX        1024
#define CRDT_VALUE_MAX      (1024 * 1024)
#define CRDT_TABLE_NAME_MAX 48
#define CRDT_ORIGIN_MAX     255 /* = CRY_ENV_ID_MAX, the longest node id */

enum crdt_kind {
    CRDT_LWW = 1,       /* last-writer-wins map with tombstones */
    CRDT_GROW_ONLY = 2, /* facts kept until their own expiry; no delete */
};

struct crdt_table_def {
    const char *name; /* [a-z_][a-z0-9_]*, at most 48 chars; not "crdt_*" */
    enum crdt_kind kind;
};

struct crdt_opts {
    const char *origin; /* this node's id (printable ASCII) */
    const struct crdt_table_def *tables;
    size_t n_tables;
    uint64_t tombstone_ttl_ms; /* 0: 7 days */
    uint64_t max_skew_ms;      /* 0: CRDT_DEF_MAX_SKEW_MS */
    crdt_clock_fn clock;       /* NULL: CLOCK_REALTIME (tests inject virtual time) */
    void *clock_arg;
    /* JSON members ([a-z_], 1..CRDT_FIELD_MAX bytes) to index across every
     * table: a query on a table's view filtering on
     * json_extract(value, '$.<field>') = ? (the path written literally),
     * optionally with key > ? and ORDER BY key, is then an index lookup
     * instead of a scan of the table (index: tbl, the member, key). */
    const char *const *indexed_fields;
    size_t n_indexed_fields;
};
#define CRDT_FIELD_MAX 32

struct crdt_replica;

/* Creates the tables and views if needed (one store_write) and registers a
 * post-commit hook with the store (store_on_commit). The store has one
 * hook, so one replica per store. crdt_replica_free removes the hook: free
 * the replica before store_close. Errors: -EINVAL bad origin/table
 * declarations (err names the input), -EEXIST a declared name is already an
 * application table, store errors. */
int crdt_replica_open(struct crdt_replica **out, struct store *s, const struct crdt_opts *o,
                      struct ut_err *err);
void crdt_replica_free(struct crdt_replica *r);
const char *crdt_replica_origin(const struct crdt_replica *r);
struct crdt_hlc *crdt_replica_hlc(struct crdt_replica *r);
/* -1 when name was not declared. */
int crdt_table_kind(const struct crdt_replica *r, const char *name);

/* Called on the store's writer thread after a transaction that changed
 * replicated rows (local writes, applied remote entries, a raised version
 * vector) has committed, before the store_write calls of that batch return.
 * At most once per commit. Never missed, but may be spurious: a change made
 * by a job that then rolled back (while other jobs of its batch committed,
 * or in a later commit) can cause one call with nothing new. Runs under the
 * replica's callback lock: it must not call crdt_set_change_cb. When
 * crdt_set_change_cb returns, the replaced callback is not running. */
typedef void (*crdt_change_fn)(void *arg);
void crdt_set_change_cb(struct crdt_replica *r, crdt_change_fn fn, void *arg);

/* ---- local writes (inside a store_write job; db = the job's db) ---- */

/* Upserts (tbl, key) with value. expires: unix ms after which GC may drop
 * the row (required > 0 for grow-only tables; 0 = never for LWW; see GC).
 * -EPERM for the built-in "crdt_*" tables (leases have their own calls). */
int crdt_put(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
             const void *value, size_t value_len, int64_t expires, struct ut_err *err);
/* Writes a tombstone (also for a key never seen). -EPERM for grow-only. */
int crdt_delete(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
                struct ut_err *err);

/* ---- reads (any connection of the store) ---- */

/* Reads the live value of (tbl, key): 0 and *value malloc'd (NUL-terminated
 * for convenience; free() it), -ENOENT when absent or deleted. */
int crdt_get(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key, uint8_t **value,
             size_t *value_len, struct ut_err *err);

/* ---- replication (used by lib/gossip) ---- */

/* One replicated write as it travels between nodes. Strings and value are
 * borrowed (valid during the call that hands them out). */
struct crdt_entry {
    const char *tbl;
    const char *key;
    const uint8_t *value; /* NULL/0 for a tombstone */
    size_t value_len;
    uint64_t hlc;
    const char *origin;
    uint64_t seq;
    int deleted;
    int64_t expires; /* unix ms, 0 = none */
};

/* The version vector: origin -> seq. */
struct crdt_vv {
    size_t n;
    char **origin; /* owned, sorted by origin (bytewise) */
    uint64_t *seq;
};
void crdt_vv_free(struct crdt_vv *vv);
uint64_t crdt_vv_get(const struct crdt_vv *vv, const char *origin); /* 0 when absent */
/* Reads the persisted vector (including our own origin's write counter). */
int crdt_vv_load(struct crdt_replica *r, sqlite3 *db, struct crdt_vv *out, struct ut_err *err);
/* A change counter for skip decisions, local to this process (not
 * comparable between nodes): starts at the sum of the persisted vector and
 * grows after every commit that wrote or applied rows or raised the vector
 * (it may also grow when nothing changed, never stays put when something
 * did). It moves after the commit, so read it before loading the vector or
 * scanning: a change committed after the read shows up as a new value. */
uint64_t crdt_generation(struct crdt_replica *r);
/* The same for one table: moves after every commit that wrote or applied
 * rows of that table, or in which GC or a re-sync removed rows (of any
 * table: those move all counters). Starts at 0 in each process. For caches
 * of a table that rarely changes (akamu's accounts), where the replica's
 * counter would move with every other write. The handle (index) comes from
 * crdt_table_handle: >= 0, or -ENOENT for an unknown table; a bad handle
 * reads 0. */
int crdt_table_handle(struct crdt_replica *r, const char *tbl);
uint64_t crdt_table_generation(struct crdt_replica *r, int handle);

/* Result of merging one remote entry. */
enum crdt_apply_result {
    CRDT_APPLIED = 1, /* stored: it won */
    CRDT_OLDER = 2,   /* ignored: the row we hold is newer or equal */
    CRDT_HORIZON = 3, /* ignored: older than the GC horizon for a key we lack */
    CRDT_EXPIRED = 4, /* ignored: a grow-only fact already past its expiry */
};
/* Merges e into the row for (e->tbl, e->key) (inside a store_write job).
 * Returns an enum crdt_apply_result, or -ERANGE (clock skew: refused, not
 * adopted, logged at most once a second, counted in crdt_hlc_refused),
 * -ENOENT (table not declared here), -EINVAL (malformed: bad names or
 * origin, seq 0 or >= 2^63, hlc 0, a key or value over the limits, a
 * tombstone or a fact without expiry in a grow-only table, a value on a
 * tombstone). The stamp of an accepted entry is observed by the clock even
 * when the entry loses. Does not touch the version vector. */
int crdt_apply(struct crdt_replica *r, sqlite3 *db, const struct crdt_entry *e, struct ut_err *err);
/* crdt_apply with flags, for a replica catching up after a long absence
 * (docs/replication.md section 8):
 * CRDT_APPLY_UNSEEN: an entry older than the horizon for a key we lack is
 *   taken when we never saw that write (seq above our vv for its origin):
 *   it is a row the sender holds that we missed, not one we deleted. A
 *   write we did see and no longer hold was deleted here (its tombstone
 *   maybe purged): still CRDT_HORIZON.
 * CRDT_APPLY_SOURCE: UNSEEN, and e comes from the source of a re-sync: the
 *   key's re-sync mark is cleared whatever the merge decides (the source
 *   holds the key). */
#define CRDT_APPLY_UNSEEN 1u
#define CRDT_APPLY_SOURCE 3u
int crdt_apply_ex(struct crdt_replica *r, sqlite3 *db, const struct crdt_entry *e, unsigned flags,
                  struct ut_err *err);
/* Raises vv[origin] to seq (never lowers it). Call after applying every
 * entry of origin with seq <= this value that the sender had (see the
 * protocol in docs/replication.md). Inside a store_write job. */
int crdt_vv_advance(struct crdt_replica *r, sqlite3 *db, const char *origin, uint64_t seq,
                    struct ut_err *err);

/* Calls fn for every row (tombstones included) of origin with seq > after,
 * in increasing seq order, until fn returns nonzero (a page is full: that
 * value is returned) or the rows run out (0). Negative on error. Rows
 * overwritten by a later write are not in the log any more (only the
 * latest version of each key travels). e and everything it points to are
 * valid during the call only; a tombstone has value NULL, a live empty
 * value a non-NULL pointer with length 0. fn must not call crdt_scan on the
 * same connection (the statement is shared). Use a reader; resume a page
 * with after = the last seq delivered. */
typedef int (*crdt_scan_fn)(const struct crdt_entry *e, void *arg);
int crdt_scan(struct crdt_replica *r, sqlite3 *db, const char *origin, uint64_t after,
              crdt_scan_fn fn, void *arg, struct ut_err *err);

/* Per-table counts of live rows (for the first-contact log line). *count
 * gets the number of live rows in tbl (tombstones not counted; a scan of
 * the table's rows). */
int crdt_count(struct crdt_replica *r, sqlite3 *db, const char *tbl, uint64_t *count,
               struct ut_err *err);

/* Deletes tombstones older than the horizon, expired LWW rows older than
 * the horizon and expired grow-only facts (inside a store_write job; see
 * GC above). *purged (optional) gets the number of rows. Not a change for
 * the change callback (nothing new to send). */
int crdt_gc(struct crdt_replica *r, sqlite3 *db, uint64_t *purged, struct ut_err *err);
/* crdt_gc in its own store_write job, counted in crdt_gc_stats. It also
 * records (crdt_meta, same transaction) the unix ms of the newest
 * tombstone it purged: crdt_gc_mark. */
int crdt_gc_run(struct crdt_replica *r, uint64_t *purged, struct ut_err *err);
/* Runs and rows purged by crdt_gc_run since the replica was opened. */
void crdt_gc_stats(struct crdt_replica *r, uint64_t *runs, uint64_t *purged);
/* The unix ms (of the writer's clock) of the newest tombstone any GC of
 * this database ever purged, 0 when none. A replica that lost contact
 * before that time may still hold a row that tombstone deleted (the gossip
 * engine states it to peers; docs/replication.md section 8). */
uint64_t crdt_gc_mark(struct crdt_replica *r);
/* The GC cadence: tombstone_ttl / 8, at most 10 minutes, at least 1 s. */
uint64_t crdt_gc_interval_ms(const struct crdt_replica *r);
uint64_t crdt_tombstone_ttl_ms(const struct crdt_replica *r);
/* Starts a thread that runs crdt_gc_run at once and then every
 * crdt_gc_interval_ms (wall time), logging "<log_module>: gc purged=N" at
 * INFO when N > 0, at DEBUG otherwise. For a daemon without gossip
 * (single-node mode: revocations and revoked sessions still expire); with
 * gossip the driver runs GC. crdt_replica_free stops it. -EALREADY when
 * already started. */
int crdt_gc_autorun(struct crdt_replica *r, const char *log_module, struct ut_err *err);

/* ---- re-sync after a long absence (docs/replication.md section 8) ----
 *
 * crdt_resync_begin marks every live row of the LWW tables (not the
 * grow-only ones, not crdt_leases, not those named in keep) whose stamp is
 * older than the horizon: the suspects. The caller then has one peer, the
 * source, send everything it holds, applied with CRDT_APPLY_SOURCE: each
 * key the source holds is confirmed (unmarked; with CRDT_APPLY_UNSEEN
 * alone nothing is confirmed). crdt_resync_end(drop = 1)
 * deletes every row still marked whose stamp is still older than the
 * horizon recorded by begin (a write made since, here or by a peer, is
 * kept); drop = 0 only forgets the marks. Nothing is deleted before end:
 * the rows stay readable meanwhile, and a re-sync that cannot finish loses
 * nothing. The version vector is not touched (our own seq counter never
 * goes back; the caller makes the source re-send by stating a lower vector
 * to it). The state persists across restarts. All three inside a
 * store_write job. */
int crdt_resync_begin(struct crdt_replica *r, sqlite3 *db, const char *const *keep, size_t n_keep,
                      uint64_t *marked, struct ut_err *err);
int crdt_resync_end(struct crdt_replica *r, sqlite3 *db, int drop, uint64_t *dropped,
                    struct ut_err *err);
/* 1 while a re-sync is begun and not ended (any thread). */
int crdt_resync_active(struct crdt_replica *r);
/* Rows still marked (any connection). */
int crdt_resync_count(struct crdt_replica *r, sqlite3 *db, uint64_t *suspects, struct ut_err *err);

/* ---- leases (exclusive work, fenced by epoch) ---- */

/* Leases are LWW rows of the built-in table "crdt_leases":
 * value = {"owner": origin, "expires": unix ms, "epoch": n} (JSON).
 * acquire: succeeds when the lease is free, expired, or already ours
 * (renewal of our live lease keeps the epoch and moves expires to now +
 * ttl_ms); every new tenure bumps the epoch: taking it from another owner
 * after expiry, taking a released lease, and re-taking our own lease once
 * it expired (someone may have held it meanwhile). Epochs never go down
 * while the row exists:
 * release keeps the epoch ({"owner": ""}). -EBUSY (and *owner_out) when
 * another node holds it; on success *owner_out gets our origin. A lease
 * name is a key (1..CRDT_KEY_MAX bytes); ttl_ms 1..2^40. A lease row that
 * is not a lease document (a buggy peer) gives -EPROTO.
 * Two nodes taking an expired lease at once both succeed locally; the LWW
 * merge keeps one, and the other sees -ESTALE from crdt_lease_check on
 * its next write: stale owners are fenced by checking before each write
 * (inside the same transaction) and by carrying the epoch in what they
 * write. All inside store_write jobs.
 * A lease row carries its lease's expiry (a released one: the release
 * time) as its row expiry, so crdt_gc purges it once that has passed and
 * its last write is older than tombstone_ttl; the name's next tenure then
 * starts again at epoch 1 (a missing row fails every check). */
int crdt_lease_acquire(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t ttl_ms,
                       uint64_t *epoch, char *owner_out, size_t owner_len, struct ut_err *err);
/* 0 when we hold name with this epoch and it has not expired, else -ESTALE
 * (err says who holds it, or that it expired / is free). */
int crdt_lease_check(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t epoch,
                     struct ut_err *err);
/* Frees our lease (expired or not, as long as nobody took it: else -ESTALE),
 * keeping its epoch. */
int crdt_lease_release(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t epoch,
                       struct ut_err *err);

#endif
