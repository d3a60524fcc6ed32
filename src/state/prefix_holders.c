/* Inverted prefix index: block hash -> holder target ids (see prefix_holders.h). */
#include "state/prefix_holders.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define INLINE_IDS 2

struct prefix_holders_entry {
  uint64_t hash;
  int32_t n, cap; /* ids held; cap > INLINE_IDS: they live in `many` */
  union {
    int32_t in[INLINE_IDS];
    int32_t *many;
  } u;
};

static int32_t *ids_of(struct prefix_holders_entry *e) { return e->cap > INLINE_IDS ? e->u.many : e->u.in; }

static uint32_t slot_of(uint64_t h, uint32_t bits) {
  return (uint32_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static struct prefix_holders_entry *find(const struct prefix_holders *hs, uint64_t h) {
  if (!hs->bits) return NULL;
  uint32_t mask = (1u << hs->bits) - 1;
  for (uint32_t i = slot_of(h, hs->bits);; i = (i + 1) & mask) {
    struct prefix_holders_entry *e = &hs->tab[i];
    if (e->n == 0) return NULL;
    if (e->hash == h) return e;
  }
}

static int count(const struct prefix_holders *hs, uint64_t h) {
  const struct prefix_holders_entry *e = find(hs, h);
  return e ? e->n : 0;
}

/* place puts E (n > 0) into the first empty slot of its probe chain in a table of 1 << BITS entries. */
static void place(struct prefix_holders_entry *tab, uint32_t bits, const struct prefix_holders_entry *e) {
  uint32_t mask = (1u << bits) - 1, i = slot_of(e->hash, bits);
  while (tab[i].n != 0)
    i = (i + 1) & mask;
  tab[i] = *e;
}

static void rehash(struct prefix_holders *hs, uint32_t bits) {
  struct prefix_holders_entry *old = hs->tab;
  uint32_t oldn = hs->bits ? 1u << hs->bits : 0;
  hs->tab = xcalloc((size_t)1 << bits, sizeof *hs->tab);
  hs->bits = bits;
  for (uint32_t i = 0; i < oldn; i++)
    if (old[i].n) place(hs->tab, bits, &old[i]);
  free(old);
}

void prefix_holders_init(struct prefix_holders *hs) { *hs = (struct prefix_holders){0}; }

void prefix_holders_free(struct prefix_holders *hs) {
  uint32_t size = hs->bits ? 1u << hs->bits : 0;
  for (uint32_t i = 0; i < size; i++)
    if (hs->tab[i].n && hs->tab[i].cap > INLINE_IDS) free(hs->tab[i].u.many);
  free(hs->tab);
  *hs = (struct prefix_holders){0};
}

void prefix_holders_add(struct prefix_holders *hs, uint64_t hash, int32_t id) {
  struct prefix_holders_entry *e = find(hs, hash);
  if (!e) {
    if (!hs->bits || 2ull * (hs->used + 1) > (1ull << hs->bits)) rehash(hs, hs->bits ? hs->bits + 1 : 10);
    struct prefix_holders_entry ne = {.hash = hash, .n = 1, .cap = INLINE_IDS};
    ne.u.in[0] = id;
    place(hs->tab, hs->bits, &ne);
    hs->used++;
    return;
  }
  if (e->n == e->cap) {
    int32_t ncap = e->cap * 2;
    int32_t *ids = xmalloc((size_t)ncap * sizeof *ids);
    memcpy(ids, ids_of(e), (size_t)e->n * sizeof *ids);
    if (e->cap > INLINE_IDS) free(e->u.many);
    e->u.many = ids;
    e->cap = ncap;
  }
  ids_of(e)[e->n++] = id;
}

/* unslot empties slot I and shifts later entries of the probe chain back (no tombstones). */
static void unslot(struct prefix_holders *hs, uint32_t i) {
  uint32_t mask = (1u << hs->bits) - 1;
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    if (hs->tab[j].n == 0) break;
    uint32_t k = slot_of(hs->tab[j].hash, hs->bits);
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      hs->tab[i] = hs->tab[j];
      i = j;
    }
  }
  hs->tab[i] = (struct prefix_holders_entry){0};
  hs->used--;
}

void prefix_holders_del(struct prefix_holders *hs, uint64_t hash, int32_t id) {
  struct prefix_holders_entry *e = find(hs, hash);
  if (!e) return;
  int32_t *ids = ids_of(e);
  int k = 0;
  while (k < e->n && ids[k] != id)
    k++;
  if (k == e->n) return;
  ids[k] = ids[--e->n];
  if (e->n > 0) return;
  if (e->cap > INLINE_IDS) free(e->u.many);
  unslot(hs, (uint32_t)(e - hs->tab));
}

const int32_t *prefix_holders_get(const struct prefix_holders *hs, uint64_t hash, int *n) {
  struct prefix_holders_entry *e = find(hs, hash);
  *n = e ? e->n : 0;
  return e ? ids_of(e) : NULL;
}

int prefix_holders_match(const struct prefix_holders *hs, const uint64_t *hashes, int n,
                         void (*mark)(void *ud, int32_t id, int k), void *ud) {
  int b = 0, cnt = n > 0 ? count(hs, hashes[0]) : 0;
  while (cnt > 0) {
    /* The run of blocks held by the same cnt targets: [b, e), e the first block with fewer holders (or n). */
    int lo = b + 1, hi = n;
    while (lo < hi) {
      int mid = lo + (hi - lo) / 2;
      if (count(hs, hashes[mid]) == cnt)
        lo = mid + 1;
      else
        hi = mid;
    }
    int ids_n;
    const int32_t *ids = prefix_holders_get(hs, hashes[b], &ids_n);
    for (int i = 0; i < ids_n; i++)
      mark(ud, ids[i], lo);
    if (lo == n) return n;
    b = lo;
    cnt = count(hs, hashes[b]);
    if (cnt == 0) return b;
  }
  return 0;
}
