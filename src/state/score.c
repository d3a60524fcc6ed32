/* Scoring of targets by estimated queueing delay, and power-of-two-choices selection. */
#include "state/score.h"

void score_params_default(struct score_params *p) {
  p->stale_ns = 5ull * 1000000000ull;
  p->running_weight = 0.25;
  p->stale_penalty = 1000.0;
  p->gpu_penalty = 8.0;
}

double score_target(const struct target *t, const struct score_params *p, uint64_t now_ns) {
  double waiting = t->load.waiting + t->routed_since_report;
  double running = t->load.running;
  /* Our own in-flight requests are a lower bound on the target's load, whatever the report says. */
  double total = waiting + running;
  if ((double)t->inflight > total) waiting += (double)t->inflight - total;
  double s = waiting + p->running_weight * running;
  if (t->updated_ns == 0 || now_ns - t->updated_ns > p->stale_ns) s += p->stale_penalty;
  if (t->gpu_degraded) s += p->gpu_penalty;
  return s;
}

int score_pick(const struct store *s, const int *ids, int n, const struct score_params *p, uint64_t now_ns,
               struct rng *rng) {
  if (n == 1) return ids[0];
  uint32_t a = rng_below(rng, (uint32_t)n);
  uint32_t b = rng_below(rng, (uint32_t)n - 1);
  if (b >= a) b++;
  double sa = score_target(&s->targets[ids[a]], p, now_ns);
  double sb = score_target(&s->targets[ids[b]], p, now_ns);
  return sb < sa ? ids[b] : ids[a];
}
