/* Budget spend across the mesh: this node's tenant spend (ledger/spend.h) goes to every gateway in gossip
 * spend reports, and what the others report is folded into the same book, so every ingress node enforces a
 * tenant's budget on the mesh's spend (DESIGN §8).
 *
 * Pacing: a report round (every tenant this node has spend for, GOSSIP_SPEND_TENANTS per datagram, to every
 * gateway) leaves while spend changes at most every BUDGET_SYNC_MIN_MS, stretched to
 * BUDGET_SYNC_MS_PER_MEMBER per alive member (so the datagrams a node sends stay near 1000 /
 * BUDGET_SYNC_MS_PER_MEMBER per second however large the mesh), and every BUDGET_SYNC_MAX_MS regardless (so a
 * member that joined, or lost a datagram, catches up). The staleness of a remote node's spend, and so a
 * budget's overshoot, is about one interval of that node's spending. */
#ifndef IM_AGENT_BUDGET_SYNC_H
#define IM_AGENT_BUDGET_SYNC_H

#include <stdint.h>
#include <uv.h>

#include "agent/mesh.h"
#include "ledger/spend.h"

#define BUDGET_SYNC_MIN_MS 50
#define BUDGET_SYNC_MS_PER_MEMBER 2
#define BUDGET_SYNC_MAX_MS 2000

struct budget_sync {
  uv_timer_t timer;
  struct spend_book *book; /* borrowed */
  struct mesh *mesh;       /* borrowed */
  uint64_t sent_ms;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

/* budget_sync_start reports book's local figures through mesh and merges the reports of others into book
 * (both borrowed: they must outlive the close callback). s is caller-owned memory. */
void budget_sync_start(struct budget_sync *s, uv_loop_t *loop, struct spend_book *book, struct mesh *mesh);

/* budget_sync_close stops reporting and receiving; cb(arg) runs on the loop once s may be freed. */
void budget_sync_close(struct budget_sync *s, void (*cb)(void *arg), void *arg);

#endif
