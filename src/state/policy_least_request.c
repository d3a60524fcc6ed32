/* Least request: the candidate with the fewest requests this router has in flight to it.
 *
 * Envoy's LEAST_REQUEST with a full scan, nginx's least_conn: the load measure is the router's own count of
 * outstanding requests per target (exact, instantly updated, but blind to other routers' traffic and to
 * request sizes). Ties are broken uniformly at random: one draw per decision (a count of the ties, then the
 * drawn one), not one per tie. */
#include "state/policy.h"

static int lr_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now) {
  (void)r;
  (void)now;
  int least = c[0].inflight, ties = 0;
  for (int i = 1; i < n; i++)
    if (c[i].inflight < least) least = c[i].inflight;
  for (int i = 0; i < n; i++)
    ties += c[i].inflight == least;
  int k = ties > 1 ? (int)rng_below(&p->rng, (uint32_t)ties) : 0;
  for (int i = 0; i < n; i++)
    if (c[i].inflight == least && k-- == 0) return i;
  return 0;
}

const struct policy_ops policy_least_request_ops = {.name = "least-request", .pick = lr_pick};
