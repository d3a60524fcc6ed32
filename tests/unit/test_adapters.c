/* Tests for the runtime adapters: every runtime's real capture, window rates and quantiles, detection, junk.
 */
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
#include <jansson.h>

#include "adapter/adapter.h"
#include "adapter/adapter_int.h"
#include "core/buf.h"
#include "core/err.h"

#define assert_dbl(got, want)                                                                                \
  do {                                                                                                       \
    double got_ = (got), want_ = (want);                                                                     \
    if (!(got_ == want_)) fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                             \
  } while (0)

#define assert_near(got, want)                                                                               \
  do {                                                                                                       \
    double got_ = (got), want_ = (want);                                                                     \
    if (!(fabs(got_ - want_) <= 1e-9 * (1 + fabs(want_))))                                                   \
      fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                                                 \
  } while (0)

#define assert_have(st, bits) assert_int_equal((st).have &(bits), (bits))
#define assert_lacks(st, bits) assert_int_equal((st).have &(bits), 0)


/* parse_fixture runs one endpoint parser of kind k over a fixture into *st (initialized first). */
static void parse_fixture(enum runtime_kind k, enum rt_endpoint_id ep, const char *file,
                          struct runtime_state *st) {
  size_t len;
  char *b = fixture_load(file, &len, (ep != RT_EP_METRICS) ? FIXTURE_SKIP_SOURCE : 0);
  runtime_state_init(st);
  int rc = runtime_parse(k, ep, 200, b, len, st);
  if (rc) fail_msg("%s: runtime_parse = %d (%s)", file, rc, im_strerror(rc));
  free(b);
}

static void parse_str(enum runtime_kind k, enum rt_endpoint_id ep, const char *s, struct runtime_state *st) {
  int rc = runtime_parse(k, ep, 200, s, strlen(s), st);
  if (rc) fail_msg("runtime_parse = %d on: %s", rc, s);
}

static void assert_names(char (*names)[RS_NAME_MAX], int n, const char *const *want, int nwant) {
  assert_int_equal(n, nwant);
  for (int i = 0; i < nwant; i++)
    assert_string_equal(names[i], want[i]);
}

/* Kinds ----------------------------------------------------------------------------------------------------
 */

static void test_kinds(void **state) {
  (void)state;
  enum runtime_kind k = RT_KIND_OLLAMA;
  static const char *const names[] = {"vllm", "sglang", "tgi", "llamacpp", "triton", "ollama"};
  for (int i = 0; i < RT_KIND_COUNT; i++) {
    assert_int_equal(runtime_kind_parse(names[i], &k), 0);
    assert_int_equal(k, i);
    assert_string_equal(runtime_kind_name(k), names[i]);
  }
  assert_int_equal(runtime_kind_parse("llama.cpp", &k), 0);
  assert_int_equal(k, RT_KIND_LLAMACPP);
  assert_int_equal(runtime_kind_parse("VLLM", &k), 0);
  assert_int_equal(k, RT_KIND_VLLM);
  assert_int_equal(runtime_kind_parse("nope", &k), -EINVAL);
  assert_int_equal(runtime_kind_parse(NULL, &k), -EINVAL);
  assert_string_equal(runtime_kind_name((enum runtime_kind)99), "unknown");
  for (int i = 0; i < RT_KIND_COUNT; i++) {
    const struct rt_endpoint *eps;
    int n = runtime_endpoints((enum runtime_kind)i, &eps);
    assert_true(n >= 2);
    for (int j = 0; j < n; j++)
      assert_true(eps[j].path[0] == '/');
  }
}

/* vLLM -----------------------------------------------------------------------------------------------------
 */

static void test_vllm_fixture(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_VLLM, RT_EP_METRICS, "vllm.metrics.txt", &st);
  assert_have(st, RS_WAITING | RS_RUNNING | RS_KV_USAGE | RS_KV_CAPACITY | RS_PREFIX_COUNTERS |
                      RS_PREFIX_RATE | RS_PROMPT_TOKENS | RS_GEN_TOKENS | RS_TTFT | RS_ITL | RS_MODELS);
  assert_lacks(st, RS_LORA | RS_HEALTH | RS_QUEUE_TIME);
  assert_dbl(st.waiting, 0);
  assert_dbl(st.running, 0);
  assert_dbl(st.kv_usage, 0); /* kv_cache_usage_perc 0.0 (gpu_cache_usage_perc 0.0 too) */
  assert_int_equal(st.block_size, 16);
  assert_int_equal(st.kv_capacity_tokens, 16 * 7281); /* block_size="16" num_gpu_blocks="7281" */
  assert_dbl(st.prefix_queries, 117);
  assert_dbl(st.prefix_hits, 64);
  assert_dbl(st.prefix_hit_rate, 64.0 / 117.0);
  assert_dbl(st.prompt_tokens_total, 5);
  assert_dbl(st.generation_tokens_total, 7);
  /* TTFT: 17 buckets, the one request in (0.25, 0.5] */
  assert_int_equal(st.ttft.n, 17);
  assert_dbl(st.ttft.le[0], 0.001);
  assert_dbl(st.ttft.le[8], 0.25);
  assert_dbl(st.ttft.cum[8], 0);
  assert_dbl(st.ttft.le[9], 0.5);
  assert_dbl(st.ttft.cum[9], 1);
  assert_true(isinf(st.ttft.le[16]));
  assert_dbl(st.ttft.cum[16], 1);
  assert_dbl(st.ttft.count, 1);
  assert_dbl(st.ttft.sum, 0.31326723098754883);
  /* ITL: the v1 inter_token_latency_seconds wins over the older time_per_output_token_seconds */
  assert_int_equal(st.itl.n, 3);
  assert_dbl(st.itl.le[0], 0.01);
  assert_dbl(st.itl.cum[0], 141);
  assert_dbl(st.itl.le[1], 0.1);
  assert_dbl(st.itl.cum[1], 144);
  assert_dbl(st.itl.count, 144);
  assert_dbl(st.itl.sum, 0.6237391703762114);
  static const char *const models[] = {"facebook/opt-125m"};
  assert_names(st.models, st.nmodels, models, 1);

  /* one scrape alone: quantiles since start */
  struct runtime_rates r;
  assert_int_equal(runtime_rates(NULL, &st, 0, &r), 0);
  assert_have(r, RR_TTFT | RR_ITL | RR_PREFIX);
  assert_near(r.ttft_p50, 0.375); /* 0.25 + 0.25 * 0.5 */
  assert_near(r.ttft_p95, 0.4875);
  assert_dbl(r.ttft_count, 1);
  assert_near(r.itl_p50, 0.01 * 72 / 141);
  assert_near(r.itl_p95, 0.01 * 136.8 / 141);
  assert_dbl(r.prefix_hit_rate, 64.0 / 117.0);
}

static void test_vllm_v1_engine_label(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_VLLM, RT_EP_METRICS, "vllm-v1.issue617.metrics.txt", &st);
  assert_have(st, RS_KV_USAGE | RS_PREFIX_COUNTERS | RS_MODELS);
  assert_lacks(st, RS_WAITING | RS_RUNNING | RS_KV_CAPACITY | RS_TTFT | RS_PROMPT_TOKENS);
  assert_dbl(st.kv_usage, 9.75010481363281e-06);
  assert_dbl(st.prefix_queries, 32);
  assert_dbl(st.prefix_hits, 0); /* from the deprecated gpu_prefix_cache_hits_total; _created ignored */
  assert_dbl(st.prefix_hit_rate, 0);
  static const char *const models[] = {"zai-org/GLM-4.5"};
  assert_names(st.models, st.nmodels, models, 1);
}

/* Two data-parallel engines, LoRA info with a stale series, and only the older ITL name. */
static const char vllm_dp[] =
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 3\n"
    "vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 4\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 10\n"
    "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 12\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n"
    "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.4\n"
    "vllm:cache_config_info{block_size=\"32\",engine=\"0\",num_gpu_blocks=\"1000\"} 1\n"
    "vllm:cache_config_info{block_size=\"32\",engine=\"1\",num_gpu_blocks=\"1000\"} 1\n"
    "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"old\",waiting_lora_adapters=\"\"} 1.7e9\n"
    "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"sql,chat\",waiting_lora_adapters="
    "\"math\"} "
    "1.8e9\n"
    "vllm:time_per_output_token_seconds_bucket{engine=\"0\",le=\"0.05\",model_name=\"m\"} 6\n"
    "vllm:time_per_output_token_seconds_bucket{engine=\"1\",le=\"0.05\",model_name=\"m\"} 4\n"
    "vllm:time_per_output_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 8\n"
    "vllm:time_per_output_token_seconds_bucket{engine=\"1\",le=\"+Inf\",model_name=\"m\"} 4\n"
    "vllm:time_per_output_token_seconds_count{engine=\"0\",model_name=\"m\"} 8\n"
    "vllm:time_per_output_token_seconds_count{engine=\"1\",model_name=\"m\"} 4\n";

static void test_vllm_dp_lora(void **state) {
  (void)state;
  static struct runtime_state st;
  runtime_state_init(&st);
  parse_str(RT_KIND_VLLM, RT_EP_METRICS, vllm_dp, &st);
  assert_dbl(st.waiting, 7);
  assert_dbl(st.running, 22);
  assert_near(st.kv_usage, 0.3); /* the mean over ranks */
  assert_int_equal(st.block_size, 32);
  assert_int_equal(st.kv_capacity_tokens, 32 * 2000); /* blocks add up over ranks */
  assert_have(st, RS_LORA | RS_ITL);
  assert_int_equal(st.max_lora, 4);
  static const char *const lora[] = {"sql", "chat", "math"}; /* the newest series (1.8e9) only */
  assert_names(st.lora, st.nlora, lora, 3);
  assert_int_equal(st.itl.n, 2);
  assert_dbl(st.itl.cum[0], 10);
  assert_dbl(st.itl.cum[1], 12);
  assert_dbl(st.itl.count, 12);

  /* /v1/models: base model and a LoRA adapter (parent set), health */
  parse_str(RT_KIND_VLLM, RT_EP_MODELS,
            "{\"object\":\"list\",\"data\":[{\"id\":\"m\",\"object\":\"model\",\"owned_by\":\"vllm\","
            "\"max_model_len\":8192},{\"id\":\"sql2\",\"parent\":\"m\",\"owned_by\":\"vllm\"}]}",
            &st);
  static const char *const models[] = {"m", "sql2"}; /* a LoRA adapter is also served under its name */
  assert_names(st.models, st.nmodels, models, 2);
  assert_int_equal(st.max_seq_tokens, 8192);
  assert_int_equal(st.nlora, 4);
  assert_string_equal(st.lora[3], "sql2");
  assert_int_equal(runtime_parse(RT_KIND_VLLM, RT_EP_HEALTH, 503, "", 0, &st), 0);
  assert_have(st, RS_HEALTH);
  assert_false(st.healthy);
  assert_false(st.loading);
  assert_int_equal(runtime_parse(RT_KIND_VLLM, RT_EP_HEALTH, 200, NULL, 0, &st), 0);
  assert_true(st.healthy);
}

/* SGLang ---------------------------------------------------------------------------------------------------
 */

static void test_sglang_fixture(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_SGLANG, RT_EP_METRICS, "sglang.metrics.txt", &st);
  assert_have(st, RS_WAITING | RS_RUNNING | RS_KV_USAGE | RS_PREFIX_RATE | RS_PROMPT_TOKENS | RS_GEN_TOKENS |
                      RS_GEN_TPS | RS_TTFT | RS_ITL | RS_MODELS);
  assert_lacks(st, RS_KV_CAPACITY | RS_PREFIX_COUNTERS); /* no max_total_num_tokens, no cached_tokens_total */
  assert_dbl(st.waiting, 2826);
  assert_dbl(st.running, 162);
  assert_dbl(st.kv_usage, 0.28);
  assert_dbl(st.prefix_hit_rate, 0.007507552643049313);
  assert_dbl(st.prompt_tokens_total, 8.128902e+06);
  assert_dbl(st.generation_tokens_total, 7.557572e+06);
  assert_dbl(st.gen_tps_gauge, 86.50814177726902);
  assert_dbl(st.ttft.count, 11008);
  assert_dbl(st.ttft.sum, 2.3518979474117756e+06);
  assert_int_equal(st.ttft.n, 21);
  assert_dbl(st.ttft.le[4], 0.04);
  assert_dbl(st.ttft.cum[4], 1);
  assert_dbl(st.ttft.le[19], 30.0);
  assert_dbl(st.ttft.cum[19], 2513);
  assert_dbl(st.ttft.cum[20], 11008);
  /* no inter_token_latency_seconds in this older capture: time_per_output_token_seconds */
  assert_dbl(st.itl.count, 7.400757e+06);
  assert_dbl(st.itl.sum, 866964.5791549598);
  assert_dbl(st.itl.cum[st.itl.n - 1], 7.400757e+06);
  static const char *const models[] = {"meta-llama/Llama-3.1-8B-Instruct"};
  assert_names(st.models, st.nmodels, models, 1);
  struct runtime_rates r;
  runtime_rates(NULL, &st, 0, &r);
  assert_have(r, RR_TTFT | RR_ITL | RR_PREFIX);
  assert_dbl(r.ttft_p95, 30.0); /* 95% of 11008 lies in the +Inf bucket: its lower edge */
  assert_dbl(r.prefix_hit_rate, 0.007507552643049313);
}

static void test_sglang_tp_rank(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_SGLANG, RT_EP_METRICS, "sglang-datadog.metrics.txt", &st);
  assert_have(st, RS_WAITING | RS_RUNNING | RS_KV_USAGE | RS_KV_CAPACITY | RS_PREFIX_RATE |
                      RS_PREFIX_COUNTERS | RS_PROMPT_TOKENS | RS_GEN_TOKENS | RS_GEN_TPS | RS_TTFT | RS_ITL);
  assert_dbl(st.waiting, 0);
  assert_dbl(st.running, 0);
  assert_dbl(st.kv_usage, 0.25);
  assert_int_equal(st.kv_capacity_tokens, 430839);
  assert_dbl(st.prefix_hit_rate, 0.2);
  assert_dbl(st.prefix_hits, 1);    /* cached_tokens_total */
  assert_dbl(st.prefix_queries, 5); /* prompt_tokens_total */
  assert_dbl(st.prompt_tokens_total, 5);
  assert_dbl(st.generation_tokens_total, 32);
  assert_dbl(st.gen_tps_gauge, 425.5);
  assert_dbl(st.ttft.count, 1);
  assert_dbl(st.ttft.sum, 0.02);
  assert_dbl(st.itl.count, 31); /* inter_token_latency_seconds present here */
  assert_dbl(st.itl.sum, 0.05);
  static const char *const models[] = {"facebook/opt-125m"};
  assert_names(st.models, st.nmodels, models, 1);

  /* two tensor-parallel ranks report the same batch: max, not sum */
  runtime_state_init(&st);
  parse_str(RT_KIND_SGLANG, RT_EP_METRICS,
            "sglang:num_running_reqs{model_name=\"m\",tp_rank=\"0\"} 3\n"
            "sglang:num_running_reqs{model_name=\"m\",tp_rank=\"1\"} 3\n"
            "sglang:num_queue_reqs{model_name=\"m\",tp_rank=\"0\"} 5\n"
            "sglang:num_queue_reqs{model_name=\"m\",tp_rank=\"1\"} 4\n"
            "sglang:num_used_tokens{model_name=\"m\",tp_rank=\"0\"} 100\n"
            "sglang:num_used_tokens{model_name=\"m\",tp_rank=\"1\"} 100\n"
            "sglang:cache_config_info{page_size=\"16\",num_pages=\"50\",tp_rank=\"0\"} 1\n"
            "sglang:cache_config_info{page_size=\"16\",num_pages=\"50\",tp_rank=\"1\"} 1\n",
            &st);
  assert_dbl(st.running, 3);
  assert_dbl(st.waiting, 5);
  assert_int_equal(st.block_size, 16);
  assert_int_equal(st.kv_capacity_tokens, 800); /* page_size * num_pages, ranks not added */
  assert_dbl(st.kv_usage, 100.0 / 800.0);       /* num_used_tokens / capacity when token_usage is absent */
}

/* TGI ------------------------------------------------------------------------------------------------------
 */

/* /info as TGI 2.x answers it (text-generation-inference router/src/lib.rs Info, values illustrative). */
static const char tgi_info[] =
    "{\"model_id\":\"bigscience/bloom-560m\",\"model_sha\":\"e985a63cdc139290c5f700ff1929f0b5942cced2\","
    "\"model_dtype\":\"torch.float16\",\"model_device_type\":\"cuda\",\"model_pipeline_tag\":\"text-"
    "generation\","
    "\"max_concurrent_requests\":128,\"max_best_of\":2,\"max_stop_sequences\":4,\"max_input_tokens\":1024,"
    "\"max_total_tokens\":2048,\"validation_workers\":2,\"max_client_batch_size\":4,"
    "\"router\":\"text-generation-router\",\"version\":\"2.0.1\",\"sha\":null,\"docker_label\":null,"
    "\"waiting_served_ratio\":0.3,\"max_batch_total_tokens\":16000,\"max_waiting_tokens\":20,"
    "\"max_batch_size\":null}";

static void test_tgi_fixture(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_TGI, RT_EP_METRICS, "tgi.metrics.txt", &st);
  assert_have(st, RS_WAITING | RS_RUNNING | RS_PROMPT_TOKENS | RS_QUEUE_TIME);
  /* the capture has no tgi_batch_max_total_tokens, no generated-tokens histogram, no TTFT */
  assert_lacks(st, RS_KV_CAPACITY | RS_KV_USAGE | RS_GEN_TOKENS | RS_TTFT | RS_MODELS);
  assert_dbl(st.waiting, 0);               /* tgi_queue_size */
  assert_dbl(st.running, 0);               /* tgi_batch_current_size */
  assert_dbl(st.prompt_tokens_total, 662); /* tgi_request_input_length_sum */
  assert_dbl(st.queue_time_s_total, 295.275961956);
  assert_dbl(st.queued_requests_total, 109);

  /* with /info first (the endpoint order): budget from max_batch_total_tokens */
  runtime_state_init(&st);
  parse_str(RT_KIND_TGI, RT_EP_TGI_INFO, tgi_info, &st);
  static const char *const models[] = {"bigscience/bloom-560m"};
  assert_names(st.models, st.nmodels, models, 1);
  assert_int_equal(st.max_seq_tokens, 2048);
  assert_int_equal(st.kv_capacity_tokens, 16000);
  size_t len;
  char *b = fixture_load("tgi.metrics.txt", &len, 0);
  assert_int_equal(runtime_parse(RT_KIND_TGI, RT_EP_METRICS, 200, b, len, &st), 0);
  free(b);
  assert_have(st, RS_KV_USAGE);
  assert_dbl(st.kv_usage, 0); /* tgi_batch_current_max_tokens 0 of 16000 */

  /* a newer scrape with the gauge: it wins over /info */
  parse_str(RT_KIND_TGI, RT_EP_METRICS,
            "tgi_batch_max_total_tokens 20000\ntgi_batch_current_max_tokens 5000\ntgi_queue_size 2\n"
            "tgi_request_generated_tokens_sum 900\n",
            &st);
  assert_int_equal(st.kv_capacity_tokens, 20000);
  assert_dbl(st.kv_usage, 0.25);
  assert_dbl(st.waiting, 2);
  assert_dbl(st.generation_tokens_total, 900);
}

/* llama.cpp ------------------------------------------------------------------------------------------------
 */

/* GET /slots as documented in llama.cpp tools/server/README.md ("GET /slots: Returns the current slots
 * processing state"), two slots, params shortened; slot 1 is busy. */
static const char llamacpp_slots[] =
    "[{\"id\":0,\"id_task\":-1,\"n_ctx\":4096,\"speculative\":false,\"is_processing\":false,"
    "\"params\":{\"n_predict\":-1,\"seed\":4294967295,\"temperature\":0.8,\"top_k\":40,\"top_p\":0.95,"
    "\"stop\":[],\"stream\":true},\"prompt\":\"\",\"next_token\":{\"has_next_token\":true,"
    "\"has_new_line\":false,\"n_remain\":-1,\"n_decoded\":0,\"stopping_word\":\"\"}},"
    "{\"id\":1,\"id_task\":12,\"n_ctx\":4096,\"speculative\":false,\"is_processing\":true,"
    "\"n_prompt_tokens_processed\":1000,"
    "\"params\":{\"n_predict\":256,\"seed\":4294967295,\"temperature\":0.8,\"top_k\":40,\"top_p\":0.95,"
    "\"stop\":[],\"stream\":true},\"prompt\":\"\",\"next_token\":{\"has_next_token\":true,"
    "\"has_new_line\":false,\"n_remain\":232,\"n_decoded\":24,\"stopping_word\":\"\"}}]";

static void test_llamacpp_fixture(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_LLAMACPP, RT_EP_METRICS, "llamacpp.metrics.txt", &st);
  assert_have(st, RS_PROMPT_TOKENS | RS_GEN_TOKENS);
  assert_lacks(st, RS_WAITING | RS_RUNNING | RS_KV_USAGE | RS_PROMPT_TPS);
  assert_dbl(st.prompt_tokens_total, 143);
  assert_dbl(st.generation_tokens_total, 673); /* tokens_predicted_total */

  parse_str(RT_KIND_LLAMACPP, RT_EP_SLOTS, llamacpp_slots, &st);
  assert_have(st, RS_KV_USAGE | RS_KV_CAPACITY | RS_RUNNING | RS_MAX_SEQ);
  assert_int_equal(st.kv_capacity_tokens, 8192);
  assert_int_equal(st.max_seq_tokens, 4096);
  assert_dbl(st.kv_usage, 1024.0 / 8192.0); /* 1000 prompt + 24 decoded in the busy slot */
  assert_dbl(st.running, 1);

  /* the full metric set of a --metrics server: gauges, and running from /metrics beats /slots */
  runtime_state_init(&st);
  parse_str(
      RT_KIND_LLAMACPP, RT_EP_METRICS,
      "llamacpp:requests_processing 2\nllamacpp:requests_deferred 5\nllamacpp:prompt_tokens_seconds 812.5\n"
      "llamacpp:predicted_tokens_seconds 41.25\n",
      &st);
  parse_str(RT_KIND_LLAMACPP, RT_EP_SLOTS, llamacpp_slots, &st);
  assert_dbl(st.running, 2);
  assert_dbl(st.waiting, 5);
  assert_dbl(st.prompt_tps_gauge, 812.5);
  assert_dbl(st.gen_tps_gauge, 41.25);
  struct runtime_rates r;
  runtime_rates(NULL, &st, 0, &r);
  assert_have(r, RR_PROMPT_TPS | RR_GEN_TPS);
  assert_dbl(r.gen_tps, 41.25);

  /* older builds: n_past; and no token count at all: a busy slot holds its n_ctx */
  runtime_state_init(&st);
  parse_str(RT_KIND_LLAMACPP, RT_EP_SLOTS,
            "[{\"id\":0,\"n_ctx\":2048,\"is_processing\":true,\"n_past\":512},"
            "{\"id\":1,\"n_ctx\":2048,\"is_processing\":true}]",
            &st);
  assert_dbl(st.kv_usage, (512.0 + 2048.0) / 4096.0);

  /* upstream llama-server of 2025-07 (../shared/runtimes/llama.cpp), captured while busy: no token counts but
   * next_token.n_decoded and the prompt's text (27 bytes: ~7 tokens) */
  runtime_state_init(&st);
  parse_str(
      RT_KIND_LLAMACPP, RT_EP_SLOTS,
      "[{\"id\":0,\"id_task\":-1,\"n_ctx\":1024,\"speculative\":false,\"is_processing\":false,"
      "\"prompt\":\"\",\"next_token\":{\"has_next_token\":true,\"has_new_line\":false,\"n_remain\":-1,"
      "\"n_decoded\":0,\"stopping_word\":\"\"}},{\"id\":1,\"id_task\":0,\"n_ctx\":1024,"
      "\"speculative\":false,\"is_processing\":true,\"prompt\":\"<s> hello hello hello hello\","
      "\"next_token\":{\"has_next_token\":true,\"has_new_line\":false,\"n_remain\":983,\"n_decoded\":517,"
      "\"stopping_word\":\"\"}}]",
      &st);
  assert_int_equal(st.kv_capacity_tokens, 2048);
  assert_dbl(st.kv_usage, (7.0 + 517.0) / 2048.0);
  assert_dbl(st.running, 1);

  /* /health 503 while the model loads */
  assert_int_equal(runtime_parse(RT_KIND_LLAMACPP, RT_EP_HEALTH, 503, "{\"error\":{\"code\":503}}", 22, &st),
                   0);
  assert_false(st.healthy);
  assert_true(st.loading);
}

/* Triton ---------------------------------------------------------------------------------------------------
 */

static void test_triton_fixture(void **state) {
  (void)state;
  static struct runtime_state st, next;
  parse_fixture(RT_KIND_TRITON, RT_EP_METRICS, "triton.metrics.txt", &st);
  assert_have(st, RS_WAITING | RS_QUEUE_TIME | RS_VRAM | RS_MODELS);
  assert_lacks(st, RS_RUNNING | RS_KV_USAGE);
  assert_dbl(st.waiting, 0); /* nv_inference_pending_request_count, 8 models, all 0 */
  assert_dbl(st.queue_time_s_total, 145e-6);
  assert_dbl(st.queued_requests_total, 3);
  assert_int_equal(st.vram_bytes, 266338304);
  assert_int_equal(st.nmodels, 8);
  assert_string_equal(st.models[0], "simple_string");
  assert_string_equal(st.models[4], "densenet_onnx");

  /* mean queue time over a window: delta over delta */
  next = st;
  next.queue_time_s_total += 0.5;
  next.queued_requests_total += 100;
  struct runtime_rates r;
  assert_int_equal(runtime_rates(&st, &next, 1.0, &r), 0);
  assert_have(r, RR_QUEUE_TIME);
  assert_near(r.queue_time_mean_s, 0.005);

  /* readiness from POST /v2/repository/index replaces the metric-derived list */
  parse_str(RT_KIND_TRITON, RT_EP_TRITON_INDEX,
            "[{\"name\":\"densenet_onnx\",\"version\":\"1\",\"state\":\"READY\"},"
            "{\"name\":\"simple\",\"version\":\"1\",\"state\":\"UNAVAILABLE\",\"reason\":\"unloaded\"},"
            "{\"name\":\"ensemble\"}]",
            &st);
  static const char *const ready[] = {"densenet_onnx"};
  static const char *const avail[] = {"densenet_onnx", "simple", "ensemble"};
  assert_names(st.models, st.nmodels, ready, 1);
  assert_names(st.available, st.navailable, avail, 3);
}

/* Ollama ---------------------------------------------------------------------------------------------------
 */

static void test_ollama_fixture(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_OLLAMA, RT_EP_OLLAMA_PS, "ollama.api_ps.json.txt", &st);
  static const char *const loaded[] = {"mistral:latest"};
  assert_names(st.models, st.nmodels, loaded, 1);
  assert_have(st, RS_VRAM | RS_MODELS);
  assert_int_equal(st.vram_bytes, 5137025024LL);
  size_t len;
  char *b = fixture_load("ollama.api_tags.json.txt", &len, FIXTURE_SKIP_SOURCE);
  assert_int_equal(runtime_parse(RT_KIND_OLLAMA, RT_EP_OLLAMA_TAGS, 200, b, len, &st), 0);
  free(b);
  static const char *const tags[] = {"deepseek-r1:latest", "llama3.2:latest"};
  assert_names(st.available, st.navailable, tags, 2);
  assert_int_equal(st.nmodels, 1); /* tags do not touch the loaded list */
  assert_lacks(st, RS_WAITING | RS_RUNNING | RS_KV_USAGE);
}

/* Window math ----------------------------------------------------------------------------------------------
 */

static void test_rates_window(void **state) {
  (void)state;
  static struct runtime_state prev, cur;
  parse_fixture(RT_KIND_VLLM, RT_EP_METRICS, "vllm.metrics.txt", &prev);
  cur = prev;
  cur.prompt_tokens_total += 100;
  cur.generation_tokens_total += 500;
  cur.prefix_queries += 100;
  cur.prefix_hits += 25;
  /* 10 more TTFT observations in (0.04, 0.06]: every bucket from 0.06 up gains 10 */
  for (int i = 0; i < cur.ttft.n; i++)
    if (cur.ttft.le[i] >= 0.06) cur.ttft.cum[i] += 10;
  cur.ttft.count += 10;
  /* 100 more ITL observations in (0.01, 0.1] */
  cur.itl.cum[1] += 100;
  cur.itl.cum[2] += 100;
  struct runtime_rates r;
  assert_int_equal(runtime_rates(&prev, &cur, 2.0, &r), 0);
  assert_have(r, RR_PROMPT_TPS | RR_GEN_TPS | RR_TTFT | RR_ITL | RR_PREFIX);
  assert_lacks(r, RR_RESET);
  assert_dbl(r.prompt_tps, 50);
  assert_dbl(r.gen_tps, 250);
  assert_dbl(r.prefix_hit_rate, 0.25);
  assert_dbl(r.ttft_count, 10);
  assert_near(r.ttft_p50, 0.05);  /* 0.04 + 0.02 * 5/10 */
  assert_near(r.ttft_p95, 0.059); /* 0.04 + 0.02 * 9.5/10 */
  assert_dbl(r.itl_count, 100);
  assert_near(r.itl_p50, 0.055); /* 0.01 + 0.09 * 50/100 */
  assert_near(r.itl_p95, 0.0955);

  /* no new requests: no quantile (not a stale one) */
  assert_int_equal(runtime_rates(&prev, &prev, 1.0, &r), 0);
  assert_lacks(r, RR_TTFT | RR_ITL | RR_PREFIX);
  assert_have(r, RR_PROMPT_TPS);
  assert_dbl(r.prompt_tps, 0);

  /* restart: counters went back; cur alone is used and the reset is flagged */
  assert_int_equal(runtime_rates(&cur, &prev, 1.0, &r), 0);
  assert_have(r, RR_RESET | RR_TTFT);
  assert_dbl(r.prompt_tps, 5);
  assert_near(r.ttft_p50, 0.375);

  /* bad arguments */
  assert_int_equal(runtime_rates(&prev, &cur, 0, &r), -EINVAL);
  assert_int_equal(runtime_rates(&prev, NULL, 1, &r), -EINVAL);

  /* quantile edge cases */
  struct rs_hist h = {0};
  double q;
  assert_false(rs_hist_quantile(&h, 0.5, &q));
  h.n = 2, h.le[0] = 1, h.le[1] = INFINITY, h.cum[0] = 0, h.cum[1] = 4;
  assert_true(rs_hist_quantile(&h, 0.5, &q));
  assert_dbl(q, 1); /* all in +Inf: the highest finite bound */
  h.n = 1, h.le[0] = INFINITY, h.cum[0] = 4;
  assert_false(rs_hist_quantile(&h, 0.5, &q));
  assert_false(rs_hist_quantile(&h, 1.5, &q));

  /* more buckets than kept (in exposition order, ascending): the +Inf count, everything, survives */
  struct rs_hist big = {0};
  for (int i = 1; i <= RS_HIST_MAX + 10; i++) adapter_hist_add(&big, i, i); /* one observation per bucket */
  adapter_hist_add(&big, INFINITY, RS_HIST_MAX + 10);
  assert_int_equal(big.n, RS_HIST_MAX);
  assert_true(isinf(big.le[big.n - 1]));
  assert_dbl(big.cum[big.n - 1], RS_HIST_MAX + 10);
  assert_true(rs_hist_quantile(&big, 0.5, &q));
  assert_near(q, (RS_HIST_MAX + 10) / 2.0);
  assert_true(rs_hist_quantile(&big, 0.95, &q)); /* past the kept finite bounds: the highest kept */
  assert_true(q >= RS_HIST_MAX - 1);
}

/* Detection ------------------------------------------------------------------------------------------------
 */

static void test_detect(void **state) {
  (void)state;
  static const struct {
    const char *file;
    enum runtime_kind kind;
  } fx[] = {{"vllm.metrics.txt", RT_KIND_VLLM},     {"vllm-v1.issue617.metrics.txt", RT_KIND_VLLM},
            {"sglang.metrics.txt", RT_KIND_SGLANG}, {"sglang-datadog.metrics.txt", RT_KIND_SGLANG},
            {"tgi.metrics.txt", RT_KIND_TGI},       {"llamacpp.metrics.txt", RT_KIND_LLAMACPP},
            {"triton.metrics.txt", RT_KIND_TRITON}};
  const struct rt_probe *p;
  int n = runtime_detect_probes(&p);
  assert_int_equal(n, 8);
  assert_string_equal(p[0].path, "/metrics");
  for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
    size_t len;
    char *b = fixture_load(fx[i].file, &len, 0);
    enum runtime_kind k = RT_KIND_OLLAMA;
    assert_true(runtime_detect(0, 200, b, len, &k));
    assert_int_equal(k, fx[i].kind);
    assert_false(runtime_detect(0, 404, b, len, &k)); /* an error page is no evidence */
    free(b);
  }
  enum runtime_kind k;
  size_t len;
  char *b = fixture_load("ollama.api_tags.json.txt", &len, FIXTURE_SKIP_SOURCE);
  assert_true(runtime_detect(1, 200, b, len, &k));
  assert_int_equal(k, RT_KIND_OLLAMA);
  free(b);
  b = fixture_load("dcgm-exporter.metrics.txt", &len, 0);
  assert_false(runtime_detect(0, 200, b, len, &k)); /* metrics, but no runtime's */
  free(b);
  assert_true(runtime_detect(2, 200, "", 0, &k));
  assert_int_equal(k, RT_KIND_TRITON);
  assert_true(runtime_detect(3, 200, tgi_info, strlen(tgi_info), &k));
  assert_int_equal(k, RT_KIND_TGI);
  assert_true(runtime_detect(5, 200, llamacpp_slots, strlen(llamacpp_slots), &k));
  assert_int_equal(k, RT_KIND_LLAMACPP);
  const char *props = "{\"default_generation_settings\":{\"n_ctx\":4096},\"total_slots\":2}";
  assert_true(runtime_detect(4, 200, props, strlen(props), &k));
  assert_int_equal(k, RT_KIND_LLAMACPP);
  const char *info =
      "{\"model_path\":\"Qwen/Qwen2-7B\",\"tokenizer_path\":\"Qwen/Qwen2-7B\",\"is_generation\":true}";
  assert_true(runtime_detect(6, 200, info, strlen(info), &k));
  assert_int_equal(k, RT_KIND_SGLANG);
  const char *models = "{\"object\":\"list\",\"data\":[{\"id\":\"m\",\"owned_by\":\"vllm\"}]}";
  assert_true(runtime_detect(7, 200, models, strlen(models), &k));
  assert_int_equal(k, RT_KIND_VLLM);
  const char *other = "{\"object\":\"list\",\"data\":[{\"id\":\"m\",\"owned_by\":\"sglang\"}]}";
  assert_false(runtime_detect(7, 200, other, strlen(other), &k));
  for (int i = 0; i < n; i++) {
    assert_false(runtime_detect(i, 200, "<html>nope</html>", 17, &k) && i != 2);
    assert_false(runtime_detect(i, 500, "{}", 2, &k));
  }
  assert_false(runtime_detect(99, 200, "{}", 2, &k));
}

/* Junk -----------------------------------------------------------------------------------------------------
 */

static void test_malformed(void **state) {
  (void)state;
  static const char *const junk[] = {
      "",
      "{",
      "not json",
      "[1,2,3]",
      "{\"data\":5}",
      "{\"models\":[{\"name\":7}]}",
      "{\"a\":1,\"a\":2}",
      "[{\"n_ctx\":\"big\"}]",
      "[{\"n_ctx\":-4,\"is_processing\":true}]",
      "[{\"name\":\"\"}]",
      "vllm:num_requests_waiting{model_name=\"m\" 1\n",
      "sglang:token_usage 1 2 3 4\n",
      "tgi_queue_size{le=\"x\"}\n",
      "nv_inference_pending_request_count{model=\"m\",} x\n",
      "\x01\x02\xff{[",
  };
  typedef int (*parse_fn)(const char *, size_t, struct runtime_state *);
  static const parse_fn fns[] = {adapter_vllm_metrics,     adapter_sglang_metrics, adapter_tgi_metrics,
                                 adapter_llamacpp_metrics, adapter_triton_metrics, adapter_openai_models,
                                 adapter_tgi_info,         adapter_llamacpp_slots, adapter_triton_index,
                                 adapter_ollama_ps,        adapter_ollama_tags};
  static struct runtime_state st, before;
  runtime_state_init(&st);
  parse_str(RT_KIND_VLLM, RT_EP_METRICS, vllm_dp, &st);
  before = st;
  for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++)
    for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++) {
      int rc = fns[f](junk[j], strlen(junk[j]), &st);
      if (rc == 0) fail_msg("parser %zu accepted junk %zu: %s", f, j, junk[j]);
      assert_memory_equal(&st, &before, sizeof st); /* a failed parse changes nothing */
    }
  /* metrics of another runtime: not this kind */
  size_t len;
  char *b = fixture_load("tgi.metrics.txt", &len, 0);
  assert_int_equal(adapter_vllm_metrics(b, len, &st), -ENOENT);
  assert_int_equal(adapter_sglang_metrics(b, len, &st), -ENOENT);
  free(b);
  /* status and endpoint checks */
  assert_int_equal(runtime_parse(RT_KIND_VLLM, RT_EP_METRICS, 500, "x", 1, &st), -EPROTO);
  assert_int_equal(runtime_parse(RT_KIND_VLLM, RT_EP_SLOTS, 200, "[]", 2, &st), -EINVAL);
  assert_int_equal(runtime_parse(RT_KIND_OLLAMA, RT_EP_METRICS, 200, "", 0, &st), -EINVAL);
  assert_int_equal(runtime_parse(RT_KIND_OLLAMA, RT_EP_OLLAMA_PS, 200, NULL, 0, &st), IM_EPARSE);
  assert_memory_equal(&st, &before, sizeof st);
}

/* Name lists are bounded; duplicates are merged. */
static void test_bounded_lists(void **state) {
  (void)state;
  static struct runtime_state st;
  struct buf b = {0};
  buf_puts(&b, "{\"models\":[");
  for (int i = 0; i < 40; i++)
    buf_printf(&b, "%s{\"name\":\"m%d\"},{\"name\":\"m%d\"}", i ? "," : "", i, i);
  buf_puts(&b, ",{\"name\":\"");
  for (int i = 0; i < 300; i++)
    buf_puts(&b, "x");
  buf_puts(&b, "\"}]}");
  runtime_state_init(&st);
  assert_int_equal(adapter_ollama_tags(b.base, b.len, &st), 0);
  assert_int_equal(st.navailable, RS_MAX_NAMES);
  /* 16 distinct stored; past that, repeats cannot be told apart: 24 names twice + the long one */
  assert_int_equal(st.navailable_total, 16 + 48 + 1);
  assert_string_equal(st.available[15], "m15");
  buf_free(&b);
}

static void test_state_json(void **state) {
  (void)state;
  static struct runtime_state st;
  parse_fixture(RT_KIND_VLLM, RT_EP_METRICS, "vllm.metrics.txt", &st);
  struct runtime_rates r;
  runtime_rates(NULL, &st, 0, &r);
  struct buf b = {0};
  runtime_state_json(&st, &r, RT_KIND_VLLM, &b);
  json_error_t jerr;
  json_t *j = json_loadb(b.base, b.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!j) fail_msg("not JSON (%s): %s", jerr.text, b.base);
  assert_string_equal(json_string_value(json_object_get(j, "runtime")), "vllm");
  assert_dbl(json_number_value(json_object_get(j, "kv_capacity_tokens")), 116496);
  assert_dbl(json_number_value(json_object_get(j, "prefix_hits")), 64);
  assert_true(json_is_null(json_object_get(j, "healthy")));
  assert_true(json_is_null(json_object_get(j, "lora")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(j, "models"), 0)),
                      "facebook/opt-125m");
  assert_dbl(json_number_value(json_object_get(json_object_get(j, "window"), "ttft_p50_s")), 0.375);
  json_decref(j);
  buf_free(&b);
}

/* Control requests -----------------------------------------------------------------------------------------
 */

static void expect_ctl(enum runtime_kind k, enum rt_control_op op, const char *name, const char *lora_path,
                       const char *want_path, const char *want_body) {
  const char *method = NULL;
  char path[128];
  struct buf b = {0};
  int rc = runtime_control_request(k, op, name, lora_path, &method, path, sizeof path, &b);
  if (rc) fail_msg("%s op %d: rc %d", runtime_kind_name(k), (int)op, rc);
  assert_string_equal(method, "POST");
  assert_string_equal(path, want_path);
  assert_string_equal(b.base, want_body);
  buf_free(&b);
}

static void test_control(void **state) {
  (void)state;
  expect_ctl(RT_KIND_VLLM, RT_CTL_LOAD_LORA, "sql", "/loras/sql", "/v1/load_lora_adapter",
             "{\"lora_name\":\"sql\",\"lora_path\":\"/loras/sql\"}");
  expect_ctl(RT_KIND_VLLM, RT_CTL_UNLOAD_LORA, "sql", NULL, "/v1/unload_lora_adapter",
             "{\"lora_name\":\"sql\"}");
  expect_ctl(RT_KIND_SGLANG, RT_CTL_LOAD_LORA, "a\"b", "/p", "/load_lora_adapter",
             "{\"lora_name\":\"a\\\"b\",\"lora_path\":\"/p\"}");
  expect_ctl(RT_KIND_LLAMACPP, RT_CTL_LOAD_MODEL, "qwen", NULL, "/models/load", "{\"model\":\"qwen\"}");
  expect_ctl(RT_KIND_TRITON, RT_CTL_UNLOAD_MODEL, "densenet_onnx", NULL,
             "/v2/repository/models/densenet_onnx/unload", "{}");
  expect_ctl(RT_KIND_OLLAMA, RT_CTL_LOAD_MODEL, "llama3.2:latest", NULL, "/api/generate",
             "{\"model\":\"llama3.2:latest\"}");
  expect_ctl(RT_KIND_OLLAMA, RT_CTL_UNLOAD_MODEL, "llama3.2:latest", NULL, "/api/generate",
             "{\"model\":\"llama3.2:latest\",\"keep_alive\":0}");
  const char *method;
  char path[128];
  struct buf b = {0};
  assert_int_equal(
      runtime_control_request(RT_KIND_TGI, RT_CTL_LOAD_MODEL, "m", NULL, &method, path, sizeof path, &b),
      -ENOTSUP);
  assert_int_equal(
      runtime_control_request(RT_KIND_VLLM, RT_CTL_LOAD_MODEL, "m", NULL, &method, path, sizeof path, &b),
      -ENOTSUP);
  assert_int_equal(
      runtime_control_request(RT_KIND_OLLAMA, RT_CTL_LOAD_LORA, "m", "/p", &method, path, sizeof path, &b),
      -ENOTSUP);
  assert_int_equal(
      runtime_control_request(RT_KIND_VLLM, RT_CTL_LOAD_LORA, "m", NULL, &method, path, sizeof path, &b),
      -EINVAL);
  assert_int_equal(runtime_control_request(RT_KIND_TRITON, RT_CTL_LOAD_MODEL, "../x", NULL, &method, path,
                                           sizeof path, &b),
                   -EINVAL);
  assert_int_equal(
      runtime_control_request(RT_KIND_TRITON, RT_CTL_LOAD_MODEL, "", NULL, &method, path, sizeof path, &b),
      -EINVAL);
  assert_int_equal(
      runtime_control_request(RT_KIND_LLAMACPP, RT_CTL_LOAD_MODEL, "m", NULL, &method, path, 4, &b), -EINVAL);
  assert_int_equal(b.len, 0); /* nothing appended on failure */
}

/* The live /v1/models parser refuses what is not an OpenAI model list, and keeps st unchanged then. */
static void test_openai_models_malformed(void **state) {
  static const char *const bad[] = {
      "", "not json", "{\"data\":[{\"id\":\"a\"}]", "[]", "{\"object\":\"list\"}",
      "{\"object\":\"list\",\"data\":{}}", "{\"data\":[{\"id\":\"a\"},{\"name\":\"b\"}]}",
      "{\"data\":[{\"id\":7}]}", "{\"data\":[{\"id\":\"\"}]}", "{\"data\":[\"a\"]}",
      "{\"data\":[],\"data\":[{\"id\":\"a\"}]}", "{\"data\":[{\"id\":\"a\",\"id\":\"b\"}]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct runtime_state st, before;
    runtime_state_init(&st);
    st.waiting = 3; /* something earlier endpoints filled */
    before = st;
    int rc = adapter_openai_models(bad[i], strlen(bad[i]), &st);
    if (rc == 0) fail_msg("accepted: %s", bad[i]);
    if (memcmp(&st, &before, sizeof st) != 0) fail_msg("changed the state: %s", bad[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_openai_models_malformed),
      cmocka_unit_test(test_kinds),
      cmocka_unit_test(test_vllm_fixture),
      cmocka_unit_test(test_vllm_v1_engine_label),
      cmocka_unit_test(test_vllm_dp_lora),
      cmocka_unit_test(test_sglang_fixture),
      cmocka_unit_test(test_sglang_tp_rank),
      cmocka_unit_test(test_tgi_fixture),
      cmocka_unit_test(test_llamacpp_fixture),
      cmocka_unit_test(test_triton_fixture),
      cmocka_unit_test(test_ollama_fixture),
      cmocka_unit_test(test_rates_window),
      cmocka_unit_test(test_detect),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_bounded_lists),
      cmocka_unit_test(test_state_json),
      cmocka_unit_test(test_control),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
