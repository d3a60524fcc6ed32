/* Configuration events: which control-plane items were put, updated or deleted between two looks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent/config_watch.h"

static void apply(struct fsm *f, uint64_t idx, enum fsm_op op, enum fsm_kind k, const char *key, const char *v) {
  struct buf b = {0};
  char err[200], id[32];
  snprintf(id, sizeof id, "c%llu", (unsigned long long)idx);
  assert_int_equal(fsm_cmd_encode(&b, id, op, k, key, v, 1700000000, err, sizeof err), 0);
  struct fsm_result res;
  fsm_apply(f, idx, b.base, b.len, &res);
  assert_int_equal(res.status, 0);
  buf_free(&b);
}

struct seen {
  char text[512];
};

static void record(void *arg, const struct config_change *ch) {
  struct seen *s = arg;
  size_t n = strlen(s->text);
  snprintf(s->text + n, sizeof s->text - n, "%s%s:%s:%s", n ? " " : "", fsm_kind_name(ch->kind), ch->key, ch->op);
}

static const char *look(struct config_watch *w, const struct fsm *f, struct seen *s) {
  s->text[0] = '\0';
  config_watch_update(w, f, record, s);
  return s->text;
}

static void test_changes(void **state) {
  (void)state;
  struct fsm *f = fsm_new();
  struct config_watch w;
  struct seen s;
  config_watch_init(&w);
  assert_string_equal(look(&w, f, &s), "");
  apply(f, 1, FSM_OP_PUT, FSM_POLICY, "m", "{\"strategy\":\"ours\"}");
  apply(f, 2, FSM_OP_PUT, FSM_DRAIN, "node-1", "{}");
  apply(f, 3, FSM_OP_PUT, FSM_DRAIN, "node-0", "{}");
  /* Several commands between two looks: each item once, kinds in order, keys in order. */
  assert_string_equal(look(&w, f, &s), "policy:m:put drain:node-0:put drain:node-1:put");
  assert_string_equal(look(&w, f, &s), ""); /* nothing new */
  apply(f, 4, FSM_OP_PUT, FSM_POLICY, "m", "{\"strategy\":\"round-robin\"}");
  apply(f, 5, FSM_OP_DELETE, FSM_DRAIN, "node-0", NULL);
  apply(f, 6, FSM_OP_PUT, FSM_POLICY, "a", "{}");
  assert_string_equal(look(&w, f, &s), "policy:a:put policy:m:update drain:node-0:delete");
  /* A put that changes nothing is no event; a delete and a re-put between looks is an update at most. */
  apply(f, 7, FSM_OP_PUT, FSM_POLICY, "a", "{}");
  assert_string_equal(look(&w, f, &s), "");
  /* Remember without publishing (a baseline). */
  apply(f, 8, FSM_OP_PUT, FSM_PRICE, "m", "{\"prompt_per_mtok\":1}");
  config_watch_update(&w, f, NULL, NULL);
  assert_string_equal(look(&w, f, &s), "");
  config_watch_free(&w);
  fsm_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_changes)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
