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
  bool announced;         /* a JOIN went out (not for a tombstone of a member never seen alive) */
  /* suspicion, meaningful while pub.u.state == GOSSIP_SUSPECT */
  uint64_t susp_start, susp_min, susp_max, susp_deadline;
  uint64_t susp_regossip_at; /* when to spread it again if it still stands (see scan in swim.c) */
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
};

/* The helpers of one indirect probe, each expected to answer (a relayed ack or a nack). Answers count until
 * the helpers have had their probe timeout plus a round trip, which may be after the probe itself ended. */
struct nack_round {
  bool active, failed; /* failed: the probe ended without an ack; missing answers will count */
  uint32_t seq;
  uint64_t deadline;
  int expected, got;
  uint8_t helper[SWIM_MAX_HELPERS][GOSSIP_ID_LEN];
  bool answered[SWIM_MAX_HELPERS];
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
  struct nack_round nr;
  struct relay relays[SWIM_MAX_RELAYS];
  int nrelays;
  char seeds[SWIM_MAX_SEEDS][GOSSIP_ADDR_MAX];
  int nseeds;
  uint64_t now; /* the latest time we were given */
  uint64_t next_probe_at, next_gossip_at, next_push_pull_at, next_reconnect_at;
  uint64_t next_scan_at; /* no suspicion deadline or tombstone reclaim is due before this */
  struct swim_stats stats;
  struct gossip_msg out; /* scratch for the message being sent */
};

/* --- swim_queue.c --- */

/* swim_queue_limit is how many times a queued update is piggybacked: retransmit_mult * ceil(log10(N + 1)). */
int swim_queue_limit(const struct swim *s);
/* swim_queue_push queues m's current fact (with `from`), replacing whatever was queued about m, transmits
 * reset. */
void swim_queue_push(struct swim *s, struct member *m, const uint8_t from[GOSSIP_ID_LEN]);
/* swim_queue_remove drops m from the queue (no-op when not queued). */
void swim_queue_remove(struct swim *s, struct member *m);
/* swim_queue_fill appends queued updates to msg, fewest transmitted first (newest first among equals), as
 * many as fit cfg.packet_budget by the codec's size bounds, skipping members msg already has an update about.
 * Each one sent counts a transmit; those that reach swim_queue_limit leave the queue. */
void swim_queue_fill(struct swim *s, struct gossip_msg *msg);
/* swim_member_fact writes m's current fact into out, with `from`; meta only for ALIVE (with_meta: always). */
void swim_member_fact(const struct member *m, const uint8_t from[GOSSIP_ID_LEN], bool with_meta,
                      struct gossip_update *out);

/* swim_fact_outdated tells whether u is older than what we hold about m (gossip still spreading a fact that
 * was since superseded: a suspicion already refuted, an ALIVE of a member we hold dead, a suspicion of us
 * that we already refuted). */
bool swim_fact_outdated(const struct swim *s, const struct member *m, const struct gossip_update *u);
/* swim_queue_add_facts appends our current facts about ms[0..n) to msg, as many as fit the budget (not
 * counted as transmits: they answer one peer). A DEAD fact goes as a SUSPECT from us at the same incarnation:
 * the peer still holds the member live, and either it missed the death or we are the stale side (a healed
 * partition, where each side declared the other dead). A suspicion lets a live member refute before anyone
 * declares it dead; a dead one is declared when the suspicion times out. */
void swim_queue_add_facts(struct swim *s, struct gossip_msg *msg, struct member **ms, int n);

#endif
