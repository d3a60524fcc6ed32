/* Round robin: each router cycles through the candidates in order, blind to load and cache.
 *
 * The baseline of every router (nginx's default, SGLang's and vLLM production-stack's round_robin): a cursor
 * per router, advanced by one per request, modulo the number of candidates. The cursor starts at a random
 * offset so that several routers do not start in lockstep. */
#include <stdlib.h>

#include "core/alloc.h"
#include "state/policy.h"

struct rr {
  uint64_t cursor;
  int started;
};

static void *rr_create(const struct policy_config *cfg) {
  (void)cfg;
  return xcalloc(1, sizeof(struct rr));
}

static void rr_destroy(void *impl) { free(impl); }

static int rr_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now) {
  (void)r;
  (void)c;
  (void)now;
  struct rr *s = p->impl;
  if (!s->started) {
    s->cursor = rng_next(&p->rng) >> 1; /* a random start; the cursor is taken modulo n */
    s->started = 1;
  }
  return (int)(s->cursor++ % (uint64_t)n);
}

const struct policy_ops policy_round_robin_ops = {
    .name = "round-robin", .create = rr_create, .destroy = rr_destroy, .pick = rr_pick};
