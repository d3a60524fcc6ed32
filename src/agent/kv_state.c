/* KV-cache events of this node's runtimes -> store, router and mesh; cache reports of other nodes -> same. */
#include "agent/kv_state.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "kv/kv_sub.h"

/* Hashes waiting to go out for one source, oldest first; beyond KV_STATE_PENDING the oldest are dropped. */
struct hq {
  uint64_t *h;
  int n;
};

#define RECENT 64 /* first-block hashes of the last prompts routed to a local target */

struct local {
  struct kv_state *k;
  int id; /* store target */
  struct kv_sub *sub;
  /* Its events name blocks in the routers' hashing: one of its stored blocks was the first block of a prompt
   * routed there (recent). Until then its events stay on this node: they fill the target's view here, but
   * hint no policy and go to no gateway (vLLM's sha256 of token ids would only crowd the prefix indexes). */
  bool compatible;
  uint64_t recent[RECENT]; /* a ring: nrecent entries, the next written at recent_pos */
  int nrecent, recent_pos;
  bool cleared;
  struct hq stored, removed;
};

struct route_rec {
  int id, n;
  uint64_t h[KV_STATE_ROUTE_BLOCKS];
};
#define ROUTE_QUEUE 64

struct kv_state {
  struct kv_state_env env;
  struct local *locals; /* one per local target with kv_events */
  int nlocals, next_local;
  struct route_rec routes[ROUTE_QUEUE]; /* ring of routing decisions to share */
  int rhead, rn;
  double tokens; /* byte budget */
  uint64_t last_ns;
  uint64_t sent_bytes, sent_reports, dropped_hashes, reports_in, reports_unknown;
};

static void hq_push(struct kv_state *k, struct hq *q, const uint64_t *h, int n) {
  if (!q->h) q->h = xmalloc(KV_STATE_PENDING * sizeof *q->h);
  if (n > KV_STATE_PENDING) {
    k->dropped_hashes += (uint64_t)(n - KV_STATE_PENDING);
    h += n - KV_STATE_PENDING;
    n = KV_STATE_PENDING;
  }
  int over = q->n + n - KV_STATE_PENDING;
  if (over > 0) {
    memmove(q->h, q->h + over, (size_t)(q->n - over) * sizeof *q->h);
    q->n -= over;
    k->dropped_hashes += (uint64_t)over;
  }
  memcpy(q->h + q->n, h, (size_t)n * sizeof *h);
  q->n += n;
}

/* hq_take moves up to max of q's oldest hashes to out; returns how many. */
static int hq_take(struct hq *q, uint64_t *out, int max) {
  int n = q->n < max ? q->n : max;
  if (n <= 0) return 0;
  memcpy(out, q->h, (size_t)n * sizeof *out);
  memmove(q->h, q->h + n, (size_t)(q->n - n) * sizeof *q->h);
  q->n -= n;
  return n;
}

/* ---- this node's runtimes ---- */

/* check_compatible marks l compatible when a block of EV is the first block of a prompt recently routed
 * there. */
static void check_compatible(struct local *l, const struct kv_event *ev) {
  for (int i = 0; i < ev->nhashes && !l->compatible; i++)
    for (int j = 0; j < l->nrecent; j++)
      if (ev->hashes[i] == l->recent[j]) {
        l->compatible = true;
        l->k->env.store->targets[l->id].kv_events = true; /* routers stop sharing decisions about it */
        log_info("KV-cache events name blocks as routers hash prompts: sharing them with the mesh",
                 "target=%s", l->k->env.store->targets[l->id].name);
        break;
      }
}

static void event_cb(void *arg, const struct kv_event *ev) {
  struct local *l = arg;
  struct kv_state *k = l->k;
  uint64_t now = clock_mono_ns();
  switch (ev->kind) {
  case KV_EV_STORED:
    store_kv_stored(k->env.store, l->id, ev->hashes, ev->nhashes, now);
    if (!l->compatible) check_compatible(l, ev);
    if (!l->compatible) break;
    router_cache_hint(k->env.router, l->id, ev->hashes, ev->nhashes);
    hq_push(k, &l->stored, ev->hashes, ev->nhashes);
    break;
  case KV_EV_REMOVED:
    store_kv_removed(k->env.store, l->id, ev->hashes, ev->nhashes, now);
    if (l->compatible) hq_push(k, &l->removed, ev->hashes, ev->nhashes);
    break;
  case KV_EV_CLEARED:
    store_kv_cleared(k->env.store, l->id, now);
    l->stored.n = l->removed.n = 0;
    l->cleared = l->compatible;
    break;
  }
}

static void gap_cb(void *arg) {
  struct local *l = arg;
  log_info("KV events lost: the cache view of this target may hold blocks it evicted", "target=%s",
           l->k->env.store->targets[l->id].name);
}

/* ---- routing decisions ---- */

static void routed_cb(void *arg, int id, const uint64_t *hashes, int n, bool forwarded) {
  struct kv_state *k = arg;
  const struct target *t = &k->env.store->targets[id];
  if (n <= 0) return;
  for (int i = 0; i < k->nlocals; i++) {
    struct local *l = &k->locals[i];
    if (l->id != id || l->compatible) continue;
    l->recent[l->recent_pos] = hashes[0];
    l->recent_pos = (l->recent_pos + 1) % RECENT;
    if (l->nrecent < RECENT) l->nrecent++;
  }
  if (forwarded || t->kv_events)
    return; /* its router shared it already; or its engine's own events say more */
  struct route_rec *r = &k->routes[(k->rhead + k->rn) % ROUTE_QUEUE];
  if (k->rn == ROUTE_QUEUE) {
    k->rhead = (k->rhead + 1) % ROUTE_QUEUE; /* the oldest decision goes unshared */
    k->dropped_hashes += (uint64_t)r->n;
  } else {
    k->rn++;
  }
  r->id = id;
  r->n = n < KV_STATE_ROUTE_BLOCKS ? n : KV_STATE_ROUTE_BLOCKS;
  memcpy(r->h, hashes, (size_t)r->n * sizeof *hashes);
}

/* ---- the mesh channel ---- */

/* name_target fills the target reference of a report about store target id. */
static void name_target(struct kv_state *k, int id, const uint8_t self[GOSSIP_ID_LEN],
                        struct gossip_cache *c) {
  const struct target *t = &k->env.store->targets[id];
  if (t->remote) {
    memcpy(c->target_node, t->node_id, GOSSIP_ID_LEN);
    str_copy(c->target, sizeof c->target, t->remote_name);
  } else {
    memcpy(c->target_node, self, GOSSIP_ID_LEN);
    str_copy(c->target, sizeof c->target, t->name);
  }
}

/* next_report fills c with the next thing waiting (local engine deltas round robin, then routing decisions);
 * false when nothing waits. */
static bool next_report(struct kv_state *k, const uint8_t self[GOSSIP_ID_LEN], struct gossip_cache *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < k->nlocals; i++) {
    struct local *l = &k->locals[(k->next_local + i) % k->nlocals];
    if (!l->cleared && !l->stored.n && !l->removed.n) continue;
    k->next_local = (k->next_local + i + 1) % k->nlocals;
    name_target(k, l->id, self, c);
    c->source = GOSSIP_CACHE_ENGINE;
    c->cleared = l->cleared;
    l->cleared = false;
    /* Removals first, as the engine reported them: a receiver applies removed before stored. */
    c->nremoved = hq_take(&l->removed, c->removed, GOSSIP_CACHE_HASHES);
    c->nstored = hq_take(&l->stored, c->stored, GOSSIP_CACHE_HASHES - c->nremoved);
    return true;
  }
  while (k->rn > 0) {
    struct route_rec *r = &k->routes[k->rhead];
    k->rhead = (k->rhead + 1) % ROUTE_QUEUE;
    k->rn--;
    const struct target *t = &k->env.store->targets[r->id];
    if (t->gone || t->kv_events) continue;
    name_target(k, r->id, self, c);
    c->source = GOSSIP_CACHE_ROUTE;
    c->nstored = r->n;
    memcpy(c->stored, r->h, (size_t)r->n * sizeof *r->h);
    return true;
  }
  return false;
}

void kv_state_flush(struct kv_state *k, struct gossip *g, const uint8_t self[GOSSIP_ID_LEN],
                    uint64_t now_ns) {
  if (k->last_ns) k->tokens += (double)(now_ns - k->last_ns) / 1e9 * KV_STATE_BYTES_PER_S;
  k->last_ns = now_ns;
  if (k->tokens > KV_STATE_BYTES_PER_S) k->tokens = KV_STATE_BYTES_PER_S; /* at most a second's burst */
  struct gossip_cache c;
  while (k->tokens > 0 && next_report(k, self, &c)) {
    uint64_t bytes = gossip_send_cache(g, &c);
    k->tokens -= (double)bytes;
    k->sent_bytes += bytes;
    k->sent_reports++;
  }
}

static int find_target(const struct kv_state *k, const struct gossip_cache *c,
                       const uint8_t self[GOSSIP_ID_LEN]) {
  const struct store *s = k->env.store;
  if (memcmp(c->target_node, self, GOSSIP_ID_LEN) == 0) {
    for (int i = 0; i < k->env.nlocal; i++)
      if (strcmp(s->targets[i].name, c->target) == 0) return i;
    return -1;
  }
  for (int i = k->env.nlocal; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    if (t->remote && !t->gone && memcmp(t->node_id, c->target_node, GOSSIP_ID_LEN) == 0 &&
        strcmp(t->remote_name, c->target) == 0)
      return i;
  }
  return -1;
}

void kv_state_report(struct kv_state *k, const struct gossip_cache *c, const uint8_t self[GOSSIP_ID_LEN]) {
  int id = find_target(k, c, self);
  k->reports_in++;
  if (id < 0) {
    k->reports_unknown++; /* a target whose node's load report has not come yet: later deltas will */
    return;
  }
  struct store *s = k->env.store;
  if (c->source == GOSSIP_CACHE_ROUTE) {
    if (!s->targets[id].kv_events) router_peer_decision(k->env.router, id, c->stored, c->nstored);
    return;
  }
  if (id < k->env.nlocal) return; /* an engine report about our own runtime: we read its events ourselves */
  uint64_t now = clock_mono_ns();
  s->targets[id].kv_events = true;
  if (c->cleared) store_kv_cleared(s, id, now);
  store_kv_removed(s, id, c->removed, c->nremoved, now);
  store_kv_stored(s, id, c->stored, c->nstored, now);
  router_cache_hint(k->env.router, id, c->stored, c->nstored);
}

/* ---- life ---- */

int kv_state_start(struct kv_state **out, const struct kv_state_env *env, char *err, size_t errlen) {
  struct kv_state *k = xcalloc(1, sizeof *k);
  k->env = *env;
  k->locals = xcalloc((size_t)env->nlocal + 1, sizeof *k->locals);
  for (int i = 0; i < env->nlocal && i < env->cfg->nruntimes; i++) {
    const struct config_runtime *rt = &env->cfg->runtimes[i];
    if (!rt->kv_events[0]) continue;
    struct local *l = &k->locals[k->nlocals];
    l->k = k;
    l->id = i;
    struct kv_sub_cb cb = {.event = event_cb, .gap = gap_cb, .arg = l};
    int rc = kv_sub_start(&l->sub, env->loop, rt->kv_events, &cb, err, errlen);
    if (rc != 0) {
      kv_state_close(k);
      return rc;
    }
    k->nlocals++;
    log_info("subscribed to KV-cache events", "target=%s endpoint=%s", env->store->targets[i].name,
             rt->kv_events);
  }
  env->router->routed_cb = routed_cb;
  env->router->routed_arg = k;
  *out = k;
  return 0;
}

void kv_state_metrics(const struct kv_state *k, struct buf *b) {
  buf_printf(b,
             "# HELP infermesh_kv_events_total KV-cache events read from this node's runtimes, by outcome.\n"
             "# TYPE infermesh_kv_events_total counter\n");
  for (int i = 0; i < k->nlocals; i++) {
    const struct kv_sub_stats *st = kv_sub_stats_of(k->locals[i].sub);
    const char *name = k->env.store->targets[k->locals[i].id].name;
    buf_printf(b,
               "infermesh_kv_events_total{target=\"%s\",outcome=\"applied\"} %llu\n"
               "infermesh_kv_events_total{target=\"%s\",outcome=\"skipped\"} %llu\n"
               "infermesh_kv_events_total{target=\"%s\",outcome=\"malformed_batch\"} %llu\n"
               "infermesh_kv_events_total{target=\"%s\",outcome=\"sequence_gap\"} %llu\n",
               name, (unsigned long long)st->events, name, (unsigned long long)st->skipped, name,
               (unsigned long long)st->malformed, name, (unsigned long long)st->gaps);
  }
  buf_printf(
      b,
      "# HELP infermesh_kv_mesh_bytes_total Cache-report bytes this node sent to the mesh's gateways.\n"
      "# TYPE infermesh_kv_mesh_bytes_total counter\ninfermesh_kv_mesh_bytes_total %llu\n"
      "# TYPE infermesh_kv_mesh_reports_total counter\n"
      "infermesh_kv_mesh_reports_total{dir=\"out\"} %llu\ninfermesh_kv_mesh_reports_total{dir=\"in\"} %llu\n"
      "# HELP infermesh_kv_mesh_hashes_dropped_total Block hashes never sent: over the pending bound.\n"
      "# TYPE infermesh_kv_mesh_hashes_dropped_total counter\ninfermesh_kv_mesh_hashes_dropped_total %llu\n",
      (unsigned long long)k->sent_bytes, (unsigned long long)k->sent_reports,
      (unsigned long long)k->reports_in, (unsigned long long)k->dropped_hashes);
}

void kv_state_close(struct kv_state *k) {
  if (!k) return;
  if (k->env.router->routed_arg == k) {
    k->env.router->routed_cb = NULL;
    k->env.router->routed_arg = NULL;
  }
  for (int i = 0; i < k->nlocals; i++) {
    struct local *l = &k->locals[i];
    kv_sub_close(l->sub);
    free(l->stored.h);
    free(l->removed.h);
  }
  free(k->locals);
  free(k);
}
