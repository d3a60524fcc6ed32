/* The state store: targets, their load reports and router-local reservations. Pure: no I/O. */
#include "state/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void store_init(struct store *s, int max_targets) {
  memset(s, 0, sizeof *s);
  s->cap = max_targets > 0 ? max_targets : 1;
  s->targets = xcalloc((size_t)s->cap, sizeof *s->targets);
  s->change_log = xcalloc(STORE_CHANGE_LOG, sizeof *s->change_log);
}

void store_changed(struct store *s, int id) {
  s->change_seq++;
  s->change_log[s->change_seq % STORE_CHANGE_LOG] = id;
}

void store_set_draining(struct store *s, int id, bool draining) {
  if (s->targets[id].draining == draining) return;
  s->targets[id].draining = draining;
  store_changed(s, id);
}

void store_set_degraded(struct store *s, int id, bool degraded) {
  if (s->targets[id].gpu_degraded == degraded) return;
  s->targets[id].gpu_degraded = degraded;
  store_changed(s, id);
}

static void free_models(struct target *t) {
  for (int i = 0; i < t->nmodels; i++) free(t->models[i]);
  t->nmodels = 0;
}

static void free_kv(struct target *t) {
  if (!t->kv_blocks) return;
  prefix_index_free(t->kv_blocks);
  free(t->kv_blocks);
  t->kv_blocks = NULL;
  t->kv_ns = 0;
}

void store_free(struct store *s) {
  for (int i = 0; i < s->ntargets; i++) {
    free_models(&s->targets[i]);
    free_kv(&s->targets[i]);
  }
  s->ntargets = 0;
  free(s->targets);
  s->targets = NULL;
  free(s->change_log);
  s->change_log = NULL;
  s->cap = 0;
}

/* Parse http://host:port[/] (numeric host, or localhost). */
int store_parse_url(const char *url, char *host, size_t hostcap, int *port) {
  const char *p = url;
  if (strncmp(p, "http://", 7) != 0) return -EINVAL;
  p += 7;
  const char *hs = p, *he;
  if (*p == '[') {
    hs = ++p;
    he = strchr(p, ']');
    if (!he) return -EINVAL;
    p = he + 1;
  } else {
    he = strchr(p, ':');
    if (!he) return -EINVAL;
    p = he;
  }
  if (*p != ':' || he == hs || (size_t)(he - hs) >= hostcap) return -EINVAL;
  memcpy(host, hs, (size_t)(he - hs));
  host[he - hs] = '\0';
  char *end;
  long v = strtol(p + 1, &end, 10);
  if (end == p + 1 || v <= 0 || v > 65535 || (*end && strcmp(end, "/") != 0)) return -EINVAL;
  *port = (int)v;
  return 0;
}

int store_add_target(struct store *s, const char *name, const char *url, const char *kind) {
  if (s->ntargets >= s->cap) return -ENOSPC;
  struct target *t = &s->targets[s->ntargets];
  memset(t, 0, sizeof *t);
  if (strlen(url) >= sizeof t->url || store_parse_url(url, t->host, sizeof t->host, &t->port) != 0) return -EINVAL;
  memcpy(t->url, url, strlen(url) + 1);
  size_t n = strlen(t->url);
  if (n && t->url[n - 1] == '/') t->url[n - 1] = '\0';
  if (name)
    str_copy(t->name, sizeof t->name, name);
  else {
    char hp[sizeof t->name];
    snprintf(hp, sizeof hp, "%s:%d", t->host, t->port);
    str_copy(t->name, sizeof t->name, hp);
  }
  str_copy(t->kind, sizeof t->kind, kind ? kind : "vllm");
  t->id = s->ntargets;
  t->load.kv_usage = -1;
  s->placement_gen++;
  snprintf(t->last_error, sizeof t->last_error, "not checked yet");
  store_changed(s, t->id);
  return s->ntargets++;
}

int store_add_remote(struct store *s, const char *node, const uint8_t node_id[32], const char *remote_name,
                     const char *api_addr, const char *kind, bool *addr_changed) {
  char url[sizeof s->targets[0].url];
  char name[sizeof s->targets[0].name];
  snprintf(url, sizeof url, "http://%s", api_addr);
  snprintf(name, sizeof name, "%s/%s", node, remote_name);
  *addr_changed = false;
  for (int i = 0; i < s->ntargets; i++) {
    struct target *t = &s->targets[i];
    if (!t->remote || memcmp(t->node_id, node_id, 32) != 0 || strcmp(t->remote_name, remote_name) != 0) continue;
    if (strcmp(t->url, url) != 0) {
      char host[sizeof t->host];
      int port;
      if (store_parse_url(url, host, sizeof host, &port) != 0) return -EINVAL;
      str_copy(t->url, sizeof t->url, url);
      str_copy(t->host, sizeof t->host, host);
      t->port = port;
      *addr_changed = true;
    }
    str_copy(t->name, sizeof t->name, name);
    if (strcmp(t->node, node) != 0) s->placement_gen++;
    str_copy(t->node, sizeof t->node, node);
    t->gone = false;
    store_changed(s, i);
    return i;
  }
  int id = store_add_target(s, name, url, kind);
  if (id < 0) return id;
  struct target *t = &s->targets[id];
  t->remote = true;
  str_copy(t->node, sizeof t->node, node);
  str_copy(t->remote_name, sizeof t->remote_name, remote_name);
  memcpy(t->node_id, node_id, 32);
  store_changed(s, id);
  *addr_changed = true;
  return id;
}

void store_set_zone(struct store *s, int id, const char *zone) {
  struct target *t = &s->targets[id];
  if (strcmp(t->zone, zone) == 0) return;
  str_copy(t->zone, sizeof t->zone, zone);
  s->placement_gen++;
}

void store_mark_gone(struct store *s, int id) {
  struct target *t = &s->targets[id];
  t->gone = true;
  t->healthy = false;
  t->draining = false;
  free_models(t);
  free_kv(t);
  t->kv_events = false;
  str_copy(t->last_error, sizeof t->last_error, "its node left the mesh");
  store_changed(s, id);
}

void store_set_models(struct store *s, int id, const char *const *models, int n) {
  struct target *t = &s->targets[id];
  free_models(t);
  for (int i = 0; i < n && i < STORE_MAX_MODELS; i++) t->models[t->nmodels++] = xstrdup(models[i]);
  store_changed(s, id);
}

void store_report(struct store *s, int id, const struct target_load *load, uint64_t now_ns) {
  struct target *t = &s->targets[id];
  t->load = *load;
  if (load->prompt_tps > t->prompt_tps_peak) t->prompt_tps_peak = load->prompt_tps;
  t->updated_ns = now_ns;
  t->healthy = true;
  t->last_error[0] = '\0';
  t->routed_since_report = 0;
  t->kv_reserved = 0;
  t->report_seq++;
  store_changed(s, id);
  if (s->report_cb) s->report_cb(s->report_arg, id);
}

void store_mark_down(struct store *s, int id, const char *reason) {
  struct target *t = &s->targets[id];
  bool was = t->healthy;
  t->healthy = false;
  str_copy(t->last_error, sizeof t->last_error, reason);
  store_changed(s, id);
  if (was && s->down_cb) s->down_cb(s->down_arg, id);
}

bool store_target_serves(const struct target *t, struct slice model) {
  for (int i = 0; i < t->nmodels; i++)
    if (slice_eqz(model, t->models[i])) return true;
  return false;
}

bool store_model_known(const struct store *s, struct slice model) {
  for (int i = 0; i < s->ntargets; i++)
    if (store_target_serves(&s->targets[i], model)) return true;
  return false;
}

bool store_all_reported(const struct store *s) {
  int n = 0;
  for (int i = 0; i < s->ntargets; i++) {
    if (s->targets[i].gone) continue;
    if (s->targets[i].nmodels == 0) return false;
    n++;
  }
  return n > 0;
}

int store_candidates(const struct store *s, struct slice model, const uint64_t *exclude, int *out, int max) {
  int n = 0;
  for (int i = 0; i < s->ntargets && n < max; i++) {
    const struct target *t = &s->targets[i];
    if (!t->healthy || t->gone || t->draining || !store_target_serves(t, model)) continue;
    if (exclude && (exclude[i / 64] >> (i % 64) & 1)) continue;
    out[n++] = i;
  }
  return n;
}

void store_reserve(struct store *s, int id) {
  s->targets[id].inflight++;
  s->targets[id].routed_since_report++;
  store_changed(s, id);
}

void store_release(struct store *s, int id) {
  struct target *t = &s->targets[id];
  if (t->inflight > 0) t->inflight--;
  /* A request that finished before the next report adds no load any more. */
  if (t->routed_since_report > 0) t->routed_since_report--;
  store_changed(s, id);
}

int64_t store_kv_capacity(const struct target *t) {
  if (t->load.block_size <= 0 || t->load.num_gpu_blocks <= 0) return 0;
  return t->load.block_size * t->load.num_gpu_blocks;
}

int64_t store_kv_free(const struct target *t) {
  int64_t cap = store_kv_capacity(t);
  if (cap <= 0 || t->load.kv_usage < 0) return INT64_MAX;
  double usage = t->load.kv_usage > 1 ? 1 : t->load.kv_usage;
  return (int64_t)((1.0 - usage) * (double)cap) - t->kv_reserved;
}

uint32_t store_kv_reserve(struct store *s, int id, int64_t tokens) {
  s->targets[id].kv_reserved += tokens;
  return s->targets[id].report_seq;
}

void store_kv_release(struct store *s, int id, int64_t tokens, uint32_t seq) {
  struct target *t = &s->targets[id];
  if (seq != t->report_seq) return; /* the report since then counted the request itself */
  t->kv_reserved -= tokens;
  if (t->kv_reserved < 0) t->kv_reserved = 0;
}

void store_ttfb_observe(struct store *s, int id, int kind, double seconds) {
  struct target *t = &s->targets[id];
  if (kind < 0 || kind > 1 || !(seconds >= 0)) return;
  t->ttfb[kind][t->ttfb_pos[kind]] = (float)seconds;
  t->ttfb_pos[kind] = (uint16_t)((t->ttfb_pos[kind] + 1) % STORE_TTFB_WINDOW);
  if (t->ttfb_n[kind] < STORE_TTFB_WINDOW) t->ttfb_n[kind]++;
}

/* select_kth returns the k-th smallest (0-based) of v[0..n), reordering v: Hoare's selection, O(n) on average.
 * The router asks for a target's p95 several times per request; sorting the window each time cost more. */
static float select_kth(float *v, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    float pivot = v[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (v[i] < pivot) i++;
      while (v[j] > pivot) j--;
      if (i <= j) {
        float t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return v[k];
  }
  return v[k];
}

bool store_ttfb_quantile(const struct target *t, int kind, double q, int min_samples, double *out) {
  if (kind < 0 || kind > 1) return false;
  int n = t->ttfb_n[kind];
  if (n == 0 || n < min_samples) return false;
  float v[STORE_TTFB_WINDOW];
  memcpy(v, t->ttfb[kind], (size_t)n * sizeof v[0]);
  /* nearest rank: the smallest sample with at least q of the samples at or below it */
  int rank = (int)((double)n * (q < 0 ? 0 : q > 1 ? 1 : q) + 0.999999);
  if (rank < 1) rank = 1;
  *out = select_kth(v, n, rank - 1);
  return true;
}

/* kv_set returns t's reported-block set, made on first use and sized to its KV pool (when known). */
static struct prefix_index *kv_set(struct target *t) {
  /* Router blocks are 16 tokens (route/proxy.c); a remote target reports its pool in tokens (block_size 1). */
  int64_t cap = t->load.num_gpu_blocks > 0 && t->load.block_size > 0 ? t->load.num_gpu_blocks * t->load.block_size / 16
                                                                      : STORE_KV_BLOCKS_MAX;
  if (cap < 1) cap = 1;
  if (cap > STORE_KV_BLOCKS_MAX) cap = STORE_KV_BLOCKS_MAX;
  if (!t->kv_blocks) {
    t->kv_blocks = xcalloc(1, sizeof *t->kv_blocks);
    prefix_index_init(t->kv_blocks, (int)cap);
  } else if (t->kv_blocks->capacity != cap) {
    prefix_index_set_capacity(t->kv_blocks, (int)cap);
  }
  return t->kv_blocks;
}

void store_kv_stored(struct store *s, int id, const uint64_t *hashes, int n, uint64_t now_ns) {
  struct target *t = &s->targets[id];
  if (n > 0) prefix_index_add_in_order(kv_set(t), hashes, n);
  t->kv_ns = now_ns;
}

void store_kv_removed(struct store *s, int id, const uint64_t *hashes, int n, uint64_t now_ns) {
  struct target *t = &s->targets[id];
  for (int i = 0; t->kv_blocks && i < n; i++) prefix_index_remove(t->kv_blocks, hashes[i]);
  t->kv_ns = now_ns;
}

void store_kv_cleared(struct store *s, int id, uint64_t now_ns) {
  struct target *t = &s->targets[id];
  if (t->kv_blocks) prefix_index_clear(t->kv_blocks);
  t->kv_ns = now_ns;
}

int store_kv_match(const struct target *t, const uint64_t *hashes, int n) {
  return t->kv_blocks ? prefix_index_match_linear(t->kv_blocks, hashes, n) : 0;
}

int store_kv_blocks(const struct target *t) { return t->kv_blocks ? prefix_index_size(t->kv_blocks) : 0; }
