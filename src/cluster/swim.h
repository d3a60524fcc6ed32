/* SWIM membership with Lifeguard, as a pure state machine: no I/O and no clock of its own. The caller feeds
 * it decoded messages and the time, and it asks the caller to send messages through a callback. The gossip
 * transport (cluster/gossip.h) drives it over UDP/TCP; unit tests drive it with a fake clock and network. */
#ifndef IM_CLUSTER_SWIM_H
#define IM_CLUSTER_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/gossip_msg.h"

struct swim_config {
  uint32_t probe_interval_ms;     /* one probe per interval, round-robin over a shuffled member list */
  uint32_t probe_timeout_ms;      /* direct ack deadline; then PING_REQ through indirect_checks helpers */
  int indirect_checks;            /* k helpers for an indirect probe (also the expected confirmations) */
  int suspicion_mult;             /* min suspicion timeout = mult * log10(max(N,2)) * probe interval */
  int suspicion_max_mult;         /* max suspicion timeout = max_mult * min; shrinks with confirmations */
  int retransmit_mult;            /* an update is piggybacked retransmit_mult * ceil(log10(N+1)) times */
  uint32_t gossip_interval_ms;    /* pending updates are sent to gossip_nodes random members this often */
  int gossip_nodes;
  int awareness_max;              /* Lifeguard local health multiplier ceiling (intervals scale by 1+score) */
  uint32_t dead_reclaim_ms;       /* a DEAD/LEFT tombstone is kept (and reported) this long, then forgotten */
  uint32_t push_pull_interval_ms; /* periodic anti-entropy with one random member; 0 = off */
  uint32_t reconnect_interval_ms; /* push-pull with one member held dead this often (a healed partition
                                   * is found within it, not within push_pull_interval_ms); 0 = off */
  size_t packet_budget;           /* plaintext bytes per datagram (<= GOSSIP_PACKET_MAX) */
};

/* swim_config_default fills c with LAN defaults (see the .c file for the reasoning behind each). */
void swim_config_default(struct swim_config *c);

/* A member as this node sees it. `u` holds the current fact (state, incarnation, meta). */
struct swim_member {
  struct gossip_update u;
  uint64_t state_since_ms; /* when u.state last changed, in the caller's clock */
  bool is_self;
};

enum swim_event {
  SWIM_EV_JOIN,      /* first seen alive */
  SWIM_EV_UPDATE,    /* alive with new meta or address (incarnation rose) */
  SWIM_EV_SUSPECT,   /* became suspect */
  SWIM_EV_ALIVE,     /* suspicion refuted, or a dead/left member came back with a higher incarnation */
  SWIM_EV_DEAD,      /* declared dead (suspicion timed out, or learned from others) */
  SWIM_EV_LEFT,      /* left gracefully */
  SWIM_EV_FORGOTTEN, /* tombstone reclaimed after dead_reclaim_ms; the member struct goes away after this */
};

struct swim_stats {
  uint64_t probes, acks, probe_failures, indirect_probes, nacks_sent, nacks_received;
  uint64_t suspicions, refutations, deaths, msgs_sent, msgs_received, updates_sent, updates_received;
};

/* Callbacks; `user` is passed back. Pointers handed to callbacks are valid only during the call, and a
 * callback may only use the read accessors below on s (no swim_receive/tick/merge/join/leave/set_meta).
 * send:      deliver m to addr (best effort; losing it is fine).
 * event:     a member changed; m->u is the new fact. Called after the change took effect. Never about this
 *            node itself. A member known only as a tombstone (learned dead, never seen alive) gets no events
 *            until it comes back, and then JOIN.
 * push_pull: start a push-pull exchange with the member at addr (optional, may be NULL). */
struct swim_callbacks {
  void (*send)(void *user, const char *addr, const struct gossip_msg *m);
  void (*event)(void *user, const struct swim_member *m, enum swim_event ev);
  void (*push_pull)(void *user, const char *addr);
};

struct swim;

/* swim_new creates the state machine for this node (id, name, gossip addr, meta copied) at time now_ms,
 * alive at incarnation `incarnation` (0 for a new node). seed makes probe order and gossip targets
 * reproducible. cfg is copied. Returns NULL on invalid arguments (meta too long, empty name/addr). */
struct swim *swim_new(const struct swim_config *cfg, const uint8_t id[GOSSIP_ID_LEN], const char *name,
                      const char *addr, const uint8_t *meta, size_t meta_len, uint64_t incarnation,
                      const struct swim_callbacks *cb, void *user, uint64_t seed, uint64_t now_ms);
/* swim_free releases s and every member; no callback is called. */
void swim_free(struct swim *s);

/* swim_receive handles one message that arrived from from_addr at now_ms: answers pings, relays indirect
 * probes, records acks/nacks, applies piggybacked updates (refuting suspicion about this node by raising its
 * own incarnation). Messages from this node's own id are ignored. */
void swim_receive(struct swim *s, const char *from_addr, const struct gossip_msg *m, uint64_t now_ms);
/* swim_merge applies a remote member table from push-pull (same rules as piggybacked updates, except that a
 * remote SUSPECT about a member this node has not seen yet makes it known as suspect, and a remote DEAD about
 * a member this node holds alive only makes it suspect: it gets the chance to refute). */
void swim_merge(struct swim *s, const struct gossip_update *u, int n, uint64_t now_ms);
/* swim_snapshot writes this node's table (self first, then every member incl. tombstones) into out (at most
 * max entries) and returns the count. */
int swim_snapshot(const struct swim *s, struct gossip_update *out, int max);

/* swim_tick runs whatever is due at now_ms: probes, probe timeouts, suspicion timeouts, gossip rounds,
 * tombstone reclaim, push-pull. swim_next_deadline says when it wants to be called next (never later than
 * one gossip interval away). Calling tick early or late is harmless. */
void swim_tick(struct swim *s, uint64_t now_ms);
uint64_t swim_next_deadline(const struct swim *s);

/* swim_join adds seed addresses to probe and gossip with until a member is known (the transport normally
 * also push-pulls with them). */
void swim_join(struct swim *s, const char *const *addrs, int n, uint64_t now_ms);
/* swim_set_meta replaces this node's meta, raises its incarnation and disseminates the new fact. 0, or
 * -EINVAL (meta over GOSSIP_META_MAX, or after swim_leave). */
int swim_set_meta(struct swim *s, const uint8_t *meta, size_t len, uint64_t now_ms);
/* swim_leave marks this node LEFT (incarnation + 1) and disseminates it; the node stops probing.
 * swim_leave_flushed tells whether the LEFT fact has gone out its full retransmit count (or there is
 * nobody to tell), so the caller can exit. */
void swim_leave(struct swim *s, uint64_t now_ms);
bool swim_leave_flushed(const struct swim *s);

/* Read access. swim_find returns the member with id (self included) or NULL; valid until the next call into
 * s. swim_each calls fn for every member (self included, tombstones included). */
const struct swim_member *swim_find(const struct swim *s, const uint8_t id[GOSSIP_ID_LEN]);
void swim_each(const struct swim *s, void (*fn)(void *arg, const struct swim_member *m), void *arg);
int swim_num_alive(const struct swim *s); /* ALIVE or SUSPECT members, self included */
int swim_awareness(const struct swim *s); /* Lifeguard local health score, 0 = healthy */
uint64_t swim_incarnation(const struct swim *s);
const struct swim_stats *swim_stats(const struct swim *s);

#endif
