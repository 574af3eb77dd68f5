/*
 * store.c - the SQLite store: url parsing, opening and checking the
 * database, migrations, the writer thread with its job queue, per-thread
 * read-only connections and the per-connection statement cache.
 *
 * Locking: s->mu guards the job queue, the stop flag, the in-flight count
 * and the counters; s->rmu guards the list of reader connections. Neither
 * is held while SQL runs. s->hmu guards the post-commit hook and is held
 * by the writer while it calls the hook, so store_on_commit can promise
 * that a replaced hook is no longer running when it returns. A connection
 * is only ever used by one thread at a time (NOMUTEX): the writer's by the
 * writer thread (or by store_open before that thread exists), a reader's by
 * the thread that opened it.
 */
#include "store/store.h"

#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#define STORE_BATCH_MAX      256  /* jobs per write transaction */
#define STORE_STMT_CACHE_MAX 128  /* cached statements per connection */
#define STORE_BUSY_DEFAULT   5000 /* ms */
#define STORE_TLS_SLOTS      4    /* stores whose reader a thread remembers */
#define STORE_SQL_SHOW       160  /* bytes of SQL quoted in messages */

enum store_kind { STORE_FILE, STORE_MEMORY };

struct stmt_entry {
    char *sql; /* owned copy of the key */
    size_t len;
    uint64_t hash;
    uint64_t used; /* LRU tick */
    sqlite3_stmt *stmt;
};

struct conn {
    sqlite3 *db;
    pthread_t owner;   /* readers: the thread the connection belongs to */
    struct conn *next; /* readers list, under s->rmu */
    int n_cache;
    uint64_t tick;
    struct stmt_entry cache[STORE_STMT_CACHE_MAX];
};

/* A queued write; lives on the stack of the store_write caller, which
 * sleeps on done_cv (with s->mu) until the writer sets done. */
struct job {
    store_write_fn fn;
    void *arg;
    int rc;
    int done;
    struct ut_err err;
    pthread_cond_t done_cv;
    struct job *next;
};

struct store {
    uint64_t id; /* unique per process, never reused; 0 is "none" */
    enum store_kind kind;
    char *target; /* file path, or the shared-cache memory URI */
    char *shown;  /* what messages and logs call the database */
    int busy_ms;
    int schema_version; /* written before the writer starts, then constant */

    struct conn *writer;
    pthread_t writer_thread;
    int writer_started;
    int sync_ok; /* mutexes and condvars initialised */

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* writer: jobs queued or stopping */
    pthread_cond_t idle_cv; /* store_close: inflight reached 0 */
    struct job *head, *tail;
    int stopping;
    long long inflight; /* store_write callers inside the queue path */
    struct store_stats stats;

    pthread_mutex_t rmu;
    struct conn *readers;

    pthread_mutex_t hmu;
    void (*commit_fn)(void *arg); /* under hmu */
    void *commit_arg;
};

static atomic_uint_least64_t g_next_id = 1;

/* Set on the writer thread to its store's id: lets store_write detect a
 * nested call and store_stmt accept the writer connection. */
static _Thread_local uint64_t tls_writer_id;

/* Set on the writer thread while it runs the post-commit hook (holding
 * s->hmu): store_on_commit called from the hook must not lock it again. */
static _Thread_local int tls_in_hook;

/* Fast path for store_reader: the last few (store id, reader) pairs of this
 * thread. Ids are never reused, so a matching id means a live store and a
 * live connection (readers are only freed by store_close). */
static _Thread_local struct {
    uint64_t id;
    struct conn *c;
} tls_readers[STORE_TLS_SLOTS];
static _Thread_local unsigned tls_next_slot;

int store_sqlite_errno(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return -EEXIST;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_INTERRUPT:
        return -EINTR;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* Fills err with "<what>: <sqlite message>[ (<strerror>)]" and returns the
 * negative errno for rc. The OS error is only added for I/O-class codes,
 * where sqlite3_system_errno is meaningful. */
__attribute__((format(printf, 4, 5))) static int db_err(struct ut_err *err, sqlite3 *db, int rc,
                                                        const char *fmt, ...)
{
    char what[UT_ERR_MAX];
    char ebuf[128];
    va_list ap;
    int sys = 0;
    int prim = rc & 0xff;
    int ret = store_sqlite_errno(rc);

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (ret == 0)
        ret = -EIO;
    if (db != NULL && (prim == SQLITE_CANTOPEN || prim == SQLITE_IOERR || prim == SQLITE_READONLY ||
                       prim == SQLITE_PERM || prim == SQLITE_FULL))
        sys = sqlite3_system_errno(db);
    if (sys > 0) {
        ut_err_set(err, "%s: %s (%s)", what, sqlite3_errmsg(db),
                   strerror_r(sys, ebuf, sizeof(ebuf)));
        if (prim == SQLITE_CANTOPEN)
            ret = -sys;
    } else {
        ut_err_set(err, "%s: %s", what, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
    return ret;
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Rolls back the open transaction, if any; used on error paths only. */
static void rollback_quiet(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        (void)exec_sql(db, "ROLLBACK");
}

/* Runs a one-row query and copies column 0 as text or int. */
static int query_one(sqlite3 *db, const char *sql, char *text, size_t n, int *num)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            rc = SQLITE_ERROR;
        goto out;
    }
    if (text != NULL) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(text, n, "%s", t != NULL ? (const char *)t : "");
    }
    if (num != NULL)
        *num = sqlite3_column_int(st, 0);
    rc = SQLITE_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Copies url into buf for messages, replacing any "user:password@" part. */
static const char *url_for_msg(const char *url, char *buf, size_t n)
{
    const char *sep = strstr(url, "://");
    const char *auth, *at, *end;

    snprintf(buf, n, "%s", url);
    if (sep == NULL)
        return buf;
    auth = sep + 3;
    end = auth + strcspn(auth, "/?#");
    at = memchr(auth, '@', (size_t)(end - auth));
    if (at != NULL)
        snprintf(buf, n, "%.*s***%s", (int)(auth - url), url, at);
    return buf;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Fills s->kind, s->target and s->shown from the url. */
static int parse_url(struct store *s, const char *url, struct ut_err *err)
{
    char shown[UT_ERR_MAX / 2];
    const char *path;
    int rc = 0;

    if (url == NULL || *url == '\0') {
        ut_err_set(err, "store: no database url given");
        return -EINVAL;
    }
    url_for_msg(url, shown, sizeof(shown));
    if (strcmp(url, "sqlite::memory:") == 0) {
        s->kind = STORE_MEMORY;
        if (asprintf(&s->target, "file:memdb%llu?mode=memory&cache=shared",
                     (unsigned long long)s->id) < 0) {
            s->target = NULL;
            rc = -ENOMEM;
            ut_err_set(err, "store: out of memory");
            goto out;
        }
        s->shown = strdup(url);
    } else if (starts_with(url, "postgresql://") || starts_with(url, "postgres://")) {
        ut_err_set(err,
                   "store: database url \"%s\": PostgreSQL is not supported yet (no libpq "
                   "backend); use a sqlite:// url",
                   shown);
        rc = -ENOTSUP;
        goto out;
    } else if (starts_with(url, "sqlite://")) {
        path = url + strlen("sqlite://");
        if (*path == '\0') {
            ut_err_set(err, "store: database url \"%s\" has no path", shown);
            rc = -EINVAL;
            goto out;
        }
        if (strcmp(path, ":memory:") == 0) {
            ut_err_set(err,
                       "store: database url \"%s\": use \"sqlite::memory:\" for a memory "
                       "database",
                       shown);
            rc = -EINVAL;
            goto out;
        }
        s->kind = STORE_FILE;
        /* A relative "file:..." would be read as an SQLite URI when URI
         * filenames are enabled globally: keep it a plain path. */
        if (starts_with(path, "file:")) {
            if (asprintf(&s->target, "./%s", path) < 0)
                s->target = NULL;
        } else {
            s->target = strdup(path);
        }
        s->shown = strdup(path);
    } else {
        ut_err_set(err,
                   "store: unsupported database url \"%s\" (expected sqlite:///abs/path, "
                   "sqlite://rel/path, sqlite::memory: or postgresql://...)",
                   shown);
        rc = -EINVAL;
        goto out;
    }
    if (s->target == NULL || s->shown == NULL) {
        ut_err_set(err, "store: out of memory");
        rc = -ENOMEM;
    }
out:
    return rc;
}

/* Clear reasons for the common path mistakes before sqlite reports a vague
 * "unable to open database file". The directory must be writable even for
 * an existing file: WAL creates and removes the -wal and -shm files there. */
static int check_path(const struct store *s, struct ut_err *err)
{
    char ebuf[128];
    struct stat st;
    char *dir = NULL;
    char *slash;
    int rc = 0;

    if (stat(s->target, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            ut_err_set(err, "store: database path \"%s\" is a directory", s->shown);
            rc = -EISDIR;
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            ut_err_set(err, "store: database path \"%s\" is not a regular file", s->shown);
            rc = -EINVAL;
            goto out;
        }
    } else if (errno == ENOTDIR) {
        ut_err_set(err, "store: database path \"%s\": a parent component is not a directory",
                   s->shown);
        rc = -ENOTDIR;
        goto out;
    } else if (errno != ENOENT) {
        rc = -errno;
        ut_err_set(err, "store: database path \"%s\": %s", s->shown,
                   strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto out;
    }
    dir = strdup(s->target);
    if (dir == NULL) {
        ut_err_set(err, "store: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, strlen(dir) + 1, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (stat(dir, &st) != 0) {
        rc = -errno;
        ut_err_set(err, "store: database path \"%s\": directory \"%s\" %s", s->shown, dir,
                   rc == -ENOENT ? "does not exist" : strerror_r(-rc, ebuf, sizeof(ebuf)));
    } else if (!S_ISDIR(st.st_mode)) {
        ut_err_set(err, "store: database path \"%s\": \"%s\" is not a directory", s->shown, dir);
        rc = -ENOTDIR;
    } else if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
        rc = -errno;
        ut_err_set(err,
                   "store: database path \"%s\": directory \"%s\" is not writable (%s; "
                   "needed for the database and its WAL files)",
                   s->shown, dir, strerror_r(-rc, ebuf, sizeof(ebuf)));
    }
out:
    free(dir);
    return rc;
}

/* ---- statement cache ---------------------------------------------------- */

static uint64_t sql_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void cache_clear(struct conn *c)
{
    for (int i = 0; i < c->n_cache; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        free(c->cache[i].sql);
    }
    c->n_cache = 0;
}

static sqlite3_stmt *cache_get(struct store *s, struct conn *c, const char *sql, struct ut_err *err)
{
    size_t len = strlen(sql);
    uint64_t h = sql_hash(sql, len);
    sqlite3_stmt *st = NULL, *extra = NULL;
    struct stmt_entry *e;
    const char *tail = NULL;
    char *copy = NULL;
    int rc, slot;

    for (int i = 0; i < c->n_cache; i++) {
        e = &c->cache[i];
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
            e->used = ++c->tick;
            sqlite3_reset(e->stmt);
            sqlite3_clear_bindings(e->stmt);
            return e->stmt;
        }
    }
    rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK) {
        db_err(err, c->db, rc, "store: %s: cannot prepare \"%.*s\"", s->shown, STORE_SQL_SHOW, sql);
        goto fail;
    }
    if (st == NULL) {
        ut_err_set(err, "store: %s: no SQL statement in \"%.*s\"", s->shown, STORE_SQL_SHOW, sql);
        goto fail;
    }
    /* Whatever follows must be only whitespace or comments. */
    if (tail != NULL && *tail != '\0') {
        rc = sqlite3_prepare_v2(c->db, tail, -1, &extra, NULL);
        if (rc != SQLITE_OK || extra != NULL) {
            ut_err_set(err, "store: %s: more than one statement in \"%.*s\" (one is allowed)",
                       s->shown, STORE_SQL_SHOW, sql);
            goto fail;
        }
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        ut_err_set(err, "store: out of memory");
        goto fail;
    }
    memcpy(copy, sql, len + 1);
    if (c->n_cache < STORE_STMT_CACHE_MAX) {
        slot = c->n_cache++;
    } else {
        slot = 0;
        for (int i = 1; i < c->n_cache; i++) {
            if (c->cache[i].used < c->cache[slot].used)
                slot = i;
        }
        sqlite3_finalize(c->cache[slot].stmt);
        free(c->cache[slot].sql);
    }
    e = &c->cache[slot];
    e->sql = copy;
    e->len = len;
    e->hash = h;
    e->used = ++c->tick;
    e->stmt = st;
    return st;
fail:
    sqlite3_finalize(extra);
    sqlite3_finalize(st);
    return NULL;
}

/* ---- connections -------------------------------------------------------- */

/* Finalizes the cache and closes. A caller's own unfinalized statements
 * would make sqlite3_close fail: the handle is then left to close_v2 so it
 * goes away when they are finalized. */
static void conn_free(struct store *s, struct conn *c)
{
    if (c == NULL)
        return;
    cache_clear(c);
    if (c->db != NULL && sqlite3_close(c->db) != SQLITE_OK) {
        ut_log(UT_LOG_WARN, "store", "connection closed with unfinalized statements",
               UT_LF_S("path", s->shown));
        sqlite3_close_v2(c->db);
    }
    free(c);
}

static int conn_open(struct store *s, int writer, struct conn **out, struct ut_err *err)
{
    int flags = SQLITE_OPEN_NOMUTEX;
    struct conn *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ut_err_set(err, "store: out of memory");
        return -ENOMEM;
    }
    flags |= writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    if (s->kind == STORE_MEMORY)
        flags |= SQLITE_OPEN_URI;
    rc = sqlite3_open_v2(s->target, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = db_err(err, c->db, rc, "store: cannot open %sdatabase \"%s\"",
                    writer ? "" : "read-only connection to ", s->shown);
        goto out;
    }
    rc = sqlite3_busy_timeout(c->db, s->busy_ms);
    if (rc != SQLITE_OK) {
        rc = db_err(err, c->db, rc, "store: %s: cannot set busy_timeout", s->shown);
        goto out;
    }
    if (!writer) {
        rc = exec_sql(c->db, "PRAGMA query_only=ON");
        if (rc != SQLITE_OK) {
            rc = db_err(err, c->db, rc, "store: %s: cannot set query_only", s->shown);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc < 0)
        conn_free(s, c);
    else
        *out = c;
    return rc;
}

/* Sets up the writer connection and proves the database is writable. */
static int writer_setup(struct store *s, struct ut_err *err)
{
    sqlite3 *db = s->writer->db;
    char mode[32];
    char sql[64];
    int rc, v = 0;

    if (sqlite3_db_readonly(db, "main") == 1) {
        ut_err_set(err, "store: database \"%s\" is read-only (cannot open it for writing)",
                   s->shown);
        return -EACCES;
    }
    if (s->kind == STORE_FILE) {
        rc = query_one(db, "PRAGMA journal_mode=WAL", mode, sizeof(mode), NULL);
        if (rc != SQLITE_OK)
            return db_err(err, db, rc, "store: database \"%s\": cannot switch to WAL", s->shown);
        if (strcmp(mode, "wal") != 0) {
            ut_err_set(err,
                       "store: database \"%s\": cannot switch to WAL (journal_mode stays "
                       "\"%s\"; is the directory writable and on a local filesystem?)",
                       s->shown, mode);
            return -EIO;
        }
    }
    rc = exec_sql(db, "PRAGMA synchronous=NORMAL");
    /* Checkpoint every 8000 pages (~32 MB of WAL) instead of SQLite's 1000:
     * pages rewritten by many small transactions (the index pages of
     * crdt_rows, crdt_vv) are copied back to the database once per
     * checkpoint, so fewer checkpoints copy and fsync less (akamu: -13% CPU
     * per issuance in bench/acme.sh, docs/performance.md). */
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA wal_autocheckpoint=8000");
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA foreign_keys=ON");
    if (rc != SQLITE_OK)
        return db_err(err, db, rc, "store: database \"%s\": cannot set pragmas", s->shown);
    rc = query_one(db, "PRAGMA foreign_keys", NULL, 0, &v);
    if (rc != SQLITE_OK || v != 1) {
        ut_err_set(err, "store: database \"%s\": foreign keys cannot be enabled", s->shown);
        return -ENOTSUP;
    }
    /* A real write: rewriting user_version with its own value dirties page 1,
     * so the commit goes to disk (the WAL) and fails now if it ever would. */
    rc = query_one(db, "PRAGMA user_version", NULL, 0, &v);
    if (rc != SQLITE_OK)
        return db_err(err, db, rc, "store: database \"%s\": cannot read schema version", s->shown);
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", v);
    rc = exec_sql(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = exec_sql(db, sql);
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "COMMIT");
    if (rc != SQLITE_OK) {
        rc = db_err(err, db, rc, "store: database \"%s\" is not writable", s->shown);
        rollback_quiet(db);
        return rc;
    }
    return 0;
}

static int check_migrations(const struct store_opts *o, struct ut_err *err)
{
    int prev = 0;

    if (o->n_migrations < 0 || (o->n_migrations > 0 && o->migrations == NULL)) {
        ut_err_set(err, "store: bad migration list (n_migrations=%d)", o->n_migrations);
        return -EINVAL;
    }
    for (int i = 0; i < o->n_migrations; i++) {
        const struct store_migration *m = &o->migrations[i];

        if (m->sql == NULL) {
            ut_err_set(err, "store: migration %d has no SQL", m->version);
            return -EINVAL;
        }
        if (m->version <= prev) {
            ut_err_set(err,
                       "store: migration versions must start at 1 and strictly increase "
                       "(migration #%d has version %d after %d)",
                       i, m->version, prev);
            return -EINVAL;
        }
        prev = m->version;
    }
    return 0;
}

static int newer_err(const struct store *s, int have, int last, struct ut_err *err)
{
    ut_err_set(err,
               "store: database \"%s\": database schema version %d is newer than this binary (%d)",
               s->shown, have, last);
    return -EPROTO;
}

/* Runs each pending migration in its own IMMEDIATE transaction together with
 * the user_version bump. The version is re-read inside the transaction so a
 * second process migrating the same file at once cannot apply one twice. */
static int run_migrations(struct store *s, const struct store_opts *o, struct ut_err *err)
{
    sqlite3 *db = s->writer->db;
    int last = o->n_migrations > 0 ? o->migrations[o->n_migrations - 1].version : 0;
    char sql[64];
    int rc, cur = 0;

    rc = query_one(db, "PRAGMA user_version", NULL, 0, &cur);
    if (rc != SQLITE_OK)
        return db_err(err, db, rc, "store: database \"%s\": cannot read schema version", s->shown);
    if (cur > last)
        return newer_err(s, cur, last, err);
    for (int i = 0; i < o->n_migrations; i++) {
        const struct store_migration *m = &o->migrations[i];

        if (m->version <= cur)
            continue;
        rc = exec_sql(db, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK)
            return db_err(err, db, rc, "store: database \"%s\": migration %d: cannot begin",
                          s->shown, m->version);
        rc = query_one(db, "PRAGMA user_version", NULL, 0, &cur);
        if (rc != SQLITE_OK) {
            rc =
                db_err(err, db, rc, "store: database \"%s\": cannot read schema version", s->shown);
            goto fail;
        }
        if (cur > last) {
            rc = newer_err(s, cur, last, err);
            goto fail;
        }
        if (m->version <= cur) { /* done meanwhile by another process */
            rollback_quiet(db);
            continue;
        }
        rc = exec_sql(db, m->sql);
        if (rc != SQLITE_OK) {
            rc = db_err(err, db, rc, "store: database \"%s\": migration %d failed", s->shown,
                        m->version);
            goto fail;
        }
        if (sqlite3_get_autocommit(db)) {
            ut_err_set(err,
                       "store: database \"%s\": migration %d ended the transaction itself "
                       "(BEGIN/COMMIT/ROLLBACK are not allowed in migrations)",
                       s->shown, m->version);
            rc = -EINVAL;
            goto fail;
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", m->version);
        rc = exec_sql(db, sql);
        if (rc == SQLITE_OK)
            rc = exec_sql(db, "COMMIT");
        if (rc != SQLITE_OK) {
            rc = db_err(err, db, rc, "store: database \"%s\": migration %d: cannot commit",
                        s->shown, m->version);
            goto fail;
        }
        cur = m->version;
        ut_log(UT_LOG_INFO, "store", "applied migration", UT_LF_S("path", s->shown),
               UT_LF_I("version", cur));
    }
    s->schema_version = cur;
    return 0;
fail:
    rollback_quiet(db);
    return rc;
}

/* ---- writer ------------------------------------------------------------- */

/* Resets statements a finished job left mid-step, so they hold no locks
 * and cannot block the COMMIT. Top-level jobs only. */
static void reset_busy_stmts(sqlite3 *db)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st != NULL;
         st = sqlite3_next_stmt(db, st)) {
        if (sqlite3_stmt_busy(st))
            sqlite3_reset(st);
    }
}

/* Runs fn inside SAVEPOINT name. *broken is set when the savepoint could
 * not be released or rolled back, or the transaction is gone: fn's changes
 * can then not be separated from the rest of the transaction. */
static int run_in_savepoint(struct store *s, sqlite3 *db, store_write_fn fn, void *arg,
                            struct ut_err *err, const char *name, int *broken)
{
    char sp[64], rel[64], back[64];
    char ebuf[128];
    int rc, frc;

    snprintf(sp, sizeof(sp), "SAVEPOINT %s", name);
    snprintf(rel, sizeof(rel), "RELEASE %s", name);
    snprintf(back, sizeof(back), "ROLLBACK TO %s", name);
    *broken = 0;
    rc = exec_sql(db, sp);
    if (rc != SQLITE_OK)
        return db_err(err, db, rc, "store: %s: cannot open savepoint", s->shown);
    err->msg[0] = '\0';
    frc = fn(db, arg, err);
    if (frc > 0) {
        ut_err_set(err, "store: write job returned %d (must be 0 or a negative errno)", frc);
        frc = -EINVAL;
    } else if (frc < 0 && err->msg[0] == '\0') {
        ut_err_set(err, "store: write job failed: %s", strerror_r(-frc, ebuf, sizeof(ebuf)));
    }
    if (sqlite3_get_autocommit(db)) {
        *broken = 1;
        if (frc == 0) {
            ut_err_set(err, "store: write job ended the batch transaction (BEGIN/COMMIT/ROLLBACK "
                            "are not allowed in jobs)");
            frc = -EPROTO;
        }
        return frc;
    }
    if (frc == 0) {
        rc = exec_sql(db, rel);
        if (rc == SQLITE_OK)
            return 0;
        frc = db_err(err, db, rc, "store: %s: cannot release savepoint", s->shown);
    }
    rc = exec_sql(db, back);
    if (rc == SQLITE_OK)
        rc = exec_sql(db, rel);
    if (rc != SQLITE_OK)
        *broken = 1;
    return frc;
}

/* Calls the post-commit hook, if any, after a COMMIT that kept the changes
 * of at least one job. */
static void call_commit_hook(struct store *s)
{
    pthread_mutex_lock(&s->hmu);
    if (s->commit_fn != NULL) {
        tls_in_hook = 1;
        s->commit_fn(s->commit_arg);
        tls_in_hook = 0;
    }
    pthread_mutex_unlock(&s->hmu);
}

void store_on_commit(struct store *s, void (*fn)(void *arg), void *arg)
{
    if (s == NULL)
        return;
    if (tls_in_hook && tls_writer_id == s->id) { /* from the hook: hmu is ours */
        s->commit_fn = fn;
        s->commit_arg = arg;
        return;
    }
    pthread_mutex_lock(&s->hmu);
    s->commit_fn = fn;
    s->commit_arg = arg;
    pthread_mutex_unlock(&s->hmu);
}

static void job_fail(struct job *j, int rc, const struct ut_err *e)
{
    j->rc = rc;
    memcpy(j->err.msg, e->msg, sizeof(j->err.msg));
}

/* Runs jobs b[0..n) in one transaction (see store_write for the rules). */
static void run_batch(struct store *s, struct job **b, int n)
{
    sqlite3 *db = s->writer->db;
    struct ut_err e;
    int first = 0; /* first job of the current transaction */
    int rc, broken, kept = 0;

    rc = exec_sql(db, "BEGIN IMMEDIATE");
    for (int i = 0; i < n; i++) {
        if (rc != SQLITE_OK) { /* no transaction: fail the rest */
            rc = db_err(&e, db, rc, "store: %s: cannot begin write transaction", s->shown);
            for (int k = i; k < n; k++)
                job_fail(b[k], rc, &e);
            return;
        }
        b[i]->rc = run_in_savepoint(s, db, b[i]->fn, b[i]->arg, &b[i]->err, "store_job", &broken);
        reset_busy_stmts(db);
        if (!broken)
            continue;
        /* The job's changes cannot be told apart: drop the transaction, and
         * the jobs before it in this transaction lose their success. */
        rollback_quiet(db);
        if (b[i]->rc == 0) {
            ut_err_set(&b[i]->err, "store: write job broke its savepoint");
            b[i]->rc = -EPROTO;
        }
        ut_err_set(&e,
                   "store: %s: outcome unknown: another job in the same write transaction "
                   "ended or broke it",
                   s->shown);
        for (int k = first; k < i; k++) {
            if (b[k]->rc == 0)
                job_fail(b[k], -EIO, &e);
        }
        first = i + 1;
        rc = i + 1 < n ? exec_sql(db, "BEGIN IMMEDIATE") : SQLITE_OK;
    }
    if (first >= n)
        return;
    rc = exec_sql(db, "COMMIT");
    if (rc != SQLITE_OK) {
        rc = db_err(&e, db, rc, "store: %s: commit failed", s->shown);
        rollback_quiet(db);
        for (int k = first; k < n; k++) {
            if (b[k]->rc == 0)
                job_fail(b[k], rc, &e);
        }
        return;
    }
    for (int k = first; k < n; k++)
        kept |= b[k]->rc == 0;
    if (kept)
        call_commit_hook(s);
}

static void *writer_main(void *arg)
{
    struct store *s = arg;
    struct job *batch[STORE_BATCH_MAX];
    int n;

    tls_writer_id = s->id;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->work_cv, &s->mu);
        if (s->head == NULL)
            break; /* stopping, and the queue is drained */
        for (n = 0; s->head != NULL && n < STORE_BATCH_MAX; n++) {
            batch[n] = s->head;
            s->head = s->head->next;
        }
        if (s->head == NULL)
            s->tail = NULL;
        s->stats.queued -= n;
        pthread_mutex_unlock(&s->mu);

        run_batch(s, batch, n);

        pthread_mutex_lock(&s->mu);
        s->stats.batches++;
        s->stats.jobs += n;
        /* Under s->mu: a caller cannot see done (and free its job) before
         * we unlock, and we do not touch the jobs after that. */
        for (int i = 0; i < n; i++) {
            batch[i]->done = 1;
            pthread_cond_signal(&batch[i]->done_cv);
        }
    }
    pthread_mutex_unlock(&s->mu);
    tls_writer_id = 0;
    return NULL;
}

/* store_write called from a job: run fn right here, in a nested savepoint. */
static int write_nested(struct store *s, store_write_fn fn, void *arg, struct ut_err *err)
{
    sqlite3 *db = s->writer->db;
    struct ut_err e;
    int rc, broken;

    if (sqlite3_get_autocommit(db)) {
        ut_err_set(err, "store: %s: nested store_write outside a job", s->shown);
        return -EPROTO;
    }
    /* If fn breaks the savepoints, the enclosing job's own ROLLBACK
     * TO/RELEASE notices and the batch handles it. */
    rc = run_in_savepoint(s, db, fn, arg, &e, "store_nested", &broken);
    if (rc < 0 && err != NULL)
        memcpy(err->msg, e.msg, sizeof(err->msg));
    return rc;
}

int store_write(struct store *s, store_write_fn fn, void *arg, struct ut_err *err)
{
    struct job j;

    if (s == NULL || fn == NULL) {
        ut_err_set(err, "store_write: %s is NULL", s == NULL ? "store" : "job function");
        return -EINVAL;
    }
    if (tls_writer_id == s->id)
        return write_nested(s, fn, arg, err);
    memset(&j, 0, sizeof(j));
    j.fn = fn;
    j.arg = arg;
    if (pthread_cond_init(&j.done_cv, NULL) != 0) {
        ut_err_set(err, "store_write: cannot create condition variable");
        return -ENOMEM;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&j.done_cv);
        ut_err_set(err, "store: %s: store is closing; write refused", s->shown);
        return -ESHUTDOWN;
    }
    s->inflight++;
    if (s->tail != NULL)
        s->tail->next = &j;
    else
        s->head = &j;
    s->tail = &j;
    s->stats.queued++;
    pthread_cond_signal(&s->work_cv);
    while (!j.done)
        pthread_cond_wait(&j.done_cv, &s->mu);
    if (--s->inflight == 0 && s->stopping)
        pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&j.done_cv);
    if (j.rc < 0 && err != NULL)
        memcpy(err->msg, j.err.msg, sizeof(err->msg));
    return j.rc;
}

/* ---- readers and statements --------------------------------------------- */

sqlite3 *store_reader(struct store *s, struct ut_err *err)
{
    pthread_t self = pthread_self();
    struct conn *c;
    unsigned slot;

    if (s == NULL) {
        ut_err_set(err, "store_reader: store is NULL");
        return NULL;
    }
    for (int i = 0; i < STORE_TLS_SLOTS; i++) {
        if (tls_readers[i].id == s->id)
            return tls_readers[i].c->db;
    }
    pthread_mutex_lock(&s->rmu);
    for (c = s->readers; c != NULL; c = c->next) {
        if (pthread_equal(c->owner, self))
            break;
    }
    pthread_mutex_unlock(&s->rmu);
    if (c == NULL) {
        if (conn_open(s, 0, &c, err) < 0)
            return NULL;
        c->owner = self;
        pthread_mutex_lock(&s->rmu);
        c->next = s->readers;
        s->readers = c;
        pthread_mutex_unlock(&s->rmu);
    }
    slot = tls_next_slot++ % STORE_TLS_SLOTS;
    tls_readers[slot].id = s->id;
    tls_readers[slot].c = c;
    return c->db;
}

/* The store connection db is, if the calling thread may use it. */
static struct conn *conn_of(struct store *s, sqlite3 *db, struct ut_err *err)
{
    pthread_t self = pthread_self();
    struct conn *c;
    int other = 0;

    if (db == s->writer->db) {
        if (tls_writer_id == s->id)
            return s->writer;
        ut_err_set(err, "store_stmt: %s: the writer connection is only usable inside a write job",
                   s->shown);
        return NULL;
    }
    for (int i = 0; i < STORE_TLS_SLOTS; i++) {
        if (tls_readers[i].id == s->id && tls_readers[i].c->db == db)
            return tls_readers[i].c;
    }
    pthread_mutex_lock(&s->rmu);
    for (c = s->readers; c != NULL; c = c->next) {
        if (c->db == db) {
            other = !pthread_equal(c->owner, self);
            break;
        }
    }
    pthread_mutex_unlock(&s->rmu);
    if (c == NULL) {
        ut_err_set(err, "store_stmt: %s: connection does not belong to this store", s->shown);
        return NULL;
    }
    if (other) {
        ut_err_set(err, "store_stmt: %s: reader connection belongs to another thread", s->shown);
        return NULL;
    }
    return c;
}

sqlite3_stmt *store_stmt(struct store *s, sqlite3 *db, const char *sql, struct ut_err *err)
{
    struct conn *c;

    if (s == NULL || db == NULL || sql == NULL) {
        ut_err_set(err, "store_stmt: %s is NULL",
                   s == NULL ? "store" : (db == NULL ? "connection" : "sql"));
        return NULL;
    }
    c = conn_of(s, db, err);
    if (c == NULL)
        return NULL;
    return cache_get(s, c, sql, err);
}

int store_schema_version(struct store *s)
{
    return s != NULL ? s->schema_version : -EINVAL;
}

void store_stats(struct store *s, struct store_stats *out)
{
    if (s == NULL || out == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

/* ---- open / close ------------------------------------------------------- */

static void store_free(struct store *s)
{
    struct conn *c, *next;

    for (c = s->readers; c != NULL; c = next) {
        next = c->next;
        conn_free(s, c);
    }
    conn_free(s, s->writer); /* last: it checkpoints and removes the WAL */
    if (s->sync_ok) {
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->rmu);
        pthread_mutex_destroy(&s->hmu);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->idle_cv);
    }
    free(s->target);
    free(s->shown);
    free(s);
}

int store_open(struct store **out, const struct store_opts *o, struct ut_err *err)
{
    struct store *s = NULL;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || o == NULL) {
        ut_err_set(err, "store_open: %s is NULL", out == NULL ? "out" : "opts");
        return -EINVAL;
    }
    if (o->busy_timeout_ms < 0) {
        ut_err_set(err, "store_open: busy_timeout_ms %d is negative", o->busy_timeout_ms);
        return -EINVAL;
    }
    rc = check_migrations(o, err);
    if (rc < 0)
        return rc;
    if (!sqlite3_threadsafe()) {
        ut_err_set(err, "store_open: libsqlite3 was built without thread support");
        return -ENOTSUP;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ut_err_set(err, "store: out of memory");
        return -ENOMEM;
    }
    s->id = atomic_fetch_add(&g_next_id, 1);
    s->busy_ms = o->busy_timeout_ms > 0 ? o->busy_timeout_ms : STORE_BUSY_DEFAULT;
    rc = parse_url(s, o->url, err);
    if (rc < 0)
        goto out;
    if (pthread_mutex_init(&s->mu, NULL) != 0 || pthread_mutex_init(&s->rmu, NULL) != 0 ||
        pthread_mutex_init(&s->hmu, NULL) != 0 || pthread_cond_init(&s->work_cv, NULL) != 0 ||
        pthread_cond_init(&s->idle_cv, NULL) != 0) {
        ut_err_set(err, "store: cannot create locks");
        rc = -ENOMEM;
        goto out;
    }
    s->sync_ok = 1;
    if (s->kind == STORE_FILE) {
        rc = check_path(s, err);
        if (rc < 0)
            goto out;
    }
    rc = conn_open(s, 1, &s->writer, err);
    if (rc < 0)
        goto out;
    rc = writer_setup(s, err);
    if (rc < 0)
        goto out;
    rc = run_migrations(s, o, err);
    if (rc < 0)
        goto out;
    rc = -pthread_create(&s->writer_thread, NULL, writer_main, s);
    if (rc < 0) {
        ut_err_set(err, "store: %s: cannot start the writer thread", s->shown);
        goto out;
    }
    s->writer_started = 1;
    ut_log(UT_LOG_INFO, "store", "opened database", UT_LF_S("path", s->shown),
           UT_LF_I("schema_version", s->schema_version));
    *out = s;
out:
    if (rc < 0 && s != NULL)
        store_free(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    if (tls_writer_id == s->id) {
        ut_log(UT_LOG_ERROR, "store", "store_close called from a write job; not closing",
               UT_LF_S("path", s->shown));
        return;
    }
    if (s->writer_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_broadcast(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer_thread, NULL);
        /* Callers woken by the writer still need s->mu to leave. */
        pthread_mutex_lock(&s->mu);
        while (s->inflight > 0)
            pthread_cond_wait(&s->idle_cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    store_free(s);
}
