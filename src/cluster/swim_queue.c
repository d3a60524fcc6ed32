/* SWIM's dissemination: the queue (one pending fact per member, piggybacked on outgoing messages a bounded
 * number of times, fewest-transmitted first, like memberlist's TransmitLimitedQueue), and the direct
 * corrections sent to a peer that spreads outdated facts. */
#include <math.h>
#include <string.h>

#include "cluster/swim_int.h"
#include "core/slice.h"
#include "proto/gossip_codec.h"

/* The smallest gossip_update_size_bound can be (empty name and addr, no meta): once less than this is left
 * in the budget, nothing else can fit. */
#define UPDATE_MIN_BOUND (2 * (GOSSIP_ID_LEN + 2) + 2 + 2 + 3 + 11 + 2 + 8)

int swim_queue_limit(const struct swim *s) {
  int lim = s->cfg.retransmit_mult * (int)ceil(log10((double)s->nalive + 1.0));
  return lim < 1 ? 1 : lim;
}

void swim_queue_push(struct swim *s, struct member *m, const uint8_t from[GOSSIP_ID_LEN]) {
  if (m->bq_idx < 0) {
    m->bq_idx = s->nbq;
    s->bq[s->nbq++] = m;
  }
  m->bq_transmits = 0;
  m->bq_order = ++s->bq_counter;
  memcpy(m->bq_from, from, GOSSIP_ID_LEN);
}

void swim_queue_remove(struct swim *s, struct member *m) {
  int i = m->bq_idx;
  if (i < 0) return;
  struct member *last = s->bq[--s->nbq];
  s->bq[i] = last;
  last->bq_idx = i;
  m->bq_idx = -1;
}

void swim_member_fact(const struct member *m, const uint8_t from[GOSSIP_ID_LEN], bool with_meta,
                      struct gossip_update *out) {
  const struct gossip_update *u = &m->pub.u;
  memcpy(out->id, u->id, GOSSIP_ID_LEN);
  str_copy(out->name, sizeof out->name, u->name);
  str_copy(out->addr, sizeof out->addr, u->addr);
  out->incarnation = u->incarnation;
  out->state = u->state;
  memcpy(out->from, from, GOSSIP_ID_LEN);
  /* Meta travels with ALIVE facts only (SUSPECT/DEAD/LEFT stay small), and always in push-pull. */
  out->meta_len = (with_meta || u->state == GOSSIP_ALIVE) ? u->meta_len : 0;
  memcpy(out->meta, u->meta, out->meta_len);
}

static bool msg_has(const struct gossip_msg *msg, int n, const uint8_t id[GOSSIP_ID_LEN]) {
  for (int i = 0; i < n; i++)
    if (memcmp(msg->updates[i].id, id, GOSSIP_ID_LEN) == 0) return true;
  return false;
}

void swim_queue_fill(struct swim *s, struct gossip_msg *msg) {
  size_t budget = s->cfg.packet_budget;
  size_t used = gossip_swim_size_bound(msg);
  int prefilled = msg->nupdates, limit = swim_queue_limit(s), npicked = 0;
  struct member *picked[GOSSIP_MAX_UPDATES];
  uint32_t stamp = ++s->pick_stamp;
  while (msg->nupdates < GOSSIP_MAX_UPDATES && used + UPDATE_MIN_BOUND <= budget) {
    struct member *best = NULL;
    for (int i = 0; i < s->nbq; i++) {
      struct member *m = s->bq[i];
      if (m->bq_stamp == stamp) continue;
      if (!best || m->bq_transmits < best->bq_transmits ||
          (m->bq_transmits == best->bq_transmits && m->bq_order > best->bq_order))
        best = m;
    }
    if (!best) break;
    best->bq_stamp = stamp;
    if (msg_has(msg, prefilled, best->pub.u.id)) continue;
    struct gossip_update *u = &msg->updates[msg->nupdates];
    swim_member_fact(best, best->bq_from, false, u);
    size_t sz = gossip_update_size_bound(u);
    if (used + sz > budget) continue; /* a smaller one further down may still fit */
    used += sz;
    msg->nupdates++;
    picked[npicked++] = best;
  }
  for (int i = 0; i < npicked; i++)
    if (++picked[i]->bq_transmits >= limit) swim_queue_remove(s, picked[i]);
}

bool swim_fact_outdated(const struct swim *s, const struct member *m, const struct gossip_update *u) {
  const struct gossip_update *f = &m->pub.u;
  bool live = f->state == GOSSIP_ALIVE || f->state == GOSSIP_SUSPECT;
  bool u_live = u->state == GOSSIP_ALIVE || u->state == GOSSIP_SUSPECT;
  if (m->pub.is_self) return !s->left && u->state != GOSSIP_ALIVE && u->incarnation < f->incarnation;
  if (u->incarnation < f->incarnation) return true;
  return u->incarnation == f->incarnation && !live && u_live;
}

void swim_queue_add_facts(struct swim *s, struct gossip_msg *msg, struct member **ms, int n) {
  size_t used = gossip_swim_size_bound(msg);
  for (int i = 0; i < n && msg->nupdates < GOSSIP_MAX_UPDATES; i++) {
    struct gossip_update *u = &msg->updates[msg->nupdates];
    bool dead = ms[i]->pub.u.state == GOSSIP_DEAD;
    swim_member_fact(ms[i], dead ? s->self->pub.u.id : ms[i]->pub.u.from, false, u);
    if (dead) u->state = GOSSIP_SUSPECT;
    size_t sz = gossip_update_size_bound(u);
    if (used + sz > s->cfg.packet_budget) continue;
    used += sz;
    msg->nupdates++;
  }
}
