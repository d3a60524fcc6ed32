/* ours' and llm-d's fast decisions (inverted prefix index; for ours one division per rate change) against the
 * scoring they replaced.
 *
 * The oracle below is ours' previous pick, kept verbatim in its arithmetic: every candidate's own prefix
 * index probed by binary search, three divisions per estimate. Both are driven through the same random states
 * (signals, router-local counts, prompts sharing prefixes, routes, first tokens, completions, peer routes,
 * departures); every pick must be the oracle's, except where the oracle's own numbers are a rounding tie (the
 * two estimates compared, or an estimate against the slack bound, within 1e-9 relative). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "state/policy.h"
#include "state/prefix_index.h"

#define NT 48
#define MAXB 96
#define BS 16
#define EWMA 0.05

/* ---- the oracle: ours as it was ---- */

struct otgt {
  struct prefix_index *ix;
  double pend_tokens;
  int pend_n;
  double step_s;
};

struct oracle {
  struct policy_config cfg;
  struct rng rng;
  struct otgt tg[NT];
  double avg_tokens, avg_prompt;
  uint64_t nrouted, last_route;
  double mean_gap_s, itl_mean;
  double est[NT], bound; /* of the last pick, by candidate index */
  uint64_t now;          /* of the pick */
};

static int o_index_blocks(const struct policy_target *t, const struct policy_req *r) {
  int64_t cap = t->num_gpu_blocks > 0 ? t->num_gpu_blocks : 31250;
  if (t->block_size > 0 && r->block_size > 0 && t->block_size != r->block_size)
    cap = cap * t->block_size / r->block_size;
  if (cap < 1) cap = 1;
  return cap > PREFIX_INDEX_MAX ? PREFIX_INDEX_MAX : (int)cap;
}

static int o_cached(const struct oracle *s, const struct policy_req *r, int id) {
  const struct prefix_index *ix = s->tg[id].ix;
  if (!ix || r->block_size <= 0) return 0;
  return prefix_index_match(ix, r->block_hashes, policy_prefix_blocks(r)) * r->block_size;
}

static double o_estimate(const struct oracle *s, const struct policy_req *r, const struct policy_target *t,
                         int ncand, int *known) {
  const struct otgt *g = &s->tg[t->id];
  int cached = o_cached(s, r, t->id);
  if (cached > 0) *known = 1;
  double uncached = r->prompt_tokens - cached;
  double since = t->routed_since_report < g->pend_n ? t->routed_since_report : g->pend_n;
  double waiting = t->waiting + since;
  double others = waiting - g->pend_n;
  if (others < 0) others = 0;
  double per_req = t->prefix_hit_rate >= 0 ? s->avg_prompt * (1 - t->prefix_hit_rate) : s->avg_tokens;
  double queue = g->pend_tokens + others * per_req;
  double queued = waiting > g->pend_n ? waiting : g->pend_n;
  double tps = t->prefill_tps > s->cfg.ours_default_tps ? t->prefill_tps : s->cfg.ours_default_tps;
  if (s->mean_gap_s > 0 && ncand > 0)
    queued += s->cfg.ours_w_arrivals * (uncached / tps) / s->mean_gap_s / ncand;
  double started = t->routed_since_report - g->pend_n;
  double running = t->running + (started > 0 ? started : 0);
  double step = s->itl_mean > 0 ? (t->itl_s > 0 ? t->itl_s : s->itl_mean) : g->step_s;
  double est = queue / tps +
               (1 + s->cfg.ours_w_miss * queued + s->cfg.ours_w_decode * running) * uncached / tps +
               s->cfg.ours_w_step * step;
  uint64_t age = t->report_ns == UINT64_MAX ? UINT64_MAX : s->now > t->report_ns ? s->now - t->report_ns : 0;
  if (age == UINT64_MAX || age > s->cfg.stale_ns) est += s->cfg.ours_stale_penalty_s;
  if (t->degraded) est += s->cfg.ours_degraded_penalty_s;
  return est + (t->network_s > 0 ? t->network_s : 0);
}

/* o_pick also leaves the candidates' estimates and the bound in s, and the indexes of the two drawn in *A,
 * *B. */
static int o_pick(struct oracle *s, const struct policy_req *r, const struct policy_target *c, int n, int *a,
                  int *b) {
  *a = *b = -1;
  if (n == 1) return 0;
  double itls = 0;
  int nitl = 0;
  for (int i = 0; i < n; i++)
    if (c[i].itl_s > 0) itls += c[i].itl_s, nitl++;
  s->itl_mean = nitl ? itls / nitl : 0;
  double best = INFINITY;
  int known = 0;
  for (int i = 0; i < n; i++) {
    s->est[i] = o_estimate(s, r, &c[i], n, &known);
    if (s->est[i] < best) best = s->est[i];
  }
  double bound = best * (1 + s->cfg.ours_slack_rel) + s->cfg.ours_slack_abs_s;
  s->bound = bound;
  int kb = s->cfg.ours_affinity_blocks < r->nblocks ? s->cfg.ours_affinity_blocks : r->nblocks;
  uint64_t key = kb > 0 ? r->block_hashes[kb - 1] : rng_next(&s->rng);
  int ia = -1, ib = -1;
  uint64_t ha = 0, hb = 0;
  for (int i = 0; i < n; i++) {
    if (s->est[i] > bound) continue;
    uint64_t h = policy_mix64(key ^ ((uint64_t)c[i].id + 1) * 0x9E3779B97F4A7C15ull);
    if (ia < 0 || h > ha) {
      ib = ia, hb = ha;
      ia = i, ha = h;
    } else if (ib < 0 || h > hb) {
      ib = i, hb = h;
    }
  }
  *a = ia, *b = ib;
  if (ib < 0) return ia;
  if (!known && kb > 0 && s->cfg.ours_new_prefix_home) return ia;
  return s->est[ib] < s->est[ia] ? ib : ia;
}

static struct prefix_index *o_index_of(struct oracle *s, const struct policy_target *t,
                                       const struct policy_req *r) {
  struct otgt *g = &s->tg[t->id];
  int cap = o_index_blocks(t, r);
  if (!g->ix) {
    g->ix = calloc(1, sizeof *g->ix);
    prefix_index_init(g->ix, cap);
  } else if (g->ix->capacity != cap) {
    prefix_index_set_capacity(g->ix, cap);
  }
  return g->ix;
}

static void o_drop(struct oracle *s, int id) {
  if (s->tg[id].ix) {
    prefix_index_free(s->tg[id].ix);
    free(s->tg[id].ix);
  }
  s->tg[id] = (struct otgt){0};
}

static void o_on_route(struct oracle *s, const struct policy_req *r, const struct policy_target *t,
                       uint64_t now, int *est_tokens) {
  struct prefix_index *ix = o_index_of(s, t, r);
  struct otgt *g = &s->tg[t->id];
  int est = r->prompt_tokens - o_cached(s, r, t->id);
  if (est < 1) est = 1;
  *est_tokens = est;
  if (r->nblocks > 0 && r->block_size > 0) prefix_index_insert_path(ix, r->block_hashes, r->nblocks);
  g->pend_tokens += est;
  g->pend_n++;
  s->nrouted++;
  double alpha = s->nrouted < 20 ? 1.0 / (double)s->nrouted : EWMA;
  s->avg_tokens += alpha * (est - s->avg_tokens);
  s->avg_prompt += alpha * (r->prompt_tokens - s->avg_prompt);
  if (s->nrouted > 1 && now >= s->last_route) {
    double gap = (double)(now - s->last_route) / 1e9;
    s->mean_gap_s = s->mean_gap_s > 0 ? s->mean_gap_s + EWMA * (gap - s->mean_gap_s) : gap;
  }
  s->last_route = now;
}

static void o_settle(struct oracle *s, int id, int est_tokens) {
  struct otgt *g = &s->tg[id];
  g->pend_tokens -= est_tokens;
  if (--g->pend_n <= 0) {
    g->pend_tokens = 0;
    g->pend_n = 0;
  } else if (g->pend_tokens < 0) {
    g->pend_tokens = 0;
  }
}

/* ---- the random drive ---- */

struct flight {
  struct policy_ticket tk; /* the policy's */
  int id, est_tokens;      /* the oracle's */
  int first;
};

static void make_prompt(struct rng *r, uint64_t *h, int *nb, int *tokens) {
  int n = (int)rng_below(r, MAXB + 1), fam = (int)rng_below(r, 6), split = (int)rng_below(r, (uint32_t)n + 1);
  uint64_t branch = rng_below(r, 3) == 0 ? rng_next(r) : rng_below(r, 4), x = 0x77;
  for (int i = 0; i < n; i++) {
    uint64_t f = i < split ? (uint64_t)fam : 1000 + branch;
    x = policy_mix64(x ^ (f * 0x9E3779B97F4A7C15ull + (uint64_t)i));
    h[i] = x;
  }
  *nb = n;
  *tokens = n * BS + 1 + (int)rng_below(r, BS);
}

static void random_target(struct rng *r, struct policy_target *t, int id, uint64_t now) {
  double tps[] = {0, 8000, 20000, 31000, 55000};
  *t = (struct policy_target){
      .id = id,
      .waiting = rng_below(r, 4) == 0 ? rng_unit(r) * 12 : (double)rng_below(r, 12),
      .running = (double)rng_below(r, 64),
      .kv_usage = rng_unit(r),
      .num_gpu_blocks = rng_below(r, 5) == 0 ? 0 : 200 + rng_below(r, 3000),
      .block_size = rng_below(r, 6) == 0 ? 32 : BS,
      .prefix_hit_rate = rng_below(r, 4) == 0 ? -1 : rng_unit(r),
      .prefill_tps = tps[rng_below(r, 5)],
      .itl_s = rng_below(r, 3) == 0 ? -1 : 0.005 + rng_unit(r) * 0.04,
      .report_ns = rng_below(r, 20) == 0   ? UINT64_MAX
                   : rng_below(r, 20) == 0 ? now - 9000000000ull
                                           : now - 200000000ull,
      .routed_since_report = (int)rng_below(r, 6),
      .network_s = rng_below(r, 4) == 0 ? rng_unit(r) * 0.01 : 0,
      .degraded = rng_below(r, 30) == 0,
  };
}

static void drive(uint64_t seed, int itl_reported, int *picks, int *ties) {
  struct policy_config cfg;
  policy_config_default(&cfg);
  struct policy *p = policy_new("ours", &cfg, seed);
  struct oracle *o = calloc(1, sizeof *o);
  o->cfg = cfg;
  rng_seed(&o->rng, seed);
  struct rng r;
  rng_seed(&r, seed * 31 + 7);
  struct flight fl[256];
  int nfl = 0;
  uint64_t now = 10000000000ull, h[MAXB]; /* past the oldest report random_target makes */
  struct policy_target c[NT];
  for (int step = 0; step < 3000; step++) {
    now += 1000000ull * rng_below(&r, 40);
    int n = 1 + (int)rng_below(&r, NT), perm[NT];
    for (int i = 0; i < NT; i++)
      perm[i] = i;
    for (int i = 0; i < n; i++) { /* n distinct ids in random order */
      int j = i + (int)rng_below(&r, (uint32_t)(NT - i)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
      random_target(&r, &c[i], perm[i], now);
      if (!itl_reported) c[i].itl_s = -1;
    }
    int nb, tokens;
    make_prompt(&r, h, &nb, &tokens);
    struct policy_req req = {.model = "m",
                             .prompt_tokens = tokens,
                             .max_tokens = 128,
                             .block_hashes = h,
                             .nblocks = nb,
                             .block_size = BS,
                             .tenant = -1};
    o->now = now;
    int ia, ib, want = o_pick(o, &req, c, n, &ia, &ib), got = policy_pick(p, &req, c, n, now);
    (*picks)++;
    if (got != want) {
      /* Only a rounding tie in the oracle's own numbers may tell them apart. */
      double ew = o->est[want], eg = o->est[got], b = o->bound;
      int tie = fabs(ew - eg) <= 1e-9 * fabs(ew) || fabs(ew - b) <= 1e-9 * b || fabs(eg - b) <= 1e-9 * b ||
                (ia >= 0 && fabs(o->est[ia] - b) <= 1e-9 * b) ||
                (ib >= 0 && fabs(o->est[ib] - b) <= 1e-9 * b);
      if (!tie)
        print_error("seed %llu step %d: picked %d, the old scoring %d (%.17g vs %.17g, bound %.17g)\n",
                    (unsigned long long)seed, step, got, want, eg, ew, b);
      assert_true(tie);
      (*ties)++;
    }
    uint32_t what = rng_below(&r, 20);
    if (what == 0) { /* a peer's route */
      policy_on_peer_route(p, &req, &c[want], now);
      struct prefix_index *ix = o_index_of(o, &c[want], &req);
      if (req.nblocks > 0) prefix_index_insert_path(ix, req.block_hashes, req.nblocks);
    } else if (what == 1) { /* a target leaves */
      policy_forget_target(p, c[want].id);
      o_drop(o, c[want].id);
    } else if (nfl < 256) {
      struct flight *f = &fl[nfl++];
      *f = (struct flight){.id = c[want].id};
      policy_on_route(p, &req, &c[want], now, &f->tk);
      o_on_route(o, &req, &c[want], now, &f->est_tokens);
      assert_int_equal(f->tk.est_tokens, f->est_tokens);
    }
    /* Some requests in flight get their first token, some end. */
    for (int k = 0; k < nfl; k++) {
      struct flight *f = &fl[k];
      uint32_t ev = rng_below(&r, 8);
      if (ev == 0 && !f->first) {
        f->first = 1;
        policy_on_first_token(p, &f->tk, now);
        o_settle(o, f->id, f->est_tokens);
      } else if (ev == 1) {
        int out = 1 + (int)rng_below(&r, 200);
        uint64_t end = now + 1000000ull * (1 + rng_below(&r, 500));
        policy_on_done(p, &f->tk, end, out);
        if (!f->first) {
          o_settle(o, f->id, f->est_tokens);
        } else if (out > 1 && end > f->tk.t_first) {
          double st = (double)(end - f->tk.t_first) / 1e9 / (out - 1), *avg = &o->tg[f->id].step_s;
          *avg = *avg > 0 ? *avg + EWMA * (st - *avg) : st;
        }
        fl[k--] = fl[--nfl];
      }
    }
  }
  for (int i = 0; i < NT; i++)
    o_drop(o, i);
  free(o);
  policy_free(p);
}

static void test_ours_picks_equal_old_scoring(void **state) {
  (void)state;
  int picks = 0, ties = 0;
  for (uint64_t seed = 1; seed <= 6; seed++)
    drive(seed, 1, &picks, &ties);
  for (uint64_t seed = 101; seed <= 103; seed++)
    drive(seed, 0, &picks, &ties); /* no candidate reports an ITL: our own step times count */
  print_message("%d picks, %d told apart by rounding ties only\n", picks, ties);
  assert_true(ties * 1000 <= picks); /* ties are rare: a real difference would show everywhere */
}

/* llm-d as it was: every block of the prompt probed in every candidate's LRU. Same arithmetic and the same
 * random tie-breaks, so the picks must be identical. */
static int o_llmd_pick(const struct policy_config *cfg, struct prefix_index **lru, struct rng *rng,
                       const struct policy_req *r, const struct policy_target *c, int n) {
  double qmin = c[0].waiting, qmax = c[0].waiting;
  for (int i = 1; i < n; i++) {
    if (c[i].waiting < qmin) qmin = c[i].waiting;
    if (c[i].waiting > qmax) qmax = c[i].waiting;
  }
  int total = r->nblocks > cfg->llmd_max_prefix_blocks ? cfg->llmd_max_prefix_blocks : r->nblocks,
      credit[NT] = {0};
  for (int b = 0; b < total; b++) {
    int any = 0;
    for (int i = 0; i < n; i++)
      if (lru[c[i].id] && prefix_index_contains(lru[c[i].id], r->block_hashes[b])) credit[i]++, any = 1;
    if (!any) break;
  }
  int best = 0, ties = 0;
  double best_score = -1;
  for (int i = 0; i < n; i++) {
    double q = qmax == qmin ? 1.0 : (qmax - c[i].waiting) / (qmax - qmin);
    double kv = c[i].kv_usage < 0 ? 1.0 : 1.0 - c[i].kv_usage;
    double pre = total ? (double)credit[i] / total : 0.0;
    double sc = cfg->llmd_w_queue * q + cfg->llmd_w_kv * kv + cfg->llmd_w_prefix * pre;
    if (sc > best_score) {
      best_score = sc, best = i, ties = 1;
    } else if (sc == best_score && rng_below(rng, (uint32_t)++ties) == 0) {
      best = i;
    }
  }
  return best;
}

static void test_llmd_picks_equal_old_scoring(void **state) {
  (void)state;
  struct policy_config cfg;
  policy_config_default(&cfg);
  cfg.llmd_max_prefix_blocks = 64;
  struct policy *p = policy_new("llm-d", &cfg, 9);
  struct rng orng, r;
  rng_seed(&orng, 9);
  rng_seed(&r, 77);
  struct prefix_index *lru[NT] = {0};
  struct policy_target c[NT];
  uint64_t h[MAXB];
  int credited = 0;
  for (int step = 0; step < 4000; step++) {
    int n = 1 + (int)rng_below(&r, NT), perm[NT];
    for (int i = 0; i < NT; i++)
      perm[i] = i;
    for (int i = 0; i < n; i++) {
      int j = i + (int)rng_below(&r, (uint32_t)(NT - i)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
      random_target(&r, &c[i], perm[i], 10000000000ull); /* llm-d reads no report time */
      c[i].waiting =
          (double)rng_below(&r, 3); /* equal queues and KV: ties the random draw must break alike */
      c[i].kv_usage = rng_below(&r, 2) ? 0.5 : -1;
      c[i].num_gpu_blocks = 60 + (int)rng_below(&r, 200); /* small LRUs: evictions */
    }
    int nb, tokens;
    make_prompt(&r, h, &nb, &tokens);
    struct policy_req req = {.model = "m",
                             .prompt_tokens = tokens,
                             .max_tokens = 128,
                             .block_hashes = h,
                             .nblocks = nb,
                             .block_size = BS,
                             .tenant = -1};
    int want = o_llmd_pick(&cfg, lru, &orng, &req, c, n), got = policy_pick(p, &req, c, n, 0);
    assert_int_equal(got, want);
    struct policy_ticket tk;
    policy_on_route(p, &req, &c[want], 0, &tk);
    int total = nb > cfg.llmd_max_prefix_blocks ? cfg.llmd_max_prefix_blocks : nb, id = c[want].id;
    if (total > 0) {
      if (!lru[id]) {
        lru[id] = calloc(1, sizeof *lru[id]);
        prefix_index_init(lru[id], (int)c[want].num_gpu_blocks);
      }
      credited += prefix_index_contains(lru[id], h[0]);
      prefix_index_add_in_order(lru[id], h, total);
    }
    if (rng_below(&r, 50) == 0) { /* a target leaves */
      int gone = c[rng_below(&r, (uint32_t)n)].id;
      policy_forget_target(p, gone);
      if (lru[gone]) prefix_index_free(lru[gone]);
      free(lru[gone]);
      lru[gone] = NULL;
    }
  }
  assert_true(credited > 500); /* prefixes were found, not only misses */
  for (int i = 0; i < NT; i++) {
    if (lru[i]) prefix_index_free(lru[i]);
    free(lru[i]);
  }
  policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ours_picks_equal_old_scoring),
      cmocka_unit_test(test_llmd_picks_equal_old_scoring),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
