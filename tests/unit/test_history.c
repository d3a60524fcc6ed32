/* The dashboard's history (api/history.c): the ring, what one sample records, ?since, slot reuse, the
 * embedded dashboard's lookup (api/ui.c) and the /ui routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/history.h"
#include "api/routes.h"
#include "net/http_req.h"
#include "api/ui.h"

static void test_ring_keeps_the_newest_rows_oldest_first(void **state) {
  struct history_ring r;
  history_ring_init(&r, 4, 2);
  assert_int_equal(r.n, 0);
  for (int i = 0; i < 10; i++) {
    float row[2] = {(float)i, (float)(100 + i)};
    history_ring_push(&r, row);
    assert_int_equal(r.n, i < 4 ? i + 1 : 4);
  }
  for (uint32_t i = 0; i < 4; i++) { /* rows 6..9 survive, in order */
    assert_true(history_ring_row(&r, i)[0] == (float)(6 + i));
    assert_true(history_ring_row(&r, i)[1] == (float)(106 + i));
  }
  history_ring_clear(&r);
  assert_int_equal(r.n, 0);
  float one[2] = {42, 43};
  history_ring_push(&r, one);
  assert_true(history_ring_row(&r, 0)[0] == 42.0f);
  history_ring_free(&r);
}

static json_t *history(struct history *h, struct store *s, int64_t since) {
  struct buf b = {0};
  history_json(h, s, since, &b);
  json_error_t je;
  json_t *j = json_loadb(b.base, b.len, JSON_REJECT_DUPLICATES, &je);
  if (!j) fail_msg("history_json is not JSON (%s): %.*s", je.text, (int)b.len, b.base);
  buf_free(&b);
  return j;
}

static json_t *col(json_t *obj, const char *name) {
  json_t *a = json_object_get(obj, name);
  assert_non_null(a);
  assert_true(json_is_array(a));
  return a;
}

static void test_samples_record_targets_and_traffic(void **state) {
  struct store s;
  store_init(&s, 64);
  int id = store_add_target(&s, "e0", "http://127.0.0.1:9000", "vllm");
  assert_int_equal(id, 0);
  struct target *t = &s.targets[0];
  struct route_metrics *m = calloc(1, sizeof *m);
  route_metrics_init(m);
  struct history *h = malloc(sizeof *h);
  history_init(h, s.cap);

  /* Second 0: never scraped (values unknown). Second 1: healthy, loaded; 10 requests, 2 of them 5xx, 1 429.
   */
  history_sample(h, &s, m, 0, 1000000);
  t->healthy = true;
  t->updated_ns = 1;
  t->load = (struct target_load){.waiting = 3,
                                 .running = 5,
                                 .kv_usage = 0.25,
                                 .prefix_queries = 100,
                                 .prefix_hits = 40,
                                 .ttft_p50 = 0.1,
                                 .ttft_p95 = 0.3,
                                 .gen_tps = 900,
                                 .prompt_tps = -1,
                                 .itl_p50 = -1,
                                 .itl_p95 = -1};
  for (int i = 0; i < 7; i++)
    route_metrics_count(m, "m", 200, "e0");
  route_metrics_count(m, "m", 502, "e0");
  route_metrics_count(m, "m", 503, "");
  route_metrics_count(m, "", 429, "");
  for (int i = 0; i < 7; i++)
    hist_observe(&m->ttft, 0.05);
  history_sample(h, &s, m, 4, 1001000);
  /* Second 2: 200 more prefix queries, 150 hits; the runtime reports no KV use (unknown). */
  t->load.prefix_queries = 300, t->load.prefix_hits = 190, t->load.kv_usage = -1;
  history_sample(h, &s, m, 0, 1002000);

  json_t *j = history(h, &s, 0);
  assert_int_equal(json_integer_value(json_object_get(j, "end_ms")), 1002000);
  json_t *node = json_object_get(j, "node");
  assert_int_equal(json_integer_value(json_object_get(node, "n")), 3);
  assert_int_equal(json_number_value(json_array_get(col(node, "reqs_s"), 0)), 0);
  assert_int_equal(json_number_value(json_array_get(col(node, "reqs_s"), 1)), 10);
  assert_int_equal(json_number_value(json_array_get(col(node, "errors_s"), 1)), 2);
  assert_int_equal(json_number_value(json_array_get(col(node, "rejected_s"), 1)), 1);
  assert_int_equal(json_number_value(json_array_get(col(node, "reqs_s"), 2)), 0);
  assert_int_equal(json_number_value(json_array_get(col(node, "inflight"), 1)), 4);
  double p50 = json_number_value(json_array_get(col(node, "ttft_p50"), 1));
  assert_true(p50 > 0.02 && p50 <= 0.05);                              /* within the bucket of 0.05 */
  assert_true(json_is_null(json_array_get(col(node, "ttft_p50"), 0))); /* no request in its window */

  json_t *tg = json_array_get(json_object_get(j, "targets"), 0);
  assert_string_equal(json_string_value(json_object_get(tg, "name")), "e0");
  assert_int_equal(json_integer_value(json_object_get(tg, "n")), 3);
  assert_int_equal(json_number_value(json_array_get(col(tg, "healthy"), 0)), 0);
  assert_true(json_is_null(json_array_get(col(tg, "waiting"), 0)));
  assert_int_equal(json_number_value(json_array_get(col(tg, "healthy"), 1)), 1);
  assert_int_equal(json_number_value(json_array_get(col(tg, "waiting"), 1)), 3);
  assert_int_equal(json_number_value(json_array_get(col(tg, "running"), 1)), 5);
  assert_true(fabs(json_number_value(json_array_get(col(tg, "kv"), 1)) - 0.25) < 1e-6);
  assert_true(json_is_null(json_array_get(col(tg, "kv"), 2)));
  assert_true(fabs(json_number_value(json_array_get(col(tg, "prefix_hit"), 2)) - 0.75) < 1e-6);
  assert_int_equal(json_number_value(json_array_get(col(tg, "gen_tps"), 1)), 900);
  assert_int_equal(json_number_value(json_array_get(col(tg, "routed_s"), 1)), 8); /* 7 + the 502 */
  json_decref(j);

  /* ?since: only what is newer. */
  j = history(h, &s, 1001000);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "node"), "n")), 1);
  assert_int_equal(json_array_size(col(json_object_get(j, "node"), "reqs_s")), 1);
  json_decref(j);
  j = history(h, &s, 1002000);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "node"), "n")), 0);
  json_decref(j);

  /* A slot reused by another target starts a fresh ring. */
  str_copy(t->name, sizeof t->name, "other");
  history_sample(h, &s, m, 0, 1003000);
  j = history(h, &s, 0);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "n")),
                   1);
  json_decref(j);

  /* 15 minutes at most; the memory is the README's figure: about 32 KB per target, the same for the node. */
  for (int i = 0; i < HISTORY_SECONDS + 50; i++)
    history_sample(h, &s, m, 0, 1004000 + 1000 * (int64_t)i);
  j = history(h, &s, 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "node"), "n")), HISTORY_SECONDS);
  json_decref(j);
  size_t bytes = history_bytes(h);
  assert_true(bytes > 2 * HISTORY_SECONDS * 8 * sizeof(float) && bytes < 80 * 1024);

  history_free(h);
  free(h);
  free(m);
  store_free(&s);
}

static void test_dashboard_assets_are_embedded(void **state) {
  const struct ui_asset *a = ui_asset_find("/ui/", 4);
  assert_non_null(a);
  assert_string_equal(a->path, "/ui/index.html");
  assert_true(strncmp(a->content_type, "text/html", 9) == 0);
  assert_true(a->gz_len > 0 && a->gz_len < a->raw_len);
  assert_true(a->etag[0] == '"' && a->etag[strlen(a->etag) - 1] == '"');
  assert_non_null(ui_asset_find("/ui/app.js", 10));
  assert_non_null(ui_asset_find("/ui/vendor/uPlot.esm.js", 23));
  assert_null(ui_asset_find("/ui/nope.js", 11));
  assert_null(ui_asset_find("/ui/../README.md", 16));
  /* The page is open; its data is a view. */
  bool known;
  assert_int_equal(api_route_find(HTTP_M_GET, slice_cstr("/ui/app.js"), &known)->need, API_OPEN);
  assert_int_equal(api_route_find(HTTP_M_GET, slice_cstr("/ui/"), &known)->op, API_OP_UI);
  assert_int_equal(api_route_find(HTTP_M_GET, slice_cstr("/"), &known)->op, API_OP_UI);
  assert_int_equal(api_route_find(HTTP_M_GET, slice_cstr("/v1/cluster/history"), &known)->need, API_VIEW);
  assert_null(api_route_find(HTTP_M_POST, slice_cstr("/ui/app.js"), &known));
  assert_true(known);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_keeps_the_newest_rows_oldest_first),
      cmocka_unit_test(test_samples_record_targets_and_traffic),
      cmocka_unit_test(test_dashboard_assets_are_embedded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
