/* Unit tests for route/rank.c: ranking with the router's policy and candidate filter, admission verdicts, and
 * outcomes reaching the router's breakers and TTFT windows, on a router over an in-memory store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "route/rank.h"

#define M "llama"

static struct store st;
static struct router r;

static void report(int id, double waiting, double kv_usage, uint64_t now) {
  struct target_load l = {.waiting = waiting,
                          .kv_usage = kv_usage,
                          .block_size = 16,
                          .num_gpu_blocks = 100,
                          .ttft_p50 = -1,
                          .ttft_p95 = -1};
  store_report(&st, id, &l, now);
}

#define RANK_TARGETS 64 /* the store's capacity */

static int setup(void **state) {
  const char *models[] = {M};
  store_init(&st, RANK_TARGETS);
  for (int i = 0; i < 4; i++) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", 8001 + i);
    assert_int_equal(store_add_target(&st, NULL, url, "vllm"), i);
    store_set_models(&st, i, models, 1);
  }
  router_init(&r, NULL, &st, NULL, NULL);
  uint64_t now = clock_mono_ns();
  for (int i = 0; i < 4; i++)
    report(i, i * 2.0, 0.1, now); /* target i has 2i waiting requests */
  return 0;
}

static int teardown(void **state) {
  router_free(&r);
  store_free(&st);
  return 0;
}

static void test_rank_puts_the_policy_choice_first_then_by_score(void **state) {
  uint64_t hashes[4] = {1, 2, 3, 4};
  struct policy_req pr = {.model = M,
                          .prompt_tokens = 64,
                          .max_tokens = 16,
                          .block_hashes = hashes,
                          .nblocks = 4,
                          .block_size = 16,
                          .tenant = -1};
  struct router_ranked out[RANK_TARGETS];
  const char *policy;
  int n = router_rank(&r, slice_cstr(M), &pr, clock_mono_ns(), out, RANK_TARGETS, &policy);
  assert_int_equal(n, 4);
  assert_string_equal(policy, "ours");
  assert_true(out[0].chosen);
  assert_string_equal(out[0].reason, "policy choice");
  for (int i = 1; i < n; i++) {
    assert_false(out[i].chosen);
    if (i > 1) assert_true(out[i - 1].score <= out[i].score);
  }
  assert_true(out[0].est_ttft_s < 0); /* no TTFT observed yet */
  double second = out[1].score;
  int chosen = out[0].id;
  assert_int_equal(router_rank(&r, slice_cstr(M), &pr, clock_mono_ns(), out, 2, &policy), 2); /* selected */
  assert_true(out[0].chosen && out[0].id == chosen); /* the same prompt: the same choice */
  assert_true(out[1].score == second && !out[1].chosen);
  assert_int_equal(router_rank(&r, slice_cstr(M), &pr, clock_mono_ns(), out, 1, &policy), 1);
  assert_true(out[0].chosen && out[0].id == chosen && out[0].score >= 0);
  assert_int_equal(router_rank(&r, slice_cstr("other"), &pr, clock_mono_ns(), out, 4, &policy), 0);
}

static void test_outcomes_reach_breakers_and_ttft(void **state) {
  struct policy_req pr = {.model = M, .prompt_tokens = 10, .max_tokens = 10, .tenant = -1};
  uint64_t now = clock_mono_ns();
  for (int i = 0; i < 5; i++)
    router_outcome(&r, 1, &pr, 0, 0, ROUTER_OUTCOME_ERROR, false, now);
  struct router_cands c;
  int n = router_candidates(&r, slice_cstr(M), NULL, clock_mono_ns(), &c);
  assert_int_equal(n, 3); /* target 1's breaker is open: no candidate */
  for (int i = 0; i < n; i++)
    assert_int_not_equal(c.ids[i], 1);
  router_outcome(&r, 1, &pr, 0.2, 8, ROUTER_OUTCOME_OK, true, now);
  assert_int_equal(router_candidates(&r, slice_cstr(M), NULL, clock_mono_ns(), &c), 4);
  double p50;
  assert_true(store_ttfb_quantile(&st.targets[1], STORE_TTFB_STREAM, 0.5, 1, &p50));
  assert_true(p50 > 0.19 && p50 < 0.21);
  /* A cancelled request is neither: the breaker stays as it is. */
  router_outcome(&r, 2, &pr, 0, 0, ROUTER_OUTCOME_CANCELLED, false, now);
  assert_int_equal(r.breakers[2].state, BREAKER_CLOSED);
}

static void test_admission_verdicts(void **state) {
  const char *reason;
  uint64_t retry;
  uint64_t now = clock_mono_ns();
  assert_int_equal(router_admit(&r, 0, slice_cstr(M), 100, now, &reason, &retry), ROUTER_ADMIT);
  assert_string_equal(reason, "");
  assert_int_equal(r.adm.tenants[0].active, 0); /* no slot held */
  assert_int_equal(router_admit(&r, 0, slice_cstr("other"), 100, now, &reason, &retry), ROUTER_REJECT);
  assert_string_equal(reason, "no_target");
  assert_true(retry > 0);
  for (int i = 0; i < 4; i++)
    report(i, 0, 0.999, now); /* every KV pool full */
  assert_int_equal(router_admit(&r, 0, slice_cstr(M), 1000, now, &reason, &retry), ROUTER_QUEUE);
  assert_string_equal(reason, "saturated");
}

/* records_match asserts that every candidate of c comes with its own target's record. */
static void records_match(const struct router_cands *c, uint64_t now) {
  for (int i = 0; i < c->n; i++) {
    struct policy_target want;
    cand_record(&st.targets[c->ids[i]], &want);
    assert_memory_equal(&c->pt[i], &want, sizeof want);
  }
}

static bool not_two(const void *arg, const struct target *t) {
  (void)arg;
  return t->id != 2;
}

static void test_narrowed_candidates_keep_their_records(void **state) {
  struct policy_req pr = {.model = M, .prompt_tokens = 10, .max_tokens = 10, .tenant = -1};
  uint64_t now = clock_mono_ns();
  struct router_cands c;
  assert_int_equal(router_candidates(&r, slice_cstr(M), NULL, now, &c), 4);
  records_match(&c, now);
  /* Tried (excluded) and open-breaker targets drop out; the others keep their own records. */
  uint64_t tried[1] = {1ull << 0};
  for (int i = 0; i < 5; i++) router_outcome(&r, 1, &pr, 0, 0, ROUTER_OUTCOME_ERROR, false, now);
  assert_int_equal(router_candidates(&r, slice_cstr(M), tried, now, &c), 2);
  assert_int_equal(c.ids[0], 2);
  assert_int_equal(c.ids[1], 3);
  records_match(&c, now);
  /* ... and so do those a filter keeps (admission's KV budget, the hedge's room). */
  assert_int_equal(router_cands_keep(&r, &c, not_two, NULL), 1);
  assert_int_equal(c.n, 1);
  assert_int_equal(c.ids[0], 3);
  records_match(&c, now);
  /* A load report reaches the next decision's record. */
  report(3, 9, 0.2, now);
  assert_int_equal(router_candidates(&r, slice_cstr(M), tried, now, &c), 2);
  records_match(&c, now);
  assert_true(c.pt[1].waiting == 9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rank_puts_the_policy_choice_first_then_by_score, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outcomes_reach_breakers_and_ttft, setup, teardown),
      cmocka_unit_test_setup_teardown(test_admission_verdicts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_narrowed_candidates_keep_their_records, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
