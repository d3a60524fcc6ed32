/* Scoring and state-store tests: candidates, reservations, staleness, power of two choices. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "state/score.h"
#include "state/store.h"

#define NOW (100ull * 1000000000ull)
#define M "llama"

static struct store st;
static struct score_params sp;

static int setup(void **state) {
  const char *models[] = {M};
  const char *other[] = {"mistral"};
  store_init(&st, 64);
  score_params_default(&sp);
  assert_int_equal(store_add_target(&st, "a", "http://127.0.0.1:8001", "vllm"), 0);
  assert_int_equal(store_add_target(&st, "b", "http://127.0.0.1:8002/", "vllm"), 1);
  assert_int_equal(store_add_target(&st, NULL, "http://[::1]:8003", "vllm"), 2);
  assert_int_equal(store_add_target(&st, "d", "http://127.0.0.1:8004", "vllm"), 3);
  for (int i = 0; i < 3; i++) store_set_models(&st, i, models, 1);
  store_set_models(&st, 3, other, 1);
  struct target_load idle = {0};
  for (int i = 0; i < 4; i++) store_report(&st, i, &idle, NOW);
  return 0;
}

static int teardown(void **state) {
  store_free(&st);
  return 0;
}

static void test_bad_urls_rejected(void **state) {
  struct store s;
  store_init(&s, 64);
  assert_true(store_add_target(&s, NULL, "127.0.0.1:80", NULL) < 0);
  assert_true(store_add_target(&s, NULL, "http://127.0.0.1", NULL) < 0);
  assert_true(store_add_target(&s, NULL, "http://127.0.0.1:0", NULL) < 0);
  assert_true(store_add_target(&s, NULL, "http://127.0.0.1:99999", NULL) < 0);
  assert_true(store_add_target(&s, NULL, "http://127.0.0.1:80/v1", NULL) < 0);
  assert_int_equal(s.ntargets, 0);
  assert_int_equal(store_add_target(&s, NULL, "http://localhost:80", NULL), 0);
  assert_string_equal(s.targets[0].name, "localhost:80");
  assert_false(s.targets[0].healthy); /* unhealthy until its first report */
  store_free(&s);
}

static void test_candidates_by_model_and_health(void **state) {
  int ids[8];
  assert_int_equal(store_candidates(&st, slice_cstr(M), NULL, ids, 8), 3);
  assert_int_equal(store_candidates(&st, slice_cstr("mistral"), NULL, ids, 8), 1);
  assert_int_equal(ids[0], 3);
  assert_int_equal(store_candidates(&st, slice_cstr("nope"), NULL, ids, 8), 0);
  assert_false(store_model_known(&st, slice_cstr("nope")));
  store_mark_down(&st, 1, "connection refused");
  assert_int_equal(store_candidates(&st, slice_cstr(M), NULL, ids, 8), 2);
  assert_true(store_model_known(&st, slice_cstr(M)));
  assert_string_equal(st.targets[1].last_error, "connection refused");
  uint64_t exclude[1] = {1ull << 0}; /* store_bitmap_words of a 64-target store */
  assert_int_equal(store_candidates(&st, slice_cstr(M), exclude, ids, 8), 1);
  assert_int_equal(ids[0], 2);
}

/* The store holds as many targets as it was made for: thousands (past the old fixed 256), or two. */
static void test_store_sized_at_run_time(void **state) {
  enum { N = 3000 };
  struct store s;
  store_init(&s, N);
  const char *models[] = {M};
  struct target_load idle = {0};
  char url[64];
  for (int i = 0; i < N; i++) {
    snprintf(url, sizeof url, "http://127.0.0.1:%d", 10000 + i);
    assert_int_equal(store_add_target(&s, NULL, url, "vllm"), i);
    store_set_models(&s, i, models, 1);
    store_report(&s, i, &idle, NOW);
  }
  assert_int_equal(store_add_target(&s, NULL, "http://127.0.0.1:9999", "vllm"), -ENOSPC);
  int *ids = malloc(N * sizeof *ids);
  uint64_t *exclude = calloc((size_t)store_bitmap_words(&s), sizeof *exclude);
  exclude[(N - 1) / 64] |= 1ull << ((N - 1) % 64);
  assert_int_equal(store_candidates(&s, slice_cstr(M), exclude, ids, N), N - 1);
  assert_int_equal(ids[N - 2], N - 2);
  free(ids);
  free(exclude);
  store_free(&s);
  store_init(&s, 2);
  assert_int_equal(store_add_target(&s, NULL, "http://127.0.0.1:81", NULL), 0);
  assert_int_equal(store_add_target(&s, NULL, "http://127.0.0.1:82", NULL), 1);
  assert_int_equal(store_add_target(&s, NULL, "http://127.0.0.1:83", NULL), -ENOSPC);
  store_free(&s);
}

/* The prefill rate the router hands its policy is the highest window prompt rate a target has shown: a quiet
 * window (or an unknown rate) does not lower it. */
static void test_prompt_rate_peak(void **state) {
  struct target_load l = {.prompt_tps = 5000};
  store_report(&st, 0, &l, NOW);
  l.prompt_tps = 12000;
  store_report(&st, 0, &l, NOW + 1);
  l.prompt_tps = 300;
  store_report(&st, 0, &l, NOW + 2);
  l.prompt_tps = -1;
  store_report(&st, 0, &l, NOW + 3);
  assert_true(st.targets[0].prompt_tps_peak == 12000);
  assert_true(st.targets[1].prompt_tps_peak == 0);
}

static void test_score_counts_waiting_running_and_reservations(void **state) {
  struct target_load l = {.waiting = 2, .running = 4};
  store_report(&st, 0, &l, NOW);
  double s0 = score_target(&st.targets[0], &sp, NOW);
  assert_true(s0 > 2.9 && s0 < 3.1); /* 2 waiting + 0.25 * 4 running */
  store_reserve(&st, 0);
  store_reserve(&st, 0);
  assert_true(score_target(&st.targets[0], &sp, NOW) > s0 + 1.9); /* two routed since the report */
  store_release(&st, 0);
  assert_true(score_target(&st.targets[0], &sp, NOW) < s0 + 1.1); /* one finished already: no load */
  store_reserve(&st, 0);
  store_report(&st, 0, &l, NOW + 1);                              /* the report now includes them */
  assert_int_equal(st.targets[0].routed_since_report, 0);
  assert_int_equal(st.targets[0].inflight, 2);
  store_release(&st, 0);
  store_release(&st, 0);
  store_release(&st, 0); /* extra release never goes negative */
  assert_int_equal(st.targets[0].inflight, 0);
}

static void test_inflight_floor(void **state) {
  /* A report that shows an idle target while we have 10 requests there must not win. */
  for (int i = 0; i < 10; i++) store_reserve(&st, 1);
  struct target_load idle = {0};
  store_report(&st, 1, &idle, NOW);
  assert_true(score_target(&st.targets[1], &sp, NOW) >= 10);
  assert_true(score_target(&st.targets[0], &sp, NOW) < 1);
}

static void test_stale_reports_count_as_saturated(void **state) {
  struct target_load l = {.waiting = 1};
  store_report(&st, 0, &l, NOW);
  double fresh = score_target(&st.targets[0], &sp, NOW + sp.stale_ns);
  double stale = score_target(&st.targets[0], &sp, NOW + sp.stale_ns + 1);
  assert_true(stale >= fresh + sp.stale_penalty);
}

static void test_p2c_never_picks_the_worst_of_three(void **state) {
  struct target_load busy = {.waiting = 50}, mid = {.waiting = 5}, idle = {0};
  store_report(&st, 0, &busy, NOW);
  store_report(&st, 1, &mid, NOW);
  store_report(&st, 2, &idle, NOW);
  int ids[] = {0, 1, 2}, counts[3] = {0};
  struct rng r;
  rng_seed(&r, 42);
  for (int i = 0; i < 3000; i++) counts[score_pick(&st, ids, 3, &sp, NOW, &r)]++;
  assert_int_equal(counts[0], 0);
  assert_true(counts[2] > counts[1]); /* the idle one wins every pair it is in: 2/3 of draws */
  assert_true(counts[2] > 1800 && counts[2] < 2200);
}

static void test_p2c_spreads_equal_targets(void **state) {
  int ids[] = {0, 1, 2}, counts[3] = {0};
  struct rng r;
  rng_seed(&r, 7);
  for (int i = 0; i < 3000; i++) counts[score_pick(&st, ids, 3, &sp, NOW, &r)]++;
  for (int i = 0; i < 3; i++) assert_true(counts[i] > 800 && counts[i] < 1200);
  assert_int_equal(score_pick(&st, ids, 1, &sp, NOW, &r), 0);
}

static void test_degraded_gpu_ranks_lower(void **state) {
  int ids[] = {0, 1}, counts[2] = {0};
  struct rng r;
  rng_seed(&r, 3);
  st.targets[0].gpu_degraded = true;
  assert_true(score_target(&st.targets[0], &sp, NOW) >= score_target(&st.targets[1], &sp, NOW) + sp.gpu_penalty);
  for (int i = 0; i < 200; i++) counts[score_pick(&st, ids, 2, &sp, NOW, &r)]++;
  assert_int_equal(counts[0], 0);
  /* ... but it still takes traffic when the healthy one is much busier */
  struct target_load busy = {.waiting = 20};
  store_report(&st, 1, &busy, NOW);
  assert_int_equal(score_pick(&st, ids, 2, &sp, NOW, &r), 0);
}

/* Mesh: remote targets are registered per (node id, name), revived in place, and leave routing when their
 * node drains or dies. */
static void test_remote_targets(void **state) {
  uint8_t n1[32] = {1}, n2[32] = {2};
  const char *models[] = {M};
  bool changed;
  int ids[8];
  int r1 = store_add_remote(&st, "gpu-a", n1, "engine-0", "127.0.0.1:9001", "vllm", &changed);
  assert_int_equal(r1, 4);
  assert_true(changed);
  assert_string_equal(st.targets[r1].name, "gpu-a/engine-0");
  assert_string_equal(st.targets[r1].url, "http://127.0.0.1:9001");
  assert_true(st.targets[r1].remote);
  assert_false(st.targets[r1].healthy); /* until its first load report */
  /* the same node and name on another node id is another target */
  int r2 = store_add_remote(&st, "gpu-b", n2, "engine-0", "127.0.0.1:9002", "vllm", &changed);
  assert_int_equal(r2, 5);
  assert_int_equal(store_add_remote(&st, "gpu-a", n1, "engine-0", "127.0.0.1:9001", "vllm", &changed), r1);
  assert_false(changed);
  store_set_models(&st, r1, models, 1);
  store_set_models(&st, r2, models, 1);
  struct target_load idle = {0};
  store_report(&st, r1, &idle, NOW);
  store_report(&st, r2, &idle, NOW);
  assert_int_equal(store_candidates(&st, slice_cstr(M), NULL, ids, 8), 5);
  st.targets[r2].draining = true;
  assert_int_equal(store_candidates(&st, slice_cstr(M), NULL, ids, 8), 4);
  store_mark_gone(&st, r1);
  assert_int_equal(store_candidates(&st, slice_cstr(M), NULL, ids, 8), 3);
  assert_int_equal(st.targets[r1].nmodels, 0);
  assert_true(store_all_reported(&st)); /* a gone target has nothing left to report */
  /* it comes back at a new address in the same slot */
  assert_int_equal(store_add_remote(&st, "gpu-a", n1, "engine-0", "127.0.0.1:9011", "vllm", &changed), r1);
  assert_true(changed);
  assert_false(st.targets[r1].gone);
  assert_int_equal(st.targets[r1].port, 9011);
  assert_true(store_add_remote(&st, "gpu-a", n1, "engine-1", "no-port", "vllm", &changed) < 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_urls_rejected),
      cmocka_unit_test(test_store_sized_at_run_time),
      cmocka_unit_test_setup_teardown(test_prompt_rate_peak, setup, teardown),
      cmocka_unit_test_setup_teardown(test_candidates_by_model_and_health, setup, teardown),
      cmocka_unit_test_setup_teardown(test_score_counts_waiting_running_and_reservations, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inflight_floor, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_reports_count_as_saturated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_p2c_never_picks_the_worst_of_three, setup, teardown),
      cmocka_unit_test_setup_teardown(test_p2c_spreads_equal_targets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_degraded_gpu_ranks_lower, setup, teardown),
      cmocka_unit_test_setup_teardown(test_remote_targets, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
