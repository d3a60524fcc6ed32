/* Internal subrequests: the response API's ops writing into callbacks. */
#include "net/http_subreq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

struct subreq {
  struct http_req req; /* first: ops get &req */
  struct http_req *parent;
  const struct http_subreq_cbs *cbs;
  void *arg;
  int status;
  struct buf body;
};

static void s_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                    int64_t len) {
  ((struct subreq *)req)->status = status;
}

static void s_writev(struct http_req *req, const struct slice *parts, size_t nparts) {
  struct subreq *s = (struct subreq *)req;
  for (size_t i = 0; i < nparts; i++) {
    if (s->cbs->data)
      s->cbs->data(s->arg, parts[i].base, parts[i].len);
    else
      buf_append_slice(&s->body, parts[i]);
  }
}

static void s_flush(struct http_req *req) {}

static void s_end(struct http_req *req) {
  struct subreq *s = (struct subreq *)req;
  s->cbs->done(s->arg, s->status, buf_slice(&s->body));
  buf_free(&s->body);
  pool_free(&s->req.pool);
  free(s);
}

static size_t s_queued(const struct http_req *req) {
  const struct subreq *s = (const struct subreq *)req;
  return s->parent ? http_resp_queued(s->parent) : 0;
}

static void s_peer(const struct http_req *req, char *out, size_t len) {
  const struct subreq *s = (const struct subreq *)req;
  if (s->parent) http_req_peer(s->parent, out, len);
}

static int s_dead_peer_timeout(struct http_req *req, unsigned ms) {
  struct subreq *s = (struct subreq *)req;
  return s->parent ? http_req_dead_peer_timeout(s->parent, ms) : -EBADF;
}

static const struct http_resp_ops sub_ops = {
    .start = s_start,
    .writev = s_writev,
    .flush = s_flush,
    .end = s_end,
    .queued = s_queued,
    .peer = s_peer,
    .dead_peer_timeout = s_dead_peer_timeout,
};

struct http_req *http_subreq_new(struct http_req *parent, int method, const char *path, struct slice body,
                                 const struct http_subreq_cbs *cbs, void *arg) {
  struct subreq *s = xcalloc(1, sizeof *s);
  struct http_req *r = &s->req;
  s->parent = parent;
  s->cbs = cbs;
  s->arg = arg;
  r->server = parent->server;
  r->method = method;
  r->version = parent->version;
  r->keep_alive = true;
  r->start_ns = parent->start_ns;
  r->ops = &sub_ops;
  r->impl = s;
  char *url = pool_strdup(&r->pool, slice_cstr(path));
  r->url = slice_cstr(url);
  const char *q = strchr(url, '?');
  r->path = q ? slice_make(url, (size_t)(q - url)) : r->url;
  r->query = q ? slice_cstr(q + 1) : slice_make(NULL, 0);
  if (body.len) {
    char *b = pool_alloc(&r->pool, body.len);
    memcpy(b, body.base, body.len);
    r->body = slice_make(b, body.len);
  }
  struct slice auth = http_req_header(parent, "authorization");
  if (auth.base) {
    char *v = pool_strdup(&r->pool, auth);
    r->headers[r->nheaders++] = (struct http_header){SLICE_LIT("authorization"), slice_make(v, auth.len)};
  }
  return r;
}

void http_subreq_abort(struct http_req *sub) { http__req_abort(sub); }

void http_subreq_detach(struct http_req *sub) { ((struct subreq *)sub)->parent = NULL; }
