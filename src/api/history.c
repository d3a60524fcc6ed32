/* The dashboard's recent history: rings of a few floats a second per target and for the node. */
#include "api/history.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static const char *const target_cols[HT_NCOLS] = {"healthy",  "waiting",  "running", "kv",      "prefix_hit",
                                                  "ttft_p50", "ttft_p95", "gen_tps", "routed_s"};
static const char *const node_cols[HN_NCOLS] = {"reqs_s",   "errors_s", "rejected_s", "inflight",
                                                "ttft_p50", "ttft_p95", "lat_p50",    "lat_p95"};

void history_ring_init(struct history_ring *r, uint32_t cap, int width) {
  assert(cap > 0 && width > 0);
  r->width = width;
  r->cap = cap;
  r->n = r->head = 0;
  r->v = xcalloc((size_t)cap * (size_t)width, sizeof *r->v);
}

void history_ring_free(struct history_ring *r) {
  free(r->v);
  r->v = NULL;
  r->n = r->head = 0;
}

void history_ring_clear(struct history_ring *r) { r->n = r->head = 0; }

void history_ring_push(struct history_ring *r, const float *row) {
  memcpy(r->v + (size_t)r->head * (size_t)r->width, row, (size_t)r->width * sizeof *row);
  r->head = (r->head + 1) % r->cap;
  if (r->n < r->cap) r->n++;
}

const float *history_ring_row(const struct history_ring *r, uint32_t i) {
  assert(i < r->n);
  uint32_t oldest = (r->head + r->cap - r->n) % r->cap;
  return r->v + (size_t)((oldest + i) % r->cap) * (size_t)r->width;
}

void history_init(struct history *h, int max_targets) {
  memset(h, 0, sizeof *h);
  h->ntargets = max_targets > 0 ? max_targets : 0;
  h->targets = xcalloc((size_t)(h->ntargets ? h->ntargets : 1), sizeof *h->targets);
  history_ring_init(&h->node, HISTORY_SECONDS, HN_NCOLS);
  for (int i = 0; i <= HISTORY_WINDOW; i++) {
    hist_init(&h->ttft[i], hist_latency_bounds, hist_latency_nbounds);
    hist_init(&h->lat[i], hist_latency_bounds, hist_latency_nbounds);
  }
}

void history_free(struct history *h) {
  history_ring_free(&h->node);
  for (int i = 0; i < h->ntargets; i++) {
    if (!h->targets[i]) continue;
    history_ring_free(&h->targets[i]->ring);
    free(h->targets[i]);
    h->targets[i] = NULL;
  }
  free(h->targets);
  h->targets = NULL;
  h->ntargets = 0;
}

size_t history_bytes(const struct history *h) {
  size_t n = sizeof *h + (size_t)h->node.cap * (size_t)h->node.width * sizeof(float);
  for (int i = 0; i < h->ntargets; i++)
    if (h->targets[i])
      n += sizeof *h->targets[i] +
           (size_t)h->targets[i]->ring.cap * (size_t)h->targets[i]->ring.width * sizeof(float);
  return n;
}

static float num_or_nan(double v) { return v < 0 ? NAN : (float)v; }

/* The quantile q of what `now` observed beyond `then` (same bounds); NaN when nothing was. */
static float window_quantile(const struct hist *now, const struct hist *then, double q) {
  struct hist d = *now;
  d.count = now->count - then->count;
  if (d.count == 0) return NAN;
  for (int i = 0; i <= d.nbounds; i++)
    d.counts[i] = now->counts[i] - then->counts[i];
  return (float)hist_quantile(&d, q);
}

static void sample_target(struct history *h, const struct target *t, uint64_t routed) {
  char key[sizeof h->targets[0]->key];
  snprintf(key, sizeof key, "%s/%s", t->node, t->name);
  struct history_target *ht = h->targets[t->id];
  if (!ht) {
    ht = h->targets[t->id] = xcalloc(1, sizeof *ht);
    history_ring_init(&ht->ring, HISTORY_SECONDS, HT_NCOLS);
  }
  if (strcmp(ht->key, key) != 0) { /* a new target in this slot */
    /* Requests finished on a target before its first sample count in it; a reused slot's predecessor's
     * requests (counted under its name) do not. */
    ht->routed = ht->key[0] ? routed : 0;
    str_copy(ht->key, sizeof ht->key, key);
    history_ring_clear(&ht->ring);
    ht->prefix_q = t->load.prefix_queries, ht->prefix_h = t->load.prefix_hits;
  }
  float row[HT_NCOLS];
  for (int c = 0; c < HT_NCOLS; c++)
    row[c] = NAN;
  row[HT_ROUTED] = (float)(routed - ht->routed);
  ht->routed = routed;
  if (!t->gone) {
    const struct target_load *l = &t->load;
    row[HT_HEALTHY] = t->healthy ? 1.0f : 0.0f;
    if (t->updated_ns) {
      row[HT_WAITING] = (float)l->waiting;
      row[HT_RUNNING] = (float)l->running;
      row[HT_KV] = num_or_nan(l->kv_usage);
      double dq = l->prefix_queries - ht->prefix_q, dh = l->prefix_hits - ht->prefix_h;
      if (dq > 0 && dh >= 0) row[HT_PREFIX_HIT] = (float)(dh / dq);
      row[HT_TTFT_P50] = num_or_nan(l->ttft_p50);
      row[HT_TTFT_P95] = num_or_nan(l->ttft_p95);
      row[HT_GEN_TPS] = num_or_nan(l->gen_tps);
    }
    ht->prefix_q = l->prefix_queries, ht->prefix_h = l->prefix_hits;
  }
  history_ring_push(&ht->ring, row);
}

void history_sample(struct history *h, const struct store *s, const struct route_metrics *m, int inflight,
                    int64_t now_ms) {
  uint64_t reqs = 0, errors = 0, rejected = 0;
  uint64_t *routed = xcalloc((size_t)(s->ntargets ? s->ntargets : 1), sizeof *routed);
  for (int i = 0; i < m->nseries; i++) {
    const struct rm_series *se = &m->series[i];
    reqs += se->count;
    if (se->status >= 500)
      errors += se->count;
    else if (se->status >= 400)
      rejected += se->count;
    if (!se->target[0]) continue;
    for (int j = 0; j < s->ntargets; j++)
      if (strcmp(s->targets[j].name, se->target) == 0) {
        routed[j] += se->count;
        break;
      }
  }
  for (int j = 0; j < s->ntargets && j < h->ntargets; j++)
    sample_target(h, &s->targets[j], routed[j]);
  free(routed);

  /* Percentiles over the last HISTORY_WINDOW seconds: the histograms now less a snapshot that old. */
  int cur = (int)(h->samples % (HISTORY_WINDOW + 1));
  int old = h->samples >= HISTORY_WINDOW ? (int)((h->samples - HISTORY_WINDOW) % (HISTORY_WINDOW + 1)) : -1;
  h->ttft[cur] = m->ttft;
  h->lat[cur] = m->latency;
  struct hist zero_t, zero_l;
  hist_init(&zero_t, m->ttft.bounds, m->ttft.nbounds);
  hist_init(&zero_l, m->latency.bounds, m->latency.nbounds);
  const struct hist *tt = old >= 0 ? &h->ttft[old] : &zero_t, *tl = old >= 0 ? &h->lat[old] : &zero_l;
  float row[HN_NCOLS];
  /* The totals start at zero with the agent, as h->reqs and the others do. */
  row[HN_REQS] = (float)(reqs - h->reqs);
  row[HN_ERRORS] = (float)(errors - h->errors);
  row[HN_REJECTED] = (float)(rejected - h->rejected);
  row[HN_INFLIGHT] = (float)inflight;
  row[HN_TTFT_P50] = window_quantile(&m->ttft, tt, 0.50);
  row[HN_TTFT_P95] = window_quantile(&m->ttft, tt, 0.95);
  row[HN_LAT_P50] = window_quantile(&m->latency, tl, 0.50);
  row[HN_LAT_P95] = window_quantile(&m->latency, tl, 0.95);
  history_ring_push(&h->node, row);
  h->reqs = reqs, h->errors = errors, h->rejected = rejected;
  h->samples++;
  h->last_ms = now_ms;
}

/* Appends "n":K then each column of r's newest K rows (those newer than since_ms). */
static void ring_json(struct buf *out, const struct history_ring *r, const char *const *cols, int64_t end_ms,
                      int64_t since_ms) {
  uint32_t k = r->n;
  if (since_ms > 0) {
    int64_t newer = (end_ms - since_ms) / 1000; /* samples are 1 s apart; the newest is at end_ms */
    if (newer < 0) newer = 0;
    if ((uint64_t)newer < k) k = (uint32_t)newer;
  }
  buf_printf(out, "\"n\":%u", k);
  for (int c = 0; c < r->width; c++) {
    buf_printf(out, ",\"%s\":[", cols[c]);
    for (uint32_t i = r->n - k; i < r->n; i++) {
      float v = history_ring_row(r, i)[c];
      if (i > r->n - k) buf_puts(out, ",");
      if (isnan(v) || isinf(v))
        buf_puts(out, "null");
      else
        buf_printf(out, "%.4g", (double)v);
    }
    buf_puts(out, "]");
  }
}

void history_json(const struct history *h, const struct store *s, int64_t since_ms, struct buf *out) {
  buf_printf(out, "{\"interval_s\":1,\"end_ms\":%lld,\"node\":{", (long long)h->last_ms);
  ring_json(out, &h->node, node_cols, h->last_ms, since_ms);
  buf_puts(out, "},\"targets\":[");
  bool first = true;
  for (int j = 0; j < s->ntargets && j < h->ntargets; j++) {
    const struct history_target *ht = h->targets[j];
    if (!ht) continue;
    const struct target *t = &s->targets[j];
    buf_printf(out, "%s{\"id\":%d,\"name\":", first ? "" : ",", j);
    buf_json_str(out, slice_cstr(t->name));
    buf_puts(out, ",\"node\":");
    buf_json_str(out, slice_cstr(t->node));
    buf_printf(out, ",\"gone\":%s,", t->gone ? "true" : "false");
    ring_json(out, &ht->ring, target_cols, h->last_ms, since_ms);
    buf_puts(out, "}");
    first = false;
  }
  buf_puts(out, "]}");
}
