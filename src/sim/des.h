/* Discrete-event routing simulator: N simulated engines, R routers running a routing policy, virtual time.
 *
 * Engines are src/sim/engine.c (the same model the sim-engine server runs). Each router holds its own view of
 * every engine, as the live agent does: the engine's waiting/running/KV-usage/prefix-hit signals as of the
 * router's last scrape of it, scraped every report_interval (each router-engine pair at its own random
 * phase) and visible signal_delay after the scrape; plus the router's own reservations (requests it routed
 * there and has not seen finish; those routed after the visible report). Every request arrives at one router
 * drawn at random, which runs the policy (src/state/policy.h, the code the live router uses) and submits the
 * request to the chosen engine at once (no network time). The router sees the first token and the end of
 * its requests as they happen (it proxies the stream). Optionally (share_routes) every routing decision
 * reaches the other routers' policies share_delay_ns later, as a mesh could gossip it (policy_on_peer_decision).
 * Optionally (kv_events)
 * engines publish KV-cache events, as vLLM does and the agents spread them: every prefix run an engine stores
 * reaches every router's policy kv_events_delay_ns later (policy_on_peer_route; evictions are not modelled
 * beyond the policies' own LRU, as in the live router).
 *
 * Policies see a request's max_tokens as one budget for the whole workload (its largest output), as a client
 * sets it, never the request's true output length; the engine still stops each request at its true length.
 * The signals a scrape carries are those the agent's adapters compute (src/adapter/adapter.c): waiting,
 * running, KV usage, the prefix-hit rate and the median inter-token latency over the window since this
 * router's previous scrape, plus the profile's prefill rate (what the live router gets from the runtime's
 * measured prompt rate). */
#ifndef IM_SIM_DES_H
#define IM_SIM_DES_H

#include <stddef.h>
#include <stdint.h>

#include "sim/profile.h"
#include "sim/workload.h"
#include "state/policy.h"

#define DES_MAX_ROUTERS 64
#define DES_MAX_ENGINES 100000

struct des_config {
  struct sim_profile prof;     /* every engine's profile */
  int nengines;                /* 1 .. DES_MAX_ENGINES */
  int nrouters;                /* 1 .. DES_MAX_ROUTERS */
  const char *policy;          /* policy_new name */
  struct policy_config pcfg;
  uint64_t report_interval_ns; /* > 0 */
  int upstream_refresh;        /* a policy whose upstream router refreshes its own metrics at a fixed interval
                                * (policy_upstream_refresh_ns: llm-d's 50 ms) scrapes at that interval instead */
  uint64_t signal_delay_ns;
  uint64_t slo_ttft_ns;        /* goodput counts requests whose TTFT is at most this ... */
  uint64_t slo_tpot_ns;        /* ... and whose time per output token is at most this (0: TTFT only) */
  uint64_t seed;               /* router assignment, scrape phases, policy draws */
  int share_routes;            /* tell the other routers' policies where each request went ... */
  uint64_t share_delay_ns;     /* ... this much later (gossip); see policy_on_peer_decision */
  int kv_events;               /* every router learns the blocks each engine stores ... */
  uint64_t kv_events_delay_ns; /* ... this much later (publisher, agent, cache report to the gateways) */
};

/* des_config_default: llama-3.1-8b-h100 built-in profile, 16 engines, 1 router, "ours", report every 500 ms
 * (the agent's default scrape interval), 50 ms signal delay, TTFT SLO 2 s, seed 1. */
void des_config_default(struct des_config *c);

struct des_engine_result {
  uint64_t requests;
  double busy_s;
  uint64_t prompt_tokens, cached_tokens;
};

/* Results of one run. Latencies in seconds from the request's arrival. Rates are per second of
 * duration_s = first arrival to last completion. */
struct des_result {
  size_t requests, completed;
  double duration_s, arrival_span_s, offered_rps;
  double ttft_mean, ttft_p50, ttft_p90, ttft_p99;
  double e2e_mean, e2e_p50, e2e_p90, e2e_p99;
  /* Time per output token: (last token - first token) / (output tokens - 1), over requests of >= 2 tokens. */
  double tpot_mean, tpot_p50, tpot_p90, tpot_p99;
  double throughput_rps, output_tps;
  double goodput_rps;     /* completed requests with TTFT <= slo_ttft and TPOT <= slo_tpot, per second */
  double slo_attainment;  /* their fraction of all requests */
  double prefix_hit_rate; /* prompt tokens found cached at admission / prompt tokens */
  double imbalance_requests, imbalance_busy; /* max / mean over engines */
  uint64_t preemptions;
  uint64_t report_interval_ns; /* the scrape interval the policy ran with */
  int max_tokens;  /* the max_tokens budget policies saw */
  double wall_s;  /* real time the run took */
  uint64_t events; /* simulator events processed */
  int nengines;
  struct des_engine_result *engines; /* owned: des_result_free */
};

/* des_run simulates workload W (sorted by arrival; not modified) under C and fills *OUT. Returns 0, or
 * -EINVAL with a reason in ERR (bad configuration, unknown policy, invalid profile). Deterministic: the same
 * inputs give the same results (wall_s aside). */
int des_run(const struct des_config *c, const struct workload *w, struct des_result *out, char *err,
            size_t errlen);

void des_result_free(struct des_result *r);

#endif
