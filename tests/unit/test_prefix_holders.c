/* The inverted prefix index (block hash -> targets) against the per-target prefix indexes it mirrors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "state/prefix_holders.h"
#include "state/prefix_index.h"

#define NT 6    /* targets */
#define NFAM 5  /* prefix families */
#define MAXB 48 /* blocks per prompt at most */
#define UNIVERSE (NFAM * 4 * MAXB)

/* chain: block I of a prompt whose first SPLIT blocks come from family F and the rest from branch G. */
static void chain(uint64_t *h, int n, int f, int split, int g) {
  uint64_t x = 0x5151;
  for (int i = 0; i < n; i++) {
    uint64_t fam = i < split ? (uint64_t)f : 100 + (uint64_t)f * 10 + (uint64_t)g;
    x = (x ^ (fam * 0x9E3779B97F4A7C15ull + (uint64_t)i)) * 0xff51afd7ed558ccdull;
    x ^= x >> 31;
    h[i] = x;
  }
}

/* Every hash of the universe seen so far, to check the map both ways. */
static uint64_t seen[UNIVERSE * 4];
static int nseen;

static void remember(const uint64_t *h, int n) {
  for (int i = 0; i < n; i++) {
    int k = 0;
    while (k < nseen && seen[k] != h[i])
      k++;
    if (k == nseen && nseen < (int)(sizeof seen / sizeof seen[0])) seen[nseen++] = h[i];
  }
}

/* check: HS lists target t under hash h exactly when ix[t] holds h. */
static void check(const struct prefix_holders *hs, struct prefix_index *ix) {
  for (int k = 0; k < nseen; k++) {
    int n;
    const int32_t *ids = prefix_holders_get(hs, seen[k], &n);
    int want = 0;
    for (int t = 0; t < NT; t++) {
      int held = prefix_index_contains(&ix[t], seen[k]);
      want += held;
      int listed = 0;
      for (int j = 0; j < n; j++)
        listed += ids[j] == t;
      assert_int_equal(listed, held);
    }
    assert_int_equal(n, want);
  }
}

/* Random inserts (small capacities force evictions), removals, clears, capacity changes and a free: the map
 * stays exactly the union of the indexes. */
static void test_holders_mirror_indexes(void **state) {
  (void)state;
  struct prefix_holders hs;
  prefix_holders_init(&hs);
  struct prefix_index ix[NT];
  for (int t = 0; t < NT; t++) {
    prefix_index_init(&ix[t], 40 + 10 * t);
    prefix_index_attach(&ix[t], &hs, t);
  }
  struct rng r;
  rng_seed(&r, 11);
  nseen = 0;
  uint64_t h[MAXB];
  for (int step = 0; step < 3000; step++) {
    int t = (int)rng_below(&r, NT), n = 1 + (int)rng_below(&r, MAXB);
    chain(h, n, (int)rng_below(&r, NFAM), (int)rng_below(&r, (uint32_t)n + 1), (int)rng_below(&r, 4));
    remember(h, n);
    uint32_t op = rng_below(&r, 100);
    if (op < 60)
      prefix_index_insert_path(&ix[t], h, n);
    else if (op < 80)
      prefix_index_add_in_order(&ix[t], h, n);
    else if (op < 95)
      prefix_index_remove(&ix[t], h[rng_below(&r, (uint32_t)n)]);
    else if (op < 98)
      prefix_index_set_capacity(&ix[t], 5 + (int)rng_below(&r, 80));
    else
      prefix_index_clear(&ix[t]);
    if (step % 50 == 0) check(&hs, ix);
  }
  check(&hs, ix);
  prefix_index_free(&ix[2]); /* a freed index leaves the map */
  prefix_index_init(&ix[2], 50);
  check(&hs, ix);
  for (int t = 0; t < NT; t++)
    prefix_index_free(&ix[t]);
  assert_int_equal(hs.used, 0);
  prefix_holders_free(&hs);
}

struct marks {
  int k[NT];
  int calls;
};

static void mark(void *ud, int32_t id, int k) {
  struct marks *m = ud;
  assert_true(id >= 0 && id < NT);
  m->k[id] = k;
  m->calls++;
}

/* On prefix-closed indexes (insert_path only, with evictions), the match through the map equals every
 * target's own prefix_index_match, for prompts that share prefixes of every length with what was routed. */
static void test_holders_match_equals_per_target_match(void **state) {
  (void)state;
  struct prefix_holders hs;
  prefix_holders_init(&hs);
  struct prefix_index ix[NT];
  for (int t = 0; t < NT; t++) {
    prefix_index_init(&ix[t], 60 + 25 * t);
    prefix_index_attach(&ix[t], &hs, t);
  }
  struct rng r;
  rng_seed(&r, 5);
  uint64_t h[MAXB];
  int multi = 0;
  for (int step = 0; step < 4000; step++) {
    int n = 1 + (int)rng_below(&r, MAXB), f = (int)rng_below(&r, NFAM);
    chain(h, n, f, (int)rng_below(&r, (uint32_t)n + 1), (int)rng_below(&r, 4));
    if (step % 2) {
      prefix_index_insert_path(&ix[rng_below(&r, NT)], h, n);
      continue;
    }
    struct marks m = {{0}, 0};
    int deepest = prefix_holders_match(&hs, h, n, mark, &m);
    int want_deepest = 0, holders = 0;
    for (int t = 0; t < NT; t++) {
      int want = prefix_index_match(&ix[t], h, n);
      assert_int_equal(m.k[t], want);
      if (want > want_deepest) want_deepest = want;
      holders += want > 0;
    }
    assert_int_equal(deepest, want_deepest);
    multi += holders > 1;
  }
  assert_true(multi > 100); /* the walk met several holders with different depths, not just one */
  for (int t = 0; t < NT; t++)
    prefix_index_free(&ix[t]);
  prefix_holders_free(&hs);
}

/* Many holders of one hash (past the inline slots) and deletions in any order. */
static void test_holders_many_ids(void **state) {
  (void)state;
  struct prefix_holders hs;
  prefix_holders_init(&hs);
  for (int id = 0; id < 100; id++)
    prefix_holders_add(&hs, 42, id);
  for (uint64_t h = 1000; h < 5000; h++) /* grows the table under the listed hash */
    prefix_holders_add(&hs, h, 7);
  int n;
  const int32_t *ids = prefix_holders_get(&hs, 42, &n);
  assert_int_equal(n, 100);
  int sum = 0;
  for (int j = 0; j < n; j++)
    sum += ids[j];
  assert_int_equal(sum, 99 * 100 / 2);
  for (int id = 0; id < 100; id += 2)
    prefix_holders_del(&hs, 42, id);
  prefix_holders_del(&hs, 42, 1000); /* not listed: nothing happens */
  ids = prefix_holders_get(&hs, 42, &n);
  assert_int_equal(n, 50);
  for (int j = 0; j < n; j++)
    assert_int_equal(ids[j] % 2, 1);
  for (int id = 1; id < 100; id += 2)
    prefix_holders_del(&hs, 42, id);
  assert_null(prefix_holders_get(&hs, 42, &n));
  assert_int_equal(n, 0);
  assert_int_equal(hs.used, 4000);
  for (uint64_t h = 1000; h < 5000; h++)
    prefix_holders_del(&hs, h, 7);
  assert_int_equal(hs.used, 0);
  prefix_holders_free(&hs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_holders_mirror_indexes),
      cmocka_unit_test(test_holders_match_equals_per_target_match),
      cmocka_unit_test(test_holders_many_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
