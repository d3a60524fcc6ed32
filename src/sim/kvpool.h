/* KV-cache block pool with prefix caching and LRU eviction, modelled on vLLM's block manager. */
#ifndef IM_SIM_KVPOOL_H
#define IM_SIM_KVPOOL_H

#include <stdbool.h>
#include <stdint.h>

/* A block is free (refcount 0) or in use (refcount > 0, held by that many requests). A block may hold the
 * hash of the full prompt block whose KV it contains; such blocks are found by hash and shared. When a hashed
 * block's refcount drops to 0 it stays cached on an LRU list and is evicted (its hash forgotten) only when a
 * fresh block is needed and no never-used / unhashed free block is left. Every operation is O(1) per block.
 *
 * The pool owns its arrays; block ids are 0..num_blocks-1. Requests keep their own lists of block ids. */
struct kvpool_block {
  uint64_t hash;
  int32_t ref;
  int32_t prev, next; /* links on the plain free stack (next only) or the LRU list */
  bool hashed;
};

struct kvpool {
  int num_blocks;
  struct kvpool_block *blk;
  int32_t *tab; /* open addressing, linear probing: block id or -1; key = blk[id].hash */
  uint32_t tab_bits;
  int32_t plain_head; /* free blocks that hold no hash (never used, or released unhashed): taken first */
  int nplain;
  int32_t lru_head, lru_tail; /* free hashed blocks, head = least recently released = next to evict */
  int nlru;
  int nused;          /* blocks with ref > 0 */
  int ncached;        /* blocks holding a hash (in use or on the LRU list) */
  uint64_t evictions; /* hashes dropped to reuse a block */
  /* evict_cb, when set, is told each hash the pool forgets (a KV-cache event publisher's BlockRemoved). */
  void (*evict_cb)(void *arg, uint64_t hash);
  void *evict_arg;
};

#define KVPOOL_MAX_BLOCKS (1 << 24)

/* kvpool_init makes a pool of NUM_BLOCKS free, never-used blocks. 0, or -EINVAL when num_blocks is outside
 * 1..KVPOOL_MAX_BLOCKS. Release with kvpool_free_all. */
int kvpool_init(struct kvpool *p, int num_blocks);

/* kvpool_free_all releases the pool's memory; *p may be initialized again afterwards. */
void kvpool_free_all(struct kvpool *p);

/* kvpool_lookup_prefix returns how many leading HASHES[0..n) are cached (each present in the pool); no
 * effect. */
int kvpool_lookup_prefix(const struct kvpool *p, const uint64_t *hashes, int n);

/* kvpool_acquire_prefix takes, for one request, the NHIT cached blocks of HASHES[0..nhit) (refcount +1 each,
 * leaving the LRU list if they were free) and then NNEW fresh blocks, writing nhit + nnew block ids to
 * IDS_OUT in that order. All or nothing: returns 0, or -ENOSPC (not enough free blocks once the hits are
 * taken) or -ENOENT (a hash in the first NHIT is not cached) without changing anything. Fresh blocks come
 * from the unhashed free blocks first, then by evicting the least recently released cached block. */
int kvpool_acquire_prefix(struct kvpool *p, const uint64_t *hashes, int nhit, int nnew, int *ids_out);

/* kvpool_alloc takes N fresh blocks (refcount 1, no hash) into IDS_OUT: 0, or -ENOSPC with no change. */
int kvpool_alloc(struct kvpool *p, int n, int *ids_out);

/* kvpool_release drops one reference to each of IDS[0..n) (each must be in use), last id first: when a
 * request's blocks are released together, its tail blocks become the first to be evicted, so cached prefixes
 * shrink from the end, as in vLLM. A hashed block reaching refcount 0 stays cached (LRU); an unhashed one
 * becomes plain free. */
void kvpool_release(struct kvpool *p, const int *ids, int n);

/* kvpool_commit_hash records that in-use block ID now holds the full prompt block with HASH, making it
 * findable. Returns 1 when recorded; 0 when the block already holds a hash or another block already holds
 * HASH (two requests computed the same block at once: the first stays the cached copy, this one stays
 * unhashed). */
int kvpool_commit_hash(struct kvpool *p, int id, uint64_t hash);

/* kvpool_find returns the block holding HASH, or -1. */
int kvpool_find(const struct kvpool *p, uint64_t hash);

/* kvpool_num_free: blocks a new allocation could take (unhashed free + evictable cached). kvpool_used: blocks
 * with refcount > 0. kvpool_num_cached: blocks holding a hash (in use or free). kvpool_ref: refcount of block
 * ID, -1 for an id outside the pool. All read-only. */
int kvpool_num_free(const struct kvpool *p);
int kvpool_used(const struct kvpool *p);
int kvpool_num_cached(const struct kvpool *p);
int kvpool_ref(const struct kvpool *p, int id);

#endif
