/* The worker's lease and release endpoints for split hosts (see rpc_api.h). */
#include "api/rpc_api.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "agent/control_int.h" /* control_verify_hop */
#include "agent/rpc_worker.h"
#include "api/reply.h"
#include "core/buf.h"
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

static void lease(struct mesh *mesh, struct rpc_worker *w, struct http_req *req, const char *host) {
  char holder[64];
  if (rpc_worker_lease(w, host, holder, sizeof holder) == -EBUSY) {
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
  buf_json_str(&b, slice_cstr(mesh_node_name(mesh)));
  buf_puts(&b, ",\"host\":");
  buf_json_str(&b, slice_cstr(host));
  buf_printf(&b, ",\"port\":%d,\"mem_mb\":%llu}", rpc_worker_port(w),
             (unsigned long long)rpc_worker_mem_mb(w));
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void release(struct mesh *mesh, struct rpc_worker *w, struct http_req *req, const char *host) {
  bool released = rpc_worker_release(w, host, "the host released it") == 0;
  struct buf b = {0};
  buf_puts(&b, "{\"node\":");
  buf_json_str(&b, slice_cstr(mesh_node_name(mesh)));
  buf_puts(&b, ",\"host\":");
  buf_json_str(&b, slice_cstr(host));
  buf_printf(&b, ",\"released\":%s}", released ? "true" : "false");
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

bool rpc_api_handle(struct control *ctl, struct mesh *mesh, struct http_req *req) {
  bool is_lease = slice_eqz(req->path, "/v1/cluster/rpc/lease");
  if (!is_lease && !slice_eqz(req->path, "/v1/cluster/rpc/release")) return false;
  if (!mesh) {
    api_reply_error(req, 409, "this agent is not in a mesh (no cluster key): it lends no rpc-server",
                    "standalone");
    return true;
  }
  if (!ctl) {
    api_reply_error(req, 503, "the agent is shutting down", "unavailable");
    return true;
  }
  int rc = control_verify_hop(ctl, req, is_lease ? "rpc-lease" : "rpc-release");
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
  struct rpc_worker *w = mesh_rpc_offer(mesh);
  char host[64];
  bool self;
  if (!w) {
    api_reply_error(req, 404, "this node offers no rpc-server (start its agent with --rpc-server)",
                    "rpc_not_offered");
  } else if (host_of(req, host, sizeof host) != 0) {
    return true;
  } else if (is_lease && (!mesh_find_node(mesh, host, &self, NULL) || self)) {
    api_reply_error(req, 503, "the host is not an alive member of this mesh (yet): try again", "unavailable");
  } else if (is_lease) {
    lease(mesh, w, req, host);
  } else {
    release(mesh, w, req, host);
  }
  return true;
}
