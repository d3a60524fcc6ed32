/* Power of two choices: two distinct candidates drawn at random, the one with fewer in-flight requests wins.
 *
 * Mitzenmacher's "power of two choices" as in Envoy's LEAST_REQUEST default (choice_count 2) and SGLang's
 * power_of_two policy: the load is the router's own outstanding-request count per target; on a tie the first
 * drawn wins. */
#include "state/policy.h"

static int p2_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now) {
  (void)r;
  (void)now;
  if (n == 1) return 0;
  uint32_t a = rng_below(&p->rng, (uint32_t)n);
  uint32_t b = rng_below(&p->rng, (uint32_t)n - 1);
  if (b >= a) b++;
  return c[b].inflight < c[a].inflight ? (int)b : (int)a;
}

const struct policy_ops policy_power_of_two_ops = {.name = "power-of-two", .pick = p2_pick};
