/* Prefix index: a bounded LRU set of chained KV-block hashes, one per routing target (pure, no I/O). */
#ifndef IM_STATE_PREFIX_INDEX_H
#define IM_STATE_PREFIX_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "state/prefix_holders.h"

/* A router's guess of which prompt prefixes a target holds in its KV cache: the chained block hashes
 * (h_i = hash(block_i, h_{i-1}), so one hash names a whole prefix) of prompts recently routed there, at most
 * `capacity` of them, least recently used dropped first.
 *
 * Two ways to add a prompt:
 *  - prefix_index_insert_path touches the blocks from the last to the first, so a block is always more
 *    recently used than every block that extends it. Eviction then drops the deepest blocks first and the
 *    set stays prefix-closed (a block is present only if all its ancestors are), which prefix_index_match
 *    relies on (it binary-searches). This mirrors vLLM's own eviction order (tail blocks first).
 *  - prefix_index_add_in_order touches the blocks first to last (llm-d's indexer does this); the set may then
 *    hold a block without its ancestors, so use prefix_index_contains, not prefix_index_match.
 *
 * The index owns its arrays. Memory grows with use (doubling), up to about 24 bytes per entry at capacity. */
struct prefix_index {
  uint64_t *keys;          /* entry -> hash */
  int32_t *prev, *next;    /* LRU links between entries; head = most recently used */
  int32_t *tab;            /* open addressing, linear probing: entry index or -1 */
  uint32_t tab_bits;
  int32_t nalloc;          /* entries allocated */
  int32_t n;               /* entries in use */
  int32_t capacity;        /* most entries kept */
  int32_t head, tail;      /* LRU list */
  int32_t free_head;       /* unused entries (linked by next) */
  uint64_t evictions;
  struct prefix_holders *holders; /* borrowed, or NULL: mirrors every add and drop (prefix_index_attach) */
  int32_t owner;                  /* the id listed there */
};

/* prefix_index_init makes an empty index keeping at most CAPACITY hashes (>= 1; larger values are capped at
 * PREFIX_INDEX_MAX). 0 or -EINVAL. Release with prefix_index_free; *ix may then be initialized again. */
#define PREFIX_INDEX_MAX (1 << 26)
int prefix_index_init(struct prefix_index *ix, int capacity);
void prefix_index_free(struct prefix_index *ix);

/* prefix_index_attach makes the (empty) index list OWNER under each hash it holds in HOLDERS, which must outlive
 * it or be detached with NULL: from now on every hash added is added there and every hash dropped (evicted,
 * removed, cleared, or the index freed) is deleted there. */
void prefix_index_attach(struct prefix_index *ix, struct prefix_holders *holders, int32_t owner);

/* prefix_index_set_capacity changes the bound (>= 1, capped at PREFIX_INDEX_MAX), evicting the least recently
 * used hashes when the index holds more. */
void prefix_index_set_capacity(struct prefix_index *ix, int capacity);

/* prefix_index_insert_path adds (or refreshes) HASHES[0..n) as one prompt's chain; see above. */
void prefix_index_insert_path(struct prefix_index *ix, const uint64_t *hashes, int n);

/* prefix_index_add_in_order adds (or refreshes) HASHES[0..n) first to last: HASHES[n-1] ends most recent. */
void prefix_index_add_in_order(struct prefix_index *ix, const uint64_t *hashes, int n);

/* prefix_index_match returns the largest k such that HASHES[0..k) are all present, assuming the index was
 * filled with prefix_index_insert_path only (then presence is monotone along a chain); O(log n) lookups.
 * Read-only: a match does not refresh recency (inserting the routed prompt does). */
int prefix_index_match(const struct prefix_index *ix, const uint64_t *hashes, int n);

/* prefix_index_contains says whether HASH is present. Read-only. */
bool prefix_index_contains(const struct prefix_index *ix, uint64_t hash);

/* Fed by what the runtime reports (KV-cache events, kv/kv_view.h) rather than by routing: a block the engine
 * evicted leaves at once (prefix_index_remove: whether it was there), a cleared cache empties the index
 * (prefix_index_clear; the capacity stays). Such a set need not be prefix-closed, so it is matched with
 * prefix_index_match_linear: the largest k with HASHES[0..k) all present, one lookup per block. */
bool prefix_index_remove(struct prefix_index *ix, uint64_t hash);
void prefix_index_clear(struct prefix_index *ix);
int prefix_index_match_linear(const struct prefix_index *ix, const uint64_t *hashes, int n);

/* prefix_index_size: hashes held now. */
static inline int prefix_index_size(const struct prefix_index *ix) { return ix->n; }

#endif
