/* The dashboard's recent history: per target and for the whole node, a few floats a second for the last
 * 15 minutes, in memory (GET /v1/cluster/history). */
#ifndef IM_API_HISTORY_H
#define IM_API_HISTORY_H

#include <stdint.h>

#include "core/buf.h"
#include "core/hist.h"
#include "route/route_metrics.h"
#include "state/store.h"

#define HISTORY_SECONDS 900 /* samples kept: 15 minutes at one a second */
#define HISTORY_WINDOW 5    /* seconds over which the traffic percentiles are taken */

/* A ring of rows of `width` floats; the oldest row is overwritten once cap rows are held. NaN = unknown. */
struct history_ring {
  int width;
  uint32_t cap, n, head; /* head: where the next row goes */
  float *v;              /* cap * width floats, owned */
};

/* history_ring_init allocates room for cap rows of width floats (aborts when memory runs out);
 * history_ring_free releases it. history_ring_clear forgets every row. */
void history_ring_init(struct history_ring *r, uint32_t cap, int width);
void history_ring_free(struct history_ring *r);
void history_ring_clear(struct history_ring *r);
/* history_ring_push appends one row (width floats, copied). */
void history_ring_push(struct history_ring *r, const float *row);
/* history_ring_row returns row i, 0 = the oldest held, i < r->n; the pointer is valid until the next push. */
const float *history_ring_row(const struct history_ring *r, uint32_t i);

/* The columns of a target's rows. */
enum {
  HT_HEALTHY,    /* 1 healthy, 0 not */
  HT_WAITING,    /* requests waiting in the runtime */
  HT_RUNNING,    /* requests running */
  HT_KV,         /* KV-cache use, 0..1 */
  HT_PREFIX_HIT, /* prefix-cache hits / queries over the last second */
  HT_TTFT_P50,   /* seconds, the runtime's recent window */
  HT_TTFT_P95,
  HT_GEN_TPS, /* generated tokens/s */
  HT_ROUTED,  /* requests this agent finished on it, per second */
  HT_NCOLS
};

/* The columns of the node's rows: this agent's ingress traffic. */
enum {
  HN_REQS,     /* requests finished per second */
  HN_ERRORS,   /* of which 5xx */
  HN_REJECTED, /* of which 4xx (refused: auth, limits, bad requests) */
  HN_INFLIGHT, /* in flight now */
  HN_TTFT_P50, /* seconds, over the last HISTORY_WINDOW seconds; NaN without requests */
  HN_TTFT_P95,
  HN_LAT_P50,
  HN_LAT_P95,
  HN_NCOLS
};

struct history_target {
  char key[160]; /* node "/" name: a slot reused for another target starts a fresh ring */
  struct history_ring ring;
  double prefix_q, prefix_h; /* the counters at the previous sample */
  uint64_t routed;           /* requests finished on it at the previous sample */
};

struct history {
  int64_t last_ms;  /* wall-clock time of the newest sample (ms since the epoch); 0 = none yet */
  uint32_t samples; /* samples taken */
  struct history_ring node;
  struct history_target **targets; /* owned: ntargets slots by store id; each allocated at its first sample */
  int ntargets;
  uint64_t reqs, errors, rejected;                               /* totals at the previous sample */
  struct hist ttft[HISTORY_WINDOW + 1], lat[HISTORY_WINDOW + 1]; /* snapshots, a ring by sample count */
};

/* history_init prepares h (empty) for the targets of a store of MAX_TARGETS (its cap); history_free releases
 * every ring. Neither touches a loop: the agent drives sampling from its own timer. */
void history_init(struct history *h, int max_targets);
void history_free(struct history *h);

/* history_sample appends one row per target of s (gone targets get unknown rows) and one for the node, from
 * the router's metrics m and its in-flight count. now_ms: wall clock, ms since the epoch. Borrows everything.
 */
void history_sample(struct history *h, const struct store *s, const struct route_metrics *m, int inflight,
                    int64_t now_ms);

/* history_json appends {"interval_s":1,"end_ms":T,"node":{"n":N,COLUMN:[...]...},"targets":[{"id","name",
 * "node","gone","n",COLUMN:[...]}...]} where each column holds the samples newer than since_ms (all when 0),
 * oldest first, the last one taken at end_ms, one a second; unknown values are null. */
void history_json(const struct history *h, const struct store *s, int64_t since_ms, struct buf *out);

/* history_bytes is the memory the rings hold now (for the README's figure and a test). */
size_t history_bytes(const struct history *h);

#endif
