/* Time-to-first-byte deadlines: a multiple of what a target was seen to need, between a floor and a ceiling.
 */
#include "route/deadline.h"

static double ttft_p95(const struct target *t) {
  if (t->load.ttft_p95 >= 0) return t->load.ttft_p95;
  if (t->load.ttft_p50 >= 0) return 2 * t->load.ttft_p50; /* remote targets report only the median */
  return -1;
}

/* The queue that built up since the window was observed: each waiting request ahead (reported, or routed
 * here since that report) delays a new one by about a share of a batch. */
static double queue_factor(const struct target *t) {
  double ahead = t->load.waiting + t->routed_since_report;
  double running = t->load.running > 1 ? t->load.running : 1;
  return 1 + ahead / running;
}

double deadline_ttft(const struct target *t) {
  double est = ttft_p95(t), own;
  if (store_ttfb_quantile(t, STORE_TTFB_STREAM, 0.95, DEADLINE_MIN_SAMPLES, &own) && own > est) est = own;
  /* an idle runtime's window holds no TTFT: whole responses seen here bound it from above */
  if (est < 0 && store_ttfb_quantile(t, STORE_TTFB_FULL, 0.95, DEADLINE_MIN_SAMPLES, &own)) est = own;
  return est < 0 ? -1 : est * queue_factor(t);
}

/* f of target id, or when that knows nothing, the largest f among the model's other targets; -1: none. */
static double known(const struct store *s, int id, struct slice model, double (*f)(const struct target *)) {
  double est = f(&s->targets[id]);
  if (est >= 0) return est;
  for (int i = 0; i < s->ntargets; i++) {
    if (i == id || !store_target_serves(&s->targets[i], model)) continue;
    double e = f(&s->targets[i]);
    if (e > est) est = e;
  }
  return est;
}

static double itl_p95(const struct target *t) { return t->load.itl_p95; }

uint32_t deadline_first_byte_ms(const struct store *s, int id, struct slice model, bool stream,
                                int64_t max_tokens, uint32_t floor_ms, uint32_t ceil_ms, bool *on_progress) {
  *on_progress = false;
  if (floor_ms > ceil_ms) floor_ms = ceil_ms;
  double ttft = known(s, id, model, deadline_ttft);
  double ms = ttft < 0 ? ceil_ms : DEADLINE_FACTOR * ttft * 1000.0;
  if (ms < floor_ms) ms = floor_ms;
  if (ms > ceil_ms) ms = ceil_ms;
  if (ms < 1) ms = 1;
  if (!stream) {
    double itl = known(s, id, model, itl_p95), own;
    if (max_tokens <= 0 || itl < 0) {
      *on_progress = true;
      return (uint32_t)ms;
    }
    ms += DEADLINE_FACTOR * (double)max_tokens * itl * 1000.0;
    if (store_ttfb_quantile(&s->targets[id], STORE_TTFB_FULL, 0.95, DEADLINE_MIN_SAMPLES, &own) &&
        DEADLINE_FACTOR * own * 1000.0 > ms)
      ms = DEADLINE_FACTOR * own * 1000.0;
  }
  return ms >= UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

bool deadline_progressing(const struct target *t, uint64_t since_ns) {
  return t->updated_ns > since_ns && t->load.gen_tps > 0;
}
