/* A set of recently accepted hop signatures (see hop_seen.h). */
#include "route/hop_seen.h"

#include <errno.h>
#include <stdlib.h>

#include "core/alloc.h"

static size_t slot_of(uint64_t key, size_t cap) {
  key ^= key >> 33; /* the keys are MAC bytes already; mix anyway so a constant key pattern spreads */
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return (size_t)key & (cap - 1);
}

static void put(struct hop_seen_slot *slots, size_t cap, uint64_t key, int64_t expires) {
  size_t i = slot_of(key, cap);
  while (slots[i].key)
    i = (i + 1) & (cap - 1);
  slots[i].key = key;
  slots[i].expires = expires;
}

/* Rebuild without the expired keys, in a table sized so the live ones fill at most a quarter of it. */
static int rebuild(struct hop_seen *s, int64_t now_s) {
  size_t live = 0;
  int64_t earliest = INT64_MAX;
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i].key && s->slots[i].expires >= now_s) {
      live++;
      if (s->slots[i].expires < earliest) earliest = s->slots[i].expires;
    }
  s->earliest = earliest;
  size_t cap = 1024, max = s->max_slots ? s->max_slots : HOP_SEEN_MAX_SLOTS;
  while (cap < 4 * (live + 1) && cap < max)
    cap *= 2;
  if (2 * (live + 1) > cap) return -ENOSPC;
  struct hop_seen_slot *slots = xcalloc(cap, sizeof *slots);
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i].key && s->slots[i].expires >= now_s)
      put(slots, cap, s->slots[i].key, s->slots[i].expires);
  free(s->slots);
  s->slots = slots;
  s->cap = cap;
  s->n = live;
  return 0;
}

int hop_seen_add(struct hop_seen *s, uint64_t key, int64_t expires_s, int64_t now_s) {
  if (!key) key = 1; /* 0 marks an empty slot */
  if (s->cap) {
    for (size_t i = slot_of(key, s->cap); s->slots[i].key; i = (i + 1) & (s->cap - 1))
      if (s->slots[i].key == key) {
        if (s->slots[i].expires >= now_s) return -EALREADY;
        s->slots[i].expires = expires_s; /* an expired twin: take its place */
        return 0;
      }
  }
  if (2 * (s->n + 1) > s->cap) {
    /* At the largest size, a rebuild before the earliest key expires would only find the table as full. */
    size_t max = s->max_slots ? s->max_slots : HOP_SEEN_MAX_SLOTS;
    if (s->cap >= max && now_s <= s->earliest) return -ENOSPC;
    int rc = rebuild(s, now_s);
    if (rc != 0) return rc;
  }
  put(s->slots, s->cap, key, expires_s);
  s->n++;
  if (expires_s < s->earliest) s->earliest = expires_s;
  return 0;
}

void hop_seen_free(struct hop_seen *s) {
  free(s->slots);
  s->slots = NULL;
  s->cap = s->n = 0;
}
