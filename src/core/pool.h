/* Per-request memory pools (DESIGN §13): many small allocations released together, as h2o's h2o_mem_pool_t.
 */
#ifndef IM_CORE_POOL_H
#define IM_CORE_POOL_H

#include <stddef.h>

#include "core/slice.h"

struct pool_chunk;

/* A pool hands out memory that lives until pool_clear or pool_free releases all of it at once.
 * Zero-initialize it; it owns every chunk it allocated. Requests up to 6 KiB come from 8 KiB chunks (one chunk
 * is kept by pool_clear, so a reused pool does not call malloc again: a keep-alive connection's next request,
 * whose proxy state takes about 4.5 KiB); larger requests get their own allocation. */
struct mem_pool {
  struct pool_chunk *chunks; /* newest first; the head is the one being carved */
  size_t used;               /* bytes of the head chunk handed out */
  struct pool_chunk *large;  /* own allocations, freed by pool_clear */
};

/* pool_alloc returns n bytes aligned for any type (16), owned by p: valid until pool_clear/pool_free. Never
 * NULL (allocation failure aborts); n == 0 gives a valid unique pointer. */
void *pool_alloc(struct mem_pool *p, size_t n);
/* pool_strdup returns a NUL-terminated copy of s in p. */
char *pool_strdup(struct mem_pool *p, struct slice s);
/* pool_clear releases everything allocated from p but keeps one chunk for reuse. */
void pool_clear(struct mem_pool *p);
/* pool_free releases everything; p is zero again. */
void pool_free(struct mem_pool *p);

#endif
