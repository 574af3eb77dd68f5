/*
 * ui.c - the admin web UI at /ui/: static files embedded in the binary at
 * build time (daemons/ahdapa/ui/, scripts/embed-assets.py), no CDN and no
 * files read at run time. The page talks to the same JSON API as any other
 * admin client (cookie session + X-CSRF-Token), so this file only serves
 * bytes with strict headers:
 *   - a Content-Security-Policy that allows nothing but same-origin script,
 *     style, images and fetch (no inline code, no framing, no <base>);
 *   - nosniff, DENY framing, no Referer;
 *   - a strong ETag with Cache-Control: no-cache, so a browser revalidates
 *     (304) and picks up a new build at once.
 */
#include <string.h>

#include "ahdapa.h"

#define UI_CSP                                                                                     \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

static void security_headers(struct http_req *r)
{
    http_add_header(r, "Content-Security-Policy", UI_CSP);
    http_add_header(r, "X-Content-Type-Options", "nosniff");
    http_add_header(r, "X-Frame-Options", "DENY");
    http_add_header(r, "Referrer-Policy", "no-referrer");
    http_add_header(r, "Cache-Control", "no-cache");
}

static const struct ahd_asset *find_asset(const char *name)
{
    for (size_t i = 0; i < ahd_ui_n_assets; i++) {
        if (strcmp(ahd_ui_assets[i].name, name) == 0)
            return &ahd_ui_assets[i];
    }
    return NULL;
}

/* 1 when an If-None-Match list names etag (or is "*"). */
static int etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);

    if (inm == NULL)
        return 0;
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p == '*' || strncmp(p, etag, n) == 0)
            return 1;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

static void serve(struct http_req *r, const char *name)
{
    const struct ahd_asset *a = find_asset(name);

    security_headers(r);
    if (a == NULL) {
        http_reply_error(r, 404, "not_found", "no such file in the admin UI");
        return;
    }
    http_add_header(r, "ETag", a->etag);
    if (etag_matches(http_req_header(r, "If-None-Match"), a->etag)) {
        http_reply(r, 304, NULL, NULL, 0);
        return;
    }
    http_reply(r, 200, a->content_type, a->data, a->len);
}

static void ui_redirect(struct http_req *r, void *arg)
{
    (void)arg;
    security_headers(r);
    http_add_header(r, "Location", "/ui/");
    http_reply(r, 308, "text/plain; charset=utf-8", "see /ui/\n", 9);
}

static void ui_index(struct http_req *r, void *arg)
{
    (void)arg;
    serve(r, "index.html");
}

static void ui_file(struct http_req *r, void *arg)
{
    const char *name = http_req_param(r, "file");

    (void)arg;
    /* "index.html" is served only as /ui/, so the page has one URL. */
    serve(r, strcmp(name, "index.html") == 0 ? "" : name);
}

int ahdapa_ui_routes(struct ahdapa *a, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(a->http, HTTP_GET | HTTP_HEAD, "/ui", ui_redirect, a, err)) < 0 ||
        (rc = http_route(a->http, HTTP_GET | HTTP_HEAD, "/ui/", ui_index, a, err)) < 0)
        return rc;
    return http_route(a->http, HTTP_GET | HTTP_HEAD, "/ui/{file}", ui_file, a, err);
}
