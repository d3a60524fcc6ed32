/* Which control-plane items changed: the configuration events of GET /v1/cluster/events (DESIGN §9).
 *
 * The FSM keeps no history of commands (a read replica only ever sees snapshots), so the watch remembers a
 * fingerprint (key + hash of the item's bytes) of every item it saw last time and compares the FSM with it:
 * a key that appeared is "put", one whose item changed is "update", one that is gone is "delete". Works the
 * same on servers and on replicas, and for any number of commands between two looks. A kind the FSM says did
 * not change since the last look (fsm_kind_changed) costs nothing, so a write costs one pass over its own
 * kind. Not thread-safe. */
#ifndef IM_AGENT_CONFIG_WATCH_H
#define IM_AGENT_CONFIG_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/fsm.h"

struct config_change {
  enum fsm_kind kind;
  const char *key; /* borrowed: valid until the next config_watch_update or config_watch_free */
  const char *op;  /* "put", "update" or "delete" (static) */
};

struct config_watch_item {
  char *key; /* owned */
  uint64_t hash;
};

struct config_watch {
  uint64_t seen[FSM_NKINDS]; /* fsm_kind_changed at the last look */
  bool looked;
  int n[FSM_NKINDS];
  struct config_watch_item *items[FSM_NKINDS]; /* owned, in the FSM's key order */
};

/* config_watch_init: an empty watch (every item of the first update is "put"). */
void config_watch_init(struct config_watch *w);
void config_watch_free(struct config_watch *w);

/* config_watch_update compares f (borrowed for the call) with what w saw last, calls cb (may be NULL: only
 * remember) once per changed item
 * (kinds in enum order, keys in order), then remembers f's items. */
void config_watch_update(struct config_watch *w, const struct fsm *f,
                         void (*cb)(void *arg, const struct config_change *ch), void *arg);

#endif
