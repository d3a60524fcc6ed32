/* What the API handlers need of the agent's membership (agent/mesh.c), as an interface defined here and
 * filled by the agent (agent/api_ports.c), so api/ depends on no agent/ header (DESIGN §2: dependencies point
 * down). */
#ifndef IM_API_MESH_PORT_H
#define IM_API_MESH_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/keyring.h"
#include "core/buf.h"

/* ctx is the mesh (borrowed, outlives the handlers); ctx NULL: the agent runs alone (the functions are not
 * called). Called on the loop thread. */
struct api_mesh {
  void *ctx;
  /* members_json appends {"self": ID, "members": [...]} to out. */
  void (*members_json)(void *ctx, struct buf *out);
  /* node_name is this node's name; node_id its public key (32 bytes). Both owned by the mesh. */
  const char *(*node_name)(const void *ctx);
  const uint8_t *(*node_id)(const void *ctx);
  /* find_node returns the API address (host:port) of the alive member named name (or whose id starts with
   * it), NULL if none; *self tells it is this node; id (32 bytes, may be NULL) receives its node id. */
  const char *(*find_node)(const void *ctx, const char *name, bool *self, uint8_t *id);
  /* set_drain sets this node's drain flag (its targets take no new requests; it travels in gossip). */
  void (*set_drain)(void *ctx, bool draining);
  /* keyring is the cluster keyring (owned by the mesh). */
  struct keyring *(*keyring)(void *ctx);
  /* This node's rpc-server offer to split hosts (agent/rpc_worker.h). rpc_offered: the node was started with
   * --rpc-server (otherwise the other rpc_ functions are not called). rpc_lease: start the rpc-server for the
   * member host whose node id (32 bytes) is id: 0 (also when that member holds it already), or -EBUSY with
   * the holder's name in holder. rpc_release: host, with node id id, gives it back (why is logged): 0, or
   * -ENOENT when that member did not hold it. The caller has checked that host signed the request with id.
   * rpc_port and rpc_mem_mb: its loopback port and the free memory announced. */
  bool (*rpc_offered)(void *ctx);
  int (*rpc_lease)(void *ctx, const char *host, const uint8_t *id, char *holder, size_t cap);
  int (*rpc_release)(void *ctx, const char *host, const uint8_t *id, const char *why);
  int (*rpc_port)(void *ctx);
  uint64_t (*rpc_mem_mb)(void *ctx);
};

#endif
