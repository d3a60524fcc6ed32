/* Router request metrics. */
#include "route/route_metrics.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/amount.h"

#include "core/slice.h"
#include "route/record.h"
#include "route/upstream.h"

void route_metrics_init(struct route_metrics *m) {
  memset(m, 0, sizeof *m);
  hist_init(&m->ttft, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&m->latency, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&m->queue_wait, hist_latency_bounds, hist_latency_nbounds);
}

void route_metrics_free(struct route_metrics *m) {
  free(m->usage);
  m->usage = NULL;
  m->nusage = 0;
}

void route_metrics_usage(struct route_metrics *m, const char *tenant, const char *model, int64_t prompt,
                         int64_t cached, int64_t completion, int64_t cost_nano, const char *currency) {
  if (!tenant[0]) tenant = "-";
  if (!m->usage) m->usage = xcalloc(RM_MAX_USAGE, sizeof *m->usage);
  struct rm_usage *u = NULL;
  for (int i = 0; i < m->nusage && !u; i++)
    if (strcmp(m->usage[i].tenant, tenant) == 0 && strcmp(m->usage[i].model, model) == 0 &&
        strcmp(m->usage[i].currency, currency) == 0)
      u = &m->usage[i];
  if (!u && m->nusage == RM_MAX_USAGE - 1) { /* the last slot takes everything past the bound */
    tenant = model = "other";
    u = &m->usage[m->nusage++];
  } else if (!u && m->nusage == RM_MAX_USAGE) {
    u = &m->usage[RM_MAX_USAGE - 1];
  } else if (!u) {
    u = &m->usage[m->nusage++];
  }
  if (!u->tenant[0]) {
    str_copy(u->tenant, sizeof u->tenant, tenant);
    str_copy(u->model, sizeof u->model, model);
    str_copy(u->currency, sizeof u->currency, currency);
  }
  u->requests++;
  if (prompt > 0) u->prompt_tokens += (uint64_t)prompt;
  if (cached > 0) u->cached_tokens += (uint64_t)cached;
  if (completion > 0) u->completion_tokens += (uint64_t)completion;
  u->cost_nano += cost_nano;
}

static void usage_labels(struct buf *out, const struct rm_usage *u) {
  buf_puts(out, "{tenant=\"");
  buf_label_value(out, u->tenant);
  buf_puts(out, "\",model=\"");
  buf_label_value(out, u->model);
  buf_puts(out, "\"");
}

static void render_usage(const struct route_metrics *m, struct buf *out) {
  if (!m->nusage) return;
  buf_puts(out, "# HELP infermesh_tenant_tokens_total Tokens runtimes processed, by tenant (\"-\" without tenants), "
                "model and kind (prompt, of them cached, completion).\n"
                "# TYPE infermesh_tenant_tokens_total counter\n");
  static const char *const kinds[] = {"prompt", "cached", "completion"};
  for (int i = 0; i < m->nusage; i++) {
    const struct rm_usage *u = &m->usage[i];
    const uint64_t v[3] = {u->prompt_tokens, u->cached_tokens, u->completion_tokens};
    for (int k = 0; k < 3; k++) {
      buf_puts(out, "infermesh_tenant_tokens_total");
      usage_labels(out, u);
      buf_printf(out, ",kind=\"%s\"} %llu\n", kinds[k], (unsigned long long)v[k]);
    }
  }
  buf_puts(out, "# HELP infermesh_tenant_cost_total What the tenant's requests cost (models with a price), by model "
                "and currency.\n# TYPE infermesh_tenant_cost_total counter\n");
  for (int i = 0; i < m->nusage; i++) {
    const struct rm_usage *u = &m->usage[i];
    if (!u->currency[0]) continue;
    char a[32];
    amount_format(u->cost_nano, a, sizeof a);
    buf_puts(out, "infermesh_tenant_cost_total");
    usage_labels(out, u);
    buf_puts(out, ",currency=\"");
    buf_label_value(out, u->currency);
    buf_printf(out, "\"} %s\n", a);
  }
}

void route_metrics_count(struct route_metrics *m, const char *model, int status, const char *target) {
  for (int i = 0; i < m->nseries; i++) {
    struct rm_series *s = &m->series[i];
    if (s->status == status && strcmp(s->model, model) == 0 && strcmp(s->target, target) == 0) {
      s->count++;
      return;
    }
  }
  if (m->nseries == RM_MAX_SERIES) return;
  struct rm_series *s = &m->series[m->nseries++];
  str_copy(s->model, sizeof s->model, model);
  str_copy(s->target, sizeof s->target, target);
  s->status = status;
  s->count = 1;
}

void route_metrics_render(const struct route_metrics *m, struct buf *out, int inflight) {
  render_usage(m, out);
  buf_puts(out, "# HELP infermesh_requests_total Requests answered, by model, HTTP status and target.\n"
                "# TYPE infermesh_requests_total counter\n");
  for (int i = 0; i < m->nseries; i++) {
    const struct rm_series *s = &m->series[i];
    buf_puts(out, "infermesh_requests_total{model=\"");
    buf_label_value(out, s->model);
    buf_printf(out, "\",status=\"%d\",target=\"", s->status);
    buf_label_value(out, s->target);
    buf_printf(out, "\"} %llu\n", (unsigned long long)s->count);
  }
  buf_printf(out,
             "# HELP infermesh_requests_in_flight Requests being served now.\n"
             "# TYPE infermesh_requests_in_flight gauge\ninfermesh_requests_in_flight %d\n"
             "# HELP infermesh_retries_total Attempts repeated on another target before the first byte.\n"
             "# TYPE infermesh_retries_total counter\ninfermesh_retries_total %llu\n"
             "# HELP infermesh_upstream_errors_total Upstream attempts that failed (connect, timeout, 5xx, reset).\n"
             "# TYPE infermesh_upstream_errors_total counter\ninfermesh_upstream_errors_total %llu\n"
             "# HELP infermesh_client_aborts_total Requests whose client went away before the end.\n"
             "# TYPE infermesh_client_aborts_total counter\ninfermesh_client_aborts_total %llu\n"
             "# HELP infermesh_prompt_tokens_total Prompt tokens reported by upstream usage.\n"
             "# TYPE infermesh_prompt_tokens_total counter\ninfermesh_prompt_tokens_total %llu\n"
             "# HELP infermesh_completion_tokens_total Completion tokens reported by upstream usage.\n"
             "# TYPE infermesh_completion_tokens_total counter\ninfermesh_completion_tokens_total %llu\n",
             inflight, (unsigned long long)m->retries, (unsigned long long)m->upstream_errors,
             (unsigned long long)m->client_aborts, (unsigned long long)m->prompt_tokens,
             (unsigned long long)m->completion_tokens);
  buf_puts(out, "# HELP infermesh_upstream_failures_total Upstream attempts that failed, by kind.\n"
                "# TYPE infermesh_upstream_failures_total counter\n");
  for (int i = 1; i < RM_FAIL_KINDS; i++)
    buf_printf(out, "infermesh_upstream_failures_total{kind=\"%s\"} %llu\n", upstream_fail_name(i),
               (unsigned long long)m->failures[i]);
  buf_puts(out, "# HELP infermesh_time_to_first_token_seconds Time from request to the first streamed token "
                "(or the whole response when not streaming).\n"
                "# TYPE infermesh_time_to_first_token_seconds histogram\n");
  hist_render(&m->ttft, out, "infermesh_time_to_first_token_seconds", "");
  buf_puts(out, "# HELP infermesh_request_duration_seconds Time from request to the end of the response.\n"
                "# TYPE infermesh_request_duration_seconds histogram\n");
  hist_render(&m->latency, out, "infermesh_request_duration_seconds", "");
  buf_printf(out,
             "# HELP infermesh_admission_admitted_total Requests within their tenant's limits (served at once or "
             "after queueing).\n"
             "# TYPE infermesh_admission_admitted_total counter\ninfermesh_admission_admitted_total %llu\n"
             "# HELP infermesh_admission_queued_total Requests that waited in the queue because every target was "
             "saturated.\n"
             "# TYPE infermesh_admission_queued_total counter\ninfermesh_admission_queued_total %llu\n"
             "# HELP infermesh_admission_unauthorized_total Requests refused for a missing or unknown API key.\n"
             "# TYPE infermesh_admission_unauthorized_total counter\ninfermesh_admission_unauthorized_total %llu\n"
             "# HELP infermesh_admission_forbidden_total Requests refused because the tenant may not use the model.\n"
             "# TYPE infermesh_admission_forbidden_total counter\ninfermesh_admission_forbidden_total %llu\n"
             "# HELP infermesh_admission_queue_depth Requests waiting in the queue now.\n"
             "# TYPE infermesh_admission_queue_depth gauge\ninfermesh_admission_queue_depth %d\n"
             "# HELP infermesh_admission_shed_total Requests refused with 429/503, by reason.\n"
             "# TYPE infermesh_admission_shed_total counter\n",
             (unsigned long long)m->admitted, (unsigned long long)m->queued, (unsigned long long)m->unauthorized,
             (unsigned long long)m->forbidden, m->queue_depth);
  for (int i = 1; i < ADM_NSHED; i++)
    buf_printf(out, "infermesh_admission_shed_total{reason=\"%s\"} %llu\n", adm_shed_name(i),
               (unsigned long long)m->shed[i]);
  buf_puts(out, "# HELP infermesh_admission_queue_wait_seconds Time queued requests waited before going to a "
                "target.\n# TYPE infermesh_admission_queue_wait_seconds histogram\n");
  hist_render(&m->queue_wait, out, "infermesh_admission_queue_wait_seconds", "");
  buf_printf(out,
             "# HELP infermesh_hedges_sent_total Copies of latency-class requests sent to a second target.\n"
             "# TYPE infermesh_hedges_sent_total counter\ninfermesh_hedges_sent_total %llu\n"
             "# HELP infermesh_hedges_won_total Hedged copies that answered first.\n"
             "# TYPE infermesh_hedges_won_total counter\ninfermesh_hedges_won_total %llu\n"
             "# HELP infermesh_hedges_cancelled_total Attempts cancelled because the other copy answered first.\n"
             "# TYPE infermesh_hedges_cancelled_total counter\ninfermesh_hedges_cancelled_total %llu\n"
             "# HELP infermesh_hedge_wasted_tokens_total Tokens given to cancelled copies (prompt estimate).\n"
             "# TYPE infermesh_hedge_wasted_tokens_total counter\ninfermesh_hedge_wasted_tokens_total %llu\n",
             (unsigned long long)m->hedges_sent, (unsigned long long)m->hedges_won,
             (unsigned long long)m->hedges_cancelled, (unsigned long long)m->hedge_wasted_tokens);
}

void route_metrics_on_record(void *arg, const struct request_record *rec) {
  struct route_metrics *m = arg;
  route_metrics_count(m, rec->model, rec->status, rec->target);
  if (rec->status < 400) {
    hist_observe(&m->latency, rec->duration_ms / 1e3);
    if (rec->ttft_ms >= 0) hist_observe(&m->ttft, rec->ttft_ms / 1e3);
  }
  if (!rec->usage || rec->forwarded) return; /* a forwarded request counts at the agent that took it */
  route_metrics_usage(m, rec->tenant, rec->model, rec->prompt_tokens, rec->cached_tokens, rec->completion_tokens,
                      rec->cost_nano, rec->currency);
  if (rec->prompt_tokens > 0) m->prompt_tokens += (uint64_t)rec->prompt_tokens;
  if (rec->completion_tokens > 0) m->completion_tokens += (uint64_t)rec->completion_tokens;
}
