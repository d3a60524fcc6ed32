/* SGLang router's cache_aware policy (sgl-router / sgl-model-gateway, src/policies/cache_aware.rs + tree.rs).
 *
 * The published algorithm, per request:
 *  1. load(w) = the router's own count of requests in flight to worker w. The system is imbalanced when
 *     max_load - min_load > balance_abs_threshold AND max_load > balance_rel_threshold * min_load; then
 *     route to the least-loaded worker (the first one on ties) and still insert the prompt into its tree.
 *  2. Otherwise find the longest prefix of the prompt in the approximate radix tree (one tree per model, each
 *     node tagged with the workers whose routed prompts went through it); match_rate = matched / prompt
 *     length. If match_rate > cache_threshold route to a worker holding the deepest matched node (the first
 *     tenant of that node's map), else to the least-loaded worker. Insert the prompt for the chosen worker.
 *  3. The tree learns only from routing (never from the workers), and a background task evicts each
 *     worker's least recently used leaves once its tree exceeds max_tree_size characters.
 * Defaults: cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5, max_tree_size 2^26
 * (sgl-model-gateway bindings/python/sglang_router/router_args.py).
 *
 * Here: the tree is character-level in SGLang; we see block hashes, so one tree node is one KV block
 * (block_size tokens, 4 characters per token in the simulated tokenizer) and the match is counted in whole
 * blocks. A worker's subtree is a prefix_index filled with insert_path, whose LRU drops deepest blocks first
 * like SGLang's leaf eviction; it is bounded continuously at max_tree_size / (4 * block_size) blocks instead of
 * every eviction_interval seconds (at 2^26 characters the bound is rarely reached either way). "First tenant"
 * of a node is DashMap iteration order, effectively a fixed pseudo-random choice per node: we take the
 * matching worker with the largest policy_mix64(node hash, worker id). */
#include <stdbool.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "state/policy.h"
#include "state/prefix_index.h"

struct sgl {
  struct prefix_index **tree; /* by target id, lazily made */
  int cap;
};

static const struct prefix_index *tree_of(const struct sgl *s, int id) { return id < s->cap ? s->tree[id] : NULL; }

static void *sgl_create(const struct policy_config *cfg) {
  (void)cfg;
  return xcalloc(1, sizeof(struct sgl));
}

static void sgl_forget(struct policy *p, int id) {
  struct sgl *s = p->impl;
  if (id >= s->cap || !s->tree[id]) return;
  prefix_index_free(s->tree[id]);
  free(s->tree[id]);
  s->tree[id] = NULL;
}

static void sgl_destroy(void *impl) {
  struct sgl *s = impl;
  for (int i = 0; i < s->cap; i++) {
    if (!s->tree[i]) continue;
    prefix_index_free(s->tree[i]);
    free(s->tree[i]);
  }
  free(s->tree);
  free(s);
}

static int min_load(const struct policy_target *c, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (c[i].inflight < c[best].inflight) best = i; /* Rust min_by_key: the first minimum */
  return best;
}

static int sgl_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n,
                    uint64_t now) {
  (void)now;
  struct sgl *s = p->impl;
  int maxl = c[0].inflight, minl = c[0].inflight;
  for (int i = 1; i < n; i++) {
    if (c[i].inflight > maxl) maxl = c[i].inflight;
    if (c[i].inflight < minl) minl = c[i].inflight;
  }
  bool imbalanced = maxl - minl > p->cfg.sgl_balance_abs && (double)maxl > (double)minl * p->cfg.sgl_balance_rel;
  if (imbalanced || r->prompt_tokens <= 0) return min_load(c, n);

  int best = -1, depth = 0;
  uint64_t best_key = 0;
  for (int i = 0; i < n; i++) {
    const struct prefix_index *t = tree_of(s, c[i].id);
    if (!t) continue;
    int k = prefix_index_match(t, r->block_hashes, r->nblocks);
    if (k == 0 || k < depth) continue;
    uint64_t key = policy_mix64(r->block_hashes[k - 1] ^ ((uint64_t)c[i].id * 0x9E3779B97F4A7C15ull));
    if (k > depth || key > best_key) {
      best = i;
      depth = k;
      best_key = key;
    }
  }
  double matched = (double)depth * r->block_size;
  double rate = matched / (double)r->prompt_tokens;
  if (best >= 0 && rate > p->cfg.sgl_cache_threshold) return best;
  return min_load(c, n);
}

static void sgl_on_route(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now,
                         struct policy_ticket *tk) {
  (void)now;
  struct sgl *s = p->impl;
  if (r->nblocks <= 0 || r->block_size <= 0) return;
  s->tree = policy_grow(s->tree, &s->cap, t->id + 1, sizeof *s->tree);
  if (!s->tree[t->id]) {
    s->tree[t->id] = xcalloc(1, sizeof(struct prefix_index));
    int64_t cap = p->cfg.sgl_max_tree_chars / (4 * (int64_t)r->block_size);
    prefix_index_init(s->tree[t->id], cap < 1 ? 1 : cap > PREFIX_INDEX_MAX ? PREFIX_INDEX_MAX : (int)cap);
  }
  int hit = prefix_index_match(s->tree[t->id], r->block_hashes, r->nblocks);
  tk->est_tokens = r->prompt_tokens - hit * r->block_size;
  prefix_index_insert_path(s->tree[t->id], r->block_hashes, r->nblocks);
}

const struct policy_ops policy_sglang_ops = {.name = "sglang",
                                             .create = sgl_create,
                                             .destroy = sgl_destroy,
                                             .pick = sgl_pick,
                                             .on_route = sgl_on_route,
                                             .forget = sgl_forget};
