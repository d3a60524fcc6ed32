/* Control-plane change detection by comparing item fingerprints (see config_watch.h). */
#include "agent/config_watch.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/alloc.h"

void config_watch_init(struct config_watch *w) { memset(w, 0, sizeof *w); }

static void free_items(struct config_watch_item *it, int n) {
  for (int i = 0; i < n; i++) free(it[i].key);
  free(it);
}

void config_watch_free(struct config_watch *w) {
  for (int k = 0; k < FSM_NKINDS; k++) free_items(w->items[k], w->n[k]);
  memset(w, 0, sizeof *w);
}

/* Every item struct starts with its key (fsm.h). */
static const char *item_key(const void *item) { return (const char *)item; }

void config_watch_update(struct config_watch *w, const struct fsm *f,
                         void (*cb)(void *arg, const struct config_change *ch), void *arg) {
  for (int k = 0; k < FSM_NKINDS; k++) {
    uint64_t changed = fsm_kind_changed(f, (enum fsm_kind)k);
    if (w->looked && changed == w->seen[k]) continue;
    w->seen[k] = changed;
    int n = fsm_count(f, (enum fsm_kind)k);
    size_t size = fsm_item_size((enum fsm_kind)k);
    struct config_watch_item *now = n ? xcalloc((size_t)n, sizeof *now) : NULL;
    for (int i = 0; i < n; i++) {
      const void *item = fsm_at(f, (enum fsm_kind)k, i);
      now[i].key = xstrdup(item_key(item));
      now[i].hash = XXH3_64bits(item, size);
    }
    /* Both lists are in key order (strcmp): merge them. */
    const struct config_watch_item *old = w->items[k];
    int i = 0, j = 0, no = w->n[k];
    while (i < no || j < n) {
      int c = i == no ? 1 : j == n ? -1 : strcmp(old[i].key, now[j].key);
      struct config_change ch = {(enum fsm_kind)k, NULL, NULL};
      if (c < 0) {
        ch.key = old[i++].key, ch.op = "delete";
      } else if (c > 0) {
        ch.key = now[j++].key, ch.op = "put";
      } else {
        if (old[i].hash != now[j].hash) ch.key = now[j].key, ch.op = "update";
        i++, j++;
      }
      if (ch.op && cb) cb(arg, &ch);
    }
    free_items(w->items[k], no);
    w->items[k] = now;
    w->n[k] = n;
  }
  w->looked = true;
}
