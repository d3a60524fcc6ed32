/* Internal to the state machine (fsm.c, fsm_item.c): the per-kind operations. */
#ifndef IM_CLUSTER_FSM_INT_H
#define IM_CLUSTER_FSM_INT_H

#include <jansson.h>
#include <stdlib.h>

#include "cluster/fsm.h"

/* parse: overlay the fields of JSON object v onto item (which holds the key and, for a merge, the current
 * values; zeroed otherwise), with ts the command's time. 0 or -EINVAL with err. to_json: a new reference;
 * full = everything (snapshots, merges), else the API view. */
struct fsm_kind_ops {
  const char *name, *plural, *keyfield;
  size_t size;
  int (*parse)(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen);
  json_t *(*to_json)(const void *item, bool full);
};

extern const struct fsm_kind_ops fsm_kinds[FSM_NKINDS];

#endif
