/* Request metrics of the router, rendered in the Prometheus text format. */
#ifndef IM_ROUTE_ROUTE_METRICS_H
#define IM_ROUTE_ROUTE_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/hist.h"
#include "route/admission.h"

struct request_record;

#define RM_MAX_SERIES 512
/* Failed upstream attempts by kind: the order of enum fail_kind (route/proxy_int.h), 0 unused. */
#define RM_FAIL_KINDS 7

/* One requests_total series: model/status/target label values (copied, bounded). */
struct rm_series {
  char model[96];
  char target[64];
  int status;
  uint64_t count;
};

/* Tokens and spend of one tenant on one model (in one currency). At most RM_MAX_USAGE of them: tenants are
 * configured and models are ones a runtime served, and past the bound the rest add up under "other". */
#define RM_MAX_USAGE 256
struct rm_usage {
  char tenant[64], model[96], currency[8];
  uint64_t requests, prompt_tokens, cached_tokens, completion_tokens;
  int64_t cost_nano;
};

struct route_metrics {
  struct rm_series series[RM_MAX_SERIES];
  int nseries;
  uint64_t retries, upstream_errors, client_aborts, prompt_tokens, completion_tokens;
  uint64_t failures[RM_FAIL_KINDS];
  struct hist ttft, latency;
  /* Admission: requests past the tenant limits, requests that waited in the queue, refusals by reason
   * (ADM_SHED_*), the queue's depth now and the wait of requests that left it for a target. */
  uint64_t admitted, queued, shed[ADM_NSHED], unauthorized, forbidden;
  int queue_depth;
  struct hist queue_wait;
  /* Hedging: copies sent, copies that answered first, losing attempts cancelled, and the tokens the losers
   * were given for nothing (their prompt estimate). */
  uint64_t hedges_sent, hedges_won, hedges_cancelled, hedge_wasted_tokens;
  struct rm_usage *usage; /* owned, RM_MAX_USAGE entries */
  int nusage;
};

void route_metrics_init(struct route_metrics *m);
void route_metrics_free(struct route_metrics *m);
/* route_metrics_usage adds a request's usage (counts < 0 are not counted) and cost (currency "" when it had no
 * price) to its tenant's series for model ("" tenant: "-"). Strings are copied (truncated). */
void route_metrics_usage(struct route_metrics *m, const char *tenant, const char *model, int64_t prompt,
                         int64_t cached, int64_t completion, int64_t cost_nano, const char *currency);
/* route_metrics_count adds one finished request. model is "" for requests that named no known model (so
 * clients cannot grow the label set); target "" when none was chosen. */
void route_metrics_count(struct route_metrics *m, const char *model, int status, const char *target);
/* route_metrics_on_record is the observer (route/record.h) that counts a finished request in the route_metrics
 * arg: its status per model and target, latency and time to first token of the successful ones, and its usage
 * and cost per tenant unless another agent forwarded it (that agent counts it). */
void route_metrics_on_record(void *arg, const struct request_record *rec);
/* route_metrics_render appends the infermesh_* families (HELP, TYPE, samples); inflight is a gauge value. */
void route_metrics_render(const struct route_metrics *m, struct buf *out, int inflight);

#endif
