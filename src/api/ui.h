/* The dashboard's asset server: /ui/... from files embedded in the binary at build time (cmake/bundle_ui.py
 * turns ui/ into a generated C file), gzip-encoded when the client accepts it, with ETags and a strict CSP.
 */
#ifndef IM_API_UI_H
#define IM_API_UI_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http_server.h"

/* One embedded file. Everything is static data of the generated file. */
struct ui_asset {
  const char *path;         /* e.g. "/ui/index.html" */
  const char *content_type; /* e.g. "text/html; charset=utf-8" */
  const unsigned char *raw;
  size_t raw_len;
  const unsigned char *gz; /* the same bytes gzip-compressed at build time */
  size_t gz_len;
  const char *etag; /* a strong ETag with its quotes: a hash of raw */
};

extern const struct ui_asset ui_assets[];
extern const size_t ui_nassets;

/* ui_asset_find returns the asset served at path ("/ui/" is index.html), or NULL. Static: never freed. */
const struct ui_asset *ui_asset_find(const char *path, size_t len);

/* ui_handle answers a GET or HEAD of the dashboard: "/", "/ui", "/dashboard" redirect to "/ui/"; "/ui/..."
 * serves an embedded file (304 when If-None-Match holds its ETag; gzip when Accept-Encoding allows it) or
 * 404. Every answer carries the dashboard's Content-Security-Policy. Always answers req. */
void ui_handle(struct http_req *req);

#endif
