/* Tests for the Prometheus text parser: every runtime fixture, then the edge cases of the format. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapter/prom.h"
#include "core/err.h"

/* exact comparison: the parser and the compiler both round the same decimal text to the nearest double */
#define assert_dbl(got, want)                                                                                \
  do {                                                                                                       \
    double got_ = (got), want_ = (want);                                                                     \
    if (!(got_ == want_)) fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                             \
  } while (0)

/* ---- helpers: copy every sample out of the callback so tests can look at them afterwards ---- */

#define REC_LABELS 16

struct rec {
  char name[128];
  int nlabels;
  char lname[REC_LABELS][64];
  char lval[REC_LABELS][160];   /* unescaped */
  struct slice raw[REC_LABELS]; /* raw value, pointing into the parsed text */
  double value;
  bool has_ts;
  int64_t ts_ms;
};

struct recs {
  struct rec *v;
  int n, cap;
};

static void copy_slice(char *dst, size_t cap, struct slice s) {
  size_t n = s.len < cap - 1 ? s.len : cap - 1;
  memcpy(dst, s.base, n);
  dst[n] = '\0';
}

static int collect_cb(const struct prom_sample *s, void *arg) {
  struct recs *r = arg;
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->v = realloc(r->v, (size_t)r->cap * sizeof *r->v);
    assert_non_null(r->v);
  }
  struct rec *x = &r->v[r->n++];
  memset(x, 0, sizeof *x);
  copy_slice(x->name, sizeof x->name, s->name);
  x->nlabels = s->nlabels;
  for (int i = 0; i < s->nlabels && i < REC_LABELS; i++) {
    copy_slice(x->lname[i], sizeof x->lname[i], s->labels[i].name);
    prom_label_unescape(s->labels[i].value, x->lval[i], sizeof x->lval[i]);
    x->raw[i] = s->labels[i].value;
  }
  x->value = s->value;
  x->has_ts = s->has_ts;
  x->ts_ms = s->ts_ms;
  return 0;
}

static const char *rec_label(const struct rec *x, const char *name) {
  for (int i = 0; i < x->nlabels && i < REC_LABELS; i++)
    if (strcmp(x->lname[i], name) == 0) return x->lval[i];
  return NULL;
}

/* find returns the first sample called name whose label lname equals lval (lname NULL: any). */
static const struct rec *find(const struct recs *r, const char *name, const char *lname, const char *lval) {
  for (int i = 0; i < r->n; i++) {
    if (strcmp(r->v[i].name, name) != 0) continue;
    if (lname) {
      const char *v = rec_label(&r->v[i], lname);
      if (!v || strcmp(v, lval) != 0) continue;
    }
    return &r->v[i];
  }
  fail_msg("no sample %s{%s=%s}", name, lname ? lname : "", lval ? lval : "");
  return NULL;
}

static int parse_str(const char *text, struct recs *r, struct prom_error *err) {
  /* exact-size heap copy without a NUL, so ASan catches any read past the end */
  size_t len = strlen(text);
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, text, len);
  int rc = prom_parse(copy, len, collect_cb, r, err);
  /* label raw slices would dangle: clear them */
  for (int i = 0; i < r->n; i++)
    memset(r->v[i].raw, 0, sizeof r->v[i].raw);
  free(copy);
  return rc;
}

static void recs_free(struct recs *r) {
  free(r->v);
  memset(r, 0, sizeof *r);
}

static void fixture_path(char *dst, size_t cap, const char *file) {
  const char *root = getenv("IM_SOURCE_DIR");
#ifdef IM_SOURCE_DIR
  if (!root || !*root) root = IM_SOURCE_DIR;
#endif
  if (!root) fail_msg("IM_SOURCE_DIR is not set");
  int n = snprintf(dst, cap, "%s/../shared/fixtures/runtime-metrics/%s", root, file);
  assert_true(n > 0 && (size_t)n < cap);
}

/* load_fixture returns an exact-size heap copy (no NUL terminator) of a fixture. */
static char *load_fixture(const char *file, size_t *len) {
  char path[4096];
  fixture_path(path, sizeof path, file);
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long sz = ftell(f);
  assert_true(sz > 0);
  rewind(f);
  char *b = malloc((size_t)sz);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  *len = (size_t)sz;
  return b;
}

/* count_sample_lines counts lines that are neither blank nor comments: an independent sample count. */
static int count_sample_lines(const char *b, size_t len) {
  int n = 0;
  size_t i = 0;
  while (i < len) {
    while (i < len && (b[i] == ' ' || b[i] == '\t'))
      i++;
    if (i < len && b[i] != '#' && b[i] != '\n' && b[i] != '\r') n++;
    while (i < len && b[i] != '\n')
      i++;
    i++;
  }
  return n;
}

/* parse_fixture parses one fixture into r (fresh) and checks it parsed cleanly and completely. */
static void parse_fixture(const char *file, struct recs *r, int want_samples) {
  size_t len;
  char *b = load_fixture(file, &len);
  struct prom_error err;
  memset(r, 0, sizeof *r);
  int rc = prom_parse(b, len, collect_cb, r, &err);
  if (rc != 0) fail_msg("%s: rc %d line %d: %s", file, rc, err.line, err.msg);
  assert_int_equal(r->n, count_sample_lines(b, len));
  if (want_samples >= 0) assert_int_equal(r->n, want_samples);
  for (int i = 0; i < r->n; i++)
    memset(r->v[i].raw, 0, sizeof r->v[i].raw);
  free(b);
}

/* ---- fixtures ---- */

static void test_every_fixture_parses(void **state) {
  char dirpath[4096];
  fixture_path(dirpath, sizeof dirpath, "");
  DIR *d = opendir(dirpath);
  if (!d) fail_msg("cannot open %s", dirpath);
  int files = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t n = strlen(de->d_name);
    static const char suffix[] = ".metrics.txt";
    if (n <= sizeof suffix - 1 || strcmp(de->d_name + n - (sizeof suffix - 1), suffix) != 0) continue;
    struct recs r;
    parse_fixture(de->d_name, &r, -1);
    assert_true(r.n > 0);
    for (int i = 0; i < r.n; i++)
      assert_true(r.v[i].name[0] != '\0');
    recs_free(&r);
    files++;
  }
  closedir(d);
  assert_true(files >= 9);
}

static void test_fixture_vllm(void **state) {
  struct recs r;
  parse_fixture("vllm.metrics.txt", &r, 185);
  const struct rec *x = find(&r, "vllm:cache_config_info", NULL, NULL);
  assert_int_equal(x->nlabels, 10);
  assert_string_equal(rec_label(x, "num_gpu_blocks"), "7281");
  assert_string_equal(rec_label(x, "block_size"), "16");
  assert_string_equal(rec_label(x, "swap_space_bytes"), "4294967296");
  assert_dbl(x->value, 1.0);
  assert_false(x->has_ts);
  x = find(&r, "python_info", NULL, NULL);
  assert_string_equal(rec_label(x, "version"), "3.10.12");
  assert_dbl(find(&r, "process_max_fds", NULL, NULL)->value, 1048576.0);
  assert_int_equal(find(&r, "process_max_fds", NULL, NULL)->nlabels, 0);
  assert_dbl(find(&r, "process_cpu_seconds_total", NULL, NULL)->value, 10.950000000000001);
  assert_dbl(find(&r, "python_gc_objects_collected_total", "generation", "1")->value, 4936.0);
  x = find(&r, "vllm:time_to_first_token_seconds_bucket", "le", "+Inf");
  assert_dbl(x->value, 1.0);
  assert_string_equal(rec_label(x, "model_name"), "facebook/opt-125m");
  assert_dbl(find(&r, "vllm:time_to_first_token_seconds_bucket", "le", "0.25")->value, 0.0);
  assert_dbl(find(&r, "vllm:time_to_first_token_seconds_sum", NULL, NULL)->value, 0.31326723098754883);
  /* the file has no final newline: the last sample must still arrive */
  x = &r.v[r.n - 1];
  assert_string_equal(x->name, "vllm:request_prefill_kv_computed_tokens_sum");
  assert_dbl(x->value, 53.0);
  recs_free(&r);
}

static void test_fixture_vllm_v1(void **state) {
  struct recs r;
  parse_fixture("vllm-v1.issue617.metrics.txt", &r, 5);
  const struct rec *x = find(&r, "vllm:gpu_prefix_cache_queries_created", NULL, NULL);
  assert_dbl(x->value, 1.7537953269352946e+09);
  assert_string_equal(rec_label(x, "engine"), "0");
  assert_string_equal(rec_label(x, "model_name"), "zai-org/GLM-4.5");
  assert_dbl(find(&r, "vllm:kv_cache_usage_perc", "engine", "0")->value, 9.75010481363281e-06);
  assert_dbl(find(&r, "vllm:prefix_cache_queries_total", NULL, NULL)->value, 32.0);
  recs_free(&r);
}

static void test_fixture_sglang(void **state) {
  struct recs r;
  parse_fixture("sglang.metrics.txt", &r, 91);
  const struct rec *x = find(&r, "sglang:num_queue_reqs", NULL, NULL);
  assert_dbl(x->value, 2826.0);
  assert_string_equal(rec_label(x, "model_name"), "meta-llama/Llama-3.1-8B-Instruct");
  assert_dbl(find(&r, "sglang:prompt_tokens_total", NULL, NULL)->value, 8.128902e+06);
  assert_dbl(find(&r, "sglang:time_to_first_token_seconds_bucket", "le", "+Inf")->value, 11008.0);
  assert_dbl(find(&r, "sglang:time_to_first_token_seconds_sum", NULL, NULL)->value, 2.3518979474117756e+06);
  recs_free(&r);

  parse_fixture("sglang-datadog.metrics.txt", &r, 43);
  x = find(&r, "sglang:max_total_num_tokens", "tp_rank", "0");
  assert_dbl(x->value, 430839.0);
  assert_dbl(find(&r, "sglang:gen_throughput", NULL, NULL)->value, 425.5);
  assert_dbl(find(&r, "sglang:token_usage", NULL, NULL)->value, 0.25);
  x = find(&r, "sglang:http_requests_active", NULL, NULL);
  assert_string_equal(rec_label(x, "endpoint"), "/generate");
  assert_string_equal(rec_label(x, "method"), "POST");
  recs_free(&r);
}

static void test_fixture_tgi(void **state) {
  struct recs r;
  parse_fixture("tgi.metrics.txt", &r, 454);
  const struct rec *x = find(&r, "tgi_request_success", NULL, NULL);
  assert_dbl(x->value, 109.0);
  assert_int_equal(x->nlabels, 0);
  assert_dbl(find(&r, "tgi_request_failure", "err", "validation")->value, 2.0);
  assert_dbl(find(&r, "tgi_batch_inference_success", "method", "decode")->value, 1509.0);
  assert_dbl(find(&r, "tgi_request_skipped_tokens_count", NULL, NULL)->value, 3423.0);
  find(&r, "tgi_request_skipped_tokens", "quantile", "0.999");
  assert_dbl(find(&r, "tgi_request_queue_duration_sum", NULL, NULL)->value, 295.275961956);
  recs_free(&r);
}

static void test_fixture_triton_llamacpp(void **state) {
  struct recs r;
  parse_fixture("triton.metrics.txt", &r, 97);
  const struct rec *x = find(&r, "nv_inference_request_duration_us", "model", "densenet_onnx");
  assert_dbl(x->value, 1327965.0);
  assert_string_equal(rec_label(x, "version"), "1");
  assert_dbl(find(&r, "nv_gpu_memory_total_bytes", NULL, NULL)->value, 16106127360.0);
  recs_free(&r);

  parse_fixture("llamacpp.metrics.txt", &r, 4);
  assert_dbl(find(&r, "llamacpp:tokens_predicted_total", NULL, NULL)->value, 673.0);
  assert_dbl(find(&r, "llamacpp:prompt_seconds_total", NULL, NULL)->value, 8.168);
  recs_free(&r);
}

static void test_fixture_dcgm(void **state) {
  struct recs r;
  parse_fixture("dcgm-exporter.metrics.txt", &r, 20);
  const struct rec *x = find(&r, "DCGM_FI_DEV_POWER_USAGE", NULL, NULL);
  assert_dbl(x->value, 8.969);
  assert_string_equal(rec_label(x, "modelName"), "Tesla T4");
  assert_string_equal(rec_label(x, "UUID"), "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e");
  x = find(&r, "DCGM_FI_DEV_FB_TOTAL", NULL, NULL);
  assert_int_equal(x->nlabels, 13);
  assert_dbl(x->value, 15109.0);
  assert_string_equal(rec_label(x, "DCGM_FI_NVML_VERSION"), "11.470.182.03");
  recs_free(&r);

  parse_fixture("dcgm-exporter-mig.metrics.txt", &r, 4);
  x = find(&r, "DCGM_FI_DEV_FB_FREE", "gpu", "2");
  assert_dbl(x->value, 2207.0);
  assert_string_equal(rec_label(x, "GPU_I_PROFILE"), "1g.6gb");
  assert_string_equal(rec_label(x, "pod"), "triton-server-f7cb5d77-95xcf");
  assert_dbl(find(&r, "DCGM_FI_DEV_FB_FREE", "gpu", "1")->value, 11275.0);
  recs_free(&r);
}

/* ---- edge cases ---- */

static void test_escapes(void **state) {
  struct recs r = {0};
  assert_int_equal(parse_str("m{a=\"x\\\"y\\\\z\\nw\",b=\"}{,= #\"} 1\n", &r, NULL), 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(rec_label(&r.v[0], "a"), "x\"y\\z\nw");
  assert_string_equal(rec_label(&r.v[0], "b"), "}{,= #");
  recs_free(&r);

  /* raw values are the bytes between the quotes, escapes kept */
  const char text[] = "m{a=\"q\\\"\"} 1";
  char *copy = malloc(sizeof text - 1);
  memcpy(copy, text, sizeof text - 1);
  struct recs r2 = {0};
  assert_int_equal(prom_parse(copy, sizeof text - 1, collect_cb, &r2, NULL), 0);
  assert_int_equal(r2.v[0].raw[0].len, 3);
  assert_memory_equal(r2.v[0].raw[0].base, "q\\\"", 3);
  recs_free(&r2);
  free(copy);
}

static void test_unescape(void **state) {
  char b[8];
  assert_int_equal(prom_label_unescape(SLICE_LIT("a\\\\b\\\"c\\nd"), b, sizeof b), 7);
  assert_string_equal(b, "a\\b\"c\nd");
  /* truncation to cap-1 and NUL-termination */
  assert_int_equal(prom_label_unescape(SLICE_LIT("abcdefghij"), b, 4), 3);
  assert_string_equal(b, "abc");
  assert_int_equal(prom_label_unescape(SLICE_LIT("abc"), b, 1), 0);
  assert_string_equal(b, "");
  b[0] = 'X';
  assert_int_equal(prom_label_unescape(SLICE_LIT("abc"), b, 0), 0);
  assert_int_equal(b[0], 'X');
  /* unknown escapes and a lone trailing backslash are copied as they are */
  assert_int_equal(prom_label_unescape(SLICE_LIT("\\t\\"), b, sizeof b), 3);
  assert_string_equal(b, "\\t\\");
}

static void test_special_values(void **state) {
  struct recs r = {0};
  assert_int_equal(parse_str("a NaN\nb +Inf\nc -Inf\nd 1.5e-3\ne -2E+10\nf 0\ng Inf\nh .5\ni 1e-320\n"
                             "j -0.0\nk 12345678901234567890\n",
                             &r, NULL),
                   0);
  assert_int_equal(r.n, 11);
  assert_true(isnan(r.v[0].value));
  assert_true(isinf(r.v[1].value) && r.v[1].value > 0);
  assert_true(isinf(r.v[2].value) && r.v[2].value < 0);
  assert_dbl(r.v[3].value, 0.0015);
  assert_dbl(r.v[4].value, -2e10);
  assert_dbl(r.v[5].value, 0.0);
  assert_true(isinf(r.v[6].value) && r.v[6].value > 0);
  assert_dbl(r.v[7].value, 0.5);
  assert_true(r.v[8].value > 0 && r.v[8].value < 1e-300); /* underflow to a subnormal is fine */
  assert_true(r.v[9].value == 0.0 && signbit(r.v[9].value));
  assert_dbl(r.v[10].value, 12345678901234567890.0);
  recs_free(&r);
}

static void test_timestamps(void **state) {
  struct recs r = {0};
  assert_int_equal(parse_str("a 1 1700000000000\nb{x=\"y\"} 2 -5\nc 3\nd 4 +7\ne 5 9223372036854775807\n"
                             "f 6 -9223372036854775808\n",
                             &r, NULL),
                   0);
  assert_int_equal(r.n, 6);
  assert_true(r.v[0].has_ts);
  assert_int_equal(r.v[0].ts_ms, 1700000000000LL);
  assert_true(r.v[1].has_ts);
  assert_int_equal(r.v[1].ts_ms, -5);
  assert_false(r.v[2].has_ts);
  assert_int_equal(r.v[3].ts_ms, 7);
  assert_int_equal(r.v[4].ts_ms, INT64_MAX);
  assert_int_equal(r.v[5].ts_ms, INT64_MIN);
  recs_free(&r);
}

static void test_crlf_and_blanks(void **state) {
  struct recs r = {0};
  assert_int_equal(
      parse_str("# HELP a x\r\n# TYPE a gauge\r\na 1\r\n\r\n  \t \r\nb{x=\"y\"} 2 10\r\n", &r, NULL), 0);
  assert_int_equal(r.n, 2);
  assert_dbl(r.v[0].value, 1.0);
  assert_string_equal(rec_label(&r.v[1], "x"), "y");
  assert_int_equal(r.v[1].ts_ms, 10);
  recs_free(&r);

  /* blanks and tabs between every token */
  assert_int_equal(parse_str("  m \t{ a = \"1\" ,\tb=\"2\" }  \t 3  \t 99 \t", &r, NULL), 0);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.v[0].name, "m");
  assert_int_equal(r.v[0].nlabels, 2);
  assert_string_equal(rec_label(&r.v[0], "b"), "2");
  assert_dbl(r.v[0].value, 3.0);
  assert_int_equal(r.v[0].ts_ms, 99);
  recs_free(&r);

  /* empty input, only comments */
  assert_int_equal(parse_str("", &r, NULL), 0);
  assert_int_equal(parse_str("\n\n# just a comment\n#\n# EOF\n", &r, NULL), 0);
  assert_int_equal(r.n, 0);
  assert_int_equal(prom_parse(NULL, 0, collect_cb, &r, NULL), 0);
}

static void test_label_sets(void **state) {
  struct recs r = {0};
  assert_int_equal(
      parse_str("m{a=\"1\",} 1\nn{} 2\no{a=\"\"} 3\nvllm:x:y_z{le=\"+Inf\"}4\n_p:q 5\n", &r, NULL), 0);
  assert_int_equal(r.n, 5);
  assert_int_equal(r.v[0].nlabels, 1);
  assert_string_equal(rec_label(&r.v[0], "a"), "1");
  assert_int_equal(r.v[1].nlabels, 0);
  assert_string_equal(rec_label(&r.v[2], "a"), "");
  assert_string_equal(r.v[3].name, "vllm:x:y_z");
  assert_dbl(r.v[3].value, 4.0);
  assert_string_equal(r.v[4].name, "_p:q");
  recs_free(&r);
}

struct get_ctx {
  int calls;
  bool found_a, found_zz;
  struct slice a;
};

static int get_cb(const struct prom_sample *s, void *arg) {
  struct get_ctx *c = arg;
  struct slice v = SLICE_LIT("untouched");
  c->calls++;
  c->found_a = prom_label_get(s, "a", &c->a);
  c->found_zz = prom_label_get(s, "zz", &v);
  assert_true(slice_eqz(v, "untouched"));
  return 0;
}

static void test_label_get(void **state) {
  static const char text[] = "m{b=\"2\",a=\"x\\\"y\"} 1";
  struct get_ctx c = {0};
  assert_int_equal(prom_parse(text, sizeof text - 1, get_cb, &c, NULL), 0);
  assert_int_equal(c.calls, 1);
  assert_true(c.found_a);
  assert_false(c.found_zz);
  assert_true(slice_eqz(c.a, "x\\\"y"));
  assert_ptr_equal(c.a.base, text + 11); /* zero-copy: points into the input */
}

static int stop_cb(const struct prom_sample *s, void *arg) {
  int *calls = arg;
  return ++*calls == 2 ? 7 : 0;
}

static void test_callback_stops(void **state) {
  static const char text[] = "a 1\nb 2\nc 3\nthis is not valid\n";
  int calls = 0;
  assert_int_equal(prom_parse(text, sizeof text - 1, stop_cb, &calls, NULL), 7);
  assert_int_equal(calls, 2);
}

static void test_label_cap(void **state) {
  char text[PROM_MAX_LABELS * 16 + 64];
  size_t n = 0;
  struct recs r = {0};
  struct prom_error err;
  n += (size_t)snprintf(text + n, sizeof text - n, "m{");
  for (int i = 0; i < PROM_MAX_LABELS; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "l%d=\"%d\",", i, i);
  snprintf(text + n, sizeof text - n, "} 1");
  assert_int_equal(parse_str(text, &r, &err), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.v[0].nlabels, PROM_MAX_LABELS);
  recs_free(&r);
  /* one more label is too many */
  snprintf(text + n, sizeof text - n, "zz=\"x\"} 1");
  assert_int_equal(parse_str(text, &r, &err), IM_ETOOBIG);
  assert_int_equal(err.line, 1);
  assert_int_equal(r.n, 0);
}

/* expect_error parses text and checks the error code and the 1-based line it names. */
static void expect_error(const char *text, int code, int line) {
  struct recs r = {0};
  struct prom_error err;
  int rc = parse_str(text, &r, &err);
  if (rc != code || err.line != line)
    fail_msg("%s: want %d at line %d, got %d at line %d (%s)", text, code, line, rc, err.line, err.msg);
  assert_true(strlen(err.msg) > 0);
  recs_free(&r);
}

static void test_malformed(void **state) {
  expect_error("a 1\n\n# HELP x y\nb{c=\"d} 1\n", IM_EPARSE, 4); /* unterminated label value */
  expect_error("a 1\nb\n", IM_EPARSE, 2);                        /* missing value */
  expect_error("a 1\r\nb{} \r\n", IM_EPARSE, 2);                 /* missing value after {} */
  expect_error("1abc 1\n", IM_EPARSE, 1);                        /* name starts with a digit */
  expect_error("{a=\"b\"} 1\n", IM_EPARSE, 1);                   /* no metric name */
  expect_error("a-b 1\n", IM_EPARSE, 1);                         /* bad character in name */
  expect_error("a 1.2.3\n", IM_EPARSE, 1);                       /* bad value */
  expect_error("a abc\n", IM_EPARSE, 1);
  expect_error("a 0x\n", IM_EPARSE, 1);
  expect_error("a 1e999\n", IM_EPARSE, 1); /* overflow */
  expect_error("a  \t\n", IM_EPARSE, 1);
  expect_error("a 1 1.5\n", IM_EPARSE, 1);                  /* float timestamp */
  expect_error("a 1 99999999999999999999\n", IM_EPARSE, 1); /* timestamp overflow */
  expect_error("a 1 -\n", IM_EPARSE, 1);
  expect_error("a 1 2 3\n", IM_EPARSE, 1); /* junk after timestamp */
  expect_error("ok 1\na{b=\"1\" c=\"2\"} 1\n", IM_EPARSE, 2);
  expect_error("a{b=\"1\",,} 1\n", IM_EPARSE, 1);
  expect_error("a{,} 1\n", IM_EPARSE, 1);
  expect_error("a{b} 1\n", IM_EPARSE, 1);
  expect_error("a{b=1} 1\n", IM_EPARSE, 1);
  expect_error("a{1b=\"1\"} 1\n", IM_EPARSE, 1);
  expect_error("a{b:c=\"1\"} 1\n", IM_EPARSE, 1); /* no colon in label names */
  expect_error("a{b=\"1\"\n} 1\n", IM_EPARSE, 1);
  expect_error("a{b=\"1\",b=\"2\"} 1\n", IM_EPARSE, 1); /* duplicate label */
  expect_error("a{b=\"\\t\"} 1\n", IM_EPARSE, 1);       /* invalid escape */
  expect_error("a{b=\"x\\", IM_EPARSE, 1);              /* backslash at the very end */
  expect_error("a{", IM_EPARSE, 1);
  expect_error("a{b=\"1\"", IM_EPARSE, 1);
  expect_error("a 1\rb 2\n", IM_EPARSE, 1); /* a lone CR is not a line end */
  expect_error("# TYPE\n", IM_EPARSE, 1);
  expect_error("x 1\n# TYPE a\n", IM_EPARSE, 2);
  expect_error("# TYPE a gauges\n", IM_EPARSE, 1);
  expect_error("# TYPE 1a gauge\n", IM_EPARSE, 1);
  expect_error("# TYPE a gauge extra\n", IM_EPARSE, 1);
  expect_error("# TYPE a-b gauge\n", IM_EPARSE, 1);
  /* comments that are not TYPE are not checked */
  struct recs r = {0};
  assert_int_equal(
      parse_str("# HELP\n# HELP 1bad whatever\n#TYPE a counter\n# anything { \" \\\na 1\n", &r, NULL), 0);
  assert_int_equal(r.n, 1);
  recs_free(&r);
}

static void test_error_detail(void **state) {
  struct recs r = {0};
  struct prom_error err;
  assert_int_equal(parse_str("a 1\nb 2\n\n  c{x=\"1\" y=\"2\"} 3\n", &r, &err), IM_EPARSE);
  assert_int_equal(err.line, 4);
  assert_non_null(strstr(err.msg, "col 11"));
  assert_int_equal(r.n, 2); /* the samples before the bad line were delivered */
  recs_free(&r);
  /* a successful parse clears err */
  assert_int_equal(parse_str("a 1\n", &r, &err), 0);
  assert_int_equal(err.line, 0);
  assert_string_equal(err.msg, "");
  recs_free(&r);
}

static void test_nul_bytes(void **state) {
  static const char text[] = "a 1\nb\0c 2\n";
  static const char text2[] = "a{x=\"p\0q\"} 1\n";
  static const char text3[] = "a 1\0\n";
  struct recs r = {0};
  struct prom_error err;
  assert_int_equal(prom_parse(text, sizeof text - 1, collect_cb, &r, &err), IM_EPARSE);
  assert_int_equal(err.line, 2);
  recs_free(&r);
  /* a NUL inside a quoted label value is just a byte */
  assert_int_equal(prom_parse(text2, sizeof text2 - 1, collect_cb, &r, &err), 0);
  assert_int_equal(r.n, 1);
  recs_free(&r);
  assert_int_equal(prom_parse(text3, sizeof text3 - 1, collect_cb, &r, &err), IM_EPARSE);
  recs_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_fixture_parses),
      cmocka_unit_test(test_fixture_vllm),
      cmocka_unit_test(test_fixture_vllm_v1),
      cmocka_unit_test(test_fixture_sglang),
      cmocka_unit_test(test_fixture_tgi),
      cmocka_unit_test(test_fixture_triton_llamacpp),
      cmocka_unit_test(test_fixture_dcgm),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_unescape),
      cmocka_unit_test(test_special_values),
      cmocka_unit_test(test_timestamps),
      cmocka_unit_test(test_crlf_and_blanks),
      cmocka_unit_test(test_label_sets),
      cmocka_unit_test(test_label_get),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_label_cap),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_error_detail),
      cmocka_unit_test(test_nul_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
