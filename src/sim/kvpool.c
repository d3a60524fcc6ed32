/* KV block pool: refcounted blocks, a hash table of cached prompt blocks, plain free stack and LRU list. */
#include "sim/kvpool.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "core/alloc.h"

/* Fibonacci hashing spreads caller-chosen hashes (the simulator may pass small integers) over the table. */
static uint32_t slot_of(const struct kvpool *p, uint64_t h) {
  return (uint32_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - p->tab_bits));
}

int kvpool_init(struct kvpool *p, int num_blocks) {
  *p = (struct kvpool){.plain_head = -1, .lru_head = -1, .lru_tail = -1};
  if (num_blocks < 1 || num_blocks > KVPOOL_MAX_BLOCKS) return -EINVAL;
  p->num_blocks = num_blocks;
  p->blk = xcalloc((size_t)num_blocks, sizeof *p->blk);
  /* Table at most half full: 2*num_blocks rounded up to a power of two, at least 16 slots. */
  uint32_t bits = 4;
  while ((1ull << bits) < 2ull * (uint64_t)num_blocks)
    bits++;
  p->tab_bits = bits;
  p->tab = xmalloc(sizeof *p->tab << bits);
  for (uint64_t i = 0; i < (1ull << bits); i++)
    p->tab[i] = -1;
  /* Push in reverse so block 0 is handed out first (deterministic, readable ids in tests). */
  for (int i = num_blocks - 1; i >= 0; i--) {
    p->blk[i] = (struct kvpool_block){.prev = -1, .next = p->plain_head};
    p->plain_head = i;
  }
  p->nplain = num_blocks;
  return 0;
}

void kvpool_free_all(struct kvpool *p) {
  free(p->blk);
  free(p->tab);
  *p = (struct kvpool){.plain_head = -1, .lru_head = -1, .lru_tail = -1};
}

int kvpool_find(const struct kvpool *p, uint64_t hash) {
  if (!p->tab) return -1;
  uint32_t mask = (1u << p->tab_bits) - 1;
  for (uint32_t i = slot_of(p, hash);; i = (i + 1) & mask) {
    int32_t id = p->tab[i];
    if (id < 0) return -1;
    if (p->blk[id].hash == hash) return id;
  }
}

static void tab_insert(struct kvpool *p, int id) {
  uint32_t mask = (1u << p->tab_bits) - 1;
  uint32_t i = slot_of(p, p->blk[id].hash);
  while (p->tab[i] >= 0)
    i = (i + 1) & mask;
  p->tab[i] = id;
}

/* Backward-shift deletion keeps probe sequences intact without tombstones. */
static void tab_remove(struct kvpool *p, int id) {
  uint32_t mask = (1u << p->tab_bits) - 1;
  uint32_t i = slot_of(p, p->blk[id].hash);
  while (p->tab[i] != id) {
    assert(p->tab[i] >= 0);
    i = (i + 1) & mask;
  }
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (p->tab[j] < 0) break;
    uint32_t k = slot_of(p, p->blk[p->tab[j]].hash);
    /* Move entry j into the hole at i unless its home slot k lies cyclically in (i, j]. */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      p->tab[i] = p->tab[j];
      i = j;
    }
  }
  p->tab[i] = -1;
}

static void lru_unlink(struct kvpool *p, int id) {
  struct kvpool_block *b = &p->blk[id];
  if (b->prev >= 0)
    p->blk[b->prev].next = b->next;
  else
    p->lru_head = b->next;
  if (b->next >= 0)
    p->blk[b->next].prev = b->prev;
  else
    p->lru_tail = b->prev;
  b->prev = b->next = -1;
  p->nlru--;
}

static void lru_append(struct kvpool *p, int id) {
  struct kvpool_block *b = &p->blk[id];
  b->prev = p->lru_tail;
  b->next = -1;
  if (p->lru_tail >= 0)
    p->blk[p->lru_tail].next = id;
  else
    p->lru_head = id;
  p->lru_tail = id;
  p->nlru++;
}

/* take_fresh pops one free block (caller checked there is one) and returns it in use, unhashed. */
static int take_fresh(struct kvpool *p) {
  int id;
  if (p->plain_head >= 0) {
    id = p->plain_head;
    p->plain_head = p->blk[id].next;
    p->nplain--;
  } else {
    id = p->lru_head;
    assert(id >= 0);
    lru_unlink(p, id);
    tab_remove(p, id);
    p->blk[id].hashed = false;
    p->ncached--;
    p->evictions++;
    if (p->evict_cb) p->evict_cb(p->evict_arg, p->blk[id].hash);
  }
  struct kvpool_block *b = &p->blk[id];
  b->ref = 1;
  b->prev = b->next = -1;
  b->hash = 0;
  p->nused++;
  return id;
}

int kvpool_lookup_prefix(const struct kvpool *p, const uint64_t *hashes, int n) {
  int i = 0;
  while (i < n && kvpool_find(p, hashes[i]) >= 0)
    i++;
  return i;
}

int kvpool_acquire_prefix(struct kvpool *p, const uint64_t *hashes, int nhit, int nnew, int *ids_out) {
  if (nhit < 0 || nnew < 0) return -EINVAL;
  /* Pass 1, read-only: every hit present, and enough free blocks once free hits leave the LRU list. */
  int free_hits = 0;
  for (int i = 0; i < nhit; i++) {
    int id = kvpool_find(p, hashes[i]);
    if (id < 0) return -ENOENT;
    if (p->blk[id].ref == 0) free_hits++;
    ids_out[i] = id;
  }
  if ((long long)nnew > (long long)p->nplain + p->nlru - free_hits) return -ENOSPC;
  for (int i = 0; i < nhit; i++) {
    struct kvpool_block *b = &p->blk[ids_out[i]];
    if (b->ref++ == 0) {
      lru_unlink(p, ids_out[i]);
      p->nused++;
    }
  }
  for (int i = 0; i < nnew; i++)
    ids_out[nhit + i] = take_fresh(p);
  return 0;
}

int kvpool_alloc(struct kvpool *p, int n, int *ids_out) {
  if (n < 0) return -EINVAL;
  if (n > p->nplain + p->nlru) return -ENOSPC;
  for (int i = 0; i < n; i++)
    ids_out[i] = take_fresh(p);
  return 0;
}

void kvpool_release(struct kvpool *p, const int *ids, int n) {
  for (int i = n - 1; i >= 0; i--) {
    int id = ids[i];
    assert(id >= 0 && id < p->num_blocks);
    struct kvpool_block *b = &p->blk[id];
    assert(b->ref > 0);
    if (--b->ref > 0) continue;
    p->nused--;
    if (b->hashed) {
      lru_append(p, id);
    } else {
      b->prev = -1;
      b->next = p->plain_head;
      p->plain_head = id;
      p->nplain++;
    }
  }
}

int kvpool_commit_hash(struct kvpool *p, int id, uint64_t hash) {
  assert(id >= 0 && id < p->num_blocks);
  struct kvpool_block *b = &p->blk[id];
  assert(b->ref > 0);
  if (b->hashed || kvpool_find(p, hash) >= 0) return 0;
  b->hash = hash;
  b->hashed = true;
  tab_insert(p, id);
  p->ncached++;
  return 1;
}

int kvpool_num_free(const struct kvpool *p) { return p->nplain + p->nlru; }
int kvpool_used(const struct kvpool *p) { return p->nused; }
int kvpool_num_cached(const struct kvpool *p) { return p->ncached; }
int kvpool_ref(const struct kvpool *p, int id) { return id >= 0 && id < p->num_blocks ? p->blk[id].ref : -1; }
