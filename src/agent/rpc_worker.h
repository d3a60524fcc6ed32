/* An llama.cpp rpc-server this node offers to the mesh (one model split across nodes: the layers of a host's
 * llama-server live in rpc-servers on other nodes; agent/split.h is the host's side).
 *
 * The agent runs `BIN -H 127.0.0.1 -p PORT` as a supervised helper process (agent/child_proc.h), bound to
 * loopback only: llama.cpp's RPC protocol has no authentication, so other nodes reach it only through the
 * tunnel (mesh.c allows PORT there). While it runs the node announces it in membership: the role rpc and the
 * labels rpc=PORT and rpc_mem_mb=MB (the machine's available memory when the agent started), which hosts use
 * to pick workers. */
#ifndef IM_AGENT_RPC_WORKER_H
#define IM_AGENT_RPC_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct rpc_worker;

/* rpc_worker_start starts bin on 127.0.0.1:port (copied). 0 and *out (owned by the caller: rpc_worker_stop
 * frees it), or -EINVAL with a message in err. */
int rpc_worker_start(struct rpc_worker **out, uv_loop_t *loop, const char *bin, int port, char *err,
                     size_t errlen);
/* rpc_worker_up: the rpc-server is running now; *mem_mb is what it announces. */
bool rpc_worker_up(const struct rpc_worker *w, uint64_t *mem_mb);
int rpc_worker_port(const struct rpc_worker *w);
/* rpc_worker_stop stops the rpc-server (child_proc_stop) and calls closed_cb(arg) once nothing of w is left
 * on the loop; w is freed then. */
void rpc_worker_stop(struct rpc_worker *w, void (*closed_cb)(void *arg), void *arg);

#endif
