/* Inverted prefix index: block hash -> the targets whose prefix index holds it (pure, no I/O).
 *
 * A router keeps one prefix_index per target (what it believes each target caches). Probing every target's
 * index for every request costs one lookup per candidate; this map answers "who holds this block" with one
 * lookup per block, so a decision over 1,000 candidates probes the request's blocks, not the candidates.
 *
 * It is kept consistent by the per-target indexes themselves: a prefix_index attached to it
 * (prefix_index_attach) adds its owner here for every hash it newly holds and removes it for every hash it
 * drops (evicted, removed, cleared, freed). Nothing else should add or delete, so an id is listed under a
 * hash exactly when that target's index holds the hash. Not thread-safe; the map owns its memory
 * (prefix_holders_free). */
#ifndef IM_STATE_PREFIX_HOLDERS_H
#define IM_STATE_PREFIX_HOLDERS_H

#include <stdint.h>

struct prefix_holders_entry; /* private: a hash and its holder ids */

struct prefix_holders {
  struct prefix_holders_entry *tab; /* open addressing, linear probing; entries with n == 0 are empty */
  uint32_t bits;                    /* table size is 1 << bits (0: no table yet) */
  uint32_t used;                    /* hashes held by at least one target */
};

/* prefix_holders_init makes an empty map; prefix_holders_free releases it (then it may be initialized again).
 */
void prefix_holders_init(struct prefix_holders *hs);
void prefix_holders_free(struct prefix_holders *hs);

/* prefix_holders_add lists target ID (>= 0) under HASH; the caller guarantees ID is not already listed there.
 * prefix_holders_del unlists it (no-op when it is not listed). */
void prefix_holders_add(struct prefix_holders *hs, uint64_t hash, int32_t id);
void prefix_holders_del(struct prefix_holders *hs, uint64_t hash, int32_t id);

/* prefix_holders_get returns the ids listed under HASH (borrowed until the next add/del) and stores how many
 * in *N; NULL and 0 when none. In no particular order. */
const int32_t *prefix_holders_get(const struct prefix_holders *hs, uint64_t hash, int *n);

/* prefix_holders_match finds, for every target whose index holds HASHES[0], the length k of the longest
 * prefix HASHES[0..k) it holds, and tells MARK(UD, id, k): run by run from the shallowest, so a target may be
 * told several times and its last call carries its length (callers overwrite). Valid when every attached
 * index is prefix-closed along chains (filled with prefix_index_insert_path only): then the holders of
 * HASHES[b] are a subset of those of HASHES[b-1], equal sets have equal sizes, and the lengths follow from a
 * binary search for where the count of holders drops: O(log n) lookups per distinct length plus one call per
 * holder of each run. The result is what prefix_index_match would return on each target's own index. Returns
 * the largest k (0: nobody holds HASHES[0]). */
int prefix_holders_match(const struct prefix_holders *hs, const uint64_t *hashes, int n,
                         void (*mark)(void *ud, int32_t id, int k), void *ud);

#endif
