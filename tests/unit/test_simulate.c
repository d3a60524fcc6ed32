/* The routing simulator: trace parsing, span -> block-hash mapping, generators, determinism, policy ordering. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "sim/des.h"
#include "sim/engine.h"
#include "state/policy.h"
#include "sim/workload.h"

static int parse(struct workload *w, const char *line, char *err, size_t errlen) {
  return trace_parse_line(w, line, strlen(line), 7, err, errlen);
}

/* ---- trace lines ---- */

static void test_trace_good_lines(void **state) {
  (void)state;
  struct workload w;
  workload_init(&w);
  char err[256] = "";
  assert_int_equal(parse(&w, "{\"timestamp\": 1500, \"input_length\": 1100, \"output_length\": 7, "
                             "\"hash_ids\": [4, 9, 2]}\n", err, sizeof err), 0);
  assert_int_equal(w.n, 1);
  struct wl_req *r = &w.reqs[0];
  assert_int_equal(r->t_ns, 1500ull * 1000000ull);
  assert_int_equal(r->prompt_tokens, 1100);
  assert_int_equal(r->output_tokens, 7);
  assert_int_equal(r->nspans, 3);
  assert_int_equal(w.spans[r->span0 + 0].id, WL_ID_TRACE | 4);
  assert_int_equal(w.spans[r->span0 + 0].tokens, 512);
  assert_int_equal(w.spans[r->span0 + 2].tokens, 1100 - 1024); /* the last block is partial */
  /* Blank lines add nothing; extra keys are ignored; surplus ids beyond input_length are dropped; output 0
   * becomes 1; input beyond the ids is unique content. */
  assert_int_equal(parse(&w, "   \r\n", err, sizeof err), 0);
  assert_int_equal(w.n, 1);
  assert_int_equal(parse(&w, "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 0, \"hash_ids\": [1, 2, 3],"
                             " \"note\": \"x\"}", err, sizeof err), 0);
  assert_int_equal(w.reqs[1].nspans, 1);
  assert_int_equal(w.reqs[1].output_tokens, 1);
  assert_int_equal(parse(&w, "{\"timestamp\": 2.0, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [5]}",
                         err, sizeof err), 0);
  assert_int_equal(w.reqs[2].nspans, 2);
  assert_int_equal(w.spans[w.reqs[2].span0 + 1].tokens, 88);
  assert_true(w.spans[w.reqs[2].span0 + 1].id >= WL_ID_UNIQUE);
  workload_free(&w);
}

static void test_trace_bad_lines(void **state) {
  (void)state;
  static const struct {
    const char *line, *want;
  } bad[] = {
      {"{\"timestamp\": 0, \"input_length\": 10", "line 7: invalid JSON"},
      {"[1, 2]", "line 7: expected a JSON object"},
      {"{\"input_length\": 10, \"output_length\": 1, \"hash_ids\": []}", "line 7: missing \"timestamp\""},
      {"{\"timestamp\": -5, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": []}", "line 7: \"timestamp\""},
      {"{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 1, \"hash_ids\": []}", "line 7: \"input_length\""},
      {"{\"timestamp\": 0, \"input_length\": \"10\", \"output_length\": 1, \"hash_ids\": []}",
       "line 7: \"input_length\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1.5, \"hash_ids\": []}", "line 7: \"output_length\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1}", "line 7: missing \"hash_ids\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": 3}", "line 7: \"hash_ids\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1, -2]}",
       "line 7: \"hash_ids\"[1]"},
      {"{\"timestamp\": 0, \"timestamp\": 1, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": []}",
       "line 7: invalid JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct workload w;
    workload_init(&w);
    char err[256] = "";
    int rc = parse(&w, bad[i].line, err, sizeof err);
    if (rc == 0 || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
      fail_msg("line %zu: rc %d, error '%s', want prefix '%s'", i, rc, err, bad[i].want);
    assert_int_equal(w.n, 0);
    workload_free(&w);
  }
}

static void test_trace_file_reports_line_number(void **state) {
  (void)state;
  char path[] = "/tmp/im_trace_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *text = "{\"timestamp\": 10, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [0, 1]}\n"
                     "\n"
                     "{\"timestamp\": 5, \"input_length\": 512, \"output_length\": 5, \"hash_ids\": [0]}\n"
                     "{\"timestamp\": 20, \"input_length\": oops}\n";
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  struct workload w;
  workload_init(&w);
  char err[256] = "";
  assert_int_equal(trace_load(path, 0, &w, err, sizeof err), IM_EPARSE);
  assert_non_null(strstr(err, "line 4:"));
  workload_free(&w);
  /* --limit stops before the bad line; requests come back sorted by time. */
  workload_init(&w);
  assert_int_equal(trace_load(path, 2, &w, err, sizeof err), 0);
  assert_int_equal(w.n, 2);
  assert_int_equal(w.reqs[0].t_ns, 5000000ull);
  assert_int_equal(w.reqs[1].t_ns, 10000000ull);
  workload_free(&w);
  unlink(path);
  assert_int_equal(trace_load(path, 0, &w, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, path));
}

/* ---- span -> engine block hashes ---- */

static void test_block_hash_mapping(void **state) {
  (void)state;
  struct workload w;
  workload_init(&w);
  char err[256];
  /* a and b share hash ids [7, 8] then differ; c repeats a's first block only, as a partial block. */
  assert_int_equal(parse(&w, "{\"timestamp\": 0, \"input_length\": 1536, \"output_length\": 1, \"hash_ids\": [7, 8, 9]}",
                         err, sizeof err), 0);
  assert_int_equal(parse(&w, "{\"timestamp\": 1, \"input_length\": 1536, \"output_length\": 1, \"hash_ids\": [7, 8, 10]}",
                         err, sizeof err), 0);
  assert_int_equal(parse(&w, "{\"timestamp\": 2, \"input_length\": 200, \"output_length\": 1, \"hash_ids\": [7]}",
                         err, sizeof err), 0);
  uint64_t seed = workload_model_seed("m"), ha[96], hb[96], hc[96], hx[96];
  assert_int_equal(workload_block_hashes(&w, &w.reqs[0], seed, 16, ha, 96), 96);
  assert_int_equal(workload_block_hashes(&w, &w.reqs[1], seed, 16, hb, 96), 96);
  assert_int_equal(workload_block_hashes(&w, &w.reqs[2], seed, 16, hc, 96), 12); /* 200 / 16 full blocks */
  for (int i = 0; i < 64; i++)
    assert_true(ha[i] == hb[i]); /* two shared 512-token blocks = 64 engine blocks */
  for (int i = 64; i < 96; i++)
    assert_true(ha[i] != hb[i]);
  for (int i = 0; i < 12; i++)
    assert_true(hc[i] == ha[i]);
  /* Another model, another chain; another block size, other blocks; bounded by MAX. */
  assert_int_equal(workload_block_hashes(&w, &w.reqs[0], workload_model_seed("n"), 16, hx, 96), 96);
  assert_true(hx[0] != ha[0]);
  assert_int_equal(workload_block_hashes(&w, &w.reqs[0], seed, 64, hx, 96), 24);
  assert_int_equal(workload_block_hashes(&w, &w.reqs[0], seed, 16, hx, 10), 10);
  /* A block that straddles two trace blocks (block size 24 does not divide 512) still matches as far as
   * the ids agree. */
  uint64_t sa[64], sb[64];
  assert_int_equal(workload_block_hashes(&w, &w.reqs[0], seed, 24, sa, 64), 64);
  assert_int_equal(workload_block_hashes(&w, &w.reqs[1], seed, 24, sb, 64), 64);
  int same = 0;
  while (same < 64 && sa[same] == sb[same])
    same++;
  assert_int_equal(same, 1024 / 24); /* 42 full 24-token blocks inside the shared 1024 tokens */
  workload_free(&w);
}

static void test_router_hashes_match_engine(void **state) {
  (void)state;
  /* The live router's prompt hashing predicts the simulated engine's prefix-cache blocks exactly. */
  struct sim_profile prof;
  sim_profile_default(&prof);
  char text[5000];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (char)('a' + (i * 7 + i / 13) % 26);
  uint64_t a[128], b[128];
  int na = sim_block_hashes(&prof, text, sizeof text, a, 128);
  int nb = policy_prompt_hashes(prof.model, text, sizeof text, prof.block_size, b, 128);
  assert_int_equal(na, (int)(sizeof text / 64));
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, (size_t)na * sizeof a[0]);
  assert_int_equal(policy_prompt_hashes(prof.model, text, sizeof text, prof.block_size, b, 3), 3);
  assert_int_equal(policy_prompt_hashes(prof.model, text, 63, prof.block_size, b, 128), 0);
}

/* ---- generators ---- */

static void test_generators(void **state) {
  (void)state;
  enum wl_kind kinds[] = {WL_NO_REUSE, WL_SHARED_PREFIX, WL_MULTI_TURN};
  for (int k = 0; k < 3; k++) {
    struct wl_gen g;
    wl_gen_default(&g, kinds[k]);
    g.n = 300;
    g.rate = 20;
    struct workload a, b;
    workload_init(&a);
    workload_init(&b);
    char err[128];
    assert_int_equal(workload_generate(&g, &a, err, sizeof err), 0);
    assert_int_equal(workload_generate(&g, &b, err, sizeof err), 0);
    assert_int_equal(a.n, 300);
    assert_int_equal(a.nspans, b.nspans);
    for (size_t i = 0; i < a.n; i++) {
      assert_memory_equal(&a.reqs[i], &b.reqs[i], sizeof a.reqs[i]);
      if (i) assert_true(a.reqs[i].t_ns >= a.reqs[i - 1].t_ns);
    }
    double span_s = (double)a.reqs[a.n - 1].t_ns / 1e9;
    if (kinds[k] != WL_MULTI_TURN) /* (sessions' later turns arrive long after the last session starts) */
      assert_true(span_s > 300 / 20.0 * 0.6 && span_s < 300 / 20.0 * 1.6); /* the mean rate holds */
    workload_free(&b);
    if (kinds[k] == WL_MULTI_TURN) {
      /* Some request's prompt extends an earlier one of its session: all of the earlier spans, then more. */
      int found = 0;
      for (size_t i = 0; i < a.n && !found; i++)
        for (size_t j = 0; j < a.n && !found; j++) {
          const struct wl_req *x = &a.reqs[i], *y = &a.reqs[j];
          if (y->nspans <= x->nspans || a.spans[x->span0].id != a.spans[y->span0].id || x->nspans < 2) continue;
          if (a.spans[x->span0 + 1].id != a.spans[y->span0 + 1].id) continue;
          found = y->t_ns > x->t_ns && y->prompt_tokens > x->prompt_tokens;
        }
      assert_true(found);
    }
    workload_free(&a);
  }
  struct wl_gen g;
  wl_gen_default(&g, WL_SHARED_PREFIX);
  g.groups = 0;
  struct workload w;
  workload_init(&w);
  char err[128] = "";
  assert_int_equal(workload_generate(&g, &w, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "shared-prefix"));
  enum wl_kind kind;
  assert_int_equal(wl_kind_parse("multi-turn", &kind), 0);
  assert_int_equal(kind, WL_MULTI_TURN);
  assert_int_equal(wl_kind_parse("sharded-prefix", &kind), -EINVAL);
  workload_free(&w);
}

/* ---- the simulator ---- */

/* A small cluster whose KV pool (64k tokens per engine) cannot hold every shared prefix (64 x 2048 tokens)
 * but four of them together can: where to send a prefix matters. */
static void small_cluster(struct des_config *c) {
  des_config_default(c);
  c->prof.num_gpu_blocks = 4096;
  c->prof.max_num_seqs = 64;
  c->prof.max_model_len = 16384;
  c->nengines = 4;
  c->slo_ttft_ns = 500ull * 1000000ull;
}

static void shared_prefix(struct workload *w, int n, double rate, uint64_t seed) {
  struct wl_gen g;
  wl_gen_default(&g, WL_SHARED_PREFIX);
  g.n = n, g.rate = rate, g.seed = seed;
  g.groups = 64, g.system_tokens = 2048;
  g.prompt_min = 64, g.prompt_max = 128, g.output_min = 32, g.output_max = 64;
  workload_init(w);
  char err[128];
  assert_int_equal(workload_generate(&g, w, err, sizeof err), 0);
}

static void run(const struct des_config *c, const struct workload *w, struct des_result *r) {
  char err[256] = "";
  int rc = des_run(c, w, r, err, sizeof err);
  if (rc) fail_msg("des_run: %s", err);
  assert_int_equal(r->completed, w->n);
}

static void test_des_deterministic(void **state) {
  (void)state;
  struct des_config c;
  small_cluster(&c);
  c.nrouters = 2;
  struct workload w, w2;
  shared_prefix(&w, 600, 60, 1);
  shared_prefix(&w2, 600, 60, 2);
  const char *pol[] = {"ours", "power-of-two"};
  for (int p = 0; p < 2; p++) {
    c.policy = pol[p];
    struct des_result a, b, d, e;
    run(&c, &w, &a);
    run(&c, &w, &b);
    assert_true(a.ttft_p50 == b.ttft_p50 && a.ttft_p99 == b.ttft_p99 && a.e2e_p90 == b.e2e_p90);
    assert_true(a.prefix_hit_rate == b.prefix_hit_rate && a.events == b.events);
    for (int i = 0; i < a.nengines; i++)
      assert_int_equal(a.engines[i].requests, b.engines[i].requests);
    /* Another routing seed, same workload: other choices. Another workload seed: other requests. */
    c.seed = 2;
    run(&c, &w, &d);
    c.seed = 1;
    run(&c, &w2, &e);
    int differs = 0;
    for (int i = 0; i < a.nengines; i++)
      differs |= a.engines[i].requests != d.engines[i].requests;
    assert_true(differs || a.ttft_p90 != d.ttft_p90);
    assert_true(a.ttft_p90 != e.ttft_p90 || a.e2e_p50 != e.e2e_p50);
    des_result_free(&a);
    des_result_free(&b);
    des_result_free(&d);
    des_result_free(&e);
  }
  workload_free(&w);
  workload_free(&w2);
  /* Bad configuration is an error, not a crash. */
  struct des_result r;
  char err[128] = "";
  c.policy = "no-such-policy";
  shared_prefix(&w, 10, 10, 1);
  assert_int_equal(des_run(&c, &w, &r, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "no-such-policy"));
  c.policy = "ours";
  c.nengines = 0;
  assert_int_equal(des_run(&c, &w, &r, err, sizeof err), -EINVAL);
  workload_free(&w);
}

/* Mooncake-style bucketed timestamps: requests sharing one are spread evenly over the bucket (the median gap
 * between distinct timestamps), never past the next distinct timestamp; lone requests do not move. */
static void test_spread_bursts(void **state) {
  (void)state;
  struct workload w;
  workload_init(&w);
  struct wl_span sp = {.id = WL_ID_TRACE | 1, .tokens = 512};
  const uint64_t ms = 1000000ull;
  const uint64_t at[] = {0, 0, 0, 3000, 3000, 3000, 6000, 12000, 12000};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
    workload_add(&w, at[i] * ms, 512, 8, 0, &sp, 1);
  workload_sort(&w);
  assert_int_equal(workload_spread_bursts(&w), 5);
  const uint64_t want[] = {0, 1000, 2000, 3000, 4000, 5000, 6000, 12000, 13500};
  for (size_t i = 0; i < w.n; i++)
    assert_int_equal(w.reqs[i].t_ns, want[i] * ms);
  assert_int_equal(workload_spread_bursts(&w), 0); /* nothing shares a timestamp any more */
  workload_free(&w);
}

/* Time per output token, goodput under a joint TTFT + TPOT SLO, the max_tokens budget policies see and the
 * per-policy metrics refresh. */
static void test_des_tpot_joint_slo_and_refresh(void **state) {
  (void)state;
  struct des_config c;
  small_cluster(&c);
  c.slo_ttft_ns = 10ull * 1000000000ull;
  struct workload w;
  shared_prefix(&w, 400, 30, 1);
  struct des_result a, b, d;
  run(&c, &w, &a);
  assert_true(a.tpot_p50 > 0.005 && a.tpot_p50 <= a.tpot_p90 && a.tpot_p90 <= a.tpot_p99);
  assert_true(a.tpot_mean > 0 && a.tpot_p99 < a.e2e_p99);
  assert_true(a.goodput_rps > 0);
  assert_int_equal(a.max_tokens, 64); /* the workload's largest output, for every request */
  assert_int_equal(a.report_interval_ns, c.report_interval_ns);
  c.slo_tpot_ns = 1000000000ull; /* a loose TPOT objective changes nothing */
  run(&c, &w, &b);
  assert_true(b.goodput_rps == a.goodput_rps);
  c.slo_tpot_ns = 1000000ull; /* 1 ms per token: no engine step is that short */
  run(&c, &w, &d);
  assert_true(d.goodput_rps == 0 && d.slo_attainment == 0);
  assert_true(d.ttft_p90 == a.ttft_p90); /* same run, judged differently */
  des_result_free(&a);
  des_result_free(&b);
  des_result_free(&d);
  /* llm-d refreshes its metrics at its EPP default with upstream_refresh; ours keeps the agent's scrape. */
  c.slo_tpot_ns = 0;
  c.upstream_refresh = 1;
  c.policy = "llm-d";
  run(&c, &w, &a);
  assert_int_equal(a.report_interval_ns, 50ull * 1000000ull);
  c.policy = "ours";
  run(&c, &w, &b);
  assert_int_equal(b.report_interval_ns, c.report_interval_ns);
  des_result_free(&a);
  des_result_free(&b);
  workload_free(&w);
}

static void test_cache_aware_beats_round_robin_near_saturation(void **state) {
  (void)state;
  struct des_config c;
  small_cluster(&c);
  struct workload w;
  shared_prefix(&w, 2000, 90, 1); /* ~90 req/s: round robin's knee on this cluster */
  struct des_result rr, sg, ours, light;
  c.policy = "round-robin";
  run(&c, &w, &rr);
  c.policy = "sglang";
  run(&c, &w, &sg);
  c.policy = "ours";
  run(&c, &w, &ours);
  /* Cache-aware routing keeps far more of the prompts cached, and so meets the SLO for more requests. */
  assert_true(sg.prefix_hit_rate > rr.prefix_hit_rate + 0.15);
  assert_true(ours.prefix_hit_rate > rr.prefix_hit_rate + 0.15);
  assert_true(sg.goodput_rps > 1.2 * rr.goodput_rps);
  assert_true(ours.goodput_rps > 1.2 * rr.goodput_rps);
  assert_true(ours.ttft_p90 < rr.ttft_p90);
  /* At a light load everyone meets the SLO. */
  struct workload wl;
  shared_prefix(&wl, 300, 10, 1);
  c.policy = "round-robin";
  run(&c, &wl, &light);
  assert_true(light.slo_attainment > 0.99);
  assert_true(light.imbalance_requests < 1.1); /* round robin: equal request counts */
  des_result_free(&rr);
  des_result_free(&sg);
  des_result_free(&ours);
  des_result_free(&light);
  workload_free(&w);
  workload_free(&wl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trace_good_lines),
      cmocka_unit_test(test_trace_bad_lines),
      cmocka_unit_test(test_trace_file_reports_line_number),
      cmocka_unit_test(test_block_hash_mapping),
      cmocka_unit_test(test_router_hashes_match_engine),
      cmocka_unit_test(test_generators),
      cmocka_unit_test(test_des_deterministic),
      cmocka_unit_test(test_cache_aware_beats_round_robin_near_saturation),
      cmocka_unit_test(test_spread_bursts),
      cmocka_unit_test(test_des_tpot_joint_slo_and_refresh),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
