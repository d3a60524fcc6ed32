/* The llama.cpp rpc-server capacity this node offers to the mesh (one model split across nodes: the layers of
 * a host's llama-server live in rpc-servers on other nodes; agent/split.h is the host's side).
 *
 * A node started with cluster.rpc_server announces in membership the role rpc and the labels rpc=PORT and
 * rpc_mem_mb=MB (MemAvailable from /proc/meminfo, re-read every RPC_MEM_MS and re-announced when it moved by
 * RPC_MEM_STEP_PCT percent or RPC_MEM_STEP_MB, whichever is more), and runs nothing until a host leases it
 * (rpc_worker_lease: POST /v1/cluster/rpc/lease from the host's agent, api/rpc_api.h). Then it runs
 * `BIN -H 127.0.0.1 -p PORT` as a supervised helper process (agent/child_proc.h), bound to loopback only:
 * llama.cpp's RPC protocol has no authentication, so other nodes reach it only through the tunnel (mesh.c
 * allows PORT there). One host holds it at a time (announced as the label rpc_host=NAME); the rpc-server
 * stops when that host releases it, when the host is no longer an alive member (mesh.c checks every publish
 * tick) and when the agent stops. Everything runs on the loop. */
#ifndef IM_AGENT_RPC_WORKER_H
#define IM_AGENT_RPC_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define RPC_MEM_MS 2000
#define RPC_MEM_STEP_PCT 5
#define RPC_MEM_STEP_MB 64

struct rpc_worker;

/* rpc_worker_start checks that bin is executable and port is 1-65535 (copied) and starts reading the free
 * memory; no rpc-server runs yet. 0 and *out (owned by the caller: rpc_worker_stop frees it), or -EINVAL with
 * a message in err. */
int rpc_worker_start(struct rpc_worker **out, uv_loop_t *loop, const char *bin, int port, char *err,
                     size_t errlen);
/* rpc_worker_lease gives the worker to host, the member whose node id is id (RPC_ID_LEN bytes; both copied:
 * the caller checked that host signed the request with that id), and starts the rpc-server if none runs: 0,
 * also when that member holds it already (a host that restarted asks again: its id is kept in its data dir);
 * -EBUSY when another member holds it (another id, even under the same name), whose name is then written to
 * holder (cap bytes). */
#define RPC_ID_LEN 32
int rpc_worker_lease(struct rpc_worker *w, const char *host, const uint8_t *id, char *holder, size_t cap);
/* rpc_worker_release frees the worker held by host and stops its rpc-server (why goes to the log): 0, or
 * -ENOENT when host does not hold it (nothing changes). id: the node id of the member asking (RPC_ID_LEN
 * bytes), which must be the holder's; NULL when this node decides (its agent stops, the holder left). */
int rpc_worker_release(struct rpc_worker *w, const char *host, const uint8_t *id, const char *why);
/* rpc_worker_holder is the name of the host holding w, "" when free (owned by w, valid until it changes);
 * rpc_worker_holder_id its node id (RPC_ID_LEN bytes, owned by w; meaningless while free). */
const char *rpc_worker_holder(const struct rpc_worker *w);
const uint8_t *rpc_worker_holder_id(const struct rpc_worker *w);
/* rpc_worker_mem_mb is the free memory w announces, in MiB. */
uint64_t rpc_worker_mem_mb(const struct rpc_worker *w);
/* rpc_worker_running: an rpc-server runs now (leased, and not between an exit and its restart). */
bool rpc_worker_running(const struct rpc_worker *w);
int rpc_worker_port(const struct rpc_worker *w);
/* rpc_worker_mem_moved: would a reading of now_mb be re-announced over announced_mb (the step rule above)? */
bool rpc_worker_mem_moved(uint64_t announced_mb, uint64_t now_mb);
/* rpc_worker_stop stops the rpc-server (child_proc_stop) and the memory reading, and calls closed_cb(arg)
 * once nothing of w is left on the loop; w is freed then. */
void rpc_worker_stop(struct rpc_worker *w, void (*closed_cb)(void *arg), void *arg);

#endif
