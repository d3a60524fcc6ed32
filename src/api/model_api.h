/* The agent's model control API: POST /v1/cluster/targets/TARGET/load and .../unload turn into the runtime's
 * own load/unload request (adapter/adapter.h runtime_control_request), sent without blocking the loop; a
 * target of another node is forwarded to that node's agent, signed with the cluster key.
 *
 * Body: {"model": NAME, "lora_path": PATH (LoRA load), "type": "model"|"lora" (default: lora on vLLM and
 * SGLang, model elsewhere), "timeout_s": S (120)}. Needs the admin token (api_authorize_admin).
 * Answers: 200 {"target","node","model","op","type","kind","runtime_status","runtime_message"}; 400 a bad
 * body or a request the runtime kind cannot express; 401/403 auth; 404 unknown target; 405 not POST;
 * 409 another node's target on an agent without a mesh; 501 the runtime kind has no such control (TGI);
 * 502 the runtime refused (its error text) or could not be reached. On success the target's model list
 * in the store is updated at once; the next scrape confirms it. */
#ifndef IM_API_MODEL_API_H
#define IM_API_MODEL_API_H

#include <stdbool.h>
#include <uv.h>

#include "api/control_port.h"
#include "api/mesh_port.h"
#include "net/http_server.h"
#include "route/router.h"
#include "state/store.h"

/* Borrowed from the agent; all outlive every request this answers. mesh->ctx is NULL when the agent runs
 * alone; ctl checks the admin token (and forwarded requests' signatures). */
struct model_api {
  uv_loop_t *loop;
  struct store *store;
  struct router *router; /* request ids (its rng) */
  const struct api_mesh *mesh;
  const struct api_control *ctl;
  const char *node_name; /* this node, for answers */
};

/* model_api_handle answers req when it is a load/unload endpoint and returns true (the answer may come
 * later: the request is owned by an operation until then, which ends early if the client goes away);
 * otherwise returns false and leaves req alone. */
bool model_api_handle(struct model_api *m, struct http_req *req);

#endif
