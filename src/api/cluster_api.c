/* Membership endpoints of the control API: members, leave, drain/undrain (forwarded to the node meant). */
#include "api/cluster_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/reply.h"
#include "core/alloc.h"
#include "core/log.h"
#include "route/router.h"

/* ---- drain forwarded to another node's agent ---- */

/* A forwarded call's state, in its request's pool: the request is ended only when the call is done, also when
 * the client went away meanwhile (gone), so the pool outlives every use of it. */
struct fwd {
  struct http_pool pool;
  struct http_req *req;
  bool gone;
  struct buf head, body;
  int status;
};

static int fwd_head(void *arg, int status, const struct http_header *h, int n) {
  ((struct fwd *)arg)->status = status;
  return 0;
}

static int fwd_body(void *arg, const char *data, size_t len) {
  struct fwd *f = arg;
  if (f->body.len + len > 65536) return 1;
  buf_append(&f->body, data, len);
  return 0;
}

/* The client went away: the forwarded call finishes; fwd_done ends the request. */
static void fwd_abort_cb(struct http_req *req) { ((struct fwd *)req->data)->gone = true; }

static void fwd_done(void *arg, int err) {
  struct fwd *f = arg;
  struct http_req *req = f->req;
  struct buf body = f->body; /* f goes with req's pool as the reply ends req */
  http_pool_close(&f->pool);
  buf_free(&f->head);
  req->abort_cb = NULL;
  if (f->gone) {
    http_resp_end(req);
  } else if (err == 0) {
    http_resp_send(req, f->status, "application/json", body.base, body.len, NULL, 0);
  } else {
    char msg[160];
    snprintf(msg, sizeof msg, "the node's agent did not answer: %s", uv_strerror(err));
    api_reply_error(req, 502, msg, "node_unreachable");
  }
  buf_free(&body);
}

static const struct hc_callbacks fwd_cbs = {.on_head = fwd_head, .on_body = fwd_body, .on_done = fwd_done};

static void forward(struct cluster_api *c, struct http_req *req, const char *api, const uint8_t *node_id,
                    const char *node, const char *verb) {
  char host[96], target[160], hop[HOP_HEADER_MAX], rid[40], path[160];
  const char *colon = strrchr(api, ':');
  if (!colon || (size_t)(colon - api) >= sizeof host) {
    api_reply_error(req, 502, "the node announced a bad API address", "node_unreachable");
    return;
  }
  memcpy(host, api, (size_t)(colon - api));
  host[colon - api] = '\0';
  struct fwd *f = pool_alloc(&req->pool, sizeof *f);
  memset(f, 0, sizeof *f);
  if (http_pool_init(&f->pool, c->loop, host, (int)strtol(colon + 1, NULL, 10)) != 0) {
    api_reply_error(req, 502, "the node announced a bad API address", "node_unreachable");
    return;
  }
  if (c->router->dialer) http_pool_set_dialer(&f->pool, c->router->dialer, node_id);
  f->req = req;
  req->data = f;
  req->abort_cb = fwd_abort_cb;
  snprintf(target, sizeof target, "%s:%s", verb, node);
  snprintf(rid, sizeof rid, "ctl-%016llx", (unsigned long long)rng_next(&c->router->rng));
  snprintf(path, sizeof path, "/v1/cluster/nodes/%s/%s", node, verb);
  struct hop_bind hb = {.request_id = slice_cstr(rid), .target = slice_cstr(target), .node = node_id};
  hop_digest("POST", slice_cstr(path), NULL, 0, hb.digest);
  int64_t now = (int64_t)time(NULL);
  hop_sign(c->router->kr, HOP_CTL, now, rng_next(&c->router->rng), &hb, hop, sizeof hop);
  buf_printf(&f->head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nx-request-id: %s\r\n"
                       "x-infermesh-hop: %s\r\nx-infermesh-hop-target: %s\r\n\r\n",
             path, api, rid, hop, target);
  hc_request(&f->pool, buf_slice(&f->head), NULL, 0, &fwd_cbs, f, 5000);
}

static void drain(struct cluster_api *c, struct http_req *req, struct slice rest) {
  char node[96], verb[16];
  const char *slash = memchr(rest.base, '/', rest.len);
  if (!slash || (size_t)(slash - rest.base) >= sizeof node || rest.len - (size_t)(slash - rest.base) - 1 >= sizeof verb) {
    api_reply_error(req, 404, "use POST /v1/cluster/nodes/NODE/drain or /undrain", "not_found");
    return;
  }
  memcpy(node, rest.base, (size_t)(slash - rest.base));
  node[slash - rest.base] = '\0';
  size_t vl = rest.len - (size_t)(slash - rest.base) - 1;
  memcpy(verb, slash + 1, vl);
  verb[vl] = '\0';
  bool on = strcmp(verb, "drain") == 0;
  if (!on && strcmp(verb, "undrain") != 0) {
    api_reply_error(req, 404, "use POST /v1/cluster/nodes/NODE/drain or /undrain", "not_found");
    return;
  }
  if (!c->mesh.ctx) {
    api_reply_error(req, 409, "this agent is not in a mesh (no cluster key): there is no node to drain", "standalone");
    return;
  }
  bool self;
  uint8_t node_id[32];
  const char *api = c->mesh.find_node(c->mesh.ctx, node, &self, node_id);
  struct slice hop = http_req_header(req, "x-infermesh-hop");
  if (hop.len) {
    /* Forwarded by another agent: it must be signed for exactly this node and verb. */
    char want[160];
    snprintf(want, sizeof want, "%s:%s", verb, node);
    struct slice ht = http_req_header(req, "x-infermesh-hop-target");
    struct hop_bind hb = {.request_id = http_req_header(req, "x-request-id"), .target = ht,
                          .node = c->mesh.node_id(c->mesh.ctx)};
    hop_digest(http_method_name(req->method), req->url, &req->body, 1, hb.digest);
    int64_t now = (int64_t)time(NULL);
    int rc = !self || !slice_eqz(ht, want)
                 ? -EACCES
                 : hop_verify(c->router->kr, &c->router->hop_seen, HOP_CTL, now, hop, &hb);
    if (rc == -EBUSY) {
      api_reply_error(req, 503, "too many forwarded requests to remember: try again shortly", "server_overloaded");
      return;
    }
    if (rc != 0) {
      c->router->hops_refused++;
      api_reply_error(req, 403, hop_refusal(rc), "permission_denied");
      return;
    }
  }
  if (!api) {
    char msg[200];
    snprintf(msg, sizeof msg, "no alive member is named '%s' (infermesh members lists them)", node);
    api_reply_error(req, 404, msg, "node_not_found");
    return;
  }
  if (!self) {
    forward(c, req, api, node_id, node, verb);
    return;
  }
  c->mesh.set_drain(c->mesh.ctx, on);
  struct buf b = {0};
  buf_puts(&b, "{\"node\":");
  buf_json_str(&b, slice_cstr(c->mesh.node_name(c->mesh.ctx)));
  buf_printf(&b, ",\"draining\":%s,\"in_flight\":%d}", on ? "true" : "false", c->router->inflight);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

bool cluster_api_handle(struct cluster_api *c, struct http_req *req) {
  struct buf b = {0};
  bool get = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
  bool post = req->method == HTTP_M_POST;
  if (slice_eqz(req->path, "/v1/cluster/members")) {
    if (!get) {
      api_reply_error(req, 405, "use GET for /v1/cluster/members", NULL);
    } else if (c->mesh.ctx) {
      c->mesh.members_json(c->mesh.ctx, &b);
      api_reply_json(req, 200, &b);
    } else {
      buf_puts(&b, "{\"self\":null,\"standalone\":true,\"members\":[]}");
      api_reply_json(req, 200, &b);
    }
  } else if (slice_eqz(req->path, "/v1/cluster/leave")) {
    if (!post) {
      api_reply_error(req, 405, "use POST for /v1/cluster/leave", NULL);
    } else {
      buf_printf(&b, "{\"leaving\":true,\"mesh\":%s,\"in_flight\":%d}", c->mesh.ctx ? "true" : "false",
                 c->router->inflight);
      api_reply_json(req, 202, &b);
      c->leave_cb(c->arg);
    }
  } else if (slice_starts(req->path, "/v1/cluster/nodes/")) {
    if (!post)
      api_reply_error(req, 405, "use POST for /v1/cluster/nodes/NODE/drain|undrain", NULL);
    else
      drain(c, req, slice_make(req->path.base + 18, req->path.len - 18));
  } else {
    return false;
  }
  buf_free(&b);
  return true;
}
