/* Workload generators: no reuse, shared system prompts, multi-turn sessions; Poisson or bursty arrivals.
 *
 * All draws come from one seeded PRNG, so a (parameters, seed) pair always yields the same requests.
 *  - no-reuse: every prompt is unique content (prompt_min..prompt_max tokens).
 *  - shared-prefix: one of `groups` system prompts of system_tokens tokens (Zipf popularity), then a
 *    unique question of prompt_min..prompt_max tokens (SGLang's generated-shared-prefix benchmark shape).
 *  - multi-turn: sessions of turns_min..turns_max turns; turn k's prompt is the session's system prompt
 *    (one of `groups`), then every earlier user turn and answer, then the new user turn; turns of a session
 *    are think_s apart on average (exponential); sessions start as a Poisson process at rate / mean turns.
 * Bursty arrivals: the same mean rate, but all arrivals fall in the first 25% of every 20 s period. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "sim/workload.h"

#define BURST_PERIOD_S 20.0
#define BURST_ON 0.25
#define MAX_TURNS 64

void wl_gen_default(struct wl_gen *g, enum wl_kind kind) {
  *g = (struct wl_gen){.kind = kind, .n = 2000, .rate = 10, .seed = 1, .tenants = 1, .zipf = 0};
  switch (kind) {
  case WL_NO_REUSE:
    g->prompt_min = 256, g->prompt_max = 2048;
    g->output_min = 64, g->output_max = 512;
    break;
  case WL_SHARED_PREFIX:
    g->prompt_min = 64, g->prompt_max = 256;
    g->output_min = 64, g->output_max = 256;
    g->groups = 256, g->system_tokens = 4096, g->zipf = 0.8;
    break;
  case WL_MULTI_TURN:
    g->prompt_min = 64, g->prompt_max = 512;
    g->output_min = 64, g->output_max = 512;
    g->groups = 16, g->system_tokens = 1024, g->zipf = 0.8;
    g->turns_min = 2, g->turns_max = 12, g->think_s = 20;
    break;
  }
}

static const char *const kind_names[] = {"no-reuse", "shared-prefix", "multi-turn"};

int wl_kind_parse(const char *s, enum wl_kind *out) {
  for (int i = 0; i < 3; i++)
    if (strcmp(s, kind_names[i]) == 0) {
      *out = (enum wl_kind)i;
      return 0;
    }
  return -EINVAL;
}

const char *wl_kind_name(enum wl_kind k) { return (unsigned)k < 3 ? kind_names[k] : "?"; }

static int uni(struct rng *r, int lo, int hi) { return hi <= lo ? lo : lo + (int)rng_below(r, (uint32_t)(hi - lo + 1)); }

static double expo(struct rng *r, double mean) { return -mean * log(1.0 - rng_unit(r)); }

/* on_time_to_wall maps time on the "on" clock of bursty arrivals to wall time. */
static double on_time_to_wall(double t) {
  double on = BURST_PERIOD_S * BURST_ON;
  double k = floor(t / on);
  return k * BURST_PERIOD_S + (t - k * on);
}

struct zipf {
  double *cdf;
  int n;
};

static void zipf_init(struct zipf *z, int n, double s) {
  z->n = n;
  z->cdf = xmalloc((size_t)n * sizeof *z->cdf);
  double sum = 0;
  for (int i = 0; i < n; i++) {
    sum += s > 0 ? 1.0 / pow(i + 1, s) : 1.0;
    z->cdf[i] = sum;
  }
  for (int i = 0; i < n; i++)
    z->cdf[i] /= sum;
}

static int zipf_draw(const struct zipf *z, struct rng *r) {
  double u = rng_unit(r);
  int lo = 0, hi = z->n - 1;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (z->cdf[mid] >= u)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

static uint64_t arrival_ns(const struct wl_gen *g, double t_s) {
  double wall = g->bursty ? on_time_to_wall(t_s * BURST_ON) : t_s;
  return (uint64_t)llround(wall * 1e9);
}

static void gen_single(const struct wl_gen *g, struct workload *w, struct rng *r, const struct zipf *z) {
  double t = 0;
  for (int i = 0; i < g->n; i++) {
    t += expo(r, 1.0 / g->rate);
    struct wl_span sp[2];
    int ns = 0, prompt = 0, tenant;
    if (g->kind == WL_SHARED_PREFIX) {
      int grp = zipf_draw(z, r);
      sp[ns++] = (struct wl_span){.id = WL_ID_GROUP | (uint64_t)grp, .tokens = g->system_tokens};
      prompt += g->system_tokens;
      tenant = grp % g->tenants;
    } else {
      tenant = (int)rng_below(r, (uint32_t)g->tenants);
    }
    int q = uni(r, g->prompt_min, g->prompt_max);
    sp[ns++] = (struct wl_span){.id = workload_unique_id(w), .tokens = q};
    prompt += q;
    int out = uni(r, g->output_min, g->output_max);
    workload_add(w, arrival_ns(g, t), prompt, out, tenant, sp, ns);
  }
}

static void gen_multi_turn(const struct wl_gen *g, struct workload *w, struct rng *r, const struct zipf *z) {
  double mean_turns = (g->turns_min + g->turns_max) / 2.0;
  double session_rate = g->rate / mean_turns;
  struct wl_span sp[1 + 2 * MAX_TURNS];
  double t_start = 0;
  int made = 0;
  while (made < g->n) {
    t_start += expo(r, 1.0 / session_rate);
    int grp = zipf_draw(z, r);
    int tenant = grp % g->tenants;
    int turns = uni(r, g->turns_min, g->turns_max);
    int ns = 0, ctx = g->system_tokens;
    sp[ns++] = (struct wl_span){.id = WL_ID_GROUP | (uint64_t)grp, .tokens = g->system_tokens};
    double t = t_start;
    for (int k = 0; k < turns && made < g->n; k++) {
      int u = uni(r, g->prompt_min, g->prompt_max);
      sp[ns++] = (struct wl_span){.id = workload_unique_id(w), .tokens = u};
      ctx += u;
      int out = uni(r, g->output_min, g->output_max);
      workload_add(w, arrival_ns(g, t), ctx, out, tenant, sp, ns);
      made++;
      /* The answer becomes part of the next turn's prompt. */
      sp[ns++] = (struct wl_span){.id = workload_unique_id(w), .tokens = out};
      ctx += out;
      t += expo(r, g->think_s);
    }
  }
}

int workload_generate(const struct wl_gen *g, struct workload *w, char *err, size_t errlen) {
  const char *why = NULL;
  if (g->n < 1) why = "need at least one request";
  else if (!(g->rate > 0)) why = "rate must be > 0";
  else if (g->tenants < 1) why = "tenants must be >= 1";
  else if (g->prompt_min < 1 || g->prompt_max < g->prompt_min) why = "bad prompt length range";
  else if (g->output_min < 1 || g->output_max < g->output_min) why = "bad output length range";
  else if (g->kind != WL_NO_REUSE && (g->groups < 1 || g->system_tokens < 1)) why = "groups and system tokens must be >= 1";
  else if (g->kind == WL_MULTI_TURN && (g->turns_min < 1 || g->turns_max < g->turns_min || g->turns_max > MAX_TURNS))
    why = "bad turns range (1..64)";
  else if (g->kind == WL_MULTI_TURN && !(g->think_s >= 0)) why = "think time must be >= 0";
  else if (g->zipf < 0) why = "zipf exponent must be >= 0";
  if (why) {
    if (err && errlen) snprintf(err, errlen, "%s workload: %s", wl_kind_name(g->kind), why);
    return -EINVAL;
  }
  struct rng r;
  rng_seed(&r, g->seed * 0x9E3779B97F4A7C15ull + 12345);
  struct zipf z = {0};
  zipf_init(&z, g->groups > 0 ? g->groups : 1, g->zipf);
  if (g->kind == WL_MULTI_TURN)
    gen_multi_turn(g, w, &r, &z);
  else
    gen_single(g, w, &r, &z);
  free(z.cdf);
  workload_sort(w);
  return 0;
}
