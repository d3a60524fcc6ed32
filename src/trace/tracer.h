/* The tracer: what the request path uses to take part in traces. It makes ids (a fast PRNG seeded from
 * libsodium once), decides sampling (trace/sampler.h), turns the loop's monotonic clock into Unix time and
 * hands finished spans to the OTLP exporter (trace/exporter.h). One per agent, on the loop thread. */
#ifndef IM_TRACE_TRACER_H
#define IM_TRACE_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/rng.h"
#include "core/slice.h"
#include "trace/exporter.h"
#include "trace/sampler.h"
#include "trace/span.h"
#include "trace/trace_context.h"

struct tracer_opts {
  const char *endpoint; /* OTLP/HTTP base URL: spans go to {endpoint}/v1/traces */
  double sample_ratio; /* share of new traces recorded, 0..1; an incoming sampled parent is always followed */
  const char *service_name, *instance_id, *version; /* the Resource's attributes */
};

struct tracer {
  struct rng rng;
  struct sampler sampler;
  int64_t mono_to_unix; /* Unix ns = monotonic ns + this */
  struct trace_exporter exp;
};

/* One request's place in its trace, kept by whoever serves it (the proxy): its own server span and the
 * context it continues. */
struct trace_req {
  bool sampled;    /* its spans are recorded */
  bool has_parent; /* it continues an incoming traceparent */
  uint8_t trace_id[TRACE_ID_LEN], span_id[SPAN_ID_LEN], parent_id[SPAN_ID_LEN];
  struct slice tracestate; /* validated, borrowed from the request's header; empty: none */
  uint64_t start;          /* monotonic ns */
  char trace_hex[2 * TRACE_ID_LEN + 1];
};

/* tracer_init starts t's exporter on loop for o (strings copied). 0, or -EINVAL with err (a bad endpoint).
 * Close it with tracer_close. */
int tracer_init(struct tracer *t, uv_loop_t *loop, const struct tracer_opts *o, char *err, size_t errlen);

/* tracer_begin fills tr for a request that arrived at now (monotonic ns) with these traceparent and
 * tracestate header values (empty when absent): a valid traceparent is continued (its trace id, its span as
 * the parent, its sampled flag decides, its tracestate kept when valid); otherwise a new trace starts,
 * sampled by ratio, and tracestate is ignored. tr->tracestate borrows ts. */
void tracer_begin(struct tracer *t, struct trace_req *tr, struct slice tp, struct slice ts, uint64_t now);

/* tracer_span_id writes a fresh non-zero span id. */
void tracer_span_id(struct tracer *t, uint8_t id[SPAN_ID_LEN]);

/* tracer_unix_ns converts a monotonic time (ns) into Unix time (ns). */
static inline uint64_t tracer_unix_ns(const struct tracer *t, uint64_t mono) {
  return (uint64_t)((int64_t)mono + t->mono_to_unix);
}

/* tracer_span returns the export queue's next span for the caller to fill (span_init first) and queue with
 * tracer_emit, with no other use of t in between; NULL when the queue is full (the span is counted as dropped
 * and nothing is to be built). No allocation: spans are built in the queue. */
struct span *tracer_span(struct tracer *t);
void tracer_emit(struct tracer *t);

/* tracer_metrics appends the infermesh_trace_* Prometheus families to out. */
void tracer_metrics(const struct tracer *t, struct buf *out);

/* tracer_free releases what t holds once its loop handles are closed: after tracer_close's callback, or after
 * a failed start closed every handle of the loop. t's own memory stays the caller's. */
void tracer_free(struct tracer *t);

/* tracer_close flushes what is queued (bounded: EXPORTER_FLUSH_MS) and calls cb(arg) once, on a later loop
 * turn, when t's memory may be freed. */
void tracer_close(struct tracer *t, void (*cb)(void *arg), void *arg);

#endif
