/* ParentBased(TraceIdRatioBased). */
#include "trace/sampler.h"

void sampler_init(struct sampler *s, double ratio) {
  if (!(ratio > 0)) ratio = 0; /* NaN too */
  if (ratio > 1) ratio = 1;
  s->ratio = ratio;
  /* 2^63 * ratio, with ratio 1 covering every 63-bit value */
  s->bound = ratio >= 1 ? UINT64_MAX : (uint64_t)(ratio * 9223372036854775808.0);
}

bool sampler_decide(const struct sampler *s, const struct trace_ctx *parent,
                    const uint8_t trace_id[TRACE_ID_LEN]) {
  if (parent) return (parent->flags & TRACE_FLAG_SAMPLED) != 0;
  uint64_t x = 0;
  for (int i = 8; i < TRACE_ID_LEN; i++)
    x = x << 8 | trace_id[i];
  return (x >> 1) < s->bound;
}
