/* The router's decisions for requests it does not carry itself (the gRPC Scoring service): rank the targets a
 * request could go to with the live router's candidate filter and routing policy, run its admission, and feed
 * it the outcome of a request another gateway sent. Same code paths as proxy.c's own requests. */
#ifndef IM_ROUTE_RANK_H
#define IM_ROUTE_RANK_H

#include <stdbool.h>
#include <stdint.h>

#include "route/router.h"

/* One ranked candidate. */
struct router_ranked {
  int id;             /* store target id */
  double score;       /* score_target: queued work in waiting-request units, lower is better */
  double est_ttft_s;  /* observed median TTFT x (1 + score); < 0 when no TTFT was observed yet */
  const char *reason; /* static string */
  bool chosen;        /* the routing policy's pick (out[0]) */
};

/* router_candidates writes into ids (store->cap room) the healthy targets serving model that are not
 * set in exclude (a bitmap, may be NULL), that the control plane's drains and pins allow, and whose circuit
 * breaker is closed at now_ns (unless every breaker is open: then all of them). Returns their count. */
int router_candidates(struct router *r, struct slice model, const uint64_t *exclude, int *ids, uint64_t now_ns);

/* router_policy_target fills pt, the routing policy's view of target t at now_ns (state/policy.h). */
void router_policy_target(const struct target *t, uint64_t now_ns, struct policy_target *pt);

/* router_rank ranks model's candidates for request preq (its model must be model) at now_ns into out[0..max):
 * the policy's pick first (chosen), then the others by increasing score. Returns how many (0: no target). The
 * policy's transient state (its PRNG, a cursor) advances as for a routed request; nothing is reserved.
 * *policy is the name of the policy that picked (static). */
int router_rank(struct router *r, struct slice model, const struct policy_req *preq, uint64_t now_ns,
                struct router_ranked *out, int max, const char **policy);

/* Admission verdicts of router_admit. */
enum router_admit { ROUTER_ADMIT, ROUTER_QUEUE, ROUTER_REJECT };

/* router_admit runs admission for a request of tenant (an index into r->opts.tenants, 0 when none are
 * configured) for model costing tokens: no target -> REJECT "no_target"; over a tenant limit -> REJECT with
 * the shed reason and *retry_after_ns (UINT64_MAX: never); every candidate saturated -> QUEUE "saturated". An
 * admitted request's tokens are taken from the tenant's buckets; no concurrency slot is held (the caller does
 * not report when it ends). *reason is "" or a static string. */
enum router_admit router_admit(struct router *r, int tenant, struct slice model, double tokens,
                               uint64_t now_ns, const char **reason, uint64_t *retry_after_ns);

/* How a reported request ended. */
enum router_outcome_status { ROUTER_OUTCOME_OK, ROUTER_OUTCOME_ERROR, ROUTER_OUTCOME_CANCELLED };

/* router_outcome records a request another gateway sent to target id for preq (model preq->model) that ended
 * at now_ns: the routing policy records the route, first token (ttft_s > 0) and end with out_tokens as for
 * the router's own requests; OK closes the target's breaker and adds ttft_s to its observed TTFT (streamed or
 * whole-response window), ERROR counts a failure on its breaker. */
void router_outcome(struct router *r, int id, const struct policy_req *preq, double ttft_s, int out_tokens,
                    enum router_outcome_status status, bool streamed, uint64_t now_ns);

#endif
