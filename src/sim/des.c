/* The discrete-event routing simulator (see des.h): one event heap, engines advanced lazily in time order. */
#include "sim/des.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/rng.h"
#include "sim/engine.h"

enum { EV_ARRIVAL, EV_ENGINE, EV_SCRAPE, EV_DELIVER, EV_PEER, EV_KV };

struct snap {
  uint64_t t;
  int waiting, running;
  double kv_usage, hit_rate, itl_s;
};

struct ev {
  uint64_t t, seq;
  int type;
  int a, b;         /* arrival: request; engine: engine, version; scrape/deliver: router, engine */
  struct snap s;    /* deliver */
};

struct heap {
  struct ev *v;
  size_t n, cap;
};

/* Per request at run time. */
struct rq {
  uint64_t t_first, t_done;
  int engine, router;
  int cached;
  int prev, next; /* the router's in-flight list on its engine, in routing order */
  struct policy_ticket tk;
};

struct view {
  struct policy_target t; /* signals as of report_t, plus router-local counts */
  uint64_t report_t;
  int head, tail;
  uint64_t last_q, last_h; /* the engine's prefix-cache counters at this router's previous scrape */
  struct hist last_itl;     /* and its inter-token-latency histogram */
};

/* A run of consecutive blocks one engine stored (kv_events): queued until delivered, then freed. */
struct kvrun {
  int e, n, cap;
  uint64_t *h;
};

struct sim {
  const struct des_config *c;
  const struct workload *w;
  struct sim_engine **eng;
  uint64_t *eng_at;      /* time of the engine's pending event (UINT64_MAX none) */
  uint32_t *eng_ver;
  struct policy *pol[DES_MAX_ROUTERS];
  struct view *views;    /* [router * nengines + engine] */
  struct rq *rq;
  struct heap h;
  uint64_t seq, events;
  size_t completed;
  struct rng rng;
  uint64_t *hashes;      /* scratch */
  int maxh;
  uint64_t model_seed;
  struct policy_target *cand;
  uint64_t *eng_requests;
  uint64_t report_ns;    /* scrape interval of this run's policy */
  int max_tokens;        /* the max_tokens budget policies see */
  struct kvrun *kv;     /* kv_events: runs stored, by index (EV_KV's a) */
  int nkv, capkv;
  int kv_open;          /* the run still growing in the engine advance under way, -1 none */
  int kv_engine;        /* the engine being advanced (its cache callbacks say nothing of which) */
};

/* ---- heap ---- */

static int ev_less(const struct ev *a, const struct ev *b) { return a->t < b->t || (a->t == b->t && a->seq < b->seq); }

static void heap_push(struct sim *s, struct ev e) {
  struct heap *h = &s->h;
  e.seq = s->seq++;
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 256;
    h->v = xrealloc(h->v, h->cap * sizeof *h->v);
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!ev_less(&e, &h->v[p])) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = e;
}

static struct ev heap_pop(struct heap *h) {
  struct ev top = h->v[0];
  struct ev last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l >= h->n) break;
    m = l;
    if (l + 1 < h->n && ev_less(&h->v[l + 1], &h->v[l])) m = l + 1;
    if (!ev_less(&h->v[m], &last)) break;
    h->v[i] = h->v[m];
    i = m;
  }
  if (h->n) h->v[i] = last;
  return top;
}

/* ---- engines ---- */

static void reschedule(struct sim *s, int e) {
  uint64_t t = sim_engine_next_event(s->eng[e]);
  if (t == s->eng_at[e]) return;
  s->eng_at[e] = t;
  s->eng_ver[e]++;
  if (t != UINT64_MAX) heap_push(s, (struct ev){.t = t, .type = EV_ENGINE, .a = e, .b = (int)s->eng_ver[e]});
}

static struct view *view_of(struct sim *s, int r, int e) { return &s->views[(size_t)r * s->c->nengines + e]; }

static void list_unlink(struct sim *s, struct view *v, int i) {
  struct rq *q = &s->rq[i];
  if (q->prev >= 0)
    s->rq[q->prev].next = q->next;
  else
    v->head = q->next;
  if (q->next >= 0)
    s->rq[q->next].prev = q->prev;
  else
    v->tail = q->prev;
}

static void engine_cb(void *arg, const struct sim_event *ev) {
  struct sim *s = arg;
  if (ev->kind == SIM_EV_TOKEN) return;
  int i = (int)(uintptr_t)ev->udata;
  struct rq *q = &s->rq[i];
  if (ev->kind == SIM_EV_FIRST_TOKEN) {
    q->t_first = ev->t_ns;
    q->cached = ev->cached_tokens;
    policy_on_first_token(s->pol[q->router], &q->tk, ev->t_ns);
    return;
  }
  /* SIM_EV_DONE */
  q->t_done = ev->t_ns;
  s->completed++;
  struct view *v = view_of(s, q->router, q->engine);
  list_unlink(s, v, i);
  v->t.inflight--;
  if (s->w->reqs[i].t_ns > v->report_t && v->t.routed_since_report > 0) v->t.routed_since_report--;
  policy_on_done(s->pol[q->router], &q->tk, ev->t_ns, ev->tokens_out);
}

/* kv_stored_cb collects what engine s->kv_engine stores into runs (a block extending the open run joins it). */
static void kv_stored_cb(void *arg, uint64_t hash, bool has_parent, uint64_t parent) {
  struct sim *s = arg;
  int e = s->kv_engine, o = s->kv_open;
  struct kvrun *r = o >= 0 ? &s->kv[o] : NULL;
  if (!r || !has_parent || r->h[r->n - 1] != parent) {
    if (s->nkv == s->capkv) {
      s->capkv = s->capkv ? 2 * s->capkv : 256;
      s->kv = xrealloc(s->kv, (size_t)s->capkv * sizeof *s->kv);
    }
    s->kv_open = o = s->nkv++;
    r = &s->kv[o];
    *r = (struct kvrun){.e = e};
  }
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 16;
    r->h = xrealloc(r->h, (size_t)r->cap * sizeof *r->h);
  }
  r->h[r->n++] = hash;
}

static void advance(struct sim *s, int e, uint64_t t) {
  int first = s->nkv;
  s->kv_engine = e;
  s->kv_open = -1;
  sim_engine_advance(s->eng[e], t, engine_cb, s);
  /* What this advance stored goes out as one batch, kv_events_delay_ns later. */
  for (int i = first; i < s->nkv; i++)
    heap_push(s, (struct ev){.t = t + s->c->kv_events_delay_ns, .type = EV_KV, .a = i});
  reschedule(s, e);
}

/* kv_deliver tells every router's policy that run I's engine holds its blocks, and frees the run. */
static void kv_deliver(struct sim *s, int i, uint64_t t) {
  struct kvrun *k = &s->kv[i];
  struct policy_req pr = {.model = s->c->prof.model,
                          .prompt_tokens = k->n * s->c->prof.block_size,
                          .block_hashes = k->h,
                          .nblocks = k->n,
                          .block_size = s->c->prof.block_size,
                          .tenant = -1};
  for (int r = 0; r < s->c->nrouters; r++) policy_on_peer_route(s->pol[r], &pr, &view_of(s, r, k->e)->t, t);
  free(k->h);
  k->h = NULL;
}

/* ---- routers ---- */

static void apply_snap(struct sim *s, int r, int e, const struct snap *sn) {
  struct view *v = view_of(s, r, e);
  v->t.waiting = sn->waiting;
  v->t.running = sn->running;
  v->t.kv_usage = sn->kv_usage;
  if (sn->hit_rate >= 0) v->t.prefix_hit_rate = sn->hit_rate; /* keep the last known rate otherwise */
  v->t.itl_s = sn->itl_s;
  v->report_t = sn->t;
  /* Our requests routed after the scrape are not in it. */
  int n = 0;
  for (int i = v->tail; i >= 0 && s->w->reqs[i].t_ns > sn->t; i = s->rq[i].prev)
    n++;
  v->t.routed_since_report = n;
}

static void scrape(struct sim *s, int r, int e, uint64_t t) {
  advance(s, e, t);
  const struct sim_stats *st = sim_engine_stats(s->eng[e]);
  struct snap sn = {.t = t, .waiting = st->waiting, .running = st->running, .kv_usage = st->kv_usage};
  /* Hit rate since this router's previous scrape (counter deltas, as a scraper of vLLM's counters would);
   * unknown when nothing was admitted in between. */
  struct view *v = view_of(s, r, e);
  uint64_t dq = st->prefix_queries_tokens - v->last_q, dh = st->prefix_hits_tokens - v->last_h;
  sn.hit_rate = dq ? (double)dh / (double)dq : -1;
  v->last_q = st->prefix_queries_tokens;
  v->last_h = st->prefix_hits_tokens;
  /* Median inter-token latency over the same window, from histogram deltas (as the agent's adapter computes
   * it from a runtime's vllm:inter_token_latency_seconds); unknown when no token came in between. */
  struct hist d = st->itl;
  for (int b = 0; b <= d.nbounds; b++)
    d.counts[b] -= v->last_itl.counts[b];
  d.count -= v->last_itl.count;
  d.sum -= v->last_itl.sum;
  sn.itl_s = d.count ? hist_quantile(&d, 0.5) : -1;
  v->last_itl = st->itl;
  if (s->c->signal_delay_ns == 0)
    apply_snap(s, r, e, &sn);
  else
    heap_push(s, (struct ev){.t = t + s->c->signal_delay_ns, .type = EV_DELIVER, .a = r, .b = e, .s = sn});
  if (s->completed < s->w->n)
    heap_push(s, (struct ev){.t = t + s->report_ns, .type = EV_SCRAPE, .a = r, .b = e});
}

/* request_of fills the policy's view of request I (hashes into s->hashes). */
static struct policy_req request_of(struct sim *s, int i) {
  const struct wl_req *wr = &s->w->reqs[i];
  int bs = s->c->prof.block_size;
  int nh = workload_block_hashes(s->w, wr, s->model_seed, bs, s->hashes, s->maxh);
  return (struct policy_req){.model = s->c->prof.model,
                             .prompt_tokens = wr->prompt_tokens,
                             .max_tokens = s->max_tokens,
                             .block_hashes = s->hashes,
                             .nblocks = nh,
                             .block_size = bs,
                             .tenant = wr->tenant};
}

/* peer_route tells every router but the one that routed request I where it went. */
static void peer_route(struct sim *s, int i, uint64_t t) {
  struct policy_req pr = request_of(s, i);
  int from = s->rq[i].router, e = s->rq[i].engine;
  for (int r = 0; r < s->c->nrouters; r++)
    if (r != from) policy_on_peer_decision(s->pol[r], &pr, &view_of(s, r, e)->t, t);
}

static void arrive(struct sim *s, int i, uint64_t t) {
  const struct wl_req *wr = &s->w->reqs[i];
  struct rq *q = &s->rq[i];
  int r = s->c->nrouters > 1 ? (int)rng_below(&s->rng, (uint32_t)s->c->nrouters) : 0;
  struct policy_req pr = request_of(s, i);
  int nh = pr.nblocks;
  int n = s->c->nengines;
  for (int e = 0; e < n; e++) {
    struct view *v = view_of(s, r, e);
    s->cand[e] = v->t;
    s->cand[e].report_ns = v->report_t;
  }
  int k = policy_pick(s->pol[r], &pr, s->cand, n, t);
  int e = s->cand[k].id;
  policy_on_route(s->pol[r], &pr, &s->cand[k], t, &q->tk);
  q->router = r;
  q->engine = e;
  struct view *v = view_of(s, r, e);
  v->t.inflight++;
  v->t.routed_since_report++;
  q->prev = v->tail;
  q->next = -1;
  if (v->tail >= 0)
    s->rq[v->tail].next = i;
  else
    v->head = i;
  v->tail = i;
  s->eng_requests[e]++;
  uint64_t id = sim_engine_submit(s->eng[e], t, s->hashes, nh, wr->prompt_tokens, wr->output_tokens,
                                  (void *)(uintptr_t)i);
  if (id == 0) { /* cannot happen after workload_clip; count it as done so the run ends */
    q->t_done = t;
    s->completed++;
    list_unlink(s, v, i);
    v->t.inflight--;
    v->t.routed_since_report--;
    policy_on_done(s->pol[r], &q->tk, t, 0);
  }
  reschedule(s, e);
  if (s->c->share_routes && s->c->nrouters > 1)
    heap_push(s, (struct ev){.t = t + s->c->share_delay_ns, .type = EV_PEER, .a = i});
  if ((size_t)i + 1 < s->w->n)
    heap_push(s, (struct ev){.t = s->w->reqs[i + 1].t_ns, .type = EV_ARRIVAL, .a = i + 1});
}

/* ---- results ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* quantile of sorted V[0..n) with linear interpolation between closest ranks. */
static double quantile(const double *v, size_t n, double q) {
  if (n == 0) return 0;
  double pos = q * (double)(n - 1);
  size_t lo = (size_t)pos;
  if (lo + 1 >= n) return v[n - 1];
  double f = pos - (double)lo;
  return v[lo] + (v[lo + 1] - v[lo]) * f;
}

static void summarize(struct sim *s, struct des_result *o) {
  const struct workload *w = s->w;
  size_t n = w->n;
  double *ttft = xmalloc((n ? n : 1) * sizeof *ttft), *e2e = xmalloc((n ? n : 1) * sizeof *e2e);
  double *tpot = xmalloc((n ? n : 1) * sizeof *tpot);
  size_t m = 0, mt = 0, good = 0;
  double tsum = 0, esum = 0, psum = 0, out_tokens = 0, prompt = 0, cached = 0;
  uint64_t last = 0;
  for (size_t i = 0; i < n; i++) {
    const struct rq *q = &s->rq[i];
    if (q->t_done == 0 && q->t_first == 0) continue;
    uint64_t t0 = w->reqs[i].t_ns;
    ttft[m] = (double)(q->t_first - t0) / 1e9;
    e2e[m] = (double)(q->t_done - t0) / 1e9;
    tsum += ttft[m];
    esum += e2e[m];
    bool ok = q->t_first - t0 <= s->c->slo_ttft_ns;
    if (w->reqs[i].output_tokens >= 2) {
      tpot[mt] = (double)(q->t_done - q->t_first) / 1e9 / (w->reqs[i].output_tokens - 1);
      psum += tpot[mt];
      if (s->c->slo_tpot_ns && tpot[mt] > (double)s->c->slo_tpot_ns / 1e9) ok = false;
      mt++;
    }
    if (ok) good++;
    if (q->t_done > last) last = q->t_done;
    out_tokens += w->reqs[i].output_tokens;
    prompt += w->reqs[i].prompt_tokens;
    cached += q->cached;
    struct des_engine_result *er = &o->engines[q->engine];
    er->prompt_tokens += (uint64_t)w->reqs[i].prompt_tokens;
    er->cached_tokens += (uint64_t)q->cached;
    m++;
  }
  qsort(ttft, m, sizeof *ttft, cmp_double);
  qsort(e2e, m, sizeof *e2e, cmp_double);
  qsort(tpot, mt, sizeof *tpot, cmp_double);
  o->requests = n;
  o->completed = m;
  uint64_t first = n ? w->reqs[0].t_ns : 0;
  o->duration_s = last > first ? (double)(last - first) / 1e9 : 0;
  o->arrival_span_s = n ? (double)(w->reqs[n - 1].t_ns - first) / 1e9 : 0;
  o->offered_rps = o->arrival_span_s > 0 ? (double)(n - 1) / o->arrival_span_s : 0;
  o->ttft_mean = m ? tsum / (double)m : 0;
  o->ttft_p50 = quantile(ttft, m, 0.50);
  o->ttft_p90 = quantile(ttft, m, 0.90);
  o->ttft_p99 = quantile(ttft, m, 0.99);
  o->e2e_mean = m ? esum / (double)m : 0;
  o->e2e_p50 = quantile(e2e, m, 0.50);
  o->e2e_p90 = quantile(e2e, m, 0.90);
  o->e2e_p99 = quantile(e2e, m, 0.99);
  o->tpot_mean = mt ? psum / (double)mt : 0;
  o->tpot_p50 = quantile(tpot, mt, 0.50);
  o->tpot_p90 = quantile(tpot, mt, 0.90);
  o->tpot_p99 = quantile(tpot, mt, 0.99);
  double d = o->duration_s > 0 ? o->duration_s : 1;
  o->throughput_rps = (double)m / d;
  o->output_tps = out_tokens / d;
  o->goodput_rps = (double)good / d;
  o->slo_attainment = n ? (double)good / (double)n : 0;
  o->prefix_hit_rate = prompt > 0 ? cached / prompt : 0;
  double rmax = 0, rsum = 0, bmax = 0, bsum = 0;
  for (int e = 0; e < s->c->nengines; e++) {
    struct des_engine_result *er = &o->engines[e];
    er->requests = s->eng_requests[e];
    er->busy_s = (double)sim_engine_busy_ns(s->eng[e]) / 1e9;
    o->preemptions += sim_engine_stats(s->eng[e])->preemptions;
    if ((double)er->requests > rmax) rmax = (double)er->requests;
    if (er->busy_s > bmax) bmax = er->busy_s;
    rsum += (double)er->requests;
    bsum += er->busy_s;
  }
  double ne = s->c->nengines;
  o->imbalance_requests = rsum > 0 ? rmax / (rsum / ne) : 0;
  o->imbalance_busy = bsum > 0 ? bmax / (bsum / ne) : 0;
  free(ttft);
  free(e2e);
  free(tpot);
}

void des_config_default(struct des_config *c) {
  *c = (struct des_config){0};
  sim_profile_default(&c->prof);
  c->nengines = 16;
  c->nrouters = 1;
  c->policy = "ours";
  policy_config_default(&c->pcfg);
  c->report_interval_ns = 500ull * 1000000ull;
  c->signal_delay_ns = 50ull * 1000000ull;
  c->slo_ttft_ns = 2ull * 1000000000ull;
  c->seed = 1;
}

static int fail(char *err, size_t errlen, const char *why) {
  if (err && errlen) snprintf(err, errlen, "%s", why);
  return -EINVAL;
}

static void sim_free(struct sim *s) {
  for (int e = 0; s->eng && e < s->c->nengines; e++)
    sim_engine_free(s->eng[e]);
  for (int r = 0; r < DES_MAX_ROUTERS; r++)
    policy_free(s->pol[r]);
  free(s->eng);
  free(s->eng_at);
  free(s->eng_ver);
  free(s->views);
  free(s->rq);
  free(s->h.v);
  free(s->hashes);
  free(s->cand);
  free(s->eng_requests);
  for (int i = 0; i < s->nkv; i++) free(s->kv[i].h);
  free(s->kv);
}

int des_run(const struct des_config *c, const struct workload *w, struct des_result *out, char *err,
            size_t errlen) {
  *out = (struct des_result){0};
  if (c->nengines < 1 || c->nengines > DES_MAX_ENGINES) return fail(err, errlen, "engines must be 1..100000");
  if (c->nrouters < 1 || c->nrouters > DES_MAX_ROUTERS) return fail(err, errlen, "routers must be 1..64");
  if (c->report_interval_ns == 0) return fail(err, errlen, "report interval must be > 0");
  char why[256];
  if (sim_profile_validate(&c->prof, why, sizeof why) != 0) return fail(err, errlen, why);
  uint64_t wall0 = clock_mono_ns();
  struct sim s = {.c = c, .w = w};
  rng_seed(&s.rng, c->seed * 0x9E3779B97F4A7C15ull + 7);
  for (int r = 0; r < c->nrouters; r++) {
    s.pol[r] = policy_new(c->policy, &c->pcfg, c->seed * 1000003ull + (uint64_t)r + 1);
    if (!s.pol[r]) {
      sim_free(&s);
      snprintf(why, sizeof why, "unknown policy '%s'", c->policy ? c->policy : "");
      return fail(err, errlen, why);
    }
  }
  int n = c->nengines;
  s.eng = xcalloc((size_t)n, sizeof *s.eng);
  s.eng_at = xmalloc((size_t)n * sizeof *s.eng_at);
  s.eng_ver = xcalloc((size_t)n, sizeof *s.eng_ver);
  s.eng_requests = xcalloc((size_t)n, sizeof *s.eng_requests);
  s.cand = xcalloc((size_t)n, sizeof *s.cand);
  for (int e = 0; e < n; e++) {
    s.eng[e] = sim_engine_new(&c->prof, c->seed + (uint64_t)e);
    s.eng_at[e] = UINT64_MAX;
    if (c->kv_events) {
      struct sim_cache_cb cc = {.stored = kv_stored_cb, .arg = &s};
      sim_engine_set_cache_cb(s.eng[e], &cc);
    }
  }
  s.maxh = c->prof.max_model_len / c->prof.block_size + 1;
  s.hashes = xmalloc((size_t)s.maxh * sizeof *s.hashes);
  s.model_seed = workload_model_seed(c->prof.model);
  s.rq = xcalloc(w->n ? w->n : 1, sizeof *s.rq);
  s.views = xcalloc((size_t)c->nrouters * (size_t)n, sizeof *s.views);
  s.report_ns = c->report_interval_ns;
  uint64_t up = c->upstream_refresh ? policy_upstream_refresh_ns(c->policy) : 0;
  if (up) s.report_ns = up;
  for (size_t i = 0; i < w->n; i++)
    if (w->reqs[i].output_tokens > s.max_tokens) s.max_tokens = w->reqs[i].output_tokens;
  /* Sustained prefill rate of a full step budget from an empty cache: the capability signal. */
  int chunk = c->prof.max_num_batched_tokens;
  double tps = chunk / sim_profile_step_s(&c->prof, chunk, sim_profile_attn_s(&c->prof, 0, chunk));
  uint64_t first = w->n ? w->reqs[0].t_ns : 0;
  for (int r = 0; r < c->nrouters; r++)
    for (int e = 0; e < n; e++) {
      struct view *v = view_of(&s, r, e);
      v->t = (struct policy_target){.id = e,
                                    .kv_usage = 0,
                                    .num_gpu_blocks = c->prof.num_gpu_blocks,
                                    .block_size = c->prof.block_size,
                                    .prefix_hit_rate = -1,
                                    .itl_s = -1,
                                    .prefill_tps = tps};
      v->report_t = first; /* an idle report at the start */
      v->head = v->tail = -1;
      uint64_t phase = (uint64_t)(rng_unit(&s.rng) * (double)s.report_ns);
      heap_push(&s, (struct ev){.t = first + phase, .type = EV_SCRAPE, .a = r, .b = e});
    }
  if (w->n) heap_push(&s, (struct ev){.t = first, .type = EV_ARRIVAL, .a = 0});
  while (s.h.n) {
    struct ev e = heap_pop(&s.h);
    s.events++;
    switch (e.type) {
    case EV_ARRIVAL:
      arrive(&s, e.a, e.t);
      break;
    case EV_ENGINE:
      if ((uint32_t)e.b == s.eng_ver[e.a]) {
        s.eng_at[e.a] = UINT64_MAX;
        advance(&s, e.a, e.t);
      }
      break;
    case EV_SCRAPE:
      if (s.completed < w->n) scrape(&s, e.a, e.b, e.t);
      break;
    case EV_DELIVER:
      apply_snap(&s, e.a, e.b, &e.s);
      break;
    case EV_PEER:
      peer_route(&s, e.a, e.t);
      break;
    case EV_KV:
      kv_deliver(&s, e.a, e.t);
      break;
    }
  }
  out->nengines = n;
  out->engines = xcalloc((size_t)n, sizeof *out->engines);
  summarize(&s, out);
  out->events = s.events;
  out->report_interval_ns = s.report_ns;
  out->max_tokens = s.max_tokens;
  sim_free(&s);
  out->wall_s = (double)(clock_mono_ns() - wall0) / 1e9;
  return 0;
}

void des_result_free(struct des_result *r) {
  free(r->engines);
  r->engines = NULL;
}
