/* A split host asking a worker's agent for its rpc-server, or giving it back (the host's side of a lease;
 * agent/rpc_worker.h is the worker's, api/rpc_api.h its endpoint).
 *
 * The call is POST /v1/cluster/rpc/lease or /v1/cluster/rpc/release with {"host":"<this node's name>"} to the
 * worker's agent, through the agent-to-agent tunnel (mesh_hop_dialer), signed with the cluster key for that
 * worker and body (route/hop.h, HOP_CTL; hop target "rpc-lease:<hash>" or "rpc-release:<hash>") and with this
 * node's identity (x-infermesh-hop-node, hop_sign_node): the worker holds the lease for this node's id, and
 * no other agent of the cluster can lease or release it under this node's name. */
#ifndef IM_AGENT_RPC_LEASE_H
#define IM_AGENT_RPC_LEASE_H

#include <uv.h>

struct mesh;
struct rpc_lease_call;

#define RPC_LEASE_TIMEOUT_MS 5000

/* Called once with the worker's answer: status the HTTP status (0 when its agent could not be reached: then
 * msg is the transport error), port the rpc-server's port on a 200 to a lease (else 0), msg the error
 * message of a refusal ("" on success). msg is borrowed for the call. */
typedef void (*rpc_lease_cb)(void *arg, int status, int port, const char *msg);

/* rpc_lease_send sends verb ("lease" or "release") to the alive member named worker (borrowed for the call).
 * Returns the call (owned by the client until cb ran or rpc_lease_cancel), or NULL when worker is not an
 * alive member of mesh: cb is not called then. cb is never called inside rpc_lease_send. */
struct rpc_lease_call *rpc_lease_send(uv_loop_t *loop, struct mesh *mesh, const char *worker,
                                      const char *verb, rpc_lease_cb cb, void *arg);
/* rpc_lease_cancel aborts c: cb is not called; c is freed. */
void rpc_lease_cancel(struct rpc_lease_call *c);

#endif
