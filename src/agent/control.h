/* The agent's control plane: a Raft server (agents started with --server) or a read replica (every other
 * agent in a mesh); its /v1/cluster/{raft,state,policies,pins,drains,tenants,prices} endpoints are in
 * api/control_api.c, over the interface api/control_port.h that agent/api_ports.c fills from it.
 *
 * Servers bootstrap once --bootstrap-expect servers are alive in gossip (each computes the same voter set:
 * the N smallest raft ids among them), or wait to be added by the leader, which adds every server it sees in
 * gossip as a standby and promotes standbys to keep an odd number of voters, up to 5. The leader's autopilot
 * (control_autopilot.c) removes a server that left at once and one dead in gossip for longer than a grace
 * (30 s), one at a time and only while the healthy voters stay a majority; a leaving leader first hands its
 * leadership to the most up-to-date voter. Writes are turned into FSM commands with an id at
 * the agent that received them and proposed to the leader — locally, or forwarded to its agent over HTTP with
 * a hop signature of the cluster key that covers the command bytes.
 *
 * Read replica: a non-server agent long-polls GET /v1/cluster/state?after=INDEX on an alive server (signed with
 * the cluster key); the server answers with the whole FSM snapshot as soon as its index passes INDEX (or
 * after 20 s unchanged). The FSM is small and writes are rare, so a full copy per change is cheap, needs no
 * Raft membership for replicas (no extra load on the leader's replication, no quorum effects) and arrives one
 * round trip after the server applied the write. */
#ifndef IM_AGENT_CONTROL_H
#define IM_AGENT_CONTROL_H

#include <stdbool.h>
#include <uv.h>

#include "agent/config.h"
#include "agent/mesh.h"
#include "cluster/fsm.h"
#include "net/http_server.h"
#include "route/router.h"

struct control;

/* Borrowed from the agent; all outlive the control. mesh may be NULL (standalone: endpoints answer 409). */
struct control_env {
  uv_loop_t *loop;
  const struct agent_config *cfg;
  struct mesh *mesh;
  struct router *router;
};

/* control_start opens the Raft server (cfg->cluster.server) or starts the replica. Returns 0 and *out, or a
 * negative code with a message for the user in err. */
int control_start(struct control **out, const struct control_env *env, char *err, size_t errlen);

/* control_fsm is the state routers enforce (owned by c; valid until control_close; read-only; it changes
 * between loop turns). Never NULL; empty until the first sync. */
const struct fsm *control_fsm(const struct control *c);

/* control_enforced_index is the FSM index the router last followed; control_raft is the Raft server (NULL on
 * a read replica) and control_raft_address its address. */
uint64_t control_enforced_index(const struct control *c);
struct craft *control_raft(const struct control *c);
const char *control_raft_address(const struct control *c);

/* control_close stops everything; waiting requests get 503; closed_cb runs when nothing is left, then c is
 * freed. */
void control_close(struct control *c, void (*closed_cb)(void *arg), void *arg);

#endif
