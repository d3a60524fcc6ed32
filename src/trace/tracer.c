/* Ids, sampling, clocks and the exporter behind one handle. */
#include "trace/tracer.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

int tracer_init(struct tracer *t, uv_loop_t *loop, const struct tracer_opts *o, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  if (sodium_init() < 0) abort();
  uint64_t seed;
  randombytes_buf(&seed, sizeof seed); /* once: ids need to be unique, not secret */
  rng_seed(&t->rng, seed);
  sampler_init(&t->sampler, o->sample_ratio);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  t->mono_to_unix = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - (int64_t)clock_mono_ns();
  return trace_exporter_init(&t->exp, loop, o->endpoint, o->service_name, o->instance_id, o->version, err,
                             errlen);
}

static void fill_id(struct tracer *t, uint8_t *id, size_t n) {
  do {
    for (size_t i = 0; i < n; i += 8) {
      uint64_t x = rng_next(&t->rng);
      memcpy(id + i, &x, n - i < 8 ? n - i : 8);
    }
  } while (id[0] == 0 && memcmp(id, id + 1, n - 1) == 0); /* all zero is invalid */
}

void tracer_span_id(struct tracer *t, uint8_t id[SPAN_ID_LEN]) { fill_id(t, id, SPAN_ID_LEN); }

void tracer_begin(struct tracer *t, struct trace_req *tr, struct slice tp, struct slice ts, uint64_t now) {
  struct trace_ctx in;
  bool cont = tp.len && traceparent_parse(tp, &in) == 0;
  if (cont) {
    memcpy(tr->trace_id, in.trace_id, TRACE_ID_LEN);
    memcpy(tr->parent_id, in.span_id, SPAN_ID_LEN);
    tr->tracestate = ts.len ? tracestate_check(ts) : ts;
  } else {
    fill_id(t, tr->trace_id, TRACE_ID_LEN);
    tr->tracestate = slice_make(NULL, 0);
  }
  tr->has_parent = cont;
  tr->sampled = sampler_decide(&t->sampler, cont ? &in : NULL, tr->trace_id);
  fill_id(t, tr->span_id, SPAN_ID_LEN);
  tr->start = now;
  trace_hex(tr->trace_id, TRACE_ID_LEN, tr->trace_hex);
}

struct span *tracer_span(struct tracer *t) {
  return trace_exporter_slot(&t->exp);
}

void tracer_emit(struct tracer *t) { trace_exporter_commit(&t->exp); }

void tracer_metrics(const struct tracer *t, struct buf *out) {
  struct exporter_stats st;
  trace_exporter_stats(&t->exp, &st);
  buf_printf(
      out,
      "# HELP infermesh_trace_spans_exported_total Spans the OTLP collector acknowledged.\n"
      "# TYPE infermesh_trace_spans_exported_total counter\ninfermesh_trace_spans_exported_total %llu\n"
      "# HELP infermesh_trace_spans_dropped_total Spans lost: the export queue was full or their batch's "
      "POST failed.\n"
      "# TYPE infermesh_trace_spans_dropped_total counter\ninfermesh_trace_spans_dropped_total %llu\n"
      "# HELP infermesh_trace_exports_total OTLP POSTs sent to the collector.\n"
      "# TYPE infermesh_trace_exports_total counter\ninfermesh_trace_exports_total %llu\n"
      "# HELP infermesh_trace_export_failures_total OTLP POSTs that failed (connection, timeout, non-2xx).\n"
      "# TYPE infermesh_trace_export_failures_total counter\ninfermesh_trace_export_failures_total %llu\n"
      "# HELP infermesh_trace_spans_queued Spans waiting for export.\n"
      "# TYPE infermesh_trace_spans_queued gauge\ninfermesh_trace_spans_queued %llu\n",
      (unsigned long long)st.exported, (unsigned long long)st.dropped, (unsigned long long)st.posts,
      (unsigned long long)st.failures, (unsigned long long)st.queued);
}

void tracer_close(struct tracer *t, void (*cb)(void *arg), void *arg) {
  trace_exporter_close(&t->exp, cb, arg);
}

void tracer_free(struct tracer *t) { trace_exporter_free(&t->exp); }
