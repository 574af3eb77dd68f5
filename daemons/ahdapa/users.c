/*
 * The static users file ([users] static_file):
 *   [[users]]
 *   username = "alice"
 *   password_hash = "$argon2id$v=19$m=65536,t=3,p=1$..."   (ahdapa hash-password)
 *   groups = ["admins"]
 *   email = "alice@example.com"   # optional
 *   name = "Alice"                # optional
 * Any other key, a duplicate user name or a hash that is not argon2id
 * refuses the file with file:line. Also `ahdapa hash-password`.
 */
#include <argon2.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahdapa.h"
#include "cfg/toml.h"
#include "util/log.h"
#include "util/mem.h"

#define USERS_FILE_MAX (4u * 1024 * 1024)
#define PASSWORD_MAX   1024
/* hash-password parameters (docs/operations.md): t=3, m=64 MiB, p=1. */
#define HASH_T   3
#define HASH_M   (64 * 1024)
#define HASH_P   1
#define SALT_LEN 16
#define HASH_LEN 32
#define PHC_MAX  256

struct ahd_user {
    char *username, *hash, *email, *name;
    char **groups;
    size_t n_groups;
};

struct ahd_users {
    struct ahd_user *v;
    size_t n;
    char dummy[PHC_MAX]; /* verified for unknown users (same cost) */
};

static void user_free(struct ahd_user *u)
{
    free(u->username);
    free(u->hash);
    free(u->email);
    free(u->name);
    for (size_t i = 0; i < u->n_groups; i++)
        free(u->groups[i]);
    free(u->groups);
}

void ahd_users_free(struct ahd_users *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n; i++)
        user_free(&u->v[i]);
    free(u->v);
    free(u);
}

static int read_all(const char *path, char **out, size_t *len, struct ut_err *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int rc = -EIO;

    if (f == NULL) {
        rc = -errno;
        ut_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    buf = malloc(USERS_FILE_MAX + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    n = fread(buf, 1, USERS_FILE_MAX + 1, f);
    if (ferror(f) || n > USERS_FILE_MAX) {
        ut_err_set(err, "%s: unreadable or larger than %u bytes", path, USERS_FILE_MAX);
        rc = ferror(f) ? -EIO : -E2BIG;
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* A string member: required (or optional when opt), 1..max bytes, no NUL. */
static int str_field(const char *path, const struct toml_value *t, const char *key, int opt,
                     size_t max, char **dst, struct ut_err *err)
{
    const struct toml_value *v = toml_table_get(t, key);
    size_t n = 0;
    const char *s;

    if (v == NULL) {
        if (opt)
            return 0;
        ut_err_set(err, "%s:%d: user entry lacks '%s'", path, toml_line(t), key);
        return -EINVAL;
    }
    if (toml_type(v) != TOML_STRING || (s = toml_string(v, &n), n == 0) || n > max ||
        strlen(s) != n) {
        ut_err_set(err, "%s:%d: '%s' must be a non-empty string of at most %zu bytes", path,
                   toml_line(v), key, max);
        return -EINVAL;
    }
    *dst = ut_xstrdup(s);
    return 0;
}

static int parse_user(const char *path, const struct toml_value *t, struct ahd_user *u,
                      struct ut_err *err)
{
    static const char *const known[] = {"username", "password_hash", "groups", "email", "name"};
    const struct toml_value *g;
    int rc;

    if (toml_type(t) != TOML_TABLE) {
        ut_err_set(err, "%s:%d: [[users]] entries must be tables", path, toml_line(t));
        return -EINVAL;
    }
    for (size_t i = 0; i < toml_table_len(t); i++) {
        const char *k = toml_table_key(t, i, NULL);
        size_t j = 0;

        while (j < sizeof(known) / sizeof(known[0]) && strcmp(k, known[j]) != 0)
            j++;
        if (j == sizeof(known) / sizeof(known[0])) {
            ut_err_set(err, "%s:%d: unknown key '%s' in a user entry", path,
                       toml_line(toml_table_value(t, i)), k);
            return -EINVAL;
        }
    }
    if ((rc = str_field(path, t, "username", 0, AHD_USERNAME_MAX, &u->username, err)) < 0 ||
        (rc = str_field(path, t, "password_hash", 0, PHC_MAX - 1, &u->hash, err)) < 0 ||
        (rc = str_field(path, t, "email", 1, 320, &u->email, err)) < 0 ||
        (rc = str_field(path, t, "name", 1, 256, &u->name, err)) < 0)
        return rc;
    if (strncmp(u->hash, "$argon2id$", 10) != 0) {
        ut_err_set(err, "%s:%d: password_hash of '%s' is not an argon2id PHC string", path,
                   toml_line(toml_table_get(t, "password_hash")), u->username);
        return -EINVAL;
    }
    g = toml_table_get(t, "groups");
    if (g == NULL)
        return 0;
    if (toml_type(g) != TOML_ARRAY || toml_array_len(g) > AHD_GROUPS_MAX) {
        ut_err_set(err, "%s:%d: 'groups' must be an array of at most %d strings", path,
                   toml_line(g), AHD_GROUPS_MAX);
        return -EINVAL;
    }
    u->groups = ut_xcalloc(toml_array_len(g) + 1, sizeof(char *));
    for (size_t i = 0; i < toml_array_len(g); i++) {
        const struct toml_value *e = toml_array_at(g, i);
        size_t n = 0;
        const char *s;

        if (toml_type(e) != TOML_STRING || (s = toml_string(e, &n), n == 0) || n > AHD_GROUP_MAX ||
            strlen(s) != n) {
            ut_err_set(err,
                       "%s:%d: group %zu of '%s' must be a non-empty string of at most %d bytes",
                       path, toml_line(g), i, u->username, AHD_GROUP_MAX);
            return -EINVAL;
        }
        u->groups[u->n_groups++] = ut_xstrdup(s);
    }
    return 0;
}

static int parse_users(const char *path, const struct toml_value *root, struct ahd_users *u,
                       struct ut_err *err)
{
    const struct toml_value *arr = toml_table_get(root, "users");
    int rc;

    for (size_t i = 0; i < toml_table_len(root); i++) {
        if (strcmp(toml_table_key(root, i, NULL), "users") != 0) {
            ut_err_set(err, "%s:%d: unknown key '%s' (expected [[users]] entries)", path,
                       toml_line(toml_table_value(root, i)), toml_table_key(root, i, NULL));
            return -EINVAL;
        }
    }
    if (arr == NULL)
        return 0;
    if (toml_type(arr) != TOML_ARRAY) {
        ut_err_set(err, "%s:%d: 'users' must be an array of tables ([[users]])", path,
                   toml_line(arr));
        return -EINVAL;
    }
    u->v = ut_xcalloc(toml_array_len(arr) + 1, sizeof(*u->v));
    for (size_t i = 0; i < toml_array_len(arr); i++) {
        const struct toml_value *t = toml_array_at(arr, i);

        rc = parse_user(path, t, &u->v[u->n], err);
        u->n++; /* freed with the rest even when half-filled */
        if (rc < 0)
            return rc;
        for (size_t j = 0; j + 1 < u->n; j++) {
            if (strcmp(u->v[j].username, u->v[u->n - 1].username) == 0) {
                ut_err_set(err, "%s:%d: duplicate user '%s'", path, toml_line(t), u->v[j].username);
                return -EEXIST;
            }
        }
    }
    return 0;
}

static int hash_password(const char *pw, size_t n, char *out, size_t outlen)
{
    uint8_t salt[SALT_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return -EIO;
    if (argon2id_hash_encoded(HASH_T, HASH_M, HASH_P, pw, n, salt, sizeof(salt), HASH_LEN, out,
                              outlen) != ARGON2_OK)
        return -EINVAL;
    return 0;
}

int ahd_users_load(const char *path, struct ahd_users **out, struct ut_err *err)
{
    struct ahd_users *u = ut_xcalloc(1, sizeof(*u));
    struct toml_value *root = NULL;
    uint8_t rnd[32];
    char *text = NULL;
    size_t len = 0;
    int rc;

    /* The dummy hash has the same parameters as hash-password output, so
     * an unknown user costs about as much as a typical known one. */
    if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
        hash_password((const char *)rnd, sizeof(rnd), u->dummy, sizeof(u->dummy)) < 0) {
        ut_err_set(err, "users: cannot compute the reference hash");
        rc = -EIO;
        goto out;
    }
    if (path == NULL) {
        rc = 0;
        goto out;
    }
    /* A missing file is not fatal (the spec's configs name users.toml
     * beside the config even where none is shipped): no users, warned.
     * Any other problem with the file refuses the start. */
    if ((rc = read_all(path, &text, &len, err)) == -ENOENT) {
        ut_log(UT_LOG_WARN, "auth", "users file missing: every login will fail",
               UT_LF_S("path", path));
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    if ((rc = toml_parse(text, len, &root, err)) < 0) {
        ut_err_prefix(err, "%s", path); /* "path: line L, column C: ..." */
        goto out;
    }
    rc = parse_users(path, root, u, err);
out:
    toml_free(root);
    free(text);
    if (rc < 0) {
        ahd_users_free(u);
        u = NULL;
    }
    *out = u;
    return rc;
}

int ahd_users_verify(const struct ahd_users *u, const char *username, const char *password,
                     const char *const **groups, size_t *n_groups)
{
    const struct ahd_user *found = NULL;
    size_t pwlen = strlen(password);

    for (size_t i = 0; u && i < u->n; i++)
        if (strcmp(u->v[i].username, username) == 0)
            found = &u->v[i];
    if (u == NULL || pwlen > PASSWORD_MAX)
        return 0;
    if (found == NULL) {
        (void)argon2id_verify(u->dummy, password, pwlen);
        return 0;
    }
    if (argon2id_verify(found->hash, password, pwlen) != ARGON2_OK)
        return 0;
    *groups = (const char *const *)found->groups;
    *n_groups = found->n_groups;
    return 1;
}

int ahdapa_hash_password_main(void)
{
    char pw[PASSWORD_MAX + 2], phc[PHC_MAX];
    size_t n;
    int rc = 1;

    if (fgets(pw, sizeof(pw), stdin) == NULL) {
        fputs("ahdapa: hash-password: no password on stdin\n", stderr);
        return 1;
    }
    n = strlen(pw);
    if (n > 0 && pw[n - 1] == '\n')
        pw[--n] = '\0';
    if (n > 0 && pw[n - 1] == '\r')
        pw[--n] = '\0';
    if (n == 0 || n > PASSWORD_MAX) {
        fprintf(stderr, "ahdapa: hash-password: the password must be 1..%d bytes on one line\n",
                PASSWORD_MAX);
        goto out;
    }
    if (hash_password(pw, n, phc, sizeof(phc)) < 0) {
        fputs("ahdapa: hash-password: hashing failed\n", stderr);
        goto out;
    }
    puts(phc);
    rc = 0;
out:
    ut_memzero(pw, sizeof(pw));
    return rc;
}
