/* Unit tests for route/cand_set.c: the candidate sets the router keeps per model equal, after any store
 * changes, what a rebuild from the store gives (store_candidates + cand_record), and a decision with nothing
 * changed rebuilds nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "route/cand_set.h"

#define CAP 96
static const char *const MODELS[] = {"llama", "qwen", "mistral", "nobody-serves-me"};
#define NMODELS 4

/* same_as_rebuild asserts that model's set equals the store's candidates with their records. */
static void same_as_rebuild(struct cand_sets *cs, const struct store *s, const char *model) {
  int ids[CAP];
  int n = store_candidates(s, slice_cstr(model), NULL, ids, CAP);
  struct cand_set *c = cand_sets_get(cs, s, slice_cstr(model));
  assert_int_equal(c->n, n);
  for (int i = 0; i < n; i++) {
    struct policy_target want;
    cand_record(&s->targets[ids[i]], &want);
    assert_int_equal(c->ids[i], ids[i]);
    assert_memory_equal(&c->pt[i], &want, sizeof want);
  }
}

static void random_change(struct store *s, struct rng *g, uint64_t now) {
  int id = s->ntargets ? (int)(rng_next(g) % (uint64_t)s->ntargets) : -1;
  switch (rng_next(g) % 10) {
  case 0:
    if (s->ntargets < CAP) {
      char url[64];
      snprintf(url, sizeof url, "http://127.0.0.1:%d", 9000 + s->ntargets);
      assert_true(store_add_target(s, NULL, url, "vllm") >= 0);
    }
    break;
  case 1:
    if (id >= 0) {
      const char *m[3];
      int k = 0;
      for (int j = 0; j < 3; j++)
        if (rng_next(g) & 1) m[k++] = MODELS[j];
      store_set_models(s, id, m, k);
    }
    break;
  case 2:
  case 3:
    if (id >= 0) {
      struct target_load l = {.waiting = (double)(rng_next(g) % 20),
                              .running = (double)(rng_next(g) % 50),
                              .kv_usage = (double)(rng_next(g) % 100) / 100,
                              .block_size = 16,
                              .num_gpu_blocks = (int64_t)(rng_next(g) % 5000),
                              .prefix_queries = 100,
                              .prefix_hits = (double)(rng_next(g) % 100),
                              .prompt_tps = (double)(rng_next(g) % 30000),
                              .itl_p50 = (double)(rng_next(g) % 100) / 1000 - 0.01};
      store_report(s, id, &l, now - rng_next(g) % 10000000000ull);
    }
    break;
  case 4:
    if (id >= 0) store_mark_down(s, id, "test");
    break;
  case 5:
    if (id >= 0 && rng_next(g) % 4 == 0) store_mark_gone(s, id);
    break;
  case 6:
    if (id >= 0) store_reserve(s, id);
    break;
  case 7:
    if (id >= 0) store_release(s, id);
    break;
  case 8:
    if (id >= 0) store_set_draining(s, id, rng_next(g) % 3 == 0);
    break;
  default:
    if (id >= 0) store_set_degraded(s, id, rng_next(g) & 1);
    break;
  }
}

static void test_sets_equal_a_rebuild_after_random_changes(void **state) {
  (void)state;
  struct store s;
  struct cand_sets cs;
  struct rng g;
  rng_seed(&g, 7);
  store_init(&s, CAP);
  cand_sets_init(&cs, s.cap);
  uint64_t now = 100000000000ull;
  for (int round = 0; round < 3000; round++) {
    /* mostly a few changes between decisions; now and then none, or more than the change log holds */
    int changes = (int)(rng_next(&g) % 8);
    if (round % 97 == 0) changes = STORE_CHANGE_LOG + 100;
    for (int k = 0; k < changes; k++)
      random_change(&s, &g, now);
    now += rng_next(&g) % 3000000000ull;
    for (int m = 0; m < NMODELS; m++)
      same_as_rebuild(&cs, &s, MODELS[m]);
  }
  assert_true(cs.refreshes > 0);             /* most changes refreshed records in place ... */
  assert_true(cs.rebuilds < 3000 * NMODELS); /* ... not every decision rebuilt */
  cand_sets_free(&cs);
  store_free(&s);
}

static void test_nothing_changed_rebuilds_nothing(void **state) {
  (void)state;
  struct store s;
  struct cand_sets cs;
  store_init(&s, CAP);
  cand_sets_init(&cs, s.cap);
  const char *m[] = {"llama"};
  struct target_load l = {.waiting = 1, .kv_usage = 0.5};
  for (int i = 0; i < 10; i++) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", 9000 + i);
    store_add_target(&s, NULL, url, "vllm");
    store_set_models(&s, i, m, 1);
    store_report(&s, i, &l, 1);
  }
  struct cand_set *c = cand_sets_get(&cs, &s, slice_cstr("llama"));
  assert_int_equal(c->n, 10);
  uint64_t rebuilds = cs.rebuilds, refreshes = cs.refreshes;
  for (int i = 0; i < 5; i++)
    c = cand_sets_get(&cs, &s, slice_cstr("llama"));
  assert_int_equal(cs.rebuilds, rebuilds);
  assert_int_equal(cs.refreshes, refreshes);
  assert_int_equal(c->pt[3].report_ns, 1);
  /* A load report or a reservation rewrites that target's record only. */
  l.waiting = 7;
  store_report(&s, 3, &l, 9);
  store_reserve(&s, 4);
  c = cand_sets_get(&cs, &s, slice_cstr("llama"));
  assert_int_equal(cs.rebuilds, rebuilds);
  assert_int_equal(cs.refreshes, refreshes + 2);
  assert_true(c->pt[3].waiting == 7 && c->pt[3].report_ns == 9 && c->pt[4].inflight == 1);
  /* A target leaving the set rebuilds it. */
  store_mark_down(&s, 5, "gone away");
  c = cand_sets_get(&cs, &s, slice_cstr("llama"));
  assert_int_equal(cs.rebuilds, rebuilds + 1);
  assert_int_equal(c->n, 9);
  assert_int_equal(c->ids[5], 6);
  cand_sets_free(&cs);
  store_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sets_equal_a_rebuild_after_random_changes),
      cmocka_unit_test(test_nothing_changed_rebuilds_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
