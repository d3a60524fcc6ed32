/* `infermesh simulate`: options, workload set-up, runs per policy and load, table / JSON output. */
#include "cli/simulate.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/slice.h"
#include "sim/des.h"
#include "sim/workload.h"
#include "state/policy.h"

#define MAX_LIST 32
#define NAME "infermesh simulate"

struct opts {
  char trace[1024];
  size_t limit;
  double time_scale;
  bool generated;
  struct wl_gen gen;
  double rate_scales[MAX_LIST];
  int nscales;
  const char *policies[MAX_LIST];
  int npolicies;
  char policy_arg[512];
  struct des_config dc;
  char profile[256], profiles_dir[1024];
  bool json, capacity, spread_bursts;
  size_t spread; /* requests moved by --spread-bursts */
  double capacity_max;
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: infermesh simulate [options]\n\n"
          "Discrete-event simulation of routing policies over simulated vLLM-like engines in virtual time:\n"
          "N engines, R routers (each with its own delayed view of the engines), a trace or generated workload.\n"
          "Prints TTFT, time-per-output-token (TPOT) and end-to-end percentiles, throughput, goodput under a\n"
          "joint TTFT + TPOT SLO, prefix-cache hit rate and load imbalance for every policy at every load.\n\n"
          "workload (a trace, or a generator):\n"
          "  --trace FILE           Mooncake-format trace (JSON lines: timestamp ms, input_length,\n"
          "                         output_length, hash_ids of 512-token blocks)\n"
          "  --limit N              only the first N requests of the trace (all)\n"
          "  --time-scale X         multiply trace timestamps by X (1; 0.5 = twice as fast)\n"
          "  --spread-bursts        spread requests that share a timestamp evenly over their time bucket (the\n"
          "                         median gap between distinct timestamps): Mooncake's released traces round\n"
          "                         arrivals into ~3 s buckets, ~10 requests each\n"
          "  --workload KIND        no-reuse | shared-prefix | multi-turn (shared-prefix without --trace)\n"
          "  --requests N           generated requests (2000)\n"
          "  --rate R               generated mean arrivals per second (10)\n"
          "  --bursty               arrivals in bursts: all in the first 25%% of every 20 s, same mean rate\n"
          "  --tenants K            spread requests over K tenants (1)\n"
          "  --prompt-tokens A:B    unique prompt part, uniform (no-reuse 256:2048, shared-prefix 64:256,\n"
          "                         multi-turn user turn 64:512)\n"
          "  --output-tokens A:B    output tokens, uniform (64:512; shared-prefix 64:256)\n"
          "  --groups G             shared system prompts (shared-prefix 256, multi-turn 16)\n"
          "  --system-tokens S      tokens per shared system prompt (shared-prefix 4096, multi-turn 1024)\n"
          "  --zipf Z               group popularity ~ 1/rank^Z (0.8; 0 = uniform)\n"
          "  --turns A:B            multi-turn turns per session (2:12)\n"
          "  --think-s T            multi-turn mean gap between turns, seconds (20)\n"
          "load:\n"
          "  --rate-scale X[,Y..]   arrival-rate multipliers, one run per value per policy (1)\n"
          "  --capacity             instead, find per policy the largest rate scale whose p90 TTFT (and p90 TPOT,\n"
          "                         with --slo-tpot-ms) meet the SLO, and print the latencies at that rate\n"
          "  --capacity-max X       upper bound of that search (256)\n"
          "cluster:\n"
          "  --engines N            simulated engines (16)\n"
          "  --routers R            routers, each with its own view; requests spread at random (1)\n"
          "  --profile NAME|FILE    engine profile (llama-3.1-8b-h100, built in)\n"
          "  --profiles-dir DIR     where profile names are looked up (INFERMESH_PROFILES_DIR, ../profiles)\n"
          "  --report-interval MS   each router scrapes each engine this often (500)\n"
          "  --upstream-refresh     a policy whose upstream router scrapes metrics itself scrapes at its\n"
          "                         upstream default instead (llm-d: 50 ms)\n"
          "  --signal-delay MS      a scrape becomes visible to the router this much later (50)\n"
          "  --share-routes MS      routers learn each other's routing decisions MS later (gossip; policies\n"
          "                         that keep prefix knowledge use them); off by default\n"
          "  --kv-events MS         engines publish KV-cache events that reach every router MS later (the\n"
          "                         agents' mesh cache reports); off by default\n"
          "routing:\n"
          "  --policy P[,Q..]|all   round-robin, least-request, power-of-two, sglang, llm-d, ours (all)\n"
          "  --slo-ttft-ms MS       p90 TTFT objective for goodput and capacity (2000)\n"
          "  --slo-tpot-ms MS       p90 time-per-output-token objective, joint with the TTFT one (none)\n"
          "  --seed N               workload, routing and scrape-phase seed (1)\n"
          "  --set KEY=VALUE        override a policy parameter (a field of struct policy_config in\n"
          "                         src/state/policy.h, e.g. sgl_balance_abs=32)\n"
          "output:\n"
          "  --json                 JSON on stdout instead of a table\n\n"
          "exit codes: 0 ok, 1 the trace could not be read or a run failed, 2 bad usage\n");
}

static int bad(const char *opt, const char *val, const char *why) {
  fprintf(stderr, NAME ": %s '%s': %s (see --help)\n", opt, val, why);
  return 2;
}

static bool parse_num(const char *v, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(v, &end);
  if (!end || end == v || *end || errno || !isfinite(d)) return false;
  *out = d;
  return true;
}

static bool parse_int(const char *v, long long lo, long long hi, long long *out) {
  double d;
  if (!parse_num(v, &d) || d != floor(d) || d < (double)lo || d > (double)hi) return false;
  *out = (long long)d;
  return true;
}

static bool parse_range(const char *v, int *a, int *b) {
  const char *colon = strchr(v, ':');
  char buf[64];
  if (!colon || (size_t)(colon - v) >= sizeof buf) return false;
  memcpy(buf, v, (size_t)(colon - v));
  buf[colon - v] = '\0';
  long long x, y;
  if (!parse_int(buf, 1, 1 << 24, &x) || !parse_int(colon + 1, 1, 1 << 24, &y) || y < x) return false;
  *a = (int)x;
  *b = (int)y;
  return true;
}

static int parse_policies(struct opts *o, const char *v) {
  const char *names[MAX_LIST];
  int nall = policy_names(names, MAX_LIST);
  o->npolicies = 0;
  if (strcmp(v, "all") == 0) {
    for (int i = 0; i < nall; i++)
      o->policies[o->npolicies++] = names[i];
    return 0;
  }
  str_copy(o->policy_arg, sizeof o->policy_arg, v);
  const char *p = o->policy_arg;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    int found = -1;
    for (int i = 0; i < nall; i++)
      if (strlen(names[i]) == len && strncmp(p, names[i], len) == 0) found = i;
    if (found < 0 || o->npolicies == MAX_LIST) return bad("--policy", v, "unknown policy name");
    o->policies[o->npolicies++] = names[found];
    p += len + (comma ? 1 : 0);
  }
  return o->npolicies ? 0 : bad("--policy", v, "empty list");
}

static int parse_scales(struct opts *o, const char *v) {
  char buf[512];
  str_copy(buf, sizeof buf, v);
  o->nscales = 0;
  char *p = buf;
  while (p && *p) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    double d;
    if (!parse_num(p, &d) || !(d > 0) || o->nscales == MAX_LIST) return bad("--rate-scale", v, "expected positive numbers");
    o->rate_scales[o->nscales++] = d;
    p = comma ? comma + 1 : NULL;
  }
  return o->nscales ? 0 : bad("--rate-scale", v, "empty list");
}

/* parse_args returns 0 to run, 1 after --help, 2 on bad usage. */
static int parse_args(struct opts *o, int argc, char **argv) {
  const char *kind = NULL;
  struct wl_gen g = {0};
  int pmin = 0, pmax = 0, omin = 0, omax = 0, tmin = 0, tmax = 0;
  long long requests = -1, tenants = -1, groups = -1, systok = -1;
  double rate = -1, zipf = -1, think = -1;
  bool bursty = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    }
    if (strcmp(a, "--bursty") == 0) {
      bursty = true;
      continue;
    }
    if (strcmp(a, "--capacity") == 0) {
      o->capacity = true;
      continue;
    }
    if (strcmp(a, "--spread-bursts") == 0) {
      o->spread_bursts = true;
      continue;
    }
    if (strcmp(a, "--upstream-refresh") == 0) {
      o->dc.upstream_refresh = 1;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) return bad("argument", a, "unexpected (options start with --)");
    if (i + 1 >= argc) {
      fprintf(stderr, NAME ": %s needs a value (see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    long long n;
    double d;
    if (strcmp(a, "--trace") == 0) str_copy(o->trace, sizeof o->trace, v);
    else if (strcmp(a, "--workload") == 0) kind = v;
    else if (strcmp(a, "--profile") == 0) str_copy(o->profile, sizeof o->profile, v);
    else if (strcmp(a, "--profiles-dir") == 0) str_copy(o->profiles_dir, sizeof o->profiles_dir, v);
    else if (strcmp(a, "--set") == 0) {
      char key[64];
      const char *eq = strchr(v, '=');
      if (!eq || (size_t)(eq - v) >= sizeof key) return bad(a, v, "expected KEY=VALUE");
      memcpy(key, v, (size_t)(eq - v));
      key[eq - v] = '\0';
      if (policy_config_set(&o->dc.pcfg, key, eq + 1) != 0) return bad(a, v, "unknown policy parameter or bad value");
    } else if (strcmp(a, "--policy") == 0) {
      if (parse_policies(o, v)) return 2;
    } else if (strcmp(a, "--rate-scale") == 0) {
      if (parse_scales(o, v)) return 2;
    } else if (strcmp(a, "--prompt-tokens") == 0) {
      if (!parse_range(v, &pmin, &pmax)) return bad(a, v, "expected A:B with 1 <= A <= B");
    } else if (strcmp(a, "--output-tokens") == 0) {
      if (!parse_range(v, &omin, &omax)) return bad(a, v, "expected A:B with 1 <= A <= B");
    } else if (strcmp(a, "--turns") == 0) {
      if (!parse_range(v, &tmin, &tmax) || tmax > 64) return bad(a, v, "expected A:B with 1 <= A <= B <= 64");
    } else if (strcmp(a, "--limit") == 0 && parse_int(v, 0, 1ll << 40, &n)) o->limit = (size_t)n;
    else if (strcmp(a, "--requests") == 0 && parse_int(v, 1, 100000000, &n)) requests = n;
    else if (strcmp(a, "--tenants") == 0 && parse_int(v, 1, 1000000, &n)) tenants = n;
    else if (strcmp(a, "--groups") == 0 && parse_int(v, 1, 100000000, &n)) groups = n;
    else if (strcmp(a, "--system-tokens") == 0 && parse_int(v, 1, 1 << 24, &n)) systok = n;
    else if (strcmp(a, "--engines") == 0 && parse_int(v, 1, DES_MAX_ENGINES, &n)) o->dc.nengines = (int)n;
    else if (strcmp(a, "--routers") == 0 && parse_int(v, 1, DES_MAX_ROUTERS, &n)) o->dc.nrouters = (int)n;
    else if (strcmp(a, "--seed") == 0 && parse_int(v, 0, 1ll << 53, &n)) o->dc.seed = (uint64_t)n;
    else if (strcmp(a, "--rate") == 0 && parse_num(v, &d) && d > 0) rate = d;
    else if (strcmp(a, "--zipf") == 0 && parse_num(v, &d) && d >= 0 && d <= 10) zipf = d;
    else if (strcmp(a, "--think-s") == 0 && parse_num(v, &d) && d >= 0) think = d;
    else if (strcmp(a, "--time-scale") == 0 && parse_num(v, &d) && d > 0) o->time_scale = d;
    else if (strcmp(a, "--capacity-max") == 0 && parse_num(v, &d) && d > 0) o->capacity_max = d;
    else if (strcmp(a, "--report-interval") == 0 && parse_num(v, &d) && d > 0 && d <= 3.6e6)
      o->dc.report_interval_ns = (uint64_t)llround(d * 1e6);
    else if (strcmp(a, "--signal-delay") == 0 && parse_num(v, &d) && d >= 0 && d <= 3.6e6)
      o->dc.signal_delay_ns = (uint64_t)llround(d * 1e6);
    else if (strcmp(a, "--share-routes") == 0 && parse_num(v, &d) && d >= 0 && d <= 3.6e6) {
      o->dc.share_routes = 1;
      o->dc.share_delay_ns = (uint64_t)llround(d * 1e6);
    } else if (strcmp(a, "--kv-events") == 0 && parse_num(v, &d) && d >= 0 && d <= 3.6e6) {
      o->dc.kv_events = 1;
      o->dc.kv_events_delay_ns = (uint64_t)llround(d * 1e6);
    } else if (strcmp(a, "--slo-ttft-ms") == 0 && parse_num(v, &d) && d > 0 && d <= 3.6e9)
      o->dc.slo_ttft_ns = (uint64_t)llround(d * 1e6);
    else if (strcmp(a, "--slo-tpot-ms") == 0 && parse_num(v, &d) && d > 0 && d <= 3.6e6)
      o->dc.slo_tpot_ns = (uint64_t)llround(d * 1e6);
    else {
      static const char *const known[] = {"--limit", "--requests", "--tenants", "--groups", "--system-tokens",
                                          "--engines", "--routers", "--seed", "--rate", "--zipf", "--think-s",
                                          "--time-scale", "--capacity-max", "--report-interval",
                                          "--signal-delay", "--slo-ttft-ms", "--share-routes", "--kv-events",
                                          "--slo-tpot-ms"};
      for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (strcmp(a, known[k]) == 0) return bad(a, v, "value out of range or not a number");
      fprintf(stderr, NAME ": unknown option %s (see --help)\n", a);
      return 2;
    }
  }
  if (o->trace[0] && kind) {
    fprintf(stderr, NAME ": --trace and --workload exclude each other (see --help)\n");
    return 2;
  }
  if (!o->trace[0]) {
    enum wl_kind k = WL_SHARED_PREFIX;
    if (kind && wl_kind_parse(kind, &k) != 0) return bad("--workload", kind, "expected no-reuse, shared-prefix or multi-turn");
    wl_gen_default(&g, k);
    if (requests > 0) g.n = (int)requests;
    if (rate > 0) g.rate = rate;
    if (tenants > 0) g.tenants = (int)tenants;
    if (groups > 0) g.groups = (int)groups;
    if (systok > 0) g.system_tokens = (int)systok;
    if (zipf >= 0) g.zipf = zipf;
    if (think >= 0) g.think_s = think;
    if (pmin) g.prompt_min = pmin, g.prompt_max = pmax;
    if (omin) g.output_min = omin, g.output_max = omax;
    if (tmin) g.turns_min = tmin, g.turns_max = tmax;
    g.bursty = bursty;
    g.seed = o->dc.seed;
    o->gen = g;
    o->generated = true;
  } else if (requests > 0 || rate > 0 || bursty || pmin || omin || tmin || groups > 0 || systok > 0) {
    fprintf(stderr, NAME ": generator options do not apply to --trace (use --limit, --time-scale, --rate-scale)\n");
    return 2;
  }
  return 0;
}

static void find_profiles_dir(struct opts *o) {
  if (!o->profiles_dir[0]) sim_profiles_dir(o->profiles_dir, sizeof o->profiles_dir);
}

/* ---- output ---- */

static json_t *run_json(const char *policy, double scale, const struct des_result *r) {
  json_t *engines = json_array();
  for (int e = 0; e < r->nengines; e++)
    json_array_append_new(engines, json_pack("{s:I,s:f,s:f}", "requests", (json_int_t)r->engines[e].requests,
                                             "busy_s", r->engines[e].busy_s, "prefix_hit_rate",
                                             r->engines[e].prompt_tokens
                                                 ? (double)r->engines[e].cached_tokens / r->engines[e].prompt_tokens
                                                 : 0.0));
  return json_pack(
      "{s:s,s:f,s:I,s:I,s:f,s:f,s:{s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f},s:f,s:i,s:f,s:f,"
      "s:f,s:f,s:f,s:{s:f,s:f},s:I,s:f,s:I,s:o}",
      "policy", policy, "rate_scale", scale, "requests", (json_int_t)r->requests, "completed",
      (json_int_t)r->completed, "offered_rps", r->offered_rps, "duration_s", r->duration_s, "ttft_s", "mean",
      r->ttft_mean, "p50", r->ttft_p50, "p90", r->ttft_p90, "p99", r->ttft_p99, "tpot_s", "mean", r->tpot_mean,
      "p50", r->tpot_p50, "p90", r->tpot_p90, "p99", r->tpot_p99, "e2e_s", "mean", r->e2e_mean,
      "p50", r->e2e_p50, "p90", r->e2e_p90, "p99", r->e2e_p99, "report_interval_ms", r->report_interval_ns / 1e6,
      "max_tokens", r->max_tokens, "throughput_rps", r->throughput_rps,
      "output_tokens_per_s", r->output_tps, "goodput_rps", r->goodput_rps, "slo_attainment", r->slo_attainment,
      "prefix_hit_rate", r->prefix_hit_rate, "imbalance", "requests", r->imbalance_requests, "busy",
      r->imbalance_busy, "preemptions", (json_int_t)r->preemptions, "wall_s", r->wall_s, "events",
      (json_int_t)r->events, "engines", engines);
}

static void table_head(void) {
  printf("%-14s %6s %8s %8s %8s %8s %8s %8s %8s %8s %8s %7s %6s %6s %6s %6s\n", "policy", "load", "offer/s",
         "ttft50", "ttft90", "ttft99", "tpot50", "tpot90", "e2e50", "e2e90", "good/s", "slo%", "hit%", "imbR", "imbB",
         "wall");
}

static void table_row(const char *policy, double scale, const struct des_result *r) {
  printf("%-14s %6.3g %8.2f %8.3f %8.3f %8.3f %8.4f %8.4f %8.3f %8.3f %8.2f %7.1f %6.1f %6.2f %6.2f %6.2f\n", policy,
         scale, r->offered_rps, r->ttft_p50, r->ttft_p90, r->ttft_p99, r->tpot_p50, r->tpot_p90, r->e2e_p50,
         r->e2e_p90, r->goodput_rps,
         100 * r->slo_attainment, 100 * r->prefix_hit_rate, r->imbalance_requests, r->imbalance_busy, r->wall_s);
}

/* ---- runs ---- */

/* run_one simulates W at rate scale SCALE (a scaled copy) with policy POLICY. */
static int run_one(const struct opts *o, const struct workload *w, const char *policy, double scale,
                   struct des_result *res) {
  struct workload c = *w; /* shares w's spans; only the arrival times change */
  c.reqs = xmalloc(w->n * sizeof *w->reqs + 1);
  memcpy(c.reqs, w->reqs, w->n * sizeof *w->reqs);
  workload_scale_time(&c, 1.0 / scale);
  struct des_config dc = o->dc;
  dc.policy = policy;
  char err[256];
  int rc = des_run(&dc, &c, res, err, sizeof err);
  free(c.reqs);
  if (rc) fprintf(stderr, NAME ": %s\n", err);
  return rc;
}

/* A capacity search's answer. */
struct capacity {
  bool met;             /* some rate met the SLO */
  double scale, rps;    /* the largest rate scale that did, and its offered rate */
  double low_scale, low_rps; /* the lowest rate tried (when none met: "never met at any rate >= low_rps") */
  struct des_result at; /* the run at capacity (engines freed) */
};

static bool slo_met(const struct opts *o, const struct des_result *r) {
  if (r->ttft_p90 > (double)o->dc.slo_ttft_ns / 1e9) return false;
  return !o->dc.slo_tpot_ns || r->tpot_p90 <= (double)o->dc.slo_tpot_ns / 1e9;
}

/* probe runs one load of the search and records it in C; *ok tells whether it met the SLO. */
static int probe(const struct opts *o, const struct workload *w, const char *policy, double s, struct capacity *c,
                 bool *ok) {
  struct des_result r;
  if (run_one(o, w, policy, s, &r)) return 1;
  des_result_free(&r);
  *ok = slo_met(o, &r);
  if (c->low_scale == 0 || s < c->low_scale) c->low_scale = s, c->low_rps = r.offered_rps;
  if (*ok && (!c->met || s > c->scale)) {
    c->met = true;
    c->scale = s;
    c->rps = r.offered_rps;
    c->at = r;
  }
  return 0;
}

/* find_capacity: the largest rate scale (relative precision ~3%) at which p90 TTFT <= its SLO and, when set,
 * p90 TPOT <= its SLO. Below 0.125x it halves down to ~0.01x before it calls the SLO never met. */
static int find_capacity(const struct opts *o, const struct workload *w, const char *policy, struct capacity *c) {
  *c = (struct capacity){0};
  double lo = 0, hi = 0;
  bool ok;
  for (double s = 0.125; s <= o->capacity_max; s *= 2) {
    if (probe(o, w, policy, s, c, &ok)) return 1;
    if (!ok) {
      hi = s;
      break;
    }
    lo = s;
  }
  if (hi == 0) hi = lo; /* never missed the SLO up to capacity_max */
  while (lo > 0 ? hi / lo > 1.03 : hi > 0.01) {
    double mid = lo > 0 ? sqrt(lo * hi) : hi / 2;
    if (probe(o, w, policy, mid, c, &ok)) return 1;
    if (ok)
      lo = mid;
    else
      hi = mid;
  }
  return 0;
}

static json_t *capacity_json(const char *policy, const struct capacity *c) {
  json_t *j = json_pack("{s:s,s:b,s:f,s:f,s:f}", "policy", policy, "met", c->met, "rate_scale", c->scale, "rps",
                        c->rps, "lowest_rps_tried", c->low_rps);
  if (c->met)
    json_object_set_new(j, "at_capacity",
                        json_pack("{s:{s:f,s:f,s:f},s:{s:f,s:f,s:f},s:{s:f,s:f,s:f},s:f,s:f}", "ttft_s", "p50",
                                  c->at.ttft_p50, "p90", c->at.ttft_p90, "p99", c->at.ttft_p99, "tpot_s", "p50",
                                  c->at.tpot_p50, "p90", c->at.tpot_p90, "p99", c->at.tpot_p99, "e2e_s", "p50",
                                  c->at.e2e_p50, "p90", c->at.e2e_p90, "p99", c->at.e2e_p99, "prefix_hit_rate",
                                  c->at.prefix_hit_rate, "goodput_rps", c->at.goodput_rps));
  return j;
}

static void capacity_row(const char *policy, const struct capacity *c) {
  if (!c->met) {
    printf("%-14s never met at any rate >= %.3g req/s (%.3gx)\n", policy, c->low_rps, c->low_scale);
    return;
  }
  printf("%-14s %10.4g %10.3f %8.3f %8.3f %8.4f %8.4f %8.3f %8.3f %6.1f\n", policy, c->scale, c->rps, c->at.ttft_p50,
         c->at.ttft_p90, c->at.tpot_p50, c->at.tpot_p90, c->at.e2e_p50, c->at.e2e_p90, 100 * c->at.prefix_hit_rate);
}

static json_t *workload_json(const struct opts *o, const struct workload *w) {
  json_t *j;
  if (o->generated) {
    const struct wl_gen *g = &o->gen;
    j = json_pack("{s:s,s:i,s:f,s:b,s:i,s:[i,i],s:[i,i]}", "kind", wl_kind_name(g->kind), "requests", g->n,
                  "rate", g->rate, "bursty", g->bursty, "tenants", g->tenants, "prompt_tokens", g->prompt_min,
                  g->prompt_max, "output_tokens", g->output_min, g->output_max);
    if (g->kind != WL_NO_REUSE) {
      json_object_set_new(j, "groups", json_integer(g->groups));
      json_object_set_new(j, "system_tokens", json_integer(g->system_tokens));
      json_object_set_new(j, "zipf", json_real(g->zipf));
    }
    if (g->kind == WL_MULTI_TURN) {
      json_object_set_new(j, "turns", json_pack("[i,i]", g->turns_min, g->turns_max));
      json_object_set_new(j, "think_s", json_real(g->think_s));
    }
  } else {
    j = json_pack("{s:s,s:s,s:I,s:f}", "kind", "trace", "trace", o->trace, "limit", (json_int_t)o->limit,
                  "time_scale", o->time_scale);
  }
  json_object_set_new(j, "loaded_requests", json_integer((json_int_t)w->n));
  json_object_set_new(j, "truncated_prompts", json_integer((json_int_t)w->truncated));
  json_object_set_new(j, "spread_bursts", json_boolean(o->spread_bursts));
  json_object_set_new(j, "spread_requests", json_integer((json_int_t)o->spread));
  return j;
}

int simulate_main(int argc, char **argv) {
  static struct opts o; /* large; one per process */
  memset(&o, 0, sizeof o);
  des_config_default(&o.dc);
  o.time_scale = 1;
  o.capacity_max = 256;
  o.rate_scales[0] = 1;
  o.nscales = 1;
  int prc = parse_args(&o, argc, argv);
  if (prc) return prc == 1 ? 0 : 2;
  if (!o.npolicies) parse_policies(&o, "all");
  find_profiles_dir(&o);
  char err[512];
  if (o.profile[0] && sim_profile_load(o.profile, o.profiles_dir, &o.dc.prof, err, sizeof err) != 0) {
    fprintf(stderr, NAME ": profile '%s': %s\n", o.profile, err);
    return 2;
  }
  struct workload w;
  workload_init(&w);
  int rc = o.generated ? workload_generate(&o.gen, &w, err, sizeof err) : trace_load(o.trace, o.limit, &w, err, sizeof err);
  if (rc) {
    fprintf(stderr, NAME ": %s%s%s\n", o.generated ? "" : o.trace, o.generated ? "" : ": ", err);
    workload_free(&w);
    return o.generated ? 2 : 1;
  }
  if (w.n == 0) {
    fprintf(stderr, NAME ": the workload has no requests\n");
    workload_free(&w);
    return 1;
  }
  if (!o.generated && o.time_scale != 1) workload_scale_time(&w, o.time_scale);
  if (o.spread_bursts) o.spread = workload_spread_bursts(&w);
  workload_clip(&w, o.dc.prof.max_model_len);

  json_t *root = json_object(), *runs = json_array(), *caps = json_array();
  json_object_set_new(root, "workload", workload_json(&o, &w));
  json_object_set_new(root, "config",
                      json_pack("{s:s,s:i,s:i,s:f,s:b,s:f,s:f,s:o,s:I,s:o,s:o}", "profile", o.dc.prof.name, "engines",
                                o.dc.nengines, "routers", o.dc.nrouters, "report_interval_ms",
                                o.dc.report_interval_ns / 1e6, "upstream_refresh", o.dc.upstream_refresh,
                                "signal_delay_ms", o.dc.signal_delay_ns / 1e6, "slo_ttft_ms", o.dc.slo_ttft_ns / 1e6,
                                "slo_tpot_ms", o.dc.slo_tpot_ns ? json_real(o.dc.slo_tpot_ns / 1e6) : json_null(),
                                "seed", (json_int_t)o.dc.seed,
                                "share_routes_ms",
                                o.dc.share_routes ? json_real(o.dc.share_delay_ns / 1e6) : json_null(),
                                "kv_events_ms",
                                o.dc.kv_events ? json_real(o.dc.kv_events_delay_ns / 1e6) : json_null()));
  int exit_code = 0;
  if (o.capacity) {
    if (!o.json) {
      printf("largest load with p90 TTFT <= %g ms", o.dc.slo_ttft_ns / 1e6);
      if (o.dc.slo_tpot_ns) printf(" and p90 TPOT <= %g ms", o.dc.slo_tpot_ns / 1e6);
      printf("; latencies in seconds at that load\n%-14s %10s %10s %8s %8s %8s %8s %8s %8s %6s\n", "policy",
             "rate_scale", "rps", "ttft50", "ttft90", "tpot50", "tpot90", "e2e50", "e2e90", "hit%");
    }
    for (int p = 0; p < o.npolicies && !exit_code; p++) {
      struct capacity c;
      if (find_capacity(&o, &w, o.policies[p], &c)) {
        exit_code = 1;
        break;
      }
      json_array_append_new(caps, capacity_json(o.policies[p], &c));
      if (!o.json) capacity_row(o.policies[p], &c);
      fflush(stdout);
    }
    json_object_set_new(root, "capacity", caps);
    json_decref(runs);
  } else {
    if (!o.json) table_head();
    for (int si = 0; si < o.nscales && !exit_code; si++)
      for (int p = 0; p < o.npolicies; p++) {
        struct des_result r;
        if (run_one(&o, &w, o.policies[p], o.rate_scales[si], &r)) {
          exit_code = 1;
          break;
        }
        json_array_append_new(runs, run_json(o.policies[p], o.rate_scales[si], &r));
        if (!o.json) {
          table_row(o.policies[p], o.rate_scales[si], &r);
          fflush(stdout);
        }
        des_result_free(&r);
      }
    json_object_set_new(root, "runs", runs);
    json_decref(caps);
  }
  if (o.json && !exit_code) {
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    free(s);
  }
  json_decref(root);
  workload_free(&w);
  return exit_code;
}
