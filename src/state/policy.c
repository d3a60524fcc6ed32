/* The routing-policy interface: registry, defaults and dispatch. */
#include "state/policy.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/alloc.h"

static const struct policy_ops *const all_ops[] = {
    &policy_round_robin_ops, &policy_least_request_ops, &policy_power_of_two_ops,
    &policy_sglang_ops,      &policy_llmd_ops,          &policy_ours_ops,
};
#define NOPS ((int)(sizeof all_ops / sizeof all_ops[0]))

void policy_config_default(struct policy_config *c) {
  *c = (struct policy_config){0};
  c->stale_ns = 5ull * 1000000000ull;
  c->sgl_cache_threshold = 0.3;
  c->sgl_balance_abs = 64;
  c->sgl_balance_rel = 1.5;
  c->sgl_max_tree_chars = 1ll << 26;
  c->llmd_w_queue = 2;
  c->llmd_w_kv = 2;
  c->llmd_w_prefix = 3;
  c->llmd_max_prefix_blocks = 256;
  c->llmd_lru_capacity = 31250;
  c->ours_default_tps = 20000;
  c->ours_slack_rel = 0.5;
  c->ours_slack_abs_s = 0.010;
  c->ours_stale_penalty_s = 60;
  c->ours_degraded_penalty_s = 1;
  c->ours_w_miss = 1;
  c->ours_w_arrivals = 0.5;
  c->ours_w_step = 1.5;
  c->ours_w_decode = 0.25;
  c->ours_affinity_blocks = 32;
  c->ours_new_prefix_home = 1;
}

enum { F_U64, F_INT, F_I64, F_DBL };
#define FIELD(name, type) {#name, type, offsetof(struct policy_config, name)}
static const struct {
  const char *name;
  int type;
  size_t off;
} fields[] = {
    FIELD(stale_ns, F_U64),          FIELD(sgl_cache_threshold, F_DBL), FIELD(sgl_balance_abs, F_INT),
    FIELD(sgl_balance_rel, F_DBL),   FIELD(sgl_max_tree_chars, F_I64),  FIELD(llmd_w_queue, F_DBL),
    FIELD(llmd_w_kv, F_DBL),         FIELD(llmd_w_prefix, F_DBL),       FIELD(llmd_max_prefix_blocks, F_INT),
    FIELD(llmd_lru_capacity, F_INT), FIELD(ours_default_tps, F_DBL),    FIELD(ours_slack_rel, F_DBL),
    FIELD(ours_slack_abs_s, F_DBL),  FIELD(ours_stale_penalty_s, F_DBL), FIELD(ours_w_miss, F_DBL),
    FIELD(ours_w_step, F_DBL),       FIELD(ours_affinity_blocks, F_INT), FIELD(ours_degraded_penalty_s, F_DBL),
    FIELD(ours_new_prefix_home, F_INT),  FIELD(ours_w_arrivals, F_DBL),   FIELD(ours_w_decode, F_DBL),
};

int policy_config_set(struct policy_config *c, const char *key, const char *val) {
  char *end = NULL;
  errno = 0;
  double d = strtod(val, &end);
  if (!end || end == val || *end || errno || !(d >= 0) || d > 9e18) return -EINVAL;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    if (strcmp(key, fields[i].name) != 0) continue;
    char *f = (char *)c + fields[i].off;
    switch (fields[i].type) {
    case F_U64: *(uint64_t *)(void *)f = (uint64_t)d; break;
    case F_INT:
      if (d > 2147483647.0) return -EINVAL;
      *(int *)(void *)f = (int)d;
      break;
    case F_I64: *(int64_t *)(void *)f = (int64_t)d; break;
    default: *(double *)(void *)f = d; break;
    }
    return 0;
  }
  return -EINVAL;
}

struct policy *policy_new(const char *name, const struct policy_config *cfg, uint64_t seed) {
  if (!name) return NULL;
  for (int i = 0; i < NOPS; i++) {
    if (strcmp(name, all_ops[i]->name) != 0) continue;
    struct policy *p = xcalloc(1, sizeof *p);
    p->ops = all_ops[i];
    if (cfg)
      p->cfg = *cfg;
    else
      policy_config_default(&p->cfg);
    rng_seed(&p->rng, seed);
    p->impl = p->ops->create ? p->ops->create(&p->cfg) : NULL;
    return p;
  }
  return NULL;
}

void policy_free(struct policy *p) {
  if (!p) return;
  if (p->ops->destroy) p->ops->destroy(p->impl);
  free(p);
}

const char *policy_name(const struct policy *p) { return p->ops->name; }

uint64_t policy_upstream_refresh_ns(const char *name) {
  for (int i = 0; name && i < NOPS; i++)
    if (strcmp(name, all_ops[i]->name) == 0) return all_ops[i]->upstream_refresh_ns;
  return 0;
}

int policy_names(const char **out, int max) {
  for (int i = 0; i < NOPS && i < max; i++)
    out[i] = all_ops[i]->name;
  return NOPS;
}

int policy_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now_ns) {
  assert(n >= 1);
  /* Called even for one candidate: stateful policies still see the request (e.g. round robin's cursor). */
  int k = p->ops->pick(p, r, c, n, now_ns);
  assert(k >= 0 && k < n);
  return n == 1 ? 0 : k;
}

void policy_on_route(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now_ns,
                     struct policy_ticket *tk) {
  if (t->id < 0) { /* policies index per-target state by id */
    *tk = (struct policy_ticket){.target = -1, .t_route = now_ns};
    return;
  }
  *tk = (struct policy_ticket){.target = t->id, .t_route = now_ns};
  if (p->ops->on_route) p->ops->on_route(p, r, t, now_ns, tk);
}

void policy_on_first_token(struct policy *p, struct policy_ticket *tk, uint64_t now_ns) {
  if (tk->target < 0 || tk->first_seen || tk->done) return;
  tk->first_seen = 1;
  tk->t_first = now_ns;
  if (p->ops->on_first_token) p->ops->on_first_token(p, tk, now_ns);
}

void policy_on_done(struct policy *p, struct policy_ticket *tk, uint64_t now_ns, int output_tokens) {
  if (tk->target < 0 || tk->done) return;
  tk->out_tokens = output_tokens > 0 ? output_tokens : 0;
  if (p->ops->on_done) p->ops->on_done(p, tk, now_ns);
  tk->done = 1;
}

void policy_on_peer_route(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                          uint64_t now_ns) {
  if (t->id < 0) return;
  if (p->ops->on_peer_route) p->ops->on_peer_route(p, r, t, now_ns);
}

void policy_on_peer_decision(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                             uint64_t now_ns) {
  if (t->id < 0) return;
  if (p->ops->on_peer_decision)
    p->ops->on_peer_decision(p, r, t, now_ns);
  else if (p->ops->on_peer_route)
    p->ops->on_peer_route(p, r, t, now_ns);
}

void policy_forget_target(struct policy *p, int id) {
  if (id < 0) return;
  if (p->ops->forget) p->ops->forget(p, id);
}

void *policy_grow(void *arr, int *cap, int need, size_t size) {
  if (need <= *cap) return arr;
  int n = *cap ? *cap : 16;
  while (n < need)
    n = n > (1 << 29) ? need : 2 * n;
  arr = xrealloc(arr, (size_t)n * size);
  memset((char *)arr + (size_t)*cap * size, 0, (size_t)(n - *cap) * size);
  *cap = n;
  return arr;
}

int policy_max_id(const struct policy_target *c, int n) {
  int m = -1;
  for (int i = 0; i < n; i++)
    if (c[i].id > m) m = c[i].id;
  return m;
}

int policy_prefix_blocks(const struct policy_req *r) {
  if (r->block_size <= 0 || r->prompt_tokens <= 1) return 0;
  int usable = (r->prompt_tokens - 1) / r->block_size;
  return r->nblocks < usable ? r->nblocks : usable;
}

int policy_prompt_hashes(const char *model, const char *text, size_t len, int block_size, uint64_t *out, int max) {
  if (block_size <= 0 || max <= 0) return 0;
  size_t bb = (size_t)block_size * 4, nfull = len / bb;
  if (nfull > (size_t)max) nfull = (size_t)max;
  uint64_t h = XXH3_64bits(model ? model : "", model ? strlen(model) : 0);
  for (size_t i = 0; i < nfull; i++) {
    h = XXH3_64bits_withSeed(text + i * bb, bb, h);
    out[i] = h;
  }
  return (int)nfull;
}
