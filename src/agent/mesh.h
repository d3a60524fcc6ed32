/* The agent's side of the mesh: gossip membership turned into remote targets, this node's load and meta
 * published to the others, drains and leaves, and the members table for the API. */
#ifndef IM_AGENT_MESH_H
#define IM_AGENT_MESH_H

#include <stdbool.h>
#include <uv.h>

#include "agent/config.h"
#include "agent/gpu_poll.h"
#include "core/buf.h"
#include "net/http_client.h"
#include "proto/gossip_msg.h"
#include "route/router.h"
#include "state/store.h"

struct mesh;
struct rpc_worker;

/* What the mesh borrows from the agent (all outlive it). pools has store->cap entries: the mesh
 * initializes and closes those of the remote targets it adds. */
struct mesh_env {
  uv_loop_t *loop;
  const struct agent_config *cfg;
  struct store *store;
  struct router *router;
  struct http_pool *pools;
  int nlocal;           /* store targets [0, nlocal) are this node's own runtimes */
  const char *api_addr; /* host:port of this agent's HTTP listener, as other nodes should dial it */
  int hop_port;         /* > 0: tunnel hops to api_addr's port go to this plaintext loopback listener (TLS on) */
  const struct gpu_poll *gpu; /* this node's GPU telemetry (its health travels in the meta) */
};

/* mesh_start reads the data dir: with a cluster key (or an invite token among cfg->cluster.join, which
 * fetches it first) it starts gossip and joins; *out is the mesh. Without a key and without a token the
 * agent runs alone: returns 0 with *out = NULL. Errors: negative, with a message for the user in err. */
int mesh_start(struct mesh **out, const struct mesh_env *env, char *err, size_t errlen);

/* mesh_set_kv hands the mesh the agent's shared cache state (agent/kv_state.h; borrowed, NULL = none): its
 * reports go out on the mesh's publish timer and other nodes' reports come to it. */
struct kv_state;
void mesh_set_kv(struct mesh *m, struct kv_state *kv);

/* mesh_members_json writes {"self": ID, "members": [...]} (every member, tombstones included). */
void mesh_members_json(struct mesh *m, struct buf *out);
/* mesh_metrics appends the gossip counters in Prometheus text. */
void mesh_metrics(struct mesh *m, struct buf *out);
/* mesh_node_name / mesh_node_id_short name this node. */
const char *mesh_node_name(const struct mesh *m);
const char *mesh_node_id_short(const struct mesh *m);

/* mesh_keyring is the cluster keyring (owned by m; valid until m is closed). */
struct keyring *mesh_keyring(struct mesh *m);

/* mesh_set_drain sets this node's drain flag: its own targets take no new requests from any router, and the
 * flag travels in its membership meta. */
void mesh_set_drain(struct mesh *m, bool draining);
bool mesh_draining(const struct mesh *m);
/* mesh_find_node returns the API address (host:port) of the alive member named name (or whose id starts
 * with it), NULL if none; *self tells it is this node, and id (32 bytes; may be NULL) receives its node
 * id. */
const char *mesh_find_node(const struct mesh *m, const char *name, bool *self, uint8_t *id);

/* mesh_node_provider is the provider the member named name (this node included; alive or not, while it is
 * known) announces, or NULL when it announces none (its name is its provider) or is unknown. Borrowed until
 * its next meta update. */
const char *mesh_node_provider(const struct mesh *m, const char *name);
/* Control plane support (agent/control.h). mesh_set_raft announces this node's Raft address ("" = not a
 * server) and whether it holds Raft state. mesh_servers fills out (capacity max) with the alive members that
 * announce a Raft address, this node first when it is one; returns how many. mesh_node_id is this node's
 * public key (owned by m). */
struct mesh_server {
  uint8_t id[32];
  char name[64];
  char api_addr[64];
  char raft_addr[64];
  bool formed, self;
};
void mesh_set_raft(struct mesh *m, const char *raft_addr, bool formed);
int mesh_servers(const struct mesh *m, struct mesh_server *out, int max);
const uint8_t *mesh_node_id(const struct mesh *m);
/* mesh_identity is this node's key pair (owned by m; the secret key never leaves the node): what signs what
 * this node asks for itself (route/hop.h hop_sign_node). */
struct identity;
const struct identity *mesh_identity(const struct mesh *m);
/* mesh_hop_dialer opens connections to other agents through the tunnel (http_pool_set_dialer; owned by m), or
 * is NULL with --insecure-hops (plaintext TCP). mesh_tunnel is the tunnel itself (owned by m; it runs with
 * --insecure-hops too), for subsystems that register ports or open forwarders (tunnel/tunnel.h). */
const struct http_dialer *mesh_hop_dialer(const struct mesh *m);
struct tunnel *mesh_tunnel(struct mesh *m);
/* mesh_rpc_workers fills out (capacity max) with the alive members other than this node that offer an
 * rpc-server (role rpc, label rpc=PORT; agent/rpc_worker.h), most available memory first; returns how many.
 * holder is the host that holds one now (label rpc_host), "" when it is free. */
struct mesh_rpc_worker {
  char name[64];
  int port;
  uint64_t mem_mb;
  char holder[64];
};
int mesh_rpc_workers(const struct mesh *m, struct mesh_rpc_worker *out, int max);
/* mesh_rpc_offer is the rpc-server capacity this node offers (cluster.rpc_server), or NULL (owned by m). */
struct rpc_worker *mesh_rpc_offer(struct mesh *m);
/* mesh_data_dir is the data dir in use (owned by m). */
const char *mesh_data_dir(const struct mesh *m);

/* mesh_reload_keyring rereads the keyring from the data dir (SIGHUP). */
void mesh_reload_keyring(struct mesh *m);

/* Tenant spend for budgets (agent/budget_sync.h): mesh_on_spend sets the function called with each spend report
 * an alive member sends (one at a time; s valid during the call); mesh_send_spend sends s to every alive
 * gateway. */
void mesh_on_spend(struct mesh *m, void (*fn)(void *arg, const struct gossip_spend *s), void *arg);
void mesh_send_spend(struct mesh *m, struct gossip_spend *s);
/* mesh_num_alive is how many members (this node included) are alive as this node sees them. */
int mesh_num_alive(const struct mesh *m);

/* mesh_leave announces a graceful leave; done_cb runs once it has spread (or after 2 s). */
void mesh_leave(struct mesh *m, void (*done_cb)(void *arg), void *arg);
/* mesh_close stops gossip and timers; closed_cb runs when nothing of the mesh is left on the loop, then m is
 * freed. */
void mesh_close(struct mesh *m, void (*closed_cb)(void *arg), void *arg);

/* mesh_left_servers fills out (capacity max) with the members that left gracefully (their tombstone is still
 * kept) and had announced a Raft address; returns how many. Read-only (the Raft autopilot removes them). */
int mesh_left_servers(const struct mesh *m, struct mesh_server *out, int max);

#endif
