/* Compact load reports: quantising a node's load numbers, and applying them to its last full report. */
#include "cluster/load_delta.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum { V_FLAGS, V_WAITING, V_RUNNING, V_KV, V_PREFIX, V_PROMPT_TPS, V_GEN_TPS, V_TTFT, V_INFLIGHT };
_Static_assert(V_INFLIGHT + 1 == GOSSIP_DELTA_STRIDE, "the stride is the number of values per target");

static uint32_t fnv(uint32_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 16777619u;
  return h;
}

static uint32_t fnv_str(uint32_t h, const char *s, size_t cap) { return fnv(h, s, strnlen(s, cap) + 1); }

uint32_t load_delta_layout(const struct gossip_load *l) {
  uint32_t h = fnv(2166136261u, &l->ntargets, sizeof l->ntargets);
  for (int i = 0; i < l->ntargets && i < GOSSIP_LOAD_TARGETS; i++) {
    const struct gossip_target_load *t = &l->targets[i];
    h = fnv_str(h, t->name, sizeof t->name);
    h = fnv_str(h, t->kind, sizeof t->kind);
    for (int j = 0; j < t->nmodels && j < GOSSIP_LOAD_MODELS; j++)
      h = fnv_str(h, t->models[j], sizeof t->models[j]);
    h = fnv(h, &t->nmodels, sizeof t->nmodels);
    h = fnv(h, &t->kv_capacity_tokens, sizeof t->kv_capacity_tokens);
  }
  return h;
}

static uint32_t quant(double x, double scale) {
  if (!(x >= 0)) return 0; /* negative (unknown) or NaN */
  double v = round(x * scale) + 1;
  return v >= 4294967295.0 ? UINT32_MAX : (uint32_t)v;
}

static double dequant(uint32_t v, double scale) { return v ? (double)(v - 1) / scale : -1; }

void load_delta_make(const struct gossip_load *l, struct gossip_load_delta *d) {
  memset(d, 0, sizeof *d);
  memcpy(d->node, l->from, GOSSIP_SHORT_ID);
  d->boot = (uint32_t)l->boot;
  d->seq = l->seq;
  d->age_ms = l->age_ms;
  d->layout = load_delta_layout(l);
  d->ntargets = l->ntargets < 0 ? 0 : l->ntargets > GOSSIP_LOAD_TARGETS ? GOSSIP_LOAD_TARGETS : l->ntargets;
  for (int i = 0; i < d->ntargets; i++) {
    const struct gossip_target_load *t = &l->targets[i];
    uint32_t *v = d->values[i];
    v[V_FLAGS] = (t->healthy ? 1u : 0u) | (t->gpu_degraded ? 2u : 0u);
    v[V_WAITING] = quant(t->waiting, 100);
    v[V_RUNNING] = quant(t->running, 100);
    v[V_KV] = quant(t->kv_usage, 10000);
    v[V_PREFIX] = quant(t->prefix_hit_rate, 10000);
    v[V_PROMPT_TPS] = quant(t->prompt_tps, 10);
    v[V_GEN_TPS] = quant(t->gen_tps, 10);
    v[V_TTFT] = quant(t->ttft_p50_ms, 10);
    v[V_INFLIGHT] = ((uint32_t)t->inflight << 1) ^ (uint32_t)(t->inflight >> 31);
  }
}

int load_delta_apply(const struct gossip_load *base, const struct gossip_load_delta *d,
                     struct gossip_load *out) {
  if (memcmp(base->from, d->node, GOSSIP_SHORT_ID) != 0 || (uint32_t)base->boot != d->boot ||
      base->ntargets != d->ntargets || load_delta_layout(base) != d->layout)
    return -ESTALE;
  *out = *base;
  out->seq = d->seq;
  out->age_ms = d->age_ms;
  for (int i = 0; i < d->ntargets; i++) {
    struct gossip_target_load *t = &out->targets[i];
    const uint32_t *v = d->values[i];
    t->healthy = v[V_FLAGS] & 1u;
    t->gpu_degraded = (v[V_FLAGS] & 2u) != 0;
    t->waiting = dequant(v[V_WAITING], 100);
    t->running = dequant(v[V_RUNNING], 100);
    t->kv_usage = dequant(v[V_KV], 10000);
    t->prefix_hit_rate = dequant(v[V_PREFIX], 10000);
    t->prompt_tps = dequant(v[V_PROMPT_TPS], 10);
    t->gen_tps = dequant(v[V_GEN_TPS], 10);
    t->ttft_p50_ms = dequant(v[V_TTFT], 10);
    t->inflight = (int32_t)((v[V_INFLIGHT] >> 1) ^ (0u - (v[V_INFLIGHT] & 1u)));
  }
  return 0;
}
