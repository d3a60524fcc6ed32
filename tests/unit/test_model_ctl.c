/* Tests for model control: the agent's request parsing (api/model_req.h) and the simulated engine's LoRA
 * table (sim/lora.h), whose answers must be vLLM's; and that the vLLM adapter then serves the adapter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adapter/adapter.h"
#include "api/model_req.h"
#include "core/buf.h"
#include "sim/lora.h"

static int path(const char *p, char *target, bool *unload) {
  return model_req_parse_path(slice_cstr(p), target, MODEL_REQ_TARGET_MAX, unload);
}

static void test_path(void **state) {
  char t[MODEL_REQ_TARGET_MAX];
  bool unload = true;
  assert_int_equal(path("/v1/cluster/targets/eng/load", t, &unload), 0);
  assert_string_equal(t, "eng");
  assert_false(unload);
  assert_int_equal(path("/v1/cluster/targets/b/engine-b/unload", t, &unload), 0);
  assert_string_equal(t, "b/engine-b");
  assert_true(unload);
  assert_int_equal(path("/v1/cluster/targets/b%2Fengine%3a1/load", t, &unload), 0);
  assert_string_equal(t, "b/engine:1");
  /* other endpoints are not ours */
  assert_int_equal(path("/v1/cluster/targets", t, &unload), -ENOENT);
  assert_int_equal(path("/v1/cluster/targets/", t, &unload), -ENOENT);
  assert_int_equal(path("/v1/cluster/targets/load", t, &unload), -ENOENT);
  assert_int_equal(path("/v1/cluster/targets/eng/reload", t, &unload), -ENOENT);
  assert_int_equal(path("/v1/cluster/policies/eng/load", t, &unload), -ENOENT);
  /* ours, but malformed */
  assert_int_equal(path("/v1/cluster/targets//load", t, &unload), -EINVAL);
  assert_int_equal(path("/v1/cluster/targets/a%2/load", t, &unload), -EINVAL);
  assert_int_equal(path("/v1/cluster/targets/a%zz/load", t, &unload), -EINVAL);
  assert_int_equal(path("/v1/cluster/targets/a%00/load", t, &unload), -EINVAL);
  char longp[400];
  snprintf(longp, sizeof longp, "/v1/cluster/targets/%0200d/load", 7);
  assert_int_equal(path(longp, t, &unload), -EINVAL);
}

static int body(const char *b, struct model_req *r) {
  char err[300];
  int rc = model_req_parse_body(b, b ? strlen(b) : 0, r, err, sizeof err);
  if (rc) assert_true(err[0] != '\0');
  return rc;
}

static void test_body(void **state) {
  struct model_req r;
  assert_int_equal(body("{\"model\":\"sql\",\"lora_path\":\"/loras/sql\"}", &r), 0);
  assert_string_equal(r.model, "sql");
  assert_string_equal(r.lora_path, "/loras/sql");
  assert_int_equal(r.type, MODEL_REQ_TYPE_DEFAULT);
  assert_int_equal(r.timeout_ms, MODEL_REQ_TIMEOUT_MS);
  assert_int_equal(body("{\"model\":\"m\",\"type\":\"model\",\"timeout_s\":2.5}", &r), 0);
  assert_int_equal(r.type, MODEL_REQ_TYPE_MODEL);
  assert_int_equal(r.timeout_ms, 2500);
  assert_string_equal(r.lora_path, "");
  assert_int_equal(body("{\"model\":\"m\",\"type\":\"lora\",\"lora_path\":null}", &r), 0);
  assert_int_equal(r.type, MODEL_REQ_TYPE_LORA);
  /* refused */
  assert_int_equal(body(NULL, &r), -EINVAL);
  assert_int_equal(body("[]", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"\"}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":7}", &r), -EINVAL);
  assert_int_equal(body("{\"lora_path\":\"/p\"}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"m\",\"type\":\"adapter\"}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"m\",\"lora_path\":3}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"m\",\"timeout_s\":0}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"m\",\"timeout_s\":601}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"a\\u0000b\"}", &r), -EINVAL);
  assert_int_equal(body("{\"model\":\"m\",\"model\":\"n\"}", &r), -EINVAL);
}

static void test_op(void **state) {
  struct model_req r = {.type = MODEL_REQ_TYPE_DEFAULT};
  assert_int_equal(model_req_op(RT_KIND_VLLM, &r, false), RT_CTL_LOAD_LORA);
  assert_int_equal(r.type, MODEL_REQ_TYPE_LORA);
  r.type = MODEL_REQ_TYPE_DEFAULT;
  assert_int_equal(model_req_op(RT_KIND_SGLANG, &r, true), RT_CTL_UNLOAD_LORA);
  r.type = MODEL_REQ_TYPE_DEFAULT;
  assert_int_equal(model_req_op(RT_KIND_OLLAMA, &r, false), RT_CTL_LOAD_MODEL);
  assert_int_equal(r.type, MODEL_REQ_TYPE_MODEL);
  r.type = MODEL_REQ_TYPE_MODEL;
  assert_int_equal(model_req_op(RT_KIND_VLLM, &r, true), RT_CTL_UNLOAD_MODEL);
  r.type = MODEL_REQ_TYPE_LORA;
  assert_int_equal(model_req_op(RT_KIND_TRITON, &r, false), RT_CTL_LOAD_LORA);
}

static void expect_err(int status, const char *b, const char *want) {
  char out[200];
  model_req_runtime_error(status, b, b ? strlen(b) : 0, out, sizeof out);
  assert_string_equal(out, want);
}

static void test_runtime_error(void **state) {
  expect_err(400, "{\"error\":{\"message\":\"m1\",\"type\":\"BadRequestError\"}}", "m1");
  expect_err(400, "{\"object\":\"error\",\"message\":\"m2\",\"type\":\"InvalidUserInput\",\"code\":400}",
             "m2");
  expect_err(404, "{\"detail\":\"Not Found\"}", "Not Found");
  expect_err(422, "{\"detail\":[{\"loc\":[\"body\"],\"msg\":\"field required\"}]}", "field required");
  expect_err(400, "{\"error\":\"model 'x' not found\"}", "model 'x' not found");
  expect_err(500, "Internal Server Error\nmore", "Internal Server Error ...");
  expect_err(502, NULL, "(empty body, HTTP 502)");
  expect_err(400, "{\"something\":1}", "{\"something\":1}");
}

/* ---- the simulated engine's LoRA table ---- */

static void load(struct sim_loras *l, const char *b, int status, const char *msg) {
  struct sim_lora_answer a;
  sim_loras_load(l, b, strlen(b), 100, &a);
  assert_int_equal(a.status, status);
  assert_string_equal(a.msg, msg);
}

static void unload(struct sim_loras *l, const char *b, int status, const char *msg) {
  struct sim_lora_answer a;
  sim_loras_unload(l, b, strlen(b), 200, &a);
  assert_int_equal(a.status, status);
  assert_string_equal(a.msg, msg);
}

static void test_sim_lora(void **state) {
  struct sim_loras l;
  sim_loras_init(&l, 2);
  load(&l, "{\"lora_name\":\"sql\",\"lora_path\":\"/loras/sql\"}", 200,
       "Success: LoRA adapter 'sql' added successfully.");
  load(&l, "{\"lora_name\":\"sql\",\"lora_path\":\"/loras/sql\"}", 400,
       "The lora adapter 'sql' has already been loaded.");
  load(&l, "{\"lora_name\":\"x\"}", 400, "Both 'lora_name' and 'lora_path' must be provided.");
  load(&l, "{\"lora_name\":\"chat\",\"lora_path\":\"/loras/chat\"}", 200,
       "Success: LoRA adapter 'chat' added successfully.");
  struct sim_lora_answer a;
  sim_loras_load(&l, "{\"lora_name\":\"math\",\"lora_path\":\"/m\"}", 36, 0, &a);
  assert_int_equal(a.status, 400); /* over --max-loras */
  assert_string_equal(a.type, "BadRequestError");
  assert_non_null(sim_loras_find(&l, "sql"));
  assert_string_equal(sim_loras_find(&l, "sql")->path, "/loras/sql");
  assert_null(sim_loras_find(&l, "math"));

  /* /v1/models cards, as vLLM lists them; the vLLM adapter serves them under their names */
  struct buf b = {0};
  buf_puts(&b,
           "{\"object\":\"list\",\"data\":[{\"id\":\"base\",\"object\":\"model\",\"max_model_len\":4096}");
  sim_loras_model_cards(&l, "base", 1, &b);
  buf_puts(&b, "]}");
  struct runtime_state st;
  runtime_state_init(&st);
  assert_int_equal(runtime_parse(RT_KIND_VLLM, RT_EP_MODELS, 200, b.base, b.len, &st), 0);
  assert_int_equal(st.nmodels, 3);
  assert_string_equal(st.models[1], "sql");
  assert_int_equal(st.nlora, 2);
  assert_string_equal(st.lora[1], "chat");
  assert_int_equal(st.max_seq_tokens, 4096);

  /* the metric: max_lora, and the adapters with requests in flight */
  sim_loras_begin(&l, "chat", 150);
  sim_loras_begin(&l, "nope", 160); /* not loaded: ignored */
  buf_reset(&b);
  sim_loras_metric(&l, &b);
  assert_non_null(strstr(b.base, "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"chat\","
                                 "waiting_lora_adapters=\"\"} 1.5"));
  runtime_state_init(&st);
  assert_int_equal(adapter_vllm_metrics(b.base, b.len, &st), 0); /* the adapter reads what the sim writes */
  assert_true(st.have & RS_LORA);
  assert_int_equal(st.max_lora, 2);
  assert_int_equal(st.nlora, 1);
  assert_string_equal(st.lora[0], "chat");
  sim_loras_end(&l, "chat", 170);
  assert_int_equal(sim_loras_find(&l, "chat")->inflight, 0);
  assert_true(l.changed_s == 170);

  unload(&l, "{\"lora_name\":\"sql\"}", 200, "Success: LoRA adapter 'sql' removed successfully.");
  unload(&l, "{\"lora_name\":\"sql\"}", 404, "The lora adapter 'sql' cannot be found.");
  unload(&l, "{}", 400, "either 'lora_name' and 'lora_int_id' needs to be provided.");
  unload(&l, "nope", 400, "the body must be a JSON object");
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].name, "chat");
  buf_free(&b);
  sim_loras_free(&l);

  /* disabled: no metric */
  sim_loras_init(&l, 0);
  struct buf e = {0};
  sim_loras_metric(&l, &e);
  assert_int_equal(e.len, 0);
  sim_loras_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_path),          cmocka_unit_test(test_body),     cmocka_unit_test(test_op),
      cmocka_unit_test(test_runtime_error), cmocka_unit_test(test_sim_lora),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
