/* Core helpers: slice parsing, escaping into buffers, histograms; and the router's metrics rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "core/hist.h"
#include "core/slice.h"
#include "route/route_metrics.h"

static void test_slice_numbers(void **state) {
  uint64_t u;
  double d;
  assert_int_equal(slice_to_u64(SLICE_LIT("18446744073709551615"), &u), 0);
  assert_true(u == UINT64_MAX);
  assert_int_equal(slice_to_u64(SLICE_LIT("18446744073709551616"), &u), -EINVAL);
  assert_int_equal(slice_to_u64(SLICE_LIT(""), &u), -EINVAL);
  assert_int_equal(slice_to_u64(SLICE_LIT("12a"), &u), -EINVAL);
  assert_int_equal(slice_to_double(SLICE_LIT("1.5e3"), &d), 0);
  assert_true(d == 1500.0);
  assert_int_equal(slice_to_double(SLICE_LIT("+Inf"), &d), 0);
  assert_true(isinf(d) && d > 0);
  assert_int_equal(slice_to_double(SLICE_LIT("NaN"), &d), 0);
  assert_true(isnan(d));
  assert_int_equal(slice_to_double(SLICE_LIT("1.5x"), &d), -EINVAL);
  /* not NUL-terminated: the parser must stop at len */
  const char digits[] = {'4', '2', '9'};
  assert_int_equal(slice_to_u64(slice_make(digits, 2), &u), 0);
  assert_true(u == 42);
  assert_true(slice_eq_nocase(SLICE_LIT("Content-Length"), "content-length"));
  assert_false(slice_eq_nocase(SLICE_LIT("Content-Lengt"), "content-length"));
  struct slice t = slice_trim(SLICE_LIT(" \t v \t"));
  assert_true(slice_eqz(t, "v"));
  char small[4];
  assert_int_equal(str_copy(small, sizeof small, "abcdef"), 6);
  assert_string_equal(small, "abc");
}

/* Invalid UTF-8 (stray continuation, truncated, overlong, surrogate, past U+10FFFF, 0xFF) becomes \ufffd;
 * well-formed multi-byte sequences pass through. */
static void test_json_str_invalid_utf8(void **state) {
  struct buf b = {0};
  buf_json_str(&b, SLICE_LIT("m\x80x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xc0\xaf|\xed\xa0\x80|"
                             "\xf4\x90\x80\x80|\xff|\xe2\x82"));
  assert_string_equal(b.base, "\"m\\ufffdx\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                              "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd|\\ufffd\\ufffd\"");
  buf_free(&b);
}

static void test_buf_escaping(void **state) {
  struct buf b = {0};
  buf_json_str(&b, SLICE_LIT("a\"b\\c\nd\x01"));
  assert_string_equal(b.base, "\"a\\\"b\\\\c\\nd\\u0001\"");
  buf_reset(&b);
  buf_label_value(&b, "x\"y\\z\nw");
  assert_string_equal(b.base, "x\\\"y\\\\z\\nw");
  buf_reset(&b);
  buf_path_segment(&b, "node-1/vllm 0:a~b.c_d");
  assert_string_equal(b.base, "node-1%2Fvllm%200%3Aa~b.c_d");
  buf_reset(&b);
  buf_printf(&b, "%d-%s", 7, "seven");
  buf_consume(&b, 2);
  assert_string_equal(b.base, "seven");
  assert_int_equal(b.len, 5);
  buf_free(&b);
}

static void test_hist_buckets_and_quantiles(void **state) {
  struct hist h;
  struct buf b = {0};
  hist_init(&h, hist_latency_bounds, hist_latency_nbounds);
  assert_true(hist_quantile(&h, 0.5) == 0);
  for (int i = 0; i < 90; i++) hist_observe(&h, 0.004); /* bucket (0.0025, 0.005] */
  for (int i = 0; i < 10; i++) hist_observe(&h, 0.9);   /* bucket (0.75, 1] */
  double p50 = hist_quantile(&h, 0.5), p99 = hist_quantile(&h, 0.99);
  assert_true(p50 > 0.0025 && p50 <= 0.005);
  assert_true(p99 > 0.75 && p99 <= 1.0);
  hist_render(&h, &b, "lat", "model=\"m\"");
  assert_non_null(strstr(b.base, "lat_bucket{model=\"m\",le=\"0.005\"} 90\n"));
  assert_non_null(strstr(b.base, "lat_bucket{model=\"m\",le=\"1\"} 100\n"));
  assert_non_null(strstr(b.base, "lat_bucket{model=\"m\",le=\"+Inf\"} 100\n"));
  assert_non_null(strstr(b.base, "lat_count{model=\"m\"} 100\n"));
  buf_free(&b);
}

static void test_route_metrics(void **state) {
  struct route_metrics m;
  struct buf b = {0};
  route_metrics_init(&m);
  route_metrics_count(&m, "llama", 200, "engine-0");
  route_metrics_count(&m, "llama", 200, "engine-0");
  route_metrics_count(&m, "", 404, "");
  m.retries = 3;
  route_metrics_render(&m, &b, 5);
  assert_non_null(strstr(b.base, "infermesh_requests_total{model=\"llama\",status=\"200\",target=\"engine-0\"} 2\n"));
  assert_non_null(strstr(b.base, "infermesh_requests_total{model=\"\",status=\"404\",target=\"\"} 1\n"));
  assert_non_null(strstr(b.base, "infermesh_requests_in_flight 5\n"));
  assert_non_null(strstr(b.base, "infermesh_retries_total 3\n"));
  assert_non_null(strstr(b.base, "# TYPE infermesh_time_to_first_token_seconds histogram\n"));
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slice_numbers),
      cmocka_unit_test(test_buf_escaping),
      cmocka_unit_test(test_json_str_invalid_utf8),
      cmocka_unit_test(test_hist_buckets_and_quantiles),
      cmocka_unit_test(test_route_metrics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
