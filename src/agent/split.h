/* A split model hosted here: a llama-server whose layers live in rpc-servers on other members (issue 15).
 *
 * The host's agent picks up to cluster.split_workers members that offer rpc-server capacity (role rpc, label
 * rpc=PORT, agent/rpc_worker.h), most free memory first, leaving out those another host holds (label
 * rpc_host) and those whose free memory (label rpc_mem_mb, kept fresh by the worker) is below the model's
 * share: the size of the file after -m/--model in the command over split_workers. It asks each one's agent to
 * lend its rpc-server (agent/rpc_lease.h: the worker starts it on its loopback and supervises it; a refusal,
 * e.g. 409 when another host got there first, leaves that worker out of the next pick), probes each leased
 * rpc-server through the tunnel until it accepts a stream (at most 50 ticks of 200 ms), opens a local tunnel
 * forwarder to each (tunnel/tunnel.h: the RPC bytes cross the network encrypted) and runs cluster.split_exec
 * with "{rpc}" replaced by the forwarders' addresses (127.0.0.1:L1,127.0.0.1:L2) as a supervised helper
 * process (agent/child_proc.h). The local runtime named cluster.split_target (its URL is the llama-server's)
 * is routed like any other. It is marked down at once when a stream to a chosen worker fails (the worker's
 * side was cut or refused, or ended first: its rpc-server exited, even while no request ran;
 * tunnel_forward_on_lost) or the worker leaves membership: the llama-server is
 * stopped and workers picked again (the failed one left out when another is there); the workers of the last
 * pick that the new one leaves out are released (POST /v1/cluster/rpc/release). With none it waits (logged,
 * with how many are held by other hosts or too small). A worker that joins later is used at the next restart,
 * not by stopping a running server. When this agent stops, its leases end as the workers see it leave the
 * mesh (or die). The command is split on blanks (no quoting). Everything runs on the loop. */
#ifndef IM_AGENT_SPLIT_H
#define IM_AGENT_SPLIT_H

#include <stddef.h>
#include <uv.h>

#include "agent/config.h"
#include "state/store.h"

struct mesh;
struct split;

/* split_start prepares the split for the target named cc->split_target among store targets [0, nlocal) (all
 * borrowed: they outlive it) and starts its first pick. 0 and *out, or -EINVAL with a message in err (no such
 * target, no {rpc} in the command). */
int split_start(struct split **out, uv_loop_t *loop, struct mesh *mesh, struct store *store, int nlocal,
                const struct config_cluster *cc, char *err, size_t errlen);
/* split_stop closes the forwarders at once, stops the llama-server and calls closed_cb(arg) when nothing of
 * s is left on the loop; s is freed then. */
void split_stop(struct split *s, void (*closed_cb)(void *arg), void *arg);

#endif
