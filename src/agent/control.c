/* The agent's control plane: Raft server lifecycle (bootstrap, membership), read replica, proposals. */
#include "agent/control_int.h"
#include "api/events.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

#define TICK_MS 200
#define STATE_WAIT_MS 20000
#define MAX_SERVERS 64

const struct fsm *control_fsm(const struct control *c) { return c->raft ? craft_fsm(c->raft) : c->fsm; }

uint64_t control_index(const struct control *c) { return fsm_index(control_fsm(c)); }

uint64_t control_enforced_index(const struct control *c) { return c->enforced_index; }

struct craft *control_raft(const struct control *c) { return c->raft; }

const char *control_raft_address(const struct control *c) { return c->raft_addr; }

/* ---- signing of agent-to-agent control requests: the hop signature covers a hash of the body ---- */

/* ---- forwarding to another agent ---- */

struct fwd {
  struct control *c;
  struct http_pool pool;
  struct buf head, body, resp;
  int status;
  void (*done)(struct fwd *f, int err);
  void *arg;
  struct hc_req *hreq;
};

static int fwd_head_cb(void *arg, int status, const struct http_header *h, int n) {
  ((struct fwd *)arg)->status = status;
  return 0;
}

static int fwd_body_cb(void *arg, const char *data, size_t len) {
  struct fwd *f = arg;
  if (f->resp.len + len > (64u << 20)) return 1;
  buf_append(&f->resp, data, len);
  return 0;
}

static void fwd_done_cb(void *arg, int err) {
  struct fwd *f = arg;
  f->done(f, err);
  http_pool_close(&f->pool);
  buf_free(&f->head);
  buf_free(&f->body);
  buf_free(&f->resp);
  free(f);
}

static const struct hc_callbacks fwd_cbs = {
    .on_head = fwd_head_cb,
    .on_body = fwd_body_cb,
    .on_done = fwd_done_cb,
};

/* fwd_send sends METHOD path with body (copied) to the agent at api (host:port) of node node_id, signed for
 * `what`, that node, and the request. */
static int fwd_send(struct control *c, const char *api, const uint8_t *node_id, const char *method,
                    const char *path, const char *what, const void *body, size_t len, int hops,
                    uint32_t timeout_ms, void (*done)(struct fwd *f, int err), void *arg, struct fwd **out) {
  char host[96], target[128], hop[HOP_HEADER_MAX], rid[40];
  const char *colon = strrchr(api, ':');
  uint64_t port;
  if (!colon || (size_t)(colon - api) >= sizeof host || slice_to_u64(slice_cstr(colon + 1), &port) != 0) return -EINVAL;
  memcpy(host, api, (size_t)(colon - api));
  host[colon - api] = '\0';
  struct fwd *f = xcalloc(1, sizeof *f);
  if (http_pool_init(&f->pool, c->env.loop, host, (int)port) != 0) {
    free(f);
    return -EINVAL;
  }
  if (c->env.router->dialer) http_pool_set_dialer(&f->pool, c->env.router->dialer, node_id);
  f->c = c;
  f->done = done;
  f->arg = arg;
  buf_append(&f->body, body, len);
  control_hop_target(what, body, len, target, sizeof target);
  snprintf(rid, sizeof rid, "ctl-%016llx", (unsigned long long)rng_next(&c->env.router->rng));
  struct hop_bind hb = {.request_id = slice_cstr(rid), .target = slice_cstr(target), .node = node_id};
  struct slice b = buf_slice(&f->body);
  hop_digest(method, slice_cstr(path), &b, 1, hb.digest);
  int64_t now = (int64_t)time(NULL);
  uint64_t nonce = rng_next(&c->env.router->rng);
  hop_sign(mesh_keyring(c->env.mesh), HOP_CTL, now, nonce, &hb, hop, sizeof hop);
  buf_printf(&f->head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                       "x-request-id: %s\r\nx-infermesh-hop: %s\r\nx-infermesh-hop-target: %s\r\n"
                       "x-infermesh-hops: %d\r\n\r\n",
             method, path, api, len, rid, hop, target, hops);
  f->hreq = hc_request(&f->pool, buf_slice(&f->head), &b, len ? 1 : 0, &fwd_cbs, f, timeout_ms);
  if (out) *out = f;
  return 0;
}

int control_verify_hop(struct control *c, struct http_req *req, const char *what) {
  char want[128];
  if (!c->env.mesh) return -EACCES;
  control_hop_target(what, req->body.base, req->body.len, want, sizeof want);
  struct slice ht = http_req_header(req, "x-infermesh-hop-target");
  struct slice hop = http_req_header(req, "x-infermesh-hop");
  struct hop_bind hb = {.request_id = http_req_header(req, "x-request-id"), .target = ht,
                        .node = mesh_node_id(c->env.mesh)};
  hop_digest(http_method_name(req->method), req->url, &req->body, 1, hb.digest);
  struct router *r = c->env.router;
  int64_t now = (int64_t)time(NULL);
  const struct keyring *kr = mesh_keyring(c->env.mesh);
  int rc = slice_eqz(ht, want) ? hop_verify(kr, &r->hop_seen, HOP_CTL, now, hop, &hb) : -EACCES;
  if (rc == 0 || rc == -EBUSY) return rc;
  r->hops_refused++;
  return rc == -EPROTO ? -EPROTO : -EACCES;
}

/* ---- proposals: local leader, or forwarded to the leader's agent ---- */

struct prop {
  struct control *c;
  int hops;
  craft_apply_cb cb;
  void *arg;
  size_t len;
  char cmd[];
};

/* leader_api finds the API address of the agent to send a proposal to: the Raft leader's when known, else
 * any other alive server's. */
static bool leader_api(struct control *c, char *out, size_t cap, uint8_t id[32]) {
  struct mesh_server sv[MAX_SERVERS];
  int n = mesh_servers(c->env.mesh, sv, MAX_SERVERS);
  uint64_t lid = 0;
  if (c->raft) {
    struct craft_status st;
    craft_status(c->raft, &st);
    lid = st.leader_id;
  }
  for (int i = 0; i < n; i++)
    if (!sv[i].self && lid && craft_id_from_pk(sv[i].id) == lid && sv[i].api_addr[0])
      return memcpy(id, sv[i].id, 32), str_copy(out, cap, sv[i].api_addr), true;
  if (c->raft) return false; /* a server without a known leader: the caller retries */
  for (int i = 0; i < n; i++)
    if (!sv[i].self && sv[i].api_addr[0])
      return memcpy(id, sv[i].id, 32), str_copy(out, cap, sv[i].api_addr), true;
  return false;
}

static void prop_forward(struct prop *p);

static void prop_fwd_done(struct fwd *f, int err) {
  struct prop *p = f->arg;
  struct fsm_result res = {0};
  int st = -EIO;
  if (err == 0 && f->status == 200) {
    json_error_t je;
    json_t *j = json_loadb(f->resp.base, f->resp.len, 0, &je);
    const char *msg = "";
    int dup = 0;
    json_int_t idx = 0;
    if (j && json_unpack(j, "{s:i, s:b, s:I, s?s}", "status", &res.status, "duplicate", &dup, "index", &idx,
                         "message", &msg) == 0) {
      st = 0;
      res.duplicate = dup;
      res.index = (uint64_t)idx;
      str_copy(res.msg, sizeof res.msg, msg);
    }
    json_decref(j);
  } else if (err == 0 && f->status == 503) {
    st = strstr(f->resp.base ? f->resp.base : "", "outcome_unknown") ? CRAFT_EUNKNOWN : CRAFT_ENOTLEADER;
  } else if (err != 0) {
    st = CRAFT_EUNKNOWN; /* the request may have arrived: only a retry with the same id is safe */
  }
  p->cb(p->arg, st, st == 0 ? &res : NULL);
  free(p);
}

static void prop_forward(struct prop *p) {
  char api[96];
  uint8_t id[32];
  if (p->hops >= 3 || !p->c->env.mesh || !leader_api(p->c, api, sizeof api, id)) {
    p->cb(p->arg, CRAFT_ENOTLEADER, NULL);
    free(p);
    return;
  }
  if (fwd_send(p->c, api, id, "POST", "/v1/cluster/_propose", "ctl-propose", p->cmd, p->len, p->hops + 1,
               10000, prop_fwd_done, p, NULL) != 0) {
    p->cb(p->arg, CRAFT_ENOTLEADER, NULL);
    free(p);
  }
}

static void prop_local_cb(void *arg, int status, const struct fsm_result *res) {
  struct prop *p = arg;
  if (status == CRAFT_ENOTLEADER) {
    prop_forward(p); /* nothing was proposed here: safe to send elsewhere */
    return;
  }
  p->cb(p->arg, status, res);
  free(p);
}

void control_propose(struct control *c, const void *cmd, size_t len, int hops, craft_apply_cb cb, void *arg) {
  struct prop *p = xcalloc(1, sizeof *p + len);
  p->c = c;
  p->hops = hops;
  p->cb = cb;
  p->arg = arg;
  p->len = len;
  memcpy(p->cmd, cmd, len);
  if (c->raft) craft_apply(c->raft, cmd, len, prop_local_cb, p);
  else prop_forward(p);
}

/* ---- waiters (reads with ?index=N, state long-polls) ---- */

static void waiter_closed_cb(uv_handle_t *h) { free(h->data); }

static void waiter_finish(struct waiter *w, bool timed_out) {
  for (struct waiter **pp = &w->c->waiters; *pp; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      w->c->nwaiters--;
      break;
    }
  if (w->req) {
    w->req->abort_cb = NULL;
    w->w.respond(w->ctl, w->req, &w->w, timed_out);
  }
  uv_close((uv_handle_t *)&w->timer, waiter_closed_cb);
}

static void waiter_timeout_cb(uv_timer_t *t) { waiter_finish(t->data, true); }

/* The client went away: its request ends now (the server frees the connection) and so does the wait. */
static void waiter_abort_cb(struct http_req *req) {
  struct waiter *w = req->data;
  w->req = NULL;
  http_resp_end(req);
  waiter_finish(w, false);
}

void control_wait(struct control *c, const struct api_control *ctl, struct http_req *req, uint32_t timeout_ms,
                  const struct api_wait *aw) {
  struct waiter *w = xcalloc(1, sizeof *w);
  w->c = c;
  w->ctl = ctl;
  w->req = req;
  w->w = *aw;
  req->data = w;
  req->abort_cb = waiter_abort_cb;
  uv_timer_init(c->env.loop, &w->timer);
  w->timer.data = w;
  /* Past the cap the wait ends now (the reader gets the state as it is, and may ask again). */
  uv_timer_start(&w->timer, waiter_timeout_cb, c->nwaiters < CONTROL_MAX_WAITERS ? timeout_ms : 0, 0);
  w->next = c->waiters;
  c->waiters = w;
  c->nwaiters++;
}

static void wake(struct control *c) {
  uint64_t idx = control_index(c);
  for (struct waiter *w = c->waiters, *next; w; w = next) {
    next = w->next;
    if (idx >= w->w.min_index) waiter_finish(w, false);
  }
}

/* Runs inside raft's apply: answering HTTP requests is fine, calling raft is not (we don't). */
static void applied_cb(void *arg, uint64_t index) { wake(arg); }

/* ---- server lifecycle ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void server_tick(struct control *c) {
  char err[256];
  struct mesh_server sv[MAX_SERVERS];
  mesh_set_raft(c->env.mesh, c->raft_addr, craft_has_state(c->raft));
  int n = mesh_servers(c->env.mesh, sv, MAX_SERVERS);
  if (craft_started(c->raft)) {
    control_autopilot(c, sv, n);
    return;
  }
  int expect = c->env.cfg->cluster.bootstrap_expect;
  bool boot = false;
  if (!craft_has_state(c->raft) && expect > 0) {
    if (n < expect) {
      if (c->waiting_logged != n) log_info("waiting for servers to bootstrap the control plane", "alive=%d expect=%d", n, expect);
      c->waiting_logged = n;
      return;
    }
    uint64_t ids[MAX_SERVERS];
    for (int i = 0; i < n; i++) ids[i] = craft_id_from_pk(sv[i].id);
    qsort(ids, (size_t)n, sizeof ids[0], cmp_u64);
    uint64_t self = craft_id_from_pk(mesh_node_id(c->env.mesh));
    bool mine = false, other_cluster = false;
    for (int i = 0; i < expect; i++) mine |= ids[i] == self;
    for (int i = 0; i < n; i++) {
      bool chosen = false;
      for (int j = 0; j < expect; j++) chosen |= ids[j] == craft_id_from_pk(sv[i].id);
      other_cluster |= sv[i].formed && !chosen; /* a cluster exists already, formed without our set */
    }
    boot = mine && !other_cluster;
    if (boot) {
      struct craft_server set[MAX_SERVERS];
      for (int i = 0; i < expect; i++) {
        set[i].id = ids[i];
        set[i].role = CRAFT_VOTER;
        for (int j = 0; j < n; j++)
          if (craft_id_from_pk(sv[j].id) == ids[i]) str_copy(set[i].address, sizeof set[i].address, sv[j].raft_addr);
      }
      int rc = craft_bootstrap(c->raft, set, expect, err, sizeof err);
      if (rc != 0 && rc != -EEXIST) {
        log_error("raft bootstrap failed", "err=\"%s\"", err);
        return;
      }
      log_info("control plane bootstrapped", "voters=%d", expect);
    }
  }
  if (craft_start(c->raft, err, sizeof err) != 0) {
    log_error("raft start failed", "err=\"%s\"", err);
    return;
  }
  mesh_set_raft(c->env.mesh, c->raft_addr, craft_has_state(c->raft));
  log_info("raft server started", "address=%s state=%s", c->raft_addr,
           craft_has_state(c->raft) ? "existing or bootstrapped" : "empty: waiting to be added by the leader");
}

/* ---- replica ---- */

static void state_poll_done(struct fwd *f, int err) {
  struct control *c = f->c;
  c->poll_inflight = false;
  c->poll = NULL;
  char why[200];
  if (err == 0 && f->status == 200) {
    if (fsm_restore(c->fsm, f->resp.base, f->resp.len, why, sizeof why) == 0) {
      c->next_poll_ms = 0; /* changed: ask again at once */
      wake(c);
      return;
    }
    log_warn("control-plane state refused", "err=\"%s\"", why);
  } else if (err == 0 && f->status == 304) {
    c->next_poll_ms = 0;
    return;
  }
  c->next_poll_ms = uv_now(c->env.loop) + 500;
}

static void replica_tick(struct control *c) {
  struct mesh_server sv[MAX_SERVERS];
  if (c->poll_inflight || uv_now(c->env.loop) < c->next_poll_ms) return;
  int n = mesh_servers(c->env.mesh, sv, MAX_SERVERS);
  if (n == 0) return;
  const struct mesh_server *s = &sv[c->poll_rr++ % (unsigned)n];
  char path[96];
  snprintf(path, sizeof path, "/v1/cluster/state?after=%llu&wait_ms=%d", (unsigned long long)control_index(c),
           STATE_WAIT_MS);
  if (fwd_send(c, s->api_addr, s->id, "GET", path, "ctl-state", "", 0, 0, STATE_WAIT_MS + 5000,
               state_poll_done, c, &c->poll) == 0)
    c->poll_inflight = true;
}

/* ---- enforcement: the router follows the FSM ---- */

/* fsm_priority maps the FSM's priority (higher first, 0 normal) to an admission class. */
static int fsm_priority(int32_t p) { return p > 0 ? ADM_PRIO_HIGH : p < 0 ? ADM_PRIO_LOW : ADM_PRIO_NORMAL; }

struct change_ctx {
  uint64_t index;
};

static void change_cb(void *arg, const struct config_change *ch) {
  events_config(fsm_kind_name(ch->kind), ch->key, ch->op, ((struct change_ctx *)arg)->index);
}

/* publish_changes sends one configuration event per item that changed since the last look (the first look
 * of a replica or a restarted server only takes the baseline: it does not announce the whole state). */
static void publish_changes(struct control *c, const struct fsm *f, uint64_t idx) {
  struct change_ctx x = {idx};
  if (!c->watch_primed) {
    config_watch_update(&c->watch, f, NULL, NULL);
    c->watch_primed = true;
    return;
  }
  config_watch_update(&c->watch, f, change_cb, &x);
}

/* enforce_tenants / control_enforce hand the FSM's tenants, policies, drains and pins to the router when the
 * FSM index moved since the last call (each only when its kinds changed). Loop thread, outside any libraft callback (tick_cb). Tenants: the config's, then the FSM's that
 * are not revoked (a name or key already present is skipped); when the FSM holds tenants but none is usable,
 * a keyless placeholder keeps keys required, so a revoked key is refused rather than the node opening up. */
static void enforce_tenants(struct control *c, const struct fsm *f) {
  const struct agent_config *cfg = c->env.cfg;
  struct tenant_conf *t = c->tenants[c->tenants_cur ^= 1];
  int n = 0, nf = fsm_count(f, FSM_TENANT), skipped = 0;
  for (int i = 0; i < cfg->ntenants && n < TENANTS_MAX; i++) t[n++] = cfg->tenants[i];
  for (int i = 0; i < nf; i++) {
    const struct fsm_tenant *ft = fsm_at(f, FSM_TENANT, i);
    if (ft->revoked) continue;
    bool dup = strlen(ft->name) >= sizeof t[0].name || n >= TENANTS_MAX;
    for (int j = 0; j < n && !dup; j++)
      dup = strcmp(t[j].name, ft->name) == 0 || sodium_memcmp(t[j].key_hash, ft->key_hash, FSM_HASH_LEN) == 0;
    if (dup) {
      skipped++;
      continue;
    }
    struct tenant_conf *x = &t[n++];
    tenant_conf_default(x);
    str_copy(x->name, sizeof x->name, ft->name);
    memcpy(x->key_hash, ft->key_hash, TENANT_KEY_HASH_BYTES);
    x->has_key = true;
    x->lim.weight = ft->weight > 0 ? ft->weight : 1;
    x->lim.priority = fsm_priority(ft->priority);
    x->lim.requests_per_s = ft->rps > 0 ? ft->rps : 0;
    x->lim.tokens_per_min = ft->tokens_per_min > 0 ? (double)ft->tokens_per_min : 0;
    x->lim.max_concurrent = ft->max_concurrent > 0 ? ft->max_concurrent : 0;
    for (int m = 0; m < ft->nmodels && m < TENANT_MODELS; m++)
      str_copy(x->models[m], sizeof x->models[m], ft->models[m]);
    x->nmodels = ft->nmodels < TENANT_MODELS ? ft->nmodels : TENANT_MODELS;
    x->budget_nano = ft->budget_nano;
    x->period = (unsigned)ft->period < PERIOD_COUNT ? (enum period)ft->period : PERIOD_MONTH;
  }
  if (n == 0 && nf > 0) { /* every control-plane tenant is revoked: keys stay required, none matches */
    tenant_conf_default(&t[0]);
    str_copy(t[0].name, sizeof t[0].name, "-revoked-");
    n = 1;
  }
  if (skipped) log_warn("control-plane tenants skipped (name or key clash, long name, or table full)", "n=%d", skipped);
  router_set_tenants(c->env.router, t, n);
}

/* enforce_own_drain makes this node's membership drain flag follow the control plane's drain of it: a node
 * drained durably announces itself draining again when it restarts (its flag lives in gossip meta and starts
 * cleared), and a durable drain written or deleted through any node reaches its gossip flag at once. A flag
 * set through membership alone (no durable drain) is left as it is. */
static void enforce_own_drain(struct control *c, const struct fsm *f) {
  if (!c->env.mesh) return;
  const struct fsm_drain *d = fsm_get(f, FSM_DRAIN, mesh_node_name(c->env.mesh));
  bool durable = d != NULL;
  if (c->own_drain_known && durable == c->own_drain_durable) return;
  bool first = !c->own_drain_known;
  c->own_drain_known = true;
  c->own_drain_durable = durable;
  if (durable) {
    log_info("the control plane holds a drain of this node: announcing it", "reason=\"%s\"", d->reason);
    mesh_set_drain(c->env.mesh, true);
  } else if (!first) {
    log_info("the control plane dropped the drain of this node: announcing it", "node=%s",
             mesh_node_name(c->env.mesh));
    mesh_set_drain(c->env.mesh, false);
  }
}

static void control_enforce(struct control *c) {
  const struct fsm *f = control_fsm(c);
  uint64_t idx = fsm_index(f);
  if (idx == c->enforced_index || !c->env.router) return;
  c->enforced_index = idx;
  publish_changes(c, f, idx);
  /* Only what changed is handed over again: a tenant write does not rebuild the routing tables. */
  bool kind[FSM_NKINDS];
  for (int k = 0; k < FSM_NKINDS; k++) {
    uint64_t ch = fsm_kind_changed(f, (enum fsm_kind)k);
    kind[k] = !c->enforced_once || ch != c->enforced_kind[k];
    c->enforced_kind[k] = ch;
  }
  c->enforced_once = true;
  if (kind[FSM_TENANT]) enforce_tenants(c, f);
  if (kind[FSM_POLICY] || kind[FSM_PIN] || kind[FSM_DRAIN] || kind[FSM_PRICE] || kind[FSM_PROVIDER])
    route_ctl_sync(&c->env.router->ctl, f);
  if (kind[FSM_DRAIN]) enforce_own_drain(c, f);
  log_info("control-plane state enforced", "index=%llu tenants=%d policies=%d drains=%d pins=%d",
           (unsigned long long)idx, fsm_count(f, FSM_TENANT), fsm_count(f, FSM_POLICY), fsm_count(f, FSM_DRAIN),
           fsm_count(f, FSM_PIN));
}

static void tick_cb(uv_timer_t *t) {
  struct control *c = t->data;
  if (c->raft) server_tick(c);
  else replica_tick(c);
  if (!c->raft && !c->poll_inflight && c->next_poll_ms == 0) replica_tick(c);
  control_enforce(c);
}

/* ---- start / close ---- */

static int raft_address(const struct agent_config *cfg, char *out, size_t cap, char *err, size_t errlen) {
  if (cfg->cluster.raft[0]) {
    str_copy(out, cap, cfg->cluster.raft);
    return 0;
  }
  const char *g = cfg->cluster.gossip, *colon = strrchr(g, ':');
  uint64_t port;
  if (!colon || slice_to_u64(slice_cstr(colon + 1), &port) != 0 || port == 0 || port >= 65535) {
    snprintf(err, errlen, "no Raft address: pass --raft HOST:PORT");
    return -EINVAL;
  }
  snprintf(out, cap, "%.*s:%llu", (int)(colon - g), g, (unsigned long long)port + 1);
  return 0;
}

int control_start(struct control **out, const struct control_env *env, char *err, size_t errlen) {
  struct control *c = xcalloc(1, sizeof *c);
  int rc;
  c->env = *env;
  c->fsm = fsm_new();
  *out = c;
  if (!env->mesh) {
    if (env->cfg->cluster.server) {
      snprintf(err, errlen, "--server needs a cluster key: run `infermesh init` or join with an invite first");
      goto err_after_alloc;
    }
    return 0; /* standalone: no control plane */
  }
  if (env->cfg->cluster.server) {
    struct craft_config rc_cfg;
    craft_config_default(&rc_cfg);
    rc_cfg.id = craft_id_from_pk(mesh_node_id(env->mesh));
    rc_cfg.kr = mesh_keyring(env->mesh);
    if ((rc = raft_address(env->cfg, c->raft_addr, sizeof c->raft_addr, err, errlen)) != 0) goto err_after_alloc;
    str_copy(rc_cfg.address, sizeof rc_cfg.address, c->raft_addr);
    snprintf(rc_cfg.dir, sizeof rc_cfg.dir, "%s/raft", mesh_data_dir(env->mesh));
    if ((rc = craft_open(&c->raft, env->loop, &rc_cfg, applied_cb, c, err, errlen)) != 0) goto err_after_alloc;
    log_info("control plane: raft server", "id=%016llx address=%s dir=%s state=%s", (unsigned long long)rc_cfg.id,
             c->raft_addr, rc_cfg.dir, craft_has_state(c->raft) ? "yes" : "none");
    /* A server that starts with no state has nothing to take as a baseline: every item it applies is news
     * (replicas and restarted servers take their first look as the baseline). */
    c->watch_primed = !craft_has_state(c->raft);
  }
  uv_timer_init(env->loop, &c->tick);
  c->tick.data = c;
  c->tick_on = true;
  uv_timer_start(&c->tick, tick_cb, 0, TICK_MS);
  return 0;

err_after_alloc:
  fsm_free(c->fsm);
  free(c);
  *out = NULL;
  return -EINVAL;
}

static void close_part(struct control *c) {
  if (--c->closing_parts > 0) return;
  void (*cb)(void *) = c->closed_cb;
  void *arg = c->closed_arg;
  fsm_free(c->fsm);
  config_watch_free(&c->watch);
  free(c);
  if (cb) cb(arg);
}

static void tick_closed_cb(uv_handle_t *h) { close_part(h->data); }
static void raft_closed_cb(void *arg) { close_part(arg); }

void control_close(struct control *c, void (*closed_cb)(void *arg), void *arg) {
  c->closing = true;
  c->closed_cb = closed_cb;
  c->closed_arg = arg;
  while (c->waiters) waiter_finish(c->waiters, true);
  if (c->poll_inflight) { /* no callback follows a cancel: release the poll here */
    struct fwd *f = c->poll;
    hc_cancel(f->hreq);
    http_pool_close(&f->pool);
    buf_free(&f->head);
    buf_free(&f->body);
    buf_free(&f->resp);
    free(f);
    c->poll_inflight = false;
  }
  c->closing_parts = 1 + (c->tick_on ? 1 : 0) + (c->raft ? 1 : 0);
  if (c->tick_on) uv_close((uv_handle_t *)&c->tick, tick_closed_cb);
  if (c->raft) craft_close(c->raft, raft_closed_cb, c);
  close_part(c);
}
