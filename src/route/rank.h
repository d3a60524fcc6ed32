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

/* The candidates of one decision: ids[i] is a store target id, pt[i] the routing policy's record of it. Borrowed
 * from the router (its candidate sets or scratch), valid until the router's next router_candidates; the caller
 * may change the records, never the ids. */
struct router_cands {
  int n;
  const int *ids;
  struct policy_target *pt;
};

/* router_candidates sets *out to the healthy targets serving model that are not set in exclude (a bitmap, may
 * be NULL), that the control plane's drains and pins allow, and whose circuit breaker is closed at now_ns
 * (unless every breaker is open: then all of them), ascending ids, with their records as of now_ns. Returns
 * out->n. Allocates nothing once model has a candidate set (route/cand_set.h). */
int router_candidates(struct router *r, struct slice model, const uint64_t *exclude, uint64_t now_ns,
                      struct router_cands *out);

/* router_cands_keep narrows c to the candidates whose target KEEP(ARG, target) accepts, when it accepts at
 * least one (order kept; the router's scratch holds them). Returns how many it accepted: 0 leaves c as it was. */
int router_cands_keep(struct router *r, struct router_cands *c, bool (*keep)(const void *arg, const struct target *t),
                      const void *arg);

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
