/* Router request metrics. */
#include "route/route_metrics.h"

#include <string.h>

#include "core/slice.h"

void route_metrics_init(struct route_metrics *m) {
  memset(m, 0, sizeof *m);
  hist_init(&m->ttft, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&m->latency, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&m->queue_wait, hist_latency_bounds, hist_latency_nbounds);
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
  static const char *const kinds[RM_FAIL_KINDS] = {
      "", "connect", "timeout", "first_byte_deadline", "target_down", "upstream_5xx", "too_big"};
  buf_puts(out, "# HELP infermesh_upstream_failures_total Upstream attempts that failed, by kind.\n"
                "# TYPE infermesh_upstream_failures_total counter\n");
  for (int i = 1; i < RM_FAIL_KINDS; i++)
    buf_printf(out, "infermesh_upstream_failures_total{kind=\"%s\"} %llu\n", kinds[i],
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
