/* Admission tests with a fake clock: token buckets, tenant limits, KV-budget fit, saturation, the queue's
 * deadline and capacity, WFQ order by weight, priorities; tenant keys; the store's first-byte windows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "route/admission.h"
#include "route/tenants.h"
#include "state/store.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (1000 * S) /* the fake clock starts somewhere, not at 0 */

static int tag[64]; /* &tag[i] stands for request i (queue udata) */

/* ---- token buckets ---- */

static void test_bucket_refills_at_its_rate(void **state) {
  struct adm_bucket b;
  adm_bucket_init(&b, 2, 2, T0); /* 2/s, burst 2, starts full */
  assert_int_equal(adm_bucket_take(&b, 1, T0), 0);
  assert_int_equal(adm_bucket_take(&b, 1, T0), 0);
  uint64_t wait = adm_bucket_take(&b, 1, T0);
  assert_true(wait >= 499 * MS && wait <= 501 * MS); /* one token refills in 0.5 s */
  assert_true(adm_bucket_take(&b, 1, T0 + 400 * MS) > 0);
  assert_int_equal(adm_bucket_take(&b, 1, T0 + 500 * MS), 0);
  /* A long pause refills only up to the burst. */
  assert_int_equal(adm_bucket_take(&b, 2, T0 + 100 * S), 0);
  assert_true(adm_bucket_take(&b, 1, T0 + 100 * S) > 0);
  /* More than the burst can never be taken. */
  assert_int_equal(adm_bucket_take(&b, 3, T0 + 200 * S), UINT64_MAX);
}

static void test_unlimited_and_credit_buckets(void **state) {
  struct adm_bucket b;
  adm_bucket_init(&b, 0, 0, T0);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(adm_bucket_take(&b, 1e9, T0), 0);
  /* Rate 0, burst 1: a credit bucket filled only by adm_bucket_add (the hedge cap). */
  adm_bucket_init(&b, 0, 1, T0);
  assert_int_equal(adm_bucket_take(&b, 1, T0), 0);
  assert_int_equal(adm_bucket_take(&b, 1, T0 + 1000 * S), UINT64_MAX); /* time alone adds nothing */
  for (int i = 0; i < 19; i++)
    adm_bucket_add(&b, 0.05);
  assert_int_equal(adm_bucket_take(&b, 1, T0), UINT64_MAX);
  adm_bucket_add(&b, 0.05 + 1e-9);
  assert_int_equal(adm_bucket_take(&b, 1, T0), 0);
  for (int i = 0; i < 100; i++)
    adm_bucket_add(&b, 0.05);
  assert_int_equal(adm_bucket_take(&b, 1, T0), 0); /* capped at the burst: one, not five */
  assert_int_equal(adm_bucket_take(&b, 1, T0), UINT64_MAX);
}

/* ---- tenant limits ---- */

static void test_tenant_request_rate(void **state) {
  struct admission a;
  struct adm_limits lim;
  adm_limits_default(&lim);
  lim.requests_per_s = 2;
  admission_init(&a, NULL, &lim, 1, T0);
  uint64_t wait;
  assert_int_equal(adm_limit(&a, 0, 10, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 10, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 10, T0, &wait), ADM_SHED_REQUESTS);
  assert_true(wait > 0 && wait <= 501 * MS);
  assert_int_equal(a.tenants[0].shed[ADM_SHED_REQUESTS], 1);
  assert_int_equal(adm_limit(&a, 0, 10, T0 + 500 * MS, &wait), ADM_OK);
  assert_int_equal(a.tenants[0].active, 3);
  assert_int_equal(a.tenants[0].admitted, 3);
  admission_free(&a);
}

static void test_tenant_token_rate_and_too_large(void **state) {
  struct admission a;
  struct adm_limits lim;
  adm_limits_default(&lim);
  lim.tokens_per_min = 6000; /* 100 tokens/s, burst 6000 */
  lim.requests_per_s = 100;
  admission_init(&a, NULL, &lim, 1, T0);
  uint64_t wait;
  assert_int_equal(adm_limit(&a, 0, 5000, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 2000, T0, &wait), ADM_SHED_TOKENS);
  assert_true(wait >= 9 * S && wait <= 10 * S + MS); /* 1000 tokens missing at 100/s */
  /* The refused request did not use up a request slot: 99 more fit in this second. */
  for (int i = 0; i < 99; i++)
    assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_SHED_REQUESTS);
  assert_int_equal(adm_limit(&a, 0, 6001, T0 + 3600 * S, &wait), ADM_SHED_TOO_LARGE);
  assert_int_equal(wait, UINT64_MAX);
  assert_int_equal(adm_limit(&a, 0, 2000, T0 + 11 * S, &wait), ADM_OK);
  admission_free(&a);
}

static void test_tenant_concurrency(void **state) {
  struct admission a;
  struct adm_limits lim[2];
  adm_limits_default(&lim[0]);
  adm_limits_default(&lim[1]);
  lim[0].max_concurrent = 2;
  admission_init(&a, NULL, lim, 2, T0);
  uint64_t wait;
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK);
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_SHED_CONCURRENCY);
  for (int i = 0; i < 50; i++)
    assert_int_equal(adm_limit(&a, 1, 1, T0, &wait), ADM_OK); /* others unaffected */
  adm_done(&a, 0);
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK);
  admission_free(&a);
}

static void test_tenants_replaced_at_runtime(void **state) {
  struct admission a;
  struct adm_limits lim[2];
  adm_limits_default(&lim[0]);
  adm_limits_default(&lim[1]);
  lim[0].requests_per_s = 1;
  admission_init(&a, NULL, lim, 2, T0);
  uint64_t wait;
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK); /* tenant 0's only token */
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 1, T0, &tag[0]), 0);
  assert_int_equal(adm_enqueue(&a, 1, ADM_PRIO_NORMAL, 1, T0, &tag[1]), 0);
  /* New table: a new tenant first, old tenant 0 second (same limits), old tenant 1 gone. */
  struct adm_limits nl[2];
  adm_limits_default(&nl[0]);
  nl[0].requests_per_s = 5;
  nl[1] = lim[0];
  int map[2] = {1, -1};
  adm_set_tenants(&a, nl, 2, map, T0);
  assert_int_equal(a.ntenants, 2);
  assert_int_equal(adm_limit(&a, 1, 1, T0, &wait), ADM_SHED_REQUESTS); /* kept: its bucket is still empty */
  assert_int_equal(a.tenants[1].active, 1);
  assert_int_equal(a.tenants[1].admitted, 1);
  for (int i = 0; i < 5; i++)
    assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_OK); /* new: full bucket */
  assert_int_equal(adm_limit(&a, 0, 1, T0, &wait), ADM_SHED_REQUESTS);
  assert_int_equal(a.q[0].tenant + a.q[1].tenant, 0); /* the entries moved to 1 and -1 */
  adm_done(&a, -1); /* a request of the removed tenant ends: nothing to account */
  adm_done(&a, 1);
  assert_int_equal(a.tenants[1].active, 0);
  admission_free(&a);
}

/* ---- targets: KV budget and saturation ---- */

static void setup_target(struct store *s, double kv_usage, double waiting) {
  const char *models[] = {"m"};
  store_init(s, 64);
  assert_int_equal(store_add_target(s, "a", "http://127.0.0.1:8001", "vllm"), 0);
  store_set_models(s, 0, models, 1);
  struct target_load l = {.waiting = waiting, .kv_usage = kv_usage, .block_size = 16, .num_gpu_blocks = 64};
  store_report(s, 0, &l, T0); /* 1024 tokens of KV */
}

static void test_kv_budget_fit(void **state) {
  struct store s;
  struct adm_opts o;
  adm_opts_default(&o);
  setup_target(&s, 0.5, 0);
  struct target *t = &s.targets[0];
  assert_int_equal(store_kv_capacity(t), 1024);
  assert_int_equal(store_kv_free(t), 512);
  assert_true(adm_kv_fits(&o, t, 512));
  assert_false(adm_kv_fits(&o, t, 513));
  /* What this router reserved since the report counts against the budget ... */
  uint32_t seq = store_kv_reserve(&s, 0, 300);
  assert_int_equal(store_kv_free(t), 212);
  assert_false(adm_kv_fits(&o, t, 300));
  store_kv_release(&s, 0, 300, seq);
  assert_int_equal(store_kv_free(t), 512);
  /* ... until the next report, which saw the request itself: a late release subtracts nothing. */
  seq = store_kv_reserve(&s, 0, 300);
  struct target_load l = t->load;
  l.kv_usage = 0.75;
  store_report(&s, 0, &l, T0 + S);
  assert_int_equal(store_kv_free(t), 256);
  store_kv_release(&s, 0, 300, seq);
  assert_int_equal(store_kv_free(t), 256);
  /* A request larger than the whole pool fits only an idle target. */
  assert_false(adm_kv_fits(&o, t, 5000));
  l.kv_usage = 0;
  store_report(&s, 0, &l, T0 + 2 * S);
  assert_true(adm_kv_fits(&o, t, 5000));
  /* Unknown usage or capacity: no budget to enforce. */
  l.kv_usage = -1;
  store_report(&s, 0, &l, T0 + 3 * S);
  assert_true(adm_kv_fits(&o, t, 1 << 30));
  l.kv_usage = 0.99;
  l.num_gpu_blocks = 0;
  store_report(&s, 0, &l, T0 + 4 * S);
  assert_true(adm_kv_fits(&o, t, 1 << 30));
  store_free(&s);
}

static void test_saturation(void **state) {
  struct store s;
  struct adm_opts o;
  adm_opts_default(&o);
  o.max_waiting = 4;
  setup_target(&s, 0.1, 2);
  const char *models[] = {"m"};
  assert_int_equal(store_add_target(&s, "b", "http://127.0.0.1:8002", "vllm"), 1);
  store_set_models(&s, 1, models, 1);
  struct target_load busy = {.waiting = 0, .kv_usage = 0.95, .block_size = 16, .num_gpu_blocks = 64};
  store_report(&s, 1, &busy, T0);
  int ids[2] = {0, 1};
  assert_false(adm_target_saturated(&o, &s.targets[0], 100));
  assert_true(adm_target_saturated(&o, &s.targets[1], 100)); /* 51 tokens of KV left */
  assert_false(adm_all_saturated(&o, &s, ids, 2, 100));
  /* Waiting requests: the reported ones plus those routed here since the report. */
  store_reserve(&s, 0);
  assert_false(adm_target_saturated(&o, &s.targets[0], 100));
  store_reserve(&s, 0);
  assert_true(adm_target_saturated(&o, &s.targets[0], 100));
  assert_true(adm_all_saturated(&o, &s, ids, 2, 100));
  store_release(&s, 0);
  assert_false(adm_all_saturated(&o, &s, ids, 2, 100));
  /* Without the queue threshold or the KV budget, neither counts. */
  store_reserve(&s, 0);
  o.max_waiting = 0;
  assert_false(adm_target_saturated(&o, &s.targets[0], 100));
  o.kv_budget = false;
  assert_false(adm_target_saturated(&o, &s.targets[1], 100));
  assert_true(adm_all_saturated(&o, &s, ids, 0, 1)); /* no candidate at all */
  store_free(&s);
}

/* ---- the queue ---- */

struct log {
  void *got[64];
  int n;
  int accept; /* how many more to accept in this pass; -1 = all */
};

static int take_cb(void *arg, void *udata, uint64_t waited) {
  struct log *l = arg;
  if (l->accept == 0) return -1;
  if (l->accept > 0) l->accept--;
  l->got[l->n++] = udata;
  return 1;
}

static void expire_cb(void *arg, void *udata) {
  struct log *l = arg;
  l->got[l->n++] = udata;
}

static void test_queue_deadline_and_capacity(void **state) {
  struct admission a;
  struct adm_opts o;
  adm_opts_default(&o);
  o.queue_max = 3;
  o.queue_timeout_ms = 1000;
  admission_init(&a, &o, NULL, 1, T0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 10, T0, &tag[0]), 0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 10, T0 + 200 * MS, &tag[1]), 0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 10, T0 + 400 * MS, &tag[2]), 0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 10, T0 + 400 * MS, &tag[3]), -ENOSPC);
  assert_int_equal(a.tenants[0].shed[ADM_SHED_QUEUE_FULL], 1);
  struct log l = {.n = 0};
  assert_int_equal(adm_expire(&a, T0 + 999 * MS, expire_cb, &l), 0);
  assert_int_equal(adm_expire(&a, T0 + 1000 * MS, expire_cb, &l), 1);
  assert_ptr_equal(l.got[0], &tag[0]);
  assert_int_equal(adm_queue_len(&a), 2);
  assert_int_equal(adm_expire(&a, T0 + 1500 * MS, expire_cb, &l), 2);
  assert_int_equal(adm_queue_len(&a), 0);
  assert_int_equal(a.tenants[0].shed[ADM_SHED_QUEUE_TIMEOUT], 3);
  /* A client that leaves takes its entry with it. */
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 10, T0 + 2 * S, &tag[4]), 0);
  assert_true(adm_remove(&a, &tag[4]));
  assert_false(adm_remove(&a, &tag[4]));
  assert_int_equal(adm_queue_len(&a), 0);
  admission_free(&a);
}

static void test_wfq_serves_by_weight(void **state) {
  struct admission a;
  struct adm_limits lim[2];
  adm_limits_default(&lim[0]);
  adm_limits_default(&lim[1]);
  lim[0].weight = 3;
  lim[1].weight = 1;
  admission_init(&a, NULL, lim, 2, T0);
  /* Both backlogged with equal requests, tenant 1's arriving first. */
  for (int i = 0; i < 16; i++)
    assert_int_equal(adm_enqueue(&a, 1, ADM_PRIO_NORMAL, 100, T0 + (uint64_t)i, &tag[16 + i]), 0);
  for (int i = 0; i < 16; i++)
    assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 100, T0 + 100 + (uint64_t)i, &tag[i]), 0);
  struct log l = {.n = 0, .accept = 16};
  assert_int_equal(adm_dispatch(&a, T0 + S, take_cb, &l), 16);
  int zero = 0;
  for (int i = 0; i < 16; i++)
    zero += (int *)l.got[i] < &tag[16];
  assert_int_equal(zero, 12); /* 3:1 */
  /* Within a tenant, arrival order. */
  int last = -1;
  for (int i = 0; i < 16; i++) {
    int idx = (int)((int *)l.got[i] - tag);
    if (idx < 16) {
      assert_true(idx > last);
      last = idx;
    }
  }
  /* One at a time gives the same order as a whole pass. */
  l = (struct log){.n = 0, .accept = 1};
  assert_int_equal(adm_dispatch(&a, T0 + S, take_cb, &l), 1);
  l.accept = -1;
  assert_int_equal(adm_dispatch(&a, T0 + S, take_cb, &l), 15);
  assert_int_equal(adm_queue_len(&a), 0);
  admission_free(&a);
}

static void test_wfq_no_credit_for_idle_tenants(void **state) {
  struct admission a;
  admission_init(&a, NULL, NULL, 2, T0);
  /* Tenant 0 is served alone for a while ... */
  struct log l = {.n = 0, .accept = -1};
  for (int i = 0; i < 20; i++) {
    assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 100, T0, &tag[i]), 0);
    assert_int_equal(adm_dispatch(&a, T0, take_cb, &l), 1);
  }
  /* ... then both queue: tenant 1 did not bank 20 requests' worth of service while it was idle. */
  for (int i = 0; i < 4; i++)
    assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 100, T0, &tag[20 + i]), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(adm_enqueue(&a, 1, ADM_PRIO_NORMAL, 100, T0, &tag[30 + i]), 0);
  l = (struct log){.n = 0, .accept = 4};
  adm_dispatch(&a, T0, take_cb, &l);
  int one = 0;
  for (int i = 0; i < 4; i++)
    one += (int *)l.got[i] >= &tag[30];
  assert_int_equal(one, 2);
  admission_free(&a);
}

static void test_priorities_first(void **state) {
  struct admission a;
  struct adm_limits lim[2];
  adm_limits_default(&lim[0]);
  adm_limits_default(&lim[1]);
  lim[1].weight = 100; /* weight never beats priority */
  admission_init(&a, NULL, lim, 2, T0);
  assert_int_equal(adm_enqueue(&a, 1, ADM_PRIO_LOW, 1, T0, &tag[0]), 0);
  assert_int_equal(adm_enqueue(&a, 1, ADM_PRIO_NORMAL, 1, T0 + 1, &tag[1]), 0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_HIGH, 1000, T0 + 2, &tag[2]), 0);
  assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 1, T0 + 3, &tag[3]), 0);
  struct log l = {.n = 0, .accept = -1};
  assert_int_equal(adm_dispatch(&a, T0 + 10, take_cb, &l), 4);
  assert_ptr_equal(l.got[0], &tag[2]);
  assert_ptr_equal(l.got[1], &tag[1]); /* normal: tenant 1's tiny tag at weight 100 first */
  assert_ptr_equal(l.got[2], &tag[3]);
  assert_ptr_equal(l.got[3], &tag[0]);
  int p;
  assert_int_equal(adm_priority_parse("high", 4, &p), 0);
  assert_int_equal(p, ADM_PRIO_HIGH);
  assert_int_equal(adm_priority_parse("urgent", 6, &p), -EINVAL);
  admission_free(&a);
}

/* try_cb that refuses even entries and removes request 5 while the pass runs. */
static struct admission *skip_a;
static int skip_cb(void *arg, void *udata, uint64_t waited) {
  struct log *l = arg;
  int idx = (int)((int *)udata - tag);
  if (idx == 1) assert_true(adm_remove(skip_a, &tag[5]));
  if (idx % 2 == 0) return 0;
  l->got[l->n++] = udata;
  return 1;
}

static void test_dispatch_skips_and_stops(void **state) {
  struct admission a;
  admission_init(&a, NULL, NULL, 1, T0);
  skip_a = &a;
  for (int i = 0; i < 8; i++)
    assert_int_equal(adm_enqueue(&a, 0, ADM_PRIO_NORMAL, 1, T0 + (uint64_t)i, &tag[i]), 0);
  struct log l = {.n = 0};
  assert_int_equal(adm_dispatch(&a, T0, skip_cb, &l), 3); /* 1, 3, 7 (5 was removed) */
  assert_int_equal(l.n, 3);
  assert_ptr_equal(l.got[2], &tag[7]);
  assert_int_equal(adm_queue_len(&a), 4);
  l = (struct log){.n = 0, .accept = 0};
  assert_int_equal(adm_dispatch(&a, T0, take_cb, &l), 0); /* -1 at once: nothing leaves */
  assert_int_equal(adm_queue_len(&a), 4);
  admission_free(&a);
}

/* ---- tenants ---- */

static void test_tenant_specs_and_lookup(void **state) {
  struct tenant_conf t[2];
  char err[200];
  char spec[] = "name=team-a,key=sk-aaaaaaaa1,weight=2,priority=high,requests_per_s=10,tokens_per_min=100000,"
                "max_concurrent=8,slo=latency";
  assert_int_equal(tenant_conf_parse(&t[0], spec, err, sizeof err), 0);
  assert_null(memmem(spec, sizeof spec, "sk-aaaa", 7)); /* the key was wiped */
  assert_string_equal(t[0].name, "team-a");
  assert_true(t[0].lim.weight == 2);
  assert_int_equal(t[0].lim.priority, ADM_PRIO_HIGH);
  assert_true(t[0].lim.requests_per_s == 10 && t[0].lim.tokens_per_min == 100000);
  assert_int_equal(t[0].lim.max_concurrent, 8);
  assert_true(t[0].slo_latency);
  char spec2[] = "name=team-b,key=sk-bbbbbbbb2";
  assert_int_equal(tenant_conf_parse(&t[1], spec2, err, sizeof err), 0);
  assert_int_equal(tenant_conf_check(&t[1], t, 1, err, sizeof err), 0);
  assert_int_equal(tenant_conf_check(&t[0], t, 1, err, sizeof err), -EINVAL); /* same name */
  assert_int_equal(tenants_lookup(t, 2, slice_cstr("Bearer sk-bbbbbbbb2")), 1);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr("bearer   sk-aaaaaaaa1 ")), 0);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr("Bearer sk-aaaaaaaa")), TENANT_BAD_KEY);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr("Basic dXNlcjpwYXNz")), TENANT_MISSING);
  assert_int_equal(tenants_lookup(t, 2, slice_make(NULL, 0)), TENANT_MISSING);
  /* a transport-authenticated client's credential names its tenant; a forged or altered one names none */
  char cred[320], forged[320];
  assert_int_equal(tenants_peer_credential("team-b", cred, sizeof cred), 0);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr(cred)), 1);
  str_copy(forged, sizeof forged, cred);
  memcpy(forged + strlen(forged) - 6, "team-a", 6);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr(forged)), TENANT_BAD_KEY);
  assert_int_equal(tenants_peer_credential("team-z", cred, sizeof cred), 0);
  assert_int_equal(tenants_lookup(t, 2, slice_cstr(cred)), TENANT_BAD_KEY); /* no such tenant */
  assert_int_equal(tenants_lookup(t, 2, slice_cstr("Bearer im-peer.00.team-a")), TENANT_BAD_KEY);
  assert_int_equal(tenants_peer_credential("team-b", cred, 20), -ENOSPC);
  char bad1[] = "name=x,key=short";
  assert_int_equal(tenant_conf_parse(&t[1], bad1, err, sizeof err), -EINVAL);
  char bad2[] = "name=x,key=sk-cccccccc3,weight=0";
  assert_int_equal(tenant_conf_parse(&t[1], bad2, err, sizeof err), -EINVAL);
  char bad3[] = "name=x,key=sk-cccccccc3,colour=red";
  assert_int_equal(tenant_conf_parse(&t[1], bad3, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "colour"));
  char nokey[] = "name=x";
  assert_int_equal(tenant_conf_parse(&t[1], nokey, err, sizeof err), 0);
  assert_int_equal(tenant_conf_check(&t[1], t, 1, err, sizeof err), -EINVAL);
}

/* ---- the store's first-byte windows (hedge delay) ---- */

static void test_ttfb_p95_window(void **state) {
  struct store s;
  setup_target(&s, 0, 0);
  double q;
  for (int i = 1; i <= 19; i++)
    store_ttfb_observe(&s, 0, STORE_TTFB_STREAM, i / 100.0);
  assert_false(store_ttfb_quantile(&s.targets[0], STORE_TTFB_STREAM, 0.95, 20, &q)); /* too few yet */
  store_ttfb_observe(&s, 0, STORE_TTFB_STREAM, 0.20);
  assert_true(store_ttfb_quantile(&s.targets[0], STORE_TTFB_STREAM, 0.95, 20, &q));
  assert_true(q > 0.185 && q < 0.195);                                            /* 19th of 20 */
  assert_false(store_ttfb_quantile(&s.targets[0], STORE_TTFB_FULL, 0.95, 1, &q)); /* kinds are separate */
  /* The window slides: after 64 slow samples the fast ones are gone. */
  for (int i = 0; i < STORE_TTFB_WINDOW; i++)
    store_ttfb_observe(&s, 0, STORE_TTFB_STREAM, 2.0);
  assert_true(store_ttfb_quantile(&s.targets[0], STORE_TTFB_STREAM, 0.05, 20, &q));
  assert_true(q > 1.99 && q < 2.01);
  store_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_refills_at_its_rate),
      cmocka_unit_test(test_unlimited_and_credit_buckets),
      cmocka_unit_test(test_tenant_request_rate),
      cmocka_unit_test(test_tenant_token_rate_and_too_large),
      cmocka_unit_test(test_tenant_concurrency),
      cmocka_unit_test(test_tenants_replaced_at_runtime),
      cmocka_unit_test(test_kv_budget_fit),
      cmocka_unit_test(test_saturation),
      cmocka_unit_test(test_queue_deadline_and_capacity),
      cmocka_unit_test(test_wfq_serves_by_weight),
      cmocka_unit_test(test_wfq_no_credit_for_idle_tenants),
      cmocka_unit_test(test_priorities_first),
      cmocka_unit_test(test_dispatch_skips_and_stops),
      cmocka_unit_test(test_tenant_specs_and_lookup),
      cmocka_unit_test(test_ttfb_p95_window),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
