/* The agent's side of api/mesh_port.h and api/control_port.h: the interfaces over agent/mesh and
 * agent/control. */
#include "agent/api_ports.h"

#include "agent/control_int.h"
#include "agent/rpc_worker.h"

static void members_json(void *ctx, struct buf *out) { mesh_members_json(ctx, out); }
static const char *node_name(const void *ctx) { return mesh_node_name(ctx); }
static const uint8_t *node_id(const void *ctx) { return mesh_node_id(ctx); }
static const char *find_node(const void *ctx, const char *name, bool *self, uint8_t *id) {
  return mesh_find_node(ctx, name, self, id);
}
static void set_drain(void *ctx, bool draining) { mesh_set_drain(ctx, draining); }
static struct keyring *cluster_keyring(void *ctx) { return mesh_keyring(ctx); }

static bool rpc_offered(void *ctx) { return mesh_rpc_offer(ctx) != NULL; }
static int rpc_lease(void *ctx, const char *host, const uint8_t *id, char *holder, size_t cap) {
  return rpc_worker_lease(mesh_rpc_offer(ctx), host, id, holder, cap);
}
static int rpc_release(void *ctx, const char *host, const uint8_t *id, const char *why) {
  return rpc_worker_release(mesh_rpc_offer(ctx), host, id, why);
}
static int rpc_port(void *ctx) { return rpc_worker_port(mesh_rpc_offer(ctx)); }
static uint64_t rpc_mem_mb(void *ctx) { return rpc_worker_mem_mb(mesh_rpc_offer(ctx)); }

struct api_mesh api_mesh_of(struct mesh *m) {
  return (struct api_mesh){.ctx = m,
                           .members_json = members_json,
                           .node_name = node_name,
                           .node_id = node_id,
                           .find_node = find_node,
                           .set_drain = set_drain,
                           .keyring = cluster_keyring,
                           .rpc_offered = rpc_offered,
                           .rpc_lease = rpc_lease,
                           .rpc_release = rpc_release,
                           .rpc_port = rpc_port,
                           .rpc_mem_mb = rpc_mem_mb};
}

static const struct fsm *fsm(const void *ctx) { return control_fsm(ctx); }
static uint64_t enforced_index(const void *ctx) { return control_enforced_index(ctx); }
static struct craft *raft(const void *ctx) { return control_raft(ctx); }
static const char *raft_address(const void *ctx) { return control_raft_address(ctx); }
static void propose(void *ctx, const void *cmd, size_t len, int hops, craft_apply_cb cb, void *arg) {
  control_propose(ctx, cmd, len, hops, cb, arg);
}
static int verify_hop(void *ctx, struct http_req *req, const char *what) {
  return control_verify_hop(ctx, req, what);
}
static void park(void *ctx, const struct api_control *ctl, struct http_req *req, uint32_t timeout_ms,
                 const struct api_wait *w) {
  control_wait(ctx, ctl, req, timeout_ms, w);
}

struct api_control api_control_of(struct control *c, struct mesh *m, const struct agent_config *cfg) {
  return (struct api_control){.ctx = c,
                              .mesh = m != NULL,
                              .node_name = cfg->node_name,
                              .admin_token = cfg->cluster.admin_token,
                              .keyring = m ? mesh_keyring(m) : NULL,
                              .node_id = m ? mesh_node_id(m) : NULL,
                              .fsm = fsm,
                              .enforced_index = enforced_index,
                              .raft = raft,
                              .raft_address = raft_address,
                              .propose = propose,
                              .verify_hop = verify_hop,
                              .wait = park};
}
