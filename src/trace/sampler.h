/* Which traces are recorded: parent-based, then a ratio of new traces decided by the trace id
 * (OpenTelemetry's ParentBased(TraceIdRatioBased)), so every node that sees a trace id without a parent
 * decides alike. */
#ifndef IM_TRACE_SAMPLER_H
#define IM_TRACE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "trace/trace_context.h"

struct sampler {
  double ratio;
  uint64_t bound; /* a trace is sampled when its id's last 8 bytes, shifted right by 1, are below it */
};

/* sampler_init sets the share of new traces to record: ratio in [0, 1] (clamped). */
void sampler_init(struct sampler *s, double ratio);

/* sampler_decide: with a parent (a valid incoming traceparent), its sampled flag, honoured either way;
 * without one (parent NULL), whether trace_id falls in the ratio. */
bool sampler_decide(const struct sampler *s, const struct trace_ctx *parent,
                    const uint8_t trace_id[TRACE_ID_LEN]);

#endif
