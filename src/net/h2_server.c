/* HTTP/2 server sessions on libnghttp2: streams become struct http_req for the server's handler, and their
 * responses go out as DATA within the stream's and the connection's flow-control windows. */
#include "net/h2_server.h"

#include <assert.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/http_server.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2_stream {
  struct h2_session *s;
  struct h2_stream *next, *prev;
  int32_t id;
  struct http_req req;
  size_t header_bytes;
  struct buf body;
  size_t reserved; /* bytes of body counted against the server's budget for large bodies */
  struct buf out;  /* response bytes not yet framed (held by flow control or the transport's queue) */
  size_t out_off;
  int fail_status; /* answer this instead of dispatching (a limit) */
  const char *fail_msg;
  bool dispatched; /* handed to the handler (or answered by us): req is live until http_resp_end */
  bool has_data;   /* the response has a data provider */
  bool deferred;   /* the data provider is paused waiting for bytes */
  bool closed;     /* nghttp2 closed the stream */
  int pinned;      /* a caller up the stack still uses it (on_stream_close, h2_end): not freed now */
  bool above_high;
  nghttp2_nv *trailers; /* sent after the body (h2_trailers); in req.pool */
  size_t ntrailers;
};

struct h2_session {
  struct http_server *srv;
  const struct h2_io *io;
  void *arg;
  nghttp2_session *ng;
  struct h2_stream *streams;
  int nactive;
  bool in_recv, detached, goaway, closing;
  uint64_t rst_window_ms; /* start of the rapid-reset counting window */
  int rst_count;
};

int h2_preface_check(const char *data, size_t len) {
  size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
  if (memcmp(data, PREFACE, n) != 0) return -1;
  return len >= H2_PREFACE_LEN ? 1 : 0;
}

/* ---- streams ---- */

static size_t stream_pending(const struct h2_stream *st) { return st->out.len - st->out_off; }

/* Large request bodies count against the server-wide budget (http_limits.max_buffered_bodies), as on
 * HTTP/1.1: false when this one no longer fits. */
static bool budget_take(struct h2_stream *st, size_t total) {
  struct http_server *srv = st->s->srv;
  if (total <= HTTP_SMALL_BODY || total <= st->reserved) return true;
  size_t more = total - st->reserved;
  if (srv->limits.max_buffered_bodies && srv->buffered_bodies + more > srv->limits.max_buffered_bodies) {
    srv->refused_budget++;
    return false;
  }
  srv->buffered_bodies += more;
  st->reserved = total;
  return true;
}

static void budget_release(struct h2_stream *st) {
  st->s->srv->buffered_bodies -= st->reserved;
  st->reserved = 0;
}

static void stream_free(struct h2_stream *st) {
  struct h2_session *s = st->s;
  if (st->prev)
    st->prev->next = st->next;
  else
    s->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  if (!s->detached && !st->closed) nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
  budget_release(st);
  buf_free(&st->body);
  buf_free(&st->out);
  pool_free(&st->req.pool);
  free(st);
}

/* A stream goes once nghttp2 is done with it and its request (if any) was ended by the handler. */
static void stream_maybe_free(struct h2_stream *st) {
  if (st->pinned) return;
  if ((st->closed || st->s->detached) && (!st->dispatched || st->req.resp_ended)) stream_free(st);
}

/* ---- sending ---- */

/* drain_cb of the requests whose queue fell below the low watermark. A callback may write or end its request,
 * which sends (and may close and free other streams): the stream being visited stays pinned, so its link to
 * the next one is read only after the callback, from a list that is whole again. */
static void check_drains(struct h2_session *s) {
  for (struct h2_stream *st = s->streams, *next; st; st = next) {
    st->pinned++;
    if (st->above_high && stream_pending(st) + s->io->queued(s->arg) < HTTP_WRITE_LOW_WATER) {
      st->above_high = false;
      http__req_drained(&st->req);
    }
    next = st->next;
    st->pinned--;
    stream_maybe_free(st);
  }
}

/* Run nghttp2's writer (never from inside its own callbacks), then close when the session is over. */
static void session_send(struct h2_session *s) {
  if (s->in_recv || s->detached || s->closing) return;
  int rv = nghttp2_session_send(s->ng);
  if (rv != 0 || (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) ||
      (s->goaway && s->nactive == 0 && !nghttp2_session_want_write(s->ng) && !s->streams)) {
    s->closing = true;
    s->io->close(s->arg);
    return;
  }
  check_drains(s);
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *user) {
  struct h2_session *s = user;
  /* The transport's queue is the connection's backpressure: past the high watermark, DATA stays in the
   * streams' buffers (where http_resp_queued sees it) until h2_session_written. */
  if (s->io->queued(s->arg) > HTTP_WRITE_HIGH_WATER) return NGHTTP2_ERR_WOULDBLOCK;
  struct slice part = slice_make((const char *)data, len);
  s->io->write(s->arg, &part, 1);
  return (ssize_t)len;
}

static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user) {
  struct h2_stream *st = source->ptr;
  size_t avail = stream_pending(st), n = avail < length ? avail : length;
  if (n) memcpy(buf, st->out.base + st->out_off, n);
  st->out_off += n;
  if (st->out_off == st->out.len) {
    buf_reset(&st->out);
    if (st->out.cap > 64 * 1024) buf_free(&st->out);
    st->out_off = 0;
  }
  if (stream_pending(st) == 0 && (st->req.resp_ended || st->req.aborted)) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->ntrailers && !st->req.aborted && nghttp2_submit_trailer(ng, id, st->trailers, st->ntrailers) == 0)
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers' HEADERS frame ends the stream */
    return (ssize_t)n;
  }
  if (n == 0) {
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

static void stream_resume(struct h2_stream *st) {
  struct h2_session *s = st->s;
  if (st->deferred && !st->closed && !s->detached) {
    st->deferred = false;
    nghttp2_session_resume_data(s->ng, st->id);
  }
  session_send(s);
}

/* ---- the response API for HTTP/2 streams (net/http_req.h) ---- */

static bool connection_header(struct slice name) {
  return slice_eq_nocase(name, "connection") || slice_eq_nocase(name, "keep-alive") ||
         slice_eq_nocase(name, "transfer-encoding") || slice_eq_nocase(name, "upgrade") ||
         slice_eq_nocase(name, "proxy-connection") || slice_eq_nocase(name, "content-length");
}

static nghttp2_nv make_nv(struct slice name, struct slice value) {
  return (nghttp2_nv){(uint8_t *)name.base, (uint8_t *)value.base, name.len, value.len, NGHTTP2_NV_FLAG_NONE};
}

static void h2_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                     int64_t content_length) {
  struct h2_stream *st = req->impl;
  if (st->closed || st->s->detached) return;
  nghttp2_nv nv[HTTP_MAX_HEADERS + 2];
  size_t n = 0;
  char code[8], len[24];
  snprintf(code, sizeof code, "%d", status);
  nv[n++] = make_nv(SLICE_LIT(":status"), slice_cstr(code));
  for (int i = 0; i < nhdrs && n < HTTP_MAX_HEADERS; i++) {
    if (connection_header(hdrs[i].name)) continue;
    char *lower = pool_strdup(&req->pool, hdrs[i].name); /* HTTP/2 field names are lowercase */
    for (char *p = lower; *p; p++)
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    nv[n++] = make_nv(slice_make(lower, hdrs[i].name.len), hdrs[i].value);
  }
  if (content_length >= 0) {
    snprintf(len, sizeof len, "%lld", (long long)content_length);
    nv[n++] = make_nv(SLICE_LIT("content-length"), slice_cstr(len));
  }
  bool body = content_length != 0 && status != 204 && status != 304 && req->method != HTTP_M_HEAD;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read_cb};
  st->has_data = body;
  nghttp2_submit_response(st->s->ng, st->id, nv, n, body ? &prd : NULL);
}

static void h2_writev(struct http_req *req, const struct slice *parts, size_t nparts) {
  struct h2_stream *st = req->impl;
  if (!st->has_data || st->closed || st->s->detached) return;
  for (size_t i = 0; i < nparts; i++)
    buf_append_slice(&st->out, parts[i]);
  if (stream_pending(st) + st->s->io->queued(st->s->arg) > HTTP_WRITE_HIGH_WATER) st->above_high = true;
  stream_resume(st);
}

static void h2_flush(struct http_req *req) { session_send(((struct h2_stream *)req->impl)->s); }

static size_t h2_queued(const struct http_req *req) {
  const struct h2_stream *st = req->impl;
  if (st->s->detached) return 0;
  return stream_pending(st) + st->s->io->queued(st->s->arg);
}

static void h2_end(struct http_req *req) {
  struct h2_stream *st = req->impl;
  struct h2_session *s = st->s;
  struct http_server *srv = s->srv;
  srv->nactive--;
  s->nactive--;
  budget_release(st);
  if (!req->aborted && !st->closed && !s->detached) {
    if (!req->resp_started)
      nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    st->pinned++; /* sending the end may close the stream */
    stream_resume(st);
    st->pinned--;
  }
  stream_maybe_free(st);
  if (s->nactive == 0 && !s->detached) {
    s->io->activity(s->arg, 0);
    if (s->goaway) session_send(s);
  } else if (s->nactive == 0) {
    s->io->activity(s->arg, 0);
  }
}

static void h2_peer(const struct http_req *req, char *out, size_t len) {
  struct h2_stream *st = req->impl;
  if (!st->s->detached) st->s->io->peer(st->s->arg, out, len);
}

static int h2_dead_peer_timeout(struct http_req *req, unsigned ms) {
  struct h2_stream *st = req->impl;
  return st->s->detached ? -EBADF : st->s->io->dead_peer_timeout(st->s->arg, ms);
}

static const char *h2_client_cn(const struct http_req *req) {
  struct h2_stream *st = req->impl;
  return st->s->detached ? NULL : st->s->io->client_cn(st->s->arg);
}

/* Trailers go as a HEADERS frame after the body (data_read_cb submits them at EOF): lowercase names, copied
 * into the request's pool, which lives until the stream is freed. */
static void h2_trailers(struct http_req *req, const struct http_header *hdrs, int n) {
  struct h2_stream *st = req->impl;
  if (!st->has_data || st->closed || st->s->detached) return;
  st->trailers = pool_alloc(&req->pool, (size_t)n * sizeof *st->trailers);
  st->ntrailers = 0;
  for (int i = 0; i < n; i++) {
    if (connection_header(hdrs[i].name)) continue;
    char *lower = pool_strdup(&req->pool, hdrs[i].name), *value = pool_strdup(&req->pool, hdrs[i].value);
    for (char *p = lower; *p; p++)
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    st->trailers[st->ntrailers++] =
        make_nv(slice_make(lower, hdrs[i].name.len), slice_make(value, hdrs[i].value.len));
  }
}

static const struct http_resp_ops h2_ops = {
    .trailers = h2_trailers,
    .start = h2_start,
    .writev = h2_writev,
    .flush = h2_flush,
    .end = h2_end,
    .queued = h2_queued,
    .peer = h2_peer,
    .dead_peer_timeout = h2_dead_peer_timeout,
    .client_cn = h2_client_cn,
};

/* ---- receiving ---- */

static void stream_dispatch(struct h2_stream *st) {
  struct h2_session *s = st->s;
  struct http_req *r = &st->req;
  st->dispatched = true;
  r->body = buf_slice(&st->body);
  r->start_ns = clock_mono_ns();
  const char *q = r->url.len ? memchr(r->url.base, '?', r->url.len) : NULL;
  r->path = q ? slice_make(r->url.base, (size_t)(q - r->url.base)) : r->url;
  r->query = q ? slice_make(q + 1, r->url.len - r->path.len - 1) : slice_make(NULL, 0);
  s->srv->nactive++;
  s->srv->h2_streams++;
  if (s->nactive++ == 0) s->io->activity(s->arg, 1);
  if (st->fail_status) {
    struct buf b = {0};
    http_error_json(&b, st->fail_msg, st->fail_status >= 500 ? "server_error" : "invalid_request_error",
                    NULL);
    struct http_header ra = {SLICE_LIT("Retry-After"), SLICE_LIT("1")};
    http_resp_send(r, st->fail_status, "application/json", b.base, b.len, &ra, st->fail_status == 503);
    buf_free(&b);
    return;
  }
  s->srv->handler(r, s->srv->arg);
}

static void stream_fail(struct h2_stream *st, int status, const char *msg) {
  if (!st->fail_status) st->fail_status = status, st->fail_msg = msg;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
  struct h2_session *s = user;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct h2_stream *st = xcalloc(1, sizeof *st);
  st->s = s;
  st->id = frame->hd.stream_id;
  st->req.server = s->srv;
  st->req.ops = &h2_ops;
  st->req.impl = st;
  st->req.version = 20;
  st->req.keep_alive = true;
  st->next = s->streams;
  if (s->streams) s->streams->prev = st;
  s->streams = st;
  nghttp2_session_set_stream_user_data(ng, st->id, st);
  return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
  struct h2_session *s = user;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
  if (!st || st->fail_status) return 0;
  struct http_req *r = &st->req;
  struct slice n = slice_make((const char *)name, namelen), v = slice_make((const char *)value, valuelen);
  st->header_bytes += namelen + valuelen + 4;
  if (st->header_bytes > s->srv->limits.max_header_bytes) {
    stream_fail(st, 431, "request headers are too large");
    return 0;
  }
  if (slice_eqz(n, ":method")) {
    r->method = http_method_parse(v);
    return 0;
  }
  if (slice_eqz(n, ":path")) {
    char *p = pool_strdup(&r->pool, v);
    r->url = slice_make(p, valuelen);
    return 0;
  }
  if (namelen && name[0] == ':' && !slice_eqz(n, ":authority")) return 0; /* :scheme */
  if (r->nheaders >= s->srv->limits.max_headers) {
    stream_fail(st, 431, "too many request headers");
    return 0;
  }
  struct slice hn = slice_eqz(n, ":authority") ? SLICE_LIT("host") : n;
  char *nc = pool_strdup(&r->pool, hn), *vc = pool_strdup(&r->pool, v);
  r->headers[r->nheaders++] = (struct http_header){slice_make(nc, hn.len), slice_make(vc, valuelen)};
  return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *user) {
  struct h2_session *s = user;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
  if (!st || st->fail_status || st->dispatched) return 0;
  if (st->body.len + len > s->srv->limits.max_body) {
    stream_fail(st, 413, "request body is too large");
  } else if (!budget_take(st, st->body.len + len)) {
    stream_fail(st, 503, "the server is receiving too many large request bodies at once; retry shortly");
  }
  if (st->fail_status) {
    buf_free(&st->body);
    budget_release(st);
    return 0;
  }
  buf_append(&st->body, data, len);
  return 0;
}

/* CVE-2023-44487: a client that opens and resets streams faster than H2_RST_MAX per window gets GOAWAY. */
static void count_reset(struct h2_session *s) {
  uint64_t now = clock_mono_ns() / 1000000;
  if (now - s->rst_window_ms > H2_RST_WINDOW_MS) s->rst_window_ms = now, s->rst_count = 0;
  if (++s->rst_count != H2_RST_MAX + 1) return;
  s->srv->refused_rapid_reset++;
  char peer[64];
  s->io->peer(s->arg, peer, sizeof peer);
  log_warn("HTTP/2 client reset too many streams: GOAWAY", "peer=%s resets=%d window_ms=%d",
           peer[0] ? peer : "-", s->rst_count, H2_RST_WINDOW_MS);
  nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
  struct h2_session *s = user;
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    count_reset(s);
    return 0;
  }
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
  if (!st || st->dispatched) return 0;
  if (!st->req.url.len) stream_fail(st, 400, "malformed HTTP/2 request: no :path");
  stream_dispatch(st);
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user) {
  struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
  if (!st) return 0;
  st->closed = true;
  st->pinned++;
  /* A stream the client reset before its response ended: the request is aborted, as by a disconnect. */
  if (st->dispatched) http__req_abort(&st->req);
  st->pinned--;
  stream_maybe_free(st);
  return 0;
}

/* ---- the session ---- */

struct h2_session *h2_session_new(struct http_server *srv, const struct h2_io *io, void *arg) {
  struct h2_session *s = xcalloc(1, sizeof *s);
  s->srv = srv;
  s->io = io;
  s->arg = arg;
  s->rst_window_ms = clock_mono_ns() / 1000000;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *opt;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) abort();
  nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  int rv = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_option_del(opt);
  if (rv != 0) abort(); /* only NGHTTP2_ERR_NOMEM */
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->limits.max_header_bytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
  };
  nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
  srv->h2_conns++;
  session_send(s);
  return s;
}

int h2_session_feed(struct h2_session *h, const char *data, size_t len) {
  if (h->detached || h->closing) return -1;
  h->in_recv = true;
  ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)data, len);
  h->in_recv = false;
  if (rv < 0) {
    /* A connection error nghttp2 did not answer itself (a bad preface): GOAWAY and close. */
    nghttp2_session_terminate_session(h->ng, NGHTTP2_PROTOCOL_ERROR);
  }
  session_send(h);
  return h->closing ? -1 : 0;
}

void h2_session_written(struct h2_session *h) { session_send(h); }

void h2_session_shutdown(struct h2_session *h) {
  if (h->detached || h->closing || h->goaway) return;
  h->goaway = true;
  nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                        NGHTTP2_NO_ERROR, NULL, 0);
  session_send(h);
}

void h2_session_detach(struct h2_session *h) {
  if (h->detached) return;
  h->detached = true;
  for (struct h2_stream *st = h->streams, *next; st; st = next) {
    next = st->next;
    st->pinned++;
    if (st->dispatched) http__req_abort(&st->req);
    st->pinned--;
  }
  for (struct h2_stream *st = h->streams, *next; st; st = next) {
    next = st->next;
    stream_maybe_free(st);
  }
}

int h2_session_active(const struct h2_session *h) { return h->nactive; }

void h2_session_free(struct h2_session *h) {
  assert(h->nactive == 0);
  h->detached = true;
  while (h->streams)
    stream_free(h->streams);
  nghttp2_session_del(h->ng);
  free(h);
}
