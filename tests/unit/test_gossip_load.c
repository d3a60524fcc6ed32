/* Load reports over real gossip on 127.0.0.1: a restarted member (a higher boot, counting seq from 1 again)
 * is heard at once, while reordered reports and replays of an earlier life are ignored, even after the
 * member was forgotten and came back; a load change reaches every gateway of a 3 x 3 relay grid as a delta. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/gossip.h"
#include "cluster/gossip_tcp.h"
#include "core/clock.h"
#include "proto/gossip_codec.h"

struct side {
  struct identity id;
  struct gossip *g;
  int nalive, ndead;
  int nloads;
  uint64_t boots[32], seqs[32];
  double waiting; /* targets[0].waiting of the last load report */
  int ncaches;
  struct gossip_cache cache; /* the last cache report */
  int nspends;
  struct gossip_spend last_spend;
};

static uv_loop_t loop;
static struct keyring kr;

static void member_cb(void *user, const struct swim_member *m, enum swim_event ev,
                      const struct gossip_meta *meta) {
  struct side *s = user;
  if (ev == SWIM_EV_JOIN || ev == SWIM_EV_ALIVE) s->nalive++;
  if (ev == SWIM_EV_DEAD || ev == SWIM_EV_LEFT || ev == SWIM_EV_FORGOTTEN) s->ndead++;
}

static void load_cb(void *user, const struct gossip_load *l) {
  struct side *s = user;
  if (s->nloads < 32) {
    s->boots[s->nloads] = l->boot;
    s->seqs[s->nloads] = l->seq;
  }
  if (l->ntargets > 0) s->waiting = l->targets[0].waiting;
  s->nloads++;
}

static void cache_cb(void *user, const struct gossip_cache *c) {
  struct side *s = user;
  s->ncaches++;
  s->cache = *c;
}

static void spend_cb(void *user, const struct gossip_spend *sp) {
  struct side *s = user;
  s->nspends++;
  s->last_spend = *sp;
}

static void start_side(struct side *s, const char *name, uint32_t roles, const struct identity *id) {
  struct gossip_config cfg;
  struct gossip_meta meta = {0};
  struct gossip_callbacks cb = {.member = member_cb, .load = load_cb, .cache = cache_cb, .spend = spend_cb};
  char err[256];
  gossip_config_default(&cfg);
  cfg.bind_port = 0;
  cfg.swim.dead_reclaim_ms = 300; /* forget the dead fast: the replay memory must outlive that */
  meta.roles = roles;
  if (id)
    s->id = *id;
  else
    crypto_sign_keypair(s->id.pk, s->id.sk);
  assert_int_equal(gossip_start(&s->g, &loop, &cfg, &s->id, &kr, name, &meta, &cb, s, err, sizeof err), 0);
}

static void closed_cb(void *arg) { *(int *)arg = 1; }

static void close_side(struct side *s) {
  int done = 0;
  gossip_close(s->g, closed_cb, &done);
  while (!done)
    uv_run(&loop, UV_RUN_ONCE);
  s->g = NULL;
}

/* Run the loop until *flag >= want or ms pass; returns whether it got there. */
static bool run_until(const int *flag, int want, int ms) {
  uint64_t end = clock_mono_ns() / 1000000u + (uint64_t)ms;
  while (*flag < want && clock_mono_ns() / 1000000u < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  return *flag >= want;
}

/* Send A a load report as if from `from`, sealed with the cluster key (what a replay of a captured packet
 * looks like to A). */
static void send_load(const struct side *to, const uint8_t from[GOSSIP_ID_LEN], uint64_t boot, uint64_t seq) {
  static struct gossip_packet p;
  uint8_t plain[GOSSIP_PACKET_MAX + 512], sealed[sizeof plain + KEYRING_OVERHEAD];
  memset(&p, 0, sizeof p);
  p.kind = GOSSIP_PKT_LOAD;
  memcpy(p.u.load.from, from, GOSSIP_ID_LEN);
  p.u.load.boot = boot;
  p.u.load.seq = seq;
  p.u.load.ntargets = 1;
  snprintf(p.u.load.targets[0].name, sizeof p.u.load.targets[0].name, "t");
  p.u.load.targets[0].healthy = true;
  int n = gossip_encode_packet(&p, plain, sizeof plain);
  assert_true(n > 0);
  ssize_t m = keyring_seal(&kr, plain, (size_t)n, sealed, sizeof sealed);
  assert_true(m > 0);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)gossip_port(to->g));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(sendto(fd, sealed, (size_t)m, 0, (struct sockaddr *)&sa, sizeof sa), m);
  close(fd);
}

static void expect_loads(struct side *a, int n, const uint64_t *boots, const uint64_t *seqs) {
  run_until(&a->nloads, n + 1, 300); /* give anything extra the chance to show up */
  assert_int_equal(a->nloads, n);
  for (int i = 0; i < n; i++) {
    assert_int_equal(a->boots[i], boots[i]);
    assert_int_equal(a->seqs[i], seqs[i]);
  }
}

static void join(struct side *b, const struct side *a) {
  char addr[64];
  const char *seeds[1] = {addr};
  snprintf(addr, sizeof addr, "127.0.0.1:%d", gossip_port(a->g));
  gossip_join(b->g, seeds, 1);
}

static void test_new_life_is_heard_and_old_life_replays_are_not(void **state) {
  static struct side a, b, b2;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&b2, 0, sizeof b2);
  start_side(&a, "a", GOSSIP_ROLE_GATEWAY, NULL);
  start_side(&b, "b", GOSSIP_ROLE_GPU, NULL);
  join(&b, &a);
  assert_true(run_until(&a.nalive, 1, 5000));

  /* One life: only rising seq counts. */
  send_load(&a, b.id.pk, 1000, 50);
  send_load(&a, b.id.pk, 1000, 50); /* replayed */
  send_load(&a, b.id.pk, 1000, 49); /* reordered */
  /* A restart: seq counts from 1 again, in a later boot. */
  send_load(&a, b.id.pk, 2000, 1);
  send_load(&a, b.id.pk, 1000, 51); /* a replay from the earlier life */
  send_load(&a, b.id.pk, 2000, 2);
  expect_loads(&a, 3, (uint64_t[]){1000, 2000, 2000}, (uint64_t[]){50, 1, 2});

  /* b dies and is forgotten; the same node comes back: its old life still cannot be replayed. */
  close_side(&b);
  assert_true(run_until(&a.ndead, 2, 15000)); /* dead, then forgotten */
  start_side(&b2, "b", GOSSIP_ROLE_GPU, &b.id);
  join(&b2, &a);
  assert_true(run_until(&a.nalive, 2, 5000));
  send_load(&a, b.id.pk, 2000, 2); /* replay of the last report of the former life */
  send_load(&a, b.id.pk, 1000, 99);
  send_load(&a, b.id.pk, 3000, 1);
  expect_loads(&a, 4, (uint64_t[]){1000, 2000, 2000, 3000}, (uint64_t[]){50, 1, 2, 1});

  close_side(&b2);
  close_side(&a);
}

/* A cache report reaches every gateway, not other members, stamped with its sender; a GPU-only node gets none. */
static void test_cache_reports_reach_gateways(void **state) {
  static struct side a, b, c;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  start_side(&a, "a", GOSSIP_ROLE_GATEWAY, NULL);
  start_side(&b, "b", GOSSIP_ROLE_GPU, NULL);
  start_side(&c, "c", GOSSIP_ROLE_GPU, NULL);
  join(&b, &a);
  join(&c, &a);
  assert_true(run_until(&a.nalive, 2, 5000));
  assert_true(run_until(&b.nalive, 2, 5000));
  static struct gossip_cache rep;
  memset(&rep, 0, sizeof rep);
  memcpy(rep.target_node, b.id.pk, GOSSIP_ID_LEN);
  snprintf(rep.target, sizeof rep.target, "engine-0");
  rep.source = GOSSIP_CACHE_ENGINE;
  rep.nstored = GOSSIP_CACHE_HASHES - 1; /* a full datagram */
  for (int i = 0; i < rep.nstored; i++) rep.stored[i] = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
  rep.nremoved = 1;
  rep.removed[0] = 42;
  assert_true(gossip_send_cache(b.g, &rep) > 0);
  assert_true(run_until(&a.ncaches, 1, 3000));
  assert_memory_equal(a.cache.from, b.id.pk, GOSSIP_ID_LEN);
  assert_string_equal(a.cache.target, "engine-0");
  assert_int_equal(a.cache.nstored, GOSSIP_CACHE_HASHES - 1);
  assert_memory_equal(a.cache.stored, rep.stored, sizeof rep.stored[0] * (size_t)rep.nstored);
  assert_int_equal(a.cache.nremoved, 1);
  assert_true(a.cache.removed[0] == 42);
  run_until(&c.ncaches, 1, 300);
  assert_int_equal(c.ncaches, 0);
  close_side(&c);
  close_side(&b);
  close_side(&a);
}

static void test_spend_reports_reach_gateways_from_members_only(void **state) {
  static struct side a, b, c;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  start_side(&a, "a", GOSSIP_ROLE_GATEWAY, NULL);
  start_side(&b, "b", GOSSIP_ROLE_GATEWAY, NULL);
  join(&b, &a);
  assert_true(run_until(&a.nalive, 1, 5000));
  assert_true(run_until(&b.nalive, 1, 5000));

  struct gossip_spend sp = {.ntenants = 2};
  snprintf(sp.tenants[0].tenant, sizeof sp.tenants[0].tenant, "team-a");
  sp.tenants[0].day_start = 1765065600;
  sp.tenants[0].day_nano = 1500000000;
  sp.tenants[0].month_nano = sp.tenants[0].total_nano = 2500000000;
  snprintf(sp.tenants[1].tenant, sizeof sp.tenants[1].tenant, "team-b");
  sp.tenants[1].total_nano = 7;
  gossip_send_spend(b.g, &sp);
  assert_true(run_until(&a.nspends, 1, 3000));
  assert_memory_equal(a.last_spend.from, b.id.pk, GOSSIP_ID_LEN);
  assert_int_equal(a.last_spend.ntenants, 2);
  assert_string_equal(a.last_spend.tenants[0].tenant, "team-a");
  assert_int_equal(a.last_spend.tenants[0].day_nano, 1500000000);
  assert_int_equal(a.last_spend.tenants[0].day_start, 1765065600);
  assert_int_equal(a.last_spend.tenants[1].total_nano, 7);
  uint64_t seq1 = a.last_spend.seq;
  gossip_send_spend(b.g, &sp);
  assert_true(run_until(&a.nspends, 2, 3000));
  assert_true(a.last_spend.seq > seq1);

  /* c holds the cluster key but never joined: not a member, so its report is not heard. */
  start_side(&c, "c", GOSSIP_ROLE_GATEWAY, NULL);
  c.nspends = 0;
  int before = a.nspends;
  struct gossip_spend forged = sp;
  static struct gossip_packet p;
  uint8_t plain[GOSSIP_PACKET_MAX + 512], sealed[sizeof plain + KEYRING_OVERHEAD];
  memset(&p, 0, sizeof p);
  p.kind = GOSSIP_PKT_SPEND;
  memcpy(forged.from, c.id.pk, GOSSIP_ID_LEN);
  forged.seq = 1;
  p.u.spend = forged;
  int n = gossip_encode_packet(&p, plain, sizeof plain);
  assert_true(n > 0);
  ssize_t m = keyring_seal(&kr, plain, (size_t)n, sealed, sizeof sealed);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)gossip_port(a.g));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_int_equal(sendto(fd, sealed, (size_t)m, 0, (struct sockaddr *)&sa, sizeof sa), m);
  close(fd);
  run_until(&a.nspends, before + 1, 300);
  assert_int_equal(a.nspends, before);

  close_side(&c);
  close_side(&b);
  close_side(&a);
}

static void publish(struct side *s, double waiting) {
  static struct gossip_load l;
  memset(&l, 0, sizeof l);
  l.ntargets = 1;
  snprintf(l.targets[0].name, sizeof l.targets[0].name, "engine");
  snprintf(l.targets[0].kind, sizeof l.targets[0].kind, "vllm");
  l.targets[0].healthy = true;
  l.targets[0].waiting = waiting;
  l.targets[0].kv_usage = 0.5;
  gossip_publish_load(s->g, &l);
}

/* Run the loop until every side but `skip` has seen waiting == w, or ms pass. */
static bool all_see(struct side *sides, int n, int skip, double w, int ms) {
  uint64_t end = clock_mono_ns() / 1000000u + (uint64_t)ms;
  for (;;) {
    int ok = 0;
    for (int i = 0; i < n; i++) ok += i == skip || sides[i].waiting == w;
    if (ok == n) return true;
    if (clock_mono_ns() / 1000000u >= end) return false;
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

/* Nine gateways (a 3 x 3 grid): after the first report in full, a change reaches every other gateway well
 * before the next full refresh (10 s), so through the grid: by the sender's row directly, the others through
 * one relay each. */
static void test_load_change_reaches_every_gateway_through_the_grid(void **state) {
  enum { N = 9 };
  static struct side sides[N];
  memset(sides, 0, sizeof sides);
  for (int i = 0; i < N; i++) {
    char name[8];
    snprintf(name, sizeof name, "g%d", i);
    start_side(&sides[i], name, GOSSIP_ROLE_GATEWAY, NULL);
    sides[i].waiting = -1;
  }
  for (int i = 1; i < N; i++) join(&sides[i], &sides[0]);
  for (int i = 0; i < N; i++) assert_true(run_until(&sides[i].nalive, N - 1, 10000));
  struct side *src = &sides[4];
  publish(src, 3);
  assert_true(all_see(sides, N, 4, 3, 5000));
  uint64_t full_bytes = gossip_counters(src->g)->load_bytes_out;
  for (int k = 0; k < 3; k++) { /* three changes, each well within the full refresh interval */
    publish(src, 7 + k);
    assert_true(all_see(sides, N, 4, 7 + k, 3000));
  }
  /* the deltas cost the sender less than one full round did */
  assert_true(gossip_counters(src->g)->load_bytes_out - full_bytes < 3 * full_bytes);
  for (int i = 0; i < N; i++) close_side(&sides[i]);
}

/* An unchanged load goes out as a heartbeat (every 500 ms), not on every tick, even with a member around that
 * takes no full reports (a GPU-only node never becomes "served"). */
static void test_unchanged_load_is_a_heartbeat(void **state) {
  static struct side g, w, src;
  memset(&g, 0, sizeof g);
  memset(&w, 0, sizeof w);
  memset(&src, 0, sizeof src);
  start_side(&g, "g", GOSSIP_ROLE_GATEWAY, NULL);
  start_side(&w, "w", GOSSIP_ROLE_GPU, NULL);
  start_side(&src, "s", GOSSIP_ROLE_GPU, NULL);
  join(&w, &g);
  join(&src, &g);
  assert_true(run_until(&src.nalive, 2, 5000));
  assert_true(run_until(&g.nalive, 2, 5000));
  publish(&src, 1);
  assert_true(run_until(&g.nloads, 1, 3000));
  int before = g.nloads, never = 0;
  run_until(&never, 1, 2000);
  assert_true(g.nloads - before >= 2 && g.nloads - before <= 6); /* 4 heartbeats in 2 s, not 20 */
  close_side(&src);
  close_side(&w);
  close_side(&g);
}

int main(void) {
  uint8_t key[KEYRING_KEY_LEN];
  if (sodium_init() < 0) return 1;
  memset(&kr, 0, sizeof kr);
  keyring_generate(key);
  if (keyring_install(&kr, key) != 0) return 1;
  uv_loop_init(&loop);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_life_is_heard_and_old_life_replays_are_not),
      cmocka_unit_test(test_cache_reports_reach_gateways),
      cmocka_unit_test(test_spend_reports_reach_gateways_from_members_only),
      cmocka_unit_test(test_load_change_reaches_every_gateway_through_the_grid),
      cmocka_unit_test(test_unchanged_load_is_a_heartbeat),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  uv_loop_close(&loop);
  return rc;
}
