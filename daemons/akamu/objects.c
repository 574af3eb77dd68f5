/*
 * objects.c - ACME objects as JSON documents in the replicated tables
 * (lib/crdt). Every write is one store_write job, so on this node a
 * read-check-write (akm_update) cannot interleave with another write.
 * Across nodes, last-writer-wins applies; the order and finalization
 * leases (issue #8) keep two nodes from racing on one order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "acme.h"
#include "http/http.h"

#define DOC_MAX (1u << 20) /* a certificate document with its DER is ~4 KiB */

static json_t *parse_doc(const uint8_t *v, size_t n)
{
    json_error_t je;

    if (n > DOC_MAX)
        return NULL;
    return json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, &je);
}

json_t *akm_get(struct akamu *k, const char *tbl, const char *id)
{
    sqlite3 *db = store_reader(k->store, NULL);
    uint8_t *v = NULL;
    size_t n = 0;
    json_t *doc;

    if (db == NULL || crdt_get(k->replica, db, tbl, id, &v, &n, NULL) < 0)
        return NULL;
    doc = parse_doc(v, n);
    free(v);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

struct put_job {
    struct akamu *k;
    const struct akm_put *p;
    size_t n;
};

static int put_one(struct akamu *k, sqlite3 *db, const struct akm_put *p, struct ut_err *err)
{
    char *txt = json_dumps(p->doc, JSON_COMPACT | JSON_SORT_KEYS);
    int rc;

    if (txt == NULL) {
        ut_err_set(err, "%s/%s: cannot serialize the document", p->tbl, p->id);
        return -ENOMEM;
    }
    rc = crdt_put(k->replica, db, p->tbl, p->id, txt, strlen(txt), p->expires, err);
    free(txt);
    return rc;
}

static int put_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct put_job *j = arg;
    int rc;

    for (size_t i = 0; i < j->n; i++) {
        if ((rc = put_one(j->k, db, &j->p[i], err)) < 0)
            return rc;
    }
    return 0;
}

int akm_put_all(struct akamu *k, const struct akm_put *p, size_t n, struct ut_err *err)
{
    struct put_job j = {k, p, n};

    return store_write(k->store, put_job, &j, err);
}

struct update_job {
    struct akamu *k;
    const char *tbl, *id;
    akm_update_fn fn;
    void *arg;
    json_t *result;
};

static int update_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct update_job *j = arg;
    struct akm_put p = {.tbl = j->tbl, .id = j->id};
    uint8_t *v = NULL;
    size_t n = 0;
    json_t *doc = NULL;
    int rc;

    json_decref(j->result); /* a retried job starts over */
    j->result = NULL;
    rc = crdt_get(j->k->replica, db, j->tbl, j->id, &v, &n, err);
    if (rc == 0) {
        doc = parse_doc(v, n);
        free(v);
        if (doc == NULL || !json_is_object(doc)) {
            json_decref(doc);
            ut_err_set(err, "%s/%s: stored document is not a JSON object", j->tbl, j->id);
            return -EBADMSG;
        }
    } else if (rc != -ENOENT) {
        return rc;
    }
    rc = j->fn(&doc, j->arg, err);
    if (rc == 1 && doc) {
        p.doc = doc;
        rc = put_one(j->k, db, &p, err);
    }
    if (rc >= 0)
        j->result = doc;
    else
        json_decref(doc);
    return rc < 0 ? rc : 0;
}

int akm_update(struct akamu *k, const char *tbl, const char *id, akm_update_fn fn, void *arg,
               json_t **out, struct ut_err *err)
{
    struct update_job j = {.k = k, .tbl = tbl, .id = id, .fn = fn, .arg = arg};
    int rc = store_write(k->store, update_job, &j, err);

    if (rc < 0 || out == NULL)
        json_decref(j.result);
    else
        *out = j.result;
    return rc;
}

int akm_each(struct akamu *k, const char *tbl, const char *field, const char *value,
             const char *after, int limit, akm_each_fn fn, void *arg, struct ut_err *err)
{
    sqlite3 *db = store_reader(k->store, err);
    char sql[256];
    sqlite3_stmt *st;
    int rc, n = 0;

    if (db == NULL)
        return -EIO;
    if (crdt_table_kind(k->replica, tbl) < 0 || strchr(tbl, '"')) {
        ut_err_set(err, "akm_each: unknown table \"%s\"", tbl);
        return -EINVAL;
    }
    if (field && (strlen(field) > CRDT_FIELD_MAX ||
                  strspn(field, "abcdefghijklmnopqrstuvwxyz_") != strlen(field))) {
        ut_err_set(err, "akm_each: bad field name \"%.40s\"", field);
        return -EINVAL;
    }
    /* The view of each replicated table (lib/crdt) holds its live rows. The
     * member path is written literally so that the field indexes declared
     * in cluster.c (crdt_opts.indexed_fields) serve the filter and the
     * order; keys are never empty, so "> ''" is "from the start" (an OR
     * here would make SQLite fall back to scanning the table). */
    if (field)
        snprintf(sql, sizeof(sql),
                 "SELECT key, value FROM \"%s\" WHERE key > coalesce(?1, '')"
                 " AND json_extract(value, '$.%s') = ?2 ORDER BY key LIMIT ?3",
                 tbl, field);
    else
        snprintf(sql, sizeof(sql),
                 "SELECT key, value FROM \"%s\" WHERE key > coalesce(?1, '')"
                 " ORDER BY key LIMIT ?3",
                 tbl);
    if ((st = store_stmt(k->store, db, sql, err)) == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
    if (field)
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        json_t *doc = parse_doc(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1));
        int stop;

        if (doc == NULL)
            continue;
        stop = fn(id, doc, arg);
        json_decref(doc);
        n++;
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ut_err_set(err, "listing %s: %s", tbl, sqlite3_errmsg(db));
        sqlite3_reset(st);
        return -EIO;
    }
    sqlite3_reset(st);
    return n;
}

struct del_job {
    struct akamu *k;
    const char *tbl, *id;
};

static int del_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct del_job *j = arg;

    return crdt_delete(j->k->replica, db, j->tbl, j->id, err);
}

int akm_delete(struct akamu *k, const char *tbl, const char *id, struct ut_err *err)
{
    struct del_job j = {k, tbl, id};

    return store_write(k->store, del_job, &j, err);
}
