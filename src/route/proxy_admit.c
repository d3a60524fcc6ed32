/* The router's side of admission (DESIGN §4.2, §4.4): tenant from the API key, per-tenant limits, the KV
 * budget as a candidate filter, and the queue while every target is saturated. The mechanism itself is
 * admission.c (pure); this file wires it to requests, timers and answers. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/amount.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/proxy_int.h"

static int retry_after_s(uint64_t wait_ns) {
  if (wait_ns == UINT64_MAX) return 0;
  uint64_t s = (wait_ns + 999999999ull) / 1000000000ull;
  return s < 1 ? 1 : s > 3600 ? 3600 : (int)s;
}

static const char *tenant_name(const struct proxy *p) {
  const struct router *r = p->r;
  return r->opts.ntenants && p->tenant >= 0 && p->tenant < r->opts.ntenants ? r->opts.tenants[p->tenant].name
                                                                            : "default";
}

const char *proxy_admit_tenant_name(const struct proxy *p) {
  const struct router *r = p->r;
  return r->opts.ntenants && p->tenant >= 0 && p->tenant < r->opts.ntenants ? r->opts.tenants[p->tenant].name : "";
}

bool proxy_admit_auth(struct proxy *p) {
  struct router *r = p->r;
  p->tenant = 0;
  p->prio = ADM_PRIO_NORMAL;
  if (r->opts.ntenants) {
    int t = tenants_lookup(r->opts.tenants, r->opts.ntenants, http_req_header(p->req, "authorization"));
    if (t < 0) {
      r->metrics.unauthorized++;
      proxy_fail(p, 401, "invalid_request_error", "invalid_api_key",
                 t == TENANT_MISSING
                     ? "You didn't provide an API key. Pass it as 'Authorization: Bearer KEY'."
                     : "Incorrect API key provided.",
                 0);
      return false;
    }
    p->tenant = t;
    p->prio = r->opts.tenants[t].lim.priority;
    p->slo_latency = r->opts.tenants[t].slo_latency;
  }
  struct slice pr = slice_trim(http_req_header(p->req, "x-infermesh-priority"));
  if (pr.base && adm_priority_parse(pr.base, pr.len, &p->prio) != 0) {
    proxy_fail(p, 400, "invalid_request_error", NULL, "x-infermesh-priority must be high, normal or low", 0);
    return false;
  }
  struct slice slo = slice_trim(http_req_header(p->req, "x-infermesh-slo"));
  if (slo.base) {
    if (!slice_eqz(slo, "latency") && !slice_eqz(slo, "throughput")) {
      proxy_fail(p, 400, "invalid_request_error", NULL, "x-infermesh-slo must be latency or throughput", 0);
      return false;
    }
    p->slo_latency = slo.base[0] == 'l';
  }
  return true;
}

/* 429 in OpenAI's format for a refusal by the tenant's limits or a full queue. */
static void shed(struct proxy *p, int reason, uint64_t wait_ns) {
  struct router *r = p->r;
  const struct adm_limits *lim = &r->adm.tenants[p->tenant].lim;
  char msg[320];
  const char *type = "requests";
  int ra = retry_after_s(wait_ns);
  r->metrics.shed[reason]++;
  switch (reason) {
  case ADM_SHED_REQUESTS:
    snprintf(msg, sizeof msg,
             "Rate limit reached for tenant %s on requests per second: limit %g. Please try again "
             "in %ds.",
             tenant_name(p), lim->requests_per_s, ra);
    break;
  case ADM_SHED_TOKENS:
    type = "tokens";
    snprintf(msg, sizeof msg,
             "Rate limit reached for tenant %s on tokens per minute: limit %g, requested %lld. "
             "Please try again in %ds.",
             tenant_name(p), lim->tokens_per_min, (long long)p->kv_need, ra);
    break;
  case ADM_SHED_TOO_LARGE:
    type = "tokens";
    snprintf(msg, sizeof msg,
             "Request too large for tenant %s: it needs %lld tokens (prompt + max_tokens), more than "
             "the limit of %g tokens per minute. Reduce the prompt or max_tokens.",
             tenant_name(p), (long long)p->kv_need, lim->tokens_per_min);
    break;
  case ADM_SHED_CONCURRENCY:
    ra = 1;
    snprintf(msg, sizeof msg,
             "Too many concurrent requests for tenant %s: limit %d. Please try again shortly.",
             tenant_name(p), lim->max_concurrent);
    break;
  default: /* ADM_SHED_QUEUE_FULL */
    ra = 1;
    type = "server_overloaded";
    snprintf(msg, sizeof msg,
             "Every target serving this model is saturated and %d requests are already waiting. "
             "Please try again shortly.",
             r->adm.o.queue_max);
    proxy_fail(p, 429, type, "queue_full", msg, ra);
    return;
  }
  proxy_fail(p, 429, type, "rate_limit_exceeded", msg, ra);
}

static void queue_timer_cb(struct upstream_timer *t);

/* over_budget answers 429 insufficient_quota (OpenAI's code for a spent quota) when p's tenant has a budget and
 * spent it in the current period, as far as this node knows the mesh's spend (DESIGN §8). */
static bool over_budget(struct proxy *p) {
  struct router *r = p->r;
  if (!r->opts.ntenants || !r->meter.spent || p->tenant < 0 || p->tenant >= r->opts.ntenants) return false;
  const struct tenant_conf *t = &r->opts.tenants[p->tenant];
  if (t->budget_nano <= 0) return false;
  int64_t now = clock_wall_s();
  int64_t spent = r->meter.spent(r->meter.arg, t->name, t->period, now);
  if (spent < t->budget_nano) return false;
  char budget[32], used[32], msg[400];
  amount_format(t->budget_nano, budget, sizeof budget);
  amount_format(spent, used, sizeof used);
  int ra = 0;
  if (t->period == PERIOD_TOTAL) {
    snprintf(msg, sizeof msg,
             "Tenant %s has spent %s of its total budget of %s; it does not reset. An admin can raise it "
             "(infermesh tenant limits %s --budget AMOUNT).",
             t->name, used, budget, t->name);
  } else {
    int64_t end = period_end(t->period, now);
    char when[32];
    period_format_utc(end, when, sizeof when);
    int64_t wait = end - now;
    ra = wait > 86400 * 31 ? 86400 * 31 : (int)wait;
    snprintf(msg, sizeof msg,
             "Tenant %s has spent %s of its budget of %s per %s; the budget resets at %s.", t->name, used, budget,
             period_name(t->period), when);
  }
  r->metrics.shed[ADM_SHED_BUDGET]++;
  adm_count_shed(&r->adm, p->tenant, ADM_SHED_BUDGET);
  proxy_fail(p, 429, "insufficient_quota", "insufficient_quota", msg, ra);
  return true;
}

void proxy_admit_estimate(struct proxy *p) {
  int64_t out = p->oai.max_tokens >= 0 ? p->oai.max_tokens : p->r->adm.o.default_max_tokens;
  p->prompt_est = (int64_t)((p->oai.prompt_text_bytes + 3) / 4 + p->oai.prompt_token_ids);
  p->kv_need = p->prompt_est + out;
}

void proxy_admit(struct proxy *p) {
  struct router *r = p->r;
  uint64_t now = proxy_now(r);
  uint64_t wait = 0;
  if (over_budget(p)) return;
  int reason = adm_limit(&r->adm, p->tenant, (double)p->kv_need, now, &wait);
  if (reason != ADM_OK) {
    shed(p, reason, wait);
    return;
  }
  p->admitted = true;
  r->metrics.admitted++;
  adm_bucket_add(&r->hedge_credit, r->opts.hedge_max_fraction); /* hedges are a share of all traffic */
  struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
  if (cp && cp->hedge_max_frac > 0) adm_bucket_add(&cp->credit, cp->hedge_max_frac); /* ... or of the model's */
  struct router_cands c;
  int n = proxy_candidates(p, &c);
  bool room = n == 0 || (adm_queue_len(&r->adm) == 0 && !adm_all_saturated(&r->adm.o, r->store, c.ids, n, p->kv_need));
  if (room) {
    proxy_attempt(p); /* room somewhere (or no target at all: 503) */
    return;
  }
  int waiting;
  if (cp && cp->max_queue > 0 && (waiting = proxy_model_queued(p)) >= cp->max_queue) {
    char msg[400];
    r->metrics.shed[ADM_SHED_QUEUE_FULL]++;
    snprintf(msg, sizeof msg,
             "Every target serving the model '%s' is saturated and %d of its requests are already waiting (its "
             "policy's max_queue). Please try again shortly.",
             p->model, waiting);
    proxy_fail(p, 429, "server_overloaded", "queue_full", msg, 1);
    return;
  }
  if (adm_enqueue(&r->adm, p->tenant, p->prio, (double)p->kv_need, now, p) != 0) {
    shed(p, ADM_SHED_QUEUE_FULL, 0);
    return;
  }
  assert(p->state == PS_NEW);
  p->state = PS_QUEUED;
  p->queued = true;
  p->t_enqueued = now;
  p->deadline_ns = now + (uint64_t)r->adm.o.queue_timeout_ms * 1000000ull;
  r->metrics.queued++;
  r->metrics.queue_depth = adm_queue_len(&r->adm);
  log_debug("queued", "id=%s tenant=%s priority=%s depth=%d", p->request_id, tenant_name(p),
            adm_priority_name(p->prio), r->metrics.queue_depth);
  proxy_timer(p, PT_QUEUE, r->adm.o.queue_timeout_ms, queue_timer_cb);
  proxy_admit_dispatch(r); /* others may be waiting only for another model's targets */
}

static bool kv_fits(const void *arg, const struct target *t) {
  const struct proxy *p = arg;
  return adm_kv_fits(&p->r->adm.o, t, p->kv_need);
}

int proxy_admit_filter(struct proxy *p, struct router_cands *c) {
  struct router *r = p->r;
  if (!r->adm.o.kv_budget || p->kv_need <= 0) return c->n;
  /* None fits (a retry after the roomy ones failed, or a forwarded request): c stays, the runtime queues it. */
  router_cands_keep(r, c, kv_fits, p);
  return c->n;
}

void proxy_admit_end(struct proxy *p) {
  struct router *r = p->r;
  if (p->queued) {
    adm_remove(&r->adm, p);
    p->queued = false;
    r->metrics.queue_depth = adm_queue_len(&r->adm);
  }
  if (p->admitted) {
    /* Never sent to a runtime (429 queue_full, 503 queue timeout or no target, a policy's refusal): the
     * tenant's rate and token budgets are not spent on it. */
    if (p->attempts == 0) adm_refund(&r->adm, p->tenant, (double)p->kv_need);
    adm_done(&r->adm, p->tenant);
    p->admitted = false;
  }
}

void proxy_admit_revoke(struct proxy *p) {
  if (!p->queued || p->revoked) return;
  p->revoked = true;
  proxy_timer(p, PT_QUEUE, 0, queue_timer_cb);
}

/* ---- the queue ---- */

static void expired_cb(void *arg, void *udata) {
  struct proxy *p = udata;
  struct router *r = p->r;
  char msg[200];
  p->queued = false;
  r->metrics.shed[ADM_SHED_QUEUE_TIMEOUT]++;
  r->metrics.queue_depth = adm_queue_len(&r->adm);
  snprintf(msg, sizeof msg,
           "Every target serving this model stayed saturated for %u ms. Please try again shortly.",
           r->adm.o.queue_timeout_ms);
  proxy_fail(p, 503, "service_unavailable", "queue_timeout", msg, 1);
}

static void queue_timer_cb(struct upstream_timer *t) {
  struct proxy *p = t->data;
  struct router *r = p->r;
  p->timer_use = PT_NONE;
  if (!p->queued) return;
  if (p->revoked) {
    adm_remove(&r->adm, p);
    p->queued = false;
    r->metrics.queue_depth = adm_queue_len(&r->adm);
    r->metrics.unauthorized++;
    proxy_fail(p, 401, "invalid_request_error", "invalid_api_key",
               "The API key this request was made with was revoked while it waited.", 0);
    return;
  }
  if (p->shed_no_target) {
    adm_remove(&r->adm, p);
    p->queued = false;
    r->metrics.queue_depth = adm_queue_len(&r->adm);
    proxy_fail(p, 503, "service_unavailable", NULL,
               "no healthy target serves this model right now; retry shortly", 1);
    return;
  }
  /* The loop's timer clock is coarser than ours: expire at least up to this request's own deadline. */
  uint64_t now = proxy_now(r);
  adm_expire(&r->adm, now > p->deadline_ns ? now : p->deadline_ns, expired_cb, r);
}

#define PASS_MODELS 16

/* One dispatch pass: models found with no room, so that later requests of the same model keep their order. */
struct pass {
  struct router *r;
  struct slice blocked[PASS_MODELS];
  int nblocked;
};

static int try_cb(void *arg, void *udata, uint64_t waited_ns) {
  struct pass *ps = arg;
  struct proxy *p = udata;
  struct router *r = ps->r;
  if (p->revoked) return 0; /* answered from its timer */
  for (int i = 0; i < ps->nblocked; i++)
    if (slice_eq(ps->blocked[i], p->oai.model)) return 0;
  struct router_cands c;
  int n = proxy_candidates(p, &c);
  bool full = n > 0 && adm_all_saturated(&r->adm.o, r->store, c.ids, n, p->kv_need);
  if (n == 0 || full) {
    if (n == 0 && !p->shed_no_target) {
      p->shed_no_target = true; /* answered from its timer: a pass never ends requests itself */
      proxy_timer(p, PT_QUEUE, 0, queue_timer_cb);
    }
    if (ps->nblocked < PASS_MODELS) ps->blocked[ps->nblocked++] = p->oai.model;
    return 0;
  }
  p->queued = false;
  proxy_timer_stop(p);
  p->timer_use = PT_NONE;
  hist_observe(&r->metrics.queue_wait, (double)waited_ns / 1e9);
  proxy_attempt(p); /* there are candidates: it cannot end p synchronously */
  return 1;
}

void proxy_admit_dispatch(struct router *r) {
  if (adm_queue_len(&r->adm) == 0) return;
  struct pass ps = {.r = r};
  adm_dispatch(&r->adm, proxy_now(r), try_cb, &ps);
  r->metrics.queue_depth = adm_queue_len(&r->adm);
}
