/* Fixed-bucket histograms with Prometheus semantics (cumulative le buckets, sum, count). */
#ifndef IM_CORE_HIST_H
#define IM_CORE_HIST_H

#include <stdint.h>

#include "core/buf.h"

#define HIST_MAX_BUCKETS 24

/* A hist borrows its bounds array (static storage); counts are per-bucket (not cumulative) until rendered. */
struct hist {
  const double *bounds;
  int nbounds;
  uint64_t counts[HIST_MAX_BUCKETS + 1]; /* last one is +Inf */
  double sum;
  uint64_t count;
};

/* Standard latency bounds in seconds (1 ms .. 60 s), suitable for TTFT and request latency. */
extern const double hist_latency_bounds[];
extern const int hist_latency_nbounds;

void hist_init(struct hist *h, const double *bounds, int nbounds);
void hist_observe(struct hist *h, double v);
/* hist_render appends the _bucket/_sum/_count lines of family NAME with LABELS (e.g. `model="m"`,
 * may be empty) to out. The caller writes # HELP / # TYPE. */
void hist_render(const struct hist *h, struct buf *out, const char *name, const char *labels);
/* hist_quantile estimates quantile q (0..1) by linear interpolation inside the bucket; 0 when empty. */
double hist_quantile(const struct hist *h, double q);

#endif
