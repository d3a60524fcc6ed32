/* Compact load reports: quantised numbers come back within their precision, a delta applies only to the full
 * report it belongs to, the relay grid delivers every member's report to every other member exactly once, and
 * digests survive the wire codec (and malformed ones are refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cluster/load_delta.h"
#include "cluster/load_grid.h"
#include "proto/gossip_codec.h"

static void fill(struct gossip_load *l) {
  memset(l, 0, sizeof *l);
  for (int i = 0; i < GOSSIP_ID_LEN; i++)
    l->from[i] = (uint8_t)(i * 7 + 1);
  l->boot = 0x123456789abcull;
  l->seq = 41;
  l->age_ms = 120;
  l->ntargets = 2;
  for (int i = 0; i < 2; i++) {
    struct gossip_target_load *t = &l->targets[i];
    snprintf(t->name, sizeof t->name, "engine-%d", i);
    snprintf(t->kind, sizeof t->kind, "vllm");
    t->nmodels = 1;
    snprintf(t->models[0], sizeof t->models[0], "meta-llama/Llama-3.1-8B-Instruct");
    t->kv_capacity_tokens = 262144;
    t->healthy = true;
    t->waiting = 3 + i;
    t->running = 17.25;
    t->kv_usage = 0.43217;
    t->prefix_hit_rate = -1;
    t->prompt_tps = 5123.46;
    t->gen_tps = 812.3;
    t->ttft_p50_ms = 183.7;
    t->inflight = 5;
  }
  l->targets[1].gpu_degraded = true;
  l->targets[1].healthy = false;
  l->targets[1].inflight = -2;
}

static void test_numbers_come_back_within_their_precision(void **state) {
  static struct gossip_load base, now, out;
  struct gossip_load_delta d;
  fill(&base);
  now = base;
  now.seq = 42;
  now.age_ms = 30;
  now.targets[0].waiting = 9;
  now.targets[0].kv_usage = 0.9;
  now.targets[0].ttft_p50_ms = -1;
  now.targets[1].healthy = true;
  load_delta_make(&now, &d);
  assert_int_equal(load_delta_apply(&base, &d, &out), 0);
  assert_int_equal(out.seq, 42);
  assert_int_equal(out.age_ms, 30);
  assert_int_equal(out.ntargets, 2);
  assert_string_equal(out.targets[0].models[0], "meta-llama/Llama-3.1-8B-Instruct");
  assert_int_equal(out.targets[0].kv_capacity_tokens, 262144);
  for (int i = 0; i < 2; i++) {
    const struct gossip_target_load *a = &now.targets[i], *b = &out.targets[i];
    assert_true(b->healthy == a->healthy && b->gpu_degraded == a->gpu_degraded);
    assert_true(fabs(b->waiting - a->waiting) <= 0.005 && fabs(b->running - a->running) <= 0.005);
    assert_true(fabs(b->kv_usage - a->kv_usage) <= 0.00005);
    assert_true(fabs(b->prompt_tps - a->prompt_tps) <= 0.05 && fabs(b->gen_tps - a->gen_tps) <= 0.05);
    assert_int_equal(b->inflight, a->inflight);
  }
  assert_true(out.targets[0].ttft_p50_ms < 0 &&
              out.targets[1].prefix_hit_rate < 0); /* unknown stays unknown */
  assert_true(fabs(out.targets[1].ttft_p50_ms - 183.7) <= 0.05);
}

static void test_delta_applies_only_to_its_full_report(void **state) {
  static struct gossip_load base, other, out;
  struct gossip_load_delta d;
  fill(&base);
  load_delta_make(&base, &d);
  other = base;
  snprintf(other.targets[1].models[0], sizeof other.targets[1].models[0], "another-model");
  assert_int_equal(load_delta_apply(&other, &d, &out), -ESTALE); /* the layout changed */
  other = base;
  other.targets[0].kv_capacity_tokens = 1024;
  assert_int_equal(load_delta_apply(&other, &d, &out), -ESTALE);
  other = base;
  other.boot++; /* the sender restarted: its deltas wait for the new life's full report */
  assert_int_equal(load_delta_apply(&other, &d, &out), -ESTALE);
  other = base;
  other.from[3] ^= 1;
  assert_int_equal(load_delta_apply(&other, &d, &out), -ESTALE);
  other = base;
  other.targets[0].waiting = 99; /* numbers are not the layout */
  assert_int_equal(load_delta_apply(&other, &d, &out), 0);
}

/* For every mesh size, every member's report reaches every other member exactly once: directly (same row) or
 * through exactly one relay of the sender's row; and nobody sends much more than 2 * sqrt(n) datagrams. */
static void check_grid(int n) {
  static bool row[1100][1100], rel[1100][1100];
  int most = 0;
  for (int a = 0; a < n; a++) {
    int sends = 0;
    for (int b = 0; b < n; b++) {
      row[a][b] = load_grid_same_row(n, a, b);
      rel[a][b] = load_grid_relays_to(n, a, b);
      sends += row[a][b] + rel[a][b];
    }
    if (sends > most) most = sends;
  }
  for (int s = 0; s < n; s++)
    for (int m = 0; m < n; m++) {
      if (m == s) continue;
      int paths = row[s][m] + rel[s][m]; /* the sender relays its own delta to its column */
      for (int r = 0; r < n; r++)
        paths += row[s][r] && rel[r][m];
      assert_int_equal(paths, 1);
    }
  int c = (int)ceil(sqrt((double)n));
  assert_true(most <= 3 * c);
}

/* For every mesh size, every member's report reaches every other member exactly once: directly (same row) or
 * through exactly one relay of the sender's row (the sender included); and nobody sends more than 3 * sqrt(n)
 * datagrams per round. */
static void test_grid_reaches_everyone_once(void **state) {
  for (int n = 1; n <= 70; n++)
    check_grid(n);
  static const int big[] = {99, 100, 101, 255, 256, 257, 1024};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
    check_grid(big[i]);
}

static void test_digest_round_trips_and_refuses_bad_input(void **state) {
  static struct gossip_packet p, q;
  static struct gossip_load l;
  uint8_t buf[GOSSIP_PACKET_MAX];
  fill(&l);
  memset(&p, 0, sizeof p);
  p.kind = GOSSIP_PKT_DIGEST;
  p.u.digest.forward = true;
  /* a row of one-target deltas fits one datagram */
  l.ntargets = 1;
  for (int i = 0; i < 16; i++) {
    l.from[0] = (uint8_t)i;
    l.seq = 1000 + (uint64_t)i;
    load_delta_make(&l, &p.u.digest.entries[p.u.digest.nentries++]);
  }
  int n = gossip_encode_packet(&p, buf, sizeof buf);
  assert_true(n > 0);
  printf("16 one-target deltas: %d bytes (%.1f per delta)\n", n, n / 16.0);
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &q), 0);
  assert_int_equal(q.kind, GOSSIP_PKT_DIGEST);
  assert_true(q.u.digest.forward);
  assert_int_equal(q.u.digest.nentries, 16);
  assert_memory_equal(&q.u.digest.entries[5], &p.u.digest.entries[5], sizeof p.u.digest.entries[5]);
  /* too many entries: refused before decoding */
  p.u.digest.nentries = GOSSIP_DIGEST_ENTRIES;
  for (int i = 16; i < GOSSIP_DIGEST_ENTRIES; i++)
    p.u.digest.entries[i] = p.u.digest.entries[0];
  static uint8_t big[8192];
  n = gossip_encode_packet(&p, big, sizeof big);
  assert_true(n > 0);
  assert_int_equal(gossip_decode_packet(big, (size_t)n, &q), 0);
  /* the body twice (protobuf merges repeated fields): 64 entries, refused before protobuf-c allocates */
  memcpy(big + n, big + 2, (size_t)n - 2);
  assert_int_equal(gossip_decode_packet(big, 2 * (size_t)n - 2, &q), -EINVAL);
  p.u.digest.nentries = GOSSIP_DIGEST_ENTRIES + 1;
  assert_int_equal(gossip_encode_packet(&p, big, sizeof big), -EINVAL);
  /* values that are not whole targets, and a short node id */
  static const uint8_t partial[] = {0x08, 0x01, 0x32, 0x0f, 0x12, 0x0d, 0x0a, 0x08, 1,   2,
                                    3,    4,    5,    6,    7,    8,    0x32, 0x01, 0x05};
  assert_int_equal(gossip_decode_packet(partial, sizeof partial, &q), -EINVAL);
  static const uint8_t shortid[] = {0x08, 0x01, 0x32, 0x08, 0x12, 0x06, 0x0a, 0x04, 1, 2, 3, 4};
  assert_int_equal(gossip_decode_packet(shortid, sizeof shortid, &q), -EINVAL);
  static const uint8_t ok[] = {0x08, 0x01, 0x32, 0x0c, 0x12, 0x0a, 0x0a, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
  assert_int_equal(gossip_decode_packet(ok, sizeof ok, &q), 0);
  assert_int_equal(q.u.digest.nentries, 1);
  assert_int_equal(q.u.digest.entries[0].ntargets, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numbers_come_back_within_their_precision),
      cmocka_unit_test(test_delta_applies_only_to_its_full_report),
      cmocka_unit_test(test_grid_reaches_everyone_once),
      cmocka_unit_test(test_digest_round_trips_and_refuses_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
