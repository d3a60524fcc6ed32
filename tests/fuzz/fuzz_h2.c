/* Fuzz target: arbitrary bytes after a valid client preface into an HTTP/2 server session (nghttp2 parses;
 * our callbacks, streams and the response API must survive any sequence), over an in-memory transport. */
#include <stdint.h>
#include <string.h>

#include "net/h2_server.h"
#include "net/http_server.h"
#include "fuzz_check.h"

#define HELD_MAX 8

static struct http_server srv;
static struct http_req *held[HELD_MAX]; /* requests answered later: at the next feed, or when aborted */
static size_t written, queued;
static bool closed;
static int active;

static void io_write(void *arg, const struct slice *parts, size_t n) {
  for (size_t i = 0; i < n; i++)
    written += parts[i].len, queued += parts[i].len;
}
static size_t io_queued(void *arg) { return queued; }
static void io_close(void *arg) { closed = true; }
static void io_activity(void *arg, int n) { active = n; }
static void io_peer(void *arg, char *out, size_t len) {
  strncpy(out, "127.0.0.1", len - 1), out[len - 1] = 0;
}
static int io_dead_peer(void *arg, unsigned ms) { return 0; }
static const char *io_client_cn(void *arg) { return NULL; }
static const struct h2_io io = {io_write, io_queued, io_close, io_activity, io_peer, io_dead_peer, io_client_cn};

static void held_drop(struct http_req *req) {
  for (int i = 0; i < HELD_MAX; i++)
    if (held[i] == req) held[i] = NULL;
}

static void held_abort_cb(struct http_req *req) {
  held_drop(req);
  http_resp_end(req);
}

static void held_drain_cb(struct http_req *req) { http_resp_write(req, "more", 4); }

static void handler(struct http_req *req, void *arg) {
  size_t sum = req->url.len + req->body.len + (size_t)req->method;
  for (int i = 0; i < req->nheaders; i++)
    sum += req->headers[i].name.len + req->headers[i].value.len;
  for (size_t i = 0; i < req->body.len; i++)
    sum += (unsigned char)req->body.base[i];
  char peer[64];
  http_req_peer(req, peer, sizeof peer);
  int slot = -1;
  for (int i = 0; i < HELD_MAX && slot < 0; i++)
    if (!held[i]) slot = i;
  if (slot >= 0 && memmem(req->path.base, req->path.len, "later", 5)) {
    held[slot] = req;
    req->abort_cb = held_abort_cb;
    req->drain_cb = held_drain_cb;
    http_resp_start(req, 200, NULL, 0, -1);
    http_resp_flush(req);
    http_resp_write(req, req->body.base, req->body.len);
    return;
  }
  if (sum & 1) {
    struct http_header h = {SLICE_LIT("X-Sum"), SLICE_LIT("odd")};
    http_resp_start(req, 200, &h, 1, -1);
    struct slice v[2] = {req->url, req->body};
    http_resp_writev(req, v, 2);
    http_resp_end(req);
  } else {
    http_resp_send(req, sum & 2 ? 404 : 200, "text/plain", req->url.base, req->url.len, NULL, 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!srv.handler) {
    struct http_limits lim;
    http_limits_default(&lim);
    lim.max_body = 256 * 1024;
    lim.max_buffered_bodies = 100 * 1024; /* one large body at a time: the second gets 503 */
    lim.max_header_bytes = 4096;
    http_server_init(&srv, NULL, &lim, handler, NULL);
  }
  if (size < 1 || size > 256 * 1024) return 0;
  written = queued = 0;
  closed = false;
  struct h2_session *h = h2_session_new(&srv, &io, NULL);
  h2_session_feed(h, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", H2_PREFACE_LEN);
  /* The first byte picks the piece size: frames split anywhere; between pieces the transport drains (or not)
   * and held requests get a write or their end. */
  size_t piece = (size_t)data[0] * 7 + 1, off = 1;
  int turn = 0;
  while (off < size && !closed) {
    size_t n = size - off < piece ? size - off : piece;
    h2_session_feed(h, (const char *)data + off, n);
    off += n;
    if (turn++ & 1) queued = 0, h2_session_written(h);
    for (int i = 0; i < HELD_MAX; i++) {
      struct http_req *r = held[i];
      if (!r) continue;
      if ((data[0] + turn + i) & 1) {
        held[i] = NULL;
        http_resp_end(r);
      } else {
        http_resp_write(r, data + off - n, n);
      }
    }
  }
  h2_session_detach(h); /* the client is gone: held requests are aborted and ended by their abort_cb */
  for (int i = 0; i < HELD_MAX; i++)
    if (held[i]) {
      struct http_req *r = held[i];
      held[i] = NULL;
      http_resp_end(r);
    }
  h2_session_free(h);
  CHECK(srv.nactive == 0 && srv.buffered_bodies == 0); /* every request ended, the body budget given back */
  return 0;
}
