/* Scoring: rank candidate targets for one request and pick one (pure; shared by router and simulator). */
#ifndef IM_STATE_SCORE_H
#define IM_STATE_SCORE_H

#include <stdint.h>

#include "core/rng.h"
#include "state/store.h"

struct score_params {
  uint64_t stale_ns;      /* a report older than this counts the target as saturated */
  double running_weight;  /* cost of one running request relative to one waiting request */
  double stale_penalty;   /* added to a stale target's score */
  double gpu_penalty;     /* added when a GPU of the target is degraded */
};

/* score_params_default: stale after 5 s, running weight 0.25, stale penalty 1000, GPU penalty 8 (a degraded
 * GPU counts like eight queued requests: it still serves when the others are busier). */
void score_params_default(struct score_params *p);

/* score_target estimates the queueing delay a new request would see on t, in "waiting request" units:
 * effective waiting = reported waiting + requests routed here since that report (the report could not
 * see them), floored by this router's own in-flight count beyond the running ones; plus running work
 * weighted by running_weight; plus stale_penalty when the report is older than stale_ns; plus gpu_penalty
 * when a GPU it runs on is degraded. Lower is better. */
double score_target(const struct target *t, const struct score_params *p, uint64_t now_ns);

/* score_pick chooses among n candidate ids (n > 0) with power of two choices: two distinct candidates
 * drawn at random, the lower score wins (ties: the first drawn). With n == 1 returns that one.
 * Returns the chosen id. */
int score_pick(const struct store *s, const int *ids, int n, const struct score_params *p, uint64_t now_ns,
               struct rng *rng);

#endif
