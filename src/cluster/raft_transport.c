/* Raft transport over TCP with a cluster-key handshake and secretstream-sealed frames (see raft_transport.h). */
#include "cluster/raft_transport.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/slice.h"

#define HELLO_MAGIC "IMRAFT01"
#define NONCE_LEN RTX_NONCE_LEN
#define HDR_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define HELLO_LEN RTX_HELLO_LEN
#define REPLY_LEN RTX_REPLY_LEN
#define FINISH_MIN RTX_FINISH_MIN
#define ADDR_MAX RTX_ADDR_MAX
#define FRAME_MAX RTX_FRAME_MAX
#define HANDSHAKE_MS 5000
#define INBUF_MAX (4 + FRAME_MAX + ABYTES)

_Static_assert(HDR_LEN == 24, "secretstream header");

enum cstate { C_CONNECTING, C_HELLO, C_REPLY, C_FINISH, C_RELAY, C_CLOSING };

struct rt;

struct conn {
  struct rt *t;
  struct conn *next;
  bool outbound;
  enum cstate st;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_pipe_t pipe; /* our end of the socketpair (raft has the other) */
  bool pipe_open;
  bool pipe_paused, tcp_paused; /* reading stopped: the other side's write queue is over RT_QUEUE_HIGH */
  int handles; /* open handles; the conn is freed when the last one closed */
  uv_connect_t creq;
  struct raft_uv_connect *req; /* outbound, until its callback has run */
  raft_uv_connect_cb cb;
  raft_id peer_id;
  char peer_addr[ADDR_MAX + 1];
  int key; /* index of the key in the ring both hold */
  uint8_t nc[NONCE_LEN], ns[NONCE_LEN], hdr_s[HDR_LEN];
  struct buf in;
  crypto_secretstream_xchacha20poly1305_state tx, rx;
};

struct rt {
  uv_loop_t *loop;
  struct keyring *kr;
  raft_id id;
  char address[ADDR_MAX + 1];
  uv_tcp_t listener;
  bool listening;
  raft_uv_accept_cb accept_cb;
  struct conn *conns;
  bool closing;
  raft_uv_transport_close_cb close_cb;
  struct raft_uv_transport *pub;
  struct rt_counters n;
};

struct wreq {
  uv_write_t w;
  struct conn *c; /* relay writes: valid in the callback (the handle's close runs after it) */
  uint8_t data[];
};

static void conn_close(struct conn *c);

/* ---- helpers ---- */

int rtx_parse_addr(const char *address, struct sockaddr_storage *sa) {
  char host[64];
  const char *colon = strrchr(address, ':'), *h = address;
  size_t hlen;
  uint64_t port;
  if (!colon || slice_to_u64(slice_cstr(colon + 1), &port) != 0 || port == 0 || port > 65535) return RAFT_INVALID;
  hlen = (size_t)(colon - address);
  bool v6 = address[0] == '[';
  if (v6) {
    if (hlen < 3 || address[hlen - 1] != ']') return RAFT_INVALID;
    h = address + 1;
    hlen -= 2;
  }
  if (hlen == 0 || hlen >= sizeof host) return RAFT_INVALID;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memset(sa, 0, sizeof *sa);
  if (v6) return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0 ? 0 : RAFT_INVALID;
  if (strchr(host, ':')) return RAFT_INVALID; /* IPv6 needs brackets: [addr]:port */
  if (strcmp(host, "localhost") == 0) str_copy(host, sizeof host, "127.0.0.1");
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0 ? 0 : RAFT_INVALID;
}

static void subkeys(const struct keyring *kr, int key, uint8_t ka[32], uint8_t ke[32]) {
  keyring_subkey(kr->keys[key], 3, "im-raft1", ka);
  keyring_subkey(kr->keys[key], 4, "im-raft2", ke);
}

static void session_key(const uint8_t ke[32], const char *dir, const uint8_t *nc, const uint8_t *ns,
                        uint8_t out[crypto_secretstream_xchacha20poly1305_KEYBYTES]) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, ke, 32, crypto_secretstream_xchacha20poly1305_KEYBYTES);
  crypto_generichash_update(&h, (const uint8_t *)dir, 3);
  crypto_generichash_update(&h, nc, NONCE_LEN);
  crypto_generichash_update(&h, ns, NONCE_LEN);
  crypto_generichash_final(&h, out, crypto_secretstream_xchacha20poly1305_KEYBYTES);
}

/* tag over role byte, both nonces and extra bytes */
static void hs_tag(const uint8_t ka[32], char role, const uint8_t *nc, const uint8_t *ns, const uint8_t *extra,
                   size_t elen, uint8_t out[crypto_auth_BYTES]) {
  crypto_auth_hmacsha512256_state h;
  crypto_auth_hmacsha512256_init(&h, ka, 32);
  crypto_auth_hmacsha512256_update(&h, (const uint8_t *)&role, 1);
  crypto_auth_hmacsha512256_update(&h, nc, NONCE_LEN);
  crypto_auth_hmacsha512256_update(&h, ns, NONCE_LEN);
  if (elen) crypto_auth_hmacsha512256_update(&h, extra, elen);
  crypto_auth_hmacsha512256_final(&h, out);
}

static void write_cb(uv_write_t *w, int status) {
  free(w);
  (void)status; /* a failed write shows up as a read error / EOF and closes the conn */
}

static void pipe_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);

/* Backpressure: a relay write that leaves the destination's queue over RT_QUEUE_HIGH stops reading the source
 * (so the kernel buffers fill and the sender is slowed in turn); reading resumes once the queue drained to
 * RT_QUEUE_LOW. Nothing is buffered beyond that, one read (at most FRAME_MAX bytes, or the frames decrypted
 * from one TCP read) past the mark. */
static void note_queue(struct conn *c, uv_stream_t *dst) {
  size_t q = uv_stream_get_write_queue_size(dst);
  if (q > c->t->n.relay_queue_max) c->t->n.relay_queue_max = q;
  if (q <= RT_QUEUE_HIGH || c->st != C_RELAY) return;
  bool to_tcp = dst == (uv_stream_t *)&c->tcp;
  bool *paused = to_tcp ? &c->pipe_paused : &c->tcp_paused;
  if (*paused) return;
  uv_read_stop(to_tcp ? (uv_stream_t *)&c->pipe : (uv_stream_t *)&c->tcp);
  *paused = true;
  c->t->n.relay_pauses++;
}

static void relay_write_cb(uv_write_t *w, int status) {
  struct wreq *r = (struct wreq *)w;
  struct conn *c = r->c;
  uv_stream_t *dst = w->handle;
  free(r);
  if (status != 0 || c->st != C_RELAY) return; /* a failed write shows up as a read error and closes the conn */
  if (uv_stream_get_write_queue_size(dst) > RT_QUEUE_LOW) return;
  if (dst == (uv_stream_t *)&c->tcp && c->pipe_paused) {
    c->pipe_paused = false;
    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, pipe_read_cb);
  } else if (dst == (uv_stream_t *)&c->pipe && c->tcp_paused) {
    c->tcp_paused = false;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb);
  }
}

static void send_raw(uv_stream_t *s, const void *data, size_t len) {
  struct wreq *w = xmalloc(sizeof *w + len);
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  if (uv_write(&w->w, s, &b, 1, write_cb) != 0) free(w);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char slab[FRAME_MAX]; /* one loop thread: the data is consumed in the read callback */
  b->base = slab;
  b->len = sizeof slab;
}

/* ---- connection lifecycle ---- */

static void handle_closed_cb(uv_handle_t *h) {
  struct conn *c = h->data;
  if (--c->handles > 0) return;
  struct rt *t = c->t;
  for (struct conn **pp = &t->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  buf_free(&c->in);
  sodium_memzero(&c->tx, sizeof c->tx);
  sodium_memzero(&c->rx, sizeof c->rx);
  free(c);
  if (t->closing && !t->conns && !t->listening && t->close_cb) {
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    cb(t->pub);
  }
}

static void connect_done(struct conn *c, uv_stream_t *stream, int status) {
  if (!c->req) return;
  struct raft_uv_connect *req = c->req;
  c->req = NULL;
  c->cb(req, stream, status);
}

static void conn_close(struct conn *c) {
  if (c->st == C_CLOSING) return;
  if (c->st != C_RELAY) c->t->n.failed++;
  c->st = C_CLOSING;
  connect_done(c, NULL, c->t->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
  uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
  uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
  if (c->pipe_open) uv_close((uv_handle_t *)&c->pipe, handle_closed_cb);
}

static void timeout_cb(uv_timer_t *tm) {
  struct conn *c = tm->data;
  log_debug("raft transport: handshake timed out", "peer=%s", c->peer_addr);
  conn_close(c);
}

static struct conn *conn_new(struct rt *t, bool outbound) {
  struct conn *c = xcalloc(1, sizeof *c);
  c->t = t;
  c->outbound = outbound;
  uv_tcp_init(t->loop, &c->tcp);
  uv_timer_init(t->loop, &c->timer);
  c->tcp.data = c->timer.data = c->pipe.data = c;
  c->handles = 2;
  c->next = t->conns;
  t->conns = c;
  uv_timer_start(&c->timer, timeout_cb, HANDSHAKE_MS, 0);
  return c;
}

/* ---- relay ---- */

static void pipe_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct conn *c = s->data;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n == 0 || c->st != C_RELAY) return;
  struct wreq *w = xmalloc(sizeof *w + 4 + (size_t)n + ABYTES);
  w->c = c;
  uint32_t clen = (uint32_t)n + ABYTES;
  w->data[0] = (uint8_t)(clen >> 24), w->data[1] = (uint8_t)(clen >> 16), w->data[2] = (uint8_t)(clen >> 8),
  w->data[3] = (uint8_t)clen;
  crypto_secretstream_xchacha20poly1305_push(&c->tx, w->data + 4, NULL, (const uint8_t *)b->base, (size_t)n, NULL, 0,
                                             0);
  uv_buf_t ob = uv_buf_init((char *)w->data, 4 + clen);
  c->t->n.frames_out++;
  if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &ob, 1, relay_write_cb) != 0) {
    free(w);
    conn_close(c);
    return;
  }
  note_queue(c, (uv_stream_t *)&c->tcp);
}

/* relay_in decrypts whole frames from c->in to the pipe. false: close. */
static bool relay_in(struct conn *c) {
  size_t off = 0;
  bool ok = true;
  while (c->in.len - off >= 4) {
    const uint8_t *p = (const uint8_t *)c->in.base + off;
    uint32_t clen;
    int fr = rtx_frame_next(p, c->in.len - off, &clen);
    if (fr < 0) {
      ok = false;
      break;
    }
    if (fr == 0) break;
    struct wreq *w = xmalloc(sizeof *w + clen);
    w->c = c;
    unsigned long long plen;
    uint8_t tag;
    if (crypto_secretstream_xchacha20poly1305_pull(&c->rx, w->data, &plen, &tag, p + 4, clen, NULL, 0) != 0) {
      free(w);
      c->t->n.refused_auth++;
      ok = false;
      break;
    }
    c->t->n.frames_in++;
    uv_buf_t ob = uv_buf_init((char *)w->data, (unsigned)plen);
    if (uv_write(&w->w, (uv_stream_t *)&c->pipe, &ob, 1, relay_write_cb) != 0) {
      free(w);
      ok = false;
      break;
    }
    off += 4 + clen;
  }
  if (ok) note_queue(c, (uv_stream_t *)&c->pipe);
  buf_consume(&c->in, off);
  return ok;
}

static void free_raft_handle(uv_handle_t *h) { raft_free(h); }

/* go_relay: the handshake is done; make the socketpair, give raft its end. */
static void go_relay(struct conn *c) {
  int sv[2];
  uv_pipe_t *theirs = raft_malloc(sizeof *theirs);
  if (!theirs || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    raft_free(theirs);
    conn_close(c);
    return;
  }
  uv_pipe_init(c->t->loop, &c->pipe, 0);
  uv_pipe_init(c->t->loop, theirs, 0);
  c->pipe_open = true;
  c->handles++;
  if (uv_pipe_open(&c->pipe, sv[0]) != 0 || uv_pipe_open(theirs, sv[1]) != 0) {
    close(sv[0]);
    close(sv[1]);
    uv_close((uv_handle_t *)theirs, free_raft_handle);
    conn_close(c);
    return;
  }
  uv_timer_stop(&c->timer);
  c->st = C_RELAY;
  uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, pipe_read_cb);
  if (c->outbound) {
    c->t->n.connected++;
    connect_done(c, (uv_stream_t *)theirs, 0);
  } else {
    c->t->n.accepted++;
    if (c->t->accept_cb && !c->t->closing) {
      c->t->accept_cb(c->t->pub, c->peer_id, c->peer_addr, (uv_stream_t *)theirs);
    } else {
      uv_close((uv_handle_t *)theirs, free_raft_handle);
    }
  }
  if (c->in.len && c->st == C_RELAY && !relay_in(c)) conn_close(c);
}

/* ---- pure parsers (raft_transport.h) ---- */

int rtx_parse_hello(const uint8_t *in, size_t len, uint8_t nc[RTX_NONCE_LEN]) {
  if (len < HELLO_LEN) return -EAGAIN;
  if (memcmp(in, HELLO_MAGIC, 8) != 0) return -EPROTO;
  memcpy(nc, in + 8, NONCE_LEN);
  return 0;
}

int rtx_check_server_reply(const struct keyring *kr, const uint8_t nc[RTX_NONCE_LEN], const uint8_t *in, size_t len,
                           uint8_t ns[RTX_NONCE_LEN], crypto_secretstream_xchacha20poly1305_state *rx) {
  if (len < REPLY_LEN) return -EAGAIN;
  uint8_t ka[32], ke[32], k[32], tag[crypto_auth_BYTES];
  int found = -1;
  for (int i = 0; i < kr->nkeys && found < 0; i++) {
    subkeys(kr, i, ka, ke);
    hs_tag(ka, 'S', nc, in, NULL, 0, tag);
    if (sodium_memcmp(tag, in + NONCE_LEN, crypto_auth_BYTES) == 0) found = i;
  }
  if (found < 0) {
    sodium_memzero(ka, 32), sodium_memzero(ke, 32);
    return -EACCES;
  }
  memcpy(ns, in, NONCE_LEN);
  session_key(ke, "s2c", nc, ns, k);
  bool ok = crypto_secretstream_xchacha20poly1305_init_pull(rx, in + NONCE_LEN + crypto_auth_BYTES, k) == 0;
  sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  return ok ? found : -EBADMSG;
}

size_t rtx_finish_len(const uint8_t *in, size_t len) {
  if (len < FINISH_MIN) return 0;
  return FINISH_MIN + in[crypto_auth_BYTES + HDR_LEN + 8];
}

int rtx_check_client_finish(const struct keyring *kr, int key, const uint8_t nc[RTX_NONCE_LEN],
                            const uint8_t ns[RTX_NONCE_LEN], const uint8_t *in, size_t len,
                            crypto_secretstream_xchacha20poly1305_state *rx, raft_id *peer_id,
                            char peer_addr[RTX_ADDR_MAX + 1]) {
  size_t need = rtx_finish_len(in, len);
  if (need == 0 || len < need) return -EAGAIN;
  uint8_t ka[32], ke[32], k[32], tag[crypto_auth_BYTES];
  subkeys(kr, key, ka, ke);
  hs_tag(ka, 'C', nc, ns, in + crypto_auth_BYTES, need - crypto_auth_BYTES, tag);
  bool ok = sodium_memcmp(tag, in, crypto_auth_BYTES) == 0;
  if (ok) {
    session_key(ke, "c2s", nc, ns, k);
    ok = crypto_secretstream_xchacha20poly1305_init_pull(rx, in + crypto_auth_BYTES, k) == 0;
    const uint8_t *q = in + crypto_auth_BYTES + HDR_LEN;
    *peer_id = 0;
    for (int i = 0; i < 8; i++) *peer_id = *peer_id << 8 | q[i];
    memcpy(peer_addr, q + 9, q[8]);
    peer_addr[q[8]] = '\0';
  }
  sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  return ok ? 0 : -EACCES;
}

int rtx_frame_next(const uint8_t *in, size_t len, uint32_t *clen) {
  if (len < 4) return 0;
  uint32_t n = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
  if (n < ABYTES || n > FRAME_MAX + ABYTES) return -EPROTO;
  *clen = n;
  return len - 4 < n ? 0 : 1;
}

/* ---- handshake ---- */

static bool hs_server_hello(struct conn *c) {
  struct rt *t = c->t;
  if (rtx_parse_hello((const uint8_t *)c->in.base, c->in.len, c->nc) != 0) return false;
  buf_consume(&c->in, HELLO_LEN);
  randombytes_buf(c->ns, NONCE_LEN);
  uint8_t ka[32], ke[32], k[32], out[REPLY_LEN];
  c->key = 0;
  subkeys(t->kr, 0, ka, ke);
  memcpy(out, c->ns, NONCE_LEN);
  hs_tag(ka, 'S', c->nc, c->ns, NULL, 0, out + NONCE_LEN);
  session_key(ke, "s2c", c->nc, c->ns, k);
  crypto_secretstream_xchacha20poly1305_init_push(&c->tx, out + NONCE_LEN + crypto_auth_BYTES, k);
  sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  send_raw((uv_stream_t *)&c->tcp, out, sizeof out);
  c->st = C_FINISH;
  return true;
}

static bool hs_server_finish(struct conn *c, size_t need) {
  if (rtx_check_client_finish(c->t->kr, c->key, c->nc, c->ns, (const uint8_t *)c->in.base, need, &c->rx,
                              &c->peer_id, c->peer_addr) != 0) {
    c->t->n.refused_auth++;
    log_warn("raft transport: a peer failed the cluster-key handshake", "peer=%s", "inbound");
    return false;
  }
  buf_consume(&c->in, need);
  go_relay(c);
  return true;
}

static bool hs_client_reply(struct conn *c) {
  struct rt *t = c->t;
  uint8_t ka[32], ke[32], k[32];
  int found = rtx_check_server_reply(t->kr, c->nc, (const uint8_t *)c->in.base, c->in.len, c->ns, &c->rx);
  if (found == -EACCES || found == -EAGAIN) {
    t->n.refused_auth++;
    log_warn("raft transport: server failed the cluster-key handshake", "peer=%s", c->peer_addr);
    return false;
  }
  buf_consume(&c->in, REPLY_LEN);
  if (found < 0) return false; /* the server's stream header was refused */
  subkeys(t->kr, found, ka, ke);
  size_t alen = strlen(t->address);
  uint8_t out[FINISH_MIN + ADDR_MAX];
  uint8_t *q = out + crypto_auth_BYTES;
  session_key(ke, "c2s", c->nc, c->ns, k);
  crypto_secretstream_xchacha20poly1305_init_push(&c->tx, q, k);
  for (int i = 0; i < 8; i++) q[HDR_LEN + i] = (uint8_t)(t->id >> (56 - 8 * i));
  q[HDR_LEN + 8] = (uint8_t)alen;
  memcpy(q + HDR_LEN + 9, t->address, alen);
  size_t elen = HDR_LEN + 9 + alen;
  hs_tag(ka, 'C', c->nc, c->ns, q, elen, out);
  sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  send_raw((uv_stream_t *)&c->tcp, out, crypto_auth_BYTES + elen);
  go_relay(c);
  return true;
}

static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct conn *c = s->data;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (c->st == C_CLOSING) return;
  if (c->in.len + (size_t)n > INBUF_MAX + FRAME_MAX) {
    conn_close(c);
    return;
  }
  buf_append(&c->in, b->base, (size_t)n);
  bool ok = true;
  if (c->st == C_HELLO && c->in.len >= HELLO_LEN) ok = hs_server_hello(c);
  if (ok && c->st == C_FINISH && c->in.len >= FINISH_MIN) {
    size_t need = rtx_finish_len((const uint8_t *)c->in.base, c->in.len);
    if (c->in.len >= need) ok = hs_server_finish(c, need);
  }
  if (ok && c->st == C_REPLY && c->in.len >= REPLY_LEN) ok = hs_client_reply(c);
  else if (ok && c->st == C_RELAY) ok = relay_in(c);
  if (!ok) conn_close(c);
}

/* ---- raft_uv_transport methods ---- */

static int t_init(struct raft_uv_transport *pub, raft_id id, const char *address) {
  struct rt *t = pub->impl;
  if (strlen(address) > ADDR_MAX) return RAFT_NAMETOOLONG;
  t->id = id;
  str_copy(t->address, sizeof t->address, address);
  return 0;
}

static void accept_cb(uv_stream_t *server, int status) {
  struct rt *t = server->data;
  if (status != 0 || t->closing) return;
  struct conn *c = conn_new(t, false);
  str_copy(c->peer_addr, sizeof c->peer_addr, "inbound");
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->st = C_HELLO;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb);
}

static int t_listen(struct raft_uv_transport *pub, raft_uv_accept_cb cb) {
  struct rt *t = pub->impl;
  struct sockaddr_storage sa;
  int rc;
  if (rtx_parse_addr(t->address, &sa) != 0) {
    snprintf(pub->errmsg, sizeof pub->errmsg, "raft address '%s' is not IPv4:PORT or [IPv6]:PORT", t->address);
    return RAFT_INVALID;
  }
  uv_tcp_init(t->loop, &t->listener);
  t->listener.data = t;
  t->listening = true;
  if ((rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&sa, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&t->listener, 64, accept_cb)) != 0) {
    snprintf(pub->errmsg, sizeof pub->errmsg, "raft port %s: %s: pass --raft HOST:PORT", t->address,
             uv_strerror(rc));
    return RAFT_IOERR;
  }
  t->accept_cb = cb;
  return 0;
}

static void connected_cb(uv_connect_t *r, int status) {
  struct conn *c = r->data;
  if (c->st == C_CLOSING) return;
  if (status != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uint8_t hello[HELLO_LEN];
  memcpy(hello, HELLO_MAGIC, 8);
  randombytes_buf(c->nc, NONCE_LEN);
  memcpy(hello + 8, c->nc, NONCE_LEN);
  send_raw((uv_stream_t *)&c->tcp, hello, sizeof hello);
  c->st = C_REPLY;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb);
}

static int t_connect(struct raft_uv_transport *pub, struct raft_uv_connect *req, raft_id id, const char *address,
                     raft_uv_connect_cb cb) {
  struct rt *t = pub->impl;
  struct sockaddr_storage sa;
  if (t->closing) return RAFT_CANCELED;
  if (rtx_parse_addr(address, &sa) != 0) return RAFT_NOCONNECTION;
  struct conn *c = conn_new(t, true);
  c->req = req;
  c->cb = cb;
  c->peer_id = id;
  str_copy(c->peer_addr, sizeof c->peer_addr, address);
  c->creq.data = c;
  if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, connected_cb) != 0) {
    c->req = NULL; /* failed synchronously: raft learns it from our return value */
    conn_close(c);
    return RAFT_NOCONNECTION;
  }
  return 0;
}

static void listener_closed_cb(uv_handle_t *h) {
  struct rt *t = h->data;
  t->listening = false;
  if (!t->conns && t->close_cb) {
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    cb(t->pub);
  }
}

static void t_close(struct raft_uv_transport *pub, raft_uv_transport_close_cb cb) {
  struct rt *t = pub->impl;
  t->closing = true;
  t->close_cb = cb;
  for (struct conn *c = t->conns; c; c = c->next) conn_close(c);
  if (t->listening) {
    uv_close((uv_handle_t *)&t->listener, listener_closed_cb);
  } else if (!t->conns) {
    t->close_cb = NULL;
    cb(pub); /* nothing to wait for */
  }
}

int rt_init(struct raft_uv_transport *pub, uv_loop_t *loop, struct keyring *kr) {
  if (sodium_init() < 0) abort();
  struct rt *t = calloc(1, sizeof *t);
  if (!t) return RAFT_NOMEM;
  t->loop = loop;
  t->kr = kr;
  t->pub = pub;
  memset(pub, 0, sizeof *pub);
  pub->impl = t;
  pub->init = t_init;
  pub->listen = t_listen;
  pub->connect = t_connect;
  pub->close = t_close;
  return 0;
}

void rt_free(struct raft_uv_transport *pub) {
  free(pub->impl);
  pub->impl = NULL;
}

const struct rt_counters *rt_counters(const struct raft_uv_transport *pub) {
  return &((const struct rt *)pub->impl)->n;
}
