/* Per-request memory pools: bump allocation in chunks, released all at once. */
#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define CHUNK 8192
#define LARGE (CHUNK / 4 * 3) /* larger requests get their own allocation */
#define ALIGN 16

struct pool_chunk {
  struct pool_chunk *next;
  _Alignas(ALIGN) unsigned char data[];
};

static size_t align_up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

void *pool_alloc(struct mem_pool *p, size_t n) {
  n = align_up(n ? n : 1);
  if (n > LARGE) {
    struct pool_chunk *c = xmalloc(sizeof *c + n);
    c->next = p->large;
    p->large = c;
    return c->data;
  }
  if (!p->chunks || p->used + n > CHUNK) {
    struct pool_chunk *c = xmalloc(sizeof *c + CHUNK);
    c->next = p->chunks;
    p->chunks = c;
    p->used = 0;
  }
  void *r = p->chunks->data + p->used;
  p->used += n;
  return r;
}

char *pool_strdup(struct mem_pool *p, struct slice s) {
  char *r = pool_alloc(p, s.len + 1);
  if (s.len) memcpy(r, s.base, s.len);
  r[s.len] = '\0';
  return r;
}

static void free_list(struct pool_chunk *c) {
  while (c) {
    struct pool_chunk *next = c->next;
    free(c);
    c = next;
  }
}

void pool_clear(struct mem_pool *p) {
  free_list(p->large);
  p->large = NULL;
  if (p->chunks) {
    free_list(p->chunks->next);
    p->chunks->next = NULL;
  }
  p->used = 0;
}

void pool_free(struct mem_pool *p) {
  pool_clear(p);
  free(p->chunks);
  p->chunks = NULL;
}
