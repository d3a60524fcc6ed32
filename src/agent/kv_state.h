/* Cache state shared by every gateway (DESIGN §6 "many gateways"): this node's runtimes' KV-cache events feed
 * the store and the router, and go to every gateway of the mesh as compact deltas of block hashes; reports
 * from other nodes feed this router the same way. For runtimes that publish no events, this router's
 * routing decisions are shared instead (what `infermesh simulate --share-routes` models).
 *
 * Hashes: a report names blocks by the routers' chained prompt-block hashes (policy_prompt_hashes). The
 * simulated engine hashes prompt blocks exactly so, so its events match what routers compute. vLLM and
 * SGLang hash token ids (sha256 / their own), which a router cannot compute from prompt text without the
 * model's tokenizer. So a runtime's events reach policies and the mesh only once one of its stored blocks is
 * seen to be the first block of a prompt routed to it; until then they fill only the target's view on this
 * node, and prefix matching for it comes from routing decisions (shared the same way).
 *
 * Bounds: per local target at most KV_STATE_PENDING hashes wait to be sent (the oldest dropped beyond); all
 * cache reports of one node together stay within KV_STATE_BYTES_PER_S of UDP payload (every gateway's copy
 * counted), deltas waiting while the budget is spent. */
#ifndef IM_AGENT_KV_STATE_H
#define IM_AGENT_KV_STATE_H

#include <stdint.h>
#include <uv.h>

#include "agent/config.h"
#include "cluster/gossip.h"
#include "core/buf.h"
#include "route/router.h"
#include "state/store.h"

#define KV_STATE_PENDING 8192
#define KV_STATE_BYTES_PER_S (16 * 1024)
#define KV_STATE_ROUTE_BLOCKS 64 /* a shared routing decision names at most the prompt's first 64 blocks */

struct kv_state;

/* What kv_state borrows from the agent (all outlive it). Store targets [0, nlocal) are this node's runtimes,
 * in cfg->runtimes order. */
struct kv_state_env {
  uv_loop_t *loop;
  const struct agent_config *cfg;
  struct store *store;
  struct router *router;
  int nlocal;
};

/* kv_state_start subscribes to the KV-cache events of every local runtime that has `kv_events` and hooks
 * the router's routing decisions (router->routed_cb). Returns 0 and *out, or a negative code with a message
 * for the user in err (a bad endpoint). */
int kv_state_start(struct kv_state **out, const struct kv_state_env *env, char *err, size_t errlen);

/* kv_state_flush sends what waits, within the byte budget, through g (this node's gossip; self is its node
 * id). Called on the mesh's publish timer. */
void kv_state_flush(struct kv_state *k, struct gossip *g, const uint8_t self[GOSSIP_ID_LEN], uint64_t now_ns);

/* kv_state_report applies a cache report from another node (c borrowed for the call). */
void kv_state_report(struct kv_state *k, const struct gossip_cache *c, const uint8_t self[GOSSIP_ID_LEN]);

/* kv_state_metrics appends the subscribers' and the mesh channel's counters in Prometheus text. */
void kv_state_metrics(const struct kv_state *k, struct buf *out);

/* kv_state_close stops the subscribers, unhooks the router and frees k (the subscribers' handles finish
 * closing on the loop). NULL is a no-op. */
void kv_state_close(struct kv_state *k);

#endif
