/* Admission and fairness (DESIGN §4.4, §6): per-tenant token buckets, KV-budget fit, saturation, and a
 * bounded queue with deadlines served by priority, then weighted fair queueing between tenants.
 *
 * Pure logic: no I/O, no clock reads, no allocation after admission_init. Every call takes the time (any
 * monotonic nanosecond clock) from its caller, so tests drive it with a fake clock. The router owns one
 * struct admission and calls, per request:
 *   adm_limit (tenant buckets and concurrency)  ->  admitted: dispatch, or adm_enqueue when saturated
 *   adm_dispatch (on completions and load reports) / adm_expire (on deadlines)  ->  adm_done when it ends. */
#ifndef IM_ROUTE_ADMISSION_H
#define IM_ROUTE_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "state/store.h"

/* Priorities: a lower value dequeues first. */
enum adm_priority { ADM_PRIO_HIGH = 0, ADM_PRIO_NORMAL = 1, ADM_PRIO_LOW = 2, ADM_NPRIO = 3 };

/* adm_priority_parse maps "high", "normal", "low" (s[0..len)) to a priority: 0 or -EINVAL. */
int adm_priority_parse(const char *s, size_t len, int *out);
const char *adm_priority_name(int prio);

/* Why a request was refused (label values of infermesh_admission_shed_total{reason}). */
enum adm_shed {
  ADM_OK = 0,
  ADM_SHED_REQUESTS,  /* over the tenant's requests/s */
  ADM_SHED_TOKENS,    /* over the tenant's tokens/min */
  ADM_SHED_TOO_LARGE, /* one request costs more tokens than the tenant's per-minute limit: never admissible */
  ADM_SHED_CONCURRENCY,   /* the tenant has max_concurrent requests in the router already */
  ADM_SHED_QUEUE_FULL,    /* every target saturated and the queue full */
  ADM_SHED_QUEUE_TIMEOUT, /* waited in the queue until its deadline */
  ADM_SHED_BUDGET,        /* the tenant spent its budget for the period (429 insufficient_quota) */
  ADM_NSHED
};
const char *adm_shed_name(int reason);

/* A token bucket: holds at most burst tokens, refills at rate per second. rate <= 0 means unlimited. */
struct adm_bucket {
  double rate, burst, tokens;
  uint64_t t_ns; /* time of the last refill */
};

/* adm_bucket_init makes a full bucket at now_ns. */
void adm_bucket_init(struct adm_bucket *b, double rate_per_s, double burst, uint64_t now_ns);
/* adm_bucket_take takes cost tokens when the bucket holds them and returns 0; otherwise takes nothing and
 * returns the nanoseconds until it would hold them (UINT64_MAX when cost > burst: never). Unlimited: 0. */
uint64_t adm_bucket_take(struct adm_bucket *b, double cost, uint64_t now_ns);
/* adm_bucket_add puts tokens back (a refund, or a credit for a bucket with rate 0), at most up to burst. */
void adm_bucket_add(struct adm_bucket *b, double tokens);

/* A tenant's limits (configuration). Zero means "no limit" for the rates and max_concurrent. */
struct adm_limits {
  double weight;         /* WFQ share, > 0 (1) */
  int priority;          /* ADM_PRIO_* default for its requests (normal) */
  double requests_per_s; /* bucket of burst max(1, rate) */
  double tokens_per_min; /* bucket of burst tokens_per_min; a request costs prompt estimate + max_tokens */
  int max_concurrent;    /* requests admitted or queued at once */
};

/* adm_limits_default: weight 1, normal priority, no limits. */
void adm_limits_default(struct adm_limits *l);

/* Options. */
struct adm_opts {
  int queue_max;             /* requests that may wait when every target is saturated (1024); 0 = no queue */
  uint32_t queue_timeout_ms; /* longest wait in the queue before 503 (30000) */
  int max_waiting;        /* a target whose waiting requests (reported + routed since the report) reach this
                           * is saturated (default 0: only the KV budget decides) */
  bool kv_budget;         /* reserve prompt + max_tokens against a target's free KV (true) */
  int default_max_tokens; /* KV reserved for the output when a request sets no max_tokens (256) */
};

/* adm_opts_default fills the defaults above. */
void adm_opts_default(struct adm_opts *o);

/* Per-tenant state, one per configured tenant (index 0.. as given to admission_init). */
struct adm_tenant {
  struct adm_limits lim;
  struct adm_bucket rps, tpm;
  int active;         /* admitted (queued or in flight) and not done */
  double last_finish; /* WFQ virtual finish tag of its latest queued request */
  uint64_t admitted, queued, shed[ADM_NSHED];
};

/* One waiting request. udata is the caller's (never dereferenced). */
struct adm_entry {
  void *udata;
  uint64_t seq, enq_ns, deadline_ns;
  double vstart, vfinish;
  int prio, tenant;
  bool dead; /* removed during a dispatch pass */
};

struct admission {
  struct adm_opts o;
  struct adm_tenant *tenants; /* owned */
  int ntenants;
  struct adm_entry *q; /* owned, o.queue_max entries, unordered; q[0..nq) in use */
  int nq;
  int *order;   /* owned scratch for adm_dispatch */
  double vtime; /* WFQ system virtual time: start tag of the latest dequeued request */
  uint64_t seq;
  bool dispatching;
};

/* admission_init sets up a for ntenants tenants with limits lim[0..ntenants) (ntenants >= 1; lim NULL = every
 * tenant default), full buckets at now_ns. Allocates its arrays here, once; free with admission_free. */
void admission_init(struct admission *a, const struct adm_opts *o, const struct adm_limits *lim, int ntenants,
                    uint64_t now_ns);
void admission_free(struct admission *a);

/* adm_set_tenants replaces the tenants by lim[0..n) (n >= 1; a configuration change, not the hot path: it
 * allocates). map[i] (i < a->ntenants) is the new index of old tenant i, or -1 when it is gone: a kept tenant
 * keeps its bucket levels (capped at the new bursts), active count, fair-queueing tag and counters; a new one
 * starts with full buckets at now_ns. Queued entries follow the map; callers remap their own tenant indices
 * the same way (adm_done ignores -1). */
void adm_set_tenants(struct admission *a, const struct adm_limits *lim, int n, const int *map,
                     uint64_t now_ns);

/* adm_limit checks tenant's concurrency and buckets for one request costing tokens (prompt estimate +
 * max_tokens). ADM_OK: the request is admitted (its tokens are taken, tenant->active counts it) and the
 * caller must call adm_done once when it ends (served, failed, shed from the queue or aborted). Otherwise
 * returns the ADM_SHED_* reason (nothing taken, the shed counted) and *retry_after_ns says when it could pass
 * (UINT64_MAX: never). */
int adm_limit(struct admission *a, int tenant, double tokens, uint64_t now_ns, uint64_t *retry_after_ns);
/* adm_done ends a request adm_limit admitted (tenant -1: its tenant was removed meanwhile, nothing to do). */
void adm_done(struct admission *a, int tenant);
/* adm_refund gives a tenant back what adm_limit took for a request that never reached a runtime (shed from the
 * queue, no target, refused by a policy): its request slot and `tokens` (the amount passed to adm_limit).
 * Call it at most once per admitted request, with adm_done. Tenant -1: nothing to do. */
void adm_refund(struct admission *a, int tenant, double tokens);
/* adm_count_shed counts a refusal decided by the caller (queue timeout) for tenant. */
void adm_count_shed(struct admission *a, int tenant, int reason);

/* adm_kv_fits: does a request needing need tokens of KV fit target t's free budget (store_kv_free)? A request
 * larger than the whole pool fits only an idle one (nothing used, nothing reserved); unknown budgets fit. */
bool adm_kv_fits(const struct adm_opts *o, const struct target *t, int64_t need);
/* adm_target_saturated: t cannot take a request of need KV tokens now: it does not fit the KV budget (when
 * o->kv_budget) or its waiting requests (reported + routed here since) reach o->max_waiting (when > 0). */
bool adm_target_saturated(const struct adm_opts *o, const struct target *t, int64_t need);
/* adm_all_saturated: every one of the n candidate ids of s is saturated (true for n == 0). */
bool adm_all_saturated(const struct adm_opts *o, const struct store *s, const int *ids, int n, int64_t need);

/* adm_enqueue queues a request of tenant at priority prio (ADM_PRIO_*) costing tokens, with deadline
 * now + queue_timeout. Its WFQ tags: start = max(vtime, tenant's last finish), finish = start + tokens /
 * weight. Returns 0, or -ENOSPC when the queue is full (the shed is counted). */
int adm_enqueue(struct admission *a, int tenant, int prio, double tokens, uint64_t now_ns, void *udata);
/* adm_remove takes the entry of udata out of the queue (a client went away). True when it was there. */
bool adm_remove(struct admission *a, void *udata);

/* adm_dispatch offers the queued requests to try_cb in service order: priority (high first), then WFQ finish
 * tag, then arrival. try_cb returns 1 when it dispatched the request (it leaves the queue; the system virtual
 * time advances to its start tag), 0 to leave it queued and go on, -1 to leave it and stop the pass. try_cb
 * must not call adm_enqueue/adm_remove/adm_dispatch (a nested pass returns 0 at once); waited_ns is how long
 * the request has been queued. Returns how many left the queue. */
int adm_dispatch(struct admission *a, uint64_t now_ns,
                 int (*try_cb)(void *arg, void *udata, uint64_t waited_ns), void *arg);

/* adm_expire removes every entry whose deadline is <= now_ns, calling cb(arg, udata) for each after it left
 * the queue (cb may enqueue or remove others). Returns how many expired. */
int adm_expire(struct admission *a, uint64_t now_ns, void (*cb)(void *arg, void *udata), void *arg);

/* adm_queue_len is the number of waiting requests. */
static inline int adm_queue_len(const struct admission *a) { return a->nq; }

#endif
