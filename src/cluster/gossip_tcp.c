/* Gossip over TCP: push-pull anti-entropy and serving invite joins, one exchange per connection. */
#include "cluster/gossip_tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>

#include "cluster/invite.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slice.h"
#include "proto/gossip_codec.h"

#define MAX_OUTGOING 8
/* Incoming connections that have not yet delivered their one frame are unauthenticated: anyone can open
 * them. They are bounded per source address and in total, and a new one past a bound evicts the oldest
 * such connection (of that address, else of all) instead of being refused: whoever holds idle connections
 * open cannot lock a legitimate joiner out, since its frame follows its connect at once. */
#define MAX_UNAUTH_PER_ADDR 16
#define SETTLE_MS 250 /* a connection younger than this is never evicted: a burst of streams (the tunnel shares
                       * this port) delivers its first bytes within it */
#define MAX_UNAUTH 64
#define MAX_INCOMING 256     /* all incoming, answered ones included: beyond this, new ones are refused */
#define FIRST_FRAME_MS 2000u /* an incoming connection must deliver its whole frame within this */

struct xconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect;
  uv_write_t write;
  struct gossip_tcp *x;
  struct xconn *prev, *next;
  char addr[GOSSIP_ADDR_MAX];
  bool outgoing, join, closing;
  bool framed; /* incoming: its frame arrived (it is being answered) */
  uint64_t born_ms; /* loop time it was accepted */
  int open; /* handles not yet closed */
  uint8_t *rbuf;
  size_t rlen, rcap;
  uint8_t *wbuf;
};

struct gossip_tcp {
  uv_loop_t *loop;
  struct swim *swim;
  struct keyring *kr;
  struct gossip_counters *counters;
  uint32_t timeout_ms;
  void (*changed_cb)(void *);
  void (*closed_cb)(void *);
  void *arg;
  struct xconn *conns;
  int noutgoing, nincoming;
  uint64_t evicted; /* unauthenticated connections closed to make room (logged now and then) */
  bool closing;
  gossip_stream_cb stream_cb; /* another protocol on this port (gossip_tcp_set_stream_handler) */
  void *stream_arg;
};

struct gossip_tcp *gossip_tcp_new(uv_loop_t *loop, struct swim *swim, struct keyring *kr,
                                  struct gossip_counters *counters, uint32_t timeout_ms, void (*changed_cb)(void *),
                                  void (*closed_cb)(void *), void *arg) {
  struct gossip_tcp *x = xcalloc(1, sizeof *x);
  x->loop = loop;
  x->swim = swim;
  x->kr = kr;
  x->counters = counters;
  x->timeout_ms = timeout_ms;
  x->changed_cb = changed_cb;
  x->closed_cb = closed_cb;
  x->arg = arg;
  return x;
}

static void maybe_closed(struct gossip_tcp *x) {
  if (!x->closing || x->conns) return;
  void (*cb)(void *) = x->closed_cb;
  void *arg = x->arg;
  free(x);
  cb(arg);
}

static void conn_handle_closed_cb(uv_handle_t *h) {
  struct xconn *c = h->data;
  if (--c->open > 0) return;
  struct gossip_tcp *x = c->x;
  if (c->prev) c->prev->next = c->next;
  else x->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->outgoing) x->noutgoing--;
  else x->nincoming--;
  free(c->rbuf);
  free(c->wbuf);
  free(c);
  maybe_closed(x);
}

static void conn_close(struct xconn *c) {
  if (c->closing) return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

static void timeout_cb(uv_timer_t *t) {
  struct xconn *c = t->data;
  if (c->outgoing) {
    c->x->counters->pushpull_failed++;
    log_debug("gossip push-pull timed out", "peer=%s", c->addr);
  }
  conn_close(c);
}

static struct xconn *conn_new(struct gossip_tcp *x, bool outgoing) {
  struct xconn *c = xcalloc(1, sizeof *c);
  c->x = x;
  c->outgoing = outgoing;
  uv_tcp_init(x->loop, &c->tcp);
  uv_timer_init(x->loop, &c->timer);
  c->tcp.data = c->timer.data = c->connect.data = c->write.data = c;
  c->open = 2;
  c->next = x->conns;
  if (x->conns) x->conns->prev = c;
  x->conns = c;
  if (outgoing) x->noutgoing++;
  else x->nincoming++;
  uv_timer_start(&c->timer, timeout_cb, x->timeout_ms, 0);
  return c;
}

/* ---- frames ---- */

static void written_cb(uv_write_t *w, int status) {
  struct xconn *c = w->data;
  free(c->wbuf);
  c->wbuf = NULL;
  /* A reply (server side) ends the exchange; a request waits for the reply. */
  if (status != 0 || !c->outgoing) conn_close(c);
}

/* Send one frame of type with payload (copied into the frame). */
static void send_frame(struct xconn *c, int type, const uint8_t *payload, size_t len) {
  c->wbuf = xmalloc(len + 5);
  uint32_t n = (uint32_t)len + 1;
  c->wbuf[0] = (uint8_t)(n >> 24);
  c->wbuf[1] = (uint8_t)(n >> 16);
  c->wbuf[2] = (uint8_t)(n >> 8);
  c->wbuf[3] = (uint8_t)n;
  c->wbuf[4] = (uint8_t)type;
  if (len) memcpy(c->wbuf + 5, payload, len);
  uv_buf_t b = uv_buf_init((char *)c->wbuf, (unsigned)(len + 5));
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, written_cb) != 0) conn_close(c);
}

/* Seal and send this node's whole table as a PUSHPULL frame. */
static int send_table(struct xconn *c, bool join) {
  struct gossip_tcp *x = c->x;
  struct gossip_update *ups = xmalloc(GOSSIP_PUSHPULL_MAX * sizeof *ups);
  int n = swim_snapshot(x->swim, ups, GOSSIP_PUSHPULL_MAX);
  struct gossip_pushpull pp = {.join = join, .nmembers = n, .members = ups};
  memcpy(pp.from, ups[0].id, GOSSIP_ID_LEN);
  uint8_t *enc = NULL;
  size_t enclen = 0;
  int rc = gossip_encode_pushpull(&pp, &enc, &enclen);
  free(ups);
  if (rc != 0) return rc;
  uint8_t *sealed = xmalloc(enclen + KEYRING_OVERHEAD);
  ssize_t m = keyring_seal(x->kr, enc, enclen, sealed, enclen + KEYRING_OVERHEAD);
  free(enc);
  if (m < 0) {
    free(sealed);
    return (int)m;
  }
  send_frame(c, FRAME_PUSHPULL, sealed, (size_t)m);
  free(sealed);
  return 0;
}

static int merge_table(struct xconn *c, const uint8_t *payload, size_t len) {
  struct gossip_tcp *x = c->x;
  uint8_t *plain = xmalloc(len);
  ssize_t n = keyring_open(x->kr, payload, len, plain, len);
  if (n < 0) {
    free(plain);
    x->counters->dropped_auth++;
    return -EBADMSG;
  }
  struct gossip_pushpull pp;
  int rc = gossip_decode_pushpull(plain, (size_t)n, &pp);
  free(plain);
  if (rc != 0) {
    x->counters->dropped_malformed++;
    return rc;
  }
  swim_merge(x->swim, pp.members, pp.nmembers, clock_mono_ns() / 1000000u);
  gossip_pushpull_free(&pp);
  x->changed_cb(x->arg);
  return 0;
}

static void serve_join(struct xconn *c, const uint8_t *payload, size_t len) {
  struct gossip_tcp *x = c->x;
  uint8_t pk[32], secret[32];
  char id[13];
  int rc = invite_check_request(x->kr, payload, len, (int64_t)time(NULL), pk, secret);
  if (rc != 0) {
    const char *why = rc == -ETIMEDOUT ? "invite token expired: ask for a new one (infermesh invite)"
                                       : "invite token not valid for this cluster";
    x->counters->joins_refused++;
    log_warn("invite join refused", "peer=%s reason=\"%s\"", c->addr, why);
    send_frame(c, FRAME_JOIN_DENY, (const uint8_t *)why, strlen(why));
    return;
  }
  uint8_t out[1024];
  int n = invite_seal_keyring(x->kr, secret, out, sizeof out);
  sodium_memzero(secret, sizeof secret);
  if (n < 0) {
    conn_close(c);
    return;
  }
  identity_short(pk, id);
  x->counters->joins_served++;
  log_info("invite join accepted: sent the cluster key", "peer=%s node=%s", c->addr, id);
  send_frame(c, FRAME_JOIN_OK, out, (size_t)n);
}

/* A whole frame arrived in c->rbuf. */
static void on_frame(struct xconn *c) {
  struct gossip_tcp *x = c->x;
  int type = c->rbuf[4];
  const uint8_t *payload = c->rbuf + 5;
  size_t len = c->rlen - 5;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (!c->outgoing) {
    c->framed = true;
    uv_timer_start(&c->timer, timeout_cb, x->timeout_ms, 0); /* the reply gets the whole exchange time */
  }
  if (type == FRAME_PUSHPULL) {
    int rc = merge_table(c, payload, len);
    if (c->outgoing) {
      if (rc == 0) x->counters->pushpull_out++;
      else x->counters->pushpull_failed++;
      conn_close(c);
    } else if (rc == 0) {
      x->counters->pushpull_in++;
      if (send_table(c, false) != 0) conn_close(c);
    } else {
      conn_close(c);
    }
  } else if (type == FRAME_JOIN_REQ && !c->outgoing) {
    serve_join(c, payload, len);
  } else {
    x->counters->dropped_malformed++;
    conn_close(c);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  struct xconn *c = h->data;
  if (c->rcap - c->rlen < 4096) {
    size_t want = c->rcap ? c->rcap * 2 : 8192;
    if (want > GOSSIP_FRAME_MAX + 5) want = GOSSIP_FRAME_MAX + 5;
    if (want > c->rcap) {
      c->rbuf = xrealloc(c->rbuf, want);
      c->rcap = want;
    }
  }
  b->base = (char *)c->rbuf + c->rlen;
  b->len = c->rcap - c->rlen;
}

/* hand_over gives an incoming connection of another protocol to the stream handler: a duplicate of its socket
 * and what was read; this side closes its own. */
static void hand_over(struct xconn *c) {
  uv_os_fd_t fd;
  int dup_fd = -1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd >= 0) c->x->stream_cb(c->x->stream_arg, dup_fd, c->rbuf, c->rlen);
  conn_close(c);
}

void gossip_tcp_set_stream_handler(struct gossip_tcp *x, gossip_stream_cb cb, void *arg) {
  x->stream_cb = cb;
  x->stream_arg = arg;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct xconn *c = s->data;
  if (nread < 0) {
    if (c->outgoing) c->x->counters->pushpull_failed++;
    conn_close(c);
    return;
  }
  c->rlen += (size_t)nread;
  if (!c->outgoing && c->rbuf[0] != 0 && c->x->stream_cb) {
    hand_over(c);
    return;
  }
  if (c->rlen < 5) return;
  uint32_t n = (uint32_t)c->rbuf[0] << 24 | (uint32_t)c->rbuf[1] << 16 | (uint32_t)c->rbuf[2] << 8 | c->rbuf[3];
  if (n == 0 || n > GOSSIP_FRAME_MAX) {
    c->x->counters->dropped_malformed++;
    conn_close(c);
    return;
  }
  if (c->rlen < (size_t)n + 4) {
    if (c->rlen == c->rcap) conn_close(c); /* cannot happen: rcap covers the largest frame */
    return;
  }
  c->rlen = (size_t)n + 4;
  on_frame(c);
}

static bool unauthenticated(const struct xconn *c) { return !c->outgoing && !c->framed && !c->closing; }

/* make_room closes the oldest unauthenticated incoming connection from c's address when that address holds
 * MAX_UNAUTH_PER_ADDR of them, else the oldest of all when there are MAX_UNAUTH (c itself, and connections
 * younger than SETTLE_MS, excluded: MAX_INCOMING still bounds them). The
 * list is newest first, so the oldest is the last match. */
static void make_room(struct gossip_tcp *x, const struct xconn *c) {
  struct xconn *oldest_here = NULL, *oldest = NULL, *victim = NULL;
  int here = 0, all = 0;
  for (struct xconn *o = x->conns; o; o = o->next) {
    if (o == c || !unauthenticated(o) || uv_now(x->loop) - o->born_ms < SETTLE_MS) continue;
    all++;
    oldest = o;
    if (strcmp(o->addr, c->addr) == 0) here++, oldest_here = o;
  }
  if (here >= MAX_UNAUTH_PER_ADDR)
    victim = oldest_here;
  else if (all >= MAX_UNAUTH)
    victim = oldest;
  if (!victim) return;
  if (x->evicted++ % 1000 == 0)
    log_warn("gossip: too many idle connections, closing the oldest", "peer=%s closed_so_far=%llu",
             victim->addr, (unsigned long long)x->evicted);
  conn_close(victim);
}

void gossip_tcp_accept(struct gossip_tcp *x, uv_stream_t *server) {
  struct xconn *c = conn_new(x, false);
  c->born_ms = uv_now(x->loop);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || x->nincoming > MAX_INCOMING) {
    conn_close(c);
    return;
  }
  struct sockaddr_storage sa;
  int len = sizeof sa;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
    char ip[64] = "?";
    if (sa.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
    else
      uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
    str_copy(c->addr, sizeof c->addr, ip);
  }
  /* Another protocol's connection whose first bytes are already here goes over at once: it never counts
   * among the unauthenticated gossip connections (a peer opening many tunnel streams at once must not
   * evict its own). */
  uint8_t first;
  uv_os_fd_t fd;
  if (x->stream_cb && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
      recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT) == 1 && first != 0) {
    hand_over(c);
    return;
  }
  make_room(x, c);
  uv_timer_start(&c->timer, timeout_cb, FIRST_FRAME_MS < x->timeout_ms ? FIRST_FRAME_MS : x->timeout_ms, 0);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void connect_cb(uv_connect_t *req, int status) {
  struct xconn *c = req->data;
  if (c->closing) return;
  if (status != 0) {
    c->x->counters->pushpull_failed++;
    log_debug("gossip push-pull: cannot connect", "peer=%s err=\"%s\"", c->addr, uv_strerror(status));
    conn_close(c);
    return;
  }
  if (send_table(c, c->join) != 0) {
    conn_close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

void gossip_tcp_push_pull(struct gossip_tcp *x, const char *addr, bool join) {
  struct sockaddr_storage sa;
  if (x->closing || x->noutgoing >= MAX_OUTGOING) return;
  for (struct xconn *c = x->conns; c; c = c->next)
    if (c->outgoing && strcmp(c->addr, addr) == 0) return;
  if (gossip_parse_addr(addr, &sa) != 0) {
    log_warn("gossip: bad peer address", "addr=\"%s\"", addr);
    return;
  }
  struct xconn *c = conn_new(x, true);
  str_copy(c->addr, sizeof c->addr, addr);
  c->join = join;
  if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&sa, connect_cb) != 0) {
    x->counters->pushpull_failed++;
    conn_close(c);
  }
}

int gossip_tcp_outgoing(const struct gossip_tcp *x) { return x->noutgoing; }

void gossip_tcp_close(struct gossip_tcp *x) {
  x->closing = true;
  for (struct xconn *c = x->conns; c; c = c->next) conn_close(c);
  maybe_closed(x);
}
