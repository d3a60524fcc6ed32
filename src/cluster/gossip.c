/* The gossip transport: SWIM over encrypted UDP, TCP push-pull and invite joins, load push (full reports
 * direct, compact deltas over the relay grid). */
#include "cluster/gossip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/gossip_tcp.h"
#include "cluster/load_delta.h"
#include "cluster/load_grid.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slice.h"
#include "proto/gossip_codec.h"

#define MAX_PEERS 1024

/* What the transport remembers about each member beyond SWIM's table: roles (from meta) and the newest load
 * report seen, as (boot, seq), so that reordered or replayed reports are ignored while a restarted process
 * (a higher boot, counting seq from 1 again) is heard at once. A member SWIM forgot keeps its entry
 * (forgotten) so that a replay of its old reports cannot roll its state back when it comes back. */
struct peer {
  uint8_t id[GOSSIP_ID_LEN];
  char addr[GOSSIP_ADDR_MAX];
  uint32_t roles;
  bool alive, forgotten;
  uint64_t load_boot, load_seq;
  uint64_t cache_boot, cache_seq; /* the newest cache report seen, the same way */
  uint64_t forgotten_ms;
  struct gossip_load *full; /* the last full load report taken from it: the base of its deltas (malloc'd) */
  bool need_full;           /* alive again or new: our next report goes to it in full */
};

/* One member's place in the relay grid (cluster/load_grid.h): members sorted by id. */
struct grid_member {
  uint8_t id[GOSSIP_ID_LEN];
  int peer; /* index in peers; -1 for this node */
};

struct gossip {
  uv_loop_t *loop;
  struct gossip_config cfg;
  const struct identity *id;
  struct keyring *kr;
  struct swim *swim;
  struct gossip_callbacks cb;
  void *user;
  uv_udp_t udp;
  uv_tcp_t tcp;
  uv_timer_t timer;      /* SWIM's next deadline */
  uv_timer_t load_timer; /* load push pacing */
  uv_timer_t leave_timer;
  uv_timer_t seed_timer; /* re-contacts the join seeds, so that a partition longer than the tombstones heals */
  char seeds[8][GOSSIP_ADDR_MAX];
  int nseeds, next_seed;
  char advertise[GOSSIP_ADDR_MAX];
  int port;
  struct gossip_counters counters;
  struct peer *peers;
  int npeers;
  /* load push */
  struct gossip_load load;
  bool have_load, load_changed;
  uint64_t boot_id, load_seq, load_sent_ms, load_signal_ms;
  uint64_t load_fanout_bytes; /* what the last full report cost, every gateway's copy counted */
  uint64_t full_sent_ms;
  uint32_t full_layout;       /* load_delta_layout of the last full report sent to every gateway */
  bool full_sent;
  struct gossip_load_delta relay[GOSSIP_DIGEST_ENTRIES]; /* deltas of this node's row, to relay */
  int nrelay;
  uv_timer_t relay_timer;
  struct grid_member *grid; /* scratch: MAX_PEERS + 1 */
  int ngrid, grid_self;
  struct gossip_load dload; /* scratch: a delta applied to its base */
  uint64_t cache_seq;
  uint64_t spend_seq;
  /* scratch, so that no datagram needs a large stack frame or an allocation */
  struct gossip_packet pkt; /* outgoing: SWIM may send while it still reads `rx` */
  struct gossip_packet rx;
  uint8_t plain[GOSSIP_PACKET_MAX + 512];
  uint8_t sealed[GOSSIP_PACKET_MAX + 512 + KEYRING_OVERHEAD];
  char rxbuf[65536];
  bool rx_busy;
  /* leave / close */
  void (*leave_cb)(void *arg);
  void *leave_arg;
  uint64_t leave_deadline_ms;
  void (*closed_cb)(void *arg);
  void *closed_arg;
  int open_handles;
  bool closing;
  struct gossip_tcp *tcpx; /* push-pull and join exchanges */
};

void gossip_config_default(struct gossip_config *c) {
  memset(c, 0, sizeof *c);
  str_copy(c->bind_host, sizeof c->bind_host, "127.0.0.1");
  c->bind_port = 7946;
  swim_config_default(&c->swim);
  c->load_min_interval_ms = 100;
  c->load_max_interval_ms = 500;
  c->load_full_interval_ms = 10000;
  c->load_relay_ms = 50;
  c->load_budget_bytes_s = 8 * 1024;
  c->tcp_timeout_ms = 5000;
}

static uint64_t now_ms(void) { return clock_mono_ns() / 1000000u; }

static uint64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- addresses ---- */

int gossip_parse_addr(const char *s, struct sockaddr_storage *out) {
  char host[GOSSIP_ADDR_MAX];
  const char *colon;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host) return -EINVAL;
    memcpy(host, s + 1, (size_t)(end - s - 1));
    host[end - s - 1] = '\0';
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
  }
  uint64_t port;
  if (slice_to_u64(slice_cstr(colon + 1), &port) != 0 || port == 0 || port > 65535) return -EINVAL;
  if (strcmp(host, "localhost") == 0) str_copy(host, sizeof host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) return 0;
  return -EINVAL;
}

static void addr_string(const struct sockaddr *sa, char *out, size_t cap) {
  char ip[64] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    snprintf(out, cap, "%s:%d", ip, port);
  } else {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    snprintf(out, cap, "[%s]:%d", ip, port);
  }
}

/* ---- peers ---- */

static struct peer *peer_find(struct gossip *g, const uint8_t id[GOSSIP_ID_LEN], bool create) {
  for (int i = 0; i < g->npeers; i++)
    if (memcmp(g->peers[i].id, id, GOSSIP_ID_LEN) == 0) {
      if (create) g->peers[i].forgotten = false;
      return &g->peers[i];
    }
  if (!create) return NULL;
  struct peer *p = NULL;
  if (g->npeers < MAX_PEERS) {
    p = &g->peers[g->npeers++];
  } else { /* full: reuse the entry forgotten longest ago (its replay memory is the least useful) */
    for (int i = 0; i < g->npeers; i++)
      if (g->peers[i].forgotten && (!p || g->peers[i].forgotten_ms < p->forgotten_ms)) p = &g->peers[i];
    if (!p) return NULL;
    free(p->full);
  }
  memset(p, 0, sizeof *p);
  memcpy(p->id, id, GOSSIP_ID_LEN);
  return p;
}

static void peer_forget(struct gossip *g, const uint8_t id[GOSSIP_ID_LEN]) {
  struct peer *p = peer_find(g, id, false);
  if (!p) return;
  p->alive = false;
  p->forgotten = true;
  p->forgotten_ms = now_ms();
  free(p->full); /* its (boot, seq) stay: the replay memory */
  p->full = NULL;
}

/* ---- UDP ---- */

/* Encode, seal and send g->pkt to addr; a datagram that cannot go right now is dropped (gossip tolerates
 * loss; retrying would only add latency). */
static void send_pkt(struct gossip *g, const char *addr) {
  struct sockaddr_storage sa;
  if (gossip_parse_addr(addr, &sa) != 0) {
    g->counters.dropped_send++;
    return;
  }
  int n = gossip_encode_packet(&g->pkt, g->plain, sizeof g->plain);
  if (n < 0) {
    g->counters.dropped_send++;
    log_warn("gossip packet too large: dropped", "kind=%d", (int)g->pkt.kind);
    return;
  }
  ssize_t m = keyring_seal(g->kr, g->plain, (size_t)n, g->sealed, sizeof g->sealed);
  if (m < 0) {
    g->counters.dropped_send++;
    return;
  }
  uv_buf_t b = uv_buf_init((char *)g->sealed, (unsigned)m);
  if (uv_udp_try_send(&g->udp, &b, 1, (const struct sockaddr *)&sa) < 0) {
    g->counters.dropped_send++;
    return;
  }
  g->counters.udp_out++;
  g->counters.bytes_out += (uint64_t)m;
}

static void swim_send_cb(void *user, const char *addr, const struct gossip_msg *m) {
  struct gossip *g = user;
  g->pkt.kind = GOSSIP_PKT_SWIM;
  /* Only the header and the updates in use: a full struct gossip_msg is ~16 KB. */
  int n = m->nupdates < 0 ? 0 : m->nupdates > GOSSIP_MAX_UPDATES ? GOSSIP_MAX_UPDATES : m->nupdates;
  memcpy(&g->pkt.u.swim, m, offsetof(struct gossip_msg, updates) + (size_t)n * sizeof m->updates[0]);
  send_pkt(g, addr);
}

static void arm(struct gossip *g);

static void swim_event_cb(void *user, const struct swim_member *m, enum swim_event ev) {
  struct gossip *g = user;
  struct gossip_meta meta;
  const struct gossip_meta *mp = NULL;
  if (m->is_self) return;
  if (ev == SWIM_EV_FORGOTTEN) {
    peer_forget(g, m->u.id);
  } else {
    struct peer *p = peer_find(g, m->u.id, true);
    if (p) {
      str_copy(p->addr, sizeof p->addr, m->u.addr);
      bool was = p->alive;
      p->alive = m->u.state == GOSSIP_ALIVE || m->u.state == GOSSIP_SUSPECT;
      if (p->alive && !was) p->need_full = true;
      if (m->u.meta_len && gossip_decode_meta(m->u.meta, m->u.meta_len, &meta) == 0) {
        p->roles = meta.roles;
        if (m->u.state == GOSSIP_ALIVE || m->u.state == GOSSIP_SUSPECT) mp = &meta;
      }
    }
  }
  if (g->cb.member) g->cb.member(g->user, m, ev, mp);
}

static void swim_push_pull_cb(void *user, const char *addr) {
  struct gossip *g = user;
  /* A push-pull to a member held dead (partition healing) may wait out the whole TCP timeout when it is
   * really gone: those take at most half of the outgoing slots, so joins and anti-entropy keep theirs. */
  if (gossip_tcp_outgoing(g->tcpx) >= 4) {
    bool held_dead = false;
    for (int i = 0; i < g->npeers; i++) {
      if (strcmp(g->peers[i].addr, addr) != 0) continue;
      held_dead = !g->peers[i].alive;
      if (!held_dead) break;
    }
    if (held_dead) return;
  }
  gossip_tcp_push_pull(g->tcpx, addr, swim_num_alive(g->swim) <= 1);
}

static void handle_load(struct gossip *g, const struct gossip_load *l) {
  struct peer *p = peer_find(g, l->from, false);
  if (!p || !p->alive) return; /* only members' reports count */
  if (l->boot < p->load_boot || (l->boot == p->load_boot && l->seq <= p->load_seq)) return;
  if (l->boot > p->load_boot && p->load_boot)
    log_info("load reports from a new life of a member", "addr=%s boot=%llu seq=%llu", p->addr,
             (unsigned long long)l->boot, (unsigned long long)l->seq);
  p->load_boot = l->boot;
  p->load_seq = l->seq;
  if (!p->full) p->full = xmalloc(sizeof *p->full);
  *p->full = *l;
  g->counters.loads_in++;
  if (g->cb.load) g->cb.load(g->user, l);
}

static struct peer *peer_by_short_id(struct gossip *g, const uint8_t id[GOSSIP_SHORT_ID]) {
  for (int i = 0; i < g->npeers; i++)
    if (g->peers[i].alive && memcmp(g->peers[i].id, id, GOSSIP_SHORT_ID) == 0) return &g->peers[i];
  return NULL;
}

static void relay_enqueue(struct gossip *g, const struct gossip_load_delta *d);

/* A digest's deltas: each one from a member whose full report of that boot and layout we hold, and newer than
 * anything heard from it, is taken as its load; a digest to relay goes into the relay queue as well. */
static void handle_digest(struct gossip *g, const struct gossip_load_digest *dg) {
  for (int i = 0; i < dg->nentries; i++) {
    const struct gossip_load_delta *d = &dg->entries[i];
    struct peer *p = peer_by_short_id(g, d->node);
    if (!p) continue; /* only members' reports count, and are relayed */
    if (dg->forward) relay_enqueue(g, d);
    if (!p->full || d->seq <= p->load_seq || load_delta_apply(p->full, d, &g->dload) != 0) continue;
    p->load_seq = d->seq;
    g->counters.loads_in++;
    if (g->cb.load) g->cb.load(g->user, &g->dload);
  }
}

static void handle_cache(struct gossip *g, const struct gossip_cache *c) {
  struct peer *p = peer_find(g, c->from, false);
  if (!p || !p->alive) return;
  if (c->boot < p->cache_boot || (c->boot == p->cache_boot && c->seq <= p->cache_seq)) return;
  p->cache_boot = c->boot;
  p->cache_seq = c->seq;
  g->counters.caches_in++;
  if (g->cb.cache) g->cb.cache(g->user, c);
}

static void handle_spend(struct gossip *g, const struct gossip_spend *sp) {
  struct peer *p = peer_find(g, sp->from, false);
  if (!p || !p->alive) return; /* only members' reports count */
  g->counters.spends_in++;
  if (g->cb.spend) g->cb.spend(g->user, sp);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct gossip *g = h->data;
  if (g->rx_busy) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  g->rx_busy = true;
  buf->base = g->rxbuf;
  buf->len = sizeof g->rxbuf;
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags) {
  struct gossip *g = h->data;
  g->rx_busy = false;
  if (nread <= 0 || !from || g->closing) return;
  g->counters.udp_in++;
  g->counters.bytes_in += (uint64_t)nread;
  if (flags & UV_UDP_PARTIAL) {
    g->counters.dropped_malformed++;
    return;
  }
  ssize_t n = keyring_open(g->kr, (const uint8_t *)buf->base, (size_t)nread, g->plain, sizeof g->plain);
  if (n < 0) {
    g->counters.dropped_auth++;
    return;
  }
  if (gossip_decode_packet(g->plain, (size_t)n, &g->rx) != 0) {
    g->counters.dropped_malformed++;
    return;
  }
  if (g->rx.kind == GOSSIP_PKT_SWIM) {
    char fa[GOSSIP_ADDR_MAX];
    addr_string(from, fa, sizeof fa);
    swim_receive(g->swim, fa, &g->rx.u.swim, now_ms());
    arm(g);
  } else if (g->rx.kind == GOSSIP_PKT_LOAD) {
    handle_load(g, &g->rx.u.load);
  } else if (g->rx.kind == GOSSIP_PKT_CACHE) {
    handle_cache(g, &g->rx.u.cache);
  } else if (g->rx.kind == GOSSIP_PKT_SPEND) {
    handle_spend(g, &g->rx.u.spend);
  } else if (g->rx.kind == GOSSIP_PKT_DIGEST) {
    handle_digest(g, &g->rx.u.digest);
  }
}

/* ---- SWIM timer ---- */

static void timer_cb(uv_timer_t *t) {
  struct gossip *g = t->data;
  swim_tick(g->swim, now_ms());
  arm(g);
}

static void arm(struct gossip *g) {
  if (g->closing) return;
  uint64_t now = now_ms(), next = swim_next_deadline(g->swim);
  uint64_t delay = next > now ? next - now : 0;
  if (delay > 1000) delay = 1000;
  uv_timer_start(&g->timer, timer_cb, delay, 0);
}

/* ---- load push ---- */

static void load_send(struct gossip *g, uint64_t now);

static void load_timer_cb(uv_timer_t *t) { load_send(t->data, now_ms()); }

/* full_gap_ms is the least time between two full reports to every gateway without a change of layout:
 * load_full_interval_ms, or longer where one round would cost more than the byte budget allows (a full report
 * is ~250 bytes and goes to every gateway: N copies). */
static uint64_t full_gap_ms(const struct gossip *g) {
  uint64_t gap = g->cfg.load_full_interval_ms;
  if (g->cfg.load_budget_bytes_s) {
    uint64_t paced = g->load_fanout_bytes * 1000u / g->cfg.load_budget_bytes_s;
    if (paced > gap) gap = paced;
  }
  return gap;
}

static int grid_cmp(const void *a, const void *b) {
  return memcmp(((const struct grid_member *)a)->id, ((const struct grid_member *)b)->id, GOSSIP_ID_LEN);
}

/* grid_build lays out this node and every alive member, sorted by id (the same list on every node once
 * membership has settled). */
static void grid_build(struct gossip *g) {
  int n = 0;
  memcpy(g->grid[n].id, g->id->pk, GOSSIP_ID_LEN);
  g->grid[n++].peer = -1;
  for (int i = 0; i < g->npeers; i++) {
    if (!g->peers[i].alive) continue;
    memcpy(g->grid[n].id, g->peers[i].id, GOSSIP_ID_LEN);
    g->grid[n++].peer = i;
  }
  qsort(g->grid, (size_t)n, sizeof g->grid[0], grid_cmp);
  g->ngrid = n;
  for (int i = 0; i < n; i++)
    if (g->grid[i].peer < 0) g->grid_self = i;
}

/* Send g->pkt to every peer of the grid that `want` picks (gateways only where gateways_only). */
static void grid_send(struct gossip *g, bool (*want)(int n, int self, int m), bool gateways_only) {
  for (int j = 0; j < g->ngrid; j++) {
    if (g->grid[j].peer < 0 || !want(g->ngrid, g->grid_self, j)) continue;
    const struct peer *p = &g->peers[g->grid[j].peer];
    if (gateways_only && !(p->roles & GOSSIP_ROLE_GATEWAY)) continue;
    send_pkt(g, p->addr);
  }
}

static void relay_timer_cb(uv_timer_t *t) {
  struct gossip *g = t->data;
  if (!g->nrelay || g->closing) return;
  uint64_t before = g->counters.bytes_out;
  grid_build(g);
  g->pkt.kind = GOSSIP_PKT_DIGEST;
  struct gossip_load_digest *dg = &g->pkt.u.digest;
  /* As many deltas per datagram as fit (about 20 of one target each), one datagram per gateway. */
  for (int i = 0; i < g->nrelay;) {
    dg->forward = false;
    dg->nentries = 0;
    while (i < g->nrelay && dg->nentries < GOSSIP_DIGEST_ENTRIES) {
      dg->entries[dg->nentries++] = g->relay[i];
      if (gossip_encode_packet(&g->pkt, g->plain, GOSSIP_PACKET_MAX) < 0 && dg->nentries > 1) {
        dg->nentries--;
        break;
      }
      i++;
    }
    grid_send(g, load_grid_relays_to, true);
  }
  g->nrelay = 0;
  g->counters.load_bytes_out += g->counters.bytes_out - before;
}

/* relay_enqueue keeps the newest delta of each node of this node's row until the relay timer sends them. */
static void relay_enqueue(struct gossip *g, const struct gossip_load_delta *d) {
  int i = 0;
  while (i < g->nrelay && memcmp(g->relay[i].node, d->node, GOSSIP_SHORT_ID) != 0) i++;
  if (i == g->nrelay) {
    if (g->nrelay == GOSSIP_DIGEST_ENTRIES) return; /* more than a row can hold: the sender's view is odd */
    g->nrelay++;
  } else if (g->relay[i].boot == d->boot && g->relay[i].seq >= d->seq) {
    return;
  }
  g->relay[i] = *d;
  if (!uv_is_active((uv_handle_t *)&g->relay_timer))
    uv_timer_start(&g->relay_timer, relay_timer_cb, g->cfg.load_relay_ms, 0);
}

/* send_full sends g->load in full to every alive gateway, or only to those new to us. */
static void send_full(struct gossip *g, bool all) {
  g->pkt.kind = GOSSIP_PKT_LOAD;
  g->pkt.u.load = g->load;
  for (int i = 0; i < g->npeers; i++) {
    struct peer *p = &g->peers[i];
    if (!p->alive || !(p->roles & GOSSIP_ROLE_GATEWAY) || (!all && !p->need_full)) continue;
    send_pkt(g, p->addr);
    p->need_full = false;
    g->counters.loads_out++;
  }
}

/* A report goes out when the load changed (at most every load_min_interval_ms) or load_max_interval_ms passed:
 * in full to every gateway when its layout changed or the full refresh is due, else as a delta to this node's
 * grid row (who relay it to their columns; this node relays it to its own), and in full to gateways that
 * have not had one from us yet. */
static void load_send(struct gossip *g, uint64_t now) {
  if (!g->have_load || g->closing) return;
  uint64_t since = now - g->load_sent_ms;
  if (since < g->cfg.load_min_interval_ms) return;
  uint32_t layout = load_delta_layout(&g->load);
  bool full = !g->full_sent || layout != g->full_layout || now - g->full_sent_ms >= full_gap_ms(g);
  bool need = false;
  for (int i = 0; i < g->npeers && !need; i++) {
    const struct peer *p = &g->peers[i];
    need = p->need_full && p->alive && (p->roles & GOSSIP_ROLE_GATEWAY);
  }
  if (!full && !need && !g->load_changed && since < g->cfg.load_max_interval_ms) return;
  g->load.seq = ++g->load_seq;
  g->load.boot = g->boot_id;
  g->load.age_ms = (uint32_t)(now > g->load_signal_ms ? now - g->load_signal_ms : 0);
  memcpy(g->load.from, g->id->pk, GOSSIP_ID_LEN);
  uint64_t before = g->counters.bytes_out;
  if (full) {
    send_full(g, true);
    g->load_fanout_bytes = g->counters.bytes_out - before;
    g->full_sent = true;
    g->full_layout = layout;
    g->full_sent_ms = now;
  } else {
    if (need) send_full(g, false);
    struct gossip_load_delta d;
    load_delta_make(&g->load, &d);
    grid_build(g);
    g->pkt.kind = GOSSIP_PKT_DIGEST;
    g->pkt.u.digest.forward = true;
    g->pkt.u.digest.nentries = 1;
    g->pkt.u.digest.entries[0] = d;
    grid_send(g, load_grid_same_row, false);
    relay_enqueue(g, &d);
  }
  g->counters.load_bytes_out += g->counters.bytes_out - before;
  g->load_changed = false;
  g->load_sent_ms = now;
}

uint64_t gossip_send_cache(struct gossip *g, const struct gossip_cache *c) {
  uint64_t before = g->counters.bytes_out;
  g->pkt.kind = GOSSIP_PKT_CACHE;
  g->pkt.u.cache = *c;
  g->pkt.u.cache.seq = ++g->cache_seq;
  g->pkt.u.cache.boot = g->boot_id;
  memcpy(g->pkt.u.cache.from, g->id->pk, GOSSIP_ID_LEN);
  for (int i = 0; i < g->npeers; i++) {
    const struct peer *p = &g->peers[i];
    if (!p->alive || !(p->roles & GOSSIP_ROLE_GATEWAY)) continue;
    send_pkt(g, p->addr);
    g->counters.caches_out++;
  }
  g->counters.cache_bytes_out += g->counters.bytes_out - before;
  return g->counters.bytes_out - before;
}

void gossip_send_spend(struct gossip *g, struct gossip_spend *s) {
  if (g->closing) return;
  memcpy(s->from, g->id->pk, GOSSIP_ID_LEN);
  s->boot = g->boot_id;
  s->seq = ++g->spend_seq;
  g->pkt.kind = GOSSIP_PKT_SPEND;
  g->pkt.u.spend = *s;
  for (int i = 0; i < g->npeers; i++) {
    const struct peer *p = &g->peers[i];
    if (!p->alive || !(p->roles & GOSSIP_ROLE_GATEWAY)) continue;
    send_pkt(g, p->addr);
    g->counters.spends_out++;
  }
}

/* Two reports differ when any signal a router uses changed (sequence and age aside). */
static bool load_differs(const struct gossip_load *a, const struct gossip_load *b) {
  if (a->ntargets != b->ntargets) return true;
  return memcmp(a->targets, b->targets, sizeof a->targets[0] * (size_t)a->ntargets) != 0;
}

void gossip_publish_load(struct gossip *g, const struct gossip_load *l) {
  if (!g->have_load || load_differs(&g->load, l)) g->load_changed = true;
  g->load_signal_ms = now_ms() - l->age_ms;
  g->load = *l;
  g->have_load = true;
  /* A change goes out now unless one went out less than load_min_interval_ms ago (the timer sends it then). */
  if (g->load_changed) load_send(g, now_ms());
}

/* ---- lifecycle ---- */

/* One part of g (a handle, or the TCP exchanges) finished closing; the last one frees g. */
static void part_closed(struct gossip *g) {
  if (--g->open_handles > 0) return;
  if (g->swim) swim_free(g->swim);
  void (*cb)(void *) = g->closed_cb;
  void *arg = g->closed_arg;
  for (int i = 0; i < g->npeers; i++) free(g->peers[i].full);
  free(g->peers);
  free(g->grid);
  free(g);
  if (cb) cb(arg);
}

static void handle_closed_cb(uv_handle_t *h) { part_closed(h->data); }
static void tcp_closed_cb(void *arg) { part_closed(arg); }
static void tcp_changed_cb(void *arg) { arm(arg); }

void gossip_set_stream_handler(struct gossip *g, gossip_stream_cb cb, void *arg) {
  gossip_tcp_set_stream_handler(g->tcpx, cb, arg);
}

static void accept_cb(uv_stream_t *server, int status) {
  struct gossip *g = server->data;
  if (status == 0 && !g->closing) gossip_tcp_accept(g->tcpx, server);
}

int gossip_start(struct gossip **out, uv_loop_t *loop, const struct gossip_config *cfg, const struct identity *id,
                 struct keyring *kr, const char *name, const struct gossip_meta *meta,
                 const struct gossip_callbacks *cb, void *user, char *err, size_t errlen) {
  struct sockaddr_storage sa;
  char bind[GOSSIP_ADDR_MAX + 8];
  uint8_t metabuf[GOSSIP_META_MAX];
  int rc;
  snprintf(bind, sizeof bind, strchr(cfg->bind_host, ':') ? "[%s]:%d" : "%s:%d", cfg->bind_host,
           cfg->bind_port ? cfg->bind_port : 1);
  if (gossip_parse_addr(bind, &sa) != 0) {
    snprintf(err, errlen, "bad gossip address '%s': use IP:PORT", bind);
    return -EINVAL;
  }
  if (sa.ss_family == AF_INET) ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)cfg->bind_port);
  else ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)cfg->bind_port);
  int metalen = gossip_encode_meta(meta, metabuf, sizeof metabuf);
  if (metalen < 0) {
    snprintf(err, errlen, "node metadata too large for one gossip packet (too many models or labels)");
    return -EINVAL;
  }
  struct gossip *g = xcalloc(1, sizeof *g);
  g->loop = loop;
  g->cfg = *cfg;
  g->id = id;
  g->kr = kr;
  g->cb = *cb;
  g->user = user;
  g->peers = xcalloc(MAX_PEERS, sizeof *g->peers);
  g->grid = xcalloc(MAX_PEERS + 1, sizeof *g->grid);
  g->boot_id = cfg->boot_id ? cfg->boot_id : wall_us();
  uv_udp_init(loop, &g->udp);
  uv_tcp_init(loop, &g->tcp);
  uv_timer_init(loop, &g->timer);
  uv_timer_init(loop, &g->load_timer);
  uv_timer_init(loop, &g->leave_timer);
  uv_timer_init(loop, &g->seed_timer);
  uv_timer_init(loop, &g->relay_timer);
  g->udp.data = g->tcp.data = g->timer.data = g->load_timer.data = g->leave_timer.data = g->seed_timer.data = g;
  g->relay_timer.data = g;
  g->open_handles = 7;
  /* TCP first (binding port 0 picks one) so that UDP can take the same number. */
  if ((rc = uv_tcp_bind(&g->tcp, (const struct sockaddr *)&sa, 0)) == 0) {
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&g->tcp, (struct sockaddr *)&bound, &blen);
    rc = uv_udp_bind(&g->udp, (const struct sockaddr *)&bound, 0);
    g->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  if (rc != 0) {
    if (rc == UV_EADDRINUSE)
      snprintf(err, errlen, "gossip port %d on %s is in use: pass --gossip HOST:PORT", cfg->bind_port, cfg->bind_host);
    else
      snprintf(err, errlen, "cannot listen for gossip on %s:%d: %s", cfg->bind_host, cfg->bind_port, uv_strerror(rc));
    g->closing = true;
    uv_close((uv_handle_t *)&g->udp, handle_closed_cb);
    uv_close((uv_handle_t *)&g->tcp, handle_closed_cb);
    uv_close((uv_handle_t *)&g->timer, handle_closed_cb);
    uv_close((uv_handle_t *)&g->load_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&g->leave_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&g->seed_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&g->relay_timer, handle_closed_cb);
    return rc == UV_EADDRINUSE ? -EADDRINUSE : -EIO;
  }
  /* Large socket buffers: a burst of gossip at N=64 must not overflow the default receive queue. */
  int bufsz = 4 << 20;
  uv_recv_buffer_size((uv_handle_t *)&g->udp, &bufsz);
  bufsz = 4 << 20;
  uv_send_buffer_size((uv_handle_t *)&g->udp, &bufsz);
  if (cfg->advertise[0])
    str_copy(g->advertise, sizeof g->advertise, cfg->advertise);
  else
    snprintf(g->advertise, sizeof g->advertise, strchr(cfg->bind_host, ':') ? "[%s]:%d" : "%s:%d", cfg->bind_host,
             g->port);
  struct swim_callbacks scb = {swim_send_cb, swim_event_cb, swim_push_pull_cb};
  uint64_t seed = 0;
  memcpy(&seed, id->pk, sizeof seed);
  seed ^= clock_mono_ns();
  g->swim = swim_new(&cfg->swim, id->pk, name, g->advertise, metabuf, (size_t)metalen, 0, &scb, g, seed, now_ms());
  if (!g->swim) abort(); /* arguments were validated above */
  g->tcpx = gossip_tcp_new(loop, g->swim, kr, &g->counters, cfg->tcp_timeout_ms, tcp_changed_cb, tcp_closed_cb, g);
  g->open_handles++; /* the TCP exchanges count as one part until gossip_tcp_close completes */
  if ((rc = uv_listen((uv_stream_t *)&g->tcp, 64, accept_cb)) != 0) {
    snprintf(err, errlen, "cannot listen for gossip on %s: %s", bind, uv_strerror(rc));
    gossip_close(g, NULL, NULL);
    return -EIO;
  }
  uv_udp_recv_start(&g->udp, alloc_cb, recv_cb);
  uv_timer_start(&g->load_timer, load_timer_cb, cfg->load_min_interval_ms, cfg->load_min_interval_ms);
  arm(g);
  log_info("gossip listening", "addr=%s advertise=%s", bind, g->advertise);
  *out = g;
  return 0;
}

/* Every push-pull interval, one seed (in turn) gets a push-pull: SWIM forgets dead members after
 * dead_reclaim_ms, after which only the seeds can bring two sides of a long partition back together. */
static void seed_timer_cb(uv_timer_t *t) {
  struct gossip *g = t->data;
  if (!g->nseeds) return;
  const char *addr = g->seeds[g->next_seed++ % g->nseeds];
  if (strcmp(addr, g->advertise) != 0) gossip_tcp_push_pull(g->tcpx, addr, false);
}

void gossip_join(struct gossip *g, const char *const *addrs, int n) {
  for (int i = 0; i < n && g->nseeds < 8; i++) str_copy(g->seeds[g->nseeds++], sizeof g->seeds[0], addrs[i]);
  uint64_t every = g->cfg.swim.push_pull_interval_ms ? g->cfg.swim.push_pull_interval_ms : 30000;
  uv_timer_start(&g->seed_timer, seed_timer_cb, every, every);
  swim_join(g->swim, addrs, n, now_ms());
  for (int i = 0; i < n; i++) gossip_tcp_push_pull(g->tcpx, addrs[i], true);
  arm(g);
}

void gossip_set_meta(struct gossip *g, const struct gossip_meta *meta) {
  uint8_t buf[GOSSIP_META_MAX];
  int n = gossip_encode_meta(meta, buf, sizeof buf);
  if (n < 0) {
    log_warn("node metadata too large for gossip: not announced", "models=%d", meta->nmodels);
    return;
  }
  swim_set_meta(g->swim, buf, (size_t)n, now_ms());
  arm(g);
}

static void leave_timer_cb(uv_timer_t *t) {
  struct gossip *g = t->data;
  if (!swim_leave_flushed(g->swim) && now_ms() < g->leave_deadline_ms) return;
  uv_timer_stop(t);
  void (*cb)(void *) = g->leave_cb;
  g->leave_cb = NULL;
  if (cb) cb(g->leave_arg);
}

void gossip_leave(struct gossip *g, void (*done_cb)(void *arg), void *arg) {
  swim_leave(g->swim, now_ms());
  g->leave_cb = done_cb;
  g->leave_arg = arg;
  g->leave_deadline_ms = now_ms() + 2000;
  arm(g);
  uv_timer_start(&g->leave_timer, leave_timer_cb, 20, 20);
}

void gossip_close(struct gossip *g, void (*closed_cb)(void *arg), void *arg) {
  if (g->closing) return;
  g->closing = true;
  g->closed_cb = closed_cb;
  g->closed_arg = arg;
  uv_close((uv_handle_t *)&g->udp, handle_closed_cb);
  uv_close((uv_handle_t *)&g->tcp, handle_closed_cb);
  uv_close((uv_handle_t *)&g->timer, handle_closed_cb);
  uv_close((uv_handle_t *)&g->load_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&g->leave_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&g->seed_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&g->relay_timer, handle_closed_cb);
  gossip_tcp_close(g->tcpx);
}

const struct swim *gossip_swim(const struct gossip *g) { return g->swim; }
const struct gossip_counters *gossip_counters(const struct gossip *g) { return &g->counters; }
const char *gossip_advertise(const struct gossip *g) { return g->advertise; }
int gossip_port(const struct gossip *g) { return g->port; }
