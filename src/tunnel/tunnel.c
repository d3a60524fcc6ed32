/* The agent-to-agent tunnel: streams, their handshake and the encrypted relay (see tunnel.h). */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"
#include "tunnel/tunnel_int.h"
#include "tunnel/tunnel_wire.h"

#define INBUF_MAX (2 * (4 + TUNX_FRAME_MAX + TUNX_ABYTES)) /* a frame and the start of the next */

struct wreq {
  uv_write_t w;
  struct tconn *c;
  bool close_after; /* a refusal's status frame: close once it was written */
  uint8_t data[];
};

static void net_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void local_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* One read buffer for the loop thread: every read is consumed (sealed, opened or copied) in its callback. */
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char slab[TUNX_FRAME_MAX];
  (void)h, (void)hint;
  b->base = slab;
  b->len = sizeof slab;
}

static uv_stream_t *net(struct tconn *c) { return (uv_stream_t *)&c->net; }
static uv_stream_t *local(struct tconn *c) { return (uv_stream_t *)&c->local; }

int tun_parse_addr(const char *s, struct sockaddr_storage *sa) {
  char host[64];
  const char *colon = strrchr(s, ':'), *h = s;
  uint64_t port;
  if (!colon || slice_to_u64(slice_cstr(colon + 1), &port) != 0 || port == 0 || port > 65535) return -EINVAL;
  size_t hlen = (size_t)(colon - s);
  bool v6 = s[0] == '[';
  if (v6) {
    if (hlen < 3 || s[hlen - 1] != ']') return -EINVAL;
    h = s + 1, hlen -= 2;
  }
  if (hlen == 0 || hlen >= sizeof host) return -EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memset(sa, 0, sizeof *sa);
  if (v6) return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0 ? 0 : -EINVAL;
  if (strcmp(host, "localhost") == 0) str_copy(host, sizeof host, "127.0.0.1");
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0 ? 0 : -EINVAL;
}

/* ---- lifecycle ---- */

void tun_maybe_closed(struct tunnel *t) {
  if (!t->closing || t->conns || t->forwards) return;
  void (*cb)(void *) = t->closed_cb;
  void *arg = t->closed_arg;
  free(t);
  if (cb) cb(arg);
}

static void handle_closed_cb(uv_handle_t *h) {
  struct tconn *c = h->data;
  if (--c->handles > 0) return;
  struct tunnel *t = c->t;
  if (c->prev)
    c->prev->next = c->next;
  else
    t->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  t->n.open--;
  buf_free(&c->in);
  tunx_wipe(&c->s);
  free(c);
  tun_maybe_closed(t);
}

/* conn_close ends c now; a dial whose callback has not run learns err. */
static void conn_close(struct tconn *c, int err) {
  if (c->st == ST_CLOSING) return;
  c->st = ST_CLOSING;
  if (c->outbound && !c->relayed && err) c->t->n.dial_failed++;
  if (c->fw && !c->t->closing && (c->lost || (!c->relayed && err))) tun_forward_lost(c->fw, err);
  if (c->cb) {
    tunnel_dial_cb cb = c->cb;
    c->cb = NULL;
    cb(c->cb_arg, err ? err : -ECONNABORTED, -1);
  }
  uv_close((uv_handle_t *)&c->net, handle_closed_cb);
  uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
  if (c->local_init) uv_close((uv_handle_t *)&c->local, handle_closed_cb);
}

static void timer_cb(uv_timer_t *tm) {
  struct tconn *c = tm->data;
  if (c->err) {
    conn_close(c, c->err);
    return;
  }
  log_debug("tunnel: handshake timed out", "outbound=%d", c->outbound);
  conn_close(c, -ETIMEDOUT);
}

struct tconn *tun_conn_new(struct tunnel *t, bool outbound) {
  struct tconn *c = xcalloc(1, sizeof *c);
  c->t = t;
  c->outbound = outbound;
  uv_tcp_init(t->loop, &c->net);
  uv_timer_init(t->loop, &c->timer);
  c->net.data = c->timer.data = c->local.tcp.data = c;
  c->creq.data = c->lreq.data = c;
  c->handles = 2;
  c->next = t->conns;
  if (t->conns) t->conns->prev = c;
  t->conns = c;
  t->n.open++;
  uv_timer_start(&c->timer, timer_cb, t->cfg.handshake_timeout_ms, 0);
  return c;
}

/* ---- writes and backpressure ---- */

static void write_cb(uv_write_t *w, int status) {
  struct wreq *r = (struct wreq *)w;
  struct tconn *c = r->c;
  uv_stream_t *dst = w->handle;
  bool close_after = r->close_after;
  free(r);
  if (close_after) {
    conn_close(c, 0);
    return;
  }
  if (status != 0 || c->st != ST_RELAY) return; /* a failed write surfaces as a read error and closes */
  if (uv_stream_get_write_queue_size(dst) > TUNNEL_QUEUE_LOW) return;
  if (dst == net(c) && c->local_paused && !c->local_eof) {
    c->local_paused = false;
    uv_read_start(local(c), alloc_cb, local_read_cb);
  } else if (dst == local(c) && c->net_paused) {
    c->net_paused = false;
    uv_read_start(net(c), alloc_cb, net_read_cb);
  }
}

/* A write that leaves dst's queue over the high mark stops reading the other side until it drained. */
static void note_queue(struct tconn *c, uv_stream_t *dst) {
  if (c->st != ST_RELAY || uv_stream_get_write_queue_size(dst) <= TUNNEL_QUEUE_HIGH) return;
  bool to_net = dst == net(c);
  bool *paused = to_net ? &c->local_paused : &c->net_paused;
  if (*paused) return;
  uv_read_stop(to_net ? local(c) : net(c));
  *paused = true;
  c->t->n.pauses++;
}

static struct wreq *wreq_new(struct tconn *c, size_t len) {
  struct wreq *r = xmalloc(sizeof *r + len);
  r->c = c;
  r->close_after = false;
  return r;
}

static bool write_req(struct tconn *c, uv_stream_t *dst, struct wreq *r, size_t len) {
  uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
  if (uv_write(&r->w, dst, &b, 1, write_cb) != 0) {
    free(r);
    return false;
  }
  return true;
}

static bool send_raw(struct tconn *c, const void *data, size_t len) {
  struct wreq *r = wreq_new(c, len);
  memcpy(r->data, data, len);
  return write_req(c, net(c), r, len);
}

/* send_frame seals pt[0, n) to the peer; close_after: the connection ends once it was written. */
static bool send_frame(struct tconn *c, const uint8_t *pt, size_t n, uint8_t tag, bool close_after) {
  struct wreq *r = wreq_new(c, 4 + n + TUNX_ABYTES);
  size_t len = tunx_seal(&c->s, pt, n, tag, r->data);
  r->close_after = close_after;
  return write_req(c, net(c), r, len);
}

/* ---- relay ---- */

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct tconn *c = req->data;
  if (c->st == ST_CLOSING) return;
  if (status != 0 || ++c->ended == 2) conn_close(c, 0);
}

static void local_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct tconn *c = s->data;
  if (c->st != ST_RELAY || n == 0) return;
  if (n == UV_EOF) { /* our side is done sending: a final frame, then a half-close */
    uv_read_stop(s);
    c->local_eof = true;
    c->sh_net.data = c;
    if (!send_frame(c, NULL, 0, crypto_secretstream_xchacha20poly1305_TAG_FINAL, false) ||
        uv_shutdown(&c->sh_net, net(c), shutdown_cb) != 0)
      conn_close(c, 0);
    return;
  }
  if (n < 0) {
    conn_close(c, 0);
    return;
  }
  c->t->n.bytes_out += (uint64_t)n;
  if (!send_frame(c, (const uint8_t *)b->base, (size_t)n, 0, false)) {
    conn_close(c, 0);
    return;
  }
  note_queue(c, net(c));
}

/* relay_in opens the whole frames in c->in and writes them to the local side. false: close. A forwarder's
 * stream whose member side ends first, cleanly, is reported to the forwarder's owner (-EPIPE) once the frames
 * are handled. */
static bool relay_in(struct tconn *c) {
  size_t off = 0;
  bool ok = true, ended_first = false;
  while (ok && c->in.len - off >= 4) {
    const uint8_t *p = (const uint8_t *)c->in.base + off;
    uint32_t clen;
    int fr = tunx_frame_next(p, c->in.len - off, &clen);
    if (fr == 0) break;
    if (fr < 0 || c->net_eof) { /* nothing may follow a final frame */
      c->t->n.truncated++, c->lost = true;
      ok = false;
      break;
    }
    struct wreq *r = wreq_new(c, clen);
    size_t plen;
    int final;
    if (tunx_open(&c->s, p + 4, clen, r->data, &plen, &final) != 0) {
      free(r);
      c->t->n.truncated++, c->lost = true;
      ok = false;
      break;
    }
    off += 4 + clen;
    c->t->n.bytes_in += plen;
    if (!plen)
      free(r); /* a final frame carries nothing */
    else if (!write_req(c, local(c), r, plen))
      ok = false;
    if (ok && final) {
      c->net_eof = true;
      ended_first = !c->local_eof;
      c->sh_local.data = c;
      if (uv_shutdown(&c->sh_local, local(c), shutdown_cb) != 0) ok = false;
    }
  }
  if (ok) note_queue(c, local(c));
  buf_consume(&c->in, off);
  if (ended_first && c->fw && !c->t->closing) tun_forward_lost(c->fw, -EPIPE);
  return ok;
}

static void go_relay(struct tconn *c) {
  uv_timer_stop(&c->timer);
  c->st = ST_RELAY;
  c->relayed = true;
  uv_read_start(local(c), alloc_cb, local_read_cb);
  if (c->in.len && !relay_in(c)) conn_close(c, 0);
}

/* ---- client side ---- */

static int status_error(int status) {
  switch (status) {
  case TUNX_PORT_REFUSED:
  case TUNX_CONNECT_FAILED: return -ECONNREFUSED;
  case TUNX_BUSY: return -EBUSY;
  case TUNX_NOT_MEMBER: return -EPERM;
  default: return -EPROTO;
  }
}

/* client_status reads the server's first frame. 1: relaying; 0: more bytes needed; <0: refused. */
static int client_status(struct tconn *c) {
  uint32_t clen;
  int fr = tunx_frame_next((const uint8_t *)c->in.base, c->in.len, &clen);
  if (fr <= 0) return fr == 0 ? 0 : -EPROTO;
  if (clen != 1 + TUNX_ABYTES) return -EPROTO;
  uint8_t st[1];
  size_t n;
  int final;
  if (tunx_open(&c->s, (const uint8_t *)c->in.base + 4, clen, st, &n, &final) != 0 || n != 1 || final)
    return -EPROTO;
  buf_consume(&c->in, 4 + clen);
  if (st[0] != TUNX_OK) return status_error(st[0]);
  if (!c->local_init) { /* a dial: the caller gets the other end of a socketpair */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
    uv_pipe_init(c->t->loop, &c->local.pipe, 0);
    c->local.pipe.data = c;
    c->local_init = true;
    c->handles++;
    if (uv_pipe_open(&c->local.pipe, sv[0]) != 0) {
      close(sv[0]);
      close(sv[1]);
      return -EIO;
    }
    tunnel_dial_cb cb = c->cb;
    c->cb = NULL;
    go_relay(c);
    cb(c->cb_arg, 0, sv[1]);
    return 1;
  }
  go_relay(c);
  return 1;
}

static int client_reply(struct tconn *c) {
  struct tunnel *t = c->t;
  uint8_t fin[TUNX_FINISH_LEN];
  int rc = tunx_client_check_reply(&c->s, t->cfg.kr, t->cfg.id, c->peer_pk, c->port,
                                   (const uint8_t *)c->in.base, c->in.len, fin);
  if (rc == -EAGAIN) return 0;
  if (rc != 0) {
    char id[13];
    identity_short(c->peer_pk, id);
    if (rc == -EACCES)
      t->n.refused_key++;
    else if (rc == -EPERM)
      t->n.refused_identity++;
    log_warn(rc == -EACCES ? "tunnel: the peer does not hold our cluster key"
                           : "tunnel: the peer is not the member it should be",
             "peer=%s err=%d", id, rc);
    return rc;
  }
  buf_consume(&c->in, TUNX_REPLY_LEN);
  c->st = ST_STATUS;
  return send_raw(c, fin, sizeof fin) ? 0 : -EIO;
}

static void client_read(struct tconn *c) {
  int rc = 0;
  if (c->st == ST_REPLY && c->in.len >= TUNX_REPLY_LEN) rc = client_reply(c);
  if (rc == 0 && c->st == ST_STATUS)
    rc = client_status(c);
  else if (rc == 0 && c->st == ST_RELAY && !relay_in(c))
    rc = -EPROTO;
  if (rc < 0) conn_close(c, rc);
}

static void connect_cb(uv_connect_t *r, int status) {
  struct tconn *c = r->data;
  if (c->st == ST_CLOSING) return;
  if (status != 0) {
    conn_close(c, status);
    return;
  }
  uv_tcp_nodelay(&c->net, 1);
  uint8_t hello[TUNX_HELLO_LEN];
  c->st = ST_REPLY;
  if (tunx_client_hello(&c->s, c->t->cfg.kr, hello) != 0 || !send_raw(c, hello, sizeof hello)) {
    conn_close(c, -EIO);
    return;
  }
  uv_read_start(net(c), alloc_cb, net_read_cb);
}

/* tun_dial_start connects c (outbound, peer_pk and port set) to the member's tunnel address. */
void tun_dial_start(struct tconn *c) {
  struct tunnel *t = c->t;
  char addr[128];
  struct sockaddr_storage sa;
  t->n.dials++;
  int rc = t->cfg.resolve(t->cfg.arg, c->peer_pk, addr, sizeof addr);
  if (rc == 0 && tun_parse_addr(addr, &sa) != 0) rc = -EINVAL;
  if (rc == 0 && t->n.open > t->cfg.max_streams) rc = -EBUSY;
  if (rc == 0) rc = uv_tcp_connect(&c->creq, &c->net, (const struct sockaddr *)&sa, connect_cb);
  if (rc != 0) tun_fail_later(c, rc);
}

void tun_fail_later(struct tconn *c, int err) {
  c->err = err;
  uv_timer_start(&c->timer, timer_cb, 0, 0);
}

struct tunnel_dial *tunnel_dial(struct tunnel *t, const uint8_t pk[IDENTITY_PK_LEN], int port,
                                tunnel_dial_cb cb, void *arg) {
  struct tconn *c = tun_conn_new(t, true);
  memcpy(c->peer_pk, pk, IDENTITY_PK_LEN);
  c->port = (uint16_t)port;
  c->cb = cb;
  c->cb_arg = arg;
  if (t->closing || port <= 0 || port > 65535) {
    tun_fail_later(c, t->closing ? -ECANCELED : -EINVAL);
  } else {
    tun_dial_start(c);
  }
  return (struct tunnel_dial *)c;
}

void tunnel_dial_cancel(struct tunnel_dial *d) {
  struct tconn *c = (struct tconn *)d;
  c->cb = NULL;
  conn_close(c, 0);
}

/* ---- server side ---- */

static int peer_streams(const struct tunnel *t, const uint8_t pk[IDENTITY_PK_LEN]) {
  int n = 0;
  for (const struct tconn *o = t->conns; o; o = o->next)
    if (!o->outbound && o->counted && o->st != ST_CLOSING && memcmp(o->peer_pk, pk, IDENTITY_PK_LEN) == 0)
      n++;
  return n;
}

static void refuse(struct tconn *c, enum tunx_status st) {
  uint8_t b = (uint8_t)st;
  c->st = ST_REFUSING;
  if (!send_frame(c, &b, 1, 0, true)) conn_close(c, 0);
}

static void local_connect_cb(uv_connect_t *r, int status) {
  struct tconn *c = r->data;
  if (c->st == ST_CLOSING) return;
  if (status != 0) {
    log_info("tunnel: nothing listens on the allowed port", "port=%u err=\"%s\"", c->port,
             uv_strerror(status));
    refuse(c, TUNX_CONNECT_FAILED);
    return;
  }
  uv_tcp_nodelay(&c->local.tcp, 1);
  uint8_t ok = TUNX_OK;
  if (!send_frame(c, &ok, 1, 0, false)) {
    conn_close(c, 0);
    return;
  }
  c->t->n.accepted++;
  go_relay(c);
}

static bool server_finish(struct tconn *c) {
  struct tunnel *t = c->t;
  char id[13], addr[128];
  int rc = tunx_server_check_finish(&c->s, t->cfg.kr, (const uint8_t *)c->in.base, c->in.len);
  if (rc == -EAGAIN) return true;
  if (rc != 0) {
    if (rc == -EACCES)
      t->n.refused_key++;
    else
      t->n.refused_identity++;
    log_warn("tunnel: a peer failed the handshake", "reason=%s",
             rc == -EACCES ? "not our cluster key" : "bad identity signature");
    return false;
  }
  buf_consume(&c->in, TUNX_FINISH_LEN);
  memcpy(c->peer_pk, c->s.peer_pk, IDENTITY_PK_LEN);
  c->port = c->s.port;
  identity_short(c->peer_pk, id);
  if (t->cfg.resolve(t->cfg.arg, c->peer_pk, addr, sizeof addr) != 0) {
    t->n.refused_identity++;
    log_warn("tunnel: refused a stream from a node that is not a member here", "peer=%s", id);
    refuse(c, TUNX_NOT_MEMBER);
    return true;
  }
  if (peer_streams(t, c->peer_pk) >= t->cfg.max_streams_per_peer || t->n.open > t->cfg.max_streams) {
    t->n.refused_busy++;
    log_warn("tunnel: too many streams from one peer", "peer=%s", id);
    refuse(c, TUNX_BUSY);
    return true;
  }
  const struct tun_allow *a = tun_allowed(t, c->port);
  if (!a) {
    t->n.refused_port++;
    log_warn("tunnel: refused a stream to a port that is not allowed", "peer=%s port=%u", id, c->port);
    refuse(c, TUNX_PORT_REFUSED);
    return true;
  }
  c->counted = true;
  uv_tcp_init(t->loop, &c->local.tcp);
  c->local.tcp.data = c;
  c->local_init = true;
  c->handles++;
  c->st = ST_LOCAL;
  if (uv_tcp_connect(&c->lreq, &c->local.tcp, (const struct sockaddr *)&a->sa, local_connect_cb) != 0)
    refuse(c, TUNX_CONNECT_FAILED);
  return true;
}

static void server_read(struct tconn *c) {
  bool ok = true;
  if (c->st == ST_HELLO && c->in.len >= TUNX_HELLO_LEN) {
    uint8_t reply[TUNX_REPLY_LEN];
    int rc = tunx_parse_hello(&c->s, c->t->cfg.kr, (const uint8_t *)c->in.base, c->in.len);
    if (rc == -EACCES) {
      c->t->n.refused_key++;
      log_warn("tunnel: a peer failed the handshake", "reason=%s", "not our cluster key");
    }
    ok = rc == 0 && tunx_server_reply(&c->s, c->t->cfg.kr, c->t->cfg.id, reply) == 0;
    if (ok) {
      buf_consume(&c->in, TUNX_HELLO_LEN);
      c->st = ST_FINISH;
      ok = send_raw(c, reply, sizeof reply);
    }
  }
  if (ok && c->st == ST_FINISH && c->in.len >= TUNX_FINISH_LEN)
    ok = server_finish(c);
  else if (ok && c->st == ST_RELAY)
    ok = relay_in(c);
  if (!ok) conn_close(c, 0);
}

static void net_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct tconn *c = s->data;
  if (c->st == ST_CLOSING || n == 0) return;
  if (n < 0) {
    if (n == UV_EOF && c->net_eof) { /* the peer's final frame came first: a clean end */
      uv_read_stop(s);
      return;
    }
    if (c->st == ST_RELAY) c->t->n.truncated++, c->lost = true;
    conn_close(c, c->outbound && c->st != ST_RELAY ? -ECONNRESET : 0);
    return;
  }
  if (c->in.len + (size_t)n > INBUF_MAX) {
    conn_close(c, -EPROTO);
    return;
  }
  buf_append(&c->in, b->base, (size_t)n);
  if (c->outbound)
    client_read(c);
  else
    server_read(c);
}

void tunnel_accept_fd(struct tunnel *t, uv_os_sock_t fd, const uint8_t *pre, size_t len) {
  struct tconn *c = tun_conn_new(t, false);
  if (t->closing || uv_tcp_open(&c->net, fd) != 0) {
    close(fd);
    conn_close(c, 0);
    return;
  }
  uv_tcp_nodelay(&c->net, 1);
  c->st = ST_HELLO;
  buf_append(&c->in, pre, len);
  server_read(c);
  if (c->st != ST_CLOSING) uv_read_start(net(c), alloc_cb, net_read_cb);
}

/* ---- the tunnel ---- */

int tunnel_new(struct tunnel **out, uv_loop_t *loop, const struct tunnel_config *cfg) {
  if (!cfg->id || !cfg->kr || !cfg->resolve || !cfg->lookup) return -EINVAL;
  if (sodium_init() < 0) abort();
  struct tunnel *t = xcalloc(1, sizeof *t);
  t->loop = loop;
  t->cfg = *cfg;
  if (t->cfg.max_streams_per_peer <= 0) t->cfg.max_streams_per_peer = 256;
  if (t->cfg.max_streams <= 0) t->cfg.max_streams = 4096;
  if (!t->cfg.handshake_timeout_ms) t->cfg.handshake_timeout_ms = 5000;
  *out = t;
  return 0;
}

const struct tun_allow *tun_allowed(const struct tunnel *t, int port) {
  for (int i = 0; i < t->nallow; i++)
    if (t->allow[i].port == port) return &t->allow[i];
  return NULL;
}

int tunnel_allow(struct tunnel *t, const char *host, int port) {
  return tunnel_allow_to(t, port, host, port);
}

int tunnel_allow_to(struct tunnel *t, int port, const char *host, int to_port) {
  if (port <= 0 || port > 65535 || to_port <= 0 || to_port > 65535) return -EINVAL;
  if (tun_allowed(t, port)) return -EEXIST;
  if (t->nallow == TUNNEL_ALLOW_MAX) return -ENOSPC;
  struct tun_allow *a = &t->allow[t->nallow];
  const char *h = host;
  if (!h[0] || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "localhost") == 0) h = "127.0.0.1";
  if (strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0) h = "::1";
  memset(&a->sa, 0, sizeof a->sa);
  if (uv_ip4_addr(h, to_port, (struct sockaddr_in *)&a->sa) != 0 &&
      uv_ip6_addr(h, to_port, (struct sockaddr_in6 *)&a->sa) != 0)
    return -EINVAL;
  a->port = port;
  t->nallow++;
  return 0;
}

void tunnel_disallow(struct tunnel *t, int port) {
  for (int i = 0; i < t->nallow; i++)
    if (t->allow[i].port == port) {
      t->allow[i] = t->allow[--t->nallow];
      return;
    }
}

const struct tunnel_counters *tunnel_counters(const struct tunnel *t) { return &t->n; }

void tunnel_metrics(const struct tunnel *t, struct buf *out) {
  const struct tunnel_counters *n = &t->n;
  buf_printf(
      out,
      "# HELP infermesh_tunnel_streams Agent-to-agent tunnel streams open (handshaking or relaying).\n"
      "# TYPE infermesh_tunnel_streams gauge\ninfermesh_tunnel_streams %d\n"
      "# HELP infermesh_tunnel_dials_total Streams this node opened to others, and how many failed.\n"
      "# TYPE infermesh_tunnel_dials_total counter\ninfermesh_tunnel_dials_total{result=\"all\"} %llu\n"
      "infermesh_tunnel_dials_total{result=\"failed\"} %llu\n"
      "# HELP infermesh_tunnel_accepted_total Streams other nodes opened to this one.\n"
      "# TYPE infermesh_tunnel_accepted_total counter\ninfermesh_tunnel_accepted_total %llu\n"
      "# HELP infermesh_tunnel_refused_total Streams refused, by reason.\n"
      "# TYPE infermesh_tunnel_refused_total counter\n"
      "infermesh_tunnel_refused_total{reason=\"cluster_key\"} %llu\n"
      "infermesh_tunnel_refused_total{reason=\"identity\"} %llu\n"
      "infermesh_tunnel_refused_total{reason=\"port\"} %llu\n"
      "infermesh_tunnel_refused_total{reason=\"busy\"} %llu\n"
      "# HELP infermesh_tunnel_truncated_total Streams cut short or carrying a frame that failed to open.\n"
      "# TYPE infermesh_tunnel_truncated_total counter\ninfermesh_tunnel_truncated_total %llu\n"
      "# HELP infermesh_tunnel_bytes_total Plaintext bytes relayed, by direction.\n"
      "# TYPE infermesh_tunnel_bytes_total counter\ninfermesh_tunnel_bytes_total{dir=\"in\"} %llu\n"
      "infermesh_tunnel_bytes_total{dir=\"out\"} %llu\n"
      "# HELP infermesh_tunnel_pauses_total Times a relay direction paused for backpressure.\n"
      "# TYPE infermesh_tunnel_pauses_total counter\ninfermesh_tunnel_pauses_total %llu\n",
      n->open, (unsigned long long)n->dials, (unsigned long long)n->dial_failed,
      (unsigned long long)n->accepted, (unsigned long long)n->refused_key,
      (unsigned long long)n->refused_identity, (unsigned long long)n->refused_port,
      (unsigned long long)n->refused_busy, (unsigned long long)n->truncated, (unsigned long long)n->bytes_in,
      (unsigned long long)n->bytes_out, (unsigned long long)n->pauses);
}

void tunnel_close(struct tunnel *t, void (*closed_cb)(void *arg), void *arg) {
  t->closing = true;
  t->closed_cb = closed_cb;
  t->closed_arg = arg;
  for (struct tconn *c = t->conns; c; c = c->next)
    conn_close(c, -ECANCELED);
  tun_forwards_close(t);
  tun_maybe_closed(t);
}
