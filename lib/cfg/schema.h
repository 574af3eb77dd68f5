/*
 * schema.h - the table-driven binder behind ahdapa_cfg / akamu_cfg
 * (private to lib/cfg).
 *
 * A schema lists sections and keys; each key says where in the config
 * struct its value goes (byte offset), its kind, default and range. The
 * binder applies defaults, walks the TOML tree, type-checks and range-checks
 * every value, reports unknown keys with a suggestion, and frees what it
 * allocated. Daemon files add only their cross-key checks.
 */
#ifndef CFG_SCHEMA_H
#define CFG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "cfg/cfg.h"
#include "cfg/toml.h"

enum cfg_kind {
    CFG_K_STR,      /* char*; min/max bound the length when max > 0 */
    CFG_K_PATH,     /* char*; relative -> against the config folder */
    CFG_K_INT,      /* int64_t in [min, max] */
    CFG_K_BOOL,     /* bool */
    CFG_K_STRV,     /* struct cfg_strv; array of strings */
    CFG_K_URLV,     /* struct cfg_strv; array of http(s) URLs */
    CFG_K_ENUM,     /* char*; one of choices ("a|b|c") */
    CFG_K_HOSTPORT, /* char*; "host:port" with port 0..65535 */
    CFG_K_URL,      /* char*; http:// or https:// URL */
    CFG_K_DBURL,    /* char*; sqlite://..., sqlite::memory:, postgresql://... */
    CFG_K_STRMAP,   /* struct cfg_strmap; a table of strings */
    CFG_K_TOKEN,    /* char*; printable ASCII, no spaces, length min..max */
};

#define CFG_NO_PRESENT ((size_t)-1)

struct cfg_section {
    const char *name;   /* "" = top level */
    size_t present_off; /* offset of a bool set when the section appears */
    const char *help;
};

struct cfg_key {
    const char *section; /* "" = top level */
    const char *name;
    enum cfg_kind kind;
    size_t off;
    const char *def_s; /* string default or NULL */
    int64_t def_i;     /* int/bool default */
    int64_t min, max;
    const char *choices; /* CFG_K_ENUM: "off|eventual" */
    const char *help;
};

struct cfg_schema {
    const char *daemon;
    const struct cfg_section *sections;
    size_t n_sections;
    const struct cfg_key *keys;
    size_t n_keys;
};

/* Loads path into obj (zeroed by the caller) per schema. Returns 0 or a
 * negative error; problems go to rep. obj->path (a char* at offset 0) gets
 * the absolute path of the file. */
int cfg_schema_load(const struct cfg_schema *s, const char *path, unsigned flags, void *obj,
                    struct cfg_report *rep);
void cfg_schema_free(const struct cfg_schema *s, void *obj);

/* For daemon cross-checks: adds "FILE: msg" (error) to rep. */
void cfg_report_error(struct cfg_report *rep, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cfg_report_warn(struct cfg_report *rep, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Levenshtein distance, capped at 255 (for did-you-mean). */
int cfg_edit_distance(const char *a, const char *b);

void cfg_schema_md(const struct cfg_schema *s, struct ut_buf *out);

const struct cfg_schema *cfg_ahdapa_schema(void);
const struct cfg_schema *cfg_akamu_schema(void);

#endif
