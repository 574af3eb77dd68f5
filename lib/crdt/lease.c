/*
 * lease.c - exclusive ownership of named work, fenced by epochs.
 *
 * A lease is an LWW row of the built-in table crdt_leases whose value is
 * {"epoch": n, "expires": unix ms, "owner": origin} (compact JSON, sorted
 * keys, so every node writes the same bytes for the same state). A free
 * lease is {"owner": ""} with its last epoch kept, so epochs only grow.
 * Every decision is made in the caller's write transaction against the row
 * as merged so far; concurrent takeovers on two nodes are settled by the
 * LWW merge and the loser learns it from crdt_lease_check (-ESTALE).
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_TTL_MAX (UINT64_C(1) << 40) /* ms: 34 years */

struct lease {
    int exists; /* a live row */
    char owner[CRDT_ORIGIN_MAX + 1];
    uint64_t expires;
    uint64_t epoch;
};

static int lease_name_ok(const char *fn, const char *name, struct ut_err *err)
{
    size_t n;
    int rc = crdt_key_check_(name, &n);

    if (rc < 0)
        ut_err_set(err, "%s: lease name is %s", fn,
                   rc == -E2BIG ? "too long" : (name == NULL ? "NULL" : "empty"));
    return rc;
}

static int lease_parse(const char *fn, const char *name, const uint8_t *v, size_t n,
                       struct lease *l, struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, &jerr);
    json_t *jo, *je, *jn;
    int rc = -EPROTO;

    if (doc == NULL)
        goto out;
    jo = json_object_get(doc, "owner");
    je = json_object_get(doc, "expires");
    jn = json_object_get(doc, "epoch");
    if (!json_is_string(jo) || json_string_length(jo) > CRDT_ORIGIN_MAX || !json_is_integer(je) ||
        json_integer_value(je) < 0 || !json_is_integer(jn) || json_integer_value(jn) < 0)
        goto out;
    snprintf(l->owner, sizeof(l->owner), "%s", json_string_value(jo));
    l->expires = (uint64_t)json_integer_value(je);
    l->epoch = (uint64_t)json_integer_value(jn);
    l->exists = 1;
    rc = 0;
out:
    if (rc < 0)
        ut_err_set(err, "%s: lease \"%s\": stored value is not a lease document", fn,
                   crdt_show_(name, show, sizeof(show)));
    json_decref(doc);
    return rc;
}

/* Reads the lease row (tombstone or absent: not existing, epoch 0). */
static int lease_read(struct crdt_replica *r, sqlite3 *db, const char *fn, const char *name,
                      struct lease *l, struct ut_err *err)
{
    uint8_t *v = NULL;
    size_t n = 0;
    int rc;

    memset(l, 0, sizeof(*l));
    rc = crdt_get(r, db, CRDT_LEASE_TABLE, name, &v, &n, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    rc = lease_parse(fn, name, v, n, l, err);
    free(v);
    return rc;
}

static int lease_write(struct crdt_replica *r, sqlite3 *db, const char *fn, const char *name,
                       const char *owner, uint64_t expires, uint64_t epoch, struct ut_err *err)
{
    json_t *doc = json_pack("{s:I, s:I, s:s}", "epoch", (json_int_t)epoch, "expires",
                            (json_int_t)expires, "owner", owner);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    uint64_t now = crdt_hlc_wall_ms(r->hlc);
    int rc;

    json_decref(doc);
    if (text == NULL) {
        ut_err_set(err, "%s: out of memory", fn);
        return -ENOMEM;
    }
    /* The row expires with the lease (a released one: now), so GC purges
     * it once that has passed and the row is older than the horizon
     * (gc.c). A later tenure then starts again at epoch 1: safe, as
     * fencing compares owner and epoch with a row that exists, and no work
     * outlives tombstone_ttl (a node away that long re-syncs first). */
    if (expires < now)
        expires = now;
    rc = crdt_put_internal_(r, db, CRDT_LEASE_TABLE, name, text, strlen(text), (int64_t)expires, 1,
                            err);
    free(text);
    return rc;
}

int crdt_lease_acquire(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t ttl_ms,
                       uint64_t *epoch, char *owner_out, size_t owner_len, struct ut_err *err)
{
    static const char fn[] = "crdt_lease_acquire";
    struct lease l;
    uint64_t now, next;
    int rc;

    if (owner_out != NULL && owner_len > 0)
        owner_out[0] = '\0';
    if (r == NULL || db == NULL || epoch == NULL) {
        ut_err_set(err, "%s: %s is NULL", fn, r == NULL ? "replica" : (db ? "epoch" : "db"));
        return -EINVAL;
    }
    rc = lease_name_ok(fn, name, err);
    if (rc < 0)
        return rc;
    if (ttl_ms == 0 || ttl_ms > LEASE_TTL_MAX) {
        ut_err_set(err, "%s: lease \"%s\": ttl_ms %llu is out of range", fn, name,
                   (unsigned long long)ttl_ms);
        return -EINVAL;
    }
    rc = lease_read(r, db, fn, name, &l, err);
    if (rc < 0)
        return rc;
    now = crdt_hlc_wall_ms(r->hlc);
    if (l.exists && l.owner[0] != '\0' && strcmp(l.owner, r->origin) != 0 && l.expires > now) {
        if (owner_out != NULL && owner_len > 0)
            snprintf(owner_out, owner_len, "%s", l.owner);
        ut_err_set(err, "%s: lease \"%s\" is held by \"%s\" (epoch %llu) for %llu ms more", fn,
                   name, l.owner, (unsigned long long)l.epoch,
                   (unsigned long long)(l.expires - now));
        return -EBUSY;
    }
    /* Renewing a live lease of ours keeps the epoch; any new tenure (free,
     * expired, or ours but expired: someone may have taken it meanwhile
     * on a node we have not heard from) starts a new epoch. */
    if (l.exists && strcmp(l.owner, r->origin) == 0 && l.expires > now)
        next = l.epoch;
    else
        next = l.epoch + 1;
    rc = lease_write(r, db, fn, name, r->origin, now + ttl_ms, next, err);
    if (rc < 0)
        return rc;
    *epoch = next;
    if (owner_out != NULL && owner_len > 0)
        snprintf(owner_out, owner_len, "%s", r->origin);
    return 0;
}

/* 0 when the lease is ours with this epoch (and, when live is set, not
 * expired), else -ESTALE naming the holder. */
static int lease_ours(struct crdt_replica *r, const char *fn, const char *name,
                      const struct lease *l, uint64_t epoch, int live, struct ut_err *err)
{
    uint64_t now = crdt_hlc_wall_ms(r->hlc);

    if (!l->exists || l->owner[0] == '\0') {
        ut_err_set(err, "%s: lease \"%s\" is not held (epoch %llu)", fn, name,
                   (unsigned long long)l->epoch);
        return -ESTALE;
    }
    if (strcmp(l->owner, r->origin) != 0 || l->epoch != epoch) {
        ut_err_set(err, "%s: lease \"%s\" is held by \"%s\" with epoch %llu, not by us with %llu",
                   fn, name, l->owner, (unsigned long long)l->epoch, (unsigned long long)epoch);
        return -ESTALE;
    }
    if (live && l->expires <= now) {
        ut_err_set(err, "%s: lease \"%s\" (epoch %llu) expired %llu ms ago", fn, name,
                   (unsigned long long)epoch, (unsigned long long)(now - l->expires));
        return -ESTALE;
    }
    return 0;
}

int crdt_lease_check(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t epoch,
                     struct ut_err *err)
{
    static const char fn[] = "crdt_lease_check";
    struct lease l;
    int rc;

    if (r == NULL || db == NULL) {
        ut_err_set(err, "%s: %s is NULL", fn, r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    rc = lease_name_ok(fn, name, err);
    if (rc == 0)
        rc = lease_read(r, db, fn, name, &l, err);
    if (rc == 0)
        rc = lease_ours(r, fn, name, &l, epoch, 1, err);
    return rc;
}

int crdt_lease_release(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t epoch,
                       struct ut_err *err)
{
    static const char fn[] = "crdt_lease_release";
    struct lease l;
    int rc;

    if (r == NULL || db == NULL) {
        ut_err_set(err, "%s: %s is NULL", fn, r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    rc = lease_name_ok(fn, name, err);
    if (rc == 0)
        rc = lease_read(r, db, fn, name, &l, err);
    if (rc == 0)
        rc = lease_ours(r, fn, name, &l, epoch, 0, err);
    if (rc == 0)
        rc = lease_write(r, db, fn, name, "", 0, epoch, err);
    return rc;
}
