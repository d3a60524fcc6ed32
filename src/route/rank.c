/* Ranking, admission and outcomes for requests the router does not carry (route/rank.h). */
#include "route/rank.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"

static bool any_bit(const uint64_t *b, int words) {
  uint64_t any = 0;
  for (int i = 0; i < words; i++) any |= b[i];
  return any != 0;
}

/* available: breaker_available, without the call for a closed breaker (nearly every one, every decision). */
static inline bool available(const struct router *r, int id, uint64_t now) {
  const struct breaker *b = &r->breakers[id];
  return b->state == BREAKER_CLOSED || breaker_available(b, &r->opts.breaker, now);
}

int router_candidates(struct router *r, struct slice model, const uint64_t *exclude, uint64_t now,
                      struct router_cands *out) {
  struct cand_set *c = cand_sets_get(&r->cands, r->store, model);
  const int *ids = c->ids;
  int n = c->n;
  if (r->ctl.ndrains || r->ctl.npins || (exclude && any_bit(exclude, store_bitmap_words(r->store)))) {
    int m = 0;
    for (int i = 0; i < n; i++)
      if (!exclude || !(exclude[ids[i] / 64] >> (ids[i] % 64) & 1)) r->cand_ids[m++] = ids[i];
    n = route_ctl_filter(&r->ctl, r->store, model, r->cand_ids, m);
    ids = r->cand_ids;
  }
  /* Open breakers: those targets get no request until their backoff is over, unless every candidate's breaker
   * is open (then they are tried anyway: a breaker must never be what makes a model unavailable). */
  int open = 0;
  for (int i = 0; i < n; i++) open += !available(r, ids[i], now);
  if (open > 0 && open < n) {
    int m = 0;
    for (int i = 0; i < n; i++)
      if (available(r, ids[i], now)) r->cand_ids[m++] = ids[i];
    ids = r->cand_ids;
    n = m;
  }
  out->n = n;
  out->ids = ids;
  out->pt = c->pt;
  if (ids != c->ids) {
    for (int i = 0; i < n; i++) r->cand_pt[i] = c->pt[c->pos[ids[i]]];
    out->pt = r->cand_pt;
  }
  return n;
}

int router_cands_keep(struct router *r, struct router_cands *c, bool (*keep)(const void *arg, const struct target *t),
                      const void *arg) {
  int k = 0, first_out = -1;
  for (int i = 0; i < c->n; i++) {
    if (keep(arg, &r->store->targets[c->ids[i]]))
      k++;
    else if (first_out < 0)
      first_out = i;
  }
  if (k == 0 || k == c->n) return k;
  /* Compacted into the scratch; when c is already there, in place (the write index never passes the read). */
  int m = 0;
  for (int i = 0; i < c->n; i++) {
    if (i >= first_out && !keep(arg, &r->store->targets[c->ids[i]])) continue;
    r->cand_ids[m] = c->ids[i];
    r->cand_pt[m++] = c->pt[i];
  }
  c->ids = r->cand_ids;
  c->pt = r->cand_pt;
  c->n = m;
  return k;
}

static int by_score(const void *a, const void *b) {
  const struct router_ranked *x = a, *y = b;
  return x->score < y->score ? -1 : x->score > y->score;
}

static const char *reason_of(const struct router *r, const struct target *t, int64_t need, uint64_t now) {
  if (!t->updated_ns || now - t->updated_ns > r->score.stale_ns) return "stale load report";
  if (t->gpu_degraded) return "degraded GPU";
  if (adm_target_saturated(&r->opts.adm, t, need)) return "saturated KV budget";
  return "lower score";
}

/* ranked_fill fills the output fields of one candidate whose score is set. */
static void ranked_fill(const struct router *r, const struct target *t, int64_t need, uint64_t now,
                        bool chosen, struct router_ranked *x) {
  double ttft = -1;
  if (!store_ttfb_quantile(t, STORE_TTFB_STREAM, 0.5, 1, &ttft) && t->load.ttft_p50 >= 0)
    ttft = t->load.ttft_p50;
  x->id = t->id;
  x->chosen = chosen;
  x->est_ttft_s = ttft >= 0 ? ttft * (1 + x->score) : -1;
  x->reason = chosen ? "policy choice" : reason_of(r, t, need, now);
}

int router_rank(struct router *r, struct slice model, const struct policy_req *preq, uint64_t now,
                struct router_ranked *out, int max, const char **policy) {
  struct router_cands cs;
  int n = router_candidates(r, model, NULL, now, &cs);
  const int *ids = cs.ids;
  struct policy *pol = router_policy_for(r, model);
  *policy = policy_name(pol);
  if (n == 0 || max <= 0) return 0;
  int pick = policy_pick(pol, preq, cs.pt, n, now);
  int64_t need = (int64_t)preq->prompt_tokens + preq->max_tokens;
  const struct target *chosen = &r->store->targets[ids[pick]];
  out[0].score = score_target(chosen, &r->score, now);
  ranked_fill(r, chosen, need, now, true, &out[0]);
  int m = n < max ? n : max;
  if (m == 1) return 1; /* the policy's choice is all that was asked for: the others need no score */
  /* The others by increasing score: all of them sorted, or the few asked for selected. */
  struct router_ranked *rest = xmalloc((size_t)n * sizeof *rest);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (i != pick)
      rest[k++] = (struct router_ranked){.id = ids[i],
                                         .score = score_target(&r->store->targets[ids[i]], &r->score, now)};
  if (m - 1 <= 8 && m - 1 < k) {
    for (int i = 0; i < m - 1; i++) { /* selection of the few lowest scores, in order */
      int best = i;
      for (int j = i + 1; j < k; j++)
        if (rest[j].score < rest[best].score) best = j;
      struct router_ranked tmp = rest[i];
      rest[i] = rest[best];
      rest[best] = tmp;
    }
  } else {
    qsort(rest, (size_t)k, sizeof rest[0], by_score);
  }
  for (int i = 1; i < m; i++) {
    out[i].score = rest[i - 1].score;
    ranked_fill(r, &r->store->targets[rest[i - 1].id], need, now, false, &out[i]);
  }
  free(rest);
  return m;
}

enum router_admit router_admit(struct router *r, int tenant, struct slice model, double tokens, uint64_t now,
                               const char **reason, uint64_t *retry_after_ns) {
  struct router_cands cs;
  int n = router_candidates(r, model, NULL, now, &cs);
  *retry_after_ns = 0;
  if (n == 0) {
    *reason = "no_target";
    *retry_after_ns = 1000000000ull;
    return ROUTER_REJECT;
  }
  int shed = adm_limit(&r->adm, tenant, tokens, now, retry_after_ns);
  if (shed != ADM_OK) {
    *reason = adm_shed_name(shed);
    return ROUTER_REJECT;
  }
  adm_done(&r->adm, tenant); /* nothing tells when the gateway's request ends: hold no slot */
  bool full = adm_all_saturated(&r->opts.adm, r->store, cs.ids, n, (int64_t)tokens);
  if (full) {
    *reason = "saturated";
    *retry_after_ns = 1000000000ull;
    return ROUTER_QUEUE;
  }
  *reason = "";
  return ROUTER_ADMIT;
}

void router_outcome(struct router *r, int id, const struct policy_req *preq, double ttft_s, int out_tokens,
                    enum router_outcome_status status, bool streamed, uint64_t now) {
  struct target *t = &r->store->targets[id];
  struct policy *pol = router_policy_for(r, slice_cstr(preq->model ? preq->model : ""));
  struct policy_target pt;
  uint64_t ttft_ns = ttft_s > 0 ? (uint64_t)(ttft_s * 1e9) : 0;
  uint64_t sent = now > ttft_ns ? now - ttft_ns : 0;
  cand_record(t, &pt);
  struct policy_ticket tk = {.target = -1};
  policy_on_route(pol, preq, &pt, sent, &tk);
  if (ttft_ns) policy_on_first_token(pol, &tk, now);
  policy_on_done(pol, &tk, now, out_tokens);
  if (status == ROUTER_OUTCOME_OK) {
    breaker_success(&r->breakers[id]);
    if (ttft_ns) store_ttfb_observe(r->store, id, streamed ? STORE_TTFB_STREAM : STORE_TTFB_FULL, ttft_s);
  } else if (status == ROUTER_OUTCOME_ERROR) {
    breaker_failure(&r->breakers[id], &r->opts.breaker, now);
  }
}
