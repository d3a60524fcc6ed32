/* The host's lease and release calls to a worker's agent (see rpc_lease.h). */
#include "agent/rpc_lease.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/control_int.h"
#include "agent/mesh.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "net/http_client.h"
#include "route/hop.h"

#define RESP_MAX 8192

struct rpc_lease_call {
  struct http_pool pool;
  struct hc_req *req;
  struct buf head, body, resp;
  int status;
  rpc_lease_cb cb;
  void *arg;
};

static int head_cb(void *arg, int status, const struct http_header *h, int n) {
  ((struct rpc_lease_call *)arg)->status = status;
  return 0;
}

static int body_cb(void *arg, const char *data, size_t len) {
  struct rpc_lease_call *c = arg;
  if (c->resp.len + len > RESP_MAX) return 1;
  buf_append(&c->resp, data, len);
  return 0;
}

static void call_free(struct rpc_lease_call *c) {
  http_pool_close(&c->pool);
  buf_free(&c->head);
  buf_free(&c->body);
  buf_free(&c->resp);
  free(c);
}

static void done_cb(void *arg, int err) {
  struct rpc_lease_call *c = arg;
  int port = 0;
  char msg[256] = "";
  if (err) {
    snprintf(msg, sizeof msg, "the worker's agent did not answer: %s", uv_strerror(err));
    c->status = 0;
  } else {
    json_t *root = json_loadb(c->resp.base ? c->resp.base : "", c->resp.len, 0, NULL);
    json_t *p = json_object_get(root, "port"),
           *e = json_object_get(json_object_get(root, "error"), "message");
    if (c->status == 200 && json_is_integer(p) && json_integer_value(p) > 0 && json_integer_value(p) <= 65535)
      port = (int)json_integer_value(p);
    if (json_is_string(e))
      snprintf(msg, sizeof msg, "%s", json_string_value(e));
    else if (c->status != 200)
      snprintf(msg, sizeof msg, "HTTP %d", c->status);
    json_decref(root);
  }
  c->cb(c->arg, c->status, port, msg);
  call_free(c);
}

static const struct hc_callbacks cbs = {.on_head = head_cb, .on_body = body_cb, .on_done = done_cb};

struct rpc_lease_call *rpc_lease_send(uv_loop_t *loop, struct mesh *mesh, const char *worker,
                                      const char *verb, rpc_lease_cb cb, void *arg) {
  bool self;
  uint8_t node[32];
  const char *api = mesh_find_node(mesh, worker, &self, node);
  const char *colon = api ? strrchr(api, ':') : NULL;
  char host[96], what[32], target[128], path[64], rid[40], hop[HOP_HEADER_MAX], sig[HOP_NODE_SIG_MAX];
  if (!colon || self || (size_t)(colon - api) >= sizeof host) return NULL;
  memcpy(host, api, (size_t)(colon - api));
  host[colon - api] = '\0';
  struct rpc_lease_call *c = xcalloc(1, sizeof *c);
  if (http_pool_init(&c->pool, loop, host, (int)strtol(colon + 1, NULL, 10)) != 0) {
    free(c);
    return NULL;
  }
  const struct http_dialer *d = mesh_hop_dialer(mesh);
  if (d) http_pool_set_dialer(&c->pool, d, node);
  c->cb = cb;
  c->arg = arg;
  buf_puts(&c->body, "{\"host\":");
  buf_json_str(&c->body, slice_cstr(mesh_node_name(mesh)));
  buf_puts(&c->body, "}");
  snprintf(what, sizeof what, "rpc-%s", verb);
  snprintf(path, sizeof path, "/v1/cluster/rpc/%s", verb);
  control_hop_target(what, c->body.base, c->body.len, target, sizeof target);
  uint64_t r[2];
  randombytes_buf(r, sizeof r);
  snprintf(rid, sizeof rid, "rpc-%016llx", (unsigned long long)r[0]);
  struct slice b = buf_slice(&c->body);
  struct hop_bind hb = {.request_id = slice_cstr(rid), .target = slice_cstr(target), .node = node};
  hop_digest("POST", slice_cstr(path), &b, 1, hb.digest);
  hop_sign(mesh_keyring(mesh), HOP_CTL, (int64_t)time(NULL), r[1], &hb, hop, sizeof hop);
  hop_sign_node(mesh_identity(mesh), HOP_CTL, slice_cstr(hop), &hb, sig, sizeof sig);
  buf_printf(&c->head,
             "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "x-request-id: %s\r\nx-infermesh-hop: %s\r\nx-infermesh-hop-target: %s\r\n"
             "x-infermesh-hop-node: %s\r\n\r\n",
             path, api, c->body.len, rid, hop, target, sig);
  c->req = hc_request(&c->pool, buf_slice(&c->head), &b, 1, &cbs, c, RPC_LEASE_TIMEOUT_MS);
  return c;
}

void rpc_lease_cancel(struct rpc_lease_call *c) {
  hc_cancel(c->req);
  call_free(c);
}
