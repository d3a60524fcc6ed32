/* The mesh's use of the agent-to-agent tunnel (tunnel/tunnel.h): serving it on the gossip port, the dialer
 * that pools to other agents use, the ports it allows (this agent's API, cluster.tunnel_allow, an rpc-server
 * offered with cluster.rpc_server), its forwarders (cluster.tunnel_forward) and a split model hosted here
 * (cluster.split_target). Part of agent/mesh.c, which embeds struct mesh_tunnel. */
#ifndef IM_AGENT_MESH_TUNNEL_H
#define IM_AGENT_MESH_TUNNEL_H

#include <stddef.h>
#include <uv.h>

#include "agent/config.h"
#include "cluster/gossip.h"
#include "cluster/identity.h"
#include "cluster/keyring.h"
#include "net/http_client.h"
#include "state/store.h"
#include "tunnel/tunnel.h"

struct mesh;
struct rpc_worker;
struct split;

/* What the mesh runs over its tunnel; plain data owned by the mesh. */
struct mesh_tunnel {
  struct tunnel *tunnel;
  struct http_dialer dialer; /* arg: the tunnel */
  struct rpc_worker *rpc;    /* the rpc-server this node offers, or NULL */
  struct split *split;       /* the split model this node hosts, or NULL */
  struct gossip *gossip;     /* borrowed: members' addresses */
  const uint8_t *self;       /* borrowed: this node's id */
  struct mesh *mesh;         /* borrowed: members by name */
};

/* What mesh_tunnel_start borrows (all outlive the mesh tunnel). */
struct mesh_tunnel_env {
  uv_loop_t *loop;
  struct mesh *mesh;
  struct gossip *gossip;
  const struct identity *id;
  struct keyring *kr;
  const struct agent_config *cfg;
  const char *api_addr; /* this agent's API address: its port is allowed, relayed to cfg->listen_host */
  int hop_port;         /* > 0: relay it to 127.0.0.1:hop_port instead (the listener has TLS on) */
  struct store *store;
  int nlocal;
};

/* mesh_tunnel_start fills mt (zeroed by the caller) from e and the configuration: 0, or a negative code with
 * a message for the user in err (a bad allowed port or forwarder, an rpc-server that cannot run, a split
 * without its target); what was started is then closed by mesh_tunnel_close. */
int mesh_tunnel_start(struct mesh_tunnel *mt, const struct mesh_tunnel_env *e, char *err, size_t errlen);
/* mesh_tunnel_parts is how many times mesh_tunnel_close will call its part_cb. */
int mesh_tunnel_parts(const struct mesh_tunnel *mt);
/* mesh_tunnel_close stops the split (its forwarders at once), the rpc-server and the tunnel; part_cb(arg)
 * (may be NULL) runs once as each is gone from the loop. */
void mesh_tunnel_close(struct mesh_tunnel *mt, void (*part_cb)(void *arg), void *arg);

#endif
