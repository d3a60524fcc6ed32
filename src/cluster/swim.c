/* SWIM membership with Lifeguard as a pure state machine (see swim.h): the member table, probing with
 * indirect probes and nacks, local health awareness, suspicion with confirmations, incarnation precedence,
 * join, leave and push-pull merge. The dissemination queue lives in swim_queue.c. */
#include "cluster/swim.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/swim_int.h"
#include "core/alloc.h"
#include "core/slice.h"
#include "proto/gossip_codec.h"

/* A member declared dead still gets gossip for this many probe intervals (memberlist's GossipToTheDeadTime,
 * 30 s at its 1 s interval), so a node wrongly declared dead hears about it and refutes. */
#define GOSSIP_TO_DEAD_INTERVALS 30

/* The defaults were tuned on the simulated network of tests/unit/test_swim.c (SWIM_SIM_REPORT=1): N=64, loss
 * 0 or 10%, one-way delay 1 or 50 ms, 200 failures each. With these, a dead member is known DEAD everywhere
 * after 1.5-1.9 s on average, p99 2.5-3.0 s, and no live member was ever declared dead (5 simulated minutes
 * at 10% and at 20% loss with 50 ms delay; suspicions there are many, all refuted). */
void swim_config_default(struct swim_config *c) {
  memset(c, 0, sizeof *c);
  /* 250 ms: the time to the first probe of a dead member is ~exponential with a mean of one interval (N-1
   * probers), the tail of detection. 320 ms (so that a relayed probe completes even at 50 ms one-way) put
   * p99 at ~3.4 s; 200 ms (with a 150 ms timeout) churned more under loss at 50 ms (p99 4.4 s). */
  c->probe_interval_ms = 250;
  /* 120 ms: a 100 ms round trip (50 ms one-way) plus margin, so a slow-but-fine link still answers direct
   * probes; 130 ms remain for a relayed probe (a LAN needs ~1 ms). Lifeguard stretches both by 1 + awareness
   * when this node is the slow one. */
  c->probe_timeout_ms = 120;
  /* 3 helpers: one 4-hop relayed path fails ~34% of the time at 10% loss, three ~4%. Also K, the number of
   * independent suspicions that bring the suspicion timeout down to its minimum. */
  c->indirect_checks = 3;
  /* min suspicion = 2 * log10(N) * interval (0.9 s at N=64), reached once K others confirmed, which takes a
   * few probe intervals anyway; max = 4 * min (3.6 s) for a lone suspicion (one observer's bad link), time
   * enough for the suspect to hear of it and refute (and stragglers are corrected on contact, see
   * swim_fact_outdated). With 4 and 6 detection is ~0.4 s slower on average and no safer in the simulation.
   */
  c->suspicion_mult = 2;
  c->suspicion_max_mult = 4;
  /* 4 * ceil(log10(N + 1)) transmissions per update per node (8 at N=64), with fanout 3 every 50 ms: an
   * update reaches all 64 nodes in ~4 rounds even at 10% loss. */
  c->retransmit_mult = 4;
  c->gossip_interval_ms = 50;
  c->gossip_nodes = 3;
  /* 8: intervals stretch at most 9x, enough to ride out a stalled process without false suspicions. */
  c->awareness_max = 8;
  /* 60 s: tombstones outlive any gossip still in flight about the member (updates live ~1 s). */
  c->dead_reclaim_ms = 60000;
  /* 30 s: anti-entropy repairs what gossip missed; cheap at that rate. */
  c->push_pull_interval_ms = 30000;
  /* 1 s: a member held dead gets a push-pull (one per interval, at random), so the two sides of a healed
   * partition find each other within about a second once gossip to the dead has stopped (30 probe
   * intervals), instead of at the next anti-entropy round (up to 30 s: the 2|3 split of tests/netns took
   * 3-18 s to agree again). The cost is one TCP connect per second to a member that is really gone, for
   * dead_reclaim_ms; at most one is in flight per address (gossip_tcp_push_pull). */
  c->reconnect_interval_ms = 1000;
  c->packet_budget = GOSSIP_PACKET_MAX; /* 1400: fits a 1500-byte MTU with IP/UDP and AEAD overhead */
}

/* --- small helpers --- */

static bool id_eq(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, GOSSIP_ID_LEN) == 0; }

static bool id_zero(const uint8_t *a) {
  for (int i = 0; i < GOSSIP_ID_LEN; i++)
    if (a[i]) return false;
  return true;
}

static bool is_live(const struct member *m) {
  return m->pub.u.state == GOSSIP_ALIVE || m->pub.u.state == GOSSIP_SUSPECT;
}

static bool str_ok(const char *p, size_t cap) { return memchr(p, 0, cap) != NULL; }

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static const uint8_t *self_id(const struct swim *s) { return s->self->pub.u.id; }

/* scaled stretches a duration by Lifeguard's local health: ms * (1 + awareness). */
static uint64_t scaled(const struct swim *s, uint32_t ms) {
  return (uint64_t)ms * (uint64_t)(1 + s->awareness);
}

static void awareness_add(struct swim *s, int delta) {
  int a = s->awareness + delta;
  s->awareness = a < 0 ? 0 : a > s->cfg.awareness_max ? s->cfg.awareness_max : a;
}

/* advance keeps our notion of time monotonic whatever the caller passes. */
static uint64_t advance(struct swim *s, uint64_t now) {
  if (now > s->now) s->now = now;
  return s->now;
}

static void note_scan(struct swim *s, uint64_t at) {
  if (at < s->next_scan_at) s->next_scan_at = at;
}

/* Events are about other members only; this node's own changes are the caller's doing. A member known only
 * as a tombstone was never announced: its coming back is a JOIN, and its reclaim says nothing. */
static void emit(struct swim *s, struct member *m, enum swim_event ev) {
  if (m->pub.is_self || !s->cb.event) return;
  if (!m->announced) {
    if (ev == SWIM_EV_DEAD || ev == SWIM_EV_LEFT || ev == SWIM_EV_FORGOTTEN) return;
    ev = SWIM_EV_JOIN;
  }
  m->announced = true;
  s->cb.event(s->user, &m->pub, ev);
}

/* --- the member table: sorted by id, plus the probe order --- */

static int search(const struct swim *s, const uint8_t *id, bool *found) {
  int lo = 0, hi = s->nmembers;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = memcmp(s->members[mid]->pub.u.id, id, GOSSIP_ID_LEN);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = false;
  return lo;
}

static struct member *lookup(const struct swim *s, const uint8_t *id) {
  bool found;
  int i = search(s, id, &found);
  return found ? s->members[i] : NULL;
}

static void set_state(struct swim *s, struct member *m, enum gossip_state st, uint64_t now) {
  bool was = is_live(m);
  if (m->pub.u.state != st) m->pub.state_since_ms = now;
  m->pub.u.state = st;
  s->nalive += (int)is_live(m) - (int)was;
  if (!is_live(m) && !m->pub.is_self) note_scan(s, m->pub.state_since_ms + s->cfg.dead_reclaim_ms);
}

/* member_add inserts a member for fact u in state st (caller emits events and queues). Table growth is the
 * only allocation on the message path. */
static struct member *member_add(struct swim *s, const struct gossip_update *u, enum gossip_state st,
                                 uint64_t now) {
  if (s->nmembers == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    s->members = xrealloc(s->members, (size_t)cap * sizeof *s->members);
    s->order = xrealloc(s->order, (size_t)cap * sizeof *s->order);
    s->bq = xrealloc(s->bq, (size_t)cap * sizeof *s->bq);
    s->scratch = xrealloc(s->scratch, (size_t)cap * sizeof *s->scratch);
    s->cap = cap;
  }
  bool found;
  int at = search(s, u->id, &found);
  struct member *m = xcalloc(1, sizeof *m);
  struct gossip_update *f = &m->pub.u;
  memcpy(f->id, u->id, GOSSIP_ID_LEN);
  str_copy(f->name, sizeof f->name, u->name);
  str_copy(f->addr, sizeof f->addr, u->addr);
  f->incarnation = u->incarnation;
  f->state = st;
  memcpy(f->from, u->from, GOSSIP_ID_LEN);
  f->meta_len = u->meta_len;
  memcpy(f->meta, u->meta, u->meta_len);
  m->pub.state_since_ms = now;
  m->bq_idx = -1;
  memmove(&s->members[at + 1], &s->members[at], (size_t)(s->nmembers - at) * sizeof *s->members);
  s->members[at] = m;
  s->nmembers++;
  if (is_live(m))
    s->nalive++;
  else
    note_scan(s, now + s->cfg.dead_reclaim_ms);
  /* Into the probe order at a random place (as memberlist does), so a newcomer is neither always next nor
   * always last; the member it displaces goes to the end. */
  uint32_t j = rng_below(&s->rng, (uint32_t)s->norder + 1);
  s->order[s->norder] = s->order[j];
  s->order[j] = m;
  s->norder++;
  return m;
}

static void member_forget(struct swim *s, int idx) {
  struct member *m = s->members[idx];
  emit(s, m, SWIM_EV_FORGOTTEN);
  memmove(&s->members[idx], &s->members[idx + 1], (size_t)(s->nmembers - idx - 1) * sizeof *s->members);
  s->nmembers--;
  for (int k = 0; k < s->norder; k++) {
    if (s->order[k] != m) continue;
    memmove(&s->order[k], &s->order[k + 1], (size_t)(s->norder - k - 1) * sizeof *s->order);
    s->norder--;
    if (k < s->order_idx) s->order_idx--;
    break;
  }
  swim_queue_remove(s, m);
  if (s->probe.target == m) s->probe.target = NULL;
  if (is_live(m)) s->nalive--;
  free(m);
}

enum pick { PICK_HELPER, PICK_GOSSIP, PICK_LIVE, PICK_DEAD };

/* pick_random chooses up to k distinct members other than self and `exclude` that fit `how`, uniformly,
 * into s->scratch[0..return). */
static int pick_random(struct swim *s, int k, const struct member *exclude, enum pick how, uint64_t now) {
  int n = 0;
  uint64_t window = (uint64_t)GOSSIP_TO_DEAD_INTERVALS * s->cfg.probe_interval_ms;
  for (int i = 0; i < s->nmembers; i++) {
    struct member *m = s->members[i];
    enum gossip_state st = m->pub.u.state;
    if (m->pub.is_self || m == exclude) continue;
    bool ok = false;
    switch (how) {
    case PICK_HELPER: ok = st == GOSSIP_ALIVE; break;
    case PICK_LIVE: ok = is_live(m); break;
    case PICK_DEAD: ok = st == GOSSIP_DEAD; break;
    case PICK_GOSSIP: ok = is_live(m) || (st == GOSSIP_DEAD && now - m->pub.state_since_ms < window); break;
    }
    if (ok) s->scratch[n++] = m;
  }
  if (k > n) k = n;
  for (int i = 0; i < k; i++) { /* partial Fisher-Yates */
    int j = i + (int)rng_below(&s->rng, (uint32_t)(n - i));
    struct member *t = s->scratch[i];
    s->scratch[i] = s->scratch[j];
    s->scratch[j] = t;
  }
  return k;
}

/* --- outgoing messages --- */

static void msg_begin(struct swim *s, enum gossip_type type, uint32_t seq) {
  struct gossip_msg *o = &s->out;
  o->type = type;
  o->seq = seq;
  memcpy(o->from, self_id(s), GOSSIP_ID_LEN);
  str_copy(o->from_addr, sizeof o->from_addr, s->self->pub.u.addr);
  memset(o->target, 0, sizeof o->target);
  o->target_addr[0] = '\0';
  o->nupdates = 0;
}

/* msg_send fills s->out with queued updates and sends it; with need_updates, only when it carries any. */
static bool msg_send(struct swim *s, const char *addr, bool need_updates) {
  swim_queue_fill(s, &s->out);
  if (need_updates && s->out.nupdates == 0) return false;
  s->stats.msgs_sent++;
  s->stats.updates_sent += (uint64_t)s->out.nupdates;
  s->cb.send(s->user, addr, &s->out);
  return true;
}

/* --- suspicion (Lifeguard) --- */

static int confirm_k(const struct swim *s) {
  int k = s->cfg.indirect_checks;
  return k < 0 ? 0 : k > SWIM_MAX_CONFIRM ? SWIM_MAX_CONFIRM : k;
}

/* timeout = max(min, max - (max - min) * log(C + 1) / log(K + 1)), rounded to the millisecond. */
static uint64_t suspicion_timeout(const struct swim *s, const struct member *m) {
  int k = confirm_k(s);
  if (k < 1) return m->susp_min;
  double frac = log((double)m->nconfirm + 1.0) / log((double)k + 1.0);
  double raw = (double)m->susp_max - frac * (double)(m->susp_max - m->susp_min);
  return raw <= (double)m->susp_min ? m->susp_min : (uint64_t)llround(raw);
}

static void suspicion_start(struct swim *s, struct member *m, const uint8_t *from, uint64_t now) {
  int n = s->nalive < 2 ? 2 : s->nalive;
  double min = (double)s->cfg.suspicion_mult * log10((double)n) * (double)s->cfg.probe_interval_ms;
  m->susp_min = (uint64_t)llround(min);
  m->susp_max = (uint64_t)s->cfg.suspicion_max_mult * m->susp_min;
  m->susp_start = now;
  m->nconfirm = 0;
  memcpy(m->pub.u.from, from, GOSSIP_ID_LEN);
  m->susp_deadline = now + suspicion_timeout(s, m);
  m->susp_regossip_at = now + m->susp_min;
  note_scan(s, min_u64(m->susp_deadline, m->susp_regossip_at));
}

/* suspicion_confirm counts an independent suspicion (a distinct `from`, not the first suspecter) and pulls
 * the deadline in. Returns whether it was new (then it is worth re-gossiping). */
static bool suspicion_confirm(struct swim *s, struct member *m, const uint8_t *from) {
  if (m->nconfirm >= confirm_k(s) || id_eq(from, m->pub.u.from)) return false;
  for (int i = 0; i < m->nconfirm; i++)
    if (id_eq(m->confirm[i], from)) return false;
  memcpy(m->confirm[m->nconfirm++], from, GOSSIP_ID_LEN);
  m->susp_deadline = m->susp_start + suspicion_timeout(s, m);
  note_scan(s, m->susp_deadline);
  return true;
}

static void make_suspect(struct swim *s, struct member *m, uint64_t inc, const uint8_t *from, uint64_t now) {
  bool was = m->pub.u.state == GOSSIP_SUSPECT;
  m->pub.u.incarnation = inc;
  set_state(s, m, GOSSIP_SUSPECT, now);
  suspicion_start(s, m, from, now);
  swim_queue_push(s, m, from);
  if (!was) {
    s->stats.suspicions++;
    emit(s, m, SWIM_EV_SUSPECT);
  }
}

/* make_final turns a live member DEAD or LEFT at incarnation inc, declared by `from`. */
static void make_final(struct swim *s, struct member *m, enum gossip_state st, uint64_t inc,
                       const uint8_t *from, uint64_t now) {
  m->pub.u.incarnation = inc;
  memcpy(m->pub.u.from, from, GOSSIP_ID_LEN);
  set_state(s, m, st, now);
  swim_queue_push(s, m, from);
  if (st == GOSSIP_DEAD) s->stats.deaths++;
  emit(s, m, st == GOSSIP_DEAD ? SWIM_EV_DEAD : SWIM_EV_LEFT);
}

/* --- applying facts (piggybacked updates and push-pull tables) --- */

/* refute outbids a fact about this node: own incarnation = max(own, inc) + 1, and ALIVE goes out. */
static void refute(struct swim *s, uint64_t inc, bool suspicion) {
  struct gossip_update *me = &s->self->pub.u;
  me->incarnation = (inc > me->incarnation ? inc : me->incarnation) + 1;
  s->stats.refutations++;
  if (suspicion) awareness_add(s, 1); /* Lifeguard: being suspected hints that we are the slow one */
  swim_queue_push(s, s->self, me->id);
}

static void apply_self(struct swim *s, const struct gossip_update *u) {
  const struct gossip_update *me = &s->self->pub.u;
  if (s->left) return; /* leaving: nothing to defend */
  if (u->incarnation < me->incarnation) {
    /* Stale: whoever still spreads it has not heard our newer ALIVE; say it again. */
    if (u->state != GOSSIP_ALIVE) swim_queue_push(s, s->self, me->id);
    return;
  }
  if (u->state == GOSSIP_ALIVE) {
    if (u->incarnation == me->incarnation && strcmp(u->addr, me->addr) == 0 && u->meta_len == me->meta_len &&
        memcmp(u->meta, me->meta, u->meta_len) == 0)
      return;                         /* our own fact coming back */
    refute(s, u->incarnation, false); /* a fact from a former life of ours (a restart): outbid it */
    return;
  }
  refute(s, u->incarnation, u->state != GOSSIP_LEFT);
}

static void apply_alive(struct swim *s, struct member *m, const struct gossip_update *u, uint64_t now) {
  if (!u->addr[0]) return;
  if (!m) {
    m = member_add(s, u, GOSSIP_ALIVE, now);
    memcpy(m->pub.u.from, u->id, GOSSIP_ID_LEN);
    swim_queue_push(s, m, u->id);
    emit(s, m, SWIM_EV_JOIN);
    return;
  }
  struct gossip_update *f = &m->pub.u;
  /* Older or equal incarnation: stale, or the fact we have. Equal with another addr is a conflict (two
   * processes claiming one id): ignored, the incumbent stays. */
  if (u->incarnation <= f->incarnation) return;
  bool changed = strcmp(f->name, u->name) != 0 || strcmp(f->addr, u->addr) != 0 ||
                 f->meta_len != u->meta_len || memcmp(f->meta, u->meta, u->meta_len) != 0;
  enum gossip_state was = f->state;
  str_copy(f->name, sizeof f->name, u->name);
  str_copy(f->addr, sizeof f->addr, u->addr);
  f->meta_len = u->meta_len;
  memcpy(f->meta, u->meta, u->meta_len);
  f->incarnation = u->incarnation;
  memcpy(f->from, u->id, GOSSIP_ID_LEN);
  set_state(s, m, GOSSIP_ALIVE, now);
  swim_queue_push(s, m, u->id);
  if (was != GOSSIP_ALIVE)
    emit(s, m, SWIM_EV_ALIVE);
  else if (changed)
    emit(s, m, SWIM_EV_UPDATE);
}

static void apply_suspect(struct swim *s, struct member *m, const struct gossip_update *u,
                          const uint8_t *from, bool create, uint64_t now) {
  if (!m) {
    if (!create || !u->addr[0]) return;
    m = member_add(s, u, GOSSIP_ALIVE, now);
    memcpy(m->pub.u.from, u->id, GOSSIP_ID_LEN);
    emit(s, m, SWIM_EV_JOIN);
    make_suspect(s, m, u->incarnation, from, now);
    return;
  }
  const struct gossip_update *f = &m->pub.u;
  if (!is_live(m) || u->incarnation < f->incarnation) return;
  /* A newer incarnation means the old suspicion was refuted and this is a new one: start over. */
  if (f->state == GOSSIP_ALIVE || u->incarnation > f->incarnation)
    make_suspect(s, m, u->incarnation, from, now);
  else if (suspicion_confirm(s, m, from))
    swim_queue_push(s, m, from);
}

static void apply_final(struct swim *s, struct member *m, const struct gossip_update *u, uint64_t now) {
  if (!m) {
    /* A tombstone for a member never seen keeps stale ALIVE gossip about it from bringing it back. */
    member_add(s, u, u->state, now);
    return;
  }
  struct gossip_update *f = &m->pub.u;
  if (is_live(m)) {
    if (u->incarnation >= f->incarnation) make_final(s, m, u->state, u->incarnation, u->from, now);
    return;
  }
  /* Already a tombstone: take a newer incarnation quietly; LEFT replaces DEAD (it says more). */
  if (u->incarnation > f->incarnation ||
      (u->incarnation == f->incarnation && f->state == GOSSIP_DEAD && u->state == GOSSIP_LEFT)) {
    enum gossip_state was = f->state;
    f->incarnation = u->incarnation;
    memcpy(f->from, u->from, GOSSIP_ID_LEN);
    if (was != u->state) {
      set_state(s, m, u->state, now);
      emit(s, m, u->state == GOSSIP_DEAD ? SWIM_EV_DEAD : SWIM_EV_LEFT);
    }
  }
}

static bool update_ok(const struct gossip_update *u) {
  int st = (int)u->state;
  return st >= GOSSIP_ALIVE && st <= GOSSIP_LEFT && u->meta_len <= GOSSIP_META_MAX && !id_zero(u->id) &&
         str_ok(u->name, sizeof u->name) && str_ok(u->addr, sizeof u->addr);
}

/* apply takes one fact. merge: it comes from a push-pull table, where an unknown SUSPECT creates the member
 * and a DEAD about a live member only makes us suspect it (memberlist does the same: it gets the chance to
 * refute instead of being killed by one peer's stale view, which is what heals a partition gently). */
static void apply(struct swim *s, const struct gossip_update *u, bool merge, uint64_t now) {
  if (!update_ok(u)) return;
  if (id_eq(u->id, self_id(s))) {
    apply_self(s, u);
    return;
  }
  struct member *m = lookup(s, u->id);
  const uint8_t *from = id_zero(u->from) ? self_id(s) : u->from;
  switch (u->state) {
  case GOSSIP_ALIVE: apply_alive(s, m, u, now); break;
  case GOSSIP_SUSPECT: apply_suspect(s, m, u, from, merge, now); break;
  case GOSSIP_DEAD:
    if (merge && m && is_live(m)) {
      apply_suspect(s, m, u, from, false, now);
      break;
    }
    apply_final(s, m, u, now);
    break;
  case GOSSIP_LEFT: apply_final(s, m, u, now); break;
  }
}

/* --- probing --- */

static void shuffle(struct swim *s) {
  for (int i = s->norder - 1; i > 0; i--) {
    int j = (int)rng_below(&s->rng, (uint32_t)i + 1);
    struct member *t = s->order[i];
    s->order[i] = s->order[j];
    s->order[j] = t;
  }
}

/* next_target walks the shuffled round-robin order (reshuffled after each pass), skipping self and the
 * dead and left. */
static struct member *next_target(struct swim *s) {
  for (int tries = 0; tries < 2 * s->norder + 1; tries++) {
    if (s->order_idx >= s->norder) {
      shuffle(s);
      s->order_idx = 0;
    }
    if (s->norder == 0) return NULL;
    struct member *m = s->order[s->order_idx++];
    if (!m->pub.is_self && is_live(m)) return m;
  }
  return NULL;
}

static void probe_start(struct swim *s, uint64_t now) {
  struct probe *p = &s->probe;
  struct member *t = next_target(s);
  s->next_probe_at = now + scaled(s, s->cfg.probe_interval_ms);
  if (!t) return;
  memset(p, 0, sizeof *p);
  p->active = true;
  p->target = t;
  p->seq = ++s->seq;
  p->timeout_at = now + scaled(s, s->cfg.probe_timeout_ms);
  p->end_at = s->next_probe_at;
  s->stats.probes++;
  msg_begin(s, GOSSIP_PING, p->seq);
  memcpy(s->out.target, t->pub.u.id, GOSSIP_ID_LEN);
  if (t->pub.u.state == GOSSIP_SUSPECT) { /* Lifeguard's buddy system: the suspect learns at once */
    swim_member_fact(t, t->pub.u.from, false, &s->out.updates[0]);
    s->out.nupdates = 1;
  }
  msg_send(s, t->pub.u.addr, false);
}

/* nack_settle closes the nack round: Lifeguard counts +1 for every helper that did not even nack (our
 * messages are not getting through, or we are too slow to see the answers). */
static void nack_settle(struct swim *s) {
  struct nack_round *r = &s->nr;
  if (r->active && r->failed) awareness_add(s, r->expected - r->got);
  r->active = false;
}

/* probe_indirect: the direct ack is late; ask k random alive members to probe the target for us. */
static void probe_indirect(struct swim *s, uint64_t now) {
  struct probe *p = &s->probe;
  p->indirect = true;
  if (!p->target) return;
  int k = s->cfg.indirect_checks < 0 ? 0 : s->cfg.indirect_checks;
  if (k > SWIM_MAX_HELPERS) k = SWIM_MAX_HELPERS;
  int n = pick_random(s, k, p->target, PICK_HELPER, now);
  if (n == 0) return;
  s->stats.indirect_probes++;
  nack_settle(s);
  /* A helper nacks after its own probe timeout; allow our (stretched) timeout for the two hops. Tying this
   * to the end of the probe interval instead would count every nack as missing once a round trip exceeds
   * interval - timeout, and a slow network would look like a sick node. */
  s->nr = (struct nack_round){.active = true,
                              .seq = p->seq,
                              .expected = n,
                              .deadline = now + s->cfg.probe_timeout_ms + scaled(s, s->cfg.probe_timeout_ms)};
  for (int i = 0; i < n; i++) {
    memcpy(s->nr.helper[i], s->scratch[i]->pub.u.id, GOSSIP_ID_LEN);
    msg_begin(s, GOSSIP_PING_REQ, p->seq);
    memcpy(s->out.target, p->target->pub.u.id, GOSSIP_ID_LEN);
    str_copy(s->out.target_addr, sizeof s->out.target_addr, p->target->pub.u.addr);
    msg_send(s, s->scratch[i]->pub.u.addr, false);
  }
}

/* probe_end: no ack by the end of the interval. */
static void probe_end(struct swim *s, uint64_t now) {
  struct probe *p = &s->probe;
  struct member *t = p->target;
  p->active = false;
  if (s->nr.active && s->nr.seq == p->seq) s->nr.failed = true;
  if (!t || !is_live(t)) { /* it died or left meanwhile: this probe says nothing */
    s->nr.active = false;
    return;
  }
  s->stats.probe_failures++;
  awareness_add(s, 1); /* Lifeguard: a failed probe hints that we may be the slow one */
  if (s->nr.active && (now >= s->nr.deadline || s->nr.got >= s->nr.expected)) nack_settle(s);
  if (t->pub.u.state == GOSSIP_ALIVE)
    make_suspect(s, t, t->pub.u.incarnation, self_id(s), now);
  else if (suspicion_confirm(s, t, self_id(s)))
    swim_queue_push(s, t, self_id(s));
}

/* helper_answered records an ack or nack from one of the current indirect round's helpers. */
static void helper_answered(struct swim *s, const struct gossip_msg *m) {
  struct nack_round *r = &s->nr;
  if (!r->active || m->seq != r->seq) return;
  for (int i = 0; i < r->expected; i++) {
    if (r->answered[i] || !id_eq(r->helper[i], m->from)) continue;
    r->answered[i] = true;
    r->got++;
    if (r->failed && r->got >= r->expected) nack_settle(s);
    return;
  }
}

static void handle_ack(struct swim *s, const struct gossip_msg *m) {
  struct probe *p = &s->probe;
  helper_answered(s, m); /* a relayed ack after the probe ended still shows the helper heard us */
  if (p->active && m->seq == p->seq) {
    p->active = false;
    if (s->nr.seq == p->seq) s->nr.active = false; /* success: nacks do not matter */
    s->stats.acks++;
    awareness_add(s, -1);
    return;
  }
  for (int i = 0; i < SWIM_MAX_RELAYS; i++) { /* an ack for a probe we made on someone's behalf */
    struct relay *r = &s->relays[i];
    if (!r->used || r->seq != m->seq) continue;
    msg_begin(s, GOSSIP_ACK, r->req_seq);
    msg_send(s, r->req_addr, false);
    r->used = false;
    s->nrelays--;
    return;
  }
}

static void handle_nack(struct swim *s, const struct gossip_msg *m) {
  s->stats.nacks_received++;
  helper_answered(s, m);
}

/* serve_ping_req probes m->target for the requester; the ack is relayed with the requester's seq, and a
 * NACK goes back if none came within our probe timeout. */
static void serve_ping_req(struct swim *s, const struct gossip_msg *m, const char *reply, uint64_t now) {
  if (!str_ok(m->target_addr, sizeof m->target_addr) || !m->target_addr[0] || id_eq(m->target, self_id(s)))
    return;
  struct relay *r = NULL;
  for (int i = 0; i < SWIM_MAX_RELAYS && !r; i++)
    if (!s->relays[i].used) r = &s->relays[i];
  if (!r) { /* full: drop the oldest */
    r = &s->relays[0];
    for (int i = 1; i < SWIM_MAX_RELAYS; i++)
      if (s->relays[i].expire_at < r->expire_at) r = &s->relays[i];
    s->nrelays--;
  }
  r->used = true;
  r->nacked = false;
  r->seq = ++s->seq;
  r->req_seq = m->seq;
  /* Not stretched by our own awareness: the requester allows for our plain probe timeout. */
  r->nack_at = now + s->cfg.probe_timeout_ms;
  r->expire_at = r->nack_at + s->cfg.probe_interval_ms; /* a late ack is still relayed until then */
  str_copy(r->req_addr, sizeof r->req_addr, reply);
  s->nrelays++;
  msg_begin(s, GOSSIP_PING, r->seq);
  memcpy(s->out.target, m->target, GOSSIP_ID_LEN);
  msg_send(s, m->target_addr, false);
}

static void relays_tick(struct swim *s, uint64_t now) {
  for (int i = 0; i < SWIM_MAX_RELAYS; i++) {
    struct relay *r = &s->relays[i];
    if (!r->used) continue;
    if (!r->nacked && now >= r->nack_at) {
      r->nacked = true;
      s->stats.nacks_sent++;
      msg_begin(s, GOSSIP_NACK, r->req_seq);
      msg_send(s, r->req_addr, false);
    }
    if (now >= r->expire_at) {
      r->used = false;
      s->nrelays--;
    }
  }
}

/* --- periodic work --- */

static int others_alive(const struct swim *s) { return s->nalive - (is_live(s->self) ? 1 : 0); }

/* seed_round: nobody known yet; tell the seeds we exist and ask for their tables. */
static void seed_round(struct swim *s) {
  for (int i = 0; i < s->nseeds; i++) {
    msg_begin(s, GOSSIP_GOSSIP, 0);
    swim_member_fact(s->self, self_id(s), false, &s->out.updates[0]);
    s->out.nupdates = 1;
    msg_send(s, s->seeds[i], false);
    if (s->cb.push_pull) s->cb.push_pull(s->user, s->seeds[i]);
  }
}

static void gossip_round(struct swim *s, uint64_t now) {
  if (s->nbq == 0) return;
  int n = pick_random(s, s->cfg.gossip_nodes, NULL, PICK_GOSSIP, now);
  for (int i = 0; i < n; i++) {
    msg_begin(s, GOSSIP_GOSSIP, 0);
    if (!msg_send(s, s->scratch[i]->pub.u.addr, true)) break;
  }
}

/* push_pull_round: anti-entropy with one random live member, and (like serf's reconnect) with one member we
 * hold dead, which is how the two sides of a healed partition find each other again. */
static void push_pull_round(struct swim *s, uint64_t now) {
  if (pick_random(s, 1, NULL, PICK_LIVE, now) == 1) s->cb.push_pull(s->user, s->scratch[0]->pub.u.addr);
  if (pick_random(s, 1, NULL, PICK_DEAD, now) == 1 && s->scratch[0]->pub.u.addr[0])
    s->cb.push_pull(s->user, s->scratch[0]->pub.u.addr);
}

/* scan: suspicion timeouts and tombstone reclaim; recomputes next_scan_at. */
static void scan(struct swim *s, uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (int i = s->nmembers - 1; i >= 0; i--) {
    struct member *m = s->members[i];
    enum gossip_state st = m->pub.u.state;
    if (m->pub.is_self) continue;
    if (st == GOSSIP_SUSPECT) {
      if (now < m->susp_deadline) {
        /* A suspicion that outlives its minimum is spread again, once per minimum: if it was refuted and we
         * missed every copy of the refutation, whoever has it answers (see swim_fact_outdated). */
        if (now >= m->susp_regossip_at) {
          swim_queue_push(s, m, m->pub.u.from);
          m->susp_regossip_at = now + m->susp_min;
        }
        next = min_u64(next, min_u64(m->susp_deadline, m->susp_regossip_at));
        continue;
      }
      make_final(s, m, GOSSIP_DEAD, m->pub.u.incarnation, self_id(s), now);
    }
    if (is_live(m)) continue;
    uint64_t at = m->pub.state_since_ms + s->cfg.dead_reclaim_ms;
    if (now >= at)
      member_forget(s, i);
    else
      next = min_u64(next, at);
  }
  s->next_scan_at = next;
}

void swim_tick(struct swim *s, uint64_t now_ms) {
  uint64_t now = advance(s, now_ms);
  struct probe *p = &s->probe;
  if (p->active && !p->indirect && now >= p->timeout_at) probe_indirect(s, now);
  if (p->active && now >= p->end_at) probe_end(s, now);
  if (s->nr.active && s->nr.failed && now >= s->nr.deadline) nack_settle(s);
  if (s->nrelays) relays_tick(s, now);
  if (now >= s->next_scan_at) scan(s, now);
  if (!s->left && !p->active && now >= s->next_probe_at) {
    if (others_alive(s) == 0 && s->nseeds > 0) {
      seed_round(s);
      s->next_probe_at = now + scaled(s, s->cfg.probe_interval_ms);
    } else {
      probe_start(s, now);
    }
  }
  if (now >= s->next_gossip_at) {
    gossip_round(s, now);
    s->next_gossip_at = now + s->cfg.gossip_interval_ms;
  }
  if (s->cfg.push_pull_interval_ms && s->cb.push_pull && !s->left && now >= s->next_push_pull_at) {
    s->next_push_pull_at = now + s->cfg.push_pull_interval_ms;
    push_pull_round(s, now);
  }
  if (s->cfg.reconnect_interval_ms && s->cb.push_pull && !s->left && now >= s->next_reconnect_at) {
    s->next_reconnect_at = now + s->cfg.reconnect_interval_ms;
    if (pick_random(s, 1, NULL, PICK_DEAD, now) == 1 && s->scratch[0]->pub.u.addr[0])
      s->cb.push_pull(s->user, s->scratch[0]->pub.u.addr);
  }
}

uint64_t swim_next_deadline(const struct swim *s) {
  const struct probe *p = &s->probe;
  uint64_t d = s->now + s->cfg.gossip_interval_ms; /* the contract: never later than one gossip interval */
  if (!s->left && !p->active) d = min_u64(d, s->next_probe_at);
  if (p->active) d = min_u64(d, p->indirect ? p->end_at : p->timeout_at);
  if (s->nr.active && s->nr.failed) d = min_u64(d, s->nr.deadline);
  if (s->nrelays)
    for (int i = 0; i < SWIM_MAX_RELAYS; i++)
      if (s->relays[i].used)
        d = min_u64(d, s->relays[i].nacked ? s->relays[i].expire_at : s->relays[i].nack_at);
  d = min_u64(d, s->next_scan_at);
  if (s->nbq) d = min_u64(d, s->next_gossip_at);
  if (s->cfg.push_pull_interval_ms && s->cb.push_pull && !s->left) d = min_u64(d, s->next_push_pull_at);
  if (s->cfg.reconnect_interval_ms && s->cb.push_pull && !s->left) d = min_u64(d, s->next_reconnect_at);
  return d;
}

/* --- the public API --- */

struct swim *swim_new(const struct swim_config *cfg, const uint8_t id[GOSSIP_ID_LEN], const char *name,
                      const char *addr, const uint8_t *meta, size_t meta_len, uint64_t incarnation,
                      const struct swim_callbacks *cb, void *user, uint64_t seed, uint64_t now_ms) {
  if (!cfg || !id || !name || !addr || !cb || !cb->send || id_zero(id)) return NULL;
  if (!name[0] || strnlen(name, GOSSIP_NAME_MAX) >= GOSSIP_NAME_MAX) return NULL;
  if (!addr[0] || strnlen(addr, GOSSIP_ADDR_MAX) >= GOSSIP_ADDR_MAX) return NULL;
  if (meta_len > GOSSIP_META_MAX || (meta_len && !meta)) return NULL;
  if (!cfg->probe_interval_ms || !cfg->probe_timeout_ms || !cfg->gossip_interval_ms) return NULL;
  struct swim *s = xcalloc(1, sizeof *s);
  s->cfg = *cfg;
  if (!s->cfg.packet_budget || s->cfg.packet_budget > GOSSIP_PACKET_MAX)
    s->cfg.packet_budget = GOSSIP_PACKET_MAX;
  if (s->cfg.awareness_max < 0) s->cfg.awareness_max = 0;
  if (s->cfg.retransmit_mult < 1) s->cfg.retransmit_mult = 1;
  if (s->cfg.suspicion_mult < 1) s->cfg.suspicion_mult = 1;
  if (s->cfg.suspicion_max_mult < 1) s->cfg.suspicion_max_mult = 1;
  if (s->cfg.gossip_nodes < 0) s->cfg.gossip_nodes = 0;
  s->cb = *cb;
  s->user = user;
  rng_seed(&s->rng, seed);
  s->now = now_ms;
  s->next_scan_at = UINT64_MAX;
  struct gossip_update u;
  memset(&u, 0, sizeof u);
  memcpy(u.id, id, GOSSIP_ID_LEN);
  memcpy(u.from, id, GOSSIP_ID_LEN);
  str_copy(u.name, sizeof u.name, name);
  str_copy(u.addr, sizeof u.addr, addr);
  u.incarnation = incarnation;
  u.meta_len = (uint16_t)meta_len;
  if (meta_len) memcpy(u.meta, meta, meta_len);
  s->self = member_add(s, &u, GOSSIP_ALIVE, now_ms);
  s->self->pub.is_self = true;
  /* Random phases, so nodes started together do not probe and gossip in lockstep. */
  s->next_probe_at = now_ms + rng_below(&s->rng, s->cfg.probe_interval_ms);
  s->next_gossip_at = now_ms + rng_below(&s->rng, s->cfg.gossip_interval_ms);
  s->next_reconnect_at = now_ms + s->cfg.reconnect_interval_ms; /* no rng draw: seeded runs stay as is */
  if (s->cfg.push_pull_interval_ms)
    s->next_push_pull_at =
        now_ms + s->cfg.push_pull_interval_ms / 2 + rng_below(&s->rng, s->cfg.push_pull_interval_ms / 2 + 1);
  return s;
}

void swim_free(struct swim *s) {
  if (!s) return;
  for (int i = 0; i < s->nmembers; i++)
    free(s->members[i]);
  free(s->members);
  free(s->order);
  free(s->bq);
  free(s->scratch);
  free(s);
}

void swim_receive(struct swim *s, const char *from_addr, const struct gossip_msg *m, uint64_t now_ms) {
  if (!s || !m || id_eq(m->from, self_id(s))) return;
  uint64_t now = advance(s, now_ms);
  s->stats.msgs_received++;
  int n = m->nupdates < 0 ? 0 : m->nupdates > GOSSIP_MAX_UPDATES ? GOSSIP_MAX_UPDATES : m->nupdates;
  s->stats.updates_received += (uint64_t)n;
  /* The sender of outdated facts gets ours back at once. Its gossip retransmits are over long before a
   * round-robin probe or a push-pull would reach it, and a node that took a suspicion late (after the
   * refutation went by) would otherwise time it out and declare a live member dead. */
  struct member *stale[GOSSIP_MAX_UPDATES];
  int nstale = 0;
  for (int i = 0; i < n; i++) {
    const struct gossip_update *u = &m->updates[i];
    struct member *o = update_ok(u) ? lookup(s, u->id) : NULL;
    if (o && !swim_fact_outdated(s, o, u)) o = NULL;
    bool dup = false;
    for (int j = 0; j < nstale && !dup; j++)
      dup = stale[j] == o;
    if (o && !dup) stale[nstale++] = o;
    apply(s, u, false, now);
  }
  const char *reply = str_ok(m->from_addr, sizeof m->from_addr) && m->from_addr[0] ? m->from_addr : from_addr;
  if (!reply || !reply[0] || strnlen(reply, GOSSIP_ADDR_MAX) >= GOSSIP_ADDR_MAX) return;
  /* A message from a node we do not know (its join announcement missed us): exchange tables with it now
   * rather than wait for a retransmit or the next periodic push-pull. */
  if (!lookup(s, m->from) && s->cb.push_pull) s->cb.push_pull(s->user, reply);
  switch (m->type) {
  case GOSSIP_PING:
    /* A PING meant for another id reached a former occupant's address: stay silent. */
    if (!id_zero(m->target) && !id_eq(m->target, self_id(s))) return;
    msg_begin(s, GOSSIP_ACK, m->seq);
    swim_queue_add_facts(s, &s->out, stale, nstale);
    msg_send(s, reply, false);
    return;
  case GOSSIP_PING_REQ: serve_ping_req(s, m, reply, now); break;
  case GOSSIP_ACK: handle_ack(s, m); break;
  case GOSSIP_NACK: handle_nack(s, m); break;
  case GOSSIP_GOSSIP: break;
  }
  if (nstale > 0) {
    msg_begin(s, GOSSIP_GOSSIP, 0);
    swim_queue_add_facts(s, &s->out, stale, nstale);
    msg_send(s, reply, false);
  }
}

void swim_merge(struct swim *s, const struct gossip_update *u, int n, uint64_t now_ms) {
  if (!s || !u) return;
  uint64_t now = advance(s, now_ms);
  for (int i = 0; i < n; i++)
    apply(s, &u[i], true, now);
}

int swim_snapshot(const struct swim *s, struct gossip_update *out, int max) {
  int n = 0;
  if (max <= 0) return 0;
  swim_member_fact(s->self, s->self->pub.u.from, true, &out[n++]);
  for (int i = 0; i < s->nmembers && n < max; i++)
    if (!s->members[i]->pub.is_self)
      swim_member_fact(s->members[i], s->members[i]->pub.u.from, true, &out[n++]);
  return n;
}

void swim_join(struct swim *s, const char *const *addrs, int n, uint64_t now_ms) {
  uint64_t now = advance(s, now_ms);
  for (int i = 0; i < n && s->nseeds < SWIM_MAX_SEEDS; i++) {
    const char *a = addrs[i];
    if (!a || !a[0] || strnlen(a, GOSSIP_ADDR_MAX) >= GOSSIP_ADDR_MAX) continue;
    if (strcmp(a, s->self->pub.u.addr) == 0) continue;
    bool dup = false;
    for (int j = 0; j < s->nseeds && !dup; j++)
      dup = strcmp(s->seeds[j], a) == 0;
    if (!dup) str_copy(s->seeds[s->nseeds++], GOSSIP_ADDR_MAX, a);
  }
  if (!s->left && others_alive(s) == 0 && s->nseeds > 0) {
    seed_round(s);
    s->next_probe_at = now + scaled(s, s->cfg.probe_interval_ms);
  }
}

int swim_set_meta(struct swim *s, const uint8_t *meta, size_t len, uint64_t now_ms) {
  if (!s || len > GOSSIP_META_MAX || (len && !meta) || s->left) return -EINVAL;
  advance(s, now_ms);
  struct gossip_update *me = &s->self->pub.u;
  me->meta_len = (uint16_t)len;
  if (len) memcpy(me->meta, meta, len);
  me->incarnation++;
  swim_queue_push(s, s->self, me->id);
  return 0;
}

void swim_leave(struct swim *s, uint64_t now_ms) {
  if (!s || s->left) return;
  uint64_t now = advance(s, now_ms);
  s->left = true;
  s->probe.active = false;
  s->self->pub.u.incarnation++;
  set_state(s, s->self, GOSSIP_LEFT, now);
  swim_queue_push(s, s->self, self_id(s));
}

bool swim_leave_flushed(const struct swim *s) {
  return s->left && (s->self->bq_idx < 0 || others_alive(s) == 0);
}

const struct swim_member *swim_find(const struct swim *s, const uint8_t id[GOSSIP_ID_LEN]) {
  const struct member *m = lookup(s, id);
  return m ? &m->pub : NULL;
}

void swim_each(const struct swim *s, void (*fn)(void *arg, const struct swim_member *m), void *arg) {
  for (int i = 0; i < s->nmembers; i++)
    fn(arg, &s->members[i]->pub);
}

int swim_num_alive(const struct swim *s) { return s->nalive; }
int swim_awareness(const struct swim *s) { return s->awareness; }
uint64_t swim_incarnation(const struct swim *s) { return s->self->pub.u.incarnation; }
const struct swim_stats *swim_stats(const struct swim *s) { return &s->stats; }
