/* The protocol-neutral response API: state checks, then the protocol's ops. */
#include "net/http_req.h"

#include <assert.h>
#include <errno.h>

static const char *const method_names[] = {
    [HTTP_M_OTHER] = "OTHER", [HTTP_M_GET] = "GET",         [HTTP_M_HEAD] = "HEAD",
    [HTTP_M_POST] = "POST",   [HTTP_M_PUT] = "PUT",         [HTTP_M_DELETE] = "DELETE",
    [HTTP_M_PATCH] = "PATCH", [HTTP_M_OPTIONS] = "OPTIONS",
};

int http_method_parse(struct slice token) {
  for (int m = HTTP_M_GET; m <= HTTP_M_OPTIONS; m++)
    if (slice_eqz(token, method_names[m])) return m;
  return HTTP_M_OTHER;
}

const char *http_method_name(int method) {
  if (method < 0 || method > HTTP_M_OPTIONS) method = HTTP_M_OTHER;
  return method_names[method];
}

struct slice http_req_header(const struct http_req *req, const char *name) {
  return http_find_header(req->headers, req->nheaders, name);
}

void http_req_peer(const struct http_req *req, char *out, size_t len) {
  if (len) out[0] = '\0';
  if (len) req->ops->peer(req, out, len);
}

const char *http_req_client_cn(const struct http_req *req) {
  return req->ops->client_cn ? req->ops->client_cn(req) : NULL;
}

int http_req_dead_peer_timeout(struct http_req *req, unsigned ms) {
  if (req->aborted) return -EBADF;
  return req->ops->dead_peer_timeout(req, ms);
}

void http_resp_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                     int64_t content_length) {
  assert(!req->resp_started);
  req->resp_started = true;
  if (!req->aborted) req->ops->start(req, status, hdrs, nhdrs, content_length);
}

void http_resp_flush(struct http_req *req) {
  if (!req->aborted) req->ops->flush(req);
}

void http_resp_writev(struct http_req *req, const struct slice *parts, size_t nparts) {
  assert(req->resp_started && !req->resp_ended);
  if (req->aborted) return;
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++)
    len += parts[i].len;
  if (len) req->ops->writev(req, parts, nparts);
}

void http_resp_write(struct http_req *req, const void *data, size_t len) {
  struct slice s = slice_make(data, len);
  http_resp_writev(req, &s, 1);
}

void http_resp_end(struct http_req *req) {
  assert(!req->resp_ended);
  req->resp_ended = true;
  req->ops->end(req);
}

void http_resp_end_trailers(struct http_req *req, const struct http_header *hdrs, int n) {
  assert(req->resp_started && !req->resp_ended);
  if (!req->aborted && req->ops->trailers && n > 0) req->ops->trailers(req, hdrs, n);
  http_resp_end(req);
}

bool http_req_has_trailers(const struct http_req *req) { return req->ops->trailers != NULL; }

void http_resp_send(struct http_req *req, int status, const char *content_type, const void *body, size_t len,
                    const struct http_header *extra, int nextra) {
  struct http_header h[16];
  int n = 0;
  h[n++] = (struct http_header){SLICE_LIT("Content-Type"), slice_cstr(content_type)};
  for (int i = 0; i < nextra && n < 16; i++)
    h[n++] = extra[i];
  http_resp_start(req, status, h, n, (int64_t)len);
  http_resp_write(req, body, len);
  http_resp_end(req);
}

size_t http_resp_queued(const struct http_req *req) { return req->aborted ? 0 : req->ops->queued(req); }

void http__req_abort(struct http_req *req) {
  if (req->resp_ended || req->aborted) return;
  req->aborted = true;
  if (req->abort_cb) req->abort_cb(req);
}

void http__req_drained(struct http_req *req) {
  if (!req->resp_ended && !req->aborted && req->drain_cb) req->drain_cb(req);
}
