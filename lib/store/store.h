/*
 * store.h - the SQLite store: one writer, many readers.
 *
 * Model: a single writer thread owns the only write connection. Callers
 * submit write jobs with store_write(); the writer groups the jobs queued at
 * that moment into one transaction (each job inside its own SAVEPOINT, so a
 * failing job rolls back alone) and wakes each caller with its own result.
 * Reads use a per-thread read-only connection (WAL lets them run beside the
 * writer) obtained with store_reader(). Each connection has a prepared
 * statement cache keyed by SQL text.
 *
 * URLs: "sqlite:///abs/path.db", "sqlite://relative.db" or "sqlite::memory:"
 * (memory: shared-cache, for tests). "postgresql://..." is recognised and
 * refused with -ENOTSUP until the libpq backend exists.
 *
 * Errors: functions returning int give 0 or a negative errno and fill err
 * with one line naming the url/path/SQL at fault. Credentials in a url are
 * never echoed in messages.
 *
 * Threading: every function may be called from any thread, except that a
 * connection (a reader, or the db passed to a job) belongs to one thread.
 * store_close must not race with other calls on the same store, apart from
 * store_write calls already waiting for their result (they are completed).
 */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <sqlite3.h>

#include "util/err.h"

struct store; /* opaque */

/* A schema migration: migrations run in order of version, each inside one
 * transaction, and the reached version is recorded in PRAGMA user_version.
 * Versions start at 1 and must be strictly increasing. */
struct store_migration {
    int version;
    const char *sql; /* one or more statements */
};

struct store_opts {
    const char *url;
    const struct store_migration *migrations;
    int n_migrations;
    int busy_timeout_ms; /* 0: 5000 */
};

/* Opens (creating the file if needed), sets WAL, runs pending migrations and
 * starts the writer thread. A path that cannot be opened or written gives an
 * error naming the path and the reason. The write test is real (a committed
 * write transaction), so an unwritable database fails here, not at the first
 * store_write.
 * Errors: -EINVAL bad url/options/migration list, -ENOTSUP postgresql url,
 * -EPROTO database schema newer than the last migration, -EISDIR / -ENOENT /
 * -EACCES / -EIO ... for paths, the mapped sqlite error for a failing
 * migration (earlier migrations of the same run stay committed; the failing
 * one leaves no trace). Migration SQL must not contain BEGIN/COMMIT. */
int store_open(struct store **out, const struct store_opts *o, struct ut_err *err);
/* Stops the writer after draining queued jobs and closes every connection
 * (readers first, the writer last so it checkpoints the WAL). Jobs queued
 * before the call are run and committed, and their callers get their result
 * before s is freed. Starting new calls once store_close was called is a bug
 * (a store_write that slips in before the writer stops gets -ESHUTDOWN).
 * Must not be called from a write job (it logs an error and returns without
 * closing). NULL is a no-op. */
void store_close(struct store *s);

/* A write job: runs on the writer thread inside a SAVEPOINT. Return 0 to
 * keep its changes, negative to roll them back (and fill err; err is never
 * NULL here). A positive return is treated as -EINVAL. The job must not run
 * BEGIN/COMMIT/ROLLBACK or release savepoints it did not open: the batch
 * transaction belongs to the writer (if it does, the batch is cut there and
 * the jobs whose outcome became unknown get -EIO). */
typedef int (*store_write_fn)(sqlite3 *db, void *arg, struct ut_err *err);
/* Runs fn on the writer and waits until its transaction is committed (or
 * rolled back). Returns fn's result, or a negative commit error.
 * Batching: the writer takes every job queued at that moment (at most 256)
 * into one transaction; a job that fails rolls back alone, but if the COMMIT
 * itself fails (e.g. a deferred foreign key) every job of the batch that had
 * succeeded gets the commit error, and nothing of the batch is kept.
 * Nested calls: called from inside a job (on the writer thread) it does not
 * queue (that would deadlock): fn runs at once in a nested SAVEPOINT of the
 * current transaction. A failure rolls back only fn's changes; success means
 * "kept for now": the changes commit or roll back with the enclosing job. */
int store_write(struct store *s, store_write_fn fn, void *arg, struct ut_err *err);

/* Registers the store's one post-commit hook (a second call replaces it;
 * fn NULL removes it). The writer calls fn(arg) on its own thread after
 * each successful COMMIT of a batch that kept the changes of at least one
 * job: not after a batch whose COMMIT failed or that could not begin, and
 * not when every job of the batch failed (the empty transaction commits,
 * but nothing was kept). A batch that kept some jobs and rolled back others
 * does call it. Every top-level job runs in a batch; a nested store_write
 * is part of its enclosing job and has no commit of its own. The hook runs
 * before the batch's callers are woken, so when store_write returns 0 the
 * hook for that commit has already returned. It runs outside any
 * transaction and must be short and must not call store_write or
 * store_close (a flag and a wake-up is the intended use). When
 * store_on_commit returns, the replaced hook is not running and will not be
 * called again (except that a call made from inside the hook itself returns
 * while that hook is still on the stack). */
void store_on_commit(struct store *s, void (*fn)(void *arg), void *arg);

/* This thread's read-only connection (opened on first use, closed by
 * store_close; PRAGMA query_only is on). Never use it from another thread.
 * Connections are kept per thread id until store_close: a thread that exits
 * leaves its connection to the next thread that gets the same id. Reset
 * statements when done with them, or the reader keeps seeing an old
 * snapshot. With "sqlite::memory:" (shared cache) a read may fail with
 * SQLITE_LOCKED while a write transaction is open. */
sqlite3 *store_reader(struct store *s, struct ut_err *err);

/* Cached prepared statement for sql on db (reset and bindings cleared before
 * it is returned). Owned by the cache: do not finalize. db must be a
 * connection of this store (the writer's db passed to a job, or a reader)
 * and used from its own thread. The key is the SQL text (content, not
 * pointer), which must be exactly one statement. The cache holds at most
 * 128 statements per connection and evicts the least recently used one, so
 * a returned statement stays valid until 128 other distinct SQL texts have
 * been requested on the same connection. NULL on error (err filled). */
sqlite3_stmt *store_stmt(struct store *s, sqlite3 *db, const char *sql, struct ut_err *err);

/* The schema version the database is at (after migrations at open). */
int store_schema_version(struct store *s);

/* Maps a sqlite result code to a negative errno for job authors: 0 for
 * SQLITE_OK/ROW/DONE, -EBUSY busy/locked, -EEXIST unique/primary key
 * (extended code, i.e. sqlite3_extended_errcode()), -EINVAL other
 * constraints/misuse, -EACCES read-only, -ENOSPC full, -ENOMEM, else -EIO. */
int store_sqlite_errno(int sqlite_rc);

/* Counters for metrics and tests; a consistent snapshot. */
struct store_stats {
    long long queued;  /* jobs waiting for the writer right now */
    long long batches; /* write transactions the writer has finished */
    long long jobs;    /* jobs those transactions ran (ok or failed) */
};
void store_stats(struct store *s, struct store_stats *out);

#endif
