/* The control plane's consensus: one Raft server (libraft 0.15 behind this API, so the engine can be swapped)
 * replicating the state machine of cluster/fsm.h. Names are prefixed craft_ (libraft owns raft_).
 *
 * Log, metadata and snapshots live in cfg->dir (created). Raft traffic goes over the authenticated, encrypted
 * transport of cluster/raft_transport.h, so only holders of the cluster key take part. Pre-vote is on, the
 * election timeout suits a LAN, and snapshots are rare (they stall the loop: DESIGN §9).
 *
 * Lifecycle: craft_open -> [craft_bootstrap] -> craft_start -> ... -> craft_close. One libuv loop; not
 * thread-safe. craft_apply may be called from any callback, including craft's own: proposals are queued and
 * submitted on a later loop turn, never from inside a libraft callback. The membership calls
 * (craft_reconcile, craft_autopilot) and craft_close call libraft directly: call them from a timer or another
 * plain loop callback, never from inside a craft callback (craft_apply_cb, craft_applied_cb).
 *
 * Membership policy (leader only; one configuration change at a time, the next waits for the previous to
 * commit):
 * - add: a server gossip sees alive but the configuration lacks joins as a spare (craft_reconcile);
 * - promote: alive non-voters (standbys first) become voters while the configuration has fewer voters than
 *   craft_desired_voters() of its healthy servers — an odd number, at most 5: an even count adds quorum size
 *   without fault tolerance; the other alive spares become standbys (libraft: a spare gets no log, a standby
 *   replicates it without voting), so a promotion later starts from a caught-up log;
 * - remove (craft_autopilot, like Consul's cleanup_dead_servers): a server gossip misses (dead, or not heard
 *   of) and the leader has had no Raft message from for grace_ms, or at once when it left gracefully, under craft_pick_removal's quorum rule. A freed
 *   voter slot is refilled by the next promotion;
 * - leave: craft_close on the leader first hands leadership to the most up-to-date healthy voter (at most
 *   CRAFT_TRANSFER_MS); the leaving server does not remove itself: the new leader does, as soon as gossip
 *   says it left, under the same quorum rule. */
#ifndef IM_CLUSTER_RAFT_H
#define IM_CLUSTER_RAFT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/fsm.h"
#include "cluster/keyring.h"

#define CRAFT_ADDR_MAX 64
#define CRAFT_MAX_VOTERS 5
#define CRAFT_MAX_SERVERS 16
#define CRAFT_TRACK_MAX 64     /* configurations larger than this are never pruned by the autopilot */
#define CRAFT_TRANSFER_MS 2000 /* craft_close waits at most this long for a leadership transfer */
/* craft_pick_removal's answers besides an index */
#define CRAFT_REMOVE_NONE (-1)
#define CRAFT_REMOVE_UNSAFE (-2)

/* Apply outcomes besides 0 (the command was applied; see the fsm_result for its own status):
 * CRAFT_ENOTLEADER  this server is not the leader: nothing was proposed; send it to the leader.
 * CRAFT_EUNKNOWN    leadership was lost after proposing: the command may or may not apply; retry it with the
 *                   same command id (it is idempotent).
 * -ECANCELED        craft is closing. -EIO: another libraft error (logged). */
#define CRAFT_ENOTLEADER (-ENOTCONN)
#define CRAFT_EUNKNOWN (-ECONNABORTED)

enum craft_role { CRAFT_STANDBY = 0, CRAFT_VOTER = 1, CRAFT_SPARE = 2 }; /* same values as libraft's */

struct craft_config {
  uint64_t id;                   /* this server's raft id (nonzero): craft_id_from_pk */
  char address[CRAFT_ADDR_MAX];  /* IPv4:port or [IPv6]:port to listen on and to announce */
  char dir[512];                 /* raft's data dir */
  struct keyring *kr;            /* borrowed; kept alive by the caller until craft_close completes */
  unsigned election_ms;          /* 300 */
  unsigned heartbeat_ms;         /* 30 */
  unsigned snapshot_threshold;   /* 16384 entries */
  unsigned snapshot_trailing;    /* 4096 entries */
  unsigned connect_retry_ms;     /* 100 */
};

/* craft_config_default zeroes c and fills the defaults above. */
void craft_config_default(struct craft_config *c);

struct craft_server {
  uint64_t id;
  char address[CRAFT_ADDR_MAX];
  int role; /* enum craft_role */
};

struct craft_status {
  const char *state; /* "unavailable", "follower", "candidate", "leader" (static) */
  uint64_t term, commit_index, applied_index, last_index, fsm_index;
  uint64_t leader_id;
  char leader_address[CRAFT_ADDR_MAX]; /* "" when no leader is known */
  int nservers;
  struct craft_server servers[CRAFT_MAX_SERVERS];
  uint64_t transport_refused; /* connections that failed the cluster-key handshake */
};

/* Called once per proposal, after it completed (see the status codes above); res is valid during the call
 * and non-NULL only when status is 0. */
typedef void (*craft_apply_cb)(void *arg, int status, const struct fsm_result *res);
/* Called after every applied command and every restored snapshot with the FSM's new index. */
typedef void (*craft_applied_cb)(void *arg, uint64_t fsm_index);

struct craft;

/* craft_open creates dir when missing, sets up libraft with its uv I/O and our transport, but does not start
 * it. applied_cb (may be NULL) is told of every change of the FSM. 0 or a negative code with a message in err. */
int craft_open(struct craft **out, uv_loop_t *loop, const struct craft_config *cfg, craft_applied_cb applied_cb,
               void *arg, char *err, size_t errlen);
/* craft_has_state tells whether dir held raft state when craft_open ran (then bootstrapping is not needed). */
bool craft_has_state(const struct craft *c);
/* craft_bootstrap writes the initial configuration (all voters; n >= 1; the same list on every server),
 * before craft_start. -EEXIST when there is state already. */
int craft_bootstrap(struct craft *c, const struct craft_server *servers, int n, char *err, size_t errlen);
/* craft_start starts the server (joins elections, serves the log). A server with neither state nor bootstrap
 * waits to be added by a leader. */
int craft_start(struct craft *c, char *err, size_t errlen);
bool craft_started(const struct craft *c);

/* craft_apply proposes command cmd[0, len) (copied; see fsm_cmd_encode). cb runs exactly once, on a later
 * loop turn. */
void craft_apply(struct craft *c, const void *cmd, size_t len, craft_apply_cb cb, void *arg);

/* craft_reconcile, on the leader, moves the configuration one step toward `alive` (the servers gossip sees
 * alive, borrowed for the call): a missing one is added (spare); then an alive non-voter (a standby first) is
 * promoted to voter while the configuration has fewer voters than craft_desired_voters(its servers in alive);
 * else an alive spare is made a standby. At most one change is in flight. Never removes a server
 * (craft_autopilot does). Elsewhere it does nothing. */
void craft_reconcile(struct craft *c, const struct craft_server *alive, int n);

/* craft_autopilot, called on every server tick with the same alive list as craft_reconcile and the raft ids of
 * servers gossip reports as having left gracefully (left[0, nleft); both borrowed for the call), removes at
 * most one failed server per call, on the leader: one missing from alive for grace_ms (timed from when this
 * leader first missed it: a new leader starts every grace afresh), or missing and in left (at once). Which
 * one, and whether it is safe, is craft_pick_removal's call. Every removal is logged; so is a refusal (once).
 * Elsewhere it only resets its timers. */
void craft_autopilot(struct craft *c, const struct craft_server *alive, int n, const uint64_t *left, int nleft,
                     unsigned grace_ms);

/* craft_pick_removal, pure: which server of the configuration conf[0, n) to remove now, failed[i] telling that
 * conf[i] failed (see craft_autopilot). Never self_id. Failed non-voters first (they do not count toward
 * quorum). A failed voter only while the voters that have not failed are a strict majority of the current
 * voters, 2 * (V - F) > V, i.e. F <= (V - 1) / 2 (Consul's rule): a leader whose own gossip lost sight of half
 * the cluster never strips the configuration, and the removal itself commits with the healthy voters alone.
 * Removing one such voter keeps that majority (V - 1 voters, the same V - F healthy ones), so the rule is
 * checked again for the next one. A failed voter that left gracefully (left[i], left may be NULL) is taken
 * first and needs only a majority of the configuration after its removal, 2 * (V - F) > V - 1: its departure
 * is announced, not inferred, and without this a two-voter configuration could never shed a voter that left
 * (scaling down 3 -> 2 -> 1). Returns the index, CRAFT_REMOVE_NONE (nothing failed) or CRAFT_REMOVE_UNSAFE
 * (failed voters, but removing them is not safe). */
int craft_pick_removal(const struct craft_server *conf, const bool *failed, const bool *left, int n,
                       uint64_t self_id);

/* craft_desired_voters, pure: how many voters a configuration with `healthy` alive servers should have: the
 * largest odd number <= healthy, at most CRAFT_MAX_VOTERS, at least 1. */
int craft_desired_voters(int healthy);

/* craft_fsm: the replicated state (owned by c; read-only to callers; valid until craft_close). */
const struct fsm *craft_fsm(const struct craft *c);
void craft_status(struct craft *c, struct craft_status *st);
bool craft_is_leader(struct craft *c);

/* craft_close stops the server; queued and in-flight proposals get -ECANCELED or CRAFT_EUNKNOWN; closed_cb
 * runs when nothing of c is left on the loop, then c is freed. On the leader it first transfers leadership to
 * the healthy voter with the most replicated log (so the others need not wait for an election timeout) and
 * stops once that leads, the transfer failed, or CRAFT_TRANSFER_MS passed. Call once. */
void craft_close(struct craft *c, void (*closed_cb)(void *arg), void *arg);

/* craft_id_from_pk derives a raft id from a node's 32-byte public key (its first 8 bytes, never 0). */
uint64_t craft_id_from_pk(const uint8_t pk[32]);

#endif
