/* Unit tests for core/pool: per-request memory pools. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/pool.h"

static void test_alloc_aligned_distinct(void **state) {
  struct mem_pool p = {0};
  char *prev = NULL;
  for (int i = 0; i < 1000; i++) { /* many chunks */
    char *a = pool_alloc(&p, (size_t)(i % 37) + 1);
    assert_int_equal((uintptr_t)a % 16, 0);
    memset(a, 0xab, (size_t)(i % 37) + 1); /* ASan: the bytes are ours */
    assert_ptr_not_equal(a, prev);
    prev = a;
  }
  char *big = pool_alloc(&p, 100000); /* its own allocation */
  memset(big, 1, 100000);
  assert_int_equal((uintptr_t)big % 16, 0);
  pool_free(&p);
  assert_null(p.chunks);
  assert_null(p.large);
}

static void test_strdup_and_clear_keeps_a_chunk(void **state) {
  struct mem_pool p = {0};
  char *s = pool_strdup(&p, SLICE_LIT("content-type"));
  assert_string_equal(s, "content-type");
  assert_string_equal(pool_strdup(&p, slice_make(NULL, 0)), "");
  for (int i = 0; i < 100; i++)
    pool_alloc(&p, 1000);
  pool_alloc(&p, 50000);
  pool_clear(&p);
  assert_non_null(p.chunks); /* kept for the next request */
  assert_null(p.large);
  assert_int_equal(p.used, 0);
  struct pool_chunk *kept = p.chunks;
  pool_alloc(&p, 8); /* from the kept chunk: no new one */
  assert_ptr_equal(p.chunks, kept);
  pool_free(&p);
}

/* A proxied request's state (struct proxy, about 4.3 KiB) comes from the chunk a reused pool kept: a
 * keep-alive connection's next request calls no malloc for it. */
static void test_request_state_fits_the_kept_chunk(void **state) {
  struct mem_pool p = {0};
  pool_alloc(&p, 4400);
  pool_clear(&p);
  struct pool_chunk *kept = p.chunks;
  char *a = pool_alloc(&p, 4400);
  memset(a, 1, 4400);
  assert_ptr_equal(p.chunks, kept);
  assert_null(p.large);
  pool_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_aligned_distinct),
      cmocka_unit_test(test_strdup_and_clear_keeps_a_chunk),
      cmocka_unit_test(test_request_state_fits_the_kept_chunk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
