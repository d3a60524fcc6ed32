/* A split model hosted here: a llama-server whose layers live in rpc-servers on other members (issue 15).
 *
 * The host's agent picks up to cluster.split_workers members that offer an rpc-server (label rpc=PORT,
 * agent/rpc_worker.h; most available memory first), opens a local tunnel forwarder to each
 * (tunnel/tunnel.h: the RPC bytes cross the network encrypted, and the rpc-servers stay on their loopback),
 * and runs cluster.split_exec with "{rpc}" replaced by the forwarders' addresses (127.0.0.1:L1,127.0.0.1:L2)
 * as a supervised helper process (agent/child_proc.h). The local runtime named cluster.split_target (its URL
 * is the llama-server's) is routed like any other. It is marked down at once when a stream to a chosen worker
 * fails (the worker's side was cut or refused: tunnel_forward_on_lost) or the worker leaves membership: the
 * llama-server is stopped and started again over the workers still there (the failed one left out when
 * another is there), or as soon as one is. With none it waits (logged). A worker that joins later is used
 * at the next restart, not by stopping a running server. The command is split on blanks (no quoting).
 * Everything runs on the loop. */
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
