/* Model control API: load/unload a model or LoRA adapter on a target, here or on the node that runs it. */
#include "api/model_api.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/control_api.h" /* control_hop_target: the signature of agent-to-agent control requests */
#include "api/model_req.h"
#include "api/reply.h"
#include "core/alloc.h"
#include "core/log.h"

#define FORWARD_EXTRA_MS 5000 /* a forwarded call waits this much longer than the remote runtime call */
#define MAX_ANSWER (1u << 20)

/* One load or unload in flight: to a runtime of this node, or forwarded to another node's agent. It lives in
 * its request's pool: op_release frees what it holds elsewhere before the answer ends the request. */
struct op {
  struct model_api *m;
  struct http_req *req; /* NULL once answered */
  struct http_pool pool;
  struct hc_req *hreq;
  struct buf head, body, resp;
  int status;
  bool remote, unload;
  int tid;
  char target[MODEL_REQ_TARGET_MAX]; /* the name the client used */
  struct model_req mr;
  enum runtime_kind kind;
};

/* op_release closes o's connection pool and frees its buffers; o goes with its request (the answer follows). */
static void op_release(struct op *o) {
  http_pool_close(&o->pool);
  buf_free(&o->head);
  buf_free(&o->body);
  buf_free(&o->resp);
}

/* The client went away: the runtime call is cancelled (the runtime may still finish what it started). */
static void op_abort_cb(struct http_req *req) {
  struct op *o = req->data;
  log_warn("model control: client went away, request to the runtime cancelled", "target=%s model=\"%s\"",
           o->target, o->mr.model);
  hc_cancel(o->hreq);
  op_release(o);
  http_resp_end(req);
}

static int on_head(void *arg, int status, const struct http_header *h, int n) {
  struct op *o = arg;
  o->status = status;
  buf_reset(&o->resp);
  return 0;
}

static int on_body(void *arg, const char *data, size_t len) {
  struct op *o = arg;
  if (o->resp.len + len > MAX_ANSWER) return 1;
  buf_append(&o->resp, data, len);
  return 0;
}

static const char *op_name(const struct op *o) { return o->unload ? "unload" : "load"; }
static const char *type_name(int type) { return type == MODEL_REQ_TYPE_LORA ? "lora" : "model"; }

/* store_apply makes the target's model list show the change at once (the next scrape confirms it). */
static void store_apply(struct store *s, int id, const char *model, bool unload) {
  struct target *t = &s->targets[id];
  char names[STORE_MAX_MODELS][RS_NAME_MAX];
  const char *ptrs[STORE_MAX_MODELS];
  int n = 0;
  bool had = false;
  for (int i = 0; i < t->nmodels; i++) {
    if (strcmp(t->models[i], model) == 0) {
      had = true;
      if (unload) continue;
    }
    str_copy(names[n], sizeof names[n], t->models[i]);
    ptrs[n] = names[n];
    n++;
  }
  if (!unload && !had && n < STORE_MAX_MODELS) ptrs[n++] = model;
  if (had == unload) store_set_models(s, id, ptrs, n);
}

static void local_done_cb(void *arg, int err) {
  struct op *o = arg;
  struct http_req *req = o->req;
  struct target *t = &o->m->store->targets[o->tid];
  char text[512], msg[800];
  req->abort_cb = NULL;
  if (err) {
    snprintf(msg, sizeof msg, "the runtime of target %s (%s) did not answer the %s of '%s': %s", t->name,
             t->url, op_name(o), o->mr.model,
             err == UV_ETIMEDOUT ? "timed out (raise \"timeout_s\")" : uv_strerror(err));
    log_warn("model control failed", "target=%s op=%s model=\"%s\" err=\"%s\"", t->name, op_name(o),
             o->mr.model, uv_strerror(err));
    op_release(o);
    api_reply_error_type(req, 502, msg, "runtime_error", err == UV_ETIMEDOUT ? "runtime_timeout" : "runtime_unreachable");
  } else if (o->status < 200 || o->status > 299) {
    model_req_runtime_error(o->status, o->resp.base, o->resp.len, text, sizeof text);
    /* a 404 "Not Found" is the route missing: the runtime runs without its control API */
    bool no_api = o->status == 404 && strcasecmp(text, "not found") == 0;
    snprintf(
        msg, sizeof msg, "the %s runtime of target %s refused to %s '%s' (HTTP %d): %s%s",
        runtime_kind_name(o->kind), t->name, op_name(o), o->mr.model, o->status, text,
        no_api
            ? " (is its runtime control on? vLLM: VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; llama.cpp: router "
              "mode; Triton: --model-control-mode=explicit)"
            : "");
    log_warn("model control refused by the runtime", "target=%s op=%s model=\"%s\" status=%d msg=\"%s\"",
             t->name, op_name(o), o->mr.model, o->status, text);
    op_release(o);
    api_reply_error_type(req, 502, msg, "runtime_error", "runtime_refused");
  } else {
    struct buf b = {0};
    size_t tl = o->resp.len < 400 ? o->resp.len : 400;
    store_apply(o->m->store, o->tid, o->mr.model, o->unload);
    log_info(o->unload ? "model unloaded" : "model loaded", "target=%s type=%s model=\"%s\" status=%d",
             t->name, type_name(o->mr.type), o->mr.model, o->status);
    buf_puts(&b, "{\"target\":");
    buf_json_str(&b, slice_cstr(o->target));
    buf_puts(&b, ",\"node\":");
    buf_json_str(&b, slice_cstr(o->m->node_name));
    buf_puts(&b, ",\"model\":");
    buf_json_str(&b, slice_cstr(o->mr.model));
    buf_printf(&b,
               ",\"op\":\"%s\",\"type\":\"%s\",\"kind\":\"%s\",\"runtime_status\":%d,\"runtime_message\":",
               op_name(o), type_name(o->mr.type), runtime_kind_name(o->kind), o->status);
    buf_json_str(&b, slice_make(o->resp.base ? o->resp.base : "", tl));
    buf_puts(&b, "}");
    op_release(o);
    http_resp_send(req, 200, "application/json", b.base, b.len, NULL, 0);
    buf_free(&b);
  }
}

static const struct hc_callbacks local_cbs = {
    .on_head = on_head,
    .on_body = on_body,
    .on_done = local_done_cb,
};

/* The runtime's answer came back through the node that runs it: relayed, with the target named as here. */
static void remote_done_cb(void *arg, int err) {
  struct op *o = arg;
  struct http_req *req = o->req;
  struct target *t = &o->m->store->targets[o->tid];
  int status = o->status;
  struct buf resp = o->resp; /* taken: o goes with req as the answer ends it */
  o->resp = (struct buf){0};
  req->abort_cb = NULL;
  char msg[400];
  if (err)
    snprintf(msg, sizeof msg, "the agent of node %s (%s:%d), which runs target %s, did not answer: %s", t->node,
             t->host, t->port, o->target, uv_strerror(err));
  json_error_t je;
  json_t *j = !err && status == 200 ? json_loadb(resp.base ? resp.base : "", resp.len, 0, &je) : NULL;
  if (json_is_object(j)) json_object_set_new(j, "target", json_string(o->target));
  op_release(o);
  if (err) {
    api_reply_error_type(req, 502, msg, "runtime_error", "node_unreachable");
  } else if (json_is_object(j)) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    http_resp_send(req, 200, "application/json", s, strlen(s), NULL, 0);
    free(s);
  } else {
    http_resp_send(req, status, "application/json", resp.base ? resp.base : "", resp.len, NULL, 0);
  }
  json_decref(j);
  buf_free(&resp);
}

static const struct hc_callbacks remote_cbs = {
    .on_head = on_head,
    .on_body = on_body,
    .on_done = remote_done_cb,
};

static void hop_what(char *out, size_t cap, bool unload, const char *target) {
  snprintf(out, cap, "model-%s:%s", unload ? "unload" : "load", target);
}

static struct op *op_new(struct model_api *m, struct http_req *req, int tid, const char *target, bool unload,
                         const struct model_req *mr) {
  struct target *t = &m->store->targets[tid];
  struct op *o = pool_alloc(&req->pool, sizeof *o);
  memset(o, 0, sizeof *o);
  if (http_pool_init(&o->pool, m->loop, t->host, t->port) != 0) return NULL;
  o->m = m;
  o->req = req;
  o->tid = tid;
  o->unload = unload;
  o->mr = *mr;
  str_copy(o->target, sizeof o->target, target);
  return o;
}

static void start(struct op *o, const struct hc_callbacks *cbs, uint32_t timeout_ms) {
  struct slice b = buf_slice(&o->body);
  o->req->data = o;
  o->req->abort_cb = op_abort_cb;
  o->hreq = hc_request(&o->pool, buf_slice(&o->head), &b, o->body.len ? 1 : 0, cbs, o, timeout_ms);
}

static void forward(struct model_api *m, struct http_req *req, int tid, const char *target, bool unload,
                    const struct model_req *mr) {
  struct target *t = &m->store->targets[tid];
  char what[MODEL_REQ_TARGET_MAX + 16], hop_target[MODEL_REQ_TARGET_MAX + 64], hop[HOP_HEADER_MAX], rid[40];
  struct op *o = op_new(m, req, tid, target, unload, mr);
  if (!o) {
    api_reply_error_type(req, 502, "the node announced a bad API address", "runtime_error", "node_unreachable");
    return;
  }
  o->remote = true;
  if (m->router->dialer) http_pool_set_dialer(&o->pool, m->router->dialer, t->node_id);
  buf_append(&o->body, req->body.base, req->body.len);
  hop_what(what, sizeof what, unload, t->remote_name);
  control_hop_target(what, o->body.base, o->body.len, hop_target, sizeof hop_target);
  snprintf(rid, sizeof rid, "model-%016llx", (unsigned long long)rng_next(&m->router->rng));
  /* Signed for the target's node and the request as sent: its request target (escaped) and body. */
  struct buf path = {0};
  buf_puts(&path, "/v1/cluster/targets/");
  buf_path_segment(&path, t->remote_name);
  buf_printf(&path, "/%s", op_name(o));
  struct hop_bind hb = {.request_id = slice_cstr(rid), .target = slice_cstr(hop_target), .node = t->node_id};
  struct slice body = buf_slice(&o->body);
  hop_digest("POST", buf_slice(&path), &body, 1, hb.digest);
  hop_sign(m->mesh->keyring(m->mesh->ctx), HOP_CTL, (int64_t)time(NULL), rng_next(&m->router->rng), &hb, hop,
                  sizeof hop);
  buf_puts(&o->head, "POST ");
  buf_append_slice(&o->head, buf_slice(&path));
  buf_printf(&o->head,
             " HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "x-request-id: %s\r\nx-infermesh-hop: %s\r\nx-infermesh-hop-target: %s\r\n\r\n",
             o->pool.authority, o->body.len, rid, hop, hop_target);
  buf_free(&path);
  log_info("model control: forwarding to the target's node", "target=%s node=%s op=%s model=\"%s\"", t->name,
           t->node, op_name(o), mr->model);
  start(o, &remote_cbs, mr->timeout_ms + FORWARD_EXTRA_MS);
}

static void local(struct model_api *m, struct http_req *req, int tid, const char *target, bool unload,
                  struct model_req *mr) {
  struct target *t = &m->store->targets[tid];
  enum runtime_kind k;
  char msg[400], path[512];
  const char *method;
  struct buf body = {0};
  if (runtime_kind_parse(t->kind, &k) != 0) {
    snprintf(msg, sizeof msg, "target %s has runtime kind '%s', which infermesh cannot control", t->name,
             t->kind);
    api_reply_error_type(req, 501, msg, "invalid_request_error", "not_supported");
    return;
  }
  enum rt_control_op op = model_req_op(k, mr, unload);
  int rc = runtime_control_request(k, op, mr->model, mr->lora_path[0] ? mr->lora_path : NULL, &method, path,
                                   sizeof path, &body);
  if (rc == -ENOTSUP) {
    snprintf(msg, sizeof msg, "target %s is a %s runtime, which has no control to %s a %s at run time%s",
             t->name, runtime_kind_name(k), unload ? "unload" : "load", type_name(mr->type),
             k == RT_KIND_TGI                  ? ": restart it with the model instead"
             : mr->type == MODEL_REQ_TYPE_LORA ? " (try \"type\": \"model\")"
                                               : " (try \"type\": \"lora\")");
    api_reply_error_type(req, 501, msg, "invalid_request_error", "not_supported");
  } else if (rc != 0) {
    snprintf(msg, sizeof msg, "%s",
             op == RT_CTL_LOAD_LORA && !mr->lora_path[0]
                 ? "\"lora_path\" is needed to load a LoRA adapter (where its weights are)"
                 : "this model name cannot be sent to the runtime (too long, or characters "
                   "its API does not take)");
    api_reply_error_type(req, 400, msg, "invalid_request_error", "invalid_value");
  } else {
    struct op *o = op_new(m, req, tid, target, unload, mr);
    if (!o) {
      api_reply_error_type(req, 502, "the target's address cannot be dialed", "runtime_error", "runtime_unreachable");
    } else {
      o->kind = k;
      buf_append(&o->body, body.base, body.len);
      buf_printf(&o->head,
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: infermesh-agent\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 method, path, o->pool.authority, o->body.len);
      log_info("model control: asking the runtime", "target=%s kind=%s op=%s type=%s model=\"%s\" path=%s",
               t->name, runtime_kind_name(k), op_name(o), type_name(mr->type), mr->model, path);
      start(o, &local_cbs, mr->timeout_ms);
    }
  }
  buf_free(&body);
}

static int find_target(const struct store *s, const char *name) {
  for (int i = 0; i < s->ntargets; i++)
    if (!s->targets[i].gone && strcmp(s->targets[i].name, name) == 0) return i;
  return -1;
}

bool model_api_handle(struct model_api *m, struct http_req *req) {
  char target[MODEL_REQ_TARGET_MAX], what[MODEL_REQ_TARGET_MAX + 16], err[300];
  bool unload;
  int rc = model_req_parse_path(req->path, target, sizeof target, &unload);
  if (rc == -ENOENT) return false;
  if (req->method != HTTP_M_POST) {
    api_reply_error_type(req, 405, "use POST /v1/cluster/targets/TARGET/load or /unload", "invalid_request_error",
          "method_not_allowed");
    return true;
  }
  if (rc != 0) {
    api_reply_error_type(req, 400, "malformed target name in the path", "invalid_request_error", "invalid_value");
    return true;
  }
  hop_what(what, sizeof what, unload, target);
  if (!api_authorize_admin(m->ctl, req, what)) return true;
  bool forwarded = http_req_header(req, "x-infermesh-hop").len > 0;
  struct model_req mr;
  if (model_req_parse_body(req->body.base, req->body.len, &mr, err, sizeof err) != 0) {
    api_reply_error_type(req, 400, err, "invalid_request_error", "invalid_value");
    return true;
  }
  int tid = find_target(m->store, target);
  if (tid < 0) {
    snprintf(err, sizeof err, "no target named '%.128s' (GET /v1/cluster/targets lists them)", target);
    api_reply_error_type(req, 404, err, "invalid_request_error", "target_not_found");
  } else if (m->store->targets[tid].remote && forwarded) {
    api_reply_error_type(req, 421, "a forwarded load/unload must name a target of the node it was sent to",
          "invalid_request_error", "misdirected");
  } else if (m->store->targets[tid].remote && !m->mesh->ctx) {
    api_reply_error_type(req, 409, "this agent is not in a mesh: it cannot reach the target's node", "invalid_request_error",
          "standalone");
  } else if (m->store->targets[tid].remote) {
    forward(m, req, tid, target, unload, &mr);
  } else {
    local(m, req, tid, target, unload, &mr);
  }
  return true;
}
