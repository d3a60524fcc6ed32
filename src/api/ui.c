/* The dashboard's asset server: embedded files, gzip when accepted, ETag revalidation, a strict CSP. */
#include "api/ui.h"

#include <string.h>
#include <strings.h>

/* Only this origin: no inline script or style, no framing, no other host. */
#define UI_CSP                                                                                               \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "      \
  "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

const struct ui_asset *ui_asset_find(const char *path, size_t len) {
  if (len == 4 && memcmp(path, "/ui/", 4) == 0) path = "/ui/index.html", len = strlen(path);
  for (size_t i = 0; i < ui_nassets; i++)
    if (strlen(ui_assets[i].path) == len && memcmp(ui_assets[i].path, path, len) == 0) return &ui_assets[i];
  return NULL;
}

/* Is the parameter list p (from its ';') a "q=0" (also "q=0.0", "q=0.000")? */
static bool q_zero(const char *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if ((p[i] != 'q' && p[i] != 'Q') || p[i + 1] != '=') continue;
    size_t j = i + 2;
    if (j >= n || p[j] != '0') return false;
    for (j++; j < n && (p[j] == '.' || p[j] == '0'); j++) {
    }
    while (j < n && p[j] == ' ')
      j++;
    return j == n;
  }
  return false;
}

/* Does a header value (a comma-separated list) hold token tok, case-insensitively, ignoring parameters? */
static bool list_has(struct slice v, const char *tok, bool quoted_exact) {
  size_t tl = strlen(tok);
  size_t i = 0;
  while (i < v.len) {
    while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t' || v.base[i] == ','))
      i++;
    size_t s = i;
    while (i < v.len && v.base[i] != ',')
      i++;
    size_t e = i;
    if (!quoted_exact) { /* "gzip;q=0" means not gzip */
      const char *semi = memchr(v.base + s, ';', e - s);
      size_t n = semi ? (size_t)(semi - (v.base + s)) : e - s;
      while (n && (v.base[s + n - 1] == ' '))
        n--;
      if (n == tl && strncasecmp(v.base + s, tok, tl) == 0)
        return !semi || !q_zero(semi, (size_t)(v.base + e - semi));
    } else {
      while (e > s && v.base[e - 1] == ' ')
        e--;
      if (e - s == 1 && v.base[s] == '*') return true;
      if (e - s >= 2 && v.base[s] == 'W' && v.base[s + 1] == '/') s += 2; /* weak comparison */
      if (e - s == tl && memcmp(v.base + s, tok, tl) == 0) return true;
    }
  }
  return false;
}

static void send_plain(struct http_req *req, int status, const char *msg, const struct http_header *h,
                       int nh) {
  http_resp_send(req, status, "text/plain; charset=utf-8", msg, strlen(msg), h, nh);
}

void ui_handle(struct http_req *req) {
  static const struct http_header csp = {SLICE_LIT("Content-Security-Policy"), SLICE_LIT(UI_CSP)};
  struct slice p = req->path;
  bool head = req->method == HTTP_M_HEAD;
  if (slice_eqz(p, "/") || slice_eqz(p, "/ui") || slice_eqz(p, "/dashboard")) {
    struct http_header h[2] = {{SLICE_LIT("Location"), SLICE_LIT("/ui/")}, csp};
    send_plain(req, 302, "the dashboard is at /ui/\n", h, 2);
    return;
  }
  const struct ui_asset *a = ui_asset_find(p.base, p.len);
  if (!a) {
    send_plain(req, 404, "no such file in the dashboard\n", &csp, 1);
    return;
  }
  bool gz = list_has(http_req_header(req, "accept-encoding"), "gzip", false);
  struct http_header h[8] = {
      {SLICE_LIT("Content-Type"), slice_cstr(a->content_type)},
      {SLICE_LIT("ETag"), slice_cstr(a->etag)},
      {SLICE_LIT("Cache-Control"), SLICE_LIT("no-cache")}, /* revalidate: cheap with the ETag */
      {SLICE_LIT("Vary"), SLICE_LIT("Accept-Encoding")},
      csp,
      {SLICE_LIT("X-Content-Type-Options"), SLICE_LIT("nosniff")},
      {SLICE_LIT("Referrer-Policy"), SLICE_LIT("no-referrer")},
      {SLICE_LIT("Content-Encoding"), SLICE_LIT("gzip")},
  };
  int nh = gz ? 8 : 7;
  struct slice inm = http_req_header(req, "if-none-match");
  if (inm.len && list_has(inm, a->etag, true)) {
    http_resp_start(req, 304, h, 7, 0);
    http_resp_end(req);
    return;
  }
  const unsigned char *body = gz ? a->gz : a->raw;
  size_t len = gz ? a->gz_len : a->raw_len;
  http_resp_start(req, 200, h, nh, (int64_t)len);
  if (!head) http_resp_write(req, body, len);
  http_resp_end(req);
}
