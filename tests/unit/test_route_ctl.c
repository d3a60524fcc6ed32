/* Control-plane routing constraints: FSM drains and pins filter candidates (zones included), policies reach the
 * router, tenants may be limited to models; tenant key hashes agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/fsm.h"
#include "route/route_ctl.h"
#include "route/tenants.h"

static void put(struct fsm *f, uint64_t idx, enum fsm_op op, enum fsm_kind k, const char *key,
                const char *value) {
  struct buf b = {0};
  char err[200], id[32];
  snprintf(id, sizeof id, "c%llu", (unsigned long long)idx);
  assert_int_equal(fsm_cmd_encode(&b, id, op, k, key, value, 1700000000, err, sizeof err), 0);
  struct fsm_result res;
  fsm_apply(f, idx, b.base, b.len, &res);
  assert_int_equal(res.status, 0);
  buf_free(&b);
}

/* Targets: 0 local (node "self"), 1 on node a, 2 on node b. All serve "m". */
static void setup_store(struct store *s) {
  store_init(s, 64);
  static const uint8_t ida[32] = {1}, idb[32] = {2};
  bool changed;
  const char *models[] = {"m"};
  assert_int_equal(store_add_target(s, "own", "http://127.0.0.1:1", "vllm"), 0);
  assert_int_equal(store_add_remote(s, "a", ida, "ea", "127.0.0.1:2", "vllm", &changed), 1);
  assert_int_equal(store_add_remote(s, "b", idb, "eb", "127.0.0.1:3", "vllm", &changed), 2);
  for (int i = 0; i < 3; i++)
    store_set_models(s, i, models, 1);
}

static int filter(struct route_ctl *c, const struct store *s, const char *model, int *ids) {
  for (int i = 0; i < 3; i++)
    ids[i] = i;
  return route_ctl_filter(c, s, slice_cstr(model), ids, 3);
}

static void test_drain_and_pin(void **state) {
  (void)state;
  static struct store s;
  setup_store(&s);
  struct fsm *f = fsm_new();
  struct route_ctl c;
  route_ctl_init(&c, "self", "z1");
  int ids[3];
  assert_int_equal(filter(&c, &s, "m", ids), 3); /* nothing configured */

  put(f, 1, FSM_OP_PUT, FSM_DRAIN, "a", "{\"reason\":\"x\"}");
  route_ctl_sync(&c, f);
  assert_int_equal(filter(&c, &s, "m", ids), 2);
  assert_int_equal(ids[0], 0);
  assert_int_equal(ids[1], 2);

  put(f, 2, FSM_OP_PUT, FSM_DRAIN, "self", "{}"); /* draining this node removes its own targets */
  route_ctl_sync(&c, f);
  assert_int_equal(filter(&c, &s, "m", ids), 1);
  assert_int_equal(ids[0], 2);

  put(f, 3, FSM_OP_DELETE, FSM_DRAIN, "a", NULL);
  put(f, 4, FSM_OP_DELETE, FSM_DRAIN, "self", NULL);
  put(f, 5, FSM_OP_PUT, FSM_PIN, "m", "{\"nodes\":[\"b\"]}");
  route_ctl_sync(&c, f);
  assert_int_equal(filter(&c, &s, "m", ids), 1);
  assert_int_equal(ids[0], 2);
  assert_int_equal(filter(&c, &s, "other", ids), 3); /* another model is not pinned */

  put(f, 6, FSM_OP_PUT, FSM_PIN, "m", "{\"zones\":[\"z1\"]}"); /* this node is in z1 */
  route_ctl_sync(&c, f);
  assert_int_equal(filter(&c, &s, "m", ids), 1);
  assert_int_equal(ids[0], 0);
  store_set_zone(&s, 2, "z1"); /* node b announces zone z1: its target is allowed from then on */
  assert_int_equal(filter(&c, &s, "m", ids), 2);
  assert_int_equal(ids[1], 2);
  store_set_zone(&s, 2, "z2"); /* ... and not after it moved */
  assert_int_equal(filter(&c, &s, "m", ids), 1);

  /* a target added after the sync is judged too */
  static const uint8_t idb[32] = {2};
  bool changed;
  const char *models[] = {"m"};
  put(f, 7, FSM_OP_PUT, FSM_PIN, "m", "{\"nodes\":[\"b\"]}");
  route_ctl_sync(&c, f);
  assert_int_equal(store_add_remote(&s, "b", idb, "eb2", "127.0.0.1:4", "vllm", &changed), 3);
  store_set_models(&s, 3, models, 1);
  int ids4[4] = {0, 1, 2, 3};
  assert_int_equal(route_ctl_filter(&c, &s, slice_cstr("m"), ids4, 4), 2);
  assert_int_equal(ids4[0], 2);
  assert_int_equal(ids4[1], 3);

  route_ctl_free(&c);
  fsm_free(f);
  store_free(&s);
}

static void test_prices(void **state) {
  (void)state;
  struct fsm *f = fsm_new();
  struct route_ctl c;
  route_ctl_init(&c, "self", "");
  assert_null(route_ctl_price(&c, "m"));
  const char *models[] = {"m3", "m1", "meta-llama/Llama-3", "m2"};
  for (int i = 0; i < 4; i++) put(f, (uint64_t)i + 1, FSM_OP_PUT, FSM_PRICE, models[i], "{\"prompt_per_mtok\":0.5}");
  put(f, 5, FSM_OP_PUT, FSM_PRICE, "m2", "{\"prompt_per_mtok\":2,\"completion_per_mtok\":3,\"currency\":\"EUR\"}");
  route_ctl_sync(&c, f);
  for (int i = 0; i < 4; i++) assert_non_null(route_ctl_price(&c, models[i]));
  assert_true(route_ctl_price(&c, "m2")->completion_per_mtok == 3);
  assert_string_equal(route_ctl_price(&c, "m2")->currency, "EUR");
  assert_null(route_ctl_price(&c, "m0"));
  assert_null(route_ctl_price(&c, "zzz"));
  put(f, 6, FSM_OP_DELETE, FSM_PRICE, "m2", NULL);
  route_ctl_sync(&c, f);
  assert_null(route_ctl_price(&c, "m2"));
  route_ctl_free(&c);
  fsm_free(f);
}

static void test_policies(void **state) {
  (void)state;
  struct fsm *f = fsm_new();
  struct route_ctl c;
  route_ctl_init(&c, "self", "");
  assert_null(route_ctl_policy(&c, slice_cstr("m")));
  put(f, 1, FSM_OP_PUT, FSM_POLICY, "m",
      "{\"strategy\":\"round-robin\",\"slo_class\":\"latency\",\"max_queue\":3,\"hedge\":true,"
      "\"hedge_delay_ms\":150,\"hedge_max_pct\":5,\"fallbacks\":[\"a\",\"b\"]}");
  put(f, 2, FSM_OP_PUT, FSM_POLICY, "n", "{\"hedge\":false}");
  put(f, 3, FSM_OP_PUT, FSM_POLICY, "p", "{\"hedge\":true}");
  put(f, 4, FSM_OP_PUT, FSM_POLICY, "o", "{}");
  route_ctl_sync(&c, f);
  struct route_ctl_policy *p = route_ctl_policy(&c, slice_cstr("m"));
  assert_non_null(p);
  assert_string_equal(p->strategy, "round-robin");
  assert_string_equal(p->slo, "latency");
  assert_int_equal(p->max_queue, 3);
  assert_int_equal(p->hedge, 1);
  assert_int_equal(p->hedge_delay_ms, 150);
  assert_true(p->hedge_max_frac == 0.05);
  assert_int_equal(p->nfallbacks, 2);
  assert_string_equal(p->fallbacks[1], "b");
  assert_int_equal(route_ctl_policy(&c, slice_cstr("n"))->hedge, -1); /* false: never */
  assert_int_equal(route_ctl_policy(&c, slice_cstr("o"))->hedge, 0);  /* unset: the router's default */
  assert_true(route_ctl_policy(&c, slice_cstr("p"))->hedge_max_frac == ROUTE_CTL_HEDGE_FRAC); /* on, no cap given */
  assert_null(route_ctl_policy(&c, slice_cstr("mm")));                 /* lookups are exact, */
  assert_null(route_ctl_policy(&c, slice_make("m", 0)));
  assert_null(route_ctl_policy(&c, slice_cstr("a")));                  /* before the first, */
  assert_null(route_ctl_policy(&c, slice_cstr("z")));                  /* after the last */
  assert_non_null(route_ctl_policy(&c, slice_make("nx", 1)));          /* a slice, not a C string */
  /* The hedge credit survives a sync that leaves the cap alone. */
  assert_int_equal(adm_bucket_take(&p->credit, 1, 0), 0); /* the starting credit of one */
  adm_bucket_add(&p->credit, 0.5);
  put(f, 5, FSM_OP_PUT, FSM_DRAIN, "x", "{}");
  route_ctl_sync(&c, f);
  p = route_ctl_policy(&c, slice_cstr("m"));
  assert_true(p->credit.tokens == 0.5);
  route_ctl_free(&c);
  fsm_free(f);
}

static void test_tenant_models(void **state) {
  (void)state;
  struct tenant_conf t;
  char err[200];
  char spec[] = "name=team-a,key=sk-0123456789,model=llama-3-8b,model=qwen-7b";
  assert_int_equal(tenant_conf_parse(&t, spec, err, sizeof err), 0);
  assert_int_equal(t.nmodels, 2);
  assert_true(tenant_model_allowed(&t, slice_cstr("qwen-7b")));
  assert_false(tenant_model_allowed(&t, slice_cstr("qwen-7")));
  assert_false(tenant_model_allowed(&t, slice_cstr("mistral")));
  char bad[] = "name=b,key=sk-0123456789,model=has space";
  assert_int_equal(tenant_conf_parse(&t, bad, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "model name"));
  tenant_conf_default(&t);
  assert_true(tenant_model_allowed(&t, slice_cstr("anything"))); /* not limited */
}

static void test_key_hash_matches_fsm(void **state) {
  (void)state;
  uint8_t a[TENANT_KEY_HASH_BYTES], b[FSM_HASH_LEN];
  const char *key = "sk-test-0123456789";
  tenants_hash_key(key, strlen(key), a);
  fsm_key_hash(key, b);
  assert_memory_equal(a, b, sizeof a);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_drain_and_pin), cmocka_unit_test(test_policies),
                                     cmocka_unit_test(test_tenant_models),
                                     cmocka_unit_test(test_key_hash_matches_fsm), cmocka_unit_test(test_prices)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
