/* infermesh.v1.Control: reads from the agent's store, membership and control-plane state; writes and the
 * event stream as subrequests through the agent's HTTP handler (net/http_subreq.h), so that they take the
 * HTTP API's exact path: route table, authorization, Raft proposal or forwarding, drains forwarded to their
 * node. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "api/grpc_services.h"
#include "infermesh/v1/control.pb-c.h"
#include "net/http_subreq.h"
#include "route/router.h"

/* ---- reads ---- */

static char *jstr(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return (char *)(s ? s : "");
}

/* Names of a JSON array of strings, or of the "name" members of an array of objects; pointers into arr. */
static char **jnames(json_t *arr, size_t *n) {
  size_t len = json_array_size(arr);
  char **out = xcalloc(len + 1, sizeof *out);
  *n = 0;
  for (size_t i = 0; i < len; i++) {
    json_t *e = json_array_get(arr, i);
    const char *s = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "name"));
    if (s) out[(*n)++] = (char *)s;
  }
  return out;
}

void grpc_list_nodes(struct grpc_call *call, const ProtobufCMessage *in) {
  const struct grpc_env *env = grpc_call_env(call);
  Infermesh__V1__ListNodesResponse resp = INFERMESH__V1__LIST_NODES_RESPONSE__INIT;
  const struct api_mesh *m = env->mesh;
  if (!m->ctx) { /* standalone: this agent alone */
    Infermesh__V1__Node self = INFERMESH__V1__NODE__INIT, *selfp = &self;
    self.name = (char *)env->node_name;
    self.state = "alive";
    self.self = 1;
    self.draining = *env->draining;
    resp.n_nodes = 1;
    resp.nodes = &selfp;
    grpc_reply(call, &resp.base);
    return;
  }
  struct buf b = {0};
  m->members_json(m->ctx, &b);
  json_t *root = json_loadb(b.base, b.len, 0, NULL);
  buf_free(&b);
  json_t *members = json_object_get(root, "members");
  size_t n = json_array_size(members);
  Infermesh__V1__Node *nodes = xcalloc(n + 1, sizeof *nodes), **np = xcalloc(n + 1, sizeof *np);
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(members, i);
    Infermesh__V1__Node *x = &nodes[i];
    infermesh__v1__node__init(x);
    x->name = jstr(e, "name");
    x->id = jstr(e, "id");
    x->id_short = jstr(e, "id_short");
    x->addr = jstr(e, "addr");
    x->state = jstr(e, "state");
    x->self = json_is_true(json_object_get(e, "self"));
    x->zone = jstr(e, "zone");
    x->provider = jstr(e, "provider");
    x->api = jstr(e, "api");
    x->draining = json_is_true(json_object_get(e, "draining"));
    x->roles = jnames(json_object_get(e, "roles"), &x->n_roles);
    x->models = jnames(json_object_get(e, "models"), &x->n_models);
    x->gpus = (uint32_t)json_integer_value(json_object_get(e, "gpus"));
    x->gpus_degraded = (uint32_t)json_integer_value(json_object_get(e, "gpus_degraded"));
    np[i] = x;
  }
  resp.n_nodes = n;
  resp.nodes = np;
  grpc_reply(call, &resp.base);
  for (size_t i = 0; i < n; i++) {
    free(nodes[i].roles);
    free(nodes[i].models);
  }
  free(nodes);
  free(np);
  json_decref(root);
}

static bool routable(const struct target *t) { return t->healthy && !t->gone && !t->draining; }

/* The name clients use for target t's k-th model (a local runtime's alias stands for its first). */
static const char *model_name(const struct target *t, int k) {
  return k == 0 && t->alias[0] ? t->alias : t->models[k];
}

void grpc_list_models(struct grpc_call *call, const ProtobufCMessage *in) {
  const struct store *s = grpc_call_env(call)->store;
  /* The distinct models, in the order first seen; then each model's targets. */
  size_t cap = (size_t)s->ntargets * STORE_MAX_MODELS + 1, nm = 0;
  Infermesh__V1__Model *models = xcalloc(cap, sizeof *models), **mp = xcalloc(cap, sizeof *mp);
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    for (int k = 0; k < t->nmodels && !t->gone; k++) {
      size_t j = 0;
      while (j < nm && strcmp(models[j].name, model_name(t, k)) != 0)
        j++;
      if (j < nm) continue;
      infermesh__v1__model__init(&models[nm]);
      models[nm].name = (char *)model_name(t, k);
      models[nm].targets = xcalloc((size_t)s->ntargets, sizeof(char *));
      mp[nm] = &models[nm];
      nm++;
    }
  }
  for (size_t j = 0; j < nm; j++) {
    for (int i = 0; i < s->ntargets; i++) {
      const struct target *t = &s->targets[i];
      bool serves = false;
      for (int k = 0; k < t->nmodels && !t->gone && !serves; k++)
        serves = strcmp(model_name(t, k), models[j].name) == 0;
      if (!serves) continue;
      models[j].targets[models[j].n_targets++] = (char *)t->name;
      models[j].healthy_targets += routable(t);
    }
  }
  Infermesh__V1__ListModelsResponse resp = INFERMESH__V1__LIST_MODELS_RESPONSE__INIT;
  resp.n_models = nm;
  resp.models = mp;
  grpc_reply(call, &resp.base);
  for (size_t j = 0; j < nm; j++)
    free(models[j].targets);
  free(mp);
  free(models);
}

void grpc_list_targets(struct grpc_call *call, const ProtobufCMessage *in) {
  const struct grpc_env *env = grpc_call_env(call);
  const struct store *s = env->store;
  uint64_t now = clock_mono_ns();
  Infermesh__V1__Target *ts = xcalloc((size_t)s->ntargets + 1, sizeof *ts),
                        **tp = xcalloc((size_t)s->ntargets + 1, sizeof *tp);
  size_t n = 0;
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    if (t->gone) continue;
    Infermesh__V1__Target *x = &ts[n];
    infermesh__v1__target__init(x);
    x->name = (char *)t->name;
    x->node = (char *)t->node;
    x->kind = (char *)t->kind;
    x->models = (char **)t->models;
    x->n_models = (size_t)t->nmodels;
    x->healthy = t->healthy;
    x->draining = t->draining;
    x->waiting = t->load.waiting;
    x->running = t->load.running;
    x->kv_usage = t->load.kv_usage;
    x->inflight = t->inflight;
    x->score = score_target(t, &env->router->score, now);
    x->last_error = t->healthy ? "" : (char *)t->last_error;
    tp[n++] = x;
  }
  Infermesh__V1__ListTargetsResponse resp = INFERMESH__V1__LIST_TARGETS_RESPONSE__INIT;
  resp.n_targets = n;
  resp.targets = tp;
  grpc_reply(call, &resp.base);
  free(tp);
  free(ts);
}

/* The control plane's state, or NULL after answering FAILED_PRECONDITION (as the HTTP API's 409). */
static const struct fsm *fsm_of(struct grpc_call *call) {
  const struct grpc_env *env = grpc_call_env(call);
  if (!env->mesh->ctx || !env->ctl->ctx) {
    grpc_finish(call, GRPC_FAILED_PRECONDITION,
                "this agent is not in a mesh (no cluster key): it has no control plane");
    return NULL;
  }
  return env->ctl->fsm(env->ctl->ctx);
}

static void policy_msg(const struct fsm_policy *p, Infermesh__V1__Policy *x, char **fb) {
  infermesh__v1__policy__init(x);
  x->model = (char *)p->model;
  x->strategy = (char *)p->strategy;
  x->slo_class = (char *)p->slo_class;
  x->max_queue = p->max_queue;
  x->hedge = p->hedge == 0 ? "" : p->hedge > 0 ? "on" : "off";
  x->hedge_delay_ms = p->hedge_delay_ms;
  x->hedge_max_pct = p->hedge_max_pct;
  for (int i = 0; i < p->nfallbacks; i++)
    fb[i] = (char *)p->fallbacks[i];
  x->fallbacks = fb;
  x->n_fallbacks = (size_t)p->nfallbacks;
}

void grpc_get_policy(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__GetPolicyRequest *q = (const void *)in;
  if (!q->model[0]) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "model is required");
    return;
  }
  const struct fsm *f = fsm_of(call);
  if (!f) return;
  const struct fsm_policy *p = fsm_policy(f, q->model);
  if (!p) {
    grpc_finish(call, GRPC_NOT_FOUND, "no policy for this model");
    return;
  }
  Infermesh__V1__Policy x;
  char *fb[FSM_FALLBACKS];
  policy_msg(p, &x, fb);
  grpc_reply(call, &x.base);
}

void grpc_list_policies(struct grpc_call *call, const ProtobufCMessage *in) {
  const struct fsm *f = fsm_of(call);
  if (!f) return;
  int n = fsm_count(f, FSM_POLICY);
  Infermesh__V1__Policy *ps = xcalloc((size_t)n + 1, sizeof *ps), **pp = xcalloc((size_t)n + 1, sizeof *pp);
  char(*fb)[FSM_FALLBACKS] = xcalloc((size_t)n + 1, sizeof *fb);
  for (int i = 0; i < n; i++) {
    policy_msg(fsm_at(f, FSM_POLICY, i), &ps[i], (char **)fb[i]);
    pp[i] = &ps[i];
  }
  Infermesh__V1__ListPoliciesResponse resp = INFERMESH__V1__LIST_POLICIES_RESPONSE__INIT;
  resp.n_policies = (size_t)n;
  resp.policies = pp;
  grpc_reply(call, &resp.base);
  free(fb);
  free(pp);
  free(ps);
}

/* ---- writes: subrequests through the HTTP API ---- */

struct write {
  struct grpc_call *call; /* NULL once the call ended (cancel, deadline) */
  struct http_req *sub;   /* NULL once it ended */
  bool drain;             /* answer a DrainNodeResponse, else a WriteResponse */
};

static void write_cancel_cb(struct grpc_call *call, void *arg) {
  struct write *w = arg;
  w->call = NULL;
  grpc_call_release(call);
  /* A write already proposed still applies (as over HTTP when the client goes away). */
  if (w->sub) http_subreq_detach(w->sub);
}

static void write_done_cb(void *arg, int status, struct slice body) {
  struct write *w = arg;
  struct grpc_call *call = w->call;
  w->sub = NULL;
  if (!call) {
    free(w);
    return;
  }
  grpc_call_on_cancel(call, NULL, NULL);
  json_t *root = json_loadb(body.base, body.len, 0, NULL);
  int code = grpc_code_of_http(status);
  if (code != GRPC_OK) {
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    grpc_finish(call, code, msg ? msg : "the control plane refused the write");
  } else if (w->drain) {
    Infermesh__V1__DrainNodeResponse resp = INFERMESH__V1__DRAIN_NODE_RESPONSE__INIT;
    resp.node = jstr(root, "node");
    resp.draining = json_is_true(json_object_get(root, "draining"));
    resp.in_flight = (int32_t)json_integer_value(json_object_get(root, "in_flight"));
    grpc_reply(call, &resp.base);
  } else {
    Infermesh__V1__WriteResponse resp = INFERMESH__V1__WRITE_RESPONSE__INIT;
    resp.index = (uint64_t)json_integer_value(json_object_get(root, "index"));
    grpc_reply(call, &resp.base);
  }
  json_decref(root);
  grpc_call_release(call);
  free(w);
}

static const struct http_subreq_cbs write_cbs = {.done = write_done_cb};

/* write_via_http sends METHOD PREFIX/KEY (KEY percent-encoded as one segment, then suffix) with body through
 * the agent's HTTP handler and answers the call from its response. */
static void write_via_http(struct grpc_call *call, int method, const char *prefix, const char *key,
                           const char *suffix, const char *body, bool drain) {
  struct buf path = {0};
  buf_puts(&path, prefix);
  buf_path_segment(&path, key);
  buf_puts(&path, suffix);
  buf_append(&path, "", 1);
  struct write *w = xcalloc(1, sizeof *w);
  w->call = call;
  w->drain = drain;
  grpc_call_hold(call);
  grpc_call_on_cancel(call, write_cancel_cb, w);
  w->sub =
      http_subreq_new(grpc_call_req(call), method, path.base, slice_cstr(body ? body : ""), &write_cbs, w);
  buf_free(&path);
  const struct grpc_env *env = grpc_call_env(call);
  env->http_handle(w->sub, env->arg);
}

static bool need_name(struct grpc_call *call, const char *name, const char *what) {
  if (name[0]) return true;
  char msg[64];
  snprintf(msg, sizeof msg, "%s is required", what);
  grpc_finish(call, GRPC_INVALID_ARGUMENT, msg);
  return false;
}

void grpc_set_policy(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__SetPolicyRequest *q = (const void *)in;
  const Infermesh__V1__Policy *p = q->policy;
  if (!p) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "policy is required");
    return;
  }
  if (!need_name(call, p->model, "policy.model")) return;
  json_t *hedge = !p->hedge[0]                   ? json_null()
                  : strcmp(p->hedge, "on") == 0  ? json_true()
                  : strcmp(p->hedge, "off") == 0 ? json_false()
                                                 : NULL;
  if (!hedge) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "hedge must be \"\", \"on\" or \"off\"");
    return;
  }
  json_t *fb = json_array();
  for (size_t i = 0; i < p->n_fallbacks; i++)
    json_array_append_new(fb, json_string(p->fallbacks[i]));
  json_t *v = json_pack("{s:s, s:s, s:i, s:o, s:I, s:f, s:o}", "strategy", p->strategy, "slo_class",
                        p->slo_class, "max_queue", (int)p->max_queue, "hedge", hedge, "hedge_delay_ms",
                        (json_int_t)p->hedge_delay_ms, "hedge_max_pct", p->hedge_max_pct, "fallbacks", fb);
  char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (!body) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "the policy's strings must be UTF-8");
    return;
  }
  write_via_http(call, HTTP_M_PUT, "/v1/cluster/policies/", p->model, "", body, false);
  free(body);
}

void grpc_delete_policy(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__DeletePolicyRequest *q = (const void *)in;
  if (need_name(call, q->model, "model"))
    write_via_http(call, HTTP_M_DELETE, "/v1/cluster/policies/", q->model, "", NULL, false);
}

void grpc_pin_model(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__PinModelRequest *q = (const void *)in;
  if (!need_name(call, q->model, "model")) return;
  json_t *nodes = json_array(), *zones = json_array();
  for (size_t i = 0; i < q->n_nodes; i++)
    json_array_append_new(nodes, json_string(q->nodes[i]));
  for (size_t i = 0; i < q->n_zones; i++)
    json_array_append_new(zones, json_string(q->zones[i]));
  json_t *v = json_pack("{s:o, s:o}", "nodes", nodes, "zones", zones);
  char *body = json_dumps(v, JSON_COMPACT);
  json_decref(v);
  write_via_http(call, HTTP_M_PUT, "/v1/cluster/pins/", q->model, "", body, false);
  free(body);
}

void grpc_unpin_model(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__UnpinModelRequest *q = (const void *)in;
  if (need_name(call, q->model, "model"))
    write_via_http(call, HTTP_M_DELETE, "/v1/cluster/pins/", q->model, "", NULL, false);
}

void grpc_drain_node(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__DrainNodeRequest *q = (const void *)in;
  if (need_name(call, q->node, "node"))
    write_via_http(call, HTTP_M_POST, "/v1/cluster/nodes/", q->node, "/drain", NULL, true);
}

void grpc_undrain_node(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__DrainNodeRequest *q = (const void *)in;
  if (need_name(call, q->node, "node"))
    write_via_http(call, HTTP_M_POST, "/v1/cluster/nodes/", q->node, "/undrain", NULL, true);
}

/* ---- SubscribeEvents: GET /v1/cluster/events as a subrequest, its SSE frames as Event messages ---- */

struct evsub {
  struct grpc_call *call; /* NULL once the call ended */
  struct http_req *sub;   /* NULL once it ended */
  struct buf pending;     /* SSE bytes not yet a whole frame */
};

/* One SSE frame (lines "id: N", "event: KIND", "data: JSON"; comments ignored) to an Event. */
static void send_frame(struct evsub *e, char *frame) {
  Infermesh__V1__Event ev = INFERMESH__V1__EVENT__INIT;
  bool any = false;
  char *save = NULL;
  for (char *line = strtok_r(frame, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "id: ", 4) == 0)
      ev.seq = strtoull(line + 4, NULL, 10), any = true;
    else if (strncmp(line, "event: ", 7) == 0)
      ev.kind = line + 7;
    else if (strncmp(line, "data: ", 6) == 0)
      ev.data_json = line + 6;
  }
  if (any) grpc_send(e->call, &ev.base);
}

static void events_data_cb(void *arg, const char *p, size_t n) {
  struct evsub *e = arg;
  if (!e->call) return;
  buf_append(&e->pending, p, n);
  char *end;
  while (e->pending.len && (end = memmem(e->pending.base, e->pending.len, "\n\n", 2))) {
    size_t flen = (size_t)(end - e->pending.base);
    char *frame = xmalloc(flen + 1);
    memcpy(frame, e->pending.base, flen);
    frame[flen] = '\0';
    buf_consume(&e->pending, flen + 2);
    send_frame(e, frame);
    free(frame);
  }
}

static void events_done_cb(void *arg, int status, struct slice body) {
  struct evsub *e = arg;
  struct grpc_call *call = e->call;
  e->sub = NULL;
  buf_free(&e->pending);
  if (call) {
    grpc_call_on_cancel(call, NULL, NULL);
    int code = status == 200 ? GRPC_UNAVAILABLE : grpc_code_of_http(status);
    json_t *root = json_loadb(body.base, body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    grpc_finish(call, code, msg ? msg : "the agent is draining: its event stream ended");
    json_decref(root);
    grpc_call_release(call);
  }
  free(e);
}

static void events_cancel_cb(struct grpc_call *call, void *arg) {
  struct evsub *e = arg;
  e->call = NULL;
  grpc_call_release(call);
  if (e->sub) { /* the call's request already ended */
    http_subreq_detach(e->sub);
    http_subreq_abort(e->sub); /* its done callback frees e */
  }
}

static const struct http_subreq_cbs events_cbs = {.data = events_data_cb, .done = events_done_cb};

void grpc_subscribe_events(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__SubscribeEventsRequest *q = (const void *)in;
  char path[64];
  snprintf(path, sizeof path, "/v1/cluster/events%s%llu", q->since ? "?since=" : "",
           (unsigned long long)q->since);
  if (!q->since) path[sizeof "/v1/cluster/events" - 1] = '\0';
  struct evsub *e = xcalloc(1, sizeof *e);
  e->call = call;
  grpc_call_hold(call);
  grpc_call_on_cancel(call, events_cancel_cb, e);
  e->sub = http_subreq_new(grpc_call_req(call), HTTP_M_GET, path, slice_make(NULL, 0), &events_cbs, e);
  const struct grpc_env *env = grpc_call_env(call);
  grpc_call_hold(call); /* the subrequest may end the call at once (a refusal) */
  env->http_handle(e->sub, env->arg);
  grpc_send_headers(call); /* subscribed: the client sees the stream open before the first event */
  grpc_call_release(call);
}
