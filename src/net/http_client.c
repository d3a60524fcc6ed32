/* HTTP/1.1 client connections: connect or reuse, write, parse the response, return to the pool. */
#include "net/http_client.h"

#include <assert.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"

#define MAX_BODY_PARTS 5 /* the proxy's body: client bytes around up to two insertions (proxy_int.h parts) */

struct hoff {
  size_t no, nl, vo, vl;
};

struct hc_conn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* a dialer's connection */
  } io;
  void *dialing; /* the dialer's handle until its callback ran */
  uv_timer_t timer;
  uint64_t deadline; /* loop time (ms) the request's read timeout expires at; 0 = none set by arm_timer */
  uv_connect_t connect;
  uv_write_t write;
  struct http_pool *pool;
  struct hc_conn *next; /* idle list */
  struct hc_req *req;
  http_parser parser;
  struct buf hbuf; /* response header bytes, copied: they may span reads */
  struct hoff hdr[HTTP_MAX_HEADERS];
  int nhdr;
  bool in_value;
  bool reused, connected, closing, reading, idle;
  bool msg_done;
  int handles_open;
};

struct hc_req {
  struct http_pool *pool;
  struct hc_conn *conn;
  struct slice head;
  struct slice body[MAX_BODY_PARTS];
  int nbody;
  struct hc_callbacks cbs;
  void *arg;
  uint32_t timeout_ms;
  bool got_response, retried, stop, paused;
};

/* All response bytes are consumed synchronously in read_cb (headers copied, body handed on), so one read
 * buffer per thread serves every connection. */
static _Thread_local char read_buf[64 * 1024];

static const http_parser_settings settings;
static void conn_start_request(struct hc_conn *c);

static uv_stream_t *stream(struct hc_conn *c) { return (uv_stream_t *)&c->io; }

int http_pool_init(struct http_pool *p, uv_loop_t *loop, const char *host, int port) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->max_idle = 64;
  p->connect_timeout_ms = 3000;
  const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
  int r;
  if (strchr(h, ':'))
    r = uv_ip6_addr(h, port, (struct sockaddr_in6 *)&p->addr);
  else
    r = uv_ip4_addr(h, port, (struct sockaddr_in *)&p->addr);
  if (r != 0 || port <= 0 || port > 65535) return -EINVAL;
  snprintf(p->authority, sizeof p->authority, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
  p->port = port;
  return 0;
}

void http_pool_set_dialer(struct http_pool *p, const struct http_dialer *d, const uint8_t node[HTTP_DIALER_NODE_LEN]) {
  p->dialer = d;
  memcpy(p->node, node, HTTP_DIALER_NODE_LEN);
}

/* ---- connection lifecycle ---- */

static void conn_closed_cb(uv_handle_t *h) {
  struct hc_conn *c = h->data;
  if (--c->handles_open == 0) {
    buf_free(&c->hbuf);
    free(c);
  }
}

static void idle_remove(struct hc_conn *c) {
  struct http_pool *p = c->pool;
  for (struct hc_conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      p->nidle--;
      break;
    }
  }
  c->idle = false;
  c->next = NULL;
}

static void conn_close(struct hc_conn *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->idle) idle_remove(c);
  if (c->dialing) {
    c->pool->dialer->cancel(c->dialing);
    c->dialing = NULL;
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
  uv_close((uv_handle_t *)stream(c), conn_closed_cb);
}

static void timer_cb(uv_timer_t *t);

/* arm_timer sets the request's timeout to ms from now. Called on every read: the uv timer is only moved
 * earlier, a later deadline is a store and timer_cb re-arms for what is left. */
static void arm_timer(struct hc_conn *c, uint32_t ms) {
  if (c->closing || !ms) return;
  c->deadline = uv_now(c->pool->loop) + ms;
  if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms) return;
  uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* Finish the request: detach it from its connection, free it, then tell the caller. */
static void req_finish(struct hc_req *r, int err) {
  struct hc_callbacks cbs = r->cbs;
  void *arg = r->arg;
  if (r->conn) r->conn->req = NULL;
  r->pool->nbusy--;
  free(r);
  if (cbs.on_done) cbs.on_done(arg, err);
}

static struct hc_conn *conn_new(struct http_pool *p);

/* The connection failed. Retry once on a fresh connection when a reused one died before any byte of the
 * response (the upstream closed an idle keep-alive connection); else report. */
static void conn_fail(struct hc_conn *c, int err) {
  struct hc_req *r = c->req;
  bool reused = c->reused;
  conn_close(c);
  if (!r) return;
  r->conn = NULL;
  if (reused && !r->got_response && !r->retried) {
    r->retried = true;
    if (r->cbs.on_resend) r->head = r->cbs.on_resend(r->arg);
    struct hc_conn *n = conn_new(r->pool);
    n->req = r;
    r->conn = n;
    return;
  }
  req_finish(r, err);
}

static void timer_cb(uv_timer_t *t) {
  struct hc_conn *c = t->data;
  if (c->idle) return; /* a read timeout left running when its request ended: the pool keeps the connection */
  uint64_t now = uv_now(c->pool->loop);
  if (c->req && c->deadline && now < c->deadline) {
    uv_timer_start(&c->timer, timer_cb, c->deadline - now, 0);
    return;
  }
  c->deadline = 0;
  if (c->req) {
    struct hc_req *r = c->req;
    r->retried = true; /* a timeout is not a stale connection: never resend */
    conn_fail(c, UV_ETIMEDOUT);
  } else {
    conn_close(c);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  *out = uv_buf_init(read_buf, sizeof read_buf);
}

static void conn_release(struct hc_conn *c);

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *ub) {
  struct hc_conn *c = st->data;
  if (nread == 0) return;
  if (!c->req) {
    conn_close(c); /* idle connection closed by the peer, or sent unsolicited bytes */
    return;
  }
  struct hc_req *r = c->req;
  if (nread < 0) {
    if (nread == UV_EOF && r->got_response) {
      /* A body delimited by the connection's end completes now. */
      http_parser_execute(&c->parser, &settings, NULL, 0);
      if (c->req && c->msg_done) {
        struct hc_req *rr = c->req;
        conn_close(c);
        req_finish(rr, 0);
        return;
      }
    }
    conn_fail(c, (int)nread);
    return;
  }
  r->got_response = true;
  arm_timer(c, r->timeout_ms);
  size_t n = http_parser_execute(&c->parser, &settings, ub->base, (size_t)nread);
  r = c->req;
  if (!r) return;
  if (r->stop) { /* a callback asked to stop */
    conn_close(c);
    req_finish(r, UV_ECANCELED);
    return;
  }
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (c->msg_done) {
    conn_release(c);
    return;
  }
  if (e != HPE_OK || n != (size_t)nread) {
    r->retried = true;
    conn_fail(c, UV_EPROTO);
  }
}

/* Response complete: return the connection to the pool when reusable, then report. */
static void conn_release(struct hc_conn *c) {
  struct hc_req *r = c->req;
  struct http_pool *p = c->pool;
  bool keep = http_should_keep_alive(&c->parser) && p->nidle < p->max_idle && !r->paused;
  c->req = NULL;
  r->conn = NULL;
  c->deadline = 0; /* the timer may still run: an idle connection ignores it (timer_cb) */
  if (keep) {
    c->idle = true;
    c->reused = true;
    c->next = p->idle;
    p->idle = c;
    p->nidle++;
  } else {
    conn_close(c);
  }
  req_finish(r, 0);
}

static void write_cb(uv_write_t *w, int status) {
  struct hc_conn *c = w->data;
  if (status < 0 && status != UV_ECANCELED && c->req) conn_fail(c, status);
}

static void conn_start_request(struct hc_conn *c) {
  struct hc_req *r = c->req;
  uv_buf_t bufs[1 + MAX_BODY_PARTS];
  int n = 0;
  bufs[n++] = uv_buf_init((char *)r->head.base, (unsigned)r->head.len);
  for (int i = 0; i < r->nbody; i++)
    if (r->body[i].len) bufs[n++] = uv_buf_init((char *)r->body[i].base, (unsigned)r->body[i].len);
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  c->msg_done = false;
  c->write.data = c;
  arm_timer(c, r->timeout_ms);
  /* Most requests fit the socket buffer: write directly and queue a write request only for the rest. */
  int done = uv_try_write(stream(c), bufs, (unsigned)n);
  if (done < 0 && done != UV_EAGAIN) {
    conn_fail(c, done);
    return;
  }
  int first = 0;
  for (size_t left = done > 0 ? (size_t)done : 0; first < n && left >= bufs[first].len; first++)
    left -= bufs[first].len;
  if (first < n) {
    size_t skip = (size_t)(done > 0 ? done : 0);
    for (int i = 0; i < first; i++) skip -= bufs[i].len;
    bufs[first].base += skip;
    bufs[first].len -= skip;
    int rc = uv_write(&c->write, stream(c), bufs + first, (unsigned)(n - first), write_cb);
    if (rc != 0) {
      conn_fail(c, rc);
      return;
    }
  }
  if (!c->reading && !r->paused) {
    uv_read_start(stream(c), alloc_cb, read_cb);
    c->reading = true;
  }
}

static void connect_cb(uv_connect_t *cr, int status) {
  struct hc_conn *c = cr->data;
  if (c->closing) return;
  if (status < 0) {
    if (c->req) c->req->retried = true; /* nothing to retry on this pool: the upstream is down */
    conn_fail(c, status);
    return;
  }
  c->connected = true;
  if (!c->pool->dialer) uv_tcp_nodelay(&c->io.tcp, 1);
  if (c->req)
    conn_start_request(c);
  else
    conn_close(c);
}

/* dial_cb: the dialer's connection is ready (fd), or failed. */
static void dial_cb(void *arg, int status, uv_os_sock_t fd) {
  struct hc_conn *c = arg;
  c->dialing = NULL;
  if (status == 0 && uv_pipe_open(&c->io.pipe, fd) != 0) {
    close(fd);
    status = UV_EIO;
  }
  connect_cb(&c->connect, status);
}

static struct hc_conn *conn_new(struct http_pool *p) {
  struct hc_conn *c = xcalloc(1, sizeof *c);
  c->pool = p;
  if (p->dialer) uv_pipe_init(p->loop, &c->io.pipe, 0);
  else uv_tcp_init(p->loop, &c->io.tcp);
  uv_timer_init(p->loop, &c->timer);
  stream(c)->data = c->timer.data = c->connect.data = c;
  c->handles_open = 2;
  p->connects++;
  uv_timer_start(&c->timer, timer_cb, p->connect_timeout_ms, 0);
  if (p->dialer) {
    c->dialing = p->dialer->dial(p->dialer->arg, p->node, p->port, dial_cb, c);
    return c;
  }
  int rc = uv_tcp_connect(&c->connect, &c->io.tcp, (struct sockaddr *)&p->addr, connect_cb);
  if (rc != 0) {
    /* Report asynchronously through the timer path so callers never see a callback inside hc_request. */
    uv_timer_start(&c->timer, timer_cb, 0, 0);
  }
  return c;
}

struct hc_req *hc_request(struct http_pool *p, struct slice head, const struct slice *body, int nbody,
                          const struct hc_callbacks *cbs, void *arg, uint32_t timeout_ms) {
  assert(nbody <= MAX_BODY_PARTS);
  struct hc_req *r = xcalloc(1, sizeof *r);
  r->pool = p;
  r->head = head;
  for (int i = 0; i < nbody; i++) r->body[i] = body[i];
  r->nbody = nbody;
  r->cbs = *cbs;
  r->arg = arg;
  r->timeout_ms = timeout_ms;
  p->nbusy++;
  struct hc_conn *c = p->idle;
  if (c) {
    idle_remove(c);
    p->reuses++;
    c->req = r;
    r->conn = c;
    conn_start_request(c);
  } else {
    c = conn_new(p);
    c->req = r;
    r->conn = c;
  }
  return r;
}

void hc_cancel(struct hc_req *r) {
  struct hc_conn *c = r->conn;
  if (c) {
    c->req = NULL;
    conn_close(c);
  }
  r->pool->nbusy--;
  free(r);
}

void hc_pause(struct hc_req *r) {
  r->paused = true;
  if (r->conn && r->conn->reading) {
    uv_read_stop(stream(r->conn));
    r->conn->reading = false;
    r->conn->deadline = 0;
    uv_timer_stop(&r->conn->timer);
  }
}

void hc_resume(struct hc_req *r) {
  r->paused = false;
  struct hc_conn *c = r->conn;
  if (c && c->connected && !c->reading && !c->closing) {
    uv_read_start(stream(c), alloc_cb, read_cb);
    c->reading = true;
    arm_timer(c, r->timeout_ms);
  }
}

bool hc_got_response(const struct hc_req *r) { return r->got_response; }

void http_pool_close(struct http_pool *p) {
  while (p->idle) conn_close(p->idle);
}

/* ---- response parsing ---- */

static int on_message_begin(http_parser *hp) {
  struct hc_conn *c = hp->data;
  buf_reset(&c->hbuf);
  c->nhdr = 0;
  c->in_value = false;
  return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
  struct hc_conn *c = hp->data;
  if (c->hbuf.len + len > 64 * 1024) return -1;
  if (c->in_value || c->nhdr == 0) {
    if (c->nhdr >= HTTP_MAX_HEADERS) return -1;
    c->hdr[c->nhdr++] = (struct hoff){c->hbuf.len, 0, 0, 0};
    c->in_value = false;
  }
  buf_append(&c->hbuf, at, len);
  c->hdr[c->nhdr - 1].nl += len;
  return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
  struct hc_conn *c = hp->data;
  if (c->hbuf.len + len > 64 * 1024) return -1;
  struct hoff *h = &c->hdr[c->nhdr - 1];
  if (!c->in_value) {
    h->vo = c->hbuf.len;
    c->in_value = true;
  }
  buf_append(&c->hbuf, at, len);
  h->vl += len;
  return 0;
}

static int on_headers_complete(http_parser *hp) {
  struct hc_conn *c = hp->data;
  struct hc_req *r = c->req;
  struct http_header h[HTTP_MAX_HEADERS];
  for (int i = 0; i < c->nhdr; i++) {
    h[i].name = slice_make(c->hbuf.base + c->hdr[i].no, c->hdr[i].nl);
    h[i].value = slice_trim(slice_make(c->hbuf.base + c->hdr[i].vo, c->hdr[i].vl));
  }
  if (hp->status_code == 100) return 0; /* interim response: the real one follows */
  if (r->cbs.on_head && r->cbs.on_head(r->arg, hp->status_code, h, c->nhdr) != 0) {
    r->stop = true;
    return -1;
  }
  return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
  struct hc_conn *c = hp->data;
  struct hc_req *r = c->req;
  if (r->cbs.on_body && r->cbs.on_body(r->arg, at, len) != 0) {
    r->stop = true;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *hp) {
  struct hc_conn *c = hp->data;
  if (hp->status_code == 100) return 0;
  c->msg_done = true;
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
