/* Routing policies and the prefix index: decisions on hand-built states. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/policy.h"
#include "state/prefix_index.h"

#define BS 16
#define MAXB 1024

/* A prompt made of blocks: block i of "prefix family" f hashes to chain(f, i), so prompts of the same family
 * share a prefix as long as they share the family for those blocks. */
struct prompt {
  uint64_t h[MAXB];
  int n, tokens;
};

/* make_prompt: the first SHARED blocks come from family F (a shared prefix), the next UNIQUE blocks from
 * family U (the request's own part); hashes are chained like sim_block_hashes. */
static void make_prompt(struct prompt *p, uint64_t f, int shared, uint64_t u, int unique) {
  uint64_t h = 0x1234;
  p->n = shared + unique;
  for (int i = 0; i < p->n; i++) {
    uint64_t fam = i < shared ? f : u;
    h = (h ^ (fam * 0x9E3779B97F4A7C15ull + (uint64_t)i)) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    p->h[i] = h;
  }
  p->tokens = p->n * BS + 1; /* a partial last block: every full block is cacheable */
}

static struct policy_req req_of(const struct prompt *p) {
  return (struct policy_req){.prompt_tokens = p->tokens, .max_tokens = 64, .block_hashes = p->h, .nblocks = p->n,
                             .block_size = BS, .tenant = -1};
}

static void targets(struct policy_target *c, int n) {
  for (int i = 0; i < n; i++)
    c[i] = (struct policy_target){.id = i, .kv_usage = 0, .num_gpu_blocks = 4096, .block_size = BS,
                                  .prefix_hit_rate = -1, .prefill_tps = 20000};
}

/* route: pick, then commit like a router does; returns the chosen target id. */
static int route(struct policy *p, const struct policy_req *r, struct policy_target *c, int n,
                 struct policy_ticket *tk) {
  int k = policy_pick(p, r, c, n, 1000);
  policy_on_route(p, r, &c[k], 1000, tk);
  c[k].inflight++;
  return c[k].id;
}

/* ---- prefix index ---- */

static void test_prefix_index_match_and_lru(void **state) {
  (void)state;
  struct prefix_index ix;
  assert_int_equal(prefix_index_init(&ix, 0), -EINVAL);
  assert_int_equal(prefix_index_init(&ix, 10), 0);
  struct prompt a, b;
  make_prompt(&a, 1, 6, 2, 0);
  make_prompt(&b, 1, 4, 3, 2); /* shares a's first 4 blocks */
  assert_int_equal(prefix_index_match(&ix, a.h, a.n), 0);
  prefix_index_insert_path(&ix, a.h, a.n);
  assert_int_equal(prefix_index_size(&ix), 6);
  assert_int_equal(prefix_index_match(&ix, a.h, a.n), 6);
  assert_int_equal(prefix_index_match(&ix, b.h, b.n), 4);
  assert_int_equal(prefix_index_match(&ix, a.h, 3), 3);
  /* b adds 2 blocks: 8 of 10. Another 4-block unique chain makes 12: the 2 least recent go, and they are the
   * deepest blocks of a (a's shared part was refreshed by b), so what stays is still prefix-closed. */
  prefix_index_insert_path(&ix, b.h, b.n);
  struct prompt c;
  make_prompt(&c, 9, 4, 9, 0);
  prefix_index_insert_path(&ix, c.h, c.n);
  assert_int_equal(prefix_index_size(&ix), 10);
  assert_int_equal(prefix_index_match(&ix, a.h, a.n), 4);
  assert_int_equal(prefix_index_match(&ix, b.h, b.n), 6);
  assert_int_equal(prefix_index_match(&ix, c.h, c.n), 4);
  /* Shrinking drops least recent first: b's tail went before c. */
  prefix_index_set_capacity(&ix, 4);
  assert_int_equal(prefix_index_size(&ix), 4);
  assert_int_equal(prefix_index_match(&ix, c.h, c.n), 4);
  assert_int_equal(prefix_index_match(&ix, b.h, b.n), 0);
  prefix_index_free(&ix);
}

static void test_prefix_index_grows_and_orders(void **state) {
  (void)state;
  struct prefix_index ix;
  assert_int_equal(prefix_index_init(&ix, 5000), 0);
  struct prompt p;
  for (uint64_t f = 0; f < 100; f++) { /* 100 prompts x 40 blocks = 4000 blocks: several grows */
    make_prompt(&p, 100 + f, 40, 0, 0);
    prefix_index_insert_path(&ix, p.h, p.n);
  }
  assert_int_equal(prefix_index_size(&ix), 4000);
  for (uint64_t f = 0; f < 100; f++) {
    make_prompt(&p, 100 + f, 40, 0, 0);
    assert_int_equal(prefix_index_match(&ix, p.h, p.n), 40);
  }
  /* add_in_order (llm-d's indexer): the first block ends least recent, so eviction takes it first. */
  struct prefix_index lru;
  assert_int_equal(prefix_index_init(&lru, 3), 0);
  make_prompt(&p, 7, 4, 0, 0);
  prefix_index_add_in_order(&lru, p.h, 4);
  assert_false(prefix_index_contains(&lru, p.h[0]));
  assert_true(prefix_index_contains(&lru, p.h[1]));
  assert_true(prefix_index_contains(&lru, p.h[3]));
  prefix_index_free(&lru);
  prefix_index_free(&ix);
}

/* ---- registry and config ---- */

static void test_registry_and_config(void **state) {
  (void)state;
  const char *names[16];
  int n = policy_names(names, 16);
  assert_int_equal(n, 6);
  for (int i = 0; i < n; i++) {
    struct policy *p = policy_new(names[i], NULL, 1);
    assert_non_null(p);
    assert_string_equal(policy_name(p), names[i]);
    /* a negative id is refused (the ticket names no target), not indexed */
    struct policy_req r = {.model = "m", .prompt_tokens = 8, .max_tokens = 8, .tenant = -1};
    struct policy_target t = {.id = -1};
    struct policy_ticket tk;
    policy_on_route(p, &r, &t, 0, &tk);
    assert_int_equal(tk.target, -1);
    policy_on_done(p, &tk, 1, 1);
    policy_free(p);
  }
  assert_null(policy_new("random-forest", NULL, 1));
  assert_null(policy_new(NULL, NULL, 1));
  struct policy_config c;
  policy_config_default(&c);
  assert_true(c.sgl_cache_threshold == 0.3 && c.sgl_balance_abs == 64 && c.sgl_balance_rel == 1.5);
  assert_true(c.llmd_w_queue == 2 && c.llmd_w_kv == 2 && c.llmd_w_prefix == 3);
  assert_int_equal(policy_config_set(&c, "sgl_balance_abs", "32"), 0);
  assert_int_equal(c.sgl_balance_abs, 32);
  assert_int_equal(policy_config_set(&c, "ours_w_miss", "0.5"), 0);
  assert_true(c.ours_w_miss == 0.5);
  assert_int_equal(policy_config_set(&c, "no_such_knob", "1"), -EINVAL);
  assert_int_equal(policy_config_set(&c, "sgl_balance_abs", "lots"), -EINVAL);
  assert_int_equal(policy_config_set(&c, "sgl_balance_abs", "-1"), -EINVAL);
}

/* ---- load-only baselines ---- */

static void test_round_robin_cycles(void **state) {
  (void)state;
  struct policy *p = policy_new("round-robin", NULL, 3);
  struct policy_target c[4];
  targets(c, 4);
  struct prompt pr;
  make_prompt(&pr, 1, 2, 2, 2);
  struct policy_req r = req_of(&pr);
  int first = policy_pick(p, &r, c, 4, 0);
  for (int i = 1; i < 12; i++)
    assert_int_equal(policy_pick(p, &r, c, 4, 0), (first + i) % 4);
  assert_int_equal(policy_pick(p, &r, c, 1, 0), 0);
  policy_free(p);
}

static void test_least_request_and_power_of_two(void **state) {
  (void)state;
  struct policy *lr = policy_new("least-request", NULL, 5), *p2 = policy_new("power-of-two", NULL, 5);
  struct policy_target c[4];
  targets(c, 4);
  c[0].inflight = 3, c[1].inflight = 1, c[2].inflight = 1, c[3].inflight = 9;
  /* Reported waiting does not matter to them: the router's own count does. */
  c[1].waiting = 100;
  struct prompt pr;
  make_prompt(&pr, 1, 2, 2, 2);
  struct policy_req r = req_of(&pr);
  int seen[4] = {0};
  for (int i = 0; i < 200; i++)
    seen[policy_pick(lr, &r, c, 4, 0)]++;
  assert_int_equal(seen[0] + seen[3], 0);
  assert_true(seen[1] > 50 && seen[2] > 50); /* ties broken at random */
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < 400; i++)
    seen[policy_pick(p2, &r, c, 4, 0)]++;
  assert_int_equal(seen[3], 0); /* the most loaded never wins a draw */
  assert_true(seen[0] > 0 && seen[1] > seen[0]);
  /* With two candidates both are always drawn: the less loaded wins. */
  for (int i = 0; i < 20; i++)
    assert_int_equal(policy_pick(p2, &r, c + 2, 2, 0), 0);
  policy_free(lr);
  policy_free(p2);
}

/* ---- SGLang cache_aware ---- */

static void test_sglang_prefix_match_and_threshold(void **state) {
  (void)state;
  struct policy *p = policy_new("sglang", NULL, 7);
  struct policy_target c[3];
  targets(c, 3);
  struct policy_ticket tk;
  struct prompt a, b, d;
  make_prompt(&a, 10, 40, 11, 10);
  struct policy_req r = req_of(&a);
  int first = route(p, &r, c, 3, &tk); /* empty trees: the least loaded (the first of equals) */
  assert_int_equal(first, 0);
  /* Make another target the least loaded: a 40/50-block match (80% > 30%) still goes to the tree's owner. */
  c[0].inflight = 5;
  make_prompt(&b, 10, 40, 12, 10);
  r = req_of(&b);
  assert_int_equal(policy_pick(p, &r, c, 3, 0), 0);
  /* A 10/50 match (20% <= 30%) goes to the least loaded instead. */
  make_prompt(&d, 10, 10, 13, 40);
  r = req_of(&d);
  assert_int_equal(policy_pick(p, &r, c, 3, 0), 1);
  policy_free(p);
}

static void test_sglang_imbalance_switch(void **state) {
  (void)state;
  struct policy *p = policy_new("sglang", NULL, 7);
  struct policy_target c[3];
  targets(c, 3);
  struct policy_ticket tk;
  struct prompt a;
  make_prompt(&a, 20, 50, 21, 0);
  struct policy_req r = req_of(&a);
  c[1].inflight = c[2].inflight = 1;
  assert_int_equal(route(p, &r, c, 3, &tk), 0); /* learned: the prefix lives on 0 */
  /* max - min = 64 is not > 64: balanced, the full match wins. */
  c[0].inflight = 70, c[1].inflight = 6, c[2].inflight = 30;
  assert_int_equal(policy_pick(p, &r, c, 3, 0), 0);
  /* 71 - 6 > 64 and 71 > 1.5 * 6: imbalanced, shortest queue regardless of the cache. */
  c[0].inflight = 71;
  assert_int_equal(policy_pick(p, &r, c, 3, 0), 1);
  /* 200 - 134 > 64 but 200 <= 1.5 * 134: both conditions are needed. */
  c[0].inflight = 200, c[1].inflight = 134, c[2].inflight = 150;
  assert_int_equal(policy_pick(p, &r, c, 3, 0), 0);
  policy_free(p);
}

/* ---- llm-d weighted scorers ---- */

static void test_llmd_scores(void **state) {
  (void)state;
  struct policy *p = policy_new("llm-d", NULL, 9);
  struct policy_target c[3];
  targets(c, 3);
  struct policy_ticket tk;
  struct prompt a, b;
  make_prompt(&a, 30, 64, 31, 0);
  struct policy_req r = req_of(&a);
  /* Equal queues and KV: the only difference is the prefix score. */
  c[0].waiting = c[1].waiting = c[2].waiting = 4;
  int t = route(p, &r, c, 3, &tk);
  for (int i = 0; i < 10; i++)
    assert_int_equal(policy_pick(p, &r, c, 3, 0), t);
  /* The cached target's queue is the longest (queue score 0) and its KV 90% full; an idle peer scores
   * 2 * 1 + 2 * 1 + 3 * 0 = 4.0 against 2 * 0 + 2 * 0.1 + 3 * 1 = 3.2: the idle one wins. */
  int other = (t + 1) % 3, third = (t + 2) % 3;
  c[t].waiting = 10, c[t].kv_usage = 0.9;
  c[other].waiting = 0, c[other].kv_usage = 0.0;
  c[third].waiting = 10, c[third].kv_usage = 0.9;
  assert_int_equal(policy_pick(p, &r, c, 3, 0), other);
  /* Queues 5 vs 4 normalize to 0 vs 1 (a difference of 2 after weighting): a full prefix match (3) beats it,
   * half a match (1.5) does not. */
  c[t].waiting = 5, c[t].kv_usage = 0.5;
  c[other].waiting = 4, c[other].kv_usage = 0.5;
  c[third].waiting = 5, c[third].kv_usage = 0.5;
  assert_int_equal(policy_pick(p, &r, c, 3, 0), t);
  make_prompt(&b, 30, 32, 32, 32); /* 32 of 64 blocks match */
  r = req_of(&b);
  assert_int_equal(policy_pick(p, &r, c, 3, 0), other);
  policy_free(p);
}

/* ---- ours ---- */

static void test_ours_prefix_affinity(void **state) {
  (void)state;
  struct policy *p = policy_new("ours", NULL, 11);
  struct policy_target c[4];
  targets(c, 4);
  struct policy_ticket tk;
  struct prompt a, b;
  make_prompt(&a, 40, 256, 41, 8); /* a 4096-token shared prefix */
  struct policy_req r = req_of(&a);
  int t = route(p, &r, c, 4, &tk);
  policy_on_first_token(p, &tk, 2000);
  policy_on_done(p, &tk, 3000, 64);
  c[t].inflight--;
  /* A different request of the same family goes where the prefix is, 20 times out of 20. */
  for (uint64_t u = 0; u < 20; u++) {
    make_prompt(&b, 40, 256, 100 + u, 8);
    r = req_of(&b);
    assert_int_equal(policy_pick(p, &r, c, 4, 0), t);
  }
  policy_free(p);
}

static void test_ours_reservations_spread_work(void **state) {
  (void)state;
  struct policy *p = policy_new("ours", NULL, 13);
  struct policy_target c[4];
  targets(c, 4);
  struct policy_ticket tk[8];
  struct prompt a;
  int used[4] = {0};
  /* Eight unrelated 8k-token prompts in a burst, no report in between: only our own reservations (prefill
   * not done yet) tell the targets apart, and they must spread the burst. */
  for (int i = 0; i < 8; i++) {
    make_prompt(&a, 500 + (uint64_t)i, 0, 500 + (uint64_t)i, 512);
    struct policy_req r = req_of(&a);
    int t = route(p, &r, c, 4, &tk[i]);
    if (i < 4) assert_int_equal(used[t], 0); /* the first four each find an idle target */
    used[t]++;
  }
  for (int i = 0; i < 4; i++)
    assert_true(used[i] >= 1 && used[i] <= 3);
  /* First tokens release the reservations: the next prompt may go anywhere again, and the busiest target
   * after release is no longer avoided. */
  for (int i = 0; i < 8; i++)
    policy_on_first_token(p, &tk[i], 5000);
  policy_free(p);
}

static void test_ours_stale_counts_as_saturated(void **state) {
  (void)state;
  struct policy *p = policy_new("ours", NULL, 17);
  struct policy_target c[2];
  targets(c, 2);
  struct policy_ticket tk;
  struct prompt a;
  make_prompt(&a, 60, 256, 61, 4);
  struct policy_req r = req_of(&a);
  policy_on_route(p, &r, &c[1], 0, &tk); /* the prompt's prefix now lives on target 1 */
  policy_on_first_token(p, &tk, 1);
  c[0].waiting = 3;
  const uint64_t now = 61ull * 1000000000ull;
  c[0].report_ns = c[1].report_ns = now - 1000000;
  assert_int_equal(policy_pick(p, &r, c, 2, now), 1); /* fresh signals: the cache wins over a queue */
  c[1].report_ns = now - 60ull * 1000000000ull;       /* its last report is a minute old */
  assert_int_equal(policy_pick(p, &r, c, 2, now), 0);
  c[1].report_ns = UINT64_MAX; /* never reported */
  assert_int_equal(policy_pick(p, &r, c, 2, now), 0);
  policy_on_done(p, &tk, 2, 1);
  policy_free(p);
}

static void test_ours_miss_cost_grows_with_queue(void **state) {
  (void)state;
  struct policy *p = policy_new("ours", NULL, 19);
  struct policy_target c[2];
  targets(c, 2);
  struct policy_ticket tk;
  struct prompt a, b;
  make_prompt(&a, 70, 256, 71, 8);
  struct policy_req r = req_of(&a);
  c[1].waiting = 50; /* make the first routing land on 0 */
  assert_int_equal(route(p, &r, c, 2, &tk), 0);
  policy_on_first_token(p, &tk, 1);
  make_prompt(&b, 70, 256, 72, 8);
  r = req_of(&b);
  /* Both loaded alike: the cached target wins. */
  c[0].waiting = c[1].waiting = 8;
  assert_int_equal(policy_pick(p, &r, c, 2, 0), 0);
  /* The cached target busier (20 vs 12 waiting): a greedy TTFT estimate would move (4.2 s of queue + 6 ms
   * of prefill against 2.5 s + 0.2 s), but the miss would delay the 12 queued there by 0.2 s each. */
  c[0].waiting = 20, c[1].waiting = 12;
  assert_int_equal(policy_pick(p, &r, c, 2, 0), 0);
  /* An idle target (nobody queued behind the miss) is worth the miss when the cached one is swamped. */
  c[1].waiting = 0;
  c[0].waiting = 60;
  assert_int_equal(policy_pick(p, &r, c, 2, 0), 1);
  policy_free(p);
}

/* Per-target state is sized at run time: ids far past the old 256-target cap work in every policy, and a
 * cache-aware policy still finds where a prefix went among 3000 candidates. */
static void test_policies_take_any_number_of_targets(void **state) {
  (void)state;
  enum { N = 3000 };
  struct policy_target *c = calloc(N, sizeof *c);
  assert_non_null(c);
  const char *names[16];
  int np = policy_names(names, 16);
  struct prompt a, b;
  make_prompt(&a, 90, 64, 91, 4);
  make_prompt(&b, 90, 64, 92, 4);
  for (int k = 0; k < np; k++) {
    targets(c, N);
    for (int i = 0; i < N; i++)
      c[i].id = 100000 + 7 * i; /* sparse, large ids */
    struct policy *p = policy_new(names[k], NULL, 5);
    struct policy_ticket tk;
    struct policy_req r = req_of(&a);
    int t = route(p, &r, c, N, &tk);
    assert_true(t >= 100000);
    policy_on_first_token(p, &tk, 2000);
    policy_on_done(p, &tk, 3000, 64);
    for (int i = 0; i < N; i++)
      if (c[i].id == t) c[i].inflight--;
    if (strcmp(names[k], "ours") == 0 || strcmp(names[k], "sglang") == 0) {
      r = req_of(&b);
      assert_int_equal(c[policy_pick(p, &r, c, N, 4000)].id, t);
    }
    policy_forget_target(p, t);
    policy_forget_target(p, 1 << 30); /* never seen: nothing to drop */
    policy_free(p);
  }
  free(c);
}

/* Decode-aware: an uncached prompt's prefill shares steps with the batch decoding there and stalls each running
 * request's next token, and a target whose windowed inter-token latency is long makes every step of the new
 * request wait. */
static void test_ours_decode_aware(void **state) {
  (void)state;
  struct policy *p = policy_new("ours", NULL, 23);
  struct policy_target c[2];
  struct prompt a;
  for (uint64_t u = 0; u < 20; u++) {
    targets(c, 2);
    /* 0: nothing queued but 200 requests decoding; 1: two queued (their prefill delays ours), none decoding.
     * A TTFT-only estimate takes 0 (one 8k prefill against three); the stalls of 200 running requests cost
     * more. */
    c[0].running = 200;
    c[1].waiting = 2;
    make_prompt(&a, 300 + u, 0, 300 + u, 512);
    struct policy_req r = req_of(&a);
    assert_int_equal(policy_pick(p, &r, c, 2, 0), 1);
    /* Alike but for the reported ITL: 0.5 s steps on 0 against 10 ms on 1. */
    targets(c, 2);
    c[0].itl_s = 0.5;
    c[1].itl_s = 0.01;
    make_prompt(&a, 400 + u, 0, 400 + u, 64);
    r = req_of(&a);
    assert_int_equal(policy_pick(p, &r, c, 2, 0), 1);
  }
  policy_free(p);
}

static void test_ours_routers_agree_on_new_prefixes(void **state) {
  (void)state;
  /* Two routers with the same view of 8 targets, no shared state: the same new prefix lands on the same
   * target from both (rendezvous), and different prefixes spread. */
  struct policy *r1 = policy_new("ours", NULL, 1), *r2 = policy_new("ours", NULL, 2);
  struct policy_target c[8];
  targets(c, 8);
  int hit[8] = {0};
  for (uint64_t f = 0; f < 64; f++) {
    struct prompt a;
    make_prompt(&a, 1000 + f, 64, 2000 + f, 4);
    struct policy_req r = req_of(&a);
    int x = policy_pick(r1, &r, c, 8, 0), y = policy_pick(r2, &r, c, 8, 0);
    assert_int_equal(x, y);
    hit[x]++;
  }
  for (int i = 0; i < 8; i++)
    assert_true(hit[i] >= 2 && hit[i] <= 20);
  policy_free(r1);
  policy_free(r2);
}

static void test_ours_learns_peer_routes(void **state) {
  (void)state;
  /* Router 2 learns (gossip) that router 1 sent a prefix to target t: it sends that prefix's next request to
   * t too, although it never routed there itself. The baselines share nothing. */
  struct policy *r1 = policy_new("ours", NULL, 1), *r2 = policy_new("ours", NULL, 2);
  struct policy *s2 = policy_new("sglang", NULL, 2);
  struct policy_target c[8];
  targets(c, 8);
  struct prompt a, b;
  make_prompt(&a, 77, 256, 78, 4);
  struct policy_req r = req_of(&a);
  int t = (policy_pick(r1, &r, c, 8, 0) + 3) % 8; /* not where router 2 would send a new prefix */
  struct policy_ticket tk;
  policy_on_route(r1, &r, &c[t], 0, &tk);
  make_prompt(&b, 77, 256, 79, 4);
  struct policy_req rb = req_of(&b);
  assert_int_not_equal(policy_pick(r2, &rb, c, 8, 0), t);
  policy_on_peer_route(r2, &r, &c[t], 10);
  policy_on_peer_route(s2, &r, &c[t], 10);
  assert_int_equal(policy_pick(r2, &rb, c, 8, 0), t);
  assert_int_equal(policy_pick(s2, &rb, c, 8, 0), 0); /* SGLang's tree is empty: the least loaded, first */
  policy_free(r1);
  policy_free(r2);
  policy_free(s2);
}

static void test_ours_reserves_peer_decisions(void **state) {
  (void)state;
  /* Router 1 sends a burst of three new prompts to idle target 0 and shares the decisions; router 2, whose
   * own choice for the next new prompt is target 0 too, sends it to target 1 instead: the peer's requests
   * are in target 0's queue before any report says so. Once a report taken after the decisions covers
   * them (here: they are done, the target idle), target 0 is router 2's choice again. */
  struct policy *r1 = policy_new("ours", NULL, 1), *r2 = policy_new("ours", NULL, 2);
  struct policy_target c[2];
  targets(c, 2);
  struct prompt a;
  struct policy_req r;
  uint64_t f = 500;
  do { /* a new prompt whose rendezvous home, for both routers, is target 0 */
    f++;
    make_prompt(&a, f, 64, 9000 + f, 4);
    r = req_of(&a);
  } while (policy_pick(r2, &r, c, 2, 0) != 0);
  const uint64_t ms = 1000000;
  for (int i = 0; i < 3; i++) {
    struct prompt b;
    make_prompt(&b, 100 + (uint64_t)i, 64, 200 + (uint64_t)i, 4);
    struct policy_req rb = req_of(&b);
    struct policy_ticket tk;
    policy_on_route(r1, &rb, &c[0], 10 * ms, &tk);
    policy_on_peer_decision(r2, &rb, &c[0], 10 * ms);
  }
  c[0].report_ns = c[1].report_ns = 5 * ms; /* the last reports were taken at 5 ms */
  assert_int_equal(policy_pick(r2, &r, c, 2, 20 * ms), 1);
  c[0].report_ns = c[1].report_ns = 19 * ms; /* reports taken at 19 ms: idle */
  assert_int_equal(policy_pick(r2, &r, c, 2, 20 * ms), 0);
  policy_free(r1);
  policy_free(r2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefix_index_match_and_lru),
      cmocka_unit_test(test_prefix_index_grows_and_orders),
      cmocka_unit_test(test_registry_and_config),
      cmocka_unit_test(test_round_robin_cycles),
      cmocka_unit_test(test_least_request_and_power_of_two),
      cmocka_unit_test(test_sglang_prefix_match_and_threshold),
      cmocka_unit_test(test_sglang_imbalance_switch),
      cmocka_unit_test(test_llmd_scores),
      cmocka_unit_test(test_ours_prefix_affinity),
      cmocka_unit_test(test_ours_reservations_spread_work),
      cmocka_unit_test(test_ours_stale_counts_as_saturated),
      cmocka_unit_test(test_ours_miss_cost_grows_with_queue),
      cmocka_unit_test(test_ours_routers_agree_on_new_prefixes),
      cmocka_unit_test(test_policies_take_any_number_of_targets),
      cmocka_unit_test(test_ours_decode_aware),
      cmocka_unit_test(test_ours_learns_peer_routes),
      cmocka_unit_test(test_ours_reserves_peer_decisions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
