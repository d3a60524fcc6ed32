/* The worker's end of a split host's lease (agent/rpc_worker.h, agent/rpc_lease.h):
 *   POST /v1/cluster/rpc/lease    {"host": NAME}  start this node's rpc-server for the member NAME
 *   POST /v1/cluster/rpc/release  {"host": NAME}  NAME gives it back: the rpc-server stops
 * Only agents of this cluster may call them: the request must be signed with the cluster key for this node
 * and its body (route/hop.h; hop target "rpc-lease:<hash>" / "rpc-release:<hash>"); the route table lets no
 * token through (API_AGENT). NAME must be an alive member other than this node, and the request signed by
 * NAME's own node key too (x-infermesh-hop-node, checked against the id membership announces for NAME): the
 * cluster key proves only that some agent of the cluster sent it, so without this any agent could release
 * another host's worker. The lease is held by NAME's node id.
 * Answers: 200 {"node","host","port","mem_mb"} (lease: also when NAME holds it already) or
 * {"node","host","released"} (release: false when NAME did not hold it); 400 a bad body; 403 a bad signature
 * (cluster key, or NAME's node key);
 * 404 rpc_not_offered (this node was not started with --rpc-server); 409 rpc_worker_busy (another host holds
 * it: the message names it) or standalone; 503 NAME is not an alive member (yet), or too many signatures to
 * remember. */
#ifndef IM_API_RPC_API_H
#define IM_API_RPC_API_H

#include <stdbool.h>

#include "api/control_port.h"
#include "api/mesh_port.h"
#include "net/http_server.h"

/* rpc_api_handle answers req when its path is one of these endpoints and returns true; otherwise returns
 * false without touching req (the route table admits POST only). ctl checks the signature (ctl->ctx NULL
 * while closing: 503); mesh->ctx is NULL when the agent runs alone. Both borrowed for the call. */
bool rpc_api_handle(const struct api_control *ctl, const struct api_mesh *mesh, struct http_req *req);

#endif
