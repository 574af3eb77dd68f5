/*
 * names.c - validation of table names, keys and origins, safe rendering of
 * untrusted strings in messages, and small SQL helpers.
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int crdt_tbl_name_ok_(const char *name)
{
    size_t n;

    if (name == NULL || !((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return -EINVAL;
    for (n = 1; name[n] != '\0'; n++) {
        char c = name[n];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return -EINVAL;
        if (n >= CRDT_TABLE_NAME_MAX)
            return -EINVAL;
    }
    return 0;
}

int crdt_key_check_(const char *key, size_t *len)
{
    size_t n;

    if (key == NULL || key[0] == '\0')
        return -EINVAL;
    n = strnlen(key, CRDT_KEY_MAX + 1);
    if (n > CRDT_KEY_MAX)
        return -E2BIG;
    *len = n;
    return 0;
}

int crdt_origin_ok_(const char *origin, size_t *len)
{
    size_t n;

    if (origin == NULL)
        return -EINVAL;
    for (n = 0; origin[n] != '\0'; n++) {
        unsigned char c = (unsigned char)origin[n];

        if (c < 0x21 || c > 0x7e || n >= CRDT_ORIGIN_MAX)
            return -EINVAL;
    }
    if (n == 0)
        return -EINVAL;
    if (len != NULL)
        *len = n;
    return 0;
}

const char *crdt_show_(const char *s, char *buf, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    size_t o = 0, i;

    if (n == 0)
        return "";
    if (s == NULL) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    for (i = 0; s[i] != '\0' && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];

        if (o + 5 >= n)
            break;
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hexd[c >> 4];
            buf[o++] = hexd[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    if (s[i] != '\0' && o + 4 < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

const struct crdt_tbl *crdt_tbl_find_(const struct crdt_replica *r, const char *name)
{
    for (size_t i = 0; i < r->n_tables; i++) {
        if (strcmp(r->tables[i].name, name) == 0)
            return &r->tables[i];
    }
    return NULL;
}

int crdt_tbl_get_(const struct crdt_replica *r, const char *fn, const char *name,
                  const struct crdt_tbl **out, struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];

    *out = NULL;
    if (name == NULL) {
        ut_err_set(err, "%s: table name is NULL", fn);
        return -EINVAL;
    }
    *out = crdt_tbl_find_(r, name);
    if (*out != NULL)
        return 0;
    if (crdt_tbl_name_ok_(name) < 0) {
        ut_err_set(err, "%s: malformed table name \"%s\"", fn,
                   crdt_show_(name, show, sizeof(show)));
        return -EINVAL;
    }
    ut_err_set(err, "%s: table \"%s\" is not declared on this node", fn, name);
    return -ENOENT;
}

sqlite3_stmt *crdt_stmt_(struct crdt_replica *r, sqlite3 *db, const char *sql, struct ut_err *err)
{
    return store_stmt(r->s, db, sql, err);
}

int crdt_db_err_(struct ut_err *err, sqlite3 *db, const char *fn, const char *what)
{
    int rc = sqlite3_extended_errcode(db);
    int ret = store_sqlite_errno(rc);

    ut_err_set(err, "%s: %s: %s", fn, what, sqlite3_errmsg(db));
    return ret < 0 ? ret : -EIO;
}

uint64_t crdt_horizon_hlc_(struct crdt_replica *r, uint64_t wall_ms)
{
    uint64_t h = wall_ms > r->tombstone_ttl_ms ? wall_ms - r->tombstone_ttl_ms : 0;

    return CRDT_HLC_MAKE(h, 0);
}
