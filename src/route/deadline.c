/* Time-to-first-byte deadlines: a multiple of what a target was seen to need, between a floor and a ceiling.
 */
#include "route/deadline.h"

static double ttft_p95(const struct target *t) {
  if (t->load.ttft_p95 >= 0) return t->load.ttft_p95;
  if (t->load.ttft_p50 >= 0) return 2 * t->load.ttft_p50; /* remote targets report only the median */
  return -1;
}

double deadline_estimate(const struct target *t, bool stream, int64_t max_tokens) {
  double est = -1, own;
  if (stream) {
    est = ttft_p95(t);
    if (store_ttfb_quantile(t, STORE_TTFB_STREAM, 0.95, DEADLINE_MIN_SAMPLES, &own) && own > est) est = own;
  } else {
    /* Without max_tokens (or a runtime that reports ITL) a response may take any time: no estimate. */
    double ttft = ttft_p95(t);
    if (max_tokens <= 0 || ttft < 0 || t->load.itl_p95 < 0) return -1;
    est = ttft + (double)max_tokens * t->load.itl_p95;
    if (store_ttfb_quantile(t, STORE_TTFB_FULL, 0.95, DEADLINE_MIN_SAMPLES, &own) && own > est) est = own;
  }
  if (est < 0) return -1;
  /* A queue that built up since the window was observed: each waiting request ahead (reported, or routed here
   * since that report) delays this one by about a share of a batch. */
  double ahead = t->load.waiting + t->routed_since_report,
         running = t->load.running > 1 ? t->load.running : 1;
  return est * (1 + ahead / running);
}

uint32_t deadline_first_byte_ms(const struct store *s, int id, struct slice model, bool stream,
                                int64_t max_tokens, uint32_t floor_ms, uint32_t ceil_ms) {
  if (floor_ms > ceil_ms) floor_ms = ceil_ms;
  double est = deadline_estimate(&s->targets[id], stream, max_tokens);
  if (est < 0) /* nothing known of it yet: the slowest of the model's other targets stands in */
    for (int i = 0; i < s->ntargets; i++) {
      if (i == id || !store_target_serves(&s->targets[i], model)) continue;
      double e = deadline_estimate(&s->targets[i], stream, max_tokens);
      if (e > est) est = e;
    }
  if (est < 0) return ceil_ms;
  double ms = DEADLINE_FACTOR * est * 1000.0;
  if (ms < floor_ms) return floor_ms;
  if (ms > ceil_ms) return ceil_ms;
  return (uint32_t)ms;
}
