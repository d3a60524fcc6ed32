/* Bounded LRU set of chained block hashes (the per-target prefix index of DESIGN §6). */
#include "state/prefix_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define NIL (-1)

static uint32_t slot_of(const struct prefix_index *ix, uint64_t h) {
  return (uint32_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - ix->tab_bits));
}

static int32_t find(const struct prefix_index *ix, uint64_t h) {
  if (!ix->tab) return NIL;
  uint32_t mask = (1u << ix->tab_bits) - 1;
  for (uint32_t i = slot_of(ix, h);; i = (i + 1) & mask) {
    int32_t e = ix->tab[i];
    if (e == NIL) return NIL;
    if (ix->keys[e] == h) return e;
  }
}

static void tab_put(struct prefix_index *ix, int32_t e) {
  uint32_t mask = (1u << ix->tab_bits) - 1;
  uint32_t i = slot_of(ix, ix->keys[e]);
  while (ix->tab[i] != NIL)
    i = (i + 1) & mask;
  ix->tab[i] = e;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_del(struct prefix_index *ix, uint64_t h) {
  uint32_t mask = (1u << ix->tab_bits) - 1;
  uint32_t i = slot_of(ix, h);
  while (ix->keys[ix->tab[i]] != h)
    i = (i + 1) & mask;
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    if (ix->tab[j] == NIL) break;
    uint32_t k = slot_of(ix, ix->keys[ix->tab[j]]);
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      ix->tab[i] = ix->tab[j];
      i = j;
    }
  }
  ix->tab[i] = NIL;
}

static void grow(struct prefix_index *ix) {
  int64_t want = ix->nalloc ? 2 * (int64_t)ix->nalloc : 1024;
  if (want > ix->capacity) want = ix->capacity;
  int32_t old = ix->nalloc, na = (int32_t)want;
  ix->keys = xrealloc(ix->keys, (size_t)na * sizeof *ix->keys);
  ix->prev = xrealloc(ix->prev, (size_t)na * sizeof *ix->prev);
  ix->next = xrealloc(ix->next, (size_t)na * sizeof *ix->next);
  for (int32_t e = na - 1; e >= old; e--) { /* new entries onto the free list */
    ix->next[e] = ix->free_head;
    ix->free_head = e;
  }
  ix->nalloc = na;
  uint32_t bits = 4;
  while ((1ull << bits) < 2ull * (uint64_t)na)
    bits++;
  if (!ix->tab || bits != ix->tab_bits) {
    free(ix->tab);
    ix->tab_bits = bits;
    ix->tab = xmalloc(((size_t)1 << bits) * sizeof *ix->tab);
    memset(ix->tab, 0xff, ((size_t)1 << bits) * sizeof *ix->tab); /* all NIL (-1) */
    for (int32_t e = ix->head; e != NIL; e = ix->next[e])
      tab_put(ix, e);
  }
}

int prefix_index_init(struct prefix_index *ix, int capacity) {
  if (capacity < 1) return -EINVAL;
  *ix = (struct prefix_index){.head = NIL, .tail = NIL, .free_head = NIL};
  ix->capacity = capacity > PREFIX_INDEX_MAX ? PREFIX_INDEX_MAX : capacity;
  return 0;
}

void prefix_index_attach(struct prefix_index *ix, struct prefix_holders *holders, int32_t owner) {
  ix->holders = holders;
  ix->owner = owner;
}

void prefix_index_free(struct prefix_index *ix) {
  for (int32_t e = ix->head; ix->holders && e != NIL; e = ix->next[e])
    prefix_holders_del(ix->holders, ix->keys[e], ix->owner);
  free(ix->keys);
  free(ix->prev);
  free(ix->next);
  free(ix->tab);
  *ix = (struct prefix_index){.head = NIL, .tail = NIL, .free_head = NIL};
}

static void unlink_e(struct prefix_index *ix, int32_t e) {
  if (ix->prev[e] != NIL)
    ix->next[ix->prev[e]] = ix->next[e];
  else
    ix->head = ix->next[e];
  if (ix->next[e] != NIL)
    ix->prev[ix->next[e]] = ix->prev[e];
  else
    ix->tail = ix->prev[e];
}

static void push_front(struct prefix_index *ix, int32_t e) {
  ix->prev[e] = NIL;
  ix->next[e] = ix->head;
  if (ix->head != NIL)
    ix->prev[ix->head] = e;
  else
    ix->tail = e;
  ix->head = e;
}

/* drop_tail removes the least recently used entry (there is one) and frees its slot. */
static void drop_tail(struct prefix_index *ix) {
  int32_t e = ix->tail;
  unlink_e(ix, e);
  tab_del(ix, ix->keys[e]);
  if (ix->holders) prefix_holders_del(ix->holders, ix->keys[e], ix->owner);
  ix->next[e] = ix->free_head;
  ix->free_head = e;
  ix->n--;
}

static void evict_tail(struct prefix_index *ix) {
  drop_tail(ix);
  ix->evictions++;
}

void prefix_index_set_capacity(struct prefix_index *ix, int capacity) {
  if (capacity < 1) capacity = 1;
  if (capacity > PREFIX_INDEX_MAX) capacity = PREFIX_INDEX_MAX;
  ix->capacity = capacity;
  while (ix->n > ix->capacity)
    evict_tail(ix);
}

static void touch(struct prefix_index *ix, uint64_t h) {
  int32_t e = find(ix, h);
  if (e != NIL) {
    if (ix->head != e) {
      unlink_e(ix, e);
      push_front(ix, e);
    }
    return;
  }
  if (ix->n >= ix->capacity) evict_tail(ix);
  if (ix->free_head == NIL) grow(ix);
  e = ix->free_head;
  ix->free_head = ix->next[e];
  ix->keys[e] = h;
  push_front(ix, e);
  tab_put(ix, e);
  ix->n++;
  if (ix->holders) prefix_holders_add(ix->holders, h, ix->owner);
}

void prefix_index_insert_path(struct prefix_index *ix, const uint64_t *hashes, int n) {
  for (int i = n - 1; i >= 0; i--)
    touch(ix, hashes[i]);
}

void prefix_index_add_in_order(struct prefix_index *ix, const uint64_t *hashes, int n) {
  for (int i = 0; i < n; i++)
    touch(ix, hashes[i]);
}

bool prefix_index_contains(const struct prefix_index *ix, uint64_t hash) { return find(ix, hash) != NIL; }

int prefix_index_match(const struct prefix_index *ix, const uint64_t *hashes, int n) {
  if (n <= 0 || ix->n == 0) return 0;
  /* Invariant: hashes[0..lo) present; hashes[hi] absent (or hi == n). */
  int lo = 0, hi = n;
  if (find(ix, hashes[0]) == NIL) return 0;
  lo = 1;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2; /* lo <= mid < hi */
    if (find(ix, hashes[mid]) != NIL)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

bool prefix_index_remove(struct prefix_index *ix, uint64_t hash) {
  int32_t e = find(ix, hash);
  if (e == NIL) return false;
  unlink_e(ix, e);
  tab_del(ix, hash);
  if (ix->holders) prefix_holders_del(ix->holders, hash, ix->owner);
  ix->next[e] = ix->free_head;
  ix->free_head = e;
  ix->n--;
  return true;
}

void prefix_index_clear(struct prefix_index *ix) {
  while (ix->n > 0)
    drop_tail(ix);
}

int prefix_index_match_linear(const struct prefix_index *ix, const uint64_t *hashes, int n) {
  int k = 0;
  while (k < n && find(ix, hashes[k]) != NIL)
    k++;
  return k;
}
