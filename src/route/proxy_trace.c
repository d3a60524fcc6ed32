/* A request's spans (OpenTelemetry): the server span of the request (an observer of its record), admission,
 * each routing decision and each upstream attempt, whose span is the parent the upstream (a runtime or the
 * next agent) sees in traceparent. Only requests of a router with a tracer get here; spans only when sampled.
 */
#include <stdio.h>
#include <string.h>

#include "route/proxy_int.h"

void proxy_trace_begin(struct proxy *p) {
  struct http_req *req = p->req;
  p->traced = true;
  tracer_begin(p->r->tracer, &p->tr, http_req_header(req, "traceparent"), http_req_header(req, "tracestate"),
               p->t0);
}

/* A child of p's server span, in the export queue (NULL: the queue is full, nothing to build). */
static struct span *child(const struct proxy *p, const char *name, enum span_kind kind,
                          const uint8_t *span_id, uint64_t start) {
  struct span *s = tracer_span(p->r->tracer);
  if (s)
    span_init(s, name, kind, p->tr.trace_id, span_id, p->tr.span_id, tracer_unix_ns(p->r->tracer, start));
  return s;
}

void proxy_trace_admit_begin(struct proxy *p) {
  p->t_admit = proxy_now(p->r);
  p->admit_open = true;
}

void proxy_trace_admitted(struct proxy *p, int status) {
  p->admit_open = false;
  if (!p->tr.sampled) return;
  struct tracer *t = p->r->tracer;
  uint8_t id[SPAN_ID_LEN];
  tracer_span_id(t, id);
  struct span *s = child(p, "admission", SPAN_KIND_INTERNAL, id, p->t_admit);
  if (!s) return;
  s->end_ns = tracer_unix_ns(t, proxy_now(p->r));
  if (*proxy_admit_tenant_name(p)) span_str(s, "infermesh.tenant", proxy_admit_tenant_name(p));
  span_str(s, "infermesh.priority", adm_priority_name(p->prio));
  span_bool(s, "infermesh.slo_latency", p->slo_latency);
  span_bool(s, "infermesh.queued", p->t_enqueued != 0);
  span_int(s, "infermesh.tokens_estimate", p->kv_need);
  if (status) {
    char msg[64];
    snprintf(msg, sizeof msg, "answered %d before it was sent", status);
    span_error(s, msg);
  }
  tracer_emit(t);
}

/* put_score appends sep, name, '=' and v with 3 decimals to out[len..cap - 1) (cut at the end; room for a NUL
 * kept) and returns the new length. By hand: snprintf's %f costs more than the rest of the span. */
static size_t put_score(char *out, size_t cap, size_t len, const char *sep, const char *name, double v) {
  char num[32];
  size_t n = 0;
  if (!(v >= 0 && v < 1e15)) {
    n = (size_t)snprintf(num, sizeof num, "%g", v);
  } else {
    uint64_t m = (uint64_t)(v * 1000 + 0.5), ip = m / 1000;
    char rev[20];
    size_t r = 0;
    do
      rev[r++] = (char)('0' + ip % 10);
    while ((ip /= 10) > 0);
    while (r)
      num[n++] = rev[--r];
    num[n++] = '.';
    num[n++] = (char)('0' + m / 100 % 10);
    num[n++] = (char)('0' + m / 10 % 10);
    num[n++] = (char)('0' + m % 10);
  }
  const char *parts[3] = {sep, name, "="};
  for (int i = 0; i < 3; i++)
    for (const char *c = parts[i]; *c && len + 1 < cap; c++)
      out[len++] = *c;
  for (size_t i = 0; i < n && len + 1 < cap; i++)
    out[len++] = num[i];
  return len;
}

void proxy_trace_route(struct proxy *p, const int *ids, int n, int chosen, uint64_t t_start) {
  if (p->admit_open) proxy_trace_admitted(p, 0); /* admitted: it is being routed */
  struct router *r = p->r;
  struct tracer *t = r->tracer;
  uint64_t now = proxy_now(r);
  uint8_t id[SPAN_ID_LEN];
  tracer_span_id(t, id);
  struct span *s = child(p, "route", SPAN_KIND_INTERNAL, id, t_start);
  if (!s) return;
  s->end_ns = tracer_unix_ns(t, now);
  const struct target *ct = &r->store->targets[chosen];
  span_str(s, "infermesh.route.policy", policy_name(router_policy_for(r, p->oai.model)));
  span_int(s, "infermesh.route.candidates", n);
  span_str(s, "infermesh.route.chosen", ct->name);
  span_double(s, "infermesh.route.chosen_score", score_target(ct, &r->score, now));
  bool hedge = p->legs[0].up || p->legs[1].up; /* a send is in flight: this decision is for its copy */
  span_str(s, "infermesh.route.purpose", hedge ? "hedge" : p->attempts ? "retry" : "first");
  span_int(s, "infermesh.attempt", hedge ? p->attempts : p->attempts + 1);
  /* The three lowest scores among the candidates (score_target: queued work, lower is better), bounded. */
  enum { TOP = 3 };
  int top[TOP];
  double sc[TOP];
  int k = 0;
  for (int i = 0; i < n; i++) {
    double v = score_target(&r->store->targets[ids[i]], &r->score, now);
    int j;
    if (k < TOP)
      j = k++;
    else if (v < sc[TOP - 1])
      j = TOP - 1;
    else
      continue;
    while (j > 0 && sc[j - 1] > v) {
      sc[j] = sc[j - 1];
      top[j] = top[j - 1];
      j--;
    }
    sc[j] = v;
    top[j] = ids[i];
  }
  char list[SPAN_STR_MAX];
  size_t len = 0;
  for (int i = 0; i < k; i++)
    len = put_score(list, sizeof list, len, i ? " " : "", r->store->targets[top[i]].name, sc[i]);
  list[len] = '\0';
  span_str(s, "infermesh.route.top", list);
  tracer_emit(t);
}

void proxy_trace_leg_start(struct proxy *p, struct leg *l) {
  if (p->admit_open) proxy_trace_admitted(p, 0);
  tracer_span_id(p->r->tracer, l->span_id);
}

void proxy_trace_on_attempt(void *arg, const struct attempt_record *a) {
  struct tracer *t = arg;
  const struct trace_req *tr = a->trace;
  if (!tr || !tr->sampled) return;
  struct span *s = tracer_span(t);
  if (!s) return;
  span_init(s, "attempt", SPAN_KIND_CLIENT, tr->trace_id, a->span_id, tr->span_id,
            tracer_unix_ns(t, a->t_sent_ns));
  s->end_ns = tracer_unix_ns(t, a->t_end_ns);
  span_str(s, "infermesh.target", a->target);
  if (a->node[0]) span_str(s, "infermesh.node", a->node);
  span_int(s, "infermesh.attempt", a->attempt);
  span_bool(s, "infermesh.hedge", a->hedge);
  span_bool(s, "infermesh.retry", !a->hedge && a->attempt > 1);
  if (a->status) span_int(s, "http.response.status_code", a->status);
  if (a->failure[0]) {
    span_str(s, "infermesh.failure", a->failure);
    span_error(s, a->error);
  } else if (!a->winner) {
    span_str(s, "infermesh.cancelled", a->lost_race ? "lost the hedge race" : "the request ended first");
  } else if (a->stream_error) {
    span_error(s, "the stream carried an error event");
  }
  tracer_emit(t);
}

void proxy_trace_headers(const struct proxy *p, const struct leg *l, struct buf *h) {
  struct trace_ctx c = {.flags = p->tr.sampled ? TRACE_FLAG_SAMPLED : 0};
  memcpy(c.trace_id, p->tr.trace_id, TRACE_ID_LEN);
  memcpy(c.span_id, l->span_id, SPAN_ID_LEN);
  char tp[TRACEPARENT_LEN + 1];
  traceparent_format(&c, tp);
  buf_puts(h, "traceparent: ");
  buf_append(h, tp, TRACEPARENT_LEN);
  buf_append(h, "\r\n", 2);
  if (p->tr.tracestate.len) { /* validated: printable ASCII, no CR or LF */
    buf_puts(h, "tracestate: ");
    buf_append_slice(h, p->tr.tracestate);
    buf_append(h, "\r\n", 2);
  }
}

/* The server span's name, OpenTelemetry's "{method} {route}" (static). */
static const char *server_name(const char *path) {
  if (strcmp(path, "/v1/chat/completions") == 0) return "POST /v1/chat/completions";
  if (strcmp(path, "/v1/embeddings") == 0) return "POST /v1/embeddings";
  return "POST /v1/completions";
}

void proxy_trace_on_record(void *arg, const struct request_record *rec) {
  struct tracer *t = arg;
  const struct trace_req *tr = rec->trace;
  if (!tr || !tr->sampled) return;
  struct span *s = tracer_span(t);
  if (!s) return;
  span_init(s, server_name(rec->path), SPAN_KIND_SERVER, tr->trace_id, tr->span_id,
            tr->has_parent ? tr->parent_id : NULL, tracer_unix_ns(t, tr->start));
  s->end_ns = s->start_ns + (uint64_t)(rec->duration_ms * 1e6);
  span_str(s, "http.request.method", "POST");
  span_str(s, "http.route", rec->path);
  span_int(s, "http.response.status_code", rec->status);
  span_str(s, "infermesh.request_id", rec->request_id);
  span_str(s, "infermesh.tenant", rec->tenant);
  span_str(s, "gen_ai.request.model", rec->model);
  span_str(s, "infermesh.outcome", rec->outcome);
  span_str(s, "infermesh.target", rec->target);
  span_int(s, "infermesh.attempts", rec->attempts);
  span_bool(s, "infermesh.hedged", rec->hedged);
  span_bool(s, "infermesh.forwarded", rec->forwarded);
  if (rec->stream) span_bool(s, "infermesh.stream", true);
  if (rec->status >= 500) span_error(s, rec->outcome);
  tracer_emit(t);
}
