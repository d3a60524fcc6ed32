/* Admission and fairness: token buckets, KV-budget fit, saturation, and the priority + WFQ queue. */
#include "route/admission.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static const char *const prio_names[ADM_NPRIO] = {"high", "normal", "low"};

int adm_priority_parse(const char *s, size_t len, int *out) {
  for (int i = 0; i < ADM_NPRIO; i++)
    if (strlen(prio_names[i]) == len && strncmp(s, prio_names[i], len) == 0) {
      *out = i;
      return 0;
    }
  return -EINVAL;
}

const char *adm_priority_name(int prio) { return prio >= 0 && prio < ADM_NPRIO ? prio_names[prio] : "?"; }

const char *adm_shed_name(int reason) {
  static const char *const names[ADM_NSHED] = {"ok",          "requests",   "tokens",       "too_large",
                                               "concurrency", "queue_full", "queue_timeout", "budget"};
  return reason >= 0 && reason < ADM_NSHED ? names[reason] : "?";
}

/* ---- token buckets ---- */

void adm_bucket_init(struct adm_bucket *b, double rate_per_s, double burst, uint64_t now_ns) {
  b->rate = rate_per_s;
  b->burst = burst;
  b->tokens = burst;
  b->t_ns = now_ns;
}

static void refill(struct adm_bucket *b, uint64_t now_ns) {
  if (now_ns > b->t_ns) {
    b->tokens += (double)(now_ns - b->t_ns) / 1e9 * b->rate;
    if (b->tokens > b->burst) b->tokens = b->burst;
  }
  b->t_ns = now_ns > b->t_ns ? now_ns : b->t_ns;
}

uint64_t adm_bucket_take(struct adm_bucket *b, double cost, uint64_t now_ns) {
  if (b->rate <= 0 && b->burst <= 0) return 0; /* unlimited */
  refill(b, now_ns);
  if (b->tokens >= cost) {
    b->tokens -= cost;
    return 0;
  }
  if (cost > b->burst || b->rate <= 0) return UINT64_MAX;
  double wait_ns = (cost - b->tokens) / b->rate * 1e9;
  return wait_ns < 1 ? 1 : (uint64_t)wait_ns + 1;
}

void adm_bucket_add(struct adm_bucket *b, double tokens) {
  b->tokens += tokens;
  if (b->tokens > b->burst) b->tokens = b->burst;
}

/* ---- configuration ---- */

void adm_limits_default(struct adm_limits *l) {
  memset(l, 0, sizeof *l);
  l->weight = 1;
  l->priority = ADM_PRIO_NORMAL;
}

void adm_opts_default(struct adm_opts *o) {
  o->queue_max = 1024;
  o->queue_timeout_ms = 30000;
  o->max_waiting = 0; /* off: a deep engine queue is normal under load; the KV budget is the hard limit */
  o->kv_budget = true;
  o->default_max_tokens = 256;
}

static void set_limits(struct adm_tenant *t, const struct adm_limits *lim) {
  if (lim)
    t->lim = *lim;
  else
    adm_limits_default(&t->lim);
  if (!(t->lim.weight > 0)) t->lim.weight = 1;
  if (t->lim.priority < 0 || t->lim.priority >= ADM_NPRIO) t->lim.priority = ADM_PRIO_NORMAL;
}

static void tenant_init(struct adm_tenant *t, const struct adm_limits *lim, uint64_t now_ns) {
  memset(t, 0, sizeof *t);
  set_limits(t, lim);
  double rps = t->lim.requests_per_s, tpm = t->lim.tokens_per_min;
  adm_bucket_init(&t->rps, rps > 0 ? rps : 0, rps > 0 ? (rps < 1 ? 1 : rps) : 0, now_ns);
  adm_bucket_init(&t->tpm, tpm > 0 ? tpm / 60.0 : 0, tpm > 0 ? tpm : 0, now_ns);
}

void admission_init(struct admission *a, const struct adm_opts *o, const struct adm_limits *lim, int ntenants,
                    uint64_t now_ns) {
  memset(a, 0, sizeof *a);
  if (o)
    a->o = *o;
  else
    adm_opts_default(&a->o);
  if (a->o.queue_max < 0) a->o.queue_max = 0;
  if (ntenants < 1) ntenants = 1;
  a->ntenants = ntenants;
  a->tenants = xcalloc((size_t)ntenants, sizeof *a->tenants);
  for (int i = 0; i < ntenants; i++)
    tenant_init(&a->tenants[i], lim ? &lim[i] : NULL, now_ns);
  size_t qcap = a->o.queue_max > 0 ? (size_t)a->o.queue_max : 1;
  a->q = xcalloc(qcap, sizeof *a->q);
  a->order = xcalloc(qcap, sizeof *a->order);
}

void adm_set_tenants(struct admission *a, const struct adm_limits *lim, int n, const int *map,
                     uint64_t now_ns) {
  if (n < 1) n = 1;
  struct adm_tenant *nt = xcalloc((size_t)n, sizeof *nt);
  bool *kept = xcalloc((size_t)n, sizeof *kept);
  for (int i = 0; i < a->ntenants; i++) {
    int j = map[i];
    if (j < 0 || j >= n || kept[j]) continue;
    struct adm_tenant *t = &nt[j];
    *t = a->tenants[i];
    set_limits(t, lim ? &lim[j] : NULL);
    struct adm_tenant fresh;
    tenant_init(&fresh, &t->lim, now_ns);
    t->rps.rate = fresh.rps.rate, t->rps.burst = fresh.rps.burst;
    t->tpm.rate = fresh.tpm.rate, t->tpm.burst = fresh.tpm.burst;
    if (t->rps.tokens > t->rps.burst) t->rps.tokens = t->rps.burst;
    if (t->tpm.tokens > t->tpm.burst) t->tpm.tokens = t->tpm.burst;
    kept[j] = true;
  }
  for (int j = 0; j < n; j++)
    if (!kept[j]) tenant_init(&nt[j], lim ? &lim[j] : NULL, now_ns);
  for (int k = 0; k < a->nq; k++) {
    int old = a->q[k].tenant;
    a->q[k].tenant = old >= 0 && old < a->ntenants ? map[old] : -1;
  }
  free(kept);
  free(a->tenants);
  a->tenants = nt;
  a->ntenants = n;
}

void admission_free(struct admission *a) {
  free(a->tenants);
  free(a->q);
  free(a->order);
  memset(a, 0, sizeof *a);
}

/* ---- per-tenant limits ---- */

static struct adm_tenant *tenant_at(struct admission *a, int tenant) {
  return &a->tenants[tenant >= 0 && tenant < a->ntenants ? tenant : 0];
}

int adm_limit(struct admission *a, int tenant, double tokens, uint64_t now_ns, uint64_t *retry_after_ns) {
  struct adm_tenant *t = tenant_at(a, tenant);
  int reason = ADM_OK;
  uint64_t wait = 0;
  if (t->lim.max_concurrent > 0 && t->active >= t->lim.max_concurrent) {
    reason = ADM_SHED_CONCURRENCY;
  } else if (t->tpm.burst > 0 && tokens > t->tpm.burst) {
    reason = ADM_SHED_TOO_LARGE;
    wait = UINT64_MAX;
  } else if ((wait = adm_bucket_take(&t->rps, 1, now_ns)) != 0) {
    reason = ADM_SHED_REQUESTS;
  } else if ((wait = adm_bucket_take(&t->tpm, tokens, now_ns)) != 0) {
    adm_bucket_add(&t->rps, 1); /* not admitted: the request slot goes back */
    reason = ADM_SHED_TOKENS;
  }
  if (retry_after_ns) *retry_after_ns = wait;
  if (reason != ADM_OK) {
    t->shed[reason]++;
    return reason;
  }
  t->active++;
  t->admitted++;
  return ADM_OK;
}

void adm_done(struct admission *a, int tenant) {
  if (tenant < 0 || tenant >= a->ntenants) return;
  struct adm_tenant *t = &a->tenants[tenant];
  if (t->active > 0) t->active--;
}

void adm_refund(struct admission *a, int tenant, double tokens) {
  if (tenant < 0 || tenant >= a->ntenants) return;
  struct adm_tenant *t = &a->tenants[tenant];
  adm_bucket_add(&t->rps, 1);
  if (tokens > 0) adm_bucket_add(&t->tpm, tokens);
}

void adm_count_shed(struct admission *a, int tenant, int reason) {
  if (reason > ADM_OK && reason < ADM_NSHED) tenant_at(a, tenant)->shed[reason]++;
}

/* ---- targets ---- */

bool adm_kv_fits(const struct adm_opts *o, const struct target *t, int64_t need) {
  int64_t free_tokens = store_kv_free(t);
  if (free_tokens == INT64_MAX) return true;
  int64_t cap = store_kv_capacity(t);
  if (need > cap) need = cap; /* too big for the pool at all: wait for an idle target, then let it try */
  return need <= free_tokens;
}

bool adm_target_saturated(const struct adm_opts *o, const struct target *t, int64_t need) {
  if (o->kv_budget && !adm_kv_fits(o, t, need)) return true;
  if (o->max_waiting > 0 && t->load.waiting + (double)t->routed_since_report >= (double)o->max_waiting)
    return true;
  return false;
}

bool adm_all_saturated(const struct adm_opts *o, const struct store *s, const int *ids, int n, int64_t need) {
  for (int i = 0; i < n; i++)
    if (!adm_target_saturated(o, &s->targets[ids[i]], need)) return false;
  return true;
}

/* ---- the queue ---- */

int adm_enqueue(struct admission *a, int tenant, int prio, double tokens, uint64_t now_ns, void *udata) {
  struct adm_tenant *t = tenant_at(a, tenant);
  if (a->nq >= a->o.queue_max) {
    t->shed[ADM_SHED_QUEUE_FULL]++;
    return -ENOSPC;
  }
  struct adm_entry *e = &a->q[a->nq++];
  memset(e, 0, sizeof *e);
  e->udata = udata;
  e->seq = ++a->seq;
  e->enq_ns = now_ns;
  e->deadline_ns = now_ns + (uint64_t)a->o.queue_timeout_ms * 1000000ull;
  e->prio = prio >= 0 && prio < ADM_NPRIO ? prio : ADM_PRIO_NORMAL;
  e->tenant = tenant;
  e->vstart = a->vtime > t->last_finish ? a->vtime : t->last_finish;
  e->vfinish = e->vstart + (tokens > 1 ? tokens : 1) / t->lim.weight;
  t->last_finish = e->vfinish;
  t->queued++;
  return 0;
}

static void remove_at(struct admission *a, int i) {
  a->q[i] = a->q[--a->nq]; /* order lives in the tags, not in the array */
}

bool adm_remove(struct admission *a, void *udata) {
  for (int i = 0; i < a->nq; i++)
    if (a->q[i].udata == udata) {
      if (a->dispatching) {
        a->q[i].dead = true; /* compacted when the pass ends */
      } else {
        remove_at(a, i);
      }
      return true;
    }
  return false;
}

/* Service order: priority (high first), WFQ finish tag, arrival. */
static bool before(const struct admission *a, int x, int y) {
  const struct adm_entry *e = &a->q[x], *f = &a->q[y];
  if (e->prio != f->prio) return e->prio < f->prio;
  if (e->vfinish != f->vfinish) return e->vfinish < f->vfinish;
  return e->seq < f->seq;
}

static void sift_down(const struct admission *a, int *v, int i, int n) {
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) return;
    if (c + 1 < n && before(a, v[c], v[c + 1])) c++;
    if (!before(a, v[i], v[c])) return;
    int tmp = v[i];
    v[i] = v[c];
    v[c] = tmp;
    i = c;
  }
}

/* Heapsort of queue indices (in place, no allocation, O(n log n)). */
static void sort_order(const struct admission *a, int *v, int n) {
  for (int i = n / 2 - 1; i >= 0; i--)
    sift_down(a, v, i, n);
  for (int end = n - 1; end > 0; end--) {
    int tmp = v[0];
    v[0] = v[end];
    v[end] = tmp;
    sift_down(a, v, 0, end);
  }
}

int adm_dispatch(struct admission *a, uint64_t now_ns,
                 int (*try_cb)(void *arg, void *udata, uint64_t waited_ns), void *arg) {
  if (a->dispatching || a->nq == 0) return 0;
  int n = a->nq, out = 0;
  for (int i = 0; i < n; i++)
    a->order[i] = i;
  sort_order(a, a->order, n);
  a->dispatching = true;
  for (int k = 0; k < n; k++) {
    struct adm_entry *e = &a->q[a->order[k]];
    if (e->dead) continue;
    int rc = try_cb(arg, e->udata, now_ns > e->enq_ns ? now_ns - e->enq_ns : 0);
    if (rc == 1) {
      e->dead = true;
      if (e->vstart > a->vtime) a->vtime = e->vstart;
      out++;
    } else if (rc < 0) {
      break;
    }
  }
  a->dispatching = false;
  for (int i = 0; i < a->nq;) {
    if (a->q[i].dead)
      remove_at(a, i);
    else
      i++;
  }
  return out;
}

int adm_expire(struct admission *a, uint64_t now_ns, void (*cb)(void *arg, void *udata), void *arg) {
  int out = 0;
  for (;;) {
    int found = -1;
    for (int i = 0; i < a->nq && found < 0; i++)
      if (a->q[i].deadline_ns <= now_ns) found = i;
    if (found < 0) return out;
    void *udata = a->q[found].udata;
    tenant_at(a, a->q[found].tenant)->shed[ADM_SHED_QUEUE_TIMEOUT]++;
    remove_at(a, found);
    out++;
    if (cb) cb(arg, udata);
  }
}
