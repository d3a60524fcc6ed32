/* The router: OpenAI ingress, target choice, proxying with retries and SSE relay (DESIGN §4). */
#ifndef IM_ROUTE_ROUTER_H
#define IM_ROUTE_ROUTER_H

#include <stdint.h>
#include <uv.h>

#include "cluster/keyring.h"
#include "core/buf.h"
#include "core/rng.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "route/admission.h"
#include "route/hop.h"
#include "route/breaker.h"
#include "route/cand_set.h"
#include "route/alias.h"
#include "route/hop_seen.h"
#include "route/record.h"
#include "route/route_ctl.h"
#include "route/route_metrics.h"
#include "route/tenants.h"
#include "route/upstream.h"
#include "state/policy.h"
#include "state/score.h"
#include "state/store.h"

#define ROUTER_MAX_OBSERVERS 8

/* Tokens per hashed prompt block, as routers hash prompts (policy_prompt_hashes): vLLM's default KV block. */
#define ROUTER_BLOCK_TOKENS 16

struct router_opts {
  int max_attempts;             /* tries per request, first included (retries before the first byte) */
  uint32_t upstream_timeout_ms; /* longest wait for any upstream byte */
  /* Time-to-first-byte deadline of an attempt (route/deadline.h): 4 x the target's observed p95, at least
   * first_byte_timeout_ms, at most first_byte_timeout_max_ms (also the deadline while nothing is known). An
   * attempt past it that has sent nothing to the client is cancelled and retried elsewhere. */
  uint32_t first_byte_timeout_ms, first_byte_timeout_max_ms;
  struct breaker_opts breaker; /* per-target circuit breaker (route/breaker.h) */
  size_t max_response_bytes;    /* cap on a buffered non-streaming response */
  char node_name[64];           /* x-infermesh-node for this node's own targets */
  char zone[32];                /* this node's zone, for zone pins (route_ctl.h); "" = none */
  struct adm_opts adm;          /* admission: queue, saturation, KV budget (admission.h) */
  /* Tenants (borrowed, must outlive the router); ntenants 0 = everyone is the default tenant, no key needed. */
  const struct tenant_conf *tenants;
  int ntenants;
  /* Hedging of latency-class requests: after the p95 of the target's observed time to first byte (or
   * hedge_delay_ms until hedge_min_samples were seen) a copy goes to the second-best target; hedges are at most
   * hedge_max_fraction of requests (a credit bucket). */
  uint32_t hedge_delay_ms;
  int hedge_min_samples;
  double hedge_max_fraction;
  /* Routing policy (state/policy.h, the code `infermesh simulate` measures): "ours" by default. */
  char policy[32];
  /* Model aliases (borrowed like tenants): a request for aliases[i].name is routed as aliases[i].model. */
  const struct model_alias *aliases;
  int naliases;
};

/* router_opts_default: 3 attempts, 300 s upstream timeout, first-byte deadline within [2 s, 60 s], breaker
 * after 5 failures for 1 s doubling up to 30 s, 16 MiB responses, node name "local", admission
 * defaults (adm_opts_default), no tenants, hedging after 500 ms by default, 20 samples, at most 5%. */
void router_opts_default(struct router_opts *o);

/* The router borrows store and pools (pools[i] is the connection pool of store target i); the agent
 * owns them and keeps them alive while requests are in flight (router->inflight > 0). */
struct router {
  uv_loop_t *loop;
  struct store *store;
  struct http_pool *pools;
  /* The proxy's I/O: upstream exchanges, clock, timers (route/upstream.h). router_init sets the real one over
   * pools and loop (io_real); a test may replace it before the first request. */
  struct upstream io;
  struct upstream_real io_real;
  struct router_opts opts;
  struct score_params score;
  struct rng rng;
  struct route_metrics metrics;
  int inflight;
  /* Mesh: the cluster keyring (borrowed; NULL when standalone) signs requests forwarded to another node's
   * agent and verifies those forwarded to this one (x-infermesh-hop). */
  struct keyring *kr;
  const uint8_t *node_id; /* this node's id (HOP_NODE_LEN bytes; borrowed like kr): what hops to it are for */
  const struct http_dialer *dialer; /* connections to other agents (the tunnel; borrowed); NULL: plain TCP */
  struct proxy *active; /* requests in flight, for router_target_lost */
  struct buf head_scratch; /* where the proxy builds an upstream head before copying it into the request's pool */
  uint64_t hops_in, hops_refused;
  struct hop_seen hop_seen; /* hop signatures accepted by this agent (inference and control), for replays */
  struct router_meter meter; /* what a request costs and what a tenant spent (route/record.h); zeroed: none */
  struct request_observer observers[ROUTER_MAX_OBSERVERS]; /* called in order (router_observe) */
  int nobservers;
  /* Admission: tenant 0 is the default tenant when none is configured. */
  struct admission adm;
  struct adm_bucket hedge_credit; /* + hedge_max_fraction per request, - 1 per hedge */
  struct policy *policy; /* owned: picks among candidates, keeps its prefix index (the default strategy) */
  struct policy *strategies[8]; /* owned: instances for strategies the control plane names per model */
  struct route_ctl ctl;  /* control-plane drains and pins (route_ctl_sync when the FSM changes) */
  struct breaker *breakers; /* owned: per target id, store->cap of them */
  /* The candidates of each model with the policy's records, kept in step with the store (route/cand_set.h), and
   * the scratch a decision narrows them into (store->cap entries each): a decision allocates nothing. */
  struct cand_sets cands;
  int *cand_ids;
  struct policy_target *cand_pt;
  bool self_down; /* the proxy itself is marking a target down (a failed connection): no mass move */
  /* routed_cb, when set, is told each request sent to a target: its id, the prompt's block hashes (borrowed
   * for the call) and whether another node's router chose this node (forwarded). The agent shares this
   * router's own decisions over the mesh and checks its runtimes' KV-cache events against them
   * (agent/kv_state.h). */
  void (*routed_cb)(void *arg, int id, const uint64_t *hashes, int n, bool forwarded);
  void *routed_arg;
  struct tracer *tracer; /* OpenTelemetry traces (trace/tracer.h; borrowed); NULL: tracing is off */
};

/* router_init prepares r (it sets store->report_cb: queued requests are admitted on load reports); free it with
 * router_free once no request is in flight. */
void router_init(struct router *r, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                 const struct router_opts *opts);
void router_free(struct router *r);

/* router_observe adds an observer of requests and their attempts (struct request_observer, route/record.h) after
 * those already there; router_init adds the routing policy's feedback (on_attempt), the metrics'
 * (route_metrics_on_record) and the log line's (router_log_record); the agent adds its ledger's (keep). o is
 * copied; o->arg is borrowed and must outlive the router. Returns 0, or -ENOSPC when ROUTER_MAX_OBSERVERS are
 * there. */
int router_observe(struct router *r, const struct request_observer *o);

/* router_set_tracer makes r take part in traces through t (borrowed: it must outlive r's requests): each
 * request continues or starts a trace, sends traceparent upstream and, when sampled, emits its spans (its
 * server span through an observer added after those already there). -ENOSPC when no observer is left. */
int router_set_tracer(struct router *r, struct tracer *t);

/* router_log_record is the observer that writes the request's log line at info level (arg unused). */
void router_log_record(void *arg, const struct request_record *rec);

/* router_set_tenants replaces the tenant table (t[0..n) borrowed like opts.tenants; n == 0: no tenants, no keys
 * needed), e.g. when the control plane's tenants change. Tenants are matched by name: a kept one keeps its buckets,
 * in-flight count and fair-queueing state; requests of a removed one finish without its limits. */
void router_set_tenants(struct router *r, const struct tenant_conf *t, int n);

/* router_metrics appends the router's Prometheus families (route_metrics_render, plus per-tenant series when
 * tenants are configured) to out. */
void router_metrics(const struct router *r, struct buf *out);

/* router_handle serves an OpenAI API request (POST /v1/chat/completions, /v1/completions, GET /v1/models).
 * Returns false, without touching req, when the path is not one of them. */
bool router_handle(struct router *r, struct http_req *req);

/* router_target_lost cancels every upstream exchange in flight to target id (its node died): requests that
 * have sent nothing to their client yet retry elsewhere; streams end with an in-band error. */
void router_target_lost(struct router *r, int id);

/* router_target_down moves the requests in flight to target id that have sent nothing to their client yet
 * to other targets at once (the target went down: the scraper or its node says so); started streams go on.
 * Called through store->down_cb (router_init sets it). */
void router_target_down(struct router *r, int id);

/* router_shutdown ends every request at once (the agent's drain timeout): a stream that started gets an SSE
 * error event and the end of its chunked body, a request not answered yet a 503; queued ones too. */
void router_shutdown(struct router *r);

/* router_cache_hint tells every policy instance of r that target id holds the prompt blocks HASHES[0..n)
 * (consecutive chained hashes, parent first: policy_prompt_hashes of a prompt there), as its runtime's
 * KV-cache events or another router's routing decision say (policy_on_peer_route). No reservation. */
void router_cache_hint(struct router *r, int id, const uint64_t *hashes, int n);

/* router_peer_decision: another gateway routed a prompt whose first blocks are HASHES[0..n) to target id (a
 * shared routing decision). As router_cache_hint, and the policies may count the request as id's load until
 * id's next load report covers it (policy_on_peer_decision). */
void router_peer_decision(struct router *r, int id, const uint64_t *hashes, int n);

/* router_policy_for returns the policy instance that routes model: the strategy the control plane's policy
 * for model names (created on first use), else the router's default. Owned by r. */
struct policy *router_policy_for(struct router *r, struct slice model);

#endif
