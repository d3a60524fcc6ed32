/* Workloads as spans of content, and their mapping onto a runtime's chained KV-block hashes. */
#include "sim/workload.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/alloc.h"

void workload_init(struct workload *w) { *w = (struct workload){.next_unique = 1}; }

void workload_free(struct workload *w) {
  free(w->reqs);
  free(w->spans);
  workload_init(w);
}

uint64_t workload_unique_id(struct workload *w) { return WL_ID_UNIQUE | w->next_unique++; }

static void push_span(struct workload *w, uint64_t id, int32_t tokens) {
  if (w->nspans == w->capspans) {
    w->capspans = w->capspans ? 2 * w->capspans : 1024;
    w->spans = xrealloc(w->spans, w->capspans * sizeof *w->spans);
  }
  w->spans[w->nspans++] = (struct wl_span){.id = id, .tokens = tokens};
}

void workload_add(struct workload *w, uint64_t t_ns, int prompt_tokens, int output_tokens, int tenant,
                  const struct wl_span *spans, int nspans) {
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 1024;
    w->reqs = xrealloc(w->reqs, w->cap * sizeof *w->reqs);
  }
  if (prompt_tokens < 1) prompt_tokens = 1;
  if (output_tokens < 1) output_tokens = 1;
  struct wl_req *r = &w->reqs[w->n++];
  *r = (struct wl_req){.t_ns = t_ns,
                       .prompt_tokens = prompt_tokens,
                       .output_tokens = output_tokens,
                       .tenant = tenant < 0 ? 0 : tenant,
                       .span0 = (uint32_t)w->nspans};
  long long covered = 0;
  for (int i = 0; i < nspans && covered < prompt_tokens; i++) {
    if (spans[i].tokens <= 0) continue;
    push_span(w, spans[i].id, spans[i].tokens);
    covered += spans[i].tokens;
  }
  if (covered < prompt_tokens) push_span(w, workload_unique_id(w), (int32_t)(prompt_tokens - covered));
  r->nspans = (uint32_t)(w->nspans - r->span0);
}

static int cmp_time(const void *a, const void *b) {
  const struct wl_req *x = a, *y = b;
  if (x->t_ns != y->t_ns) return x->t_ns < y->t_ns ? -1 : 1;
  return x->span0 < y->span0 ? -1 : x->span0 > y->span0; /* span0 grows with insertion: a stable sort */
}

void workload_sort(struct workload *w) {
  if (w->n > 1) qsort(w->reqs, w->n, sizeof *w->reqs, cmp_time);
}

void workload_scale_time(struct workload *w, double factor) {
  if (!(factor > 0)) return;
  for (size_t i = 0; i < w->n; i++)
    w->reqs[i].t_ns = (uint64_t)((double)w->reqs[i].t_ns * factor + 0.5);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

size_t workload_spread_bursts(struct workload *w) {
  if (w->n < 2) return 0;
  uint64_t *gaps = xmalloc(w->n * sizeof *gaps);
  size_t ng = 0;
  for (size_t i = 1; i < w->n; i++)
    if (w->reqs[i].t_ns != w->reqs[i - 1].t_ns) gaps[ng++] = w->reqs[i].t_ns - w->reqs[i - 1].t_ns;
  uint64_t bucket = 0;
  if (ng) {
    qsort(gaps, ng, sizeof *gaps, cmp_u64);
    bucket = gaps[ng / 2];
  }
  free(gaps);
  size_t moved = 0;
  for (size_t i = 0; i < w->n;) {
    size_t j = i + 1;
    while (j < w->n && w->reqs[j].t_ns == w->reqs[i].t_ns)
      j++;
    uint64_t t = w->reqs[i].t_ns, width = bucket;
    if (j < w->n && w->reqs[j].t_ns - t < width) width = w->reqs[j].t_ns - t;
    size_t m = j - i;
    for (size_t k = 1; k < m && width > 0; k++, moved++)
      w->reqs[i + k].t_ns = t + (uint64_t)((double)width * (double)k / (double)m);
    i = j;
  }
  return moved;
}

void workload_clip(struct workload *w, int max_model_len) {
  for (size_t i = 0; i < w->n; i++) {
    struct wl_req *r = &w->reqs[i];
    if ((long long)r->prompt_tokens + r->output_tokens <= max_model_len) continue;
    if (r->output_tokens > max_model_len / 2) r->output_tokens = max_model_len / 2;
    if (r->output_tokens < 1) r->output_tokens = 1;
    int room = max_model_len - r->output_tokens;
    if (r->prompt_tokens > room) {
      r->prompt_tokens = room < 1 ? 1 : room;
      w->truncated++;
    }
  }
}

uint64_t workload_model_seed(const char *model) { return XXH3_64bits(model, strlen(model)); }

int workload_block_hashes(const struct workload *w, const struct wl_req *r, uint64_t seed, int block_size,
                          uint64_t *out, int max) {
  if (block_size <= 0 || max <= 0) return 0;
  int nfull = r->prompt_tokens / block_size;
  if (nfull > max) nfull = max;
  const struct wl_span *sp = w->spans + r->span0;
  uint32_t si = 0;
  int64_t off = 0; /* tokens of sp[si] already consumed */
  uint64_t h = seed;
  for (int b = 0; b < nfull; b++) {
    int need = block_size;
    uint64_t a = h;
    while (need > 0 && si < r->nspans) {
      int64_t left = sp[si].tokens - off;
      int64_t take = left < need ? left : need;
      uint64_t piece[3] = {sp[si].id, (uint64_t)off, (uint64_t)take};
      a = XXH3_64bits_withSeed(piece, sizeof piece, a);
      need -= (int)take;
      off += take;
      if (off == sp[si].tokens) {
        si++;
        off = 0;
      }
    }
    h = a;
    out[b] = h;
  }
  return nfull;
}
