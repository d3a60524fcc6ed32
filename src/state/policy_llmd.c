/* llm-d inference scheduler's default scoring profile (gateway-api-inference-extension EPP scorers).
 *
 * The published algorithm (EndpointPickerConfig "default" profile of llm-d: queue-scorer weight 2,
 * kv-cache-utilization-scorer weight 2, prefix-cache-scorer weight 3, max-score-picker):
 *  - queue-scorer: min-max normalization of the scraped waiting-queue size over the candidates,
 *    (max - q) / (max - min); 1.0 for everyone when all queues are equal.
 *  - kv-cache-utilization-scorer: 1 - the scraped KV-cache usage fraction.
 *  - prefix-cache-scorer: the prompt is cut into blocks of the runtime's block size (capped at
 *    maxPrefixBlocksToMatch = 256 blocks), chained hashes (model first); the indexer maps each block hash to
 *    the servers it was routed to, with one LRU per server of capacity = the server's num_gpu_blocks (autotune;
 *    31250 otherwise), filled in order (the last block most recent) when a request is routed (PreRequest).
 *    Matching walks the blocks in order, stops at the first block no server holds, and credits every server
 *    holding each block passed; score = credited blocks / blocks of the prompt.
 *  - total = sum of weight * score; the highest total wins, ties broken uniformly at random (shuffle then
 *    stable sort).
 * Sources: pkg/epp/scheduling/framework/plugins/{queuescorer/queue.go, kvcacheutilizationscorer/
 * kvcache_utilization.go, prefixcachescorer/plugin.go, prefixcachescorer/indexer.go, picker/
 * max_score_picker.go}; weights from llm-d's default-plugins.yaml. Like upstream's indexer, the match reads an
 * inverted index (block hash -> servers holding it, prefix_holders) kept in step with the per-server LRUs: one
 * lookup per block, not one per block and server. No router-local reservations: the queue and
 * KV scorers see only the scraped metrics, which the EPP refreshes every 50 ms by default (its
 * --refresh-metrics-interval): upstream_refresh_ns. */
#include <stdlib.h>

#include "core/alloc.h"
#include "state/policy.h"
#include "state/prefix_index.h"

/* Per target id: whether it is a candidate of the current pick, and the blocks credited to it there. */
struct mark {
  uint64_t cand_pick, credit_pick; /* equal to llmd.pick_no when valid */
  int credit;
};

struct llmd {
  struct prefix_index **lru; /* by target id, lazily made; each attached to holders */
  int cap;
  struct prefix_holders holders;
  struct mark *mark; /* by target id */
  int nmark;
  uint64_t pick_no;
};

static void *llmd_create(const struct policy_config *cfg) {
  (void)cfg;
  struct llmd *s = xcalloc(1, sizeof(struct llmd));
  prefix_holders_init(&s->holders);
  return s;
}

static void llmd_forget(struct policy *p, int id) {
  struct llmd *s = p->impl;
  if (id >= s->cap || !s->lru[id]) return;
  prefix_index_free(s->lru[id]);
  free(s->lru[id]);
  s->lru[id] = NULL;
}

static void llmd_destroy(void *impl) {
  struct llmd *s = impl;
  for (int i = 0; i < s->cap; i++) {
    if (!s->lru[i]) continue;
    prefix_index_attach(s->lru[i], NULL, 0); /* the holders go as a whole below */
    prefix_index_free(s->lru[i]);
    free(s->lru[i]);
  }
  free(s->lru);
  free(s->mark);
  prefix_holders_free(&s->holders);
  free(s);
}

static int nhash(const struct policy *p, const struct policy_req *r) {
  int n = r->nblocks;
  return n > p->cfg.llmd_max_prefix_blocks ? p->cfg.llmd_max_prefix_blocks : n;
}

static int llmd_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n,
                     uint64_t now) {
  (void)now;
  struct llmd *s = p->impl;
  double qmin = c[0].waiting, qmax = c[0].waiting;
  for (int i = 1; i < n; i++) {
    if (c[i].waiting < qmin) qmin = c[i].waiting;
    if (c[i].waiting > qmax) qmax = c[i].waiting;
  }
  int total = nhash(p, r);
  s->mark = policy_grow(s->mark, &s->nmark, policy_max_id(c, n) + 1, sizeof *s->mark);
  s->pick_no++;
  for (int i = 0; i < n; i++)
    s->mark[c[i].id].cand_pick = s->pick_no;
  for (int b = 0; b < total; b++) {
    int any = 0, nh;
    const int32_t *ids = prefix_holders_get(&s->holders, r->block_hashes[b], &nh);
    for (int j = 0; j < nh; j++) {
      struct mark *m = ids[j] < s->nmark ? &s->mark[ids[j]] : NULL;
      if (!m || m->cand_pick != s->pick_no) continue; /* not a candidate of this request */
      if (m->credit_pick != s->pick_no) m->credit_pick = s->pick_no, m->credit = 0;
      m->credit++;
      any = 1;
    }
    if (!any) break;
  }
  int best = 0, ties = 0;
  double best_score = -1;
  for (int i = 0; i < n; i++) {
    double q = qmax == qmin ? 1.0 : (qmax - c[i].waiting) / (qmax - qmin);
    double kv = c[i].kv_usage < 0 ? 1.0 : 1.0 - c[i].kv_usage;
    const struct mark *m = &s->mark[c[i].id];
    double pre = total ? (double)(m->credit_pick == s->pick_no ? m->credit : 0) / total : 0.0;
    double sc = p->cfg.llmd_w_queue * q + p->cfg.llmd_w_kv * kv + p->cfg.llmd_w_prefix * pre;
    if (sc > best_score) {
      best_score = sc;
      best = i;
      ties = 1;
    } else if (sc == best_score && rng_below(&p->rng, (uint32_t)++ties) == 0) {
      best = i;
    }
  }
  return best;
}

static void llmd_on_route(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now,
                          struct policy_ticket *tk) {
  (void)now;
  (void)tk;
  struct llmd *s = p->impl;
  int total = nhash(p, r);
  if (total <= 0) return;
  s->lru = policy_grow(s->lru, &s->cap, t->id + 1, sizeof *s->lru);
  if (!s->lru[t->id]) {
    s->lru[t->id] = xcalloc(1, sizeof(struct prefix_index));
    int64_t cap = t->num_gpu_blocks > 0 ? t->num_gpu_blocks : p->cfg.llmd_lru_capacity;
    prefix_index_init(s->lru[t->id], cap > PREFIX_INDEX_MAX ? PREFIX_INDEX_MAX : (int)cap);
    prefix_index_attach(s->lru[t->id], &s->holders, t->id);
  }
  prefix_index_add_in_order(s->lru[t->id], r->block_hashes, total);
}

const struct policy_ops policy_llmd_ops = {.name = "llm-d",
                                           .upstream_refresh_ns = 50ull * 1000000ull,
                                           .create = llmd_create,
                                           .destroy = llmd_destroy,
                                           .pick = llmd_pick,
                                           .on_route = llmd_on_route,
                                           .forget = llmd_forget};
