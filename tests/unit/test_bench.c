/* Load-generator prompt tests: equal trace block ids give equal bytes, partial blocks are prefixes, 4 bytes a
 * token, different ids (or salts) differ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "cli/bench_int.h"
#include "core/buf.h"
#include "sim/engine.h"

static void text_of(const struct workload *w, size_t i, uint64_t salt, struct buf *b) {
  buf_reset(b);
  bench_text(w, &w->reqs[i], salt, b);
}

static void test_equal_ids_equal_bytes(void **state) {
  struct workload w;
  char err[200];
  workload_init(&w);
  const char *lines[] = {
      "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 5, \"hash_ids\": [7, 8]}",
      "{\"timestamp\": 10, \"input_length\": 1300, \"output_length\": 5, \"hash_ids\": [7, 8, 9]}",
      "{\"timestamp\": 20, \"input_length\": 700, \"output_length\": 5, \"hash_ids\": [7, 8]}",
      "{\"timestamp\": 30, \"input_length\": 1024, \"output_length\": 5, \"hash_ids\": [8, 7]}",
  };
  for (int i = 0; i < 4; i++)
    assert_int_equal(trace_parse_line(&w, lines[i], strlen(lines[i]), i + 1, err, sizeof err), 0);
  struct buf a = {0}, b = {0}, c = {0}, d = {0};
  text_of(&w, 0, 0, &a);
  text_of(&w, 1, 0, &b);
  text_of(&w, 2, 0, &c);
  text_of(&w, 3, 0, &d);
  assert_int_equal(a.len, 1024 * 4);
  assert_int_equal(sim_tokens_for_bytes(a.len), 1024);
  assert_int_equal(b.len, 1300 * 4);
  assert_int_equal(c.len, 700 * 4);
  assert_memory_equal(a.base, b.base, a.len);       /* shared blocks [7, 8] */
  assert_memory_equal(a.base, c.base, c.len);       /* a partial second block is a prefix of the full one */
  assert_memory_not_equal(a.base, d.base, 2048);    /* block 8 first is another prompt */
  assert_memory_equal(a.base, d.base + 2048, 2048); /* ... though block 7 is the same text anywhere */
  for (size_t i = 0; i < a.len; i++)
    assert_true((a.base[i] >= 'a' && a.base[i] <= 'z') || a.base[i] == ' ');
  struct buf s = {0};
  text_of(&w, 0, 1, &s);
  assert_int_equal(s.len, a.len);
  assert_memory_not_equal(a.base, s.base, 64); /* another salt, another text */
  buf_free(&a), buf_free(&b), buf_free(&c), buf_free(&d), buf_free(&s);
  workload_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_equal_ids_equal_bytes)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
