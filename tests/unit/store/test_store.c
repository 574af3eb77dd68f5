/*
 * Unit tests for lib/store: url parsing, open-time path checks, migrations,
 * the writer's batching/savepoint rules, readers, the statement cache.
 *
 * No test depends on timing: where jobs must share a batch, a gate job holds
 * the writer until store_stats() shows the other jobs queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "util/err.h"
#include "util/log.h"

/* ---- fixtures and helpers ----------------------------------------------- */

struct fx {
    char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/store-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void db_url(const struct fx *f, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "sqlite://%s/%s", f->dir, name);
}

static int open_db(const struct fx *f, const char *name, const struct store_migration *m, int n,
                   struct store **out, struct ut_err *err)
{
    char url[256];
    struct store_opts o = {.url = url, .migrations = m, .n_migrations = n};

    db_url(f, name, url, sizeof(url));
    memset(err, 0, sizeof(*err));
    return store_open(out, &o, err);
}

static const struct store_migration base_mig[] = {
    {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE, who INTEGER);"},
};

/* SELECT returning one integer, on this thread's reader. */
static long long q_int(struct store *s, const char *sql)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(s, &err);
    sqlite3_stmt *st;
    long long v;

    if (db == NULL)
        fail_msg("store_reader: %s", err.msg);
    st = store_stmt(s, db, sql, &err);
    if (st == NULL)
        fail_msg("store_stmt: %s", err.msg);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

static void q_text(struct store *s, const char *sql, char *out, size_t n)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(s, &err);
    sqlite3_stmt *st;

    assert_non_null(db);
    st = store_stmt(s, db, sql, &err);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
}

/* A job inserting one row into t; optionally fails after the insert. */
struct ins {
    struct store *s;
    long long v;
    long long who;
    int fail;
};

static int job_insert(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct ins *a = arg;
    sqlite3_stmt *st = store_stmt(a->s, db, "INSERT INTO t(v, who) VALUES(?1, ?2)", err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_int64(st, 1, a->v);
    sqlite3_bind_int64(st, 2, a->who);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "insert %lld: %s", a->v, sqlite3_errmsg(db));
        return store_sqlite_errno(sqlite3_extended_errcode(db));
    }
    if (a->fail) {
        ut_err_set(err, "job %lld refused", a->v);
        return -EINVAL;
    }
    return 0;
}

static int write_v(struct store *s, long long v, struct ut_err *err)
{
    struct ins a = {.s = s, .v = v};

    return store_write(s, job_insert, &a, err);
}

/* Holds the writer inside a job until released. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;
    int release;
};

static int job_gate(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct gate *g = arg;

    (void)db;
    (void)err;
    pthread_mutex_lock(&g->mu);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->release)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

struct gate_thread {
    struct store *s;
    struct gate g;
    pthread_t th;
    int rc;
};

static void *gate_main(void *arg)
{
    struct gate_thread *gt = arg;

    gt->rc = store_write(gt->s, job_gate, &gt->g, NULL);
    return NULL;
}

/* Starts a gate job and returns once the writer is inside it. */
static void gate_start(struct gate_thread *gt, struct store *s)
{
    memset(gt, 0, sizeof(*gt));
    gt->s = s;
    pthread_mutex_init(&gt->g.mu, NULL);
    pthread_cond_init(&gt->g.cv, NULL);
    assert_int_equal(pthread_create(&gt->th, NULL, gate_main, gt), 0);
    pthread_mutex_lock(&gt->g.mu);
    while (!gt->g.entered)
        pthread_cond_wait(&gt->g.cv, &gt->g.mu);
    pthread_mutex_unlock(&gt->g.mu);
}

static void gate_release(struct gate_thread *gt)
{
    pthread_mutex_lock(&gt->g.mu);
    gt->g.release = 1;
    pthread_cond_broadcast(&gt->g.cv);
    pthread_mutex_unlock(&gt->g.mu);
}

static void gate_join(struct gate_thread *gt)
{
    pthread_join(gt->th, NULL);
    assert_int_equal(gt->rc, 0);
    pthread_mutex_destroy(&gt->g.mu);
    pthread_cond_destroy(&gt->g.cv);
}

/* Polls (no deadline: the meson timeout is the backstop) until n jobs wait. */
static void wait_queued(struct store *s, long long n)
{
    struct store_stats st;
    const struct timespec ms = {0, 1000000};

    for (;;) {
        store_stats(s, &st);
        if (st.queued == n)
            return;
        nanosleep(&ms, NULL);
    }
}

/* One store_write per thread, with its own result. */
struct writer_arg {
    pthread_t th;
    store_write_fn fn;
    struct ins a;
    int rc;
    struct ut_err err;
};

static void *writer_thread(void *arg)
{
    struct writer_arg *w = arg;

    w->rc = store_write(w->a.s, w->fn, &w->a, &w->err);
    return NULL;
}

/* ---- urls ---------------------------------------------------------------- */

static void test_url_postgres_refused(void **state)
{
    struct store_opts o = {.url = "postgresql://app:hunter2@db.example/app"};
    struct store *s = (struct store *)1;
    struct ut_err err = {{0}};

    (void)state;
    assert_int_equal(store_open(&s, &o, &err), -ENOTSUP);
    assert_null(s);
    assert_non_null(strstr(err.msg, "PostgreSQL"));
    assert_non_null(strstr(err.msg, "db.example"));
    assert_null(strstr(err.msg, "hunter2")); /* the password is never echoed */
    o.url = "postgres://db.example/app";
    assert_int_equal(store_open(&s, &o, &err), -ENOTSUP);
    assert_null(s);
}

static void test_url_invalid(void **state)
{
    static const char *const bad[] = {
        "mysql://h/db", "sqlite://", "sqlite://:memory:", "sqlite:x.db", "", "/tmp/x.db"};
    struct store_opts o = {0};
    struct store *s = NULL;
    struct ut_err err = {{0}};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.url = bad[i];
        assert_int_equal(store_open(&s, &o, &err), -EINVAL);
        assert_null(s);
        if (bad[i][0] != '\0')
            assert_non_null(strstr(err.msg, bad[i]));
    }
    o.url = NULL;
    assert_int_equal(store_open(&s, &o, &err), -EINVAL);
    o.url = "sqlite::memory:";
    o.busy_timeout_ms = -1;
    assert_int_equal(store_open(&s, &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "busy_timeout"));
}

static void test_url_relative(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.url = "sqlite://rel.db", .migrations = base_mig, .n_migrations = 1};
    char cwd[4096], path[256];
    struct store *s = NULL;
    struct ut_err err = {{0}};
    struct stat st;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    int rc = store_open(&s, &o, &err);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("store_open: %s", err.msg);
    store_close(s);
    snprintf(path, sizeof(path), "%s/rel.db", f->dir);
    assert_int_equal(stat(path, &st), 0);
}

/* ---- migrations ---------------------------------------------------------- */

static const struct store_migration mig2[] = {
    {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE, who INTEGER);"},
    {2, "INSERT INTO t(v) VALUES(1);"},
};

static void test_migrations_once(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "m.db", mig2, 2, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 2);
    assert_int_equal(q_int(s, "PRAGMA user_version"), 2);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 1);
    store_close(s);

    /* Re-open: nothing re-runs (the INSERT would add a second row). */
    assert_int_equal(open_db(f, "m.db", mig2, 2, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 2);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 1);
    store_close(s);
}

static void test_migrations_add_and_gap(void **state)
{
    static const struct store_migration later[] = {
        {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE, who INTEGER);"},
        {2, "INSERT INTO t(v) VALUES(1);"},
        {7, "INSERT INTO t(v) VALUES(7); CREATE INDEX t_who ON t(who);"},
    };
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "g.db", mig2, 2, &s, &err), 0);
    store_close(s);
    /* Only the new one runs; versions may have gaps. */
    assert_int_equal(open_db(f, "g.db", later, 3, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 7);
    assert_int_equal(q_int(s, "PRAGMA user_version"), 7);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 2);
    assert_int_equal(q_int(s, "SELECT count(*) FROM sqlite_master WHERE name = 't_who'"), 1);
    store_close(s);
}

static void test_migrations_newer_refused(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "n.db", mig2, 2, &s, &err), 0);
    store_close(s);
    assert_int_equal(open_db(f, "n.db", mig2, 1, &s, &err), -EPROTO);
    assert_null(s);
    assert_non_null(strstr(err.msg, "database schema version 2 is newer than this binary (1)"));
    assert_non_null(strstr(err.msg, f->dir));
    assert_int_equal(open_db(f, "n.db", NULL, 0, &s, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "newer than this binary (0)"));
}

static void test_migration_failure_unchanged(void **state)
{
    static const struct store_migration bad[] = {
        {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE, who INTEGER);"},
        {2, "INSERT INTO t(v) VALUES(1);"},
        {3, "CREATE TABLE u(y); INSERT INTO t(v) VALUES(3); INSERT INTO nope VALUES(1);"},
    };
    static const struct store_migration fresh_bad[] = {
        {1, "CREATE TABLE a(x);"},
        {2, "CREATE TABLE b(x); SELECT * FROM missing_table;"},
    };
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "f.db", mig2, 2, &s, &err), 0);
    store_close(s);
    assert_true(open_db(f, "f.db", bad, 3, &s, &err) < 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "migration 3"));
    assert_non_null(strstr(err.msg, "no such table: nope"));
    /* Unchanged: still version 2, no table u, no row 3. */
    assert_int_equal(open_db(f, "f.db", mig2, 2, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 2);
    assert_int_equal(q_int(s, "SELECT count(*) FROM sqlite_master WHERE name = 'u'"), 0);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 1);
    store_close(s);

    /* Each migration has its own transaction: 1 stays applied. */
    assert_true(open_db(f, "f2.db", fresh_bad, 2, &s, &err) < 0);
    assert_non_null(strstr(err.msg, "migration 2"));
    assert_non_null(strstr(err.msg, "missing_table"));
    assert_int_equal(open_db(f, "f2.db", fresh_bad, 1, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 1);
    assert_int_equal(q_int(s, "SELECT count(*) FROM sqlite_master WHERE name = 'b'"), 0);
    store_close(s);
}

static void test_migrations_bad_list(void **state)
{
    static const struct store_migration dec[] = {{2, "CREATE TABLE a(x);"}, {1, "SELECT 1;"}};
    static const struct store_migration dup[] = {{1, "CREATE TABLE a(x);"}, {1, "SELECT 1;"}};
    static const struct store_migration zero[] = {{0, "CREATE TABLE a(x);"}};
    static const struct store_migration nosql[] = {{1, NULL}};
    static const struct store_migration txn[] = {{1, "CREATE TABLE a(x); COMMIT;"}};
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "b.db", dec, 2, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "strictly increase"));
    assert_int_equal(open_db(f, "b.db", dup, 2, &s, &err), -EINVAL);
    assert_int_equal(open_db(f, "b.db", zero, 1, &s, &err), -EINVAL);
    assert_int_equal(open_db(f, "b.db", nosql, 1, &s, &err), -EINVAL);
    assert_int_equal(open_db(f, "b.db", NULL, 2, &s, &err), -EINVAL);
    /* A migration may not end the transaction itself. */
    assert_int_equal(open_db(f, "b.db", txn, 1, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "migration 1"));
    assert_int_equal(open_db(f, "b.db", NULL, 0, &s, &err), 0);
    assert_int_equal(store_schema_version(s), 0);
    store_close(s);
}

/* ---- unusable paths ------------------------------------------------------ */

static void expect_open_fails(const char *path, const char *reason)
{
    char url[512];
    struct store_opts o = {.url = url, .migrations = base_mig, .n_migrations = 1};
    struct store *s = NULL;
    struct ut_err err = {{0}};
    int rc;

    snprintf(url, sizeof(url), "sqlite://%s", path);
    rc = store_open(&s, &o, &err);
    if (rc == 0) {
        store_close(s);
        fail_msg("store_open(%s) succeeded", url);
    }
    assert_true(rc < 0);
    assert_null(s);
    print_message("  %s -> %d %s\n", path, rc, err.msg);
    if (strstr(err.msg, path) == NULL || (reason != NULL && strstr(err.msg, reason) == NULL))
        fail_msg("message for %s lacks path/reason \"%s\": %s", path, reason ? reason : "",
                 err.msg);
}

static void test_unwritable_paths(void **state)
{
    struct fx *f = *state;
    char p[256];
    FILE *fp;

    snprintf(p, sizeof(p), "%s/missing/x.db", f->dir);
    expect_open_fails(p, "does not exist");
    /* The path is a directory. */
    expect_open_fails(f->dir, "is a directory");
    /* A component of the path is a regular file. */
    snprintf(p, sizeof(p), "%s/plain", f->dir);
    fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(p, sizeof(p), "%s/plain/x.db", f->dir);
    expect_open_fails(p, "not a directory");
    /* Unwritable even for root: files cannot be created in /proc. */
    expect_open_fails("/proc/store-test-nonexistent.db", NULL);
    /* Opens read-write as root, but its WAL cannot be created next to it:
     * must fail at open, not at the first write. */
    expect_open_fails("/proc/version", NULL);
    /* An existing file that is not a database. */
    snprintf(p, sizeof(p), "%s/garbage.db", f->dir);
    fp = fopen(p, "w");
    assert_non_null(fp);
    for (int i = 0; i < 512; i++)
        fputs("not a database, just text\n", fp);
    fclose(fp);
    expect_open_fails(p, "not a database");
}

static void test_unwritable_as_user(void **state)
{
    struct fx *f = *state;
    char dir[128], p[256];
    struct store *s = NULL;
    struct ut_err err;

    if (geteuid() == 0) {
        /* chmod does not stop root; test_unwritable_paths covers root. */
        skip();
    }
    /* Read-only directory: the database cannot be created. */
    snprintf(dir, sizeof(dir), "%s/ro", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chmod(dir, 0500), 0);
    snprintf(p, sizeof(p), "%s/x.db", dir);
    expect_open_fails(p, NULL);
    assert_int_equal(chmod(dir, 0700), 0);
    /* Read-only database file. */
    assert_int_equal(open_db(f, "rofile.db", base_mig, 1, &s, &err), 0);
    store_close(s);
    snprintf(p, sizeof(p), "%s/rofile.db", f->dir);
    assert_int_equal(chmod(p, 0400), 0);
    expect_open_fails(p, "read-only");
    /* Existing writable database in a directory that became read-only:
     * the WAL cannot be created, so the write test must fail at open. */
    assert_int_equal(chmod(p, 0600), 0);
    snprintf(p, sizeof(p), "%s/ro/y.db", f->dir);
    assert_int_equal(open_db(f, "ro/y.db", base_mig, 1, &s, &err), 0);
    store_close(s);
    assert_int_equal(chmod(dir, 0500), 0);
    expect_open_fails(p, NULL);
    assert_int_equal(chmod(dir, 0700), 0);
}

/* ---- connection settings ------------------------------------------------- */

struct pragmas {
    struct store *s;
    long long sync, fk, busy;
};

/* Runs on the writer thread: no cmocka asserts here (they longjmp). */
static long long job_pragma(struct store *s, sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = store_stmt(s, db, sql, NULL);
    long long v = -1;

    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    if (st != NULL)
        sqlite3_reset(st);
    return v;
}

static int job_read_pragmas(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct pragmas *p = arg;

    (void)err;
    p->sync = job_pragma(p->s, db, "PRAGMA synchronous");
    p->fk = job_pragma(p->s, db, "PRAGMA foreign_keys");
    p->busy = job_pragma(p->s, db, "PRAGMA busy_timeout");
    return 0;
}

static void test_wal_and_pragmas(void **state)
{
    struct fx *f = *state;
    char url[256], path[256], mode[32];
    struct store_opts o = {
        .url = url, .migrations = base_mig, .n_migrations = 1, .busy_timeout_ms = 1234};
    struct store *s = NULL;
    struct ut_err err = {{0}};
    struct pragmas p = {0};
    struct stat st;

    db_url(f, "w.db", url, sizeof(url));
    assert_int_equal(store_open(&s, &o, &err), 0);
    q_text(s, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    assert_int_equal(q_int(s, "PRAGMA query_only"), 1);
    snprintf(path, sizeof(path), "%s/w.db-wal", f->dir);
    assert_int_equal(stat(path, &st), 0);
    p.s = s;
    assert_int_equal(store_write(s, job_read_pragmas, &p, &err), 0);
    assert_int_equal(p.sync, 1); /* NORMAL */
    assert_int_equal(p.fk, 1);
    assert_int_equal(p.busy, 1234);
    store_close(s);
}

/* ---- the writer ---------------------------------------------------------- */

#define BATCH_K 8

static void test_batch_failing_job_alone(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct gate_thread gt;
    struct writer_arg w[BATCH_K];
    struct store_stats before, after;

    assert_int_equal(open_db(f, "batch.db", base_mig, 1, &s, &err), 0);
    store_stats(s, &before);
    gate_start(&gt, s);
    for (int i = 0; i < BATCH_K; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].fn = job_insert;
        w[i].a = (struct ins){.s = s, .v = i, .fail = (i == 3)};
        assert_int_equal(pthread_create(&w[i].th, NULL, writer_thread, &w[i]), 0);
    }
    wait_queued(s, BATCH_K);
    gate_release(&gt);
    gate_join(&gt);
    for (int i = 0; i < BATCH_K; i++) {
        pthread_join(w[i].th, NULL);
        if (i == 3) {
            assert_int_equal(w[i].rc, -EINVAL);
            assert_string_equal(w[i].err.msg, "job 3 refused");
        } else {
            if (w[i].rc != 0)
                fail_msg("job %d: %d %s", i, w[i].rc, w[i].err.msg);
            assert_string_equal(w[i].err.msg, "");
        }
    }
    /* The K jobs ran as one transaction after the gate's. */
    store_stats(s, &after);
    assert_int_equal(after.batches, before.batches + 2);
    assert_int_equal(after.jobs, before.jobs + BATCH_K + 1);
    assert_int_equal(after.queued, 0);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), BATCH_K - 1);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t WHERE v = 3"), 0);
    store_close(s);
}

static const struct store_migration fk_mig[] = {
    {1, "CREATE TABLE p(id INTEGER PRIMARY KEY);"
        "CREATE TABLE c(id INTEGER PRIMARY KEY,"
        " pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);"},
};

struct fk_arg {
    struct store *s;
    const char *sql;
};

static int job_exec(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct fk_arg *a = arg;
    int rc = sqlite3_exec(db, a->sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        ut_err_set(err, "%s: %s", a->sql, sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    return 0;
}

struct exec_thread {
    pthread_t th;
    struct store *s;
    struct fk_arg a;
    int rc;
    struct ut_err err;
};

static void *exec_thread_main(void *arg)
{
    struct exec_thread *e = arg;

    e->rc = store_write(e->s, job_exec, &e->a, &e->err);
    return NULL;
}

static void test_commit_failure_fails_batch(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct gate_thread gt;
    struct exec_thread e[2];

    assert_int_equal(open_db(f, "fk.db", fk_mig, 1, &s, &err), 0);
    gate_start(&gt, s);
    memset(e, 0, sizeof(e));
    e[0].a.sql = "INSERT INTO p(id) VALUES(1)";
    e[1].a.sql = "INSERT INTO c(id, pid) VALUES(1, 999)"; /* violation shows at COMMIT */
    for (int i = 0; i < 2; i++) {
        e[i].s = s;
        assert_int_equal(pthread_create(&e[i].th, NULL, exec_thread_main, &e[i]), 0);
    }
    wait_queued(s, 2);
    gate_release(&gt);
    gate_join(&gt);
    for (int i = 0; i < 2; i++) {
        pthread_join(e[i].th, NULL);
        assert_true(e[i].rc < 0);
        assert_non_null(strstr(e[i].err.msg, "commit failed"));
        assert_non_null(strstr(e[i].err.msg, "FOREIGN KEY"));
    }
    assert_int_equal(q_int(s, "SELECT count(*) FROM p"), 0);
    assert_int_equal(q_int(s, "SELECT count(*) FROM c"), 0);
    /* The writer carries on. */
    e[0].a.s = s;
    assert_int_equal(store_write(s, job_exec, &e[0].a, &err), 0);
    assert_int_equal(q_int(s, "SELECT count(*) FROM p"), 1);
    store_close(s);
}

static int job_commit_itself(sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)arg;
    (void)err;
    sqlite3_exec(db, "INSERT INTO t(v) VALUES(500); COMMIT", NULL, NULL, NULL);
    return 0;
}

static int job_quiet_fail(sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)db;
    (void)arg;
    (void)err;
    return -ENOENT;
}

static int job_positive(sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)db;
    (void)arg;
    (void)err;
    return SQLITE_ERROR;
}

static void test_misbehaving_jobs(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;

    assert_int_equal(open_db(f, "mis.db", base_mig, 1, &s, &err), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(store_write(s, job_quiet_fail, NULL, &err), -ENOENT);
    assert_true(err.msg[0] != '\0'); /* a message even when the job set none */
    assert_int_equal(store_write(s, job_positive, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "returned 1"));
    assert_int_equal(store_write(s, job_commit_itself, NULL, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "ended the batch transaction"));
    /* The writer still works afterwards. */
    assert_int_equal(write_v(s, 1, &err), 0);
    assert_int_equal(store_write(s, NULL, NULL, &err), -EINVAL);
    store_close(s);
}

#define CW_THREADS 16
#define CW_EACH    50

struct cw_arg {
    pthread_t th;
    struct store *s;
    int idx;
    int fails;
};

static void *cw_main(void *arg)
{
    struct cw_arg *c = arg;
    struct ut_err err;

    for (int i = 0; i < CW_EACH; i++) {
        struct ins a = {.s = c->s, .v = (long long)c->idx * 1000 + i, .who = c->idx};

        if (store_write(c->s, job_insert, &a, &err) != 0)
            c->fails++;
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct cw_arg c[CW_THREADS];

    assert_int_equal(open_db(f, "cw.db", base_mig, 1, &s, &err), 0);
    for (int i = 0; i < CW_THREADS; i++) {
        c[i] = (struct cw_arg){.s = s, .idx = i};
        assert_int_equal(pthread_create(&c[i].th, NULL, cw_main, &c[i]), 0);
    }
    for (int i = 0; i < CW_THREADS; i++) {
        pthread_join(c[i].th, NULL);
        assert_int_equal(c[i].fails, 0);
    }
    /* v is UNIQUE, so a double commit would have failed a job; count too. */
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), CW_THREADS * CW_EACH);
    assert_int_equal(q_int(s, "SELECT count(DISTINCT v) FROM t"), CW_THREADS * CW_EACH);
    for (int i = 0; i < CW_THREADS; i++) {
        sqlite3 *r = store_reader(s, NULL);
        sqlite3_stmt *st = store_stmt(s, r, "SELECT count(*) FROM t WHERE who = ?1", NULL);

        assert_non_null(st);
        sqlite3_bind_int(st, 1, i);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), CW_EACH);
        sqlite3_reset(st);
    }
    store_close(s);
}

/* ---- readers ------------------------------------------------------------- */

#define RD_THREADS 4

/* Reader threads only record what they saw; main asserts (cmocka asserts
 * must not run off the main thread). */
struct rd_arg {
    pthread_t th;
    struct store *s;
    int idx;
    sqlite3 *db;
    long long seen_before, seen_own;
    int same_db, readonly_refused;
};

static void *rd_main(void *arg)
{
    struct rd_arg *r = arg;
    struct ut_err err;
    sqlite3_stmt *st;

    r->db = store_reader(r->s, &err);
    if (r->db == NULL)
        return NULL;
    r->same_db = store_reader(r->s, &err) == r->db;
    st = store_stmt(r->s, r->db, "SELECT count(*) FROM t", &err);
    if (st == NULL)
        return NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        r->seen_before = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    r->readonly_refused =
        sqlite3_exec(r->db, "INSERT INTO t(v) VALUES(-1)", NULL, NULL, NULL) != SQLITE_OK;
    /* Read-your-writes: the reader sees a commit made after its last read. */
    if (write_v(r->s, 100 + r->idx, &err) != 0)
        return NULL;
    st = store_stmt(r->s, r->db, "SELECT count(*) FROM t WHERE v = ?1", &err);
    if (st == NULL)
        return NULL;
    sqlite3_bind_int(st, 1, 100 + r->idx);
    if (sqlite3_step(st) == SQLITE_ROW)
        r->seen_own = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return NULL;
}

static void test_readers_threads(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct rd_arg r[RD_THREADS];
    sqlite3 *mine;

    assert_int_equal(open_db(f, "rd.db", base_mig, 1, &s, &err), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(write_v(s, i, &err), 0);
    mine = store_reader(s, &err);
    assert_non_null(mine);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 10);
    for (int i = 0; i < RD_THREADS; i++) {
        r[i] = (struct rd_arg){.s = s, .idx = i};
        assert_int_equal(pthread_create(&r[i].th, NULL, rd_main, &r[i]), 0);
    }
    for (int i = 0; i < RD_THREADS; i++) {
        pthread_join(r[i].th, NULL);
        assert_non_null(r[i].db);
        assert_true(r[i].same_db);
        assert_true(r[i].seen_before >= 10);
        assert_true(r[i].readonly_refused);
        assert_int_equal(r[i].seen_own, 1);
        assert_ptr_not_equal(r[i].db, mine);
        for (int k = 0; k < i; k++)
            assert_ptr_not_equal(r[i].db, r[k].db);
    }
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 10 + RD_THREADS);
    /* Another thread's reader is refused by store_stmt. */
    assert_null(store_stmt(s, r[0].db, "SELECT 1", &err));
    assert_non_null(strstr(err.msg, "another thread"));
    store_close(s);
}

/* ---- statement cache ----------------------------------------------------- */

struct cache_arg {
    struct store *s;
    sqlite3 *db;
    sqlite3_stmt *a, *b;
};

static int job_cache(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct cache_arg *c = arg;

    c->db = db;
    c->a = store_stmt(c->s, db, "SELECT count(*) FROM t", err);
    c->b = store_stmt(c->s, db, "SELECT count(*) FROM t", err);
    return c->a != NULL ? 0 : -EIO;
}

static void test_stmt_cache(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct cache_arg ca = {0};
    sqlite3_stmt *a, *b, *c;
    sqlite3 *r, *other;
    char buf[64], sql[64];

    assert_int_equal(open_db(f, "c.db", base_mig, 1, &s, &err), 0);
    r = store_reader(s, &err);
    assert_non_null(r);
    a = store_stmt(s, r, "SELECT ?1", &err);
    assert_non_null(a);
    /* Keyed by content: a different buffer with the same text hits. */
    snprintf(buf, sizeof(buf), "SELECT %s", "?1");
    assert_ptr_equal(store_stmt(s, r, buf, &err), a);
    /* Returned reset, with bindings cleared. */
    sqlite3_bind_int(a, 1, 42);
    assert_int_equal(sqlite3_step(a), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(a, 0), 42);
    b = store_stmt(s, r, "SELECT ?1", &err);
    assert_ptr_equal(b, a);
    assert_int_equal(sqlite3_step(b), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(b, 0), SQLITE_NULL);
    sqlite3_reset(b);
    /* The same buffer reused for another text does not hit. */
    snprintf(buf, sizeof(buf), "SELECT 2");
    c = store_stmt(s, r, buf, &err);
    assert_non_null(c);
    assert_ptr_not_equal(c, a);
    assert_non_null(store_stmt(s, r, "SELECT 3; -- trailing comment", &err));

    assert_null(store_stmt(s, r, "SELECT 1; SELECT 2", &err));
    assert_non_null(strstr(err.msg, "more than one statement"));
    assert_null(store_stmt(s, r, "SELEC 1", &err));
    assert_non_null(strstr(err.msg, "SELEC 1"));
    assert_null(store_stmt(s, r, "   ", &err));
    assert_null(store_stmt(s, r, NULL, &err));
    assert_int_equal(sqlite3_open(":memory:", &other), SQLITE_OK);
    assert_null(store_stmt(s, other, "SELECT 1", &err));
    assert_non_null(strstr(err.msg, "does not belong"));
    sqlite3_close(other);

    /* The writer's connection has its own cache, usable only inside jobs. */
    ca.s = s;
    assert_int_equal(store_write(s, job_cache, &ca, &err), 0);
    assert_non_null(ca.a);
    assert_ptr_equal(ca.a, ca.b);
    assert_ptr_not_equal(ca.db, r);
    assert_null(store_stmt(s, ca.db, "SELECT 1", &err));
    assert_non_null(strstr(err.msg, "inside a write job"));

    /* Bounded: many distinct texts evict, and everything still works. */
    for (int i = 0; i < 300; i++) {
        sqlite3_stmt *st;

        snprintf(sql, sizeof(sql), "SELECT %d", i + 1000);
        st = store_stmt(s, r, sql, &err);
        assert_non_null(st);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), i + 1000);
        sqlite3_reset(st);
    }
    a = store_stmt(s, r, "SELECT ?1", &err);
    assert_non_null(a);
    sqlite3_bind_int(a, 1, 7);
    assert_int_equal(sqlite3_step(a), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(a, 0), 7);
    sqlite3_reset(a);
    store_close(s);
}

/* ---- nested writes ------------------------------------------------------- */

struct nest_arg {
    struct store *s;
    int inner_ok_rc, inner_fail_rc;
    struct ut_err inner_err;
};

static int job_outer(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct nest_arg *n = arg;
    struct ins ok = {.s = n->s, .v = 2};
    struct ins bad = {.s = n->s, .v = 3, .fail = 1};
    struct ins outer = {.s = n->s, .v = 1};
    int rc = job_insert(db, &outer, err);

    if (rc != 0)
        return rc;
    /* From the writer thread: must run inline, not queue and deadlock. */
    n->inner_ok_rc = store_write(n->s, job_insert, &ok, NULL);
    n->inner_fail_rc = store_write(n->s, job_insert, &bad, &n->inner_err);
    return 0;
}

static void test_nested_write(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct nest_arg n = {0};

    assert_int_equal(open_db(f, "nest.db", base_mig, 1, &s, &err), 0);
    n.s = s;
    assert_int_equal(store_write(s, job_outer, &n, &err), 0);
    assert_int_equal(n.inner_ok_rc, 0);
    assert_int_equal(n.inner_fail_rc, -EINVAL);
    assert_string_equal(n.inner_err.msg, "job 3 refused");
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), 2);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t WHERE v IN (1, 2)"), 2);
    store_close(s);
}

/* ---- memory databases, close, logging ------------------------------------ */

static void test_memory_db(void **state)
{
    struct store_opts o = {.url = "sqlite::memory:", .migrations = base_mig, .n_migrations = 1};
    struct store *a = NULL, *b = NULL;
    struct ut_err err = {{0}};

    (void)state;
    assert_int_equal(store_open(&a, &o, &err), 0);
    assert_int_equal(store_open(&b, &o, &err), 0);
    assert_int_equal(store_schema_version(a), 1);
    assert_int_equal(write_v(a, 1, &err), 0);
    assert_int_equal(write_v(a, 2, &err), 0);
    /* The reader shares the writer's database; the two stores do not. */
    assert_int_equal(q_int(a, "SELECT count(*) FROM t"), 2);
    assert_int_equal(q_int(b, "SELECT count(*) FROM t"), 0);
    store_close(a);
    store_close(b);
}

static void test_close_drains(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL;
    struct ut_err err;
    struct gate_thread gt;
    struct writer_arg w[BATCH_K];

    assert_int_equal(open_db(f, "drain.db", base_mig, 1, &s, &err), 0);
    gate_start(&gt, s);
    for (int i = 0; i < BATCH_K; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].fn = job_insert;
        w[i].a = (struct ins){.s = s, .v = i};
        assert_int_equal(pthread_create(&w[i].th, NULL, writer_thread, &w[i]), 0);
    }
    wait_queued(s, BATCH_K);
    gate_release(&gt);
    /* Close while the jobs are still queued or running: all must commit
     * and every waiting caller must get its result before the free. */
    store_close(s);
    gate_join(&gt);
    for (int i = 0; i < BATCH_K; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(w[i].rc, 0);
    }
    assert_int_equal(open_db(f, "drain.db", base_mig, 1, &s, &err), 0);
    assert_int_equal(q_int(s, "SELECT count(*) FROM t"), BATCH_K);
    store_close(s);
    store_close(NULL);
}

static void test_open_logs(void **state)
{
    struct fx *f = *state;
    char path[256], want[300], text[4096];
    struct store *s = NULL;
    struct ut_err err;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/log.txt", f->dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    ut_log_set_fd(fd);
    ut_log_set_level(UT_LOG_INFO);
    int rc = open_db(f, "logged.db", mig2, 2, &s, &err);
    ut_log_set_level(UT_LOG_WARN);
    ut_log_set_fd(2);
    assert_int_equal(rc, 0);
    store_close(s);
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    assert_true(n > 0);
    text[n] = '\0';
    snprintf(want, sizeof(want),
             "INFO store: opened database path=\"%s/logged.db\" schema_version=2", f->dir);
    if (strstr(text, want) == NULL)
        fail_msg("log lacks \"%s\":\n%s", want, text);
    assert_non_null(strstr(text, "applied migration"));
}

static void test_sqlite_errno(void **state)
{
    (void)state;
    assert_int_equal(store_sqlite_errno(SQLITE_OK), 0);
    assert_int_equal(store_sqlite_errno(SQLITE_DONE), 0);
    assert_int_equal(store_sqlite_errno(SQLITE_BUSY), -EBUSY);
    assert_int_equal(store_sqlite_errno(SQLITE_CONSTRAINT_UNIQUE), -EEXIST);
    assert_int_equal(store_sqlite_errno(SQLITE_CONSTRAINT_FOREIGNKEY), -EINVAL);
    assert_int_equal(store_sqlite_errno(SQLITE_READONLY), -EACCES);
    assert_int_equal(store_sqlite_errno(SQLITE_CORRUPT), -EIO);
}

/* ---- post-commit hook ----------------------------------------------------- */

struct hook_rec {
    struct store *s;
    int calls;
    long long rows_seen; /* count(*) FROM t read by the hook through a reader */
    pthread_t thread;
    int once; /* unregister from inside the hook */
};

static void commit_hook(void *arg)
{
    struct hook_rec *h = arg;
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(h->s, &err);
    sqlite3_stmt *st;

    h->calls++;
    h->thread = pthread_self();
    h->rows_seen = -1;
    if (db != NULL && (st = store_stmt(h->s, db, "SELECT count(*) FROM t", &err)) != NULL) {
        if (sqlite3_step(st) == SQLITE_ROW)
            h->rows_seen = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    if (h->once)
        store_on_commit(h->s, NULL, NULL);
}

static int job_thread_id(sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)db;
    (void)err;
    *(pthread_t *)arg = pthread_self();
    return 0;
}

static void test_on_commit_hook(void **state)
{
    struct fx *f = *state;
    struct store *s = NULL, *fk = NULL;
    struct ut_err err;
    struct hook_rec h = {0}, hfk = {0};
    struct gate_thread gt;
    struct writer_arg w[BATCH_K];
    struct ins bad = {.v = 100, .fail = 1};
    struct fk_arg fa = {0};
    pthread_t writer;

    assert_int_equal(open_db(f, "hook.db", base_mig, 1, &s, &err), 0);
    h.s = s;
    store_on_commit(s, commit_hook, &h);

    /* A committed job: the hook ran on the writer thread, after the COMMIT
     * (a reader already sees the row), before store_write returned. */
    assert_int_equal(write_v(s, 1, &err), 0);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.rows_seen, 1);
    assert_int_equal(store_write(s, job_thread_id, &writer, &err), 0);
    assert_int_equal(h.calls, 2);
    assert_true(pthread_equal(h.thread, writer));

    /* A batch whose only job failed kept nothing: no call. */
    bad.s = s;
    assert_int_equal(store_write(s, job_insert, &bad, &err), -EINVAL);
    assert_int_equal(h.calls, 2);

    /* One batch of K jobs with one failure: one call, after all K. */
    gate_start(&gt, s);
    for (int i = 0; i < BATCH_K; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].fn = job_insert;
        w[i].a = (struct ins){.s = s, .v = 10 + i, .fail = (i == 2)};
        assert_int_equal(pthread_create(&w[i].th, NULL, writer_thread, &w[i]), 0);
    }
    wait_queued(s, BATCH_K);
    gate_release(&gt);
    gate_join(&gt);
    for (int i = 0; i < BATCH_K; i++)
        pthread_join(w[i].th, NULL);
    assert_int_equal(h.calls, 4); /* the gate's batch, then the K jobs' batch */
    assert_int_equal(h.rows_seen, 1 + BATCH_K - 1);

    /* Removed: no more calls. */
    store_on_commit(s, NULL, NULL);
    assert_int_equal(write_v(s, 50, &err), 0);
    assert_int_equal(h.calls, 4);

    /* A hook may remove itself (no deadlock on its own lock). */
    h.once = 1;
    store_on_commit(s, commit_hook, &h);
    assert_int_equal(write_v(s, 51, &err), 0);
    assert_int_equal(write_v(s, 52, &err), 0);
    assert_int_equal(h.calls, 5);
    store_on_commit(NULL, commit_hook, &h); /* no-op */

    /* A failed COMMIT (deferred foreign key): no call. */
    assert_int_equal(open_db(f, "hookfk.db", fk_mig, 1, &fk, &err), 0);
    hfk.s = fk;
    store_on_commit(fk, commit_hook, &hfk);
    fa.sql = "INSERT INTO c(id, pid) VALUES(1, 999)";
    assert_true(store_write(fk, job_exec, &fa, &err) < 0);
    assert_non_null(strstr(err.msg, "commit failed"));
    assert_int_equal(hfk.calls, 0);
    fa.sql = "INSERT INTO p(id) VALUES(1)";
    assert_int_equal(store_write(fk, job_exec, &fa, &err), 0);
    assert_int_equal(hfk.calls, 1);
    store_close(fk);
    store_close(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_postgres_refused),
        cmocka_unit_test(test_url_invalid),
        T(test_url_relative),
        T(test_migrations_once),
        T(test_migrations_add_and_gap),
        T(test_migrations_newer_refused),
        T(test_migration_failure_unchanged),
        T(test_migrations_bad_list),
        T(test_unwritable_paths),
        T(test_unwritable_as_user),
        T(test_wal_and_pragmas),
        T(test_batch_failing_job_alone),
        T(test_commit_failure_fails_batch),
        T(test_misbehaving_jobs),
        T(test_concurrent_writers),
        T(test_readers_threads),
        T(test_stmt_cache),
        T(test_nested_write),
        cmocka_unit_test(test_memory_db),
        T(test_close_drains),
        T(test_open_logs),
        cmocka_unit_test(test_sqlite_errno),
        T(test_on_commit_hook),
    };

    ut_log_set_level(UT_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
