/* HTTP/1.1 server connections: read, parse (http_parser), dispatch one request at a time, write; a connection
 * that opens with the HTTP/2 preface is handed to net/h2_server.c. */
#include "net/http_server.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/h2_server.h"
#include "net/http_server_int.h"
#include "net/tls.h"

#define READ_CHUNK (16 * 1024)
/* Bytes a client may pipeline while a request is being handled before we stop reading. */
#define PIPELINE_MAX (1024 * 1024)
/* After a request, connection buffers holding more than this go back to the allocator. */
#define KEEP_IDLE (64 * 1024)
/* A client that half-closed while its request runs is probed at once, checked for the reset after
 * EOF_PROBE_FIRST_MS (a loopback or LAN round trip), then every EOF_PROBE_MS. */
#define EOF_PROBE_FIRST_MS 10
#define EOF_PROBE_MS 200
/* At most one "near the descriptor limit" log line per this many ms. */
#define FD_LOG_EVERY_MS 10000

struct write_req {
  uv_write_t w;
  struct http_conn *conn;
  size_t len;
  char data[];
};

void http_limits_default(struct http_limits *l) {
  l->max_header_bytes = 16 * 1024;
  l->max_headers = HTTP_MAX_HEADERS;
  l->max_body = 8 * 1024 * 1024;
  l->header_timeout_ms = 10000;
  l->body_timeout_ms = 30000;
  l->idle_timeout_ms = 60000;
  l->max_buffered_bodies = 64 * 1024 * 1024;
  l->fd_reserve = 64;
}

void http_server_init(struct http_server *s, uv_loop_t *loop, const struct http_limits *lim, http_handler_cb handler,
                      void *arg) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  if (lim)
    s->limits = *lim;
  else
    http_limits_default(&s->limits);
  if (s->limits.max_headers > HTTP_MAX_HEADERS || s->limits.max_headers <= 0) s->limits.max_headers = HTTP_MAX_HEADERS;
  s->handler = handler;
  s->arg = arg;
}

/* ---- connection lifecycle ---- */

static void conn_process(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void conn_read_start(struct http_conn *c);
static void conn_flush(struct http_conn *c);

static void dirty_unlink(struct http_conn *c) {
  if (!c->dirty) return;
  if (c->dirty_prev)
    c->dirty_prev->dirty_next = c->dirty_next;
  else
    c->srv->dirty = c->dirty_next;
  if (c->dirty_next) c->dirty_next->dirty_prev = c->dirty_prev;
  c->dirty = false;
  c->dirty_next = c->dirty_prev = NULL;
}

static void drained(struct http_server *s) {
  if (s->drained_cb) {
    void (*cb)(struct http_server *) = s->drained_cb;
    s->drained_cb = NULL;
    cb(s);
  }
}

static void flushers_closed_cb(uv_handle_t *h) { drained(h->data); }

/* The last connection and the listener are gone: close the flush handles, then tell the owner (once). */
static void server_finish(struct http_server *s) {
  if (s->finished) return;
  s->finished = true;
  http_server_set_tls(s, NULL);
  if (s->flushers_started) {
    s->flushers_started = false;
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, flushers_closed_cb);
  } else {
    drained(s);
  }
}

static void conn_free_if_done(struct http_conn *c) {
  if (!c->closed || c->req_active || (c->h2 && h2_session_active(c->h2))) return;
  struct http_server *s = c->srv;
  http__budget_release(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  dirty_unlink(c);
  buf_free(&c->out);
  buf_free(&c->in);
  buf_free(&c->pending);
  buf_free(&c->body);
  buf_free(&c->head);
  pool_free(&c->req.pool);
  if (c->h2) h2_session_free(c->h2);
  tls_conn_free(c->tls);
  free(c);
  if (s->draining && s->nconns == 0 && !s->listening) server_finish(s);
}

static void handle_closed_cb(uv_handle_t *h) {
  struct http_conn *c = h->data;
  if (--c->handles_open == 0) {
    c->closed = true;
    conn_free_if_done(c);
  }
}

static void conn_close(struct http_conn *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->req_active) http__req_abort(&c->req);
  if (c->h2) h2_session_detach(c->h2);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
  uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct http_conn *c = req->data;
  free(req);
  conn_close(c);
}

/* Close after every queued write has been flushed. */
static void conn_close_after_writes(struct http_conn *c) {
  if (c->closing || c->shutting) return;
  conn_flush(c);
  if (c->tls && tls_conn_close_notify(c->tls)) conn_flush(c);
  if (c->closing || c->shutting) return;
  uv_shutdown_t *sr = xmalloc(sizeof *sr);
  sr->data = c;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp), c->reading = false;
  if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(sr);
    conn_close(c);
    return;
  }
  c->shutting = true;
}

static void timer_cb(uv_timer_t *t);

/* The uv timer is only ever moved earlier: a later deadline while it will fire sooner is a store, and
 * timer_cb re-arms for what is left. Every request sets three or four deadlines (headers, body, none while it
 * runs, idle); this keeps them off the timer heap. */
void http__conn_arm_timer(struct http_conn *c, uint32_t ms) {
  if (c->closing || c->shutting || c->write_failed) return;
  if (ms == 0) {
    c->deadline = 0;
    return;

  }
  c->deadline = uv_now(c->srv->loop) + ms;
  if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms) return;
  uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* ---- writing ---- */

static void write_cb(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  struct http_conn *c = wr->conn;
  c->write_queued -= wr->len;
  free(wr);
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->h2 && !c->closing && !c->shutting) h2_session_written(c->h2);
  if (c->above_high && c->write_queued < HTTP_WRITE_LOW_WATER) {
    c->above_high = false;
    if (c->req_active) http__req_drained(&c->req);
  }
}

/* Stop writing after a failed write; the close happens on the next loop turn so that abort_cb never runs
 * re-entrantly inside the caller's own callbacks. */
static void conn_write_failed(struct http_conn *c) {
  c->write_failed = true;
  c->shutting = true;
  buf_reset(&c->out);
  uv_timer_start(&c->timer, timer_cb, 0, 0);
}

/* Write what was gathered: try a direct write(2) first (no write request, no epoll change when the socket
 * takes it all), and queue only the rest. On TLS, what goes out is the gathered bytes sealed into records. */
static void conn_flush(struct http_conn *c) {
  dirty_unlink(c);
  if (c->closing || c->shutting) return;
  struct buf *o = &c->out;
  if (c->tls) {
    if (c->out.len && tls_conn_seal(c->tls, &c->out) != 0) {
      conn_write_failed(c);
      return;
    }
    o = tls_conn_output(c->tls);
  }
  if (o->len == 0) return;
  uv_buf_t ub = uv_buf_init(o->base, (unsigned)o->len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
  if (n < 0 && n != UV_EAGAIN) {
    conn_write_failed(c);
    return;
  }
  size_t done = n > 0 ? (size_t)n : 0, rest = o->len - done;
  if (rest) {
    struct write_req *wr = xmalloc(sizeof *wr + rest);
    wr->conn = c;
    wr->len = rest;
    memcpy(wr->data, o->base + done, rest);
    ub = uv_buf_init(wr->data, (unsigned)rest);
    c->write_queued += rest;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, write_cb) != 0) {
      c->write_queued -= rest;
      free(wr);
      conn_write_failed(c);
      return;
    }
  }
  if (o->cap > 64 * 1024) buf_free(o); /* do not keep a large buffer on an idle connection */
  buf_reset(o);
  if (c->h2) h2_session_written(c->h2); /* room again: what flow control allows goes out */
  if (c->above_high && c->write_queued < HTTP_WRITE_LOW_WATER) {
    c->above_high = false;
    if (c->req_active) http__req_drained(&c->req);
  }
}

static void flush_all(struct http_server *s) {
  while (s->dirty) conn_flush(s->dirty);
}

static void prepare_cb(uv_prepare_t *h) { flush_all(h->data); }
static void check_cb(uv_check_t *h) { flush_all(h->data); }

/* Put c on the list flushed at the end of this loop turn once it has output. */
static void conn_mark_dirty(struct http_conn *c) {
  if (!c->dirty && c->out.len) {
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = c->srv->dirty;
    if (c->srv->dirty) c->srv->dirty->dirty_prev = c;
    c->srv->dirty = c;
  }
  if (c->write_queued + c->out.len > HTTP_WRITE_HIGH_WATER) c->above_high = true;
}

/* Gather parts for this loop turn's write (copied: the caller keeps its memory). */
static void conn_writev(struct http_conn *c, const struct slice *parts, int n) {
  if (c->closing || c->shutting) return;
  for (int i = 0; i < n; i++)
    buf_append_slice(&c->out, parts[i]);
  conn_mark_dirty(c);
}

void http__conn_write(struct http_conn *c, const void *a, size_t alen, const void *b, size_t blen,
                      const void *d, size_t dlen) {
  struct slice parts[3] = {{a, alen}, {b, blen}, {d, dlen}};
  conn_writev(c, parts, 3);
}

/* Answer an error the server itself detected (parse errors, limits, timeouts, overload) and close. */
static void conn_fail(struct http_conn *c, int status, const char *msg) {
  struct buf body = {0}, head = {0};
  http_error_json(&body, msg, status >= 500 ? "server_error" : "invalid_request_error", NULL);
  buf_printf(&head,
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%sConnection: "
             "close\r\n\r\n",
             status, http_status_text(status), body.len, status == 503 ? "Retry-After: 1\r\n" : "");
  http__conn_write(c, head.base, head.len, body.base, body.len, NULL, 0);
  buf_free(&body);
  buf_free(&head);
  conn_close_after_writes(c);
}

/* ---- the response API for HTTP/1.1 (net/http_req.h) ---- */

static void h1_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                     int64_t content_length) {
  struct http_conn *c = req->impl;
  struct buf *h = &c->head;
  buf_reset(h);
  buf_puts(h, "HTTP/1.1 ");
  buf_append_u64(h, (uint64_t)status);
  buf_puts(h, " ");
  buf_puts(h, http_status_text(status));
  buf_puts(h, "\r\n");
  for (int i = 0; i < nhdrs; i++) {
    buf_append_slice(h, hdrs[i].name);
    buf_append(h, ": ", 2);
    buf_append_slice(h, hdrs[i].value);
    buf_append(h, "\r\n", 2);
  }
  if (c->srv->draining) req->keep_alive = false;
  if (content_length >= 0) {
    buf_puts(h, "Content-Length: ");
    buf_append_u64(h, (uint64_t)content_length);
    buf_append(h, "\r\n", 2);
  } else if (req->version == 10) {
    req->keep_alive = false; /* HTTP/1.0 has no chunked encoding: the body ends at close */
  } else {
    c->resp_chunked = true;
    buf_puts(h, "Transfer-Encoding: chunked\r\n");
  }
  if (!req->keep_alive) buf_puts(h, "Connection: close\r\n");
  buf_append(h, "\r\n", 2);
}

/* The held head, then the parts as one chunk when chunked. */
static void h1_writev(struct http_req *req, const struct slice *parts, size_t nparts) {
  struct http_conn *c = req->impl;
  if (c->closing || c->shutting) return;
  if (c->head.len) buf_append_slice(&c->out, buf_slice(&c->head));
  buf_reset(&c->head);
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++)
    len += parts[i].len;
  if (c->resp_chunked) {
    char hex[24];
    int n = snprintf(hex, sizeof hex, "%zx\r\n", len);
    buf_append(&c->out, hex, (size_t)n);
  }
  buf_reserve(&c->out, len + 2);
  for (size_t i = 0; i < nparts; i++)
    buf_append_slice(&c->out, parts[i]);
  if (c->resp_chunked) buf_append(&c->out, "\r\n", 2);
  conn_mark_dirty(c);
}

static void h1_flush(struct http_req *req) {
  struct http_conn *c = req->impl;
  if (!c->head.len) return;
  struct slice part = buf_slice(&c->head);
  conn_writev(c, &part, 1);
  buf_reset(&c->head);
}

static size_t h1_queued(const struct http_req *req) {
  const struct http_conn *c = req->impl;
  return c->write_queued + c->out.len;
}

static void h1_end(struct http_req *req) {
  struct http_conn *c = req->impl;
  struct http_server *s = req->server;
  if (!req->aborted) {
    struct slice parts[2] = {buf_slice(&c->head), SLICE_LIT("0\r\n\r\n")};
    conn_writev(c, parts, c->resp_chunked ? 2 : 1);
    buf_reset(&c->head);
  }
  c->req_active = false;
  s->nactive--;
  /* Release the message: drop its bytes, then take in what was pipelined meanwhile. Large buffers go back to
   * the allocator, so an idle keep-alive connection holds little whatever its last request was. */
  buf_consume(&c->in, c->parsed);
  c->parsed = 0;
  if (c->pending.len) {
    buf_append(&c->in, c->pending.base, c->pending.len);
    buf_reset(&c->pending);
  }
  buf_shrink(&c->in, KEEP_IDLE);
  buf_shrink(&c->pending, 0);
  buf_reset(&c->body);
  buf_shrink(&c->body, KEEP_IDLE);
  http__budget_release(c);
  if (c->closing || c->shutting || req->aborted) {
    conn_free_if_done(c);
    return;
  }
  if (!req->keep_alive) {
    conn_close_after_writes(c);
    return;
  }
  http__conn_arm_timer(c, s->limits.idle_timeout_ms);
  if (!c->in_dispatch) conn_process(c);
}

static int conn_dead_peer_timeout(struct http_conn *c, unsigned ms) {
  uv_os_fd_t fd;
  if (c->closing || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return UV_EBADF;
  int r = uv_tcp_keepalive(&c->tcp, 1, ms >= 3000 ? ms / 3000 : 1);
  if (r != 0) return r;
  unsigned int to = ms;
  if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &to, sizeof to) != 0) return -errno;
  return 0;
}

static int h1_dead_peer_timeout(struct http_req *req, unsigned ms) {
  return conn_dead_peer_timeout(req->impl, ms);
}

static void h1_peer(const struct http_req *req, char *out, size_t len) {
  const struct http_conn *c = req->impl;
  http__conn_peer(c, out, len);
}

static const char *h1_client_cn(const struct http_req *req) { return http__conn_client_cn(req->impl); }

static const struct http_resp_ops h1_ops = {
    .start = h1_start,
    .writev = h1_writev,
    .flush = h1_flush,
    .end = h1_end,
    .queued = h1_queued,
    .peer = h1_peer,
    .dead_peer_timeout = h1_dead_peer_timeout,
    .client_cn = h1_client_cn,
};

/* ---- dispatch ---- */

static void dispatch(struct http_conn *c) {
  struct http_server *s = c->srv;
  struct http_req *r = &c->req;
  struct mem_pool pool = r->pool;
  memset(r, 0, sizeof *r);
  r->pool = pool;
  pool_clear(&r->pool); /* the previous request's */
  r->server = s;
  r->ops = &h1_ops;
  r->impl = c;
  c->resp_chunked = false;
  r->method = http__method_id(c->parser.method);
  r->version = c->parser.http_minor == 0 ? 10 : 11;
  r->url = slice_make(c->in.base + c->url_off, c->url_len);
  const char *q = memchr(r->url.base, '?', r->url.len);
  r->path = q ? slice_make(r->url.base, (size_t)(q - r->url.base)) : r->url;
  r->query = q ? slice_make(q + 1, r->url.len - r->path.len - 1) : slice_make(NULL, 0);
  r->nheaders = c->nhdr;
  for (int i = 0; i < c->nhdr; i++) {
    r->headers[i].name = slice_make(c->in.base + c->hdr[i].no, c->hdr[i].nl);
    r->headers[i].value = slice_trim(slice_make(c->in.base + c->hdr[i].vo, c->hdr[i].vl));
  }
  r->body = c->body_copied ? buf_slice(&c->body) : slice_make(c->in.base + c->body_off, c->body_len);
  r->keep_alive = http_should_keep_alive(&c->parser) && !s->draining;
  r->start_ns = clock_mono_ns();
  c->req_active = true;
  s->nactive++;
  http__conn_arm_timer(c, 0);
  s->handler(r, s->arg);
}

/* Parse what has arrived and dispatch complete requests, one at a time. */
static void conn_process(struct http_conn *c) {
  c->in_dispatch = true;
  while (!c->req_active && !c->closing && !c->shutting && c->parsed < c->in.len) {
    size_t avail = c->in.len - c->parsed;
    size_t n = http_parser_execute(&c->parser, &http__parser_settings, c->in.base + c->parsed, avail);
    c->parsed += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
      http_parser_pause(&c->parser, 0);
      dispatch(c);
      continue;
    }
    if (e != HPE_OK) {
      if (c->fail_status)
        conn_fail(c, c->fail_status, c->fail_msg);
      else {
        char msg[160];
        snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(e));
        conn_fail(c, 400, msg);
      }
      break;
    }
    if (n < avail) break; /* e.g. upgrade: not supported, stop */
  }
  c->in_dispatch = false;
  if (c->closing || c->shutting || c->req_active) return;
  /* The client half-closed and everything it sent is answered (or cannot complete): close. */
  if (c->peer_eof) {
    conn_close_after_writes(c);
    return;
  }
  /* Resume reading if we had paused for a full pipeline. */
  if (!c->reading) conn_read_start(c);
}

/* peer_gone tells whether the kernel saw the client reset the connection (after our probe or a write). */
static bool peer_gone(struct http_conn *c) {
  uv_os_fd_t fd;
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return true;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return true;
  return ti.tcpi_state == TCP_CLOSE;
}

/* A client's EOF while its request runs is a half-close (answer it) or a full close (abort it, and the
 * upstream with it, at once): the wire is the same. An HTTP/1.1 client must accept an interim 100 Continue,
 * which a closed socket answers with a reset: send one and watch for the reset until the response ends.
 * (A response already under way draws the reset with its own bytes; HTTP/1.0 clients get no 1xx.) */
static void eof_probe(struct http_conn *c) {
  if (!c->req_active || c->req.resp_ended || c->closing || c->shutting) return;
  if (peer_gone(c)) {
    conn_close(c);
    return;
  }
  uint64_t next = EOF_PROBE_MS;
  if (!c->probed && !c->req.resp_started && c->parser.http_major == 1 && c->parser.http_minor == 1) {
    c->probed = true;
    next = EOF_PROBE_FIRST_MS;
    http__conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
    conn_flush(c);
  }
  uv_timer_start(&c->timer, timer_cb, next, 0);
}

static void timer_cb(uv_timer_t *t) {
  struct http_conn *c = t->data;
  if (c->write_failed) {
    conn_close(c);
    return;
  }
  if (c->deadline == 0) { /* disarmed since it was started */
    if (c->peer_eof) eof_probe(c);
    return;
  }
  uint64_t now = uv_now(c->srv->loop);
  if (now < c->deadline) { /* pushed back since it was started */
    uv_timer_start(&c->timer, timer_cb, c->deadline - now, 0);
    return;
  }
  c->deadline = 0;
  if (c->h2) { /* idle: no request open for the idle timeout */
    if (!h2_session_active(c->h2)) {
      h2_session_shutdown(c->h2);
      conn_close_after_writes(c);
    }
    return;
  }
  if (c->req_active) {
    if (c->peer_eof) eof_probe(c);
    return;
  }
  if (c->in_message) {
    conn_fail(c, 408, c->headers_done ? "timed out reading the request body" : "timed out reading the request headers");
  } else {
    conn_close(c); /* idle keep-alive connection */
  }
}

/* ---- HTTP/2 on this connection (net/h2_server.h) ---- */

static void h2io_write(void *arg, const struct slice *parts, size_t nparts) {
  conn_writev(arg, parts, (int)nparts);
}

static size_t h2io_queued(void *arg) {
  struct http_conn *c = arg;
  return c->write_queued + c->out.len;
}

static void h2io_close(void *arg) { conn_close_after_writes(arg); }

static void h2io_activity(void *arg, int nactive) {
  struct http_conn *c = arg;
  if (c->closing) {
    conn_free_if_done(c);
  } else if (nactive) {
    http__conn_arm_timer(c, 0);
  } else if (c->srv->draining) {
    h2_session_shutdown(c->h2); /* it closes once its streams are done (maybe from inside its own input) */
  } else {
    http__conn_arm_timer(c, c->srv->limits.idle_timeout_ms);
  }
}

static void h2io_peer(void *arg, char *out, size_t len) { http__conn_peer(arg, out, len); }

static int h2io_dead_peer_timeout(void *arg, unsigned ms) { return conn_dead_peer_timeout(arg, ms); }

static const char *h2io_client_cn(void *arg) { return http__conn_client_cn(arg); }

static const struct h2_io conn_h2_io = {
    .write = h2io_write,
    .queued = h2io_queued,
    .close = h2io_close,
    .activity = h2io_activity,
    .peer = h2io_peer,
    .dead_peer_timeout = h2io_dead_peer_timeout,
    .client_cn = h2io_client_cn,
};

/* The first bytes of a connection choose its protocol: the HTTP/2 client preface (h2c with prior knowledge),
 * or HTTP/1.x. Returns true when HTTP/2 took the bytes in c->in (or they may still become its preface). */
static bool conn_sniff(struct http_conn *c) {
  if (!c->h2) {
    int pc = h2_preface_check(c->in.base, c->in.len);
    if (pc < 0) {
      c->h1 = true;
      return false;
    }
    if (pc == 0) return true;
    c->h2 = h2_session_new(c->srv, &conn_h2_io, c);
  }
  h2_session_feed(c->h2, c->in.base, c->in.len); /* on an error it has asked to close */
  buf_reset(&c->in);
  buf_shrink(&c->in, KEEP_IDLE);
  return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  struct http_conn *c = h->data;
  if (c->tls) {
    *out = uv_buf_init(c->srv->tls_rbuf, HTTP_TLS_READ); /* ciphertext: decrypted in read_cb */
    return;
  }
  struct buf *b = c->req_active ? &c->pending : &c->in;
  buf_reserve(b, READ_CHUNK);
  *out = uv_buf_init(b->base + b->len, READ_CHUNK);
}

/* A half-close ends what the client sends, not what it reads: answer the requests it completed. HTTP/2 clients
 * do not half-close: the connection is over. */
static void conn_eof(struct http_conn *c) {
  if (c->h2) {
    conn_close(c);
    return;
  }
  c->peer_eof = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
  if (c->req_active && c->req.eof_aborts)
    conn_close(c);
  else if (c->req_active)
    eof_probe(c);
  else
    conn_process(c);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *ub) {
  struct http_conn *c = st->data;
  if (nread == UV_EOF) {
    conn_eof(c);
    return;
  }
  if (nread < 0) {
    /* An error: the client is gone, which aborts its request. */
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  struct buf *b = c->req_active ? &c->pending : &c->in;
  if (c->tls) {
    int r = http__tls_input(c, ub->base, (size_t)nread, b);
    if (tls_conn_output(c->tls)->len) conn_flush(c); /* handshake, tickets, alerts, a refusal */
    if (r == TLS_FAILED) conn_close_after_writes(c);
    if (r == TLS_PEER_CLOSED) conn_eof(c);
    if (r != 0) return;
  } else {
    b->len += (size_t)nread;
    b->base[b->len] = '\0';
  }
  if (c->req_active) {
    if (c->pending.len > PIPELINE_MAX) uv_read_stop(st), c->reading = false;
    return;
  }
  if (!c->h1 && conn_sniff(c)) return;
  size_t cap = c->srv->limits.max_header_bytes + c->srv->limits.max_body + READ_CHUNK * 2;
  if (c->in.len > cap) {
    conn_fail(c, 413, "request is too large");
    return;
  }
  conn_process(c);
}

static void conn_read_start(struct http_conn *c) {
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->reading = true;
}

/* Descriptors are allocated lowest-first, so an accepted descriptor numbered at or past limit - reserve means
 * fewer than `reserve` are left: answer 503 (the request is not read), log at most once per FD_LOG_EVERY_MS,
 * and close. Returns true when c was refused. */
static bool near_fd_limit(struct http_conn *c) {
  struct http_server *s = c->srv;
  uv_os_fd_t fd;
  uint64_t reserve = s->limits.fd_reserve > 0 ? (uint64_t)s->limits.fd_reserve : 0;
  if (s->fd_limit == 0 || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return false;
  if (reserve > s->fd_limit / 4) reserve = s->fd_limit / 4;
  if ((uint64_t)fd + reserve < s->fd_limit) return false;
  s->refused_fds++;
  uint64_t now = uv_now(s->loop);
  if (s->fd_warned_ms == 0 || now - s->fd_warned_ms >= FD_LOG_EVERY_MS) {
    s->fd_warned_ms = now;
    log_warn("open descriptors near the limit: new connections get 503",
             "fd=%d limit=%llu reserve=%llu conns=%d refused=%llu", (int)fd, (unsigned long long)s->fd_limit,
             (unsigned long long)reserve, s->nconns, (unsigned long long)s->refused_fds);
  }
  if (s->tls) { /* no answer before a handshake: close */
    conn_close(c);
    return true;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_fail(c, 503, "the server has too many open connections; retry shortly");
  return true;
}

static void accept_cb(uv_stream_t *ls, int status) {
  struct http_server *s = ls->data;
  if (status < 0) {
    log_warn("accept failed", "err=\"%s\"", uv_strerror(status));
    return;
  }
  struct http_conn *c = xcalloc(1, sizeof *c);
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->handles_open = 2;
  c->tcp.data = c->timer.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (near_fd_limit(c)) return;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  if (s->tls) c->tls = tls_conn_new(s->tls, true); /* the handshake gets the head's time */
  http__conn_arm_timer(c, c->tls ? s->limits.header_timeout_ms : s->limits.idle_timeout_ms);
  conn_read_start(c);
}

void http__conn_peer(const struct http_conn *c, char *out, size_t len) {
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (len) out[0] = '\0';
  if (!len || uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0) return;
  if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, out, len);
  else
    uv_ip4_name((struct sockaddr_in *)&ss, out, len);
}

int http_server_listen(struct http_server *s, const char *host, int port) {
  struct sockaddr_storage ss;
  int r;
  if (strchr(host, ':'))
    r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else
    r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r != 0) {
    snprintf(s->errmsg, sizeof s->errmsg, "'%s' is not an IP address: pass --listen HOST:PORT with a numeric host",
             host);
    return r;
  }
  uv_tcp_init(s->loop, &s->tcp);
  s->tcp.data = s;
  r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&s->tcp, 1024, accept_cb);
  if (r != 0) {
    if (r == UV_EADDRINUSE)
      snprintf(s->errmsg, sizeof s->errmsg, "%s:%d is in use: stop what runs there or pass another --listen/--port",
               host, port);
    else
      snprintf(s->errmsg, sizeof s->errmsg, "cannot listen on %s:%d: %s", host, port, uv_strerror(r));
    uv_close((uv_handle_t *)&s->tcp, NULL);
    return r;
  }
  s->listening = true;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    s->fd_limit = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
  uv_prepare_init(s->loop, &s->prepare);
  uv_check_init(s->loop, &s->check);
  s->prepare.data = s->check.data = s;
  uv_prepare_start(&s->prepare, prepare_cb);
  uv_check_start(&s->check, check_cb);
  s->flushers_started = true;
  return 0;
}

int http_server_port(struct http_server *s) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (!s->listening || uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void listener_closed_cb(uv_handle_t *h) {
  struct http_server *s = h->data;
  s->listening = false;
  if (s->nconns == 0) server_finish(s);
}

void http_server_drain(struct http_server *s, void (*cb)(struct http_server *s)) {
  s->draining = true;
  s->drained_cb = cb;
  for (struct http_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->h2) {
      h2_session_shutdown(c->h2); /* GOAWAY: open streams finish, then the connection closes */
      if (!h2_session_active(c->h2)) conn_close_after_writes(c);
    } else if (!c->req_active) {
      conn_close_after_writes(c); /* an answer just sent (a 202 to leave) still goes out */
    }
  }
  if (s->listening)
    uv_close((uv_handle_t *)&s->tcp, listener_closed_cb);
  else if (s->nconns == 0)
    server_finish(s);
}
