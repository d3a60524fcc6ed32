/* The simulated engine: a vLLM-V1-like scheduler over a KV block pool, in virtual nanoseconds.
 *
 * Per request: num_tokens = prompt + generated tokens; num_computed = tokens whose KV is in the cache. A step
 * computes num_tokens - num_computed tokens of each scheduled request (all of a prompt, a chunk of it, or the
 * one token sampled last); a request whose KV then covers all its tokens samples one more output token.
 *
 * Scheduling one step (vLLM V1 Scheduler.schedule, simplified):
 *  1. Running requests, in admission order, each take min(remaining, budget) tokens from the step's
 *     token budget (max_num_batched_tokens). If the pool lacks blocks for one, the most recently admitted
 *     running request is preempted (blocks freed, computed tokens forgotten, put back at the FRONT of the
 *     waiting queue to be recomputed later, prefix cache permitting), repeatedly, possibly itself.
 *  2. If nothing was preempted, waiting requests are admitted FIFO while running < max_num_seqs, budget
 *     is left and the pool can hold them; the first that does not fit stops admission (no overtaking).
 *     An admitted request starts from its longest cached prefix of full prompt blocks (at most
 *     num_tokens - 1 tokens: the last token must be computed to produce logits) and prefills the rest,
 *     chunked by the remaining budget.
 *  3. Full prompt blocks enter the prefix cache when the step that computes them ends.
 * A request finishes at max_tokens output tokens; its blocks are released (prompt blocks stay cached). */
#include "sim/engine.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/rng.h"

struct req {
  uint64_t id;
  void *udata;
  uint64_t *hashes; /* full prompt blocks that may be cached */
  int nhashes;
  int prompt_tokens, max_tokens;
  int out_tokens;   /* output tokens sampled so far */
  int num_computed; /* tokens whose KV is computed */
  int *blocks;      /* KV block ids, in token order */
  int nblocks, cap_blocks;
  int nhashed;       /* blocks[0..nhashed) were offered to the prefix cache */
  int cached_tokens; /* prefix-cache hit at first admission; -1 before */
  uint64_t t_submit, t_last;
  struct req *prev, *next; /* on the waiting or the running list */
  bool running;
};

struct list {
  struct req *head, *tail;
  int n;
};

struct step_ent {
  uint64_t id; /* by id, not pointer: an abort may free the request while the step is in flight */
  int n;       /* tokens computed in this step */
};

/* id -> request, open addressing keyed by id (0 = empty slot), backward-shift deletion. */
struct idmap {
  uint64_t *keys;
  struct req **vals;
  uint32_t bits, n;
};

struct sim_engine {
  struct sim_profile prof;
  struct kvpool pool;
  struct rng rng;
  struct idmap map;
  struct list waiting, running;
  uint64_t next_id;
  uint64_t clock; /* end of the last completed step */
  bool step_active;
  uint64_t step_end;
  struct step_ent *ents;
  int nents, cap_ents;
  struct sim_event *evq; /* events of the step being delivered */
  bool *evcancel;
  int nev, cap_ev, dv; /* dv: index being delivered */
  bool delivering, in_advance;
  struct sim_stats stats;
  uint64_t busy_ns; /* sum of the durations of the steps started (sim_engine_busy_ns) */
  struct sim_cache_cb cache_cb;
};

/* ---- tokenization and hashing ---- */

int sim_tokens_for_bytes(size_t nbytes) {
  size_t t = nbytes / 4 + (nbytes % 4 != 0);
  return t > (size_t)INT_MAX ? INT_MAX : (int)t;
}

int sim_block_hashes(const struct sim_profile *p, const char *prompt, size_t len, uint64_t *out, int max) {
  size_t bb = (size_t)p->block_size * 4;
  size_t nfull = len / bb;
  if (max < 0) max = 0;
  if (nfull > (size_t)max) nfull = (size_t)max;
  uint64_t h = XXH3_64bits(p->model, strlen(p->model));
  for (size_t i = 0; i < nfull; i++) {
    h = XXH3_64bits_withSeed(prompt + i * bb, bb, h);
    out[i] = h;
  }
  return (int)nfull;
}

/* ---- id map ---- */

static uint32_t id_slot(const struct idmap *m, uint64_t id) {
  return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> (64 - m->bits));
}

static struct req *map_get(const struct idmap *m, uint64_t id) {
  if (id == 0) return NULL;
  uint32_t mask = (1u << m->bits) - 1;
  for (uint32_t i = id_slot(m, id);; i = (i + 1) & mask) {
    if (m->keys[i] == id) return m->vals[i];
    if (m->keys[i] == 0) return NULL;
  }
}

static void map_put_nogrow(struct idmap *m, uint64_t id, struct req *r) {
  uint32_t mask = (1u << m->bits) - 1;
  uint32_t i = id_slot(m, id);
  while (m->keys[i])
    i = (i + 1) & mask;
  m->keys[i] = id;
  m->vals[i] = r;
  m->n++;
}

static void map_init(struct idmap *m, uint32_t bits) {
  m->bits = bits;
  m->n = 0;
  m->keys = xcalloc((size_t)1 << bits, sizeof *m->keys);
  m->vals = xcalloc((size_t)1 << bits, sizeof *m->vals);
}

static void map_put(struct idmap *m, uint64_t id, struct req *r) {
  if (2 * ((uint64_t)m->n + 1) > (1ull << m->bits)) {
    struct idmap old = *m;
    map_init(m, old.bits + 1);
    for (uint64_t i = 0; i < (1ull << old.bits); i++)
      if (old.keys[i]) map_put_nogrow(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
  }
  map_put_nogrow(m, id, r);
}

static void map_del(struct idmap *m, uint64_t id) {
  uint32_t mask = (1u << m->bits) - 1;
  uint32_t i = id_slot(m, id);
  while (m->keys[i] != id) {
    if (m->keys[i] == 0) return;
    i = (i + 1) & mask;
  }
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    if (m->keys[j] == 0) break;
    uint32_t k = id_slot(m, m->keys[j]);
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->vals[i] = NULL;
  m->n--;
}

/* ---- lists ---- */

static void list_remove(struct list *l, struct req *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    l->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    l->tail = r->prev;
  r->prev = r->next = NULL;
  l->n--;
}

static void list_push_back(struct list *l, struct req *r) {
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail)
    l->tail->next = r;
  else
    l->head = r;
  l->tail = r;
  l->n++;
}

static void list_push_front(struct list *l, struct req *r) {
  r->prev = NULL;
  r->next = l->head;
  if (l->head)
    l->head->prev = r;
  else
    l->tail = r;
  l->head = r;
  l->n++;
}

/* ---- engine ---- */

static void refresh_gauges(struct sim_engine *e) {
  e->stats.waiting = e->waiting.n;
  e->stats.running = e->running.n;
  e->stats.kv_usage = (double)kvpool_used(&e->pool) / (double)e->prof.num_gpu_blocks;
}

struct sim_engine *sim_engine_new(const struct sim_profile *p, uint64_t seed) {
  if (sim_profile_validate(p, NULL, 0) != 0) return NULL;
  struct sim_engine *e = xcalloc(1, sizeof *e);
  e->prof = *p;
  if (kvpool_init(&e->pool, p->num_gpu_blocks) != 0) {
    free(e);
    return NULL;
  }
  rng_seed(&e->rng, seed);
  map_init(&e->map, 6);
  e->cap_ents = p->max_num_seqs;
  e->ents = xcalloc((size_t)e->cap_ents, sizeof *e->ents);
  e->cap_ev = 2 * p->max_num_seqs;
  e->evq = xcalloc((size_t)e->cap_ev, sizeof *e->evq);
  e->evcancel = xcalloc((size_t)e->cap_ev, sizeof *e->evcancel);
  hist_init(&e->stats.ttft, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&e->stats.e2e, hist_latency_bounds, hist_latency_nbounds);
  hist_init(&e->stats.itl, hist_latency_bounds, hist_latency_nbounds);
  refresh_gauges(e);
  return e;
}

static void req_free(struct req *r) {
  free(r->hashes);
  free(r->blocks);
  free(r);
}

void sim_engine_free(struct sim_engine *e) {
  if (!e) return;
  assert(!e->in_advance);
  struct list *ls[2] = {&e->waiting, &e->running};
  for (int k = 0; k < 2; k++) {
    struct req *r = ls[k]->head;
    while (r) {
      struct req *next = r->next;
      req_free(r);
      r = next;
    }
  }
  kvpool_free_all(&e->pool);
  free(e->map.keys);
  free(e->map.vals);
  free(e->ents);
  free(e->evq);
  free(e->evcancel);
  free(e);
}

int sim_engine_check(const struct sim_engine *e, int prompt_tokens, int max_tokens, char *errmsg,
                     size_t errlen) {
  if (prompt_tokens < 1) {
    if (errmsg && errlen) snprintf(errmsg, errlen, "The prompt cannot be empty.");
    return -EINVAL;
  }
  if (max_tokens < 1) {
    if (errmsg && errlen) snprintf(errmsg, errlen, "max_tokens must be at least 1, got %d.", max_tokens);
    return -EINVAL;
  }
  long long total = (long long)prompt_tokens + max_tokens;
  if (total > e->prof.max_model_len) {
    if (errmsg && errlen)
      snprintf(errmsg, errlen,
               "This model's maximum context length is %d tokens. However, you requested %lld tokens "
               "(%d in the messages, %d in the completion). Please reduce the length of the messages or "
               "completion.",
               e->prof.max_model_len, total, prompt_tokens, max_tokens);
    return IM_ETOOBIG;
  }
  return 0;
}

uint64_t sim_engine_submit(struct sim_engine *e, uint64_t now_ns, const uint64_t *block_hashes, int nblocks,
                           int prompt_tokens, int max_tokens, void *udata) {
  if (sim_engine_check(e, prompt_tokens, max_tokens, NULL, 0) != 0) return 0;
  struct req *r = xcalloc(1, sizeof *r);
  r->id = ++e->next_id;
  r->udata = udata;
  int usable = prompt_tokens / e->prof.block_size;
  if (nblocks < 0 || !block_hashes) nblocks = 0;
  r->nhashes = nblocks < usable ? nblocks : usable;
  if (r->nhashes > 0) {
    r->hashes = xmalloc((size_t)r->nhashes * sizeof *r->hashes);
    memcpy(r->hashes, block_hashes, (size_t)r->nhashes * sizeof *r->hashes);
  }
  r->prompt_tokens = prompt_tokens;
  r->max_tokens = max_tokens;
  r->cached_tokens = -1;
  r->t_submit = now_ns;
  list_push_back(&e->waiting, r);
  map_put(&e->map, r->id, r);
  refresh_gauges(e);
  return r->id;
}

static void release_blocks(struct sim_engine *e, struct req *r) {
  kvpool_release(&e->pool, r->blocks, r->nblocks);
  r->nblocks = 0;
  r->nhashed = 0;
  r->num_computed = 0;
}

void sim_engine_abort(struct sim_engine *e, uint64_t id) {
  /* Suppress this id's events still queued for delivery (the step may have finished the request already). */
  if (e->delivering)
    for (int i = e->dv + 1; i < e->nev; i++)
      if (e->evq[i].id == id) e->evcancel[i] = true;
  struct req *r = map_get(&e->map, id);
  if (!r) return;
  list_remove(r->running ? &e->running : &e->waiting, r);
  release_blocks(e, r);
  map_del(&e->map, id);
  req_free(r);
  refresh_gauges(e);
}

static int blocks_for(const struct sim_engine *e, int tokens) {
  return (int)(((long long)tokens + e->prof.block_size - 1) / e->prof.block_size);
}

static void reserve_blocks(struct req *r, int n) {
  if (n <= r->cap_blocks) return;
  int cap = r->cap_blocks ? r->cap_blocks : 8;
  while (cap < n)
    cap *= 2;
  r->blocks = xrealloc(r->blocks, (size_t)cap * sizeof *r->blocks);
  r->cap_blocks = cap;
}

static void preempt(struct sim_engine *e, struct req *r) {
  list_remove(&e->running, r);
  r->running = false;
  release_blocks(e, r);
  list_push_front(&e->waiting, r);
  e->stats.preemptions++;
}

static void add_ent(struct sim_engine *e, const struct req *r, int n, double *attn, int *tokens) {
  assert(e->nents < e->cap_ents);
  e->ents[e->nents++] = (struct step_ent){.id = r->id, .n = n};
  *attn += sim_profile_attn_s(&e->prof, r->num_computed, n);
  *tokens += n;
}

/* schedule_running gives budget and blocks to running requests in admission order, preempting from the tail
 * when the pool runs dry. Returns whether anything was preempted. */
static bool schedule_running(struct sim_engine *e, int *budget, double *attn, int *tokens) {
  bool preempted = false;
  struct req *r = e->running.head;
  while (r && *budget > 0) {
    int remaining = r->prompt_tokens + r->out_tokens - r->num_computed;
    assert(remaining >= 1);
    int n = remaining < *budget ? remaining : *budget;
    int need = blocks_for(e, r->num_computed + n) - r->nblocks;
    bool self = false;
    while (need > 0 && kvpool_num_free(&e->pool) < need) {
      struct req *victim = e->running.tail;
      preempt(e, victim);
      preempted = true;
      if (victim == r) {
        self = true;
        break;
      }
    }
    if (self) break; /* r was the last running request */
    if (need > 0) {
      reserve_blocks(r, r->nblocks + need);
      int rc = kvpool_alloc(&e->pool, need, r->blocks + r->nblocks);
      assert(rc == 0);
      (void)rc;
      r->nblocks += need;
    }
    add_ent(e, r, n, attn, tokens);
    *budget -= n;
    r = r->next; /* read after preemptions: they only remove requests behind r */
  }
  return preempted;
}

/* admit_waiting admits waiting requests FIFO; see the policy at the top of the file. */
static void admit_waiting(struct sim_engine *e, uint64_t t, int *budget, double *attn, int *tokens) {
  const int bs = e->prof.block_size;
  while (e->waiting.head && e->running.n<e->prof.max_num_seqs && * budget> 0) {
    struct req *r = e->waiting.head;
    if (r->t_submit > t) break;
    int num_tokens = r->prompt_tokens + r->out_tokens;
    int nlook = (num_tokens - 1) / bs;
    if (nlook > r->nhashes) nlook = r->nhashes;
    int hit = kvpool_lookup_prefix(&e->pool, r->hashes, nlook);
    int hit_tokens = hit * bs;
    int n = num_tokens - hit_tokens;
    if (n > *budget) n = *budget;
    int nnew = blocks_for(e, hit_tokens + n) - hit;
    reserve_blocks(r, hit + nnew);
    if (kvpool_acquire_prefix(&e->pool, r->hashes, hit, nnew, r->blocks) != 0) break;
    r->nblocks = hit + nnew;
    r->nhashed = hit;
    r->num_computed = hit_tokens;
    if (r->cached_tokens < 0) r->cached_tokens = hit_tokens;
    e->stats.prefix_queries_tokens += (uint64_t)num_tokens;
    e->stats.prefix_hits_tokens += (uint64_t)hit_tokens;
    list_remove(&e->waiting, r);
    list_push_back(&e->running, r);
    r->running = true;
    add_ent(e, r, n, attn, tokens);
    *budget -= n;
  }
}

static void start_step(struct sim_engine *e, uint64_t t) {
  int budget = e->prof.max_num_batched_tokens, tokens = 0;
  double attn = 0;
  e->nents = 0;
  bool preempted = schedule_running(e, &budget, &attn, &tokens);
  /* Like vLLM, no admissions in a step that preempted, unless the step would otherwise be empty. */
  if (!preempted || e->nents == 0) admit_waiting(e, t, &budget, &attn, &tokens);
  if (e->nents == 0) return;
  double s = sim_profile_step_s(&e->prof, tokens, attn);
  long long ns = llround(s * 1e9);
  e->step_active = true;
  e->step_end = t + (ns < 1 ? 1 : (uint64_t)ns);
  e->busy_ns += e->step_end - t;
}

static void push_event(struct sim_engine *e, int kind, const struct req *r, uint64_t t) {
  if (e->nev == e->cap_ev) {
    e->cap_ev *= 2;
    e->evq = xrealloc(e->evq, (size_t)e->cap_ev * sizeof *e->evq);
    e->evcancel = xrealloc(e->evcancel, (size_t)e->cap_ev * sizeof *e->evcancel);
  }
  e->evcancel[e->nev] = false;
  e->evq[e->nev++] = (struct sim_event){.kind = kind,
                                        .id = r->id,
                                        .udata = r->udata,
                                        .t_ns = t,
                                        .tokens_out = r->out_tokens,
                                        .prompt_tokens = r->prompt_tokens,
                                        .cached_tokens = r->cached_tokens < 0 ? 0 : r->cached_tokens};
}

static void commit_hashes(struct sim_engine *e, struct req *r) {
  int full = r->num_computed / e->prof.block_size;
  if (full > r->nhashes) full = r->nhashes;
  if (full > r->nblocks) full = r->nblocks;
  for (int i = r->nhashed; i < full; i++)
    if (kvpool_commit_hash(&e->pool, r->blocks[i], r->hashes[i]) && e->cache_cb.stored)
      e->cache_cb.stored(e->cache_cb.arg, r->hashes[i], i > 0, i > 0 ? r->hashes[i - 1] : 0);
  if (full > r->nhashed) r->nhashed = full;
}

static void complete_step(struct sim_engine *e) {
  uint64_t t = e->step_end;
  e->clock = t;
  e->step_active = false;
  e->nev = 0;
  for (int i = 0; i < e->nents; i++) {
    struct req *r = map_get(&e->map, e->ents[i].id);
    if (!r) continue; /* aborted while the step ran */
    r->num_computed += e->ents[i].n;
    commit_hashes(e, r);
    if (r->num_computed < r->prompt_tokens + r->out_tokens) continue; /* a prefill chunk: no token yet */
    r->out_tokens++;
    e->stats.generation_tokens_total++;
    if (r->out_tokens == 1) {
      e->stats.prompt_tokens_total += (uint64_t)r->prompt_tokens;
      hist_observe(&e->stats.ttft, (double)(t - r->t_submit) / 1e9);
      push_event(e, SIM_EV_FIRST_TOKEN, r, t);
    } else {
      hist_observe(&e->stats.itl, (double)(t - r->t_last) / 1e9);
      push_event(e, SIM_EV_TOKEN, r, t);
    }
    r->t_last = t;
    if (r->out_tokens >= r->max_tokens) {
      push_event(e, SIM_EV_DONE, r, t);
      hist_observe(&e->stats.e2e, (double)(t - r->t_submit) / 1e9);
      e->stats.requests_finished++;
      list_remove(&e->running, r);
      release_blocks(e, r);
      map_del(&e->map, r->id);
      req_free(r);
    }
  }
  e->nents = 0;
}

static void deliver(struct sim_engine *e, sim_event_cb cb, void *arg) {
  e->delivering = true;
  for (e->dv = 0; e->dv < e->nev; e->dv++) {
    if (e->evcancel[e->dv] || !cb) continue;
    struct sim_event ev = e->evq[e->dv];
    cb(arg, &ev);
  }
  e->delivering = false;
  e->nev = 0;
}

/* next_start is when the next step may start: right away (after the last one) if anything runs, else when the
 * head of the waiting queue arrived. */
static uint64_t next_start(const struct sim_engine *e) {
  if (e->running.n) return e->clock;
  if (e->waiting.head) return e->waiting.head->t_submit > e->clock ? e->waiting.head->t_submit : e->clock;
  return UINT64_MAX;
}

uint64_t sim_engine_next_event(const struct sim_engine *e) {
  return e->step_active ? e->step_end : next_start(e);
}

void sim_engine_advance(struct sim_engine *e, uint64_t now_ns, sim_event_cb cb, void *arg) {
  if (e->in_advance) return;
  e->in_advance = true;
  for (;;) {
    if (e->step_active) {
      if (e->step_end > now_ns) break;
      complete_step(e);
      deliver(e, cb, arg);
      continue;
    }
    uint64_t t = next_start(e);
    if (t == UINT64_MAX || t > now_ns) break;
    start_step(e, t);
    if (!e->step_active) break; /* cannot happen: a lone request always fits (sim_profile_validate) */
  }
  e->in_advance = false;
  refresh_gauges(e);
}

const struct sim_stats *sim_engine_stats(const struct sim_engine *e) { return &e->stats; }
const struct sim_profile *sim_engine_profile(const struct sim_engine *e) { return &e->prof; }
const struct kvpool *sim_engine_pool(const struct sim_engine *e) { return &e->pool; }
uint64_t sim_engine_busy_ns(const struct sim_engine *e) { return e->busy_ns; }

static void evicted_cb(void *arg, uint64_t hash) {
  struct sim_engine *e = arg;
  if (e->cache_cb.removed) e->cache_cb.removed(e->cache_cb.arg, hash);
}

void sim_engine_set_cache_cb(struct sim_engine *e, const struct sim_cache_cb *cb) {
  e->cache_cb = cb ? *cb : (struct sim_cache_cb){0};
  e->pool.evict_cb = cb ? evicted_cb : NULL;
  e->pool.evict_arg = e;
}
