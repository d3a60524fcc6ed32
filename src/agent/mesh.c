/* The agent's side of the mesh: membership → remote targets, local load and meta → gossip. */
#include "agent/mesh.h"
#include "agent/kv_state.h"
#include "api/events.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/datadir.h"
#include "cluster/gossip.h"
#include "cluster/identity.h"
#include "cluster/invite.h"
#include "cluster/keyring.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "proto/gossip_codec.h"
#include "agent/mesh_tunnel.h"
#include "agent/rpc_worker.h"
#include "tunnel/tunnel.h"

#define PUBLISH_MS 50 /* how often this node's store is checked for load or meta changes */
#define MAX_NODES 1024
#define JOIN_RETRY_MS 30000 /* an invite join keeps trying its seeds this long (a seed restarting, a flood) */

/* What this node knows of another node beyond SWIM's facts. */
struct node {
  uint8_t id[GOSSIP_ID_LEN];
  char name[GOSSIP_NAME_MAX];
  struct gossip_meta meta;
  bool have_meta;
  bool alive;
  uint64_t load_rx_ns;   /* when its last load report arrived; 0 = never */
  uint32_t load_age_ms;  /* how old its signals were when sent */
};

struct mesh {
  struct mesh_env env;
  char data_dir[512];
  struct identity id;
  struct keyring kr;
  struct gossip *gossip;
  struct gossip_meta meta; /* this node's, as last announced */
  char id_short[13];
  uv_timer_t timer;
  struct node *nodes;
  int nnodes;
  bool draining;
  char raft_addr[GOSSIP_ADDR_MAX]; /* announced when this node is a Raft server */
  bool raft_formed;
  bool *pool_ready; /* by target id (store->cap), made at the first load report: its pool is initialized */
  struct mesh_tunnel tun; /* agent-to-agent streams, the rpc-server offered, the split model hosted */
  bool plain_hops;        /* --insecure-hops: pools to other agents connect in plaintext TCP */
  void (*closed_cb)(void *);
  void *closed_arg;
  int closing_parts;
  void (*spend_fn)(void *arg, const struct gossip_spend *s); /* mesh_on_spend */
  void *spend_arg;
  struct kv_state *kv; /* borrowed; NULL = none */
};

static bool pool_ready(const struct mesh *m, int id) { return m->pool_ready && m->pool_ready[id]; }

static struct node *node_find(struct mesh *m, const uint8_t id[GOSSIP_ID_LEN], bool create) {
  for (int i = 0; i < m->nnodes; i++)
    if (memcmp(m->nodes[i].id, id, GOSSIP_ID_LEN) == 0) return &m->nodes[i];
  if (!create || m->nnodes == MAX_NODES) return NULL;
  struct node *n = &m->nodes[m->nnodes++];
  memset(n, 0, sizeof *n);
  memcpy(n->id, id, GOSSIP_ID_LEN);
  return n;
}

/* ---- remote targets ---- */

/* Every target of node id leaves routing at once; requests in flight there retry elsewhere. */
static void node_gone(struct mesh *m, const uint8_t id[GOSSIP_ID_LEN], const char *why) {
  struct store *s = m->env.store;
  for (int i = m->env.nlocal; i < s->ntargets; i++) {
    struct target *t = &s->targets[i];
    if (!t->remote || t->gone || memcmp(t->node_id, id, GOSSIP_ID_LEN) != 0) continue;
    store_mark_gone(s, i);
    router_target_lost(m->env.router, i);
    if (pool_ready(m, i)) http_pool_close(&m->env.pools[i]);
    log_info("remote target out of routing", "target=%s reason=%s", t->name, why);
  }
}

static void node_set_draining(struct mesh *m, const uint8_t id[GOSSIP_ID_LEN], bool draining) {
  struct store *s = m->env.store;
  for (int i = m->env.nlocal; i < s->ntargets; i++)
    if (s->targets[i].remote && memcmp(s->targets[i].node_id, id, GOSSIP_ID_LEN) == 0)
      store_set_draining(s, i, draining);
}

static bool models_equal(const struct target *t, const struct gossip_target_load *l) {
  if (t->nmodels != l->nmodels) return false;
  for (int i = 0; i < t->nmodels; i++)
    if (strcmp(t->models[i], l->models[i]) != 0) return false;
  return true;
}

static void spend_cb(void *user, const struct gossip_spend *sp) {
  struct mesh *m = user;
  if (m->spend_fn) m->spend_fn(m->spend_arg, sp);
}

void mesh_on_spend(struct mesh *m, void (*fn)(void *arg, const struct gossip_spend *s), void *arg) {
  m->spend_fn = fn;
  m->spend_arg = arg;
}

void mesh_send_spend(struct mesh *m, struct gossip_spend *s) { gossip_send_spend(m->gossip, s); }

int mesh_num_alive(const struct mesh *m) { return swim_num_alive(gossip_swim(m->gossip)); }

static void load_cb(void *user, const struct gossip_load *l) {
  struct mesh *m = user;
  struct store *s = m->env.store;
  struct node *n = node_find(m, l->from, false);
  uint64_t now = clock_mono_ns();
  if (!n || !n->have_meta || !n->alive || !n->meta.api_addr[0]) return;
  n->load_rx_ns = now;
  n->load_age_ms = l->age_ms;
  if (!m->pool_ready) m->pool_ready = xcalloc((size_t)s->cap, sizeof *m->pool_ready);
  bool *seen = xcalloc((size_t)s->cap, sizeof *seen);
  for (int k = 0; k < l->ntargets; k++) {
    const struct gossip_target_load *tl = &l->targets[k];
    bool changed;
    int id = store_add_remote(s, n->name, n->id, tl->name, n->meta.api_addr, tl->kind, &changed);
    if (id < 0) {
      log_warn("cannot add remote target", "node=%s target=%s err=%d", n->name, tl->name, id);
      continue;
    }
    seen[id] = true;
    struct target *t = &s->targets[id];
    if (changed) {
      if (m->pool_ready[id]) http_pool_close(&m->env.pools[id]);
      m->pool_ready[id] = http_pool_init(&m->env.pools[id], m->env.loop, t->host, t->port) == 0;
      if (m->pool_ready[id] && !m->plain_hops) http_pool_set_dialer(&m->env.pools[id], &m->tun.dialer, n->id);
      log_info("remote target joined routing", "target=%s via=%s", t->name, n->meta.api_addr);
    }
    if (!models_equal(t, tl)) {
      const char *names[GOSSIP_LOAD_MODELS];
      for (int j = 0; j < tl->nmodels; j++) names[j] = tl->models[j];
      store_set_models(s, id, names, tl->nmodels);
    }
    store_set_zone(s, id, n->meta.zone);
    store_set_draining(s, id, n->meta.draining);
    store_set_degraded(s, id, tl->gpu_degraded);
    if (!m->pool_ready[id] || !tl->healthy) {
      const char *why = m->pool_ready[id] ? "unhealthy on its node" : "bad API address";
      if (t->healthy) events_target(t->name, n->name, false, why);
      store_mark_down(s, id, why);
      continue;
    }
    if (!t->healthy) events_target(t->name, n->name, true, "");
    struct target_load load = {0};
    load.waiting = tl->waiting;
    load.running = tl->running;
    load.kv_usage = tl->kv_usage;
    load.block_size = tl->kv_capacity_tokens > 0 ? 1 : 0;
    load.num_gpu_blocks = tl->kv_capacity_tokens;
    if (tl->prefix_hit_rate >= 0) load.prefix_queries = 1, load.prefix_hits = tl->prefix_hit_rate;
    load.prompt_tps = tl->prompt_tps;
    load.gen_tps = tl->gen_tps;
    load.ttft_p50 = tl->ttft_p50_ms >= 0 ? tl->ttft_p50_ms / 1e3 : -1;
    load.ttft_p95 = load.itl_p50 = load.itl_p95 = -1; /* not in load reports */
    /* The signals were age_ms old when sent: scoring sees their true age. */
    uint64_t age_ns = (uint64_t)l->age_ms * 1000000u;
    store_report(s, id, &load, now > age_ns ? now - age_ns : 1);
  }
  for (int i = m->env.nlocal; i < s->ntargets; i++) {
    struct target *t = &s->targets[i];
    if (t->remote && !t->gone && !seen[i] && memcmp(t->node_id, n->id, GOSSIP_ID_LEN) == 0) {
      store_mark_gone(s, i);
      router_target_lost(m->env.router, i);
    }
  }
  free(seen);
}

static void member_cb(void *user, const struct swim_member *sm, enum swim_event ev, const struct gossip_meta *meta) {
  struct mesh *m = user;
  char sid[13];
  identity_short(sm->u.id, sid);
  struct node *n = node_find(m, sm->u.id, ev != SWIM_EV_FORGOTTEN);
  if (!n) return;
  str_copy(n->name, sizeof n->name, sm->u.name);
  switch (ev) {
  case SWIM_EV_JOIN:
  case SWIM_EV_UPDATE:
  case SWIM_EV_ALIVE:
    n->alive = true;
    if (meta) {
      bool was = n->have_meta && n->meta.draining;
      n->meta = *meta;
      n->have_meta = true;
      if (was != meta->draining) {
        node_set_draining(m, sm->u.id, meta->draining);
        log_info(meta->draining ? "node draining" : "node undrained", "node=%s", n->name);
        events_drain(n->name, meta->draining);
      }
    }
    if (ev != SWIM_EV_UPDATE)
      log_info(ev == SWIM_EV_JOIN ? "member joined" : "member alive again", "node=%s id=%s addr=%s incarnation=%llu",
               n->name, sid, sm->u.addr, (unsigned long long)sm->u.incarnation);
    if (ev != SWIM_EV_UPDATE) events_member(n->name, sid, "alive", sm->u.incarnation);
    break;
  case SWIM_EV_SUSPECT:
    log_info("member suspect", "node=%s id=%s", n->name, sid);
    events_member(n->name, sid, "suspect", sm->u.incarnation);
    break;
  case SWIM_EV_DEAD:
  case SWIM_EV_LEFT:
    n->alive = false;
    log_info(ev == SWIM_EV_DEAD ? "member dead" : "member left", "node=%s id=%s", n->name, sid);
    events_member(n->name, sid, ev == SWIM_EV_DEAD ? "dead" : "left", sm->u.incarnation);
    node_gone(m, sm->u.id, ev == SWIM_EV_DEAD ? "dead" : "left");
    break;
  case SWIM_EV_FORGOTTEN:
    *n = m->nodes[--m->nnodes];
    break;
  }
}

/* ---- this node's meta and load ---- */

static uint32_t parse_roles(const struct agent_config *cfg) {
  uint32_t r = cfg->cluster.server ? GOSSIP_ROLE_SERVER : 0; /* a Raft server says so, whatever --roles says */
  const char *s = cfg->cluster.roles;
  if (!s[0]) return r | GOSSIP_ROLE_GATEWAY | (cfg->nruntimes ? GOSSIP_ROLE_GPU : 0);
  r |= strstr(s, "gpu") ? GOSSIP_ROLE_GPU : 0;
  r |= strstr(s, "gateway") ? GOSSIP_ROLE_GATEWAY : 0;
  r |= strstr(s, "server") ? GOSSIP_ROLE_SERVER : 0;
  return r;
}

/* Build this node's meta from the configuration and the models its own targets serve now. */
static void build_meta(struct mesh *m, struct gossip_meta *meta) {
  const struct agent_config *cfg = m->env.cfg;
  const struct store *s = m->env.store;
  memset(meta, 0, sizeof *meta);
  meta->roles = parse_roles(cfg);
  str_copy(meta->zone, sizeof meta->zone, cfg->cluster.zone);
  str_copy(meta->provider, sizeof meta->provider, cfg->provider);
  str_copy(meta->api_addr, sizeof meta->api_addr, m->env.api_addr);
  meta->draining = m->draining;
  str_copy(meta->raft_addr, sizeof meta->raft_addr, m->raft_addr);
  meta->raft_formed = m->raft_formed;
  if (m->env.gpu) {
    meta->gpus = (uint32_t)m->env.gpu->ngpus;
    for (int i = 0; i < m->env.gpu->ngpus; i++) meta->gpus_degraded += m->env.gpu->gpus[i].health == GPU_HEALTH_DEGRADED;
  }
  char labels[256];
  str_copy(labels, sizeof labels, cfg->cluster.labels);
  for (char *p = labels, *next; p && *p && meta->nlabels < GOSSIP_META_LABELS; p = next) {
    next = strchr(p, ',');
    if (next) *next++ = '\0';
    char *eq = strchr(p, '=');
    if (!eq) continue;
    *eq = '\0';
    str_copy(meta->label_key[meta->nlabels], sizeof meta->label_key[0], p);
    str_copy(meta->label_value[meta->nlabels], sizeof meta->label_value[0], eq + 1);
    meta->nlabels++;
  }
  const struct rpc_worker *rw = m->tun.rpc;
  if (rw && meta->nlabels + 3 <= GOSSIP_META_LABELS) {
    meta->roles |= GOSSIP_ROLE_RPC;
    str_copy(meta->label_key[meta->nlabels], sizeof meta->label_key[0], "rpc");
    snprintf(meta->label_value[meta->nlabels++], sizeof meta->label_value[0], "%d", rpc_worker_port(rw));
    str_copy(meta->label_key[meta->nlabels], sizeof meta->label_key[0], "rpc_mem_mb");
    snprintf(meta->label_value[meta->nlabels++], sizeof meta->label_value[0], "%llu",
             (unsigned long long)rpc_worker_mem_mb(rw));
    if (rpc_worker_holder(rw)[0]) {
      str_copy(meta->label_key[meta->nlabels], sizeof meta->label_key[0], "rpc_host");
      str_copy(meta->label_value[meta->nlabels++], sizeof meta->label_value[0], rpc_worker_holder(rw));
    }
  }
  for (int i = 0; i < m->env.nlocal; i++) {
    const struct target *t = &s->targets[i];
    for (int j = 0; j < t->nmodels && meta->nmodels < GOSSIP_META_MODELS; j++) {
      bool dup = false;
      for (int k = 0; k < meta->nmodels && !dup; k++) dup = strcmp(meta->models[k].name, t->models[j]) == 0;
      if (dup) continue;
      struct gossip_model *gm = &meta->models[meta->nmodels++];
      str_copy(gm->name, sizeof gm->name, t->models[j]);
      str_copy(gm->kind, sizeof gm->kind, t->kind);
      gm->capacity_tokens = t->load.block_size * t->load.num_gpu_blocks;
    }
  }
}

static void build_load(struct mesh *m, struct gossip_load *l, uint64_t now) {
  const struct store *s = m->env.store;
  uint64_t newest = 0;
  memset(l, 0, sizeof *l);
  for (int i = 0; i < m->env.nlocal && l->ntargets < GOSSIP_LOAD_TARGETS; i++) {
    const struct target *t = &s->targets[i];
    struct gossip_target_load *tl = &l->targets[l->ntargets++];
    str_copy(tl->name, sizeof tl->name, t->name);
    str_copy(tl->kind, sizeof tl->kind, t->kind);
    for (int j = 0; j < t->nmodels && tl->nmodels < GOSSIP_LOAD_MODELS; j++)
      str_copy(tl->models[tl->nmodels++], sizeof tl->models[0], t->models[j]);
    tl->healthy = t->healthy; /* draining travels in the meta */
    tl->gpu_degraded = t->gpu_degraded;
    tl->waiting = t->load.waiting;
    tl->running = t->load.running;
    tl->kv_usage = t->load.kv_usage;
    tl->kv_capacity_tokens = t->load.block_size * t->load.num_gpu_blocks;
    tl->prefix_hit_rate = t->load.prefix_queries > 0 ? t->load.prefix_hits / t->load.prefix_queries : -1;
    tl->prompt_tps = t->load.prompt_tps; /* window rates; negative: unknown */
    tl->gen_tps = t->load.gen_tps;
    tl->ttft_p50_ms = t->load.ttft_p50 >= 0 ? t->load.ttft_p50 * 1e3 : -1;
    tl->inflight = t->inflight;
    if (t->updated_ns > newest) newest = t->updated_ns;
  }
  l->age_ms = newest && now > newest ? (uint32_t)((now - newest) / 1000000u) : 0;
}

/* An rpc-server held by a host that is no longer an alive member (it left, or died; a member of that name with
 * another node id is another node) is freed. */
static void check_rpc_holder(struct mesh *m) {
  bool self;
  char host[64];
  uint8_t id[GOSSIP_ID_LEN];
  if (!m->tun.rpc || !rpc_worker_holder(m->tun.rpc)[0]) return;
  str_copy(host, sizeof host, rpc_worker_holder(m->tun.rpc));
  if (!mesh_find_node(m, host, &self, id) || memcmp(id, rpc_worker_holder_id(m->tun.rpc), sizeof id) != 0)
    rpc_worker_release(m->tun.rpc, host, NULL, "the host left the mesh");
}

static void timer_cb(uv_timer_t *h) {
  struct mesh *m = h->data;
  struct gossip_meta meta;
  struct gossip_load load;
  uint64_t now = clock_mono_ns();
  check_rpc_holder(m);
  build_meta(m, &meta);
  if (memcmp(&meta, &m->meta, sizeof meta) != 0) {
    m->meta = meta;
    gossip_set_meta(m->gossip, &meta);
  }
  build_load(m, &load, now);
  gossip_publish_load(m->gossip, &load);
  if (m->kv) kv_state_flush(m->kv, m->gossip, m->id.pk, now);
}

static void cache_cb(void *user, const struct gossip_cache *c) {
  struct mesh *m = user;
  if (m->kv) kv_state_report(m->kv, c, m->id.pk);
}

void mesh_set_kv(struct mesh *m, struct kv_state *kv) { m->kv = kv; }

/* ---- start ---- */

/* next_boot_id returns this process's life number: the wall clock in microseconds, but always above the one
 * the last start recorded in the data dir (a clock stepped back must not make gateways ignore the new
 * process's load reports as older than the previous one's). Records it; a failure to record is logged. */
static uint64_t next_boot_id(const char *dir) {
  char path[600], buf[32], err[256];
  size_t len = 0;
  uint64_t prev = 0, boot;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  boot = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  if (datadir_path(path, sizeof path, dir, "boot.id") == 0 &&
      datadir_read_file(path, buf, sizeof buf, &len, 0, err, sizeof err) == 0) {
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = '\0';
    if (slice_to_u64(slice_make(buf, len), &prev) != 0) prev = 0;
  }
  if (boot <= prev) boot = prev + 1;
  int n = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)boot);
  if (datadir_write_private(dir, "boot.id", buf, (size_t)n, 1, err, sizeof err) != 0)
    log_warn("cannot record this start's boot id", "err=\"%s\"", err);
  return boot;
}

static bool is_token(const char *s) { return strncmp(s, "imt1.", 5) == 0; }

int mesh_start(struct mesh **out, const struct mesh_env *env, char *err, size_t errlen) {
  const struct config_cluster *cc = &env->cfg->cluster;
  char dir[512];
  char why[512];
  int rc;
  *out = NULL;
  if (cc->data_dir[0]) str_copy(dir, sizeof dir, cc->data_dir);
  else if (datadir_default(dir, sizeof dir) != 0) {
    snprintf(err, errlen, "no data dir: pass --data-dir DIR");
    return -EINVAL;
  }
  const char *token = NULL;
  for (int i = 0; i < cc->njoin && !token; i++)
    if (is_token(cc->join[i])) token = cc->join[i];
  struct mesh *m = xcalloc(1, sizeof *m);
  m->env = *env;
  str_copy(m->data_dir, sizeof m->data_dir, dir);
  rc = keyring_load(&m->kr, dir, why, sizeof why);
  if (rc == -ENOENT && !token && cc->njoin == 0) {
    free(m); /* no cluster: this agent runs alone */
    return 0;
  }
  if (rc == -ENOENT && !token) {
    snprintf(err, errlen, "no cluster key in %s: joining by address needs it; join with an invite token "
                          "(`infermesh invite` on a member) or pass the member's --data-dir", dir);
    free(m);
    return -ENOENT;
  }
  if (rc != 0 && rc != -ENOENT) {
    snprintf(err, errlen, "%s", why);
    free(m);
    return rc;
  }
  if ((rc = datadir_ensure(dir, why, sizeof why)) != 0 ||
      (rc = identity_load_or_create(&m->id, dir, why, sizeof why)) != 0) {
    snprintf(err, errlen, "%s", why);
    free(m);
    return rc;
  }
  if (rc == 0 && m->kr.nkeys == 0) {
    /* First start with an invite: fetch the cluster key from a seed, then keep it. */
    log_info("joining with an invite: fetching the cluster key", "data_dir=%s", dir);
    rc = gossip_fetch_keyring(token, &m->id, &m->kr, 5000, JOIN_RETRY_MS, why, sizeof why);
    if (rc == 0) rc = keyring_save(&m->kr, dir, why, sizeof why);
    if (rc != 0) {
      snprintf(err, errlen, "%s", why);
      free(m);
      return rc;
    }
  }
  identity_short(m->id.pk, m->id_short);
  m->nodes = xcalloc(MAX_NODES, sizeof *m->nodes);
  struct gossip_config gc;
  gossip_config_default(&gc);
  const char *colon = strrchr(cc->gossip, ':');
  uint64_t port;
  if (!colon || colon == cc->gossip || (size_t)(colon - cc->gossip) >= sizeof gc.bind_host ||
      slice_to_u64(slice_cstr(colon + 1), &port) != 0 || port > 65535) {
    snprintf(err, errlen, "gossip address '%s' is not HOST:PORT (e.g. 127.0.0.1:7946)", cc->gossip);
    free(m->nodes);
    free(m);
    return -EINVAL;
  }
  const char *h = cc->gossip;
  size_t hl = (size_t)(colon - h);
  if (h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
  memcpy(gc.bind_host, h, hl);
  gc.bind_host[hl] = '\0';
  gc.bind_port = (int)port;
  if ((strcmp(gc.bind_host, "0.0.0.0") == 0 || strcmp(gc.bind_host, "::") == 0) && !cc->advertise[0]) {
    snprintf(err, errlen, "gossip listens on every address (%s): pass --advertise HOST:PORT so that other nodes "
                          "know where to reach this one", cc->gossip);
    free(m->nodes);
    free(m);
    return -EINVAL;
  }
  str_copy(gc.advertise, sizeof gc.advertise, cc->advertise);
  gc.boot_id = next_boot_id(dir);
  if (cc->probe_interval_ms) gc.swim.probe_interval_ms = cc->probe_interval_ms;
  if (cc->probe_timeout_ms) gc.swim.probe_timeout_ms = cc->probe_timeout_ms;
  if (cc->gossip_interval_ms) gc.swim.gossip_interval_ms = cc->gossip_interval_ms;
  if (cc->suspicion_mult) gc.swim.suspicion_mult = cc->suspicion_mult;
  if (cc->indirect_checks) gc.swim.indirect_checks = cc->indirect_checks;
  if (cc->gossip_nodes) gc.swim.gossip_nodes = cc->gossip_nodes;
  build_meta(m, &m->meta);
  struct gossip_callbacks cb = {.member = member_cb, .load = load_cb, .cache = cache_cb, .spend = spend_cb};
  rc = gossip_start(&m->gossip, env->loop, &gc, &m->id, &m->kr, env->cfg->node_name, &m->meta, &cb, m, err, errlen);
  if (rc != 0) {
    free(m->nodes);
    free(m);
    return rc;
  }
  m->plain_hops = cc->insecure_hops;
  struct mesh_tunnel_env te = {.loop = env->loop, .mesh = m, .gossip = m->gossip, .id = &m->id, .kr = &m->kr,
                               .cfg = env->cfg, .api_addr = env->api_addr, .hop_port = env->hop_port, .store = env->store,
                               .nlocal = env->nlocal};
  if ((rc = mesh_tunnel_start(&m->tun, &te, err, errlen)) != 0) {
    gossip_close(m->gossip, NULL, NULL);
    mesh_tunnel_close(&m->tun, NULL, NULL);
    free(m->nodes);
    free(m);
    return rc;
  }
  if (cc->insecure_hops) log_warn("agent-to-agent requests travel in plaintext (--insecure-hops)", "node=%s",
                                  env->cfg->node_name);
  /* Seeds: addresses given with --join, and those of any invite token. */
  const char *seeds[CONFIG_MAX_JOIN * 8];
  int nseeds = 0;
  struct invite inv;
  for (int i = 0; i < cc->njoin; i++) {
    if (!is_token(cc->join[i])) {
      seeds[nseeds++] = cc->join[i];
    } else if (invite_parse(cc->join[i], &inv, why, sizeof why) == 0) {
      static char tokseeds[CONFIG_MAX_JOIN * 8][GOSSIP_ADDR_MAX];
      for (int j = 0; j < inv.nseeds && nseeds < CONFIG_MAX_JOIN * 8; j++) {
        str_copy(tokseeds[nseeds], sizeof tokseeds[0], inv.seeds[j]);
        seeds[nseeds] = tokseeds[nseeds];
        nseeds++;
      }
    }
  }
  invite_wipe(&inv);
  if (nseeds) gossip_join(m->gossip, seeds, nseeds);
  uv_timer_init(env->loop, &m->timer);
  m->timer.data = m;
  uv_timer_start(&m->timer, timer_cb, PUBLISH_MS, PUBLISH_MS);
  log_info("mesh on", "node=%s id=%s gossip=%s seeds=%d data_dir=%s hops=%s", env->cfg->node_name, m->id_short,
           gossip_advertise(m->gossip), nseeds, dir, m->plain_hops ? "plaintext" : "tunnel");
  *out = m;
  return 0;
}

/* ---- API ---- */

static const char *state_name(enum gossip_state s) {
  switch (s) {
  case GOSSIP_ALIVE: return "alive";
  case GOSSIP_SUSPECT: return "suspect";
  case GOSSIP_DEAD: return "dead";
  case GOSSIP_LEFT: return "left";
  }
  return "?";
}

struct json_ctx {
  struct mesh *m;
  struct buf *out;
  int n;
  uint64_t now;
};

static void meta_json(struct buf *b, const struct gossip_meta *meta) {
  static const char *const role_names[] = {"gpu", "gateway", "server", "rpc"};
  buf_puts(b, ",\"roles\":[");
  int nr = 0;
  for (int i = 0; i < 4; i++)
    if (meta->roles & (1u << i)) buf_printf(b, "%s\"%s\"", nr++ ? "," : "", role_names[i]);
  buf_puts(b, "],\"zone\":");
  buf_json_str(b, slice_cstr(meta->zone));
  buf_puts(b, ",\"provider\":");
  buf_json_str(b, slice_cstr(meta->provider));
  buf_puts(b, ",\"api\":");
  buf_json_str(b, slice_cstr(meta->api_addr));
  buf_printf(b, ",\"draining\":%s,\"gpus\":%u,\"gpus_degraded\":%u,\"labels\":{", meta->draining ? "true" : "false",
             meta->gpus, meta->gpus_degraded);
  for (int i = 0; i < meta->nlabels; i++) {
    if (i) buf_puts(b, ",");
    buf_json_str(b, slice_cstr(meta->label_key[i]));
    buf_puts(b, ":");
    buf_json_str(b, slice_cstr(meta->label_value[i]));
  }
  buf_puts(b, "},\"models\":[");
  for (int i = 0; i < meta->nmodels; i++) {
    buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
    buf_json_str(b, slice_cstr(meta->models[i].name));
    buf_puts(b, ",\"kind\":");
    buf_json_str(b, slice_cstr(meta->models[i].kind));
    buf_printf(b, ",\"capacity_tokens\":%lld}", (long long)meta->models[i].capacity_tokens);
  }
  buf_puts(b, "]");
}

static void member_json_cb(void *arg, const struct swim_member *sm) {
  struct json_ctx *c = arg;
  struct buf *b = c->out;
  char hex[65], sid[13];
  identity_hex(sm->u.id, hex);
  identity_short(sm->u.id, sid);
  buf_puts(b, c->n++ ? ",{\"name\":" : "{\"name\":");
  buf_json_str(b, slice_cstr(sm->u.name));
  buf_printf(b, ",\"id\":\"%s\",\"id_short\":\"%s\",\"addr\":", hex, sid);
  buf_json_str(b, slice_cstr(sm->u.addr));
  buf_printf(b, ",\"state\":\"%s\",\"incarnation\":%llu,\"self\":%s", state_name(sm->u.state),
             (unsigned long long)sm->u.incarnation, sm->is_self ? "true" : "false");
  const struct node *n = sm->is_self ? NULL : node_find(c->m, sm->u.id, false);
  if (sm->is_self) {
    meta_json(b, &c->m->meta);
    struct gossip_load l;
    build_load(c->m, &l, c->now);
    buf_printf(b, ",\"load_age_ms\":%u", l.age_ms);
  } else if (n && n->have_meta) {
    meta_json(b, &n->meta);
    if (n->load_rx_ns)
      buf_printf(b, ",\"load_age_ms\":%llu",
                 (unsigned long long)((c->now - n->load_rx_ns) / 1000000u + n->load_age_ms));
    else
      buf_puts(b, ",\"load_age_ms\":null");
  } else {
    buf_puts(b, ",\"roles\":[],\"models\":[],\"load_age_ms\":null");
  }
  buf_puts(b, "}");
}

void mesh_members_json(struct mesh *m, struct buf *out) {
  struct json_ctx c = {m, out, 0, clock_mono_ns()};
  char hex[65];
  identity_hex(m->id.pk, hex);
  buf_printf(out, "{\"self\":\"%s\",\"awareness\":%d,\"members\":[", hex, swim_awareness(gossip_swim(m->gossip)));
  swim_each(gossip_swim(m->gossip), member_json_cb, &c);
  buf_puts(out, "]}");
}

void mesh_metrics(struct mesh *m, struct buf *b) {
  const struct gossip_counters *gc = gossip_counters(m->gossip);
  tunnel_metrics(m->tun.tunnel, b);
  const struct swim_stats *st = swim_stats(gossip_swim(m->gossip));
  buf_printf(b, "# HELP infermesh_gossip_members Members by state as this node sees them.\n"
                "# TYPE infermesh_gossip_members gauge\ninfermesh_gossip_members{state=\"alive\"} %d\n",
             swim_num_alive(gossip_swim(m->gossip)));
  buf_printf(b, "# HELP infermesh_gossip_packets_dropped_total Gossip packets dropped, by reason.\n"
                "# TYPE infermesh_gossip_packets_dropped_total counter\n"
                "infermesh_gossip_packets_dropped_total{reason=\"auth\"} %llu\n"
                "infermesh_gossip_packets_dropped_total{reason=\"malformed\"} %llu\n"
                "infermesh_gossip_packets_dropped_total{reason=\"send\"} %llu\n",
             (unsigned long long)(gc->dropped_auth + m->kr.dropped), (unsigned long long)gc->dropped_malformed,
             (unsigned long long)gc->dropped_send);
  buf_printf(b, "# TYPE infermesh_gossip_bytes_total counter\ninfermesh_gossip_bytes_total{dir=\"in\"} %llu\n"
                "infermesh_gossip_bytes_total{dir=\"out\"} %llu\n",
             (unsigned long long)gc->bytes_in, (unsigned long long)gc->bytes_out);
  buf_printf(b, "# TYPE infermesh_gossip_suspicions_total counter\ninfermesh_gossip_suspicions_total %llu\n"
                "# TYPE infermesh_gossip_deaths_total counter\ninfermesh_gossip_deaths_total %llu\n"
                "# TYPE infermesh_gossip_refutations_total counter\ninfermesh_gossip_refutations_total %llu\n"
                "# TYPE infermesh_gossip_awareness gauge\ninfermesh_gossip_awareness %d\n",
             (unsigned long long)st->suspicions, (unsigned long long)st->deaths, (unsigned long long)st->refutations,
             swim_awareness(gossip_swim(m->gossip)));
  buf_printf(b, "# TYPE infermesh_gossip_pushpull_total counter\ninfermesh_gossip_pushpull_total{dir=\"in\"} %llu\n"
                "infermesh_gossip_pushpull_total{dir=\"out\"} %llu\ninfermesh_gossip_pushpull_total{dir=\"failed\"} %llu\n",
             (unsigned long long)gc->pushpull_in, (unsigned long long)gc->pushpull_out,
             (unsigned long long)gc->pushpull_failed);
  buf_printf(b, "# HELP infermesh_gossip_spend_reports_total Tenant spend reports (budgets) sent and received.\n"
                "# TYPE infermesh_gossip_spend_reports_total counter\n"
                "infermesh_gossip_spend_reports_total{dir=\"in\"} %llu\n"
                "infermesh_gossip_spend_reports_total{dir=\"out\"} %llu\n",
             (unsigned long long)gc->spends_in, (unsigned long long)gc->spends_out);
  buf_printf(b, "# HELP infermesh_gossip_kind_bytes_out_total Bytes sent, by what they carried (the rest of "
                "infermesh_gossip_bytes_total{dir=\"out\"} is SWIM).\n# TYPE infermesh_gossip_kind_bytes_out_total counter\n"
                "infermesh_gossip_kind_bytes_out_total{kind=\"load\"} %llu\n"
                "infermesh_gossip_kind_bytes_out_total{kind=\"cache\"} %llu\n",
             (unsigned long long)gc->load_bytes_out, (unsigned long long)gc->cache_bytes_out);
  buf_printf(b, "# TYPE infermesh_gossip_cache_reports_total counter\n"
                "infermesh_gossip_cache_reports_total{dir=\"in\"} %llu\ninfermesh_gossip_cache_reports_total{dir=\"out\"} %llu\n",
             (unsigned long long)gc->caches_in, (unsigned long long)gc->caches_out);
}

struct keyring *mesh_keyring(struct mesh *m) { return &m->kr; }

const char *mesh_node_name(const struct mesh *m) { return m->env.cfg->node_name; }
const char *mesh_node_id_short(const struct mesh *m) { return m->id_short; }

void mesh_set_drain(struct mesh *m, bool draining) {
  if (m->draining == draining) return;
  m->draining = draining;
  events_drain(mesh_node_name(m), draining);
  for (int i = 0; i < m->env.nlocal; i++) store_set_draining(m->env.store, i, draining);
  log_info(draining ? "this node is draining: no new requests to its runtimes" : "this node is undrained",
           "in_flight=%d", m->env.router->inflight);
  timer_cb(&m->timer); /* announce now */
}

bool mesh_draining(const struct mesh *m) { return m->draining; }

const char *mesh_find_node(const struct mesh *m, const char *name, bool *self, uint8_t *id) {
  *self = strcmp(name, m->env.cfg->node_name) == 0 || (strlen(name) >= 6 && strncmp(m->id_short, name, strlen(name)) == 0);
  if (*self) {
    if (id) memcpy(id, m->id.pk, GOSSIP_ID_LEN);
    return m->env.api_addr;
  }
  for (int i = 0; i < m->nnodes; i++) {
    const struct node *n = &m->nodes[i];
    char sid[13];
    identity_short(n->id, sid);
    if (!n->alive || !n->have_meta) continue;
    if (strcmp(n->name, name) == 0 || (strlen(name) >= 6 && strncmp(sid, name, strlen(name)) == 0)) {
      if (id) memcpy(id, n->id, GOSSIP_ID_LEN);
      return n->meta.api_addr;
    }
  }
  return NULL;
}

const char *mesh_node_provider(const struct mesh *m, const char *name) {
  if (strcmp(name, m->env.cfg->node_name) == 0) return m->env.cfg->provider[0] ? m->env.cfg->provider : NULL;
  for (int i = 0; i < m->nnodes; i++) {
    const struct node *n = &m->nodes[i];
    if (n->have_meta && strcmp(n->name, name) == 0) return n->meta.provider[0] ? n->meta.provider : NULL;
  }
  return NULL;
}

void mesh_reload_keyring(struct mesh *m) {
  char why[512];
  if (keyring_reload(&m->kr, m->data_dir, why, sizeof why) != 0) {
    log_warn("keyring reload failed: keeping the current keys", "err=\"%s\"", why);
    return;
  }
  log_info("keyring reloaded", "keys=%d", m->kr.nkeys);
}

void mesh_leave(struct mesh *m, void (*done_cb)(void *arg), void *arg) {
  log_info("leaving the mesh", "node=%s", m->env.cfg->node_name);
  gossip_leave(m->gossip, done_cb, arg);
}

static void part_closed(struct mesh *m) {
  if (--m->closing_parts > 0) return;
  void (*cb)(void *) = m->closed_cb;
  void *arg = m->closed_arg;
  keyring_wipe(&m->kr);
  identity_wipe(&m->id);
  free(m->nodes);
  free(m->pool_ready);
  free(m);
  if (cb) cb(arg);
}

static void timer_closed_cb(uv_handle_t *h) { part_closed(h->data); }
static void gossip_closed_cb(void *arg) { part_closed(arg); }
static void tunnel_part_closed_cb(void *arg) { part_closed(arg); }

void mesh_close(struct mesh *m, void (*closed_cb)(void *arg), void *arg) {
  m->closed_cb = closed_cb;
  m->closed_arg = arg;
  m->closing_parts = 2 + mesh_tunnel_parts(&m->tun);
  for (int i = m->env.nlocal; i < m->env.store->ntargets; i++)
    if (pool_ready(m, i)) http_pool_close(&m->env.pools[i]);
  uv_close((uv_handle_t *)&m->timer, timer_closed_cb);
  gossip_close(m->gossip, gossip_closed_cb, m);
  mesh_tunnel_close(&m->tun, tunnel_part_closed_cb, m);
}

void mesh_set_raft(struct mesh *m, const char *raft_addr, bool formed) {
  if (strcmp(m->raft_addr, raft_addr) == 0 && m->raft_formed == formed) return;
  str_copy(m->raft_addr, sizeof m->raft_addr, raft_addr);
  m->raft_formed = formed;
  timer_cb(&m->timer); /* announce now */
}

const uint8_t *mesh_node_id(const struct mesh *m) { return m->id.pk; }

const struct identity *mesh_identity(const struct mesh *m) { return &m->id; }

int mesh_rpc_workers(const struct mesh *m, struct mesh_rpc_worker *out, int max) {
  int n = 0;
  for (int i = 0; i < m->nnodes && n < max; i++) {
    const struct node *nd = &m->nodes[i];
    if (!nd->alive || !nd->have_meta || !(nd->meta.roles & GOSSIP_ROLE_RPC)) continue;
    struct mesh_rpc_worker w = {.port = 0};
    for (int k = 0; k < nd->meta.nlabels; k++) {
      uint64_t v;
      if (slice_to_u64(slice_cstr(nd->meta.label_value[k]), &v) != 0) continue;
      if (strcmp(nd->meta.label_key[k], "rpc") == 0 && v > 0 && v <= 65535) w.port = (int)v;
      if (strcmp(nd->meta.label_key[k], "rpc_mem_mb") == 0) w.mem_mb = v;
    }
    for (int k = 0; k < nd->meta.nlabels; k++)
      if (strcmp(nd->meta.label_key[k], "rpc_host") == 0)
        str_copy(w.holder, sizeof w.holder, nd->meta.label_value[k]);
    if (!w.port) continue;
    str_copy(w.name, sizeof w.name, nd->name);
    int j = n++;
    for (; j > 0 && out[j - 1].mem_mb < w.mem_mb; j--) out[j] = out[j - 1];
    out[j] = w;
  }
  return n;
}

struct rpc_worker *mesh_rpc_offer(struct mesh *m) { return m->tun.rpc; }

const struct http_dialer *mesh_hop_dialer(const struct mesh *m) { return m->plain_hops ? NULL : &m->tun.dialer; }

struct tunnel *mesh_tunnel(struct mesh *m) { return m->tun.tunnel; }

int mesh_servers(const struct mesh *m, struct mesh_server *out, int max) {
  int n = 0;
  if (m->raft_addr[0] && n < max) {
    struct mesh_server *s = &out[n++];
    memcpy(s->id, m->id.pk, sizeof s->id);
    str_copy(s->name, sizeof s->name, m->env.cfg->node_name);
    str_copy(s->api_addr, sizeof s->api_addr, m->env.api_addr);
    str_copy(s->raft_addr, sizeof s->raft_addr, m->raft_addr);
    s->formed = m->raft_formed;
    s->self = true;
  }
  for (int i = 0; i < m->nnodes && n < max; i++) {
    const struct node *nd = &m->nodes[i];
    if (!nd->alive || !nd->have_meta || !nd->meta.raft_addr[0]) continue;
    struct mesh_server *s = &out[n++];
    memcpy(s->id, nd->id, sizeof s->id);
    str_copy(s->name, sizeof s->name, nd->name);
    str_copy(s->api_addr, sizeof s->api_addr, nd->meta.api_addr);
    str_copy(s->raft_addr, sizeof s->raft_addr, nd->meta.raft_addr);
    s->formed = nd->meta.raft_formed;
    s->self = false;
  }
  return n;
}

const char *mesh_data_dir(const struct mesh *m) { return m->data_dir; }

int mesh_left_servers(const struct mesh *m, struct mesh_server *out, int max) {
  int n = 0;
  for (int i = 0; i < m->nnodes && n < max; i++) {
    const struct node *nd = &m->nodes[i];
    if (nd->alive || !nd->have_meta || !nd->meta.raft_addr[0]) continue;
    const struct swim_member *sm = swim_find(gossip_swim(m->gossip), nd->id);
    if (!sm || sm->u.state != GOSSIP_LEFT) continue;
    struct mesh_server *s = &out[n++];
    memset(s, 0, sizeof *s);
    memcpy(s->id, nd->id, sizeof s->id);
    str_copy(s->name, sizeof s->name, nd->name);
    str_copy(s->api_addr, sizeof s->api_addr, nd->meta.api_addr);
    str_copy(s->raft_addr, sizeof s->raft_addr, nd->meta.raft_addr);
    s->formed = nd->meta.raft_formed;
  }
  return n;
}
