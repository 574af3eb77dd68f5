/* The config reference as Markdown, generated from the schemas so that
 * docs/config.md cannot drift from the code (tools/cfg-doc prints it). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cfg/schema.h"

static void full_name(const struct cfg_key *k, char *out, size_t n)
{
    if (k->section[0])
        snprintf(out, n, "%s.%s", k->section, k->name);
    else
        snprintf(out, n, "%s", k->name);
}

static const char *kind_name(const struct cfg_key *k)
{
    switch (k->kind) {
    case CFG_K_STR:
        return "string";
    case CFG_K_PATH:
        return "path";
    case CFG_K_INT:
        return "integer";
    case CFG_K_BOOL:
        return "boolean";
    case CFG_K_STRV:
        return "array of strings";
    case CFG_K_URLV:
        return "array of URLs";
    case CFG_K_ENUM:
        return "enum";
    case CFG_K_HOSTPORT:
        return "host:port";
    case CFG_K_URL:
        return "URL";
    case CFG_K_DBURL:
        return "database URL";
    case CFG_K_STRMAP:
        return "table of strings";
    case CFG_K_TOKEN:
        return "identifier";
    }
    return "?";
}

void cfg_schema_md(const struct cfg_schema *s, struct ut_buf *out)
{
    ut_buf_printf(out, "| key | type | default | allowed | meaning |\n");
    ut_buf_printf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct cfg_key *k = &s->keys[i];
        char name[128], def[96] = "", allowed[96] = "";

        full_name(k, name, sizeof(name));
        if (k->kind == CFG_K_INT) {
            snprintf(def, sizeof(def), "`%" PRId64 "`", k->def_i);
            snprintf(allowed, sizeof(allowed), "%" PRId64 "..%" PRId64, k->min, k->max);
        } else if (k->kind == CFG_K_BOOL) {
            snprintf(def, sizeof(def), "`%s`", k->def_i ? "true" : "false");
        } else if (k->def_s) {
            snprintf(def, sizeof(def), "`\"%s\"`", k->def_s);
        } else {
            snprintf(def, sizeof(def), "(none)");
        }
        if (k->kind == CFG_K_ENUM) {
            /* '|' would end the Markdown cell. */
            size_t o = 0;
            for (const char *p = k->choices; *p && o + 8 < sizeof(allowed); p++) {
                if (*p == '|') {
                    memcpy(allowed + o, "`, `", 4);
                    o += 4;
                } else {
                    allowed[o++] = *p;
                }
            }
            allowed[o] = '\0';
            memmove(allowed + 1, allowed, o + 1);
            allowed[0] = '`';
            strcat(allowed, "`");
        }
        ut_buf_printf(out, "| `%s` | %s | %s | %s | %s |\n", name, kind_name(k), def, allowed,
                      k->help ? k->help : "");
    }
}

void cfg_schema_markdown(struct ut_buf *out, int which)
{
    cfg_schema_md(which == 0 ? cfg_ahdapa_schema() : cfg_akamu_schema(), out);
}
