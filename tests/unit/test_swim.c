/* SWIM + Lifeguard tests: incarnation precedence, refutation, tombstones, suspicion timing, local health,
 * dissemination; then whole clusters on an in-memory network (loss, delay, partitions) in virtual time:
 * join, failure detection, false positives under loss, partition heal, restart, leave, determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/swim.h"
#include "core/rng.h"
#include "proto/gossip_codec.h"

/* --- ids, names, addresses: member i is "n<i>" with id[0] = i + 1 --- */

static void mkid(uint8_t id[GOSSIP_ID_LEN], int i) {
  memset(id, 0xa5, GOSSIP_ID_LEN);
  id[0] = (uint8_t)(i + 1);
}

static int addr_index(const char *addr) {
  if (!addr || addr[0] != 'n') return -1;
  char *end;
  long v = strtol(addr + 1, &end, 10);
  return *end || v < 0 ? -1 : (int)v;
}

static void fill_upd(struct gossip_update *u, int who, enum gossip_state st, uint64_t inc, int from,
                     const char *meta) {
  memset(u, 0, sizeof *u);
  mkid(u->id, who);
  mkid(u->from, from);
  snprintf(u->name, sizeof u->name, "n%d", who);
  snprintf(u->addr, sizeof u->addr, "n%d", who);
  u->incarnation = inc;
  u->state = st;
  if (!meta) meta = "role=gpu;zone=eu-1";
  u->meta_len = (uint16_t)strlen(meta);
  memcpy(u->meta, meta, u->meta_len);
}

static struct gossip_msg *new_msg(enum gossip_type t, int from, uint32_t seq) {
  static struct gossip_msg m;
  memset(&m, 0, offsetof(struct gossip_msg, updates));
  m.type = t;
  m.seq = seq;
  mkid(m.from, from);
  snprintf(m.from_addr, sizeof m.from_addr, "n%d", from);
  return &m;
}

static void add_upd(struct gossip_msg *m, int who, enum gossip_state st, uint64_t inc, int from,
                    const char *meta) {
  fill_upd(&m->updates[m->nupdates++], who, st, inc, from, meta);
}

/* Single-node tests use fixed round numbers (not the defaults, which may be retuned); cluster tests use the
 * defaults. */
static struct swim_config test_cfg(void) {
  struct swim_config c = {.probe_interval_ms = 200,
                          .probe_timeout_ms = 150,
                          .indirect_checks = 3,
                          .suspicion_mult = 4,
                          .suspicion_max_mult = 6,
                          .retransmit_mult = 4,
                          .gossip_interval_ms = 50,
                          .gossip_nodes = 3,
                          .awareness_max = 8,
                          .dead_reclaim_ms = 60000,
                          .push_pull_interval_ms = 30000,
                          .packet_budget = 1400};
  return c;
}

static struct swim_config cluster_cfg(void) {
  struct swim_config c;
  swim_config_default(&c);
  return c;
}

/* ========================= one node, its messages captured ========================= */

struct sent {
  char addr[GOSSIP_ADDR_MAX];
  uint64_t at;
  struct gossip_msg m;
};

struct evrec {
  int who;
  enum swim_event ev;
  enum gossip_state st;
  uint64_t inc;
};

struct solo {
  struct swim *s;
  struct swim_config cfg;
  uint64_t now;
  struct sent *log;
  int nlog, cap, cursor;
  struct evrec ev[1024];
  int nev;
  int pushpulls;
  char pp[64][GOSSIP_ADDR_MAX]; /* the first 64 push-pull addresses */
  bool auto_ack, auto_nack;
};

static struct solo T;

static void solo_send_cb(void *user, const char *addr, const struct gossip_msg *m) {
  if (T.nlog == T.cap) {
    T.cap = T.cap ? 2 * T.cap : 64;
    T.log = realloc(T.log, (size_t)T.cap * sizeof *T.log);
    assert_non_null(T.log);
  }
  struct sent *e = &T.log[T.nlog++];
  snprintf(e->addr, sizeof e->addr, "%s", addr);
  e->at = T.now;
  e->m = *m;
}

static void solo_event_cb(void *user, const struct swim_member *m, enum swim_event ev) {
  assert_true(T.nev < 1024);
  T.ev[T.nev++] = (struct evrec){m->u.id[0] - 1, ev, m->u.state, m->u.incarnation};
}

static void solo_pp_cb(void *user, const char *addr) {
  if (T.pushpulls < 64) snprintf(T.pp[T.pushpulls], sizeof T.pp[0], "%s", addr);
  T.pushpulls++;
}

static bool pushpulled(const char *addr) {
  for (int i = 0; i < T.pushpulls && i < 64; i++)
    if (strcmp(T.pp[i], addr) == 0) return true;
  return false;
}

/* pump answers what the node sent, as its peers would: PING -> ACK from the target (auto_ack), PING_REQ ->
 * NACK from the helper (auto_nack). Answers arrive at the same millisecond. */
static void pump(void) {
  while (T.cursor < T.nlog) {
    struct sent *e = &T.log[T.cursor++];
    int to = addr_index(e->addr);
    uint32_t seq = e->m.seq;
    enum gossip_type type = e->m.type;
    if (type == GOSSIP_PING && T.auto_ack && to > 0) {
      swim_receive(T.s, e->addr, new_msg(GOSSIP_ACK, to, seq), T.now);
    } else if (type == GOSSIP_PING_REQ && T.auto_nack && to > 0) {
      swim_receive(T.s, e->addr, new_msg(GOSSIP_NACK, to, seq), T.now);
    }
  }
}

static void solo_start(const struct swim_config *cfg, uint64_t now) {
  free(T.log);
  memset(&T, 0, sizeof T);
  T.cfg = *cfg;
  T.now = now;
  uint8_t id[GOSSIP_ID_LEN];
  mkid(id, 0);
  struct swim_callbacks cb = {solo_send_cb, solo_event_cb, solo_pp_cb};
  const char *meta = "role=gateway";
  T.s = swim_new(cfg, id, "n0", "n0", (const uint8_t *)meta, strlen(meta), 0, &cb, NULL, 42, now);
  assert_non_null(T.s);
}

static void solo_stop(void) {
  swim_free(T.s);
  free(T.log);
  memset(&T, 0, sizeof T);
}

/* solo_run handles every deadline up to and including `until`, then sets the clock there. */
static void solo_run(uint64_t until) {
  for (;;) {
    uint64_t d = swim_next_deadline(T.s);
    assert_true(d <= T.now + T.cfg.gossip_interval_ms); /* the contract */
    if (d > until) break;
    if (d > T.now) T.now = d;
    swim_tick(T.s, T.now);
    pump();
  }
  T.now = until;
}

static void solo_recv(struct gossip_msg *m) {
  swim_receive(T.s, m->from_addr, m, T.now);
  pump();
}

/* solo_members makes members 1..n known alive at incarnation 0 (through a push-pull merge). */
static void solo_members(int n) {
  struct gossip_update *u = calloc((size_t)n, sizeof *u);
  assert_non_null(u);
  for (int i = 0; i < n; i++)
    fill_upd(&u[i], i + 1, GOSSIP_ALIVE, 0, i + 1, NULL);
  swim_merge(T.s, u, n, T.now);
  free(u);
  T.nev = 0;
}

static const struct swim_member *member(int i) {
  uint8_t id[GOSSIP_ID_LEN];
  mkid(id, i);
  return swim_find(T.s, id);
}

static int state_of(int i) {
  const struct swim_member *m = member(i);
  return m ? (int)m->u.state : -1;
}

static uint64_t inc_of(int i) {
  const struct swim_member *m = member(i);
  assert_non_null(m);
  return m->u.incarnation;
}

/* one update, through a GOSSIP message from `via` */
static void gossip1(int via, int who, enum gossip_state st, uint64_t inc, int from, const char *meta) {
  struct gossip_msg *m = new_msg(GOSSIP_GOSSIP, via, 0);
  add_upd(m, who, st, inc, from, meta);
  solo_recv(m);
}

static int count_ev(int who, enum swim_event ev) {
  int n = 0;
  for (int i = 0; i < T.nev; i++)
    n += T.ev[i].who == who && T.ev[i].ev == ev;
  return n;
}

/* sent_update finds the newest update about `who` in messages sent at index >= from_idx. */
static const struct gossip_update *sent_update(int from_idx, int who) {
  const struct gossip_update *found = NULL;
  for (int i = from_idx; i < T.nlog; i++)
    for (int k = 0; k < T.log[i].m.nupdates; k++)
      if (T.log[i].m.updates[k].id[0] == who + 1) found = &T.log[i].m.updates[k];
  return found;
}

static void test_config_default(void **state) {
  struct swim_config c = cluster_cfg();
  assert_true(c.probe_timeout_ms < c.probe_interval_ms);
  assert_true(c.indirect_checks >= 1 && c.suspicion_max_mult > 1 &&
              c.gossip_interval_ms < c.probe_interval_ms);
  assert_true(c.packet_budget <= GOSSIP_PACKET_MAX);
  uint8_t id[GOSSIP_ID_LEN], zero[GOSSIP_ID_LEN] = {0};
  mkid(id, 0);
  struct swim_callbacks cb = {solo_send_cb, NULL, NULL};
  uint8_t big[GOSSIP_META_MAX + 1] = {0};
  assert_null(swim_new(&c, id, "", "n0", NULL, 0, 0, &cb, NULL, 1, 0));
  assert_null(swim_new(&c, id, "n0", "", NULL, 0, 0, &cb, NULL, 1, 0));
  assert_null(swim_new(&c, id, "n0", "n0", big, sizeof big, 0, &cb, NULL, 1, 0));
  assert_null(swim_new(&c, zero, "n0", "n0", NULL, 0, 0, &cb, NULL, 1, 0));
  struct swim *s = swim_new(&c, id, "n0", "n0", big, GOSSIP_META_MAX, 7, &cb, NULL, 1, 0);
  assert_non_null(s);
  assert_int_equal(swim_incarnation(s), 7);
  assert_int_equal(swim_num_alive(s), 1);
  assert_true(swim_next_deadline(s) <= c.gossip_interval_ms);
  swim_free(s);
}

/* Each precedence rule of SWIM/memberlist, in one member's life. */
static void test_precedence(void **state) {
  struct swim_config c = test_cfg();
  solo_start(&c, 1000);
  gossip1(9, 1, GOSSIP_ALIVE, 1, 1, NULL);
  assert_int_equal(count_ev(1, SWIM_EV_JOIN), 1);
  assert_int_equal(state_of(1), GOSSIP_ALIVE);
  assert_int_equal(swim_num_alive(T.s), 2);
  gossip1(9, 1, GOSSIP_SUSPECT, 0, 2, NULL); /* older: ignored */
  gossip1(9, 1, GOSSIP_ALIVE, 1, 1, NULL);   /* the same fact: nothing */
  assert_int_equal(state_of(1), GOSSIP_ALIVE);
  assert_int_equal(T.nev, 1);
  gossip1(9, 1, GOSSIP_SUSPECT, 1, 2, NULL); /* SUSPECT(i) beats ALIVE(i) */
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  assert_int_equal(count_ev(1, SWIM_EV_SUSPECT), 1);
  assert_int_equal(member(1)->u.from[0], 3); /* first suspecter: n2 */
  gossip1(9, 1, GOSSIP_ALIVE, 1, 1, NULL);   /* ALIVE(i) does not beat SUSPECT(i) */
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  gossip1(9, 1, GOSSIP_ALIVE, 2, 1, NULL); /* ALIVE(i+1) does: refuted */
  assert_int_equal(state_of(1), GOSSIP_ALIVE);
  assert_int_equal(count_ev(1, SWIM_EV_ALIVE), 1);
  gossip1(9, 1, GOSSIP_SUSPECT, 3, 2, NULL); /* SUSPECT(i) beats ALIVE(j) for i > j too */
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  assert_int_equal(inc_of(1), 3);
  gossip1(9, 1, GOSSIP_DEAD, 2, 2, NULL); /* older DEAD: ignored */
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  gossip1(9, 1, GOSSIP_DEAD, 3, 2, NULL);
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  assert_int_equal(count_ev(1, SWIM_EV_DEAD), 1);
  assert_int_equal(swim_num_alive(T.s), 1);
  /* tombstone: not resurrected by ALIVE/SUSPECT <= i, but by ALIVE(i+1) */
  gossip1(9, 1, GOSSIP_ALIVE, 3, 1, NULL);
  gossip1(9, 1, GOSSIP_SUSPECT, 4, 2, NULL);
  gossip1(9, 1, GOSSIP_ALIVE, 2, 1, NULL);
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  gossip1(9, 1, GOSSIP_ALIVE, 4, 1, NULL);
  assert_int_equal(state_of(1), GOSSIP_ALIVE);
  assert_int_equal(count_ev(1, SWIM_EV_ALIVE), 2);
  /* LEFT overrides ALIVE at the same incarnation; only a higher ALIVE brings it back */
  gossip1(9, 1, GOSSIP_LEFT, 4, 1, NULL);
  assert_int_equal(state_of(1), GOSSIP_LEFT);
  assert_int_equal(count_ev(1, SWIM_EV_LEFT), 1);
  gossip1(9, 1, GOSSIP_ALIVE, 4, 1, NULL);
  gossip1(9, 1, GOSSIP_DEAD, 4, 2, NULL); /* DEAD does not replace LEFT at the same incarnation */
  assert_int_equal(state_of(1), GOSSIP_LEFT);
  gossip1(9, 1, GOSSIP_ALIVE, 5, 1, NULL);
  assert_int_equal(state_of(1), GOSSIP_ALIVE);
  /* new meta at a higher incarnation: UPDATE; another addr at the same incarnation: conflict, ignored */
  int updates = count_ev(1, SWIM_EV_UPDATE);
  gossip1(9, 1, GOSSIP_ALIVE, 6, 1, "role=gpu;models=2");
  assert_int_equal(count_ev(1, SWIM_EV_UPDATE), updates + 1);
  assert_memory_equal(member(1)->u.meta, "role=gpu;models=2", member(1)->u.meta_len);
  struct gossip_msg *m = new_msg(GOSSIP_GOSSIP, 9, 0);
  add_upd(m, 1, GOSSIP_ALIVE, 6, 1, "role=gpu;models=2");
  snprintf(m->updates[0].addr, sizeof m->updates[0].addr, "n77");
  solo_recv(m);
  assert_string_equal(member(1)->u.addr, "n1");
  m = new_msg(GOSSIP_GOSSIP, 9, 0);
  add_upd(m, 1, GOSSIP_ALIVE, 7, 1, "role=gpu;models=2");
  snprintf(m->updates[0].addr, sizeof m->updates[0].addr, "n77");
  solo_recv(m);
  assert_string_equal(member(1)->u.addr, "n77");
  assert_int_equal(count_ev(1, SWIM_EV_UPDATE), updates + 2);
  gossip1(9, 1, GOSSIP_ALIVE, 8, 1, "role=gpu;models=2"); /* same meta, different addr again: UPDATE */
  assert_int_equal(count_ev(1, SWIM_EV_UPDATE), updates + 3);
  gossip1(9, 1, GOSSIP_ALIVE, 9, 1, "role=gpu;models=2"); /* only the incarnation rose: no event */
  assert_int_equal(count_ev(1, SWIM_EV_UPDATE), updates + 3);
  assert_int_equal(inc_of(1), 9);
  /* DEAD about a member never seen: a silent tombstone that stale ALIVE cannot undo */
  int nev = T.nev;
  gossip1(9, 2, GOSSIP_DEAD, 2, 3, NULL);
  assert_int_equal(T.nev, nev);
  assert_int_equal(state_of(2), GOSSIP_DEAD);
  gossip1(9, 2, GOSSIP_ALIVE, 2, 2, NULL);
  assert_int_equal(state_of(2), GOSSIP_DEAD);
  gossip1(9, 2, GOSSIP_ALIVE, 3, 2, NULL);
  assert_int_equal(state_of(2), GOSSIP_ALIVE);
  assert_int_equal(count_ev(2, SWIM_EV_JOIN), 1); /* first seen alive */
  assert_int_equal(count_ev(2, SWIM_EV_ALIVE), 0);
  /* SUSPECT about a member never seen is ignored when piggybacked */
  gossip1(9, 3, GOSSIP_SUSPECT, 0, 2, NULL);
  assert_int_equal(state_of(3), -1);
  /* messages from our own id are ignored */
  struct gossip_msg *own = new_msg(GOSSIP_GOSSIP, 0, 0);
  add_upd(own, 4, GOSSIP_ALIVE, 0, 4, NULL);
  solo_recv(own);
  assert_int_equal(state_of(4), -1);
  solo_stop();
}

/* A SUSPECT/DEAD/LEFT about this node makes it outbid the fact with a higher incarnation and disseminate
 * ALIVE; a stale one only re-announces the current ALIVE. */
static void test_refute_about_self(void **state) {
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  solo_members(1);
  T.auto_ack = true;
  gossip1(1, 0, GOSSIP_SUSPECT, 0, 1, NULL);
  assert_int_equal(swim_incarnation(T.s), 1);
  assert_int_equal(swim_awareness(T.s), 1);
  assert_int_equal(swim_stats(T.s)->refutations, 1);
  assert_int_equal(T.nev, 0); /* no events about ourselves */
  int mark = T.nlog;
  solo_run(T.now + 200);
  const struct gossip_update *u = sent_update(mark, 0);
  assert_non_null(u);
  assert_int_equal(u->state, GOSSIP_ALIVE);
  assert_int_equal(u->incarnation, 1);
  assert_memory_equal(u->meta, "role=gateway", u->meta_len); /* with its meta */
  int aw = swim_awareness(T.s);                              /* acked probes brought it down meanwhile */
  gossip1(1, 0, GOSSIP_DEAD, 3, 1, NULL);
  assert_int_equal(swim_incarnation(T.s), 4);
  assert_int_equal(swim_awareness(T.s), aw + 1);
  gossip1(1, 0, GOSSIP_SUSPECT, 2, 1, NULL); /* stale: no new incarnation, but ALIVE(4) goes out again */
  assert_int_equal(swim_incarnation(T.s), 4);
  mark = T.nlog;
  solo_run(T.now + 200);
  u = sent_update(mark, 0);
  assert_non_null(u);
  assert_int_equal(u->incarnation, 4);
  /* what a restarted node hears about its former life: ALIVE at its own incarnation with other meta */
  gossip1(1, 0, GOSSIP_ALIVE, 4, 0, "old-meta");
  assert_int_equal(swim_incarnation(T.s), 5);
  gossip1(1, 0, GOSSIP_ALIVE, 5, 0, "role=gateway"); /* our own fact echoed: nothing */
  assert_int_equal(swim_incarnation(T.s), 5);
  gossip1(1, 0, GOSSIP_LEFT, 5, 1, NULL); /* someone says we left: we did not */
  assert_int_equal(swim_incarnation(T.s), 6);
  assert_int_equal(swim_stats(T.s)->refutations, 4);
  T.auto_ack = false;
  aw = swim_awareness(T.s);
  gossip1(1, 0, GOSSIP_ALIVE, 9, 0, NULL);
  gossip1(1, 0, GOSSIP_LEFT, 10, 1, NULL);
  assert_int_equal(swim_incarnation(T.s), 11);
  assert_int_equal(swim_awareness(T.s), aw); /* only suspicions count against our health */
  assert_int_equal(member(0)->u.state, GOSSIP_ALIVE);
  /* once left, nothing is refuted */
  swim_leave(T.s, T.now);
  assert_int_equal(swim_incarnation(T.s), 12);
  gossip1(1, 0, GOSSIP_DEAD, 19, 1, NULL);
  assert_int_equal(swim_incarnation(T.s), 12);
  assert_int_equal(member(0)->u.state, GOSSIP_LEFT);
  solo_stop();
}

/* A peer that holds a member live while we hold it dead at the same incarnation hears a suspicion from us, not
 * a death: it may have missed the death, or we may be the stale side of a healed partition. */
static void test_dead_corrected_as_suspicion(void **state) {
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  solo_members(3);
  gossip1(1, 2, GOSSIP_DEAD, 0, 1, NULL); /* n1 declared n2 dead */
  assert_int_equal(state_of(2), GOSSIP_DEAD);
  int mark = T.nlog;
  gossip1(3, 2, GOSSIP_ALIVE, 0, 2, NULL); /* n3 still holds n2 alive (say it never stopped hearing it) */
  const struct gossip_update *u = sent_update(mark, 2);
  assert_non_null(u);
  assert_int_equal(u->state, GOSSIP_SUSPECT);
  assert_int_equal(u->incarnation, 0);
  assert_int_equal(u->from[0], 1); /* suspected by us (id of node 0) */
  assert_int_equal(state_of(2), GOSSIP_DEAD); /* our own view is unchanged */
  /* a newer incarnation is news, not a straggler: it brings n2 back, and nothing is sent about it */
  mark = T.nlog;
  gossip1(3, 2, GOSSIP_ALIVE, 1, 2, NULL);
  assert_int_equal(state_of(2), GOSSIP_ALIVE);
  assert_null(sent_update(mark, 2));
  solo_stop();
}

/* Tombstones stay dead_reclaim_ms (reported in snapshots), then are forgotten. */
static void test_tombstone_reclaim(void **state) {
  struct swim_config c = test_cfg();
  c.dead_reclaim_ms = 5000;
  solo_start(&c, 0);
  solo_members(2);
  T.auto_ack = true;
  gossip1(2, 1, GOSSIP_DEAD, 0, 2, NULL);
  uint64_t t0 = T.now;
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  struct gossip_update snap[8];
  int n = swim_snapshot(T.s, snap, 8);
  assert_int_equal(n, 3);
  assert_int_equal(snap[0].id[0], 1); /* self first */
  assert_int_equal(snap[1].id[0], 2);
  assert_int_equal(snap[1].state, GOSSIP_DEAD);
  assert_int_equal(snap[1].meta_len, strlen("role=gpu;zone=eu-1")); /* push-pull carries meta */
  assert_int_equal(swim_snapshot(T.s, snap, 1), 1);
  solo_run(t0 + 4999);
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  assert_int_equal(count_ev(1, SWIM_EV_FORGOTTEN), 0);
  solo_run(t0 + 5000);
  assert_int_equal(state_of(1), -1);
  assert_int_equal(count_ev(1, SWIM_EV_FORGOTTEN), 1);
  assert_int_equal(swim_snapshot(T.s, snap, 8), 2);
  /* forgotten: a later ALIVE is a new member again */
  gossip1(2, 1, GOSSIP_ALIVE, 0, 1, NULL);
  assert_int_equal(count_ev(1, SWIM_EV_JOIN), 1);
  solo_run(T.now + 10000); /* the live ones are never reclaimed */
  assert_int_equal(state_of(2), GOSSIP_ALIVE);
  solo_stop();
}

/* timeout = max(min, max - (max - min) log(C+1)/log(K+1)), min = 4 log10(N) 200 ms, max = 6 min.
 * N = 10 (self + 9): min = 800, max = 4800; C=1: 2800; C=2: 4800 - 4000 log 3/log 4 = 1630; C=3: 800. */
static void run_suspicion(int confirmations, uint64_t expect_ms) {
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  solo_members(9);
  T.auto_ack = true; /* our own probes succeed, so we never confirm */
  uint64_t t0 = 1000;
  solo_run(t0);
  gossip1(5, 1, GOSSIP_SUSPECT, 0, 2, NULL);
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  for (int i = 0; i < confirmations; i++) {
    solo_run(t0 + 10 * (uint64_t)(i + 1));
    gossip1(5, 1, GOSSIP_SUSPECT, 0, 2, NULL);     /* the first suspecter again: not a confirmation */
    gossip1(5, 1, GOSSIP_SUSPECT, 0, 3 + i, NULL); /* a new one */
    gossip1(6, 1, GOSSIP_SUSPECT, 0, 3 + i, NULL); /* the same one again: not counted twice */
  }
  solo_run(t0 + expect_ms - 1);
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  solo_run(t0 + expect_ms);
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  assert_int_equal(count_ev(1, SWIM_EV_DEAD), 1);
  assert_int_equal(member(1)->u.from[0], 1); /* declared by us */
  assert_int_equal(swim_stats(T.s)->deaths, 1);
  solo_stop();
}

static void test_suspicion_timeout(void **state) {
  run_suspicion(0, 4800);
  run_suspicion(1, 2800);
  run_suspicion(2, 1630);
  run_suspicion(3, 800);
  run_suspicion(5, 800); /* beyond K: the minimum */
  /* N = 2: min = 4 * log10(2) * 200 = 240.8 -> 241 ms, max = 1446 ms */
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  solo_members(1);
  T.auto_ack = true;
  gossip1(7, 1, GOSSIP_SUSPECT, 0, 7, NULL);
  solo_run(1445);
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  solo_run(1446);
  assert_int_equal(state_of(1), GOSSIP_DEAD);
  solo_stop();
}

/* The time of every direct PING to a member (not relays), to see the probe interval. */
static int ping_times(uint64_t *at, int max) {
  int n = 0;
  for (int i = 0; i < T.nlog && n < max; i++)
    if (T.log[i].m.type == GOSSIP_PING && T.log[i].m.seq != 0) at[n++] = T.log[i].at;
  return n;
}

/* Lifeguard: a failed probe +1, each helper that never answers +1, an ack -1; the probe interval and timeout
 * scale by 1 + score. */
static void test_lifeguard_awareness(void **state) {
  struct swim_config c = test_cfg();
  c.suspicion_mult = 20; /* nobody dies during this test */
  solo_start(&c, 0);
  solo_members(3);
  /* probe 1: no ack, and the 2 helpers (the 3rd member is the target) never answer */
  while (swim_stats(T.s)->probes == 0)
    solo_run(T.now + 1);
  uint64_t first = T.now;
  solo_run(first + 149);
  assert_int_equal(swim_stats(T.s)->indirect_probes, 0);
  solo_run(first + 150); /* direct timeout: PING_REQ to 2 helpers */
  assert_int_equal(swim_stats(T.s)->indirect_probes, 1);
  int reqs = 0;
  for (int i = 0; i < T.nlog; i++)
    reqs += T.log[i].m.type == GOSSIP_PING_REQ;
  assert_int_equal(reqs, 2);
  /* from now on every PING is acked. At +200 probe 1 fails (+1) and probe 2 starts, 2x stretched, and is
   * acked at once (-1); the helpers' silence counts when their time is up: 150 + 150 + 150 = +450 (+2). */
  T.auto_ack = true;
  solo_run(first + 200);
  assert_int_equal(swim_stats(T.s)->probe_failures, 1);
  assert_int_equal(swim_stats(T.s)->suspicions, 1);
  assert_int_equal(swim_awareness(T.s), 0);
  solo_run(first + 449);
  assert_int_equal(swim_awareness(T.s), 0);
  solo_run(first + 450);
  assert_int_equal(swim_awareness(T.s), 2);
  solo_run(first + 5000);
  assert_int_equal(swim_awareness(T.s), 0);
  uint64_t at[64];
  int n = ping_times(at, 64);
  assert_true(n >= 7);
  uint64_t expect[] = {200, 400, 600, 400, 200, 200};
  for (int i = 0; i < 6; i++)
    assert_int_equal(at[i + 1] - at[i], expect[i]);
  assert_int_equal(swim_stats(T.s)->acks, (uint64_t)(n - 1));
  /* the ceiling */
  T.auto_ack = false;
  solo_run(T.now + 60000);
  assert_int_equal(swim_awareness(T.s), c.awareness_max);
  solo_stop();
}

/* A helper answers with a nack, or with a relayed ack even after the probe ended: either shows our messages
 * get through. Only the silent one counts against us. */
static void test_lifeguard_helper_answers(void **state) {
  struct swim_config c = test_cfg();
  c.suspicion_mult = 20;
  solo_start(&c, 0);
  solo_members(6);
  while (swim_stats(T.s)->indirect_probes == 0)
    solo_run(T.now + 1);
  uint64_t first = T.now - 150;
  int h[3], nh = 0, target = 0, other = 0;
  uint32_t seq = 0;
  for (int i = 0; i < T.nlog; i++)
    if (T.log[i].m.type == GOSSIP_PING_REQ) {
      h[nh++] = addr_index(T.log[i].addr);
      seq = T.log[i].m.seq;
      target = T.log[i].m.target[0] - 1;
    }
  assert_int_equal(nh, 3);
  for (int i = 1; i <= 6 && !other; i++)
    if (i != target && i != h[0] && i != h[1] && i != h[2]) other = i;
  assert_true(other > 0);
  solo_run(first + 170);
  solo_recv(new_msg(GOSSIP_NACK, h[0], seq));
  solo_recv(new_msg(GOSSIP_NACK, h[0], seq));  /* twice: counted once */
  solo_recv(new_msg(GOSSIP_NACK, other, seq)); /* not a helper of this round */
  assert_int_equal(swim_stats(T.s)->nacks_received, 3);
  solo_run(first + 200);
  assert_int_equal(swim_awareness(T.s), 1);
  solo_run(first + 300);
  solo_recv(new_msg(GOSSIP_ACK, h[1], seq)); /* relayed ack, after the probe ended */
  solo_run(first + 449);
  assert_int_equal(swim_awareness(T.s), 1);
  solo_run(first + 450);
  assert_int_equal(swim_awareness(T.s), 2); /* h[2] never answered */
  assert_int_equal(swim_stats(T.s)->acks, 0);
  solo_stop();
}

/* Serving a PING_REQ: probe the target with our own seq, relay its ACK with the requester's seq, or NACK
 * after our probe timeout. A PING for another id (a former occupant of our address) is not answered. */
static void test_indirect_relay(void **state) {
  struct swim_config c = test_cfg();
  c.probe_interval_ms = 100000; /* keep our own probing out of the way */
  solo_start(&c, 0);
  solo_members(2);
  T.now = 50;
  struct gossip_msg *m = new_msg(GOSSIP_PING_REQ, 1, 77);
  mkid(m->target, 2);
  snprintf(m->target_addr, sizeof m->target_addr, "n2");
  int mark = T.nlog;
  solo_recv(m);
  assert_int_equal(T.nlog, mark + 1);
  assert_int_equal(T.log[mark].m.type, GOSSIP_PING);
  assert_string_equal(T.log[mark].addr, "n2");
  assert_int_equal(T.log[mark].m.target[0], 3);
  uint32_t our_seq = T.log[mark].m.seq;
  solo_recv(new_msg(GOSSIP_ACK, 2, our_seq));
  assert_int_equal(T.nlog, mark + 2);
  assert_int_equal(T.log[mark + 1].m.type, GOSSIP_ACK);
  assert_int_equal(T.log[mark + 1].m.seq, 77);
  assert_string_equal(T.log[mark + 1].addr, "n1");
  /* no answer: NACK after the probe timeout */
  m = new_msg(GOSSIP_PING_REQ, 1, 78);
  mkid(m->target, 2);
  snprintf(m->target_addr, sizeof m->target_addr, "n2");
  solo_recv(m);
  mark = T.nlog;
  solo_run(T.now + c.probe_timeout_ms - 1);
  for (int i = mark; i < T.nlog; i++)
    assert_int_not_equal(T.log[i].m.type, GOSSIP_NACK);
  solo_run(T.now + 1);
  int nacks = 0;
  for (int i = mark; i < T.nlog; i++)
    if (T.log[i].m.type == GOSSIP_NACK) {
      nacks++;
      assert_int_equal(T.log[i].m.seq, 78);
      assert_string_equal(T.log[i].addr, "n1");
    }
  assert_int_equal(nacks, 1);
  assert_int_equal(swim_stats(T.s)->nacks_sent, 1);
  /* PING for us: ACK with the same seq; PING for another id: silence */
  mark = T.nlog;
  m = new_msg(GOSSIP_PING, 1, 5);
  mkid(m->target, 0);
  solo_recv(m);
  assert_int_equal(T.nlog, mark + 1);
  assert_int_equal(T.log[mark].m.type, GOSSIP_ACK);
  assert_int_equal(T.log[mark].m.seq, 5);
  m = new_msg(GOSSIP_PING, 1, 6);
  mkid(m->target, 9);
  solo_recv(m);
  assert_int_equal(T.nlog, mark + 1);
  solo_stop();
}

/* Dissemination: each update goes out retransmit_mult * ceil(log10(N+1)) times, fewest-transmitted first,
 * messages stay within the packet budget and GOSSIP_MAX_UPDATES, one update per member per message, and a
 * newer fact about a member replaces the queued one. */
static void test_dissemination_queue(void **state) {
  struct swim_config c = test_cfg();
  c.packet_budget = 1000;
  solo_start(&c, 0);
  T.auto_ack = true;
  char meta[200];
  memset(meta, 'x', sizeof meta - 1);
  meta[sizeof meta - 1] = '\0';
  for (int i = 1; i <= 20; i++) { /* 20 members join: 20 ALIVE updates queued */
    struct gossip_msg *m = new_msg(GOSSIP_GOSSIP, i, 0);
    add_upd(m, i, GOSSIP_ALIVE, 0, i, i % 2 ? meta : NULL);
    solo_recv(m);
  }
  assert_int_equal(swim_num_alive(T.s), 21);
  int limit = c.retransmit_mult * (int)ceil(log10(22.0)); /* 8 */
  int mark = T.nlog;
  gossip1(3, 3, GOSSIP_SUSPECT, 0, 4, NULL); /* replaces the queued ALIVE about n3 */
  solo_run(T.now + 20000);
  int sent[32] = {0}, sent_suspect = 0, sent_alive3 = 0;
  bool saw_full = false;
  for (int i = 0; i < T.nlog; i++) {
    const struct gossip_msg *m = &T.log[i].m;
    assert_true(m->nupdates <= GOSSIP_MAX_UPDATES);
    assert_true(gossip_swim_size_bound(m) <= c.packet_budget);
    saw_full |= gossip_swim_size_bound(m) + 300 > c.packet_budget;
    for (int k = 0; k < m->nupdates; k++) {
      for (int j = 0; j < k; j++)
        assert_int_not_equal(m->updates[j].id[0], m->updates[k].id[0]);
      int who = m->updates[k].id[0] - 1;
      assert_true(who > 0 && who < 32);
      if (m->type == GOSSIP_PING && k == 0 && m->target[0] == who + 1) continue; /* the buddy copy: extra */
      sent[who]++;
      if (who == 3 && i >= mark) {
        if (m->updates[k].state == GOSSIP_SUSPECT) sent_suspect++;
        if (m->updates[k].state == GOSSIP_ALIVE) sent_alive3++;
      }
      if (m->updates[k].state != GOSSIP_ALIVE) assert_int_equal(m->updates[k].meta_len, 0);
    }
  }
  assert_true(saw_full);
  for (int i = 1; i <= 20; i++)
    if (i != 3) assert_int_equal(sent[i], limit);
  /* the suspicion went out when it came, then again once per minimum timeout while it stood (min =
   * 4 log10(21) 200 = 1058 ms, 5 times before the 6348 ms deadline): limit transmissions each time */
  assert_int_equal(sent_suspect, 6 * limit);
  assert_int_equal(sent_alive3, 0);
  /* the fewest-transmitted go first: a fresh update rides the very next message */
  mark = T.nlog;
  gossip1(5, 21, GOSSIP_ALIVE, 0, 21, NULL);
  solo_run(T.now + c.gossip_interval_ms);
  assert_true(T.nlog > mark);
  assert_int_equal(T.log[mark].m.updates[0].id[0], 22);
  assert_int_equal(swim_stats(T.s)->updates_sent > 0, 1);
  solo_stop();
}

/* The buddy system: a PING to a member we suspect carries that suspicion first. */
static void test_ping_carries_suspicion(void **state) {
  struct swim_config c = test_cfg();
  c.suspicion_mult = 50;
  solo_start(&c, 0);
  solo_members(1);
  gossip1(1, 1, GOSSIP_SUSPECT, 0, 5, NULL);
  int mark = T.nlog;
  solo_run(T.now + 400);
  bool found = false;
  for (int i = mark; i < T.nlog; i++)
    if (T.log[i].m.type == GOSSIP_PING) {
      assert_int_equal(T.log[i].m.updates[0].id[0], 2);
      assert_int_equal(T.log[i].m.updates[0].state, GOSSIP_SUSPECT);
      found = true;
    }
  assert_true(found);
  solo_stop();
}

/* Join: while alone, every probe interval the seeds get our ALIVE and a push-pull; not once a member is
 * known. Our own address is never a seed. */
static void test_join_seeds(void **state) {
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  const char *seeds[] = {"n5", "n0", "n6", "n5", ""};
  swim_join(T.s, seeds, 5, 0);
  assert_int_equal(T.nlog, 2);
  assert_int_equal(T.pushpulls, 2);
  assert_string_equal(T.log[0].addr, "n5");
  assert_string_equal(T.log[1].addr, "n6");
  assert_int_equal(T.log[0].m.type, GOSSIP_GOSSIP);
  assert_int_equal(T.log[0].m.updates[0].id[0], 1);
  assert_int_equal(T.log[0].m.updates[0].state, GOSSIP_ALIVE);
  solo_run(c.probe_interval_ms * 3);
  assert_int_equal(T.pushpulls, 8);
  solo_members(1);
  int pp = T.pushpulls;
  T.auto_ack = true;
  solo_run(T.now + 5000);
  assert_int_equal(T.pushpulls, pp);
  for (int i = 0; i < T.nlog; i++)
    if (T.log[i].at > 700) assert_string_not_equal(T.log[i].addr, "n5");
  solo_stop();
}

/* push-pull merge: an unknown SUSPECT becomes a suspect member, an unknown DEAD a silent tombstone, a DEAD
 * about a live member only a suspicion, a DEAD about us a refutation; and periodic push-pull picks one live
 * and one dead member. */
static void test_merge(void **state) {
  struct swim_config c = test_cfg();
  c.push_pull_interval_ms = 1000;
  c.suspicion_mult = 50;
  solo_start(&c, 0);
  solo_members(2);
  struct gossip_update u[5];
  fill_upd(&u[0], 3, GOSSIP_SUSPECT, 2, 1, NULL);
  fill_upd(&u[1], 4, GOSSIP_DEAD, 5, 1, NULL);
  fill_upd(&u[2], 1, GOSSIP_DEAD, 0, 2, NULL);
  fill_upd(&u[3], 0, GOSSIP_DEAD, 3, 2, NULL);
  fill_upd(&u[4], 2, GOSSIP_LEFT, 0, 2, NULL);
  swim_merge(T.s, u, 5, 10);
  assert_int_equal(state_of(3), GOSSIP_SUSPECT);
  assert_int_equal(count_ev(3, SWIM_EV_JOIN), 1);
  assert_int_equal(count_ev(3, SWIM_EV_SUSPECT), 1);
  assert_int_equal(member(3)->u.meta_len, strlen("role=gpu;zone=eu-1"));
  assert_int_equal(state_of(4), GOSSIP_DEAD);
  assert_int_equal(count_ev(4, SWIM_EV_JOIN) + count_ev(4, SWIM_EV_DEAD), 0);
  assert_int_equal(state_of(1), GOSSIP_SUSPECT);
  assert_int_equal(swim_incarnation(T.s), 4);
  assert_int_equal(state_of(2), GOSSIP_LEFT);
  T.auto_ack = true;
  T.pushpulls = 0;
  solo_run(2000);
  assert_true(T.pushpulls >= 2);
  assert_true(pushpulled("n1") || pushpulled("n3")); /* a live one */
  assert_true(pushpulled("n4"));                     /* and the one held dead (partition healing) */
  assert_false(pushpulled("n2"));                    /* never the one that left */
  solo_stop();
}

/* set_meta raises the incarnation and disseminates the new meta; leave disseminates LEFT, stops probing, and
 * is flushed after the full retransmit count (at once when nobody is left to tell). */
static void test_meta_and_leave(void **state) {
  struct swim_config c = test_cfg();
  solo_start(&c, 0);
  assert_true(swim_leave_flushed(T.s) == false);
  uint8_t big[GOSSIP_META_MAX + 1] = {0};
  assert_int_equal(swim_set_meta(T.s, big, sizeof big, 0), -EINVAL);
  assert_int_equal(swim_set_meta(T.s, (const uint8_t *)"v2", 2, 0), 0);
  assert_int_equal(swim_incarnation(T.s), 1);
  solo_members(3);
  T.auto_ack = true;
  int mark = T.nlog;
  solo_run(300);
  const struct gossip_update *u = sent_update(mark, 0);
  assert_non_null(u);
  assert_int_equal(u->incarnation, 1);
  assert_memory_equal(u->meta, "v2", 2);
  solo_run(5000);
  swim_leave(T.s, T.now);
  assert_int_equal(swim_incarnation(T.s), 2);
  assert_int_equal(swim_set_meta(T.s, NULL, 0, T.now), -EINVAL);
  assert_false(swim_leave_flushed(T.s));
  mark = T.nlog;
  uint64_t probes = swim_stats(T.s)->probes;
  int left_sent = 0;
  while (!swim_leave_flushed(T.s)) {
    assert_true(T.now < 10000);
    solo_run(T.now + 10);
  }
  for (int i = mark; i < T.nlog; i++)
    for (int k = 0; k < T.log[i].m.nupdates; k++)
      left_sent += T.log[i].m.updates[k].id[0] == 1 && T.log[i].m.updates[k].state == GOSSIP_LEFT;
  assert_int_equal(left_sent, c.retransmit_mult * 1); /* N = 3 alive others: ceil(log10(4)) = 1 */
  solo_run(T.now + 5000);
  assert_int_equal(swim_stats(T.s)->probes, probes);
  solo_stop();
  solo_start(&c, 0);
  swim_leave(T.s, 0);
  assert_true(swim_leave_flushed(T.s)); /* alone */
  solo_stop();
}

/* ========================= a cluster on a fake network ========================= */

#define MAXN 64

enum { EV_DELIVER, EV_TIMER, EV_PUSHPULL };

struct nev {
  uint64_t at, seq;
  int kind, node, src;
  uint64_t gen;
  struct gossip_msg *msg; /* EV_DELIVER: header + msg->nupdates updates, malloc'd */
};

struct net;

struct node {
  struct net *net;
  int idx;
  struct swim *s;
  uint8_t id[GOSSIP_ID_LEN];
  char name[16], addr[16];
  bool down;
  int group;
  uint64_t gen, sched_at;
};

struct net {
  int n;
  struct node nodes[MAXN];
  struct swim_config cfg;
  struct rng rng;
  double loss;
  uint32_t delay_ms;
  uint64_t now, seq;
  struct nev *heap;
  int nheap, capheap;
  uint64_t hash;                                     /* of the event sequence */
  uint64_t dead_at[MAXN][MAXN], left_at[MAXN][MAXN]; /* when node i learned that j is DEAD / LEFT */
  uint64_t first_suspect[MAXN], first_dead[MAXN];    /* when anyone first suspected / declared j */
  int false_dead, suspects, refuted, msgs, pushpulls;
  struct gossip_msg rx;
  struct gossip_update ppa[MAXN + 4], ppb[MAXN + 4];
};

static void heap_push(struct net *n, struct nev e) {
  if (n->nheap == n->capheap) {
    n->capheap = n->capheap ? 2 * n->capheap : 1024;
    n->heap = realloc(n->heap, (size_t)n->capheap * sizeof *n->heap);
    assert_non_null(n->heap);
  }
  e.seq = ++n->seq;
  int i = n->nheap++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (n->heap[p].at < e.at || (n->heap[p].at == e.at && n->heap[p].seq < e.seq)) break;
    n->heap[i] = n->heap[p];
    i = p;
  }
  n->heap[i] = e;
}

static struct nev heap_pop(struct net *n) {
  struct nev top = n->heap[0], last = n->heap[--n->nheap];
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n->nheap) break;
    if (c + 1 < n->nheap && (n->heap[c + 1].at < n->heap[c].at ||
                             (n->heap[c + 1].at == n->heap[c].at && n->heap[c + 1].seq < n->heap[c].seq)))
      c++;
    if (last.at < n->heap[c].at || (last.at == n->heap[c].at && last.seq < n->heap[c].seq)) break;
    n->heap[i] = n->heap[c];
    i = c;
  }
  if (n->nheap > 0) n->heap[i] = last;
  return top;
}

static void hash_mix(struct net *n, uint64_t v) {
  n->hash ^= v;
  n->hash *= 0x100000001b3ull;
}

static bool reachable(const struct net *n, int a, int b) {
  return !n->nodes[a].down && !n->nodes[b].down && n->nodes[a].group == n->nodes[b].group;
}

static void net_send_cb(void *user, const char *addr, const struct gossip_msg *m) {
  struct node *src = user;
  struct net *n = src->net;
  int dst = addr_index(addr);
  n->msgs++;
  if (dst < 0 || dst >= n->n || !reachable(n, src->idx, dst)) return;
  if (n->loss > 0 && rng_unit(&n->rng) < n->loss) return;
  size_t sz = offsetof(struct gossip_msg, updates) + (size_t)m->nupdates * sizeof(struct gossip_update);
  struct gossip_msg *c = malloc(sz);
  assert_non_null(c);
  memcpy(c, m, sz);
  heap_push(n, (struct nev){
                   .at = n->now + n->delay_ms, .kind = EV_DELIVER, .node = dst, .src = src->idx, .msg = c});
}

static void net_event_cb(void *user, const struct swim_member *m, enum swim_event ev) {
  struct node *obs = user;
  struct net *n = obs->net;
  int who = m->u.id[0] - 1;
  hash_mix(n, n->now);
  hash_mix(n, (uint64_t)obs->idx << 16 | (uint64_t)who << 8 | (uint64_t)ev);
  hash_mix(n, m->u.incarnation);
  if (who < 0 || who >= n->n) return;
  if (ev == SWIM_EV_SUSPECT && !n->first_suspect[who]) n->first_suspect[who] = n->now;
  if (ev == SWIM_EV_ALIVE) n->first_suspect[who] = 0;
  if (ev == SWIM_EV_DEAD) {
    if (!n->first_dead[who]) n->first_dead[who] = n->now;
    if (!n->dead_at[obs->idx][who]) n->dead_at[obs->idx][who] = n->now;
    if (!n->nodes[who].down && n->nodes[who].group == obs->group) {
      n->false_dead++;
      print_message("false death: n%d declared n%d (incarnation %llu) dead at %llu ms\n", obs->idx, who,
                    (unsigned long long)m->u.incarnation, (unsigned long long)n->now);
    }
  }
  if (ev == SWIM_EV_LEFT && !n->left_at[obs->idx][who]) n->left_at[obs->idx][who] = n->now;
  if (ev == SWIM_EV_SUSPECT) n->suspects++;
  if (ev == SWIM_EV_ALIVE) n->refuted++;
}

static void net_pp_cb(void *user, const char *addr) {
  struct node *src = user;
  struct net *n = src->net;
  int dst = addr_index(addr);
  if (dst < 0 || dst >= n->n) return;
  heap_push(
      n, (struct nev){.at = n->now + 2 * n->delay_ms + 1, .kind = EV_PUSHPULL, .node = dst, .src = src->idx});
}

static void resched(struct net *n, struct node *nd) {
  if (nd->down) return;
  uint64_t d = swim_next_deadline(nd->s);
  if (d <= n->now) d = n->now + 1;
  if (d == nd->sched_at) return;
  nd->sched_at = d;
  heap_push(n, (struct nev){.at = d, .kind = EV_TIMER, .node = nd->idx, .gen = ++nd->gen});
}

static void node_start(struct net *n, int i, uint64_t inc) {
  struct node *nd = &n->nodes[i];
  struct swim_callbacks cb = {net_send_cb, net_event_cb, net_pp_cb};
  char meta[128];
  int len = snprintf(meta, sizeof meta,
                     "{\"roles\":1,\"zone\":\"eu-1\",\"api\":\"10.0.0.%d:8080\",\"models\":[\"llama\"]}", i);
  nd->s = swim_new(&n->cfg, nd->id, nd->name, nd->addr, (const uint8_t *)meta, (size_t)len, inc, &cb, nd,
                   rng_next(&n->rng), n->now);
  assert_non_null(nd->s);
  nd->down = false;
  nd->sched_at = 0;
  resched(n, nd);
}

static struct net *net_new(int count, const struct swim_config *cfg, uint64_t seed, double loss,
                           uint32_t delay) {
  struct net *n = calloc(1, sizeof *n);
  assert_non_null(n);
  n->n = count;
  n->cfg = *cfg;
  rng_seed(&n->rng, seed);
  n->loss = loss;
  n->delay_ms = delay;
  n->hash = 0xcbf29ce484222325ull;
  for (int i = 0; i < count; i++) {
    struct node *nd = &n->nodes[i];
    nd->net = n;
    nd->idx = i;
    mkid(nd->id, i);
    snprintf(nd->name, sizeof nd->name, "n%d", i);
    snprintf(nd->addr, sizeof nd->addr, "n%d", i);
    node_start(n, i, 0);
  }
  return n;
}

static void net_free(struct net *n) {
  for (int i = 0; i < n->n; i++)
    swim_free(n->nodes[i].s);
  for (int i = 0; i < n->nheap; i++)
    free(n->heap[i].msg);
  free(n->heap);
  free(n);
}

static void push_pull(struct net *n, int a, int b) {
  if (!reachable(n, a, b)) return;
  n->pushpulls++;
  int na = swim_snapshot(n->nodes[a].s, n->ppa, MAXN + 4);
  int nb = swim_snapshot(n->nodes[b].s, n->ppb, MAXN + 4); /* b answers with its table before merging */
  swim_merge(n->nodes[b].s, n->ppa, na, n->now);
  swim_merge(n->nodes[a].s, n->ppb, nb, n->now);
  resched(n, &n->nodes[a]);
  resched(n, &n->nodes[b]);
}

static void net_run(struct net *n, uint64_t until) {
  while (n->nheap > 0 && n->heap[0].at <= until) {
    struct nev e = heap_pop(n);
    n->now = e.at;
    struct node *nd = &n->nodes[e.node];
    switch (e.kind) {
    case EV_DELIVER:
      if (reachable(n, e.src, e.node)) {
        size_t sz =
            offsetof(struct gossip_msg, updates) + (size_t)e.msg->nupdates * sizeof(struct gossip_update);
        memcpy(&n->rx, e.msg, sz);
        swim_receive(nd->s, n->nodes[e.src].addr, &n->rx, n->now);
        resched(n, nd);
      }
      free(e.msg);
      break;
    case EV_TIMER:
      if (nd->down || e.gen != nd->gen) break;
      nd->sched_at = 0;
      swim_tick(nd->s, n->now);
      resched(n, nd);
      break;
    case EV_PUSHPULL: push_pull(n, e.src, e.node); break;
    }
  }
  n->now = until;
}

/* net_bootstrap: everyone knows everyone (as after a join), through push-pull with node 0. */
static void net_bootstrap(struct net *n) {
  for (int i = 1; i < n->n; i++)
    push_pull(n, i, 0);
  for (int i = 1; i < n->n; i++)
    push_pull(n, i, 0);
}

static int view(struct net *n, int obs, int who) {
  const struct swim_member *m = swim_find(n->nodes[obs].s, n->nodes[who].id);
  return m ? (int)m->u.state : -1;
}

static bool all_alive(struct net *n) {
  for (int i = 0; i < n->n; i++) {
    if (n->nodes[i].down) continue;
    for (int j = 0; j < n->n; j++)
      if (!n->nodes[j].down && view(n, i, j) != GOSSIP_ALIVE) return false;
  }
  return true;
}

/* detect: kill `victim` at now and run until every live node holds it DEAD (or `limit` ms); returns the
 * time the last one learned it, relative to the kill, or UINT64_MAX. */
static uint64_t detect(struct net *n, int victim, uint64_t limit) {
  uint64_t t0 = n->now;
  n->nodes[victim].down = true;
  for (int i = 0; i < n->n; i++)
    n->dead_at[i][victim] = 0;
  for (uint64_t t = t0 + 100; t <= t0 + limit; t += 100) {
    net_run(n, t);
    uint64_t last = 0;
    bool all = true;
    for (int i = 0; i < n->n && all; i++) {
      if (n->nodes[i].down) continue;
      if (view(n, i, victim) != GOSSIP_DEAD)
        all = false;
      else if (n->dead_at[i][victim] > last)
        last = n->dead_at[i][victim];
    }
    if (all) return last - t0;
  }
  return UINT64_MAX;
}

/* 5 nodes join through one seed and all see 5 alive. */
static void test_cluster_join(void **state) {
  struct swim_config c = cluster_cfg();
  struct net *n = net_new(5, &c, 1, 0, 1);
  const char *seed[] = {"n0"};
  for (int i = 1; i < 5; i++) {
    net_run(n, n->now + 37);
    swim_join(n->nodes[i].s, seed, 1, n->now);
    resched(n, &n->nodes[i]);
  }
  net_run(n, 3000);
  assert_true(all_alive(n));
  for (int i = 0; i < 5; i++) {
    assert_int_equal(swim_num_alive(n->nodes[i].s), 5);
    const struct swim_member *m = swim_find(n->nodes[i].s, n->nodes[(i + 1) % 5].id);
    assert_non_null(m);
    assert_true(m->u.meta_len > 0);
  }
  assert_int_equal(n->false_dead, 0);
  net_free(n);
}

/* Stop delivering to one node: every other node marks it DEAD within a bound from the config:
 * first probe of it within two probe rounds (2 (N-1) intervals, awareness <= 1 on a lossless network), the
 * probe interval itself, the unconfirmed suspicion timeout (the maximum), and ~1 s to spread DEAD. */
static void test_cluster_detect_dead(void **state) {
  struct swim_config c = cluster_cfg();
  struct net *n = net_new(5, &c, 2, 0, 1);
  net_bootstrap(n);
  net_run(n, 2000);
  assert_true(all_alive(n));
  double min = c.suspicion_mult * log10(5.0) * c.probe_interval_ms;
  uint64_t bound = 2 * 4 * 2 * c.probe_interval_ms + c.probe_interval_ms +
                   (uint64_t)(c.suspicion_max_mult * ceil(min)) + 1000;
  uint64_t took = detect(n, 3, bound);
  print_message("5 nodes: dead node known everywhere after %llu ms (bound %llu)\n", (unsigned long long)took,
                (unsigned long long)bound);
  assert_true(took <= bound);
  for (int i = 0; i < 5; i++)
    if (i != 3) assert_int_equal(swim_num_alive(n->nodes[i].s), 4);
  assert_int_equal(n->false_dead, 0);
  net_free(n);
}

/* SWIM_TUNE="interval,timeout,k,mult,max_mult,retransmit,gossip_interval,gossip_nodes,awareness_max"
 * overrides the defaults for measurements; SWIM_SIM="nodes,loss%,delay,seconds,kills,seed" runs one
 * simulation. */
static void tune(struct swim_config *c) {
  const char *e = getenv("SWIM_TUNE");
  long v[9];
  int n = 0;
  for (char *end; e && *e && n < 9; e = *end ? end + 1 : end)
    v[n++] = strtol(e, &end, 10);
  if (n > 0) c->probe_interval_ms = (uint32_t)v[0];
  if (n > 1) c->probe_timeout_ms = (uint32_t)v[1];
  if (n > 2) c->indirect_checks = (int)v[2];
  if (n > 3) c->suspicion_mult = (int)v[3];
  if (n > 4) c->suspicion_max_mult = (int)v[4];
  if (n > 5) c->retransmit_mult = (int)v[5];
  if (n > 6) c->gossip_interval_ms = (uint32_t)v[6];
  if (n > 7) c->gossip_nodes = (int)v[7];
  if (n > 8) c->awareness_max = (int)v[8];
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* A large cluster on a lossy, slow network for a few simulated minutes: no live node is ever declared dead
 * (suspicions that get refuted are fine), and a killed one is known dead everywhere quickly. */
static void run_lossy(int count, double loss, uint32_t delay, uint64_t minutes_ms, int kills, uint64_t seed,
                      bool report) {
  struct swim_config c = cluster_cfg();
  tune(&c);
  struct net *n = net_new(count, &c, seed, loss, delay);
  net_bootstrap(n);
  net_run(n, minutes_ms);
  uint64_t max_aw = 0, sum_aw = 0;
  for (int i = 0; i < count; i++) {
    uint64_t a = (uint64_t)swim_awareness(n->nodes[i].s);
    max_aw = a > max_aw ? a : max_aw;
    sum_aw += a;
  }
  print_message("%d nodes, %.0f%% loss, %u ms delay, %llu s: %d suspicions (%d refuted), %d false deaths, "
                "%d messages, awareness max %llu (sum %llu)\n",
                count, loss * 100, delay, (unsigned long long)(minutes_ms / 1000), n->suspects, n->refuted,
                n->false_dead, n->msgs, (unsigned long long)max_aw, (unsigned long long)sum_aw);
  assert_int_equal(n->false_dead, 0);
  for (int i = 0; i < count; i++) /* suspicions may be in flight, but nobody is dead */
    for (int j = 0; j < count; j++)
      assert_true(view(n, i, j) == GOSSIP_ALIVE || view(n, i, j) == GOSSIP_SUSPECT);
  uint64_t worst = 0, sum = 0, *took_all = calloc((size_t)kills + 1, sizeof *took_all);
  assert_non_null(took_all);
  for (int k = 0; k < kills; k++) {
    int victim = (int)rng_below(&n->rng, (uint32_t)count);
    uint64_t t0 = n->now;
    n->first_suspect[victim] = n->first_dead[victim] = 0;
    uint64_t took = detect(n, victim, 20000);
    assert_true(took != UINT64_MAX); /* known dead everywhere within 20 s */
    if (report)
      print_message("  kill n%d at %llu: dead everywhere after %llu ms (suspected after %llu, first declared "
                    "after %llu)\n",
                    victim, (unsigned long long)t0, (unsigned long long)took,
                    (unsigned long long)(n->first_suspect[victim] - t0),
                    (unsigned long long)(n->first_dead[victim] - t0));
    worst = took > worst ? took : worst;
    sum += took;
    took_all[k] = took;
    /* it comes back (fresh state, as after a restart) and rejoins through a live node */
    swim_free(n->nodes[victim].s);
    node_start(n, victim, 0);
    char via[16];
    snprintf(via, sizeof via, "n%d", (victim + 1) % count);
    const char *seeds[] = {via};
    swim_join(n->nodes[victim].s, seeds, 1, n->now);
    resched(n, &n->nodes[victim]);
    net_run(n, n->now + 5000);
  }
  if (kills) {
    qsort(took_all, (size_t)kills, sizeof *took_all, cmp_u64);
    print_message("  detection over %d kills: mean %llu ms, p50 %llu, p90 %llu, p99 %llu, worst %llu ms\n",
                  kills, (unsigned long long)(sum / (uint64_t)kills), (unsigned long long)took_all[kills / 2],
                  (unsigned long long)took_all[kills * 9 / 10],
                  (unsigned long long)took_all[kills * 99 / 100], (unsigned long long)worst);
  }
  free(took_all);
  assert_int_equal(n->false_dead, 0);
  /* DESIGN §12: a dead node known everywhere within 3 s at N=64. On average here: single runs have a tail
   * (the first probe of the dead node is ~exponential with mean one interval); SWIM_SIM_REPORT measures it.
   */
  if (kills) assert_true(sum / (uint64_t)kills <= 3000);
  net_free(n);
}

static void test_cluster_lossy(void **state) {
  const char *sim = getenv("SWIM_SIM");
  if (sim && *sim) {
    long v[6] = {64, 10, 50, 120, 10, 1};
    int n = 0;
    for (char *end; *sim && n < 6; sim = *end ? end + 1 : end)
      v[n++] = strtol(sim, &end, 10);
    run_lossy((int)v[0], (double)v[1] / 100.0, (uint32_t)v[2], (uint64_t)v[3] * 1000, (int)v[4],
              (uint64_t)v[5], true);
    return;
  }
  const char *big = getenv("SWIM_SIM_REPORT");
  if (big && *big) { /* the measurements behind the defaults (see swim_config_default): slow under ASan */
    run_lossy(64, 0, 1, 60000, 200, 11, true);
    run_lossy(64, 0.10, 1, 60000, 200, 12, true);
    run_lossy(64, 0, 50, 60000, 200, 13, true);
    run_lossy(64, 0.10, 50, 300000, 200, 14, true);
    return;
  }
  run_lossy(64, 0.10, 50, 120000, 4, 7, false);
}

/* Partition 2|3: each side declares the other dead; after the heal push-pull (with a member held dead)
 * brings them together, and the wrongly dead refute. */
static void test_cluster_partition(void **state) {
  struct swim_config c = cluster_cfg();
  c.push_pull_interval_ms = 5000;
  struct net *n = net_new(5, &c, 3, 0, 1);
  net_bootstrap(n);
  net_run(n, 2000);
  assert_true(all_alive(n));
  n->nodes[0].group = n->nodes[1].group = 1;
  net_run(n, 22000);
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 5; j++)
      assert_int_equal(view(n, i, j), n->nodes[i].group == n->nodes[j].group ? GOSSIP_ALIVE : GOSSIP_DEAD);
  n->nodes[0].group = n->nodes[1].group = 0;
  uint64_t healed = n->now, t;
  for (t = n->now + 100; t < healed + 30000 && !all_alive(n); t += 100)
    net_run(n, t);
  assert_true(all_alive(n));
  print_message("partition 2|3 healed %llu ms after the network did\n", (unsigned long long)(t - healed));
  for (int i = 0; i < 5; i++)
    assert_true(swim_incarnation(n->nodes[i].s) >= 1); /* everyone refuted */
  assert_int_equal(n->false_dead, 0);
  net_free(n);
}

/* With the default configuration (anti-entropy every 30 s) and a split held long past the gossip-to-the-dead
 * window, the two sides still find each other within 5 s of the heal: members held dead are re-contacted
 * (push-pull) every reconnect interval. */
static void test_cluster_partition_heals_within_5s(void **state) {
  struct swim_config c = cluster_cfg();
  uint64_t worst = 0;
  for (uint64_t seed = 21; seed < 26; seed++) {
    struct net *n = net_new(5, &c, seed, 0, 1);
    net_bootstrap(n);
    net_run(n, 2000);
    assert_true(all_alive(n));
    n->nodes[0].group = n->nodes[1].group = 1;
    net_run(n, 22000);
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 5; j++)
        assert_int_equal(view(n, i, j), n->nodes[i].group == n->nodes[j].group ? GOSSIP_ALIVE : GOSSIP_DEAD);
    n->nodes[0].group = n->nodes[1].group = 0;
    uint64_t healed = n->now, t;
    for (t = n->now + 100; t < healed + 30000 && !all_alive(n); t += 100)
      net_run(n, t);
    assert_true(all_alive(n));
    if (t - healed > worst) worst = t - healed;
    assert_int_equal(n->false_dead, 0);
    net_free(n);
  }
  print_message("partition 2|3 (default config): the slowest of 5 heals took %llu ms\n",
                (unsigned long long)worst);
  assert_true(worst <= 5000);
}

/* A node restarts with fresh state at incarnation 0: the seed's table tells it its old incarnation (dead),
 * it refutes and rejoins as itself. */
static void test_cluster_restart(void **state) {
  struct swim_config c = cluster_cfg();
  struct net *n = net_new(5, &c, 4, 0, 1);
  net_bootstrap(n);
  net_run(n, 2000);
  swim_set_meta(n->nodes[2].s, (const uint8_t *)"v2", 2, n->now); /* incarnation 1 */
  resched(n, &n->nodes[2]);
  net_run(n, 3000);
  assert_true(detect(n, 2, 20000) != UINT64_MAX);
  const struct swim_member *m = swim_find(n->nodes[0].s, n->nodes[2].id);
  uint64_t dead_inc = m->u.incarnation;
  assert_true(dead_inc >= 1);
  swim_free(n->nodes[2].s);
  node_start(n, 2, 0);
  const char *seed[] = {"n0"};
  swim_join(n->nodes[2].s, seed, 1, n->now);
  resched(n, &n->nodes[2]);
  net_run(n, n->now + 3000);
  assert_true(all_alive(n));
  assert_true(swim_incarnation(n->nodes[2].s) > dead_inc);
  for (int i = 0; i < 5; i++) {
    m = swim_find(n->nodes[i].s, n->nodes[2].id);
    assert_int_equal(m->u.incarnation, swim_incarnation(n->nodes[2].s));
    assert_int_equal(swim_num_alive(n->nodes[i].s), 5);
  }
  net_free(n);
}

/* A graceful leave reaches everyone as LEFT, never DEAD. */
static void test_cluster_leave(void **state) {
  struct swim_config c = cluster_cfg();
  struct net *n = net_new(5, &c, 5, 0.05, 5);
  net_bootstrap(n);
  net_run(n, 2000);
  swim_leave(n->nodes[4].s, n->now);
  resched(n, &n->nodes[4]);
  uint64_t t0 = n->now;
  while (!swim_leave_flushed(n->nodes[4].s)) {
    assert_true(n->now < t0 + 5000);
    net_run(n, n->now + 10);
  }
  n->nodes[4].down = true;
  net_run(n, n->now + 10000);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(view(n, i, 4), GOSSIP_LEFT);
    assert_int_equal(n->dead_at[i][4], 0);
    assert_int_equal(swim_num_alive(n->nodes[i].s), 4);
  }
  net_free(n);
}

/* The same seed gives the same event sequence; another seed another one. */
static uint64_t run_hash(uint64_t seed) {
  struct swim_config c = cluster_cfg();
  struct net *n = net_new(12, &c, seed, 0.2, 20);
  net_bootstrap(n);
  net_run(n, 5000);
  n->nodes[5].down = true;
  net_run(n, 15000);
  uint64_t h = n->hash;
  assert_true(n->suspects > 0);
  net_free(n);
  return h;
}

static void test_determinism(void **state) {
  uint64_t a = run_hash(99), b = run_hash(99), c = run_hash(100);
  assert_true(a == b);
  assert_true(a != c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_default),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_refute_about_self),
      cmocka_unit_test(test_dead_corrected_as_suspicion),
      cmocka_unit_test(test_tombstone_reclaim),
      cmocka_unit_test(test_suspicion_timeout),
      cmocka_unit_test(test_lifeguard_awareness),
      cmocka_unit_test(test_lifeguard_helper_answers),
      cmocka_unit_test(test_indirect_relay),
      cmocka_unit_test(test_dissemination_queue),
      cmocka_unit_test(test_ping_carries_suspicion),
      cmocka_unit_test(test_join_seeds),
      cmocka_unit_test(test_merge),
      cmocka_unit_test(test_meta_and_leave),
      cmocka_unit_test(test_cluster_join),
      cmocka_unit_test(test_cluster_detect_dead),
      cmocka_unit_test(test_cluster_lossy),
      cmocka_unit_test(test_cluster_partition),
      cmocka_unit_test(test_cluster_partition_heals_within_5s),
      cmocka_unit_test(test_cluster_restart),
      cmocka_unit_test(test_cluster_leave),
      cmocka_unit_test(test_determinism),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
