/* Membership endpoints of the control API (/v1/cluster/members, /leave, /nodes/NODE/drain|undrain). */
#ifndef IM_API_CLUSTER_API_H
#define IM_API_CLUSTER_API_H

#include <stdbool.h>
#include <uv.h>

#include "api/mesh_port.h"
#include "net/http_server.h"
#include "route/router.h"

/* Borrowed from the agent. mesh.ctx is NULL when the agent runs alone. leave_cb starts the agent's graceful
 * exit (leave the mesh, drain, stop). */
struct cluster_api {
  uv_loop_t *loop;
  struct api_mesh mesh;
  struct router *router;
  void (*leave_cb)(void *arg);
  void *arg;
};

/* cluster_api_handle answers req when its path is one of these endpoints and returns true; otherwise
 * returns false without touching req. A drain of another node is forwarded to that node's agent, signed
 * with the cluster key. */
bool cluster_api_handle(struct cluster_api *c, struct http_req *req);

#endif
