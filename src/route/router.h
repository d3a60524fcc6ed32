/* The router: OpenAI ingress, target choice, proxying with retries and SSE relay (DESIGN §4). */
#ifndef IM_ROUTE_ROUTER_H
#define IM_ROUTE_ROUTER_H

#include <stdint.h>
#include <uv.h>

#include "cluster/keyring.h"
#include "core/rng.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "route/admission.h"
#include "route/alias.h"
#include "route/hop_seen.h"
#include "route/route_ctl.h"
#include "route/route_metrics.h"
#include "route/tenants.h"
#include "state/policy.h"
#include "state/score.h"
#include "state/store.h"

struct router_opts {
  int max_attempts;             /* tries per request, first included (retries before the first byte) */
  uint32_t upstream_timeout_ms; /* longest wait for any upstream byte */
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

/* router_opts_default: 3 attempts, 300 s upstream timeout, 16 MiB responses, node name "local", admission
 * defaults (adm_opts_default), no tenants, hedging after 500 ms by default, 20 samples, at most 5%. */
void router_opts_default(struct router_opts *o);

/* The router borrows store and pools (pools[i] is the connection pool of store target i); the agent
 * owns them and keeps them alive while requests are in flight (router->inflight > 0). */
struct router {
  uv_loop_t *loop;
  struct store *store;
  struct http_pool *pools;
  struct router_opts opts;
  struct score_params score;
  struct rng rng;
  struct route_metrics metrics;
  int inflight;
  /* Mesh: the cluster keyring (borrowed; NULL when standalone) signs requests forwarded to another node's
   * agent and verifies those forwarded to this one (x-infermesh-hop). */
  struct keyring *kr;
  struct proxy *active; /* requests in flight, for router_target_lost */
  uint64_t hops_in, hops_refused;
  struct hop_seen hop_seen; /* hop signatures accepted by this agent (inference and control), for replays */
  /* Admission: tenant 0 is the default tenant when none is configured. */
  struct admission adm;
  struct adm_bucket hedge_credit; /* + hedge_max_fraction per request, - 1 per hedge */
  struct policy *policy; /* owned: picks among candidates, keeps its prefix index (the default strategy) */
  struct policy *strategies[8]; /* owned: instances for strategies the control plane names per model */
  struct route_ctl ctl;  /* control-plane drains and pins (route_ctl_sync when the FSM changes) */
};

/* router_init prepares r (it sets store->report_cb: queued requests are admitted on load reports); free it with
 * router_free once no request is in flight. */
void router_init(struct router *r, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                 const struct router_opts *opts);
void router_free(struct router *r);

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

/* router_policy_for returns the policy instance that routes model: the strategy the control plane's policy
 * for model names (created on first use), else the router's default. Owned by r. */
struct policy *router_policy_for(struct router *r, struct slice model);

/* Agent-to-agent forwarding (DESIGN §1): a request routed to another node's target carries
 * x-infermesh-hop = "v2.<unix seconds>.<nonce>.<hex tag>", the tag a keyring MAC over
 * "v2.<purpose>.<ts>.<nonce>.<length of request id>:<request id>.<target>", where target is x-infermesh-hop-target (the target's name
 * on that node, or what a control request is about), purpose says what the signature is for (HOP_INFER: an
 * inference request; HOP_CTL: an agent-to-agent control call), so a signature made for one cannot be presented
 * as the other, and nonce (16 hex digits) makes every signature distinct. The receiving agent accepts it within
 * HOP_MAX_SKEW_S of its own clock, once (a replay of an accepted header is refused), and routes an inference
 * hop to its own targets only. */
#define HOP_MAX_SKEW_S 60
#define HOP_INFER "infer"
#define HOP_CTL "ctl"
#define HOP_HEADER_MAX 106 /* "v2." ts(<=20) "." nonce(16) "." tag(64) + NUL */
/* router_hop_sign writes the header value for purpose, request_id and target into out (>= HOP_HEADER_MAX
 * bytes); nonce must differ between the signatures one agent makes within 2 * HOP_MAX_SKEW_S (rng_next). A
 * request id and target too long to sign together (over ~450 bytes; callers stay far below) or a smaller out
 * give an empty value: callers send nothing then (an empty header would read as "not forwarded"). */
void router_hop_sign(const struct keyring *kr, const char *purpose, int64_t now_s, uint64_t nonce,
                     const char *request_id, const char *target, char *out, size_t cap);
/* router_hop_verify checks a header value made for purpose and remembers it in seen: 0, or -EACCES (bad tag,
 * another purpose, no keyring), -ETIMEDOUT (clock skew), -EALREADY (accepted before: a replay), -EBUSY (seen
 * is full). */
int router_hop_verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now_s,
                      struct slice hop, struct slice request_id, struct slice target);

#endif
