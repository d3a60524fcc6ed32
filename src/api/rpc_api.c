/* The worker's lease and release endpoints for split hosts (see rpc_api.h). */
#include "api/rpc_api.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/reply.h"
#include "core/buf.h"
#include "net/http_req.h"
#include "route/hop.h"

/* host_of reads {"host": NAME} from the body into host: 0, or -EINVAL (answered). */
static int host_of(struct http_req *req, char *host, size_t cap) {
  json_t *root =
      json_loadb(req->body.base ? req->body.base : "", req->body.len, JSON_REJECT_DUPLICATES, NULL);
  json_t *h = json_object_get(root, "host");
  int rc = json_is_string(h) && json_string_length(h) > 0 && json_string_length(h) < cap ? 0 : -EINVAL;
  if (rc == 0) memcpy(host, json_string_value(h), json_string_length(h) + 1);
  json_decref(root);
  if (rc != 0)
    api_reply_error(req, 400, "the body must be {\"host\": \"<the split host's member name>\"}",
                    "invalid_value");
  return rc;
}

/* signed_by checks the node signature (x-infermesh-hop-node, route/hop.h) of req, whose hop header was
 * accepted already, against pk: the node id of the member the body names. */
static bool signed_by(const struct api_mesh *mesh, struct http_req *req, const uint8_t *pk) {
  struct hop_bind hb = {.request_id = http_req_header(req, "x-request-id"),
                        .target = http_req_header(req, "x-infermesh-hop-target"),
                        .node = mesh->node_id(mesh->ctx)};
  hop_digest(http_method_name(req->method), req->url, &req->body, 1, hb.digest);
  return hop_verify_node(pk, HOP_CTL, http_req_header(req, "x-infermesh-hop"), &hb,
                         http_req_header(req, "x-infermesh-hop-node")) == 0;
}

static void lease(const struct api_mesh *mesh, struct http_req *req, const char *host, const uint8_t *id) {
  char holder[64];
  if (mesh->rpc_lease(mesh->ctx, host, id, holder, sizeof holder) == -EBUSY) {
    char msg[200];
    snprintf(
        msg, sizeof msg,
        "this rpc worker is held by host '%s' (it is free again when that host releases it or leaves the "
        "mesh)",
        holder);
    api_reply_error(req, 409, msg, "rpc_worker_busy");
    return;
  }
  struct buf b = {0};
  buf_puts(&b, "{\"node\":");
  buf_json_str(&b, slice_cstr(mesh->node_name(mesh->ctx)));
  buf_puts(&b, ",\"host\":");
  buf_json_str(&b, slice_cstr(host));
  buf_printf(&b, ",\"port\":%d,\"mem_mb\":%llu}", mesh->rpc_port(mesh->ctx),
             (unsigned long long)mesh->rpc_mem_mb(mesh->ctx));
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void release(const struct api_mesh *mesh, struct http_req *req, const char *host, const uint8_t *id) {
  bool released = mesh->rpc_release(mesh->ctx, host, id, "the host released it") == 0;
  struct buf b = {0};
  buf_puts(&b, "{\"node\":");
  buf_json_str(&b, slice_cstr(mesh->node_name(mesh->ctx)));
  buf_puts(&b, ",\"host\":");
  buf_json_str(&b, slice_cstr(host));
  buf_printf(&b, ",\"released\":%s}", released ? "true" : "false");
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

bool rpc_api_handle(const struct api_control *ctl, const struct api_mesh *mesh, struct http_req *req) {
  bool is_lease = slice_eqz(req->path, "/v1/cluster/rpc/lease");
  if (!is_lease && !slice_eqz(req->path, "/v1/cluster/rpc/release")) return false;
  if (!mesh->ctx) {
    api_reply_error(req, 409, "this agent is not in a mesh (no cluster key): it lends no rpc-server",
                    "standalone");
    return true;
  }
  if (!ctl->ctx) {
    api_reply_error(req, 503, "the agent is shutting down", "unavailable");
    return true;
  }
  int rc = ctl->verify_hop(ctl->ctx, req, is_lease ? "rpc-lease" : "rpc-release");
  if (rc == -EBUSY) {
    api_reply_error(req, 503, "too many forwarded requests to remember: try again shortly",
                    "server_overloaded");
    return true;
  }
  if (rc != 0) {
    api_reply_error(req, 403,
                    rc == -EPROTO ? hop_refusal(rc) : "only agents of this cluster may lease its rpc-servers",
                    "permission_denied");
    return true;
  }
  char host[64], msg[200];
  uint8_t id[32];
  bool self;
  if (!mesh->rpc_offered(mesh->ctx)) {
    api_reply_error(req, 404, "this node offers no rpc-server (start its agent with --rpc-server)",
                    "rpc_not_offered");
  } else if (host_of(req, host, sizeof host) != 0) {
    return true;
  } else if (!mesh->find_node(mesh->ctx, host, &self, id) || self) {
    api_reply_error(req, 503, "the host is not an alive member of this mesh (yet): try again", "unavailable");
  } else if (!signed_by(mesh, req, id)) {
    snprintf(
        msg, sizeof msg,
        "not signed by the node '%s' (x-infermesh-hop-node): an agent leases and releases for itself only",
        host);
    api_reply_error(req, 403, msg, "permission_denied");
  } else if (is_lease) {
    lease(mesh, req, host, id);
  } else {
    release(mesh, req, host, id);
  }
  return true;
}
