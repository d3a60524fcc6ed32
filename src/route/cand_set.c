/* Per-model candidate sets kept in step with the store's change log (route/cand_set.h). */
#include "route/cand_set.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void cand_record(const struct target *t, struct policy_target *pt) {
  memset(pt, 0, sizeof *pt);
  pt->id = t->id;
  pt->waiting = t->load.waiting;
  pt->running = t->load.running;
  pt->kv_usage = t->load.kv_usage;
  pt->num_gpu_blocks = t->load.num_gpu_blocks;
  pt->block_size = (int)t->load.block_size;
  pt->prefix_hit_rate = t->load.prefix_queries > 0 ? t->load.prefix_hits / t->load.prefix_queries : 0;
  pt->prefill_tps = t->prompt_tps_peak; /* demonstrated; the policy floors it with its default */
  pt->itl_s = t->load.itl_p50;          /* the adapters' windowed median; negative unknown */
  pt->report_ns = t->updated_ns ? t->updated_ns : UINT64_MAX;
  pt->inflight = t->inflight;
  pt->routed_since_report = t->routed_since_report;
  pt->network_s = t->remote ? 0.001 : 0; /* one more hop, through the other node's agent */
  pt->degraded = t->gpu_degraded;
}

void cand_sets_init(struct cand_sets *cs, int cap) {
  memset(cs, 0, sizeof *cs);
  cs->cap = cap > 0 ? cap : 1;
}

static void set_free(struct cand_set *c) {
  free(c->model);
  free(c->ids);
  free(c->pt);
  free(c->pos);
  memset(c, 0, sizeof *c);
}

void cand_sets_free(struct cand_sets *cs) {
  for (int i = 0; i < CAND_SETS_MAX; i++)
    set_free(&cs->sets[i]);
}

static bool member(const struct target *t, struct slice model) {
  return t->healthy && !t->gone && !t->draining && store_target_serves(t, model);
}

/* rebuild makes C's candidates from every target of S (the model matched once per target). */
static void rebuild(struct cand_sets *cs, struct cand_set *c, const struct store *s) {
  struct slice model = slice_make(c->model, c->model_len);
  for (int i = 0; i < c->n; i++)
    c->pos[c->ids[i]] = -1;
  c->n = 0;
  for (int i = 0; i < s->ntargets && i < cs->cap; i++) {
    const struct target *t = &s->targets[i];
    if (!member(t, model)) continue;
    c->ids[c->n] = i;
    cand_record(t, &c->pt[c->n]);
    c->pos[i] = c->n++;
  }
  c->seen_seq = s->change_seq;
  cs->rebuilds++;
}

/* refresh applies the store's changes since C's last refresh: records of candidates are rewritten; a target
 * joining or leaving the set (or a log C fell behind of) rebuilds it. */
static void refresh(struct cand_sets *cs, struct cand_set *c, const struct store *s) {
  if (c->seen_seq == s->change_seq) return;
  if (s->change_seq - c->seen_seq > STORE_CHANGE_LOG) {
    rebuild(cs, c, s);
    return;
  }
  struct slice model = slice_make(c->model, c->model_len);
  for (uint64_t q = c->seen_seq + 1; q <= s->change_seq; q++) {
    int id = s->change_log[q % STORE_CHANGE_LOG];
    if (id < 0 || id >= cs->cap || id >= s->ntargets) continue;
    const struct target *t = &s->targets[id];
    bool in = member(t, model);
    int k = c->pos[id];
    if (in != (k >= 0)) {
      rebuild(cs, c, s);
      return;
    }
    if (!in) continue;
    cand_record(t, &c->pt[k]);
    cs->refreshes++;
  }
  c->seen_seq = s->change_seq;
}

/* slot_for returns MODEL's set, made (in an unused or the least recently used slot) when it has none. */
static struct cand_set *slot_for(struct cand_sets *cs, const struct store *s, struct slice model) {
  struct cand_set *lru = &cs->sets[0];
  for (int i = 0; i < CAND_SETS_MAX; i++) {
    struct cand_set *c = &cs->sets[i];
    if (c->model && c->model_len == model.len && memcmp(c->model, model.base, model.len) == 0) return c;
    if (!c->model ? lru->model != NULL : lru->model && c->used < lru->used) lru = c;
  }
  if (!lru->model) {
    lru->ids = xmalloc((size_t)cs->cap * sizeof *lru->ids);
    lru->pt = xmalloc((size_t)cs->cap * sizeof *lru->pt);
    lru->pos = xmalloc((size_t)cs->cap * sizeof *lru->pos);
  }
  free(lru->model);
  lru->model = xmalloc(model.len + 1);
  memcpy(lru->model, model.base, model.len);
  lru->model[model.len] = '\0';
  lru->model_len = model.len;
  for (int i = 0; i < cs->cap; i++)
    lru->pos[i] = -1;
  lru->n = 0;
  rebuild(cs, lru, s);
  return lru;
}

struct cand_set *cand_sets_get(struct cand_sets *cs, const struct store *s, struct slice model) {
  struct cand_set *c = slot_for(cs, s, model);
  c->used = ++cs->tick;
  refresh(cs, c, s);
  return c;
}
