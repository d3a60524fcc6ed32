/* Tests for the vLLM adapter: real scrapes, renamed metrics, data-parallel ranks, and /v1/models. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"

#include "adapter/vllm.h"
#include "core/err.h"

#define assert_dbl(got, want)                                                                                \
  do {                                                                                                       \
    double got_ = (got), want_ = (want);                                                                     \
    if (!(got_ == want_)) fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                             \
  } while (0)

#define RT_ALL                                                                                               \
  (RT_HAVE_WAITING | RT_HAVE_RUNNING | RT_HAVE_KV | RT_HAVE_PREFIX | RT_HAVE_TOKENS | RT_HAVE_CACHE_CONFIG | \
   RT_HAVE_TTFT)


/* replace returns a heap copy of s with every occurrence of from replaced by to (at least one must exist). */
static char *replace(const char *s, const char *from, const char *to) {
  size_t fl = strlen(from), tl = strlen(to), n = 0;
  for (const char *p = s; (p = strstr(p, from)); p += fl)
    n++;
  if (n == 0) fail_msg("'%s' not found", from);
  char *out = malloc(strlen(s) + n * tl + 1), *o = out;
  assert_non_null(out);
  for (const char *p = s, *q;; p = q + fl) {
    q = strstr(p, from);
    size_t k = q ? (size_t)(q - p) : strlen(p);
    memcpy(o, p, k);
    o += k;
    if (!q) break;
    memcpy(o, to, tl);
    o += tl;
  }
  *o = '\0';
  return out;
}

/* parse_exact parses a NUL-terminated text from an exact-size copy so ASan sees any overread. */
static int parse_exact(const char *text, struct runtime_metrics *m, struct prom_error *err) {
  size_t len = strlen(text);
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, text, len);
  int rc = vllm_parse_metrics(copy, len, m, err);
  free(copy);
  return rc;
}

/* ---- metrics from real scrapes ---- */

static void test_vllm_fixture(void **state) {
  size_t len;
  char *b = fixture_load("vllm.metrics.txt", &len, 0);
  struct runtime_metrics m;
  struct prom_error err;
  assert_int_equal(vllm_parse_metrics(b, len, &m, &err), 0);
  assert_int_equal(m.have, RT_ALL);
  assert_dbl(m.waiting, 0.0);
  assert_dbl(m.running, 0.0);
  assert_dbl(m.kv_usage, 0.0);
  assert_dbl(m.prefix_queries, 117.0);
  assert_dbl(m.prefix_hits, 64.0);
  assert_dbl(m.prompt_tokens, 5.0);
  assert_dbl(m.generation_tokens, 7.0);
  assert_int_equal(m.block_size, 16);
  assert_int_equal(m.num_gpu_blocks, 7281);
  assert_dbl(m.ttft_sum, 0.31326723098754883);
  assert_dbl(m.ttft_count, 1.0);

  /* this capture has both KV names (both 0.0 here): give them different values; the new name wins */
  char *t1 = replace(b, "vllm:gpu_cache_usage_perc{model_name=\"facebook/opt-125m\"} 0.0",
                     "vllm:gpu_cache_usage_perc{model_name=\"facebook/opt-125m\"} 0.5");
  char *t2 = replace(t1, "vllm:kv_cache_usage_perc{model_name=\"facebook/opt-125m\"} 0.0",
                     "vllm:kv_cache_usage_perc{model_name=\"facebook/opt-125m\"} 0.25");
  assert_int_equal(parse_exact(t2, &m, NULL), 0);
  assert_dbl(m.kv_usage, 0.25);
  /* without the new name, the old one is used */
  char *t3 = replace(t2, "vllm:kv_cache_usage_perc{", "vllm:kv_cache_usage_perc_renamed_away{");
  assert_int_equal(parse_exact(t3, &m, NULL), 0);
  assert_dbl(m.kv_usage, 0.5);
  assert_true(m.have & RT_HAVE_KV);
  /* waiting and running are read from their own series */
  char *t4 = replace(t3, "vllm:num_requests_waiting{model_name=\"facebook/opt-125m\"} 0.0",
                     "vllm:num_requests_waiting{model_name=\"facebook/opt-125m\"} 3.0");
  char *t5 = replace(t4, "vllm:num_requests_running{model_name=\"facebook/opt-125m\"} 0.0",
                     "vllm:num_requests_running{model_name=\"facebook/opt-125m\"} 9.0");
  assert_int_equal(parse_exact(t5, &m, NULL), 0);
  assert_dbl(m.waiting, 3.0);
  assert_dbl(m.running, 9.0);
  free(t1), free(t2), free(t3), free(t4), free(t5);
  free(b);
}

static void test_vllm_v1_fixture(void **state) {
  size_t len;
  char *b = fixture_load("vllm-v1.issue617.metrics.txt", &len, 0);
  struct runtime_metrics m;
  assert_int_equal(vllm_parse_metrics(b, len, &m, NULL), 0);
  /* 5 families: kv (new name), queries (new name), hits (only the deprecated name), two _created gauges */
  assert_int_equal(m.have, RT_HAVE_KV | RT_HAVE_PREFIX);
  assert_dbl(m.kv_usage, 9.75010481363281e-06);
  assert_dbl(m.prefix_queries, 32.0); /* not + the _created timestamp 1.75e9 */
  assert_dbl(m.prefix_hits, 0.0);
  assert_dbl(m.waiting, 0.0);
  assert_int_equal(m.block_size, 0);
  assert_int_equal(m.num_gpu_blocks, 0);

  /* hits come from the deprecated gpu_prefix_cache_hits_total when the new name is absent */
  char *t1 = replace(b, "vllm:gpu_prefix_cache_hits_total{engine=\"0\",model_name=\"zai-org/GLM-4.5\"} 0.0",
                     "vllm:gpu_prefix_cache_hits_total{engine=\"0\",model_name=\"zai-org/GLM-4.5\"} 12.0");
  assert_int_equal(parse_exact(t1, &m, NULL), 0);
  assert_dbl(m.prefix_hits, 12.0);
  /* ... and are not added to the new name's value when both are there */
  size_t n = strlen(t1);
  static const char extra[] =
      "\nvllm:prefix_cache_hits_total{engine=\"0\",model_name=\"zai-org/GLM-4.5\"} 5.0\n"
      "vllm:gpu_prefix_cache_queries_total{engine=\"0\",model_name=\"zai-org/GLM-4.5\"} 32.0\n";
  char *t2 = malloc(n + sizeof extra);
  memcpy(t2, t1, n);
  memcpy(t2 + n, extra, sizeof extra);
  assert_int_equal(parse_exact(t2, &m, NULL), 0);
  assert_dbl(m.prefix_hits, 5.0);
  assert_dbl(m.prefix_queries, 32.0);

  /* a second data-parallel rank: the same scrape again with engine="1" sums counters, averages KV */
  char *rank1 = replace(b, "engine=\"0\"", "engine=\"1\"");
  char *rank1b = replace(rank1, "9.75010481363281e-06", "0.5");
  char *two = malloc(len + strlen(rank1b) + 2);
  memcpy(two, b, len);
  two[len] = '\n';
  memcpy(two + len + 1, rank1b, strlen(rank1b) + 1);
  assert_int_equal(parse_exact(two, &m, NULL), 0);
  assert_dbl(m.prefix_queries, 64.0);
  assert_dbl(m.kv_usage, (9.75010481363281e-06 + 0.5) / 2);
  free(t1), free(t2), free(rank1), free(rank1b), free(two);
  free(b);
}

/* ---- synthetic scrapes ---- */

static void test_engine_ranks(void **state) {
  static const char text[] =
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 3\n"
      "vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 4\n"
      "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 10\n"
      "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 6\n"
      "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n"
      "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.6\n"
      "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 100\n"
      "vllm:prefix_cache_queries_total{engine=\"1\",model_name=\"m\"} 50\n"
      "vllm:prefix_cache_queries_created{engine=\"0\",model_name=\"m\"} 1.7e9\n"
      "vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 40\n"
      "vllm:prefix_cache_hits_total{engine=\"1\",model_name=\"m\"} 20\n"
      "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 1000\n"
      "vllm:prompt_tokens_total{engine=\"1\",model_name=\"m\"} 500\n"
      "vllm:prompt_tokens_created{engine=\"0\",model_name=\"m\"} 1.7e9\n"
      "vllm:generation_tokens_total{engine=\"0\",model_name=\"m\"} 70\n"
      "vllm:generation_tokens_total{engine=\"1\",model_name=\"m\"} 30\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 8\n"
      "vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} 1.5\n"
      "vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 8\n"
      "vllm:time_to_first_token_seconds_sum{engine=\"1\",model_name=\"m\"} 0.5\n"
      "vllm:time_to_first_token_seconds_count{engine=\"1\",model_name=\"m\"} 2\n"
      "vllm:time_to_first_token_seconds_created{engine=\"1\",model_name=\"m\"} 1.7e9\n"
      "vllm:cache_config_info{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"1000\"} 1.0\n"
      "vllm:cache_config_info{block_size=\"16\",engine=\"1\",num_gpu_blocks=\"1200\"} 1.0\n"
      "sglang:num_requests_waiting 99\n"
      "vllm:num_requests_waiting_other 99\n";
  struct runtime_metrics m;
  assert_int_equal(parse_exact(text, &m, NULL), 0);
  assert_int_equal(m.have, RT_ALL);
  assert_dbl(m.waiting, 7.0);
  assert_dbl(m.running, 16.0);
  assert_dbl(m.kv_usage, (0.2 + 0.6) / 2);
  assert_dbl(m.prefix_queries, 150.0);
  assert_dbl(m.prefix_hits, 60.0);
  assert_dbl(m.prompt_tokens, 1500.0);
  assert_dbl(m.generation_tokens, 100.0);
  assert_dbl(m.ttft_sum, 2.0);
  assert_dbl(m.ttft_count, 10.0);
  assert_int_equal(m.block_size, 16);
  assert_int_equal(m.num_gpu_blocks, 2200);
}

static void test_name_preference(void **state) {
  struct runtime_metrics m;
  /* new KV name wins in either order */
  assert_int_equal(parse_exact("vllm:gpu_cache_usage_perc 0.5\nvllm:kv_cache_usage_perc 0.25\n", &m, NULL),
                   0);
  assert_dbl(m.kv_usage, 0.25);
  assert_int_equal(parse_exact("vllm:kv_cache_usage_perc 0.25\nvllm:gpu_cache_usage_perc 0.5\n", &m, NULL),
                   0);
  assert_dbl(m.kv_usage, 0.25);
  assert_int_equal(m.have, RT_HAVE_KV);
  /* prefix: new > gpu_..._total > gpu_... (bare), per field, never summed across names */
  assert_int_equal(parse_exact("vllm:gpu_prefix_cache_queries_total 100\nvllm:prefix_cache_queries_total 40\n"
                               "vllm:gpu_prefix_cache_hits 9\nvllm:gpu_prefix_cache_hits_total 7\n"
                               "vllm:gpu_prefix_cache_queries 1000\n",
                               &m, NULL),
                   0);
  assert_dbl(m.prefix_queries, 40.0);
  assert_dbl(m.prefix_hits, 7.0);
  assert_int_equal(m.have, RT_HAVE_PREFIX);
  assert_int_equal(parse_exact("vllm:gpu_prefix_cache_queries 11\nvllm:gpu_prefix_cache_hits 3\n", &m, NULL),
                   0);
  assert_dbl(m.prefix_queries, 11.0);
  assert_dbl(m.prefix_hits, 3.0);
  assert_int_equal(m.have, RT_HAVE_PREFIX);
  /* half a pair is kept but not flagged */
  assert_int_equal(parse_exact("vllm:prefix_cache_queries_total 5\nvllm:prompt_tokens_total 8\n"
                               "vllm:time_to_first_token_seconds_count 2\n",
                               &m, NULL),
                   0);
  assert_int_equal(m.have, 0);
  assert_dbl(m.prefix_queries, 5.0);
  assert_dbl(m.prompt_tokens, 8.0);
  assert_dbl(m.ttft_count, 2.0);
}

static void test_cache_config_and_odd_values(void **state) {
  struct runtime_metrics m;
  /* before profiling num_gpu_blocks may be "None": no capacity */
  assert_int_equal(
      parse_exact("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"None\"} 1\n", &m, NULL), 0);
  assert_int_equal(m.have, 0);
  assert_int_equal(m.block_size, 16);
  assert_int_equal(m.num_gpu_blocks, 0);
  assert_int_equal(parse_exact("vllm:cache_config_info{block_size=\"0\",num_gpu_blocks=\"5\"} 1\n", &m, NULL),
                   0);
  assert_int_equal(m.have, 0);
  assert_int_equal(
      parse_exact("vllm:cache_config_info{num_gpu_blocks=\"5\"} 1\n"
                  "vllm:cache_config_info{block_size=\"32\",num_gpu_blocks=\"-1\"} 1\n"
                  "vllm:cache_config_info{block_size=\"64\",num_gpu_blocks=\"18446744073709551615\"} 1\n",
                  &m, NULL),
      0);
  assert_int_equal(m.have, RT_HAVE_CACHE_CONFIG);
  assert_int_equal(m.block_size, 32);
  assert_int_equal(m.num_gpu_blocks, 5);
  /* huge block counts saturate instead of overflowing */
  assert_int_equal(
      parse_exact("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"9223372036854775807\"} 1\n"
                  "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"9223372036854775807\"} 1\n",
                  &m, NULL),
      0);
  assert_int_equal(m.num_gpu_blocks, INT64_MAX);
  /* NaN and infinite samples count as absent */
  assert_int_equal(parse_exact("vllm:num_requests_waiting NaN\nvllm:num_requests_running +Inf\n"
                               "vllm:kv_cache_usage_perc NaN\nvllm:gpu_cache_usage_perc 0.75\n",
                               &m, NULL),
                   0);
  assert_int_equal(m.have, RT_HAVE_KV);
  assert_dbl(m.kv_usage, 0.75);
  assert_dbl(m.waiting, 0.0);
  /* nothing from vLLM at all */
  assert_int_equal(parse_exact("", &m, NULL), 0);
  assert_int_equal(m.have, 0);
  assert_int_equal(parse_exact("# only a comment\nother_metric 4\n", &m, NULL), 0);
  assert_int_equal(m.have, 0);
}

static void test_malformed_metrics(void **state) {
  struct runtime_metrics m;
  struct prom_error err;
  memset(&m, 0x5a, sizeof m);
  assert_int_equal(
      parse_exact("vllm:num_requests_waiting 3\n\nvllm:num_requests_running{x=\"1} 2\n", &m, &err),
      IM_EPARSE);
  assert_int_equal(err.line, 3);
  assert_int_equal(m.have, 0); /* zeroed on error, even though line 1 was fine */
  assert_dbl(m.waiting, 0.0);
  assert_int_equal(parse_exact("vllm:num_requests_waiting three\n", &m, NULL), IM_EPARSE);
}

/* ---- /v1/models ---- */

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vllm_fixture),
      cmocka_unit_test(test_vllm_v1_fixture),
      cmocka_unit_test(test_engine_ranks),
      cmocka_unit_test(test_name_preference),
      cmocka_unit_test(test_cache_config_and_odd_values),
      cmocka_unit_test(test_malformed_metrics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
