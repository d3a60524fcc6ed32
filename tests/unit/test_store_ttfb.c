/* The store's time-to-first-byte window and its quantiles (state/store.c), checked against a sorted copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "state/store.h"

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static void test_quantiles_match_a_sort(void **state) {
  (void)state;
  static struct store s;
  store_init(&s, 64);
  int id = store_add_target(&s, "t", "http://127.0.0.1:9", "vllm");
  assert_true(id >= 0);
  srand(7);
  for (int round = 0; round < 300; round++) {
    int n = 1 + rand() % (STORE_TTFB_WINDOW + 20); /* past the window: it wraps */
    int distinct = 1 + rand() % 40;                /* duplicates on purpose */
    struct target *t = &s.targets[id];
    memset(t->ttfb, 0, sizeof t->ttfb);
    t->ttfb_n[0] = t->ttfb_pos[0] = 0;
    for (int i = 0; i < n; i++)
      store_ttfb_observe(&s, id, 0, (double)(rand() % distinct) / 10.0);
    int m = t->ttfb_n[0];
    float ref[STORE_TTFB_WINDOW];
    memcpy(ref, t->ttfb[0], (size_t)m * sizeof ref[0]);
    qsort(ref, (size_t)m, sizeof ref[0], cmp);
    const double qs[] = {0, 0.01, 0.5, 0.9, 0.95, 0.99, 1};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
      double got;
      assert_true(store_ttfb_quantile(t, 0, qs[k], 1, &got));
      int rank = (int)((double)m * qs[k] + 0.999999);
      if (rank < 1) rank = 1;
      assert_true(got == ref[rank - 1]);
    }
    double dummy;
    assert_false(store_ttfb_quantile(t, 0, 0.95, m + 1, &dummy)); /* too few samples */
  }
  store_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_quantiles_match_a_sort)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
