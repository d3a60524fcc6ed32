/* Fixed-bucket histograms. */
#include "core/hist.h"

#include <assert.h>

const double hist_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                                      0.75,  1.0,    2.5,   5.0,  7.5,   10.0, 20.0,  40.0, 60.0};
const int hist_latency_nbounds = (int)(sizeof hist_latency_bounds / sizeof hist_latency_bounds[0]);

void hist_init(struct hist *h, const double *bounds, int nbounds) {
  assert(nbounds <= HIST_MAX_BUCKETS);
  *h = (struct hist){.bounds = bounds, .nbounds = nbounds};
}

void hist_observe(struct hist *h, double v) {
  int i = 0;
  while (i < h->nbounds && v > h->bounds[i]) i++;
  h->counts[i]++;
  h->sum += v;
  h->count++;
}

void hist_render(const struct hist *h, struct buf *out, const char *name, const char *labels) {
  uint64_t cum = 0;
  const char *sep = labels && labels[0] ? "," : "";
  if (!labels) labels = "";
  for (int i = 0; i < h->nbounds; i++) {
    cum += h->counts[i];
    buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i], (unsigned long long)cum);
  }
  cum += h->counts[h->nbounds];
  buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
  if (labels[0]) {
    buf_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
               (unsigned long long)h->count);
  } else {
    buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
  }
}

double hist_quantile(const struct hist *h, double q) {
  if (h->count == 0) return 0;
  double rank = q * (double)h->count;
  uint64_t cum = 0;
  for (int i = 0; i <= h->nbounds; i++) {
    uint64_t prev = cum;
    cum += h->counts[i];
    if ((double)cum >= rank && h->counts[i]) {
      double lo = i == 0 ? 0 : h->bounds[i - 1];
      double hi = i < h->nbounds ? h->bounds[i] : h->bounds[h->nbounds - 1];
      return lo + (hi - lo) * ((rank - (double)prev) / (double)h->counts[i]);
    }
  }
  return h->bounds[h->nbounds - 1];
}
