/* The router's candidate sets (DESIGN §12): per model, the targets that may serve it (healthy, not gone, not
 * draining, listing the model; ascending ids, as store_candidates gives them) with the routing policy's
 * record of each (struct policy_target), kept in step with the store through its change log. A pick that
 * finds nothing changed rebuilds nothing: it refreshes the records of the targets the log names since the
 * last pick (a load report, a reservation), rebuilds a model's set only when a target joins or leaves it, and
 * matches model names only then. Pure: no I/O, no clocks. */
#ifndef IM_ROUTE_CAND_SET_H
#define IM_ROUTE_CAND_SET_H

#include <stdint.h>

#include "core/slice.h"
#include "state/policy.h"
#include "state/store.h"

/* Models with a set kept at once; the least recently used one is dropped for a new model. */
#define CAND_SETS_MAX 16

/* One model's candidates. The arrays have room for every target of the store. */
struct cand_set {
  char *model; /* owned; NULL = slot unused */
  size_t model_len;
  int n;                    /* candidates */
  int *ids;                 /* owned: their store ids, ascending */
  struct policy_target *pt; /* owned: pt[i] is the record of ids[i] */
  int *pos;                 /* owned, by store id: its index in ids, -1 when no candidate */
  uint64_t seen_seq;        /* the store's change_seq as of the last refresh */
  uint64_t used;            /* LRU stamp */
};

struct cand_sets {
  struct cand_set sets[CAND_SETS_MAX];
  int cap;                      /* the store's target capacity: room of every array */
  uint64_t tick;                /* LRU clock */
  uint64_t rebuilds, refreshes; /* whole-set rebuilds; records refreshed from the change log (tests, bench) */
};

/* cand_sets_init prepares cs for a store of CAP targets (s->cap); cand_sets_free releases it. */
void cand_sets_init(struct cand_sets *cs, int cap);
void cand_sets_free(struct cand_sets *cs);

/* cand_sets_get returns MODEL's set brought up to date with store S (whose change log every change went
 * through). The set (and its arrays) belongs to cs and stays valid until the next cand_sets_get; the caller
 * may change the records (they are refreshed on the next call). Nothing in it follows the clock (a record
 * holds the report's time, not its age), so a decision with nothing changed in the store touches no record.
 * Allocates only when a model gets a set for the first time. */
struct cand_set *cand_sets_get(struct cand_sets *cs, const struct store *s, struct slice model);

/* cand_record fills PT, the routing policy's view of target T (state/policy.h). */
void cand_record(const struct target *t, struct policy_target *pt);

#endif
