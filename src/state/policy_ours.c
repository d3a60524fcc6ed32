/* infermesh's policy (DESIGN §6): route to the lowest estimated time to first token, cache-aware.
 *
 * For each candidate t the router estimates, in seconds:
 *   cached(t)   = the longest prefix of the prompt's chained block hashes found in this router's prefix index of
 *                 t: a bounded LRU (prefix_index) of the blocks of prompts it recently routed to t, sized from
 *                 t's KV capacity (num_gpu_blocks),
 *   uncached(t) = prompt tokens - cached(t),
 *   queue(t)    = prompt tokens t must prefill before this one: our own requests routed to t that have no
 *                 first token yet (their exact uncached estimates: router-local reservations, always fresh),
 *                 plus the other requests the last report shows waiting, each an average prompt less t's recent
 *                 prefix-hit rate, plus the other routers' decisions for t shared since that report (peer
 *                 reservations, each its uncached estimate: without them N routers each count a 1/N share
 *                 of the load they send to a target between two reports, and herd on it),
 *   waiting(t)  = requests queued at t (the report's, plus ours routed since that have not started, plus the
 *                 peer reservations),
 *   behind(t)   = waiting(t) + w_arrivals * the requests expected to reach t while this one prefills
 *                 (the routing rate, ours and the peers' we hear of, / candidates * uncached(t) / rate(t)),
 *   est(t)      = queue(t) / rate(t) + (1 + w_miss * behind(t) + w_decode * running(t)) * uncached(t) / rate(t)
 *                 + w_step * step(t)
 *                 + network_s (the hop to a remote node) [+ stale_penalty when t's report is older than
 *                 stale_ns: a target we cannot see counts as saturated] [+ degraded_penalty for a degraded GPU],
 * where rate(t) is t's prefill throughput (prefill_tps, floored by default_tps: a live target's is the highest
 * rate it has shown, the simulator's its profile's) and step(t) the time between its output tokens (the
 * adapters' windowed ITL, a target that reports none counting as the candidates' mean; what we observed on
 * t when no candidate reports one: each new request waits for steps shared with everything running there). running(t) is the batch decoding there: a miss's chunked prefill shares
 * their steps and delays each one's next token, a cost on their time per output token (w_decode).
 * The (1 + w_miss * behind) factor is the cost a cache miss imposes beyond this request: its prefill delays
 * every request queued behind it (the externality of service time in a queue). Without it, greedy TTFT
 * routing spreads a prefix to idle-looking targets under load, the extra prefill makes queues, and hit rate
 * and capacity collapse together. Counting arrivals during the prefill (w_arrivals) keeps long session
 * histories where they are; at full weight it also pins hot shared prefixes that ought to be replicated, hence
 * 0.5 (bench/results/routing.md shows both sides).
 *
 * Choice: the "best few" are the candidates with est <= best * (1 + slack_rel) + slack_abs. Two of them are
 * drawn and the lower estimate wins (power of two choices among the best). The two are drawn by rendezvous
 * hashing of the prompt's first affinity_blocks blocks (random when the prompt has no full block): routers
 * that see similar loads then send the same prefix to the same target, so their prefix indexes agree without
 * talking, and a burst of different prefixes still spreads over the best few (against herding on stale
 * reports). Scores are never cached.
 *
 * Cost: the prefix probe reads an inverted index (block hash -> targets whose index holds it, prefix_holders)
 * kept in step with the per-target indexes, a few lookups per request instead of one per candidate. The holders
 * are scored first; every other candidate is first checked against a lower bound of its estimate (its own
 * prefill, two fields of its record) and scored only when that could be within the slack bound; only those
 * within the bound are hashed for the draw. Each estimate multiplies by the target's cached 1 / rate; nothing
 * is allocated once the scratch arrays have grown. test_policy_equiv holds these picks to the previous
 * arithmetic (every candidate probed and scored, three divisions each). */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "state/policy.h"
#include "state/prefix_index.h"

#define DEFAULT_INDEX_BLOCKS 31250 /* ~500k tokens of 16-token blocks, when a target reports no capacity */
#define EWMA 0.05
#define PEER_RING 32 /* peer reservations kept per target: the newest, older ones are in its reports */

/* Per target id, for the current pick only (kept apart from struct tgt so that a scan over the candidates
 * touches 16 bytes per target, not tgt's cache line). */
struct slot {
  uint64_t cand_pick, held_pick; /* equal to ours.pick_no: a candidate (at index pos); a prefix holder */
  int pos;
};

/* What this router holds about one target. */
struct tgt {
  struct prefix_index *ix; /* lazily made */
  double pend_tokens;      /* our requests routed there without a first token: tokens ... */
  int pend_n;              /* ... and count */
  double step_s;           /* average time between output tokens of our requests there */
  int match_blocks;        /* blocks of the current pick's prompt its index holds ... */
  uint64_t match_pick;     /* ... valid when this equals ours.pick_no */
  double tps, inv_tps;     /* the last prefill rate scored and 1 / it: one division per change, not per pick */
  /* Peer reservations: other routers' decisions for this target not yet covered by a report, oldest first
   * in a ring (lazily made), and their total uncached tokens. */
  uint64_t *peer_t;
  float *peer_tok;
  int peer_head, peer_n;
  double peer_tokens;
};

struct ours {
  struct tgt *tg; /* by target id */
  int cap;
  double avg_tokens;                      /* running average of the uncached tokens of routed requests */
  double avg_prompt;                      /* and of their prompt tokens */
  uint64_t nrouted;
  uint64_t ndecisions;  /* routing decisions seen: ours and those peers shared */
  uint64_t last_route;  /* when the last of them was made */
  double mean_gap_s;    /* running average time between them */
  struct prefix_holders holders; /* block hash -> targets whose index holds it (every tgt.ix is attached) */
  uint64_t pick_no;               /* picks so far: stamps tgt.match_pick and slot */
  struct slot *slot;              /* by target id, compact: this pick's candidates and prefix holders */
  int nslot;
  int32_t *held;                  /* scratch: ids of this pick's prefix holders */
  int nheld, capheld;
  double *est; /* scratch, per candidate index */
  int *in;     /* scratch: candidate indexes that may be in the best few */
  int nest;
};

static void *ours_create(const struct policy_config *cfg) {
  (void)cfg;
  struct ours *s = xcalloc(1, sizeof(struct ours));
  prefix_holders_init(&s->holders);
  return s;
}

static void drop(struct tgt *g) {
  if (g->ix) {
    prefix_index_free(g->ix);
    free(g->ix);
  }
  free(g->peer_t);
  free(g->peer_tok);
  *g = (struct tgt){0};
}

static void ours_forget(struct policy *p, int id) {
  struct ours *s = p->impl;
  if (id < s->cap) drop(&s->tg[id]);
}

static void ours_destroy(void *impl) {
  struct ours *s = impl;
  for (int i = 0; i < s->cap; i++) {
    if (s->tg[i].ix) prefix_index_attach(s->tg[i].ix, NULL, 0); /* the holders go as a whole below */
    drop(&s->tg[i]);
  }
  free(s->tg);
  free(s->est);
  free(s->in);
  free(s->slot);
  free(s->held);
  prefix_holders_free(&s->holders);
  free(s);
}

/* tgt_of returns the state of target ID, growing the table to hold it. */
static struct tgt *tgt_of(struct ours *s, int id) {
  s->tg = policy_grow(s->tg, &s->cap, id + 1, sizeof *s->tg);
  return &s->tg[id];
}

/* index_blocks: the prefix index of T holds as many blocks as T's KV pool, in the request's block size. */
static int index_blocks(const struct policy_target *t, const struct policy_req *r) {
  int64_t cap = t->num_gpu_blocks > 0 ? t->num_gpu_blocks : DEFAULT_INDEX_BLOCKS;
  if (t->block_size > 0 && r->block_size > 0 && t->block_size != r->block_size)
    cap = cap * t->block_size / r->block_size;
  if (cap < 1) cap = 1;
  return cap > PREFIX_INDEX_MAX ? PREFIX_INDEX_MAX : (int)cap;
}

static int cached_tokens(const struct ours *s, const struct policy_req *r, int id) {
  const struct prefix_index *ix = s->tg[id].ix;
  if (!ix || r->block_size <= 0) return 0;
  return prefix_index_match(ix, r->block_hashes, policy_prefix_blocks(r)) * r->block_size;
}

/* mark_cached (prefix_holders_match's callback) records that target ID holds K blocks of this pick's prompt. */
static void mark_cached(void *ud, int32_t id, int k) {
  struct ours *s = ud;
  if (id >= s->cap || id >= s->nslot) return;
  s->tg[id].match_blocks = k;
  s->tg[id].match_pick = s->pick_no;
  if (s->slot[id].held_pick == s->pick_no) return;
  s->slot[id].held_pick = s->pick_no;
  s->held = policy_grow(s->held, &s->capheld, s->nheld + 1, sizeof *s->held);
  s->held[s->nheld++] = id;
}

/* The per-pick terms of the estimate that do not depend on the candidate. */
struct pick_terms {
  double prompt, bs;      /* prompt tokens; tokens per block (0: no prefix matching) */
  double avg_prompt, avg_tokens, default_tps;
  double arrivals;        /* w_arrivals / mean gap between our routings / candidates (0: no rate yet) */
  double w_miss, w_decode, w_step, itl_mean;
  double stale_penalty, degraded_penalty;
  uint64_t stale_ns;
  uint64_t now;
};

/* peer_expire drops G's peer reservations that a report of its target taken at REPORT_T covers. */
static void peer_expire(struct tgt *g, uint64_t report_t) {
  while (g->peer_n > 0 && g->peer_t[g->peer_head] <= report_t) {
    g->peer_tokens -= g->peer_tok[g->peer_head];
    g->peer_head = (g->peer_head + 1) % PEER_RING;
    if (--g->peer_n == 0) g->peer_tokens = 0;
  }
}

/* estimate: the expected TTFT of R on T in seconds, plus the miss externality (see the top); no division unless
 * T's prefill rate changed. Sets *known when T holds part of the prompt. */
static inline double estimate(struct ours *s, const struct pick_terms *k, const struct policy_target *t,
                              int *known) {
  struct tgt *g = &s->tg[t->id];
  double cached = g->match_pick == s->pick_no ? g->match_blocks * k->bs : 0;
  if (cached > 0) *known = 1;
  /* A rate below the default is one not yet demonstrated at full batch (a live target's peak window rate). */
  double tps = t->prefill_tps > k->default_tps ? t->prefill_tps : k->default_tps;
  if (g->tps != tps) {
    g->tps = tps;
    g->inv_tps = 1 / tps;
  }
  double inv = g->inv_tps, uncached = k->prompt - cached, u = uncached * inv;
  /* Ours routed since the report that have no first token yet are waiting there too (ours routed since
   * that already started are running). */
  double since = t->routed_since_report < g->pend_n ? t->routed_since_report : g->pend_n;
  double others = t->waiting + since - g->pend_n;
  if (others < 0) others = 0;
  uint64_t sig_age = t->report_ns == UINT64_MAX ? UINT64_MAX : k->now > t->report_ns ? k->now - t->report_ns : 0;
  if (g->peer_n > 0) { /* a target with no report for stale_ns has the stale penalty instead */
    uint64_t age = sig_age == UINT64_MAX || sig_age > k->stale_ns ? k->stale_ns : sig_age;
    peer_expire(g, k->now > age ? k->now - age : 0);
  }
  /* Other routers' waiting requests: an average prompt, less what the target's recent hit rate saves; and
   * those they routed there since the report, at their own estimates. */
  double per_req = t->prefix_hit_rate >= 0 ? k->avg_prompt * (1 - t->prefix_hit_rate) : k->avg_tokens;
  double queue = g->pend_tokens + others * per_req + g->peer_tokens;
  double waiting = t->waiting + since + g->peer_n;
  /* ... and those that arrive there while it prefills (the routing rate, spread over the candidates). */
  double queued = (waiting > g->pend_n ? waiting : g->pend_n) + k->arrivals * u;
  /* Decode: the running batch there. Ours routed since the report that have a first token are running too. */
  double started = t->routed_since_report - g->pend_n;
  double running = t->running + (started > 0 ? started : 0);
  /* The time between its steps, from one source for every candidate: the reported windowed ITL when any
   * candidate reports one (a target that does not, idle lately or a remote one whose node does not send it,
   * counts as their mean), else what we observed on our own requests there (a non-streamed response's tokens
   * all arrive at once, so ours cannot be mixed with reported ones). */
  double step = k->itl_mean > 0 ? (t->itl_s > 0 ? t->itl_s : k->itl_mean) : g->step_s;
  double est = queue * inv + (1 + k->w_miss * queued + k->w_decode * running) * u + k->w_step * step;
  if (sig_age == UINT64_MAX || sig_age > k->stale_ns) est += k->stale_penalty;
  if (t->degraded) est += k->degraded_penalty;
  return est + (t->network_s > 0 ? t->network_s : 0);
}

/* consider folds candidate I's estimate E into the pick's best (*BEST at *BI, *BOUND the slack bound around it)
 * and, when E is within the bound so far, into the list of those that may be in the best few. */
static inline void consider(struct ours *s, const struct policy_config *cf, int i, double e, double *best, int *bi,
                            double *bound, int *nin) {
  s->est[i] = e;
  if (e < *best) *best = e, *bi = i, *bound = e * (1 + cf->ours_slack_rel) + cf->ours_slack_abs_s;
  s->in[*nin] = i;
  *nin += e <= *bound; /* the best only falls, so one outside this bound is outside the final one */
}

/* mark_candidates stamps C[0..n) as this pick's candidates in the slot table (growing it and the target table to
 * the largest id) and returns the mean of the ITLs they report (0: none does). A function of its own so that its
 * running sums stay in registers (inside ours_pick they were spilled: a store-to-load chain per candidate). */
static __attribute__((noinline)) double mark_candidates(struct ours *s, const struct policy_target *c, int n) {
  struct slot *slot = s->slot;
  int lim = s->nslot < s->cap ? s->nslot : s->cap;
  uint64_t pick = s->pick_no;
  double itls = 0;
  int nitl = 0;
  for (int i = 0; i < n; i++) {
    int id = c[i].id;
    if (id >= lim) {
      tgt_of(s, id);
      s->slot = slot = policy_grow(s->slot, &s->nslot, id + 1, sizeof *s->slot);
      lim = s->nslot < s->cap ? s->nslot : s->cap;
    }
    slot[id].cand_pick = pick;
    slot[id].pos = i;
    double itl = c[i].itl_s;
    if (itl > 0) itls += itl, nitl++;
  }
  return nitl ? itls / nitl : 0;
}

static int ours_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n,
                     uint64_t now) {
  struct ours *s = p->impl;
  if (n == 1) return 0;
  if (n > s->nest) {
    int cap = s->nest;
    s->est = policy_grow(s->est, &cap, n, sizeof *s->est);
    cap = s->nest;
    s->in = policy_grow(s->in, &cap, n, sizeof *s->in);
    s->nest = cap;
  }
  s->pick_no++;
  double itl_mean = mark_candidates(s, c, n);
  /* Which targets hold a prefix of the prompt, and how much: one probe per run of the prompt's blocks in the
   * inverted index, not one per candidate. */
  s->nheld = 0;
  if (r->block_size > 0) prefix_holders_match(&s->holders, r->block_hashes, policy_prefix_blocks(r), mark_cached, s);
  const struct policy_config *cf = &p->cfg;
  struct pick_terms k = {.prompt = r->prompt_tokens,
                         .bs = r->block_size > 0 ? r->block_size : 0,
                         .avg_prompt = s->avg_prompt,
                         .avg_tokens = s->avg_tokens,
                         .default_tps = cf->ours_default_tps,
                         .arrivals = s->mean_gap_s > 0 ? cf->ours_w_arrivals / s->mean_gap_s / n : 0,
                         .w_miss = cf->ours_w_miss,
                         .w_decode = cf->ours_w_decode,
                         .w_step = cf->ours_w_step,
                         .itl_mean = itl_mean,
                         .stale_penalty = cf->ours_stale_penalty_s,
                         .degraded_penalty = cf->ours_degraded_penalty_s,
                         .stale_ns = cf->stale_ns,
                         .now = now};
  double best = INFINITY, bound = INFINITY;
  int bi = 0, known = 0; /* known: does any candidate hold part of this prompt, as far as this router knows? */
  int nin = 0;           /* s->in[0..nin): candidates within the bound of the best so far */
  /* The candidates holding part of the prompt first: they usually set a low best, which prunes the rest. */
  for (int j = 0; j < s->nheld; j++) {
    const struct slot *sl = &s->slot[s->held[j]];
    if (sl->cand_pick == s->pick_no)
      consider(s, cf, sl->pos, estimate(s, &k, &c[sl->pos], &known), &best, &bi, &bound, &nin);
  }
  /* Then the others, which have nothing cached: every term of the estimate is >= 0 but the prefill itself,
   * (1 + w_decode * running) * prompt / rate, so a candidate whose prefill alone is past the bound (with a
   * 1e-9 margin over rounding) can be neither the best nor among the best few and is not scored. */
  for (int i = 0; i < n; i++) {
    if (s->slot[c[i].id].held_pick == s->pick_no) continue;
    double tps = c[i].prefill_tps > k.default_tps ? c[i].prefill_tps : k.default_tps;
    if ((1 + k.w_decode * c[i].running) * k.prompt > bound * tps * (1 + 1e-9)) {
      s->est[i] = INFINITY;
      continue;
    }
    consider(s, cf, i, estimate(s, &k, &c[i], &known), &best, &bi, &bound, &nin);
  }
  int kb = cf->ours_affinity_blocks < r->nblocks ? cf->ours_affinity_blocks : r->nblocks;
  /* Rank the best few by a per-request key: the prefix's rendezvous hash, or a random draw. */
  uint64_t key = kb > 0 ? r->block_hashes[kb - 1] : rng_next(&p->rng);
  int ia = -1, ib = -1;
  uint64_t ha = 0, hb = 0;
  for (int j = 0; j < nin; j++) {
    /* Branch-free filter: one outside the final bound ranks 0 and is never taken. One inside whose hash is 0
     * is not taken either (a 2^-64 chance per candidate). */
    int i = s->in[j];
    uint64_t h = policy_mix64(key ^ ((uint64_t)c[i].id + 1) * 0x9E3779B97F4A7C15ull);
    h &= -(uint64_t)(s->est[i] <= bound);
    if (h > ha) {
      ib = ia, hb = ha;
      ia = i, ha = h;
    } else if (h > hb) {
      ib = i, hb = h;
    }
  }
  if (ia < 0) return bi;
  if (ib < 0) return ia;
  /* A prefix new to this router goes to its rendezvous choice: the other routers, equally ignorant of
   * where it is, send it there too (or already did). */
  if (!known && kb > 0 && cf->ours_new_prefix_home) return ia;
  return s->est[ib] < s->est[ia] ? ib : ia;
}

/* index_of returns T's prefix index, made or resized to T's capacity. */
static struct prefix_index *index_of(struct ours *s, const struct policy_target *t, const struct policy_req *r) {
  struct tgt *g = tgt_of(s, t->id);
  int cap = index_blocks(t, r);
  if (!g->ix) {
    g->ix = xcalloc(1, sizeof(struct prefix_index));
    prefix_index_init(g->ix, cap);
    prefix_index_attach(g->ix, &s->holders, t->id);
  } else if (g->ix->capacity != cap) {
    prefix_index_set_capacity(g->ix, cap);
  }
  return g->ix;
}

static void ours_on_peer_route(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                               uint64_t now) {
  (void)now;
  struct prefix_index *ix = index_of(p->impl, t, r);
  if (r->nblocks > 0 && r->block_size > 0) prefix_index_insert_path(ix, r->block_hashes, r->nblocks);
}

/* note_decision counts a routing decision, ours or a peer's, at NOW in the mean gap between decisions. */
static void note_decision(struct ours *s, uint64_t now) {
  if (s->ndecisions++ > 0 && now >= s->last_route) {
    double gap = (double)(now - s->last_route) / 1e9;
    s->mean_gap_s = s->mean_gap_s > 0 ? s->mean_gap_s + EWMA * (gap - s->mean_gap_s) : gap;
  }
  s->last_route = now;
}

/* ours_on_peer_decision records where a peer sent R and reserves its uncached estimate on T until a report
 * of T taken after NOW covers it. */
static void ours_on_peer_decision(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                                  uint64_t now) {
  struct ours *s = p->impl;
  struct tgt *g = tgt_of(s, t->id);
  int est = r->prompt_tokens - cached_tokens(s, r, t->id);
  if (est < 1) est = 1;
  ours_on_peer_route(p, r, t, now);
  if (!g->peer_t) {
    g->peer_t = xcalloc(PEER_RING, sizeof *g->peer_t);
    g->peer_tok = xcalloc(PEER_RING, sizeof *g->peer_tok);
  }
  if (g->peer_n == PEER_RING) peer_expire(g, g->peer_t[g->peer_head]); /* the oldest goes */
  int k = (g->peer_head + g->peer_n++) % PEER_RING;
  g->peer_t[k] = now;
  g->peer_tok[k] = (float)est;
  g->peer_tokens += est;
  note_decision(s, now);
}

static void ours_on_route(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now,
                          struct policy_ticket *tk) {
  struct ours *s = p->impl;
  int id = t->id;
  struct prefix_index *ix = index_of(s, t, r);
  struct tgt *g = &s->tg[id];
  int est = r->prompt_tokens - cached_tokens(s, r, id);
  if (est < 1) est = 1;
  tk->est_tokens = est;
  if (r->nblocks > 0 && r->block_size > 0) prefix_index_insert_path(ix, r->block_hashes, r->nblocks);
  g->pend_tokens += est;
  g->pend_n++;
  s->nrouted++;
  double alpha = s->nrouted < 20 ? 1.0 / (double)s->nrouted : EWMA;
  s->avg_tokens += alpha * (est - s->avg_tokens);
  s->avg_prompt += alpha * (r->prompt_tokens - s->avg_prompt);
  note_decision(s, now);
}

/* settle takes a request out of the target's pending prefill work. */
static void settle(struct ours *s, const struct policy_ticket *tk) {
  struct tgt *g = tgt_of(s, tk->target);
  g->pend_tokens -= tk->est_tokens;
  if (--g->pend_n <= 0) {
    g->pend_tokens = 0;
    g->pend_n = 0;
  } else if (g->pend_tokens < 0) {
    g->pend_tokens = 0;
  }
}

static void ours_on_first_token(struct policy *p, struct policy_ticket *tk, uint64_t now) {
  (void)now;
  settle(p->impl, tk);
}

static void ours_on_done(struct policy *p, struct policy_ticket *tk, uint64_t now) {
  struct ours *s = p->impl;
  if (!tk->first_seen) {
    settle(s, tk);
    return;
  }
  if (tk->out_tokens > 1 && now > tk->t_first) {
    double step = (double)(now - tk->t_first) / 1e9 / (tk->out_tokens - 1), *avg = &tgt_of(s, tk->target)->step_s;
    *avg = *avg > 0 ? *avg + EWMA * (step - *avg) : step;
  }
}

const struct policy_ops policy_ours_ops = {.name = "ours",
                                           .create = ours_create,
                                           .destroy = ours_destroy,
                                           .pick = ours_pick,
                                           .on_route = ours_on_route,
                                           .on_first_token = ours_on_first_token,
                                           .on_done = ours_on_done,
                                           .forget = ours_forget,
                                           .on_peer_route = ours_on_peer_route,
                                           .on_peer_decision = ours_on_peer_decision};
