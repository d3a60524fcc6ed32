/* Control-plane state machine tests: commands per kind, validation, idempotency, snapshot/restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <string.h>

#include "cluster/fsm.h"
#include "core/period.h"

/* cmd encodes a command (asserting it encodes) and applies it at index idx. */
static struct fsm_result cmd(struct fsm *f, uint64_t idx, const char *id, enum fsm_op op, enum fsm_kind k,
                             const char *key, const char *value) {
  struct buf b = {0};
  char err[200];
  int rc = fsm_cmd_encode(&b, id, op, k, key, value, 1700000000, err, sizeof err);
  if (rc != 0) fprintf(stderr, "encode: %s\n", err);
  assert_int_equal(rc, 0);
  struct fsm_result res;
  fsm_apply(f, idx, b.base, b.len, &res);
  buf_free(&b);
  return res;
}

static void test_policy_put_get_delete(void **state) {
  struct fsm *f = fsm_new();
  struct fsm_result r = cmd(f, 5, "c1", FSM_OP_PUT, FSM_POLICY, "meta-llama/Llama-3.1-8B",
                            "{\"strategy\":\"ours\",\"slo_class\":\"latency\",\"max_queue\":64,\"hedge\":true,"
                            "\"hedge_delay_ms\":250,\"hedge_max_pct\":2.5,\"fallbacks\":[\"tiny\",\"small\"]}");
  assert_int_equal(r.status, 0);
  assert_false(r.duplicate);
  assert_int_equal(r.index, 5);
  assert_int_equal(fsm_index(f), 5);
  const struct fsm_policy *p = fsm_policy(f, "meta-llama/Llama-3.1-8B");
  assert_non_null(p);
  assert_string_equal(p->strategy, "ours");
  assert_string_equal(p->slo_class, "latency");
  assert_int_equal(p->max_queue, 64);
  assert_true(p->hedge);
  assert_int_equal(p->hedge_delay_ms, 250);
  assert_true(p->hedge_max_pct == 2.5);
  assert_int_equal(p->nfallbacks, 2);
  assert_string_equal(p->fallbacks[1], "small");
  /* merge changes only what it names */
  r = cmd(f, 6, "c2", FSM_OP_MERGE, FSM_POLICY, "meta-llama/Llama-3.1-8B", "{\"max_queue\":8}");
  assert_int_equal(r.status, 0);
  p = fsm_policy(f, "meta-llama/Llama-3.1-8B");
  assert_int_equal(p->max_queue, 8);
  assert_string_equal(p->strategy, "ours");
  /* put replaces */
  r = cmd(f, 7, "c3", FSM_OP_PUT, FSM_POLICY, "meta-llama/Llama-3.1-8B", "{\"strategy\":\"round_robin\"}");
  p = fsm_policy(f, "meta-llama/Llama-3.1-8B");
  assert_string_equal(p->strategy, "round_robin");
  assert_int_equal(p->max_queue, 0);
  assert_int_equal(p->nfallbacks, 0);
  r = cmd(f, 8, "c4", FSM_OP_DELETE, FSM_POLICY, "meta-llama/Llama-3.1-8B", NULL);
  assert_int_equal(r.status, 0);
  assert_null(fsm_policy(f, "meta-llama/Llama-3.1-8B"));
  r = cmd(f, 9, "c5", FSM_OP_DELETE, FSM_POLICY, "meta-llama/Llama-3.1-8B", NULL);
  assert_int_equal(r.status, -ENOENT);
  r = cmd(f, 10, "c6", FSM_OP_MERGE, FSM_POLICY, "absent", "{\"max_queue\":1}");
  assert_int_equal(r.status, -ENOENT);
  fsm_free(f);
}

static void test_items_sorted_and_kinds(void **state) {
  struct fsm *f = fsm_new();
  const char *models[] = {"m3", "m1", "m2"};
  for (int i = 0; i < 3; i++) {
    char id[16];
    snprintf(id, sizeof id, "p%d", i);
    assert_int_equal(cmd(f, (uint64_t)i + 1, id, FSM_OP_PUT, FSM_PRICE, models[i], "{\"prompt_per_mtok\":0.5}").status, 0);
  }
  assert_int_equal(fsm_count(f, FSM_PRICE), 3);
  assert_string_equal(((const struct fsm_price *)fsm_at(f, FSM_PRICE, 0))->model, "m1");
  assert_string_equal(((const struct fsm_price *)fsm_at(f, FSM_PRICE, 2))->model, "m3");
  assert_string_equal(fsm_price(f, "m2")->currency, "USD");
  assert_true(fsm_price(f, "m2")->cached_prompt_per_mtok < 0); /* cached tokens at the prompt price */
  assert_int_equal(cmd(f, 20, "p-c", FSM_OP_MERGE, FSM_PRICE, "m2", "{\"cached_prompt_per_mtok\":0.1}").status, 0);
  assert_true(fsm_price(f, "m2")->cached_prompt_per_mtok == 0.1 && fsm_price(f, "m2")->prompt_per_mtok == 0.5);
  /* malformed prices are refused, with a message that says why */
  const char *bad[][2] = {{"{\"prompt_per_mtok\":-1}", ">= 0"},
                          {"{\"prompt_per_mtok\":1,\"currency\":\"usd\"}", "ISO 4217"},
                          {"{\"prompt_per_mtok\":\"cheap\"}", "prompt_per_mtok must be a number"}};
  for (int i = 0; i < 3; i++) {
    struct buf eb = {0};
    char err[200] = "";
    assert_int_equal(fsm_cmd_encode(&eb, "p-bad", FSM_OP_PUT, FSM_PRICE, "m9", bad[i][0], 1, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, bad[i][1]));
    buf_free(&eb);
  }
  assert_null(fsm_price(f, "m9"));
  assert_int_equal(cmd(f, 4, "d1", FSM_OP_PUT, FSM_DRAIN, "gpu-a", "{\"reason\":\"maintenance\"}").status, 0);
  assert_true(fsm_drained(f, "gpu-a"));
  assert_false(fsm_drained(f, "gpu-b"));
  assert_int_equal(((const struct fsm_drain *)fsm_get(f, FSM_DRAIN, "gpu-a"))->since, 1700000000);
  assert_int_equal(cmd(f, 5, "n1", FSM_OP_PUT, FSM_PIN, "m1", "{\"nodes\":[\"gpu-a\"],\"zones\":[\"eu-1\"]}").status, 0);
  assert_int_equal(fsm_pin(f, "m1")->nnodes, 1);
  assert_string_equal(fsm_pin(f, "m1")->zones[0], "eu-1");
  struct buf b = {0};
  fsm_kind_json(f, FSM_PRICE, &b);
  assert_non_null(strstr(b.base, "\"model\":\"m1\""));
  assert_true(strstr(b.base, "m1") < strstr(b.base, "m2"));
  buf_free(&b);
  fsm_free(f);
}

static void test_tenant_key_hash_and_revoke(void **state) {
  struct fsm *f = fsm_new();
  uint8_t h[FSM_HASH_LEN];
  char hex[2 * FSM_HASH_LEN + 1], val[256];
  fsm_key_hash("im-secret-key", h);
  for (int i = 0; i < FSM_HASH_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
  snprintf(val, sizeof val, "{\"key_hash\":\"%s\",\"rps\":10,\"tokens_per_min\":60000,\"max_concurrent\":4}", hex);
  assert_int_equal(cmd(f, 1, "t1", FSM_OP_CREATE, FSM_TENANT, "acme", val).status, 0);
  /* creating again is refused: the key would be replaced silently */
  assert_int_equal(cmd(f, 2, "t2", FSM_OP_CREATE, FSM_TENANT, "acme", val).status, -EEXIST);
  const struct fsm_tenant *t = fsm_tenant_by_key(f, "im-secret-key");
  assert_non_null(t);
  assert_string_equal(t->name, "acme");
  assert_true(t->weight == 1.0); /* default */
  assert_int_equal(t->tokens_per_min, 60000);
  assert_null(fsm_tenant_by_key(f, "im-other-key"));
  assert_int_equal(cmd(f, 3, "t3", FSM_OP_MERGE, FSM_TENANT, "acme", "{\"revoked\":true}").status, 0);
  t = fsm_tenant_by_key(f, "im-secret-key");
  assert_true(t->revoked);
  assert_int_equal(t->max_concurrent, 4);
  /* the API view never shows the whole hash */
  struct buf b = {0};
  fsm_item_json(FSM_TENANT, t, &b);
  assert_null(strstr(b.base, hex));
  assert_non_null(strstr(b.base, "key_hash_prefix"));
  buf_free(&b);
  fsm_free(f);
}

/* refused: the command is refused before it is proposed, with a message naming the field. */
static bool refused(enum fsm_op op, enum fsm_kind k, const char *key, const char *value, const char *field) {
  char err[200] = "";
  struct buf b = {0};
  int rc = fsm_cmd_encode(&b, "r", op, k, key, value, 0, err, sizeof err);
  buf_free(&b);
  return rc == -EINVAL && strstr(err, field) != NULL;
}

static void test_tenant_budget_and_provider_share(void **state) {
  struct fsm *f = fsm_new();
  assert_int_equal(cmd(f, 1, "b1", FSM_OP_PUT, FSM_TENANT, "acme", "{\"budget\":\"25.00\",\"period\":\"day\"}").status, 0);
  const struct fsm_tenant *t = fsm_get(f, FSM_TENANT, "acme");
  assert_int_equal(t->budget_nano, 25000000000LL);
  assert_int_equal(t->period, PERIOD_DAY);
  /* a number works too; a merge without period keeps it; 0 removes the budget */
  assert_int_equal(cmd(f, 2, "b2", FSM_OP_MERGE, FSM_TENANT, "acme", "{\"budget\":0.5}").status, 0);
  t = fsm_get(f, FSM_TENANT, "acme");
  assert_int_equal(t->budget_nano, 500000000LL);
  assert_int_equal(t->period, PERIOD_DAY);
  struct buf b = {0};
  fsm_item_json(FSM_TENANT, t, &b);
  assert_non_null(strstr(b.base, "\"budget\":\"0.5\""));
  assert_non_null(strstr(b.base, "\"period\":\"day\""));
  buf_free(&b);
  assert_int_equal(cmd(f, 3, "b3", FSM_OP_MERGE, FSM_TENANT, "acme", "{\"budget\":null}").status, 0);
  assert_int_equal(((const struct fsm_tenant *)fsm_get(f, FSM_TENANT, "acme"))->budget_nano, 0);
  /* malformed budgets and periods: a put is refused before it is proposed, a merge when applied; both with a
   * reason naming the field, and nothing changes */
  assert_true(refused(FSM_OP_PUT, FSM_TENANT, "acme", "{\"budget\":\"-3\"}", "budget"));
  assert_true(refused(FSM_OP_PUT, FSM_TENANT, "acme", "{\"budget\":\"1.0000000001\"}", "budget"));
  assert_true(refused(FSM_OP_PUT, FSM_TENANT, "acme", "{\"budget\":true}", "budget"));
  assert_true(refused(FSM_OP_PUT, FSM_TENANT, "acme", "{\"period\":\"week\"}", "period"));
  struct fsm_result r = cmd(f, 4, "b4", FSM_OP_MERGE, FSM_TENANT, "acme", "{\"budget\":\"2\",\"period\":\"year\"}");
  assert_int_equal(r.status, -EINVAL);
  assert_non_null(strstr(r.msg, "period"));
  assert_int_equal(((const struct fsm_tenant *)fsm_get(f, FSM_TENANT, "acme"))->budget_nano, 0);
  /* providers: a share in [0, 1], 1 by default */
  assert_int_equal(cmd(f, 8, "p1", FSM_OP_PUT, FSM_PROVIDER, "acme-gpus", "{\"share\":0.8}").status, 0);
  assert_true(fsm_provider(f, "acme-gpus")->share == 0.8);
  assert_int_equal(cmd(f, 9, "p2", FSM_OP_PUT, FSM_PROVIDER, "other", "{}").status, 0);
  assert_true(fsm_provider(f, "other")->share == 1.0);
  assert_true(refused(FSM_OP_PUT, FSM_PROVIDER, "x", "{\"share\":1.5}", "share"));
  assert_true(refused(FSM_OP_PUT, FSM_PROVIDER, "x", "{\"share\":\"half\"}", "share"));
  assert_null(fsm_provider(f, "x"));
  enum fsm_kind k;
  assert_int_equal(fsm_kind_parse("providers", 9, &k), 0);
  assert_int_equal(k, FSM_PROVIDER);
  fsm_free(f);
}

static void test_invalid_commands_change_nothing(void **state) {
  struct fsm *f = fsm_new();
  char err[200];
  struct buf b = {0};
  /* encode refuses what apply would refuse */
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_POLICY, "m", "{\"strategy\":7}", 0, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_POLICY, "m", "{\"nope\":1}", 0, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_POLICY, "bad key", "{}", 0, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_POLICY, "m", "[1]", 0, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_PIN, "m", "{}", 0, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_cmd_encode(&b, "x", FSM_OP_PUT, FSM_TENANT, "t", "{\"rps\":-1}", 0, err, sizeof err), -EINVAL);
  assert_int_equal(b.len, 0);
  /* apply of hand-made bad commands: a result, never a change; the index still moves */
  const char *bad[] = {
      "not json",
      "{\"id\":\"b1\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"m\",\"value\":{\"max_queue\":-3}}",
      "{\"id\":\"b2\",\"op\":\"frob\",\"kind\":\"policy\",\"key\":\"m\",\"value\":{}}",
      "{\"id\":\"b3\",\"op\":\"put\",\"kind\":\"widget\",\"key\":\"m\",\"value\":{}}",
      "{\"id\":\"b4\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"m\",\"value\":{},\"extra\":1}",
      "{\"id\":\"b5\",\"id\":\"b6\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"m\",\"value\":{}}",
      "{\"id\":\"b7\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"m\",\"value\":{\"model\":\"other\"}}",
      "{\"id\":\"b8\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"m\",\"value\":[]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct fsm_result r;
    fsm_apply(f, i + 1, bad[i], strlen(bad[i]), &r);
    assert_int_equal(r.status, -EINVAL);
    assert_true(r.msg[0] != '\0');
    assert_int_equal(fsm_count(f, FSM_POLICY), 0);
  }
  assert_int_equal(fsm_index(f), sizeof bad / sizeof bad[0]);
  fsm_free(f);
}

/* A message cut to fit never ends inside a UTF-8 character: it goes out in JSON. */
static void test_cut_message_is_valid_utf8(void **state) {
  (void)state;
  struct fsm *f = fsm_new();
  struct buf c = {0};
  buf_puts(&c, "{\"id\":\"u1\",\"op\":\"put\",\"kind\":\"policy\",\"key\":\"x"); /* odd: a cut mid-é */
  for (int i = 0; i < 100; i++) buf_puts(&c, "\xc3\xa9"); /* é: 2 bytes, 200 in all, past FSM_MSG_MAX */
  buf_puts(&c, "\",\"value\":{}}");
  struct fsm_result res;
  fsm_apply(f, 1, c.base, c.len, &res);
  assert_int_equal(res.status, -EINVAL);
  size_t n = strlen(res.msg);
  assert_true(n > 100 && n < FSM_MSG_MAX);
  json_error_t je;
  json_t *v = json_pack_ex(&je, 0, "s", res.msg); /* jansson refuses invalid UTF-8 */
  assert_non_null(v);
  json_decref(v);
  buf_free(&c);
  fsm_free(f);
}

static void test_idempotent_by_id(void **state) {
  struct fsm *f = fsm_new();
  struct fsm_result r = cmd(f, 1, "same", FSM_OP_CREATE, FSM_DRAIN, "n1", "{}");
  assert_int_equal(r.status, 0);
  /* the retry of a create reports the first outcome (success), not -EEXIST, and changes nothing */
  r = cmd(f, 2, "same", FSM_OP_CREATE, FSM_DRAIN, "n1", "{}");
  assert_int_equal(r.status, 0);
  assert_true(r.duplicate);
  assert_int_equal(r.index, 1);
  /* a retried delete after another write does not undo the later write */
  assert_int_equal(cmd(f, 3, "del", FSM_OP_DELETE, FSM_DRAIN, "n1", NULL).status, 0);
  assert_int_equal(cmd(f, 4, "re", FSM_OP_PUT, FSM_DRAIN, "n1", "{}").status, 0);
  r = cmd(f, 5, "del", FSM_OP_DELETE, FSM_DRAIN, "n1", NULL);
  assert_true(r.duplicate);
  assert_true(fsm_drained(f, "n1"));
  /* the window is bounded: after FSM_RECENT other commands the first id is forgotten */
  for (int i = 0; i < FSM_RECENT; i++) {
    char id[32];
    snprintf(id, sizeof id, "fill-%d", i);
    assert_int_equal(cmd(f, 6 + (uint64_t)i, id, FSM_OP_PUT, FSM_PRICE, "m", "{}").status, 0);
  }
  r = cmd(f, 10000, "same", FSM_OP_CREATE, FSM_DRAIN, "n1", "{}");
  assert_false(r.duplicate);
  assert_int_equal(r.status, -EEXIST);
  fsm_free(f);
}

static void test_snapshot_restore(void **state) {
  struct fsm *a = fsm_new(), *b = fsm_new();
  assert_int_equal(cmd(a, 1, "s1", FSM_OP_PUT, FSM_POLICY, "m1", "{\"strategy\":\"ours\",\"fallbacks\":[\"m2\"]}").status, 0);
  assert_int_equal(cmd(a, 2, "s2", FSM_OP_PUT, FSM_PIN, "m1", "{\"zones\":[\"z\"]}").status, 0);
  assert_int_equal(cmd(a, 3, "s3", FSM_OP_PUT, FSM_DRAIN, "gpu-a", "{\"reason\":\"r\"}").status, 0);
  assert_int_equal(cmd(a, 4, "s4", FSM_OP_PUT, FSM_TENANT, "acme",
                       "{\"key_hash\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\",\"weight\":2}")
                       .status, 0);
  assert_int_equal(cmd(a, 5, "s5", FSM_OP_PUT, FSM_PRICE, "m1", "{\"completion_per_mtok\":1.25}").status, 0);
  assert_int_equal(cmd(a, 6, "s6", FSM_OP_DELETE, FSM_PRICE, "zzz", NULL).status, -ENOENT);
  /* b has other state: restore replaces it all */
  assert_int_equal(cmd(b, 1, "other", FSM_OP_PUT, FSM_PRICE, "old", "{}").status, 0);
  struct buf s1 = {0}, s2 = {0};
  char err[200];
  fsm_snapshot(a, &s1);
  assert_int_equal(fsm_restore(b, s1.base, s1.len, err, sizeof err), 0);
  assert_int_equal(fsm_index(b), 6);
  assert_null(fsm_price(b, "old"));
  assert_string_equal(fsm_policy(b, "m1")->fallbacks[0], "m2");
  assert_string_equal(fsm_pin(b, "m1")->zones[0], "z");
  assert_true(fsm_drained(b, "gpu-a"));
  assert_true(((const struct fsm_tenant *)fsm_get(b, FSM_TENANT, "acme"))->weight == 2);
  assert_true(fsm_price(b, "m1")->completion_per_mtok == 1.25);
  /* the same bytes again: snapshots are canonical */
  fsm_snapshot(b, &s2);
  assert_int_equal(s1.len, s2.len);
  assert_memory_equal(s1.base, s2.base, s1.len);
  /* command ids survive the snapshot, with their outcomes */
  struct fsm_result r = cmd(b, 7, "s6", FSM_OP_DELETE, FSM_PRICE, "zzz", NULL);
  assert_true(r.duplicate);
  assert_int_equal(r.status, -ENOENT);
  r = cmd(b, 8, "s1", FSM_OP_DELETE, FSM_POLICY, "m1", NULL);
  assert_true(r.duplicate);
  assert_non_null(fsm_policy(b, "m1"));
  /* a broken snapshot leaves the state as it was */
  assert_int_equal(fsm_restore(b, "{\"format\":2}", 12, err, sizeof err), -EINVAL);
  const char *v3 = "{\"format\":3,\"index\":1,\"items\":{},\"recent\":[]}"; /* a format from the future */
  assert_int_equal(fsm_restore(b, v3, strlen(v3), err, sizeof err), -EINVAL);
  assert_int_equal(fsm_restore(b, s1.base, s1.len / 2, err, sizeof err), -EINVAL);
  assert_int_equal(fsm_index(b), 8);
  assert_non_null(fsm_policy(b, "m1"));
  /* Format 1 wrote "hedge":false for every policy, meaning "not set": read back as the router's default. */
  const char *v1 = "{\"format\":1,\"index\":3,\"items\":{\"policies\":[{\"model\":\"m\",\"strategy\":\"ours\","
                   "\"hedge\":false},{\"model\":\"n\",\"hedge\":true}]},\"recent\":[]}";
  assert_int_equal(fsm_restore(b, v1, strlen(v1), err, sizeof err), 0);
  assert_int_equal(fsm_policy(b, "m")->hedge, 0);
  assert_int_equal(fsm_policy(b, "n")->hedge, 1);
  assert_int_equal(fsm_kind_changed(b, FSM_POLICY), 3);
  /* A put that leaves an item as it was changes nothing; one that shortens a string leaves no old bytes. */
  cmd(b, 4, "h1", FSM_OP_PUT, FSM_POLICY, "m", "{\"strategy\":\"round-robin\",\"fallbacks\":[\"a\",\"b\"]}");
  assert_int_equal(fsm_kind_changed(b, FSM_POLICY), 4);
  cmd(b, 5, "h2", FSM_OP_PUT, FSM_POLICY, "m", "{\"strategy\":\"round-robin\",\"fallbacks\":[\"a\",\"b\"]}");
  assert_int_equal(fsm_kind_changed(b, FSM_POLICY), 4);
  cmd(b, 6, "h3", FSM_OP_PUT, FSM_TENANT, "t", "{\"rps\":1,\"models\":[\"aaaa\",\"bbbb\"]}");
  cmd(b, 7, "h4", FSM_OP_MERGE, FSM_TENANT, "t", "{\"models\":[\"a\"]}");
  cmd(b, 8, "h5", FSM_OP_PUT, FSM_TENANT, "u", "{\"rps\":1,\"models\":[\"a\"]}");
  const struct fsm_tenant *tt = fsm_get(b, FSM_TENANT, "t"), *tu = fsm_get(b, FSM_TENANT, "u");
  assert_memory_equal(tt->models, tu->models, sizeof tt->models);
  cmd(b, 9, "h6", FSM_OP_MERGE, FSM_TENANT, "t", "{\"models\":[\"a\"]}");
  assert_int_equal(fsm_kind_changed(b, FSM_TENANT), 8);
  buf_free(&s1);
  buf_free(&s2);
  fsm_free(a);
  fsm_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_policy_put_get_delete),  cmocka_unit_test(test_items_sorted_and_kinds),
      cmocka_unit_test(test_tenant_key_hash_and_revoke), cmocka_unit_test(test_tenant_budget_and_provider_share), cmocka_unit_test(test_invalid_commands_change_nothing),
      cmocka_unit_test(test_cut_message_is_valid_utf8),
      cmocka_unit_test(test_idempotent_by_id),       cmocka_unit_test(test_snapshot_restore),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
