/* The state machine (cluster/fsm.h) as a libraft FSM: internal to cluster/raft.c and its unit tests. */
#ifndef IM_CLUSTER_RAFT_FSM_H
#define IM_CLUSTER_RAFT_FSM_H

#include <raft.h>

#include "cluster/fsm.h"

/* Glue between one raft instance and one fsm. The caller owns both and this struct, which must outlive the
 * raft instance. on_result (may be NULL) sees the outcome of every command as it is applied, with its log
 * index: the raft wrapper matches it to the request that proposed it (libraft's own result pointer would leak
 * on servers that did not propose the command). It runs inside raft's apply: it must not call into raft.
 * on_restore likewise sees every snapshot installed. */
struct craft_fsm {
  struct fsm *fsm;
  struct raft *raft;
  void (*on_result)(void *arg, uint64_t index, const struct fsm_result *res);
  void (*on_restore)(void *arg); /* may be NULL: a snapshot replaced the state (same rules as on_result) */
  void *arg;
};

/* craft_fsm_init fills rf (version 1) to drive cf->fsm. */
void craft_fsm_init(struct raft_fsm *rf, struct craft_fsm *cf);

#endif
