/* Internal to cluster/swim.c and cluster/swim_queue.c: the member record, the state machine's struct and the
 * broadcast (dissemination) queue. Nothing outside those two files includes this. */
#ifndef IM_CLUSTER_SWIM_INT_H
#define IM_CLUSTER_SWIM_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/swim.h"
#include "core/rng.h"

#define SWIM_MAX_CONFIRM 16 /* suspicion confirmations remembered; K (indirect_checks) is clamped to it */
#define SWIM_MAX_HELPERS 16 /* helpers of one indirect probe; indirect_checks is clamped to it */
#define SWIM_MAX_SEEDS 16
#define SWIM_MAX_RELAYS 64 /* PING_REQs being served for others at once; the oldest is dropped when full */

/* One member (self included). Owned by struct swim's table; freed when forgotten or by swim_free. */
struct member {
  struct swim_member pub; /* pub.u.from: ALIVE/LEFT: the member; SUSPECT: first suspecter; DEAD: declarer */
  /* suspicion, meaningful while pub.u.state == GOSSIP_SUSPECT */
  uint64_t susp_start, susp_min, susp_max, susp_deadline;
  int nconfirm;
  uint8_t confirm[SWIM_MAX_CONFIRM][GOSSIP_ID_LEN];
  /* broadcast queue: the queued fact is always this member's current fact, with `from` = bq_from */
  int bq_idx; /* index in swim.bq, -1 when not queued */
  int bq_transmits;
  uint64_t bq_order; /* enqueue order: newer first among equally transmitted */
  uint32_t bq_stamp; /* marks members already considered while filling one message */
  uint8_t bq_from[GOSSIP_ID_LEN];
};

/* The probe this node has in flight (at most one, as in SWIM). */
struct probe {
  bool active, indirect;
  struct member *target; /* NULL when the target was forgotten meanwhile */
  uint32_t seq;
  uint64_t timeout_at, end_at;
  int expected_nacks, nacks;
  uint8_t nack_from[SWIM_MAX_HELPERS][GOSSIP_ID_LEN];
};

/* A PING_REQ served for another node: our PING's seq, and where the answer goes. */
struct relay {
  bool used, nacked;
  uint32_t seq, req_seq;
  uint64_t nack_at, expire_at;
  char req_addr[GOSSIP_ADDR_MAX];
};

struct swim {
  struct swim_config cfg;
  struct swim_callbacks cb;
  void *user;
  struct rng rng;
  struct member *self;
  /* members sorted by id; probe order; broadcast queue. All four arrays have capacity cap. */
  struct member **members, **order, **bq, **scratch; /* scratch: random picks */
  int nmembers, norder, order_idx, nbq, cap;
  int nalive; /* ALIVE or SUSPECT, self included */
  int awareness;
  bool left;
  uint32_t seq;
  uint64_t bq_counter;
  uint32_t pick_stamp;
  struct probe probe;
  struct relay relays[SWIM_MAX_RELAYS];
  int nrelays;
  char seeds[SWIM_MAX_SEEDS][GOSSIP_ADDR_MAX];
  int nseeds;
  uint64_t now; /* the latest time we were given */
  uint64_t next_probe_at, next_gossip_at, next_push_pull_at;
  uint64_t next_scan_at; /* no suspicion deadline or tombstone reclaim is due before this */
  struct swim_stats stats;
  struct gossip_msg out; /* scratch for the message being sent */
};

/* --- swim_queue.c --- */

/* swim_queue_limit is how many times a queued update is piggybacked: retransmit_mult * ceil(log10(N + 1)). */
int swim_queue_limit(const struct swim *s);
/* swim_queue_push queues m's current fact (with `from`), replacing whatever was queued about m, transmits reset. */
void swim_queue_push(struct swim *s, struct member *m, const uint8_t from[GOSSIP_ID_LEN]);
/* swim_queue_remove drops m from the queue (no-op when not queued). */
void swim_queue_remove(struct swim *s, struct member *m);
/* swim_queue_fill appends queued updates to msg, fewest transmitted first (newest first among equals), as many as
 * fit cfg.packet_budget by the codec's size bounds, skipping members msg already has an update about.
 * Each one sent counts a transmit; those that reach swim_queue_limit leave the queue. */
void swim_queue_fill(struct swim *s, struct gossip_msg *msg);
/* swim_member_fact writes m's current fact into out, with `from`; meta only for ALIVE (with_meta: always). */
void swim_member_fact(const struct member *m, const uint8_t from[GOSSIP_ID_LEN], bool with_meta,
                 struct gossip_update *out);

#endif
