/* The state store: every routing target with its latest load signals and router-local reservations. */
#ifndef IM_STATE_STORE_H
#define IM_STATE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/slice.h"
#include "state/prefix_index.h"

/* Entries of the store's change log (struct store). */
#define STORE_CHANGE_LOG 4096
/* How many targets a store holds is fixed when it is made (config `max_targets`; this by default). */
#define STORE_DEFAULT_MAX_TARGETS 1024
#define STORE_MAX_MODELS 16
/* Observed time-to-first-byte samples kept per target and kind (a sliding window, newest replaces oldest). */
#define STORE_TTFB_WINDOW 64
enum { STORE_TTFB_STREAM = 0, STORE_TTFB_FULL = 1 };

/* Load signals as last reported by the target's runtime (a scrape). */
struct target_load {
  double waiting, running; /* requests */
  double kv_usage;         /* 0..1, negative when unknown */
  int64_t block_size, num_gpu_blocks;
  double prefix_queries, prefix_hits; /* counters, tokens */
  double ttft_sum, ttft_count;
  /* Over a recent window (10 to 20 s, agent/scraper.c; from another node's report for a remote target);
   * negative when unknown (no observation in the window, or not reported). */
  double prompt_tps, gen_tps;       /* tokens/s */
  double ttft_p50, ttft_p95;        /* seconds */
  double itl_p50, itl_p95;          /* seconds */
};

/* A target is one runtime instance this agent can send requests to. Strings are owned by the store. */
struct target {
  int id; /* index in the store, stable for the store's life */
  char name[64];
  char url[160];
  char host[96];
  int port;
  char kind[16]; /* runtime kind, e.g. "vllm" */
  /* A local runtime's alias (config `alias:`): its first model is listed and routed under this name, and
   * requests sent to it carry upstream_model, the name the runtime reported (scraper). "" = none. */
  char alias[128];
  char upstream_model[256];
  /* A local runtime's API key (config `api_key:`), sent to it as `Authorization: Bearer`; never shown. */
  char api_key[256];
  char *models[STORE_MAX_MODELS];
  int nmodels;
  bool healthy;
  char last_error[128];
  uint64_t updated_ns; /* monotonic time of the last successful load report; 0 = never */
  struct target_load load;
  /* Router-local accounting (DESIGN §6 herding): in-flight requests routed here and not finished, and
   * requests routed since the last load report (which the report could not have counted yet). */
  int inflight;
  int routed_since_report;
  /* A GPU this target runs on is degraded (throttling, ECC errors, too hot): it ranks lower. */
  bool gpu_degraded;
  /* Mesh: a remote target is a runtime of another node, reached through that node's agent (url = its API);
   * its signals arrive by load push. gone = its node died or left (the slot is kept for reuse). draining =
   * its node is draining: no new requests. */
  bool remote, gone, draining;
  char node[64];        /* the node it runs on ("" for this node's own targets) */
  char zone[32];        /* that node's zone, from its membership ("" for this node's own targets, or none) */
  char remote_name[64]; /* its name on that node */
  uint8_t node_id[32];
  /* Admission (DESIGN §6): KV tokens (prompt + max_tokens) this router routed here since the last load report
   * (which could not count them yet); report_seq counts reports so that a release after a newer report, whose
   * kv_usage already saw the request, subtracts nothing. */
  int64_t kv_reserved;
  uint32_t report_seq;
  /* The highest window prompt rate (load.prompt_tps) any report showed: the prefill rate this target has
   * demonstrated, tokens/s (0 none yet). The routing policy's prefill-rate signal. */
  double prompt_tps_peak;
  /* Hedging: this router's observed time to first byte here, in seconds: [STORE_TTFB_STREAM] up to the first
   * SSE data frame, [STORE_TTFB_FULL] up to a non-streaming response's head. Ring buffers. */
  float ttfb[2][STORE_TTFB_WINDOW];
  uint16_t ttfb_n[2], ttfb_pos[2];
  /* Cache state as the runtime itself reports it (DESIGN §6 "many gateways"): the block hashes it holds, from
   * its KV-cache events (this node's runtimes, kv/kv_sub.h) or from its node's cache summaries (a remote
   * target, agent/kv_mesh.c). NULL until the first report; owned by the store. kv_ns: monotonic time of the
   * last report (0 = never); kv_events: its node said it publishes events (then routers do not share their
   * routing decisions about it: the engine's word is better). */
  struct prefix_index *kv_blocks;
  uint64_t kv_ns;
  bool kv_events;
};

struct store {
  struct target *targets; /* owned: cap entries, the first ntargets in use; ids index it */
  int ntargets, cap;
  uint64_t placement_gen; /* bumped when a target is added or its node or zone changes (route_ctl recomputes) */
  /* The change log: every change to what routing reads of a target (health, gone, draining, models, load
   * report, degraded GPU, router-local counts) appends its id, change_log[seq % STORE_CHANGE_LOG] being the
   * target of change seq (1-based; change_seq changes so far). A reader that kept up with it refreshes only
   * what changed (route/cand_set.h); one that fell more than STORE_CHANGE_LOG behind rebuilds. */
  uint64_t change_seq;
  int32_t *change_log; /* owned, STORE_CHANGE_LOG entries */
  /* report_cb, when set, runs at the end of every store_report (the router admits queued requests when
   * capacity frees). It must not add or remove targets. */
  void (*report_cb)(void *arg, int id);
  void *report_arg;
  /* down_cb, when set, runs when store_mark_down takes a healthy target out of routing (the router moves the
   * requests that target has not answered yet). It must not add or remove targets. */
  void (*down_cb)(void *arg, int id);
  void *down_arg;
};

/* store_init makes s an empty store of room for MAX_TARGETS (>= 1) targets; arrays that other layers index by
 * target id are sized by s->cap (store_bitmap_words for bitmaps). store_free releases everything. */
void store_init(struct store *s, int max_targets);
void store_free(struct store *s);
/* store_parse_url splits "http://HOST:PORT" (a trailing "/" allowed; HOST may be [IPv6]) into host and port:
 * 0 or -EINVAL. */
int store_parse_url(const char *url, char *host, size_t hostcap, int *port);
/* store_add_target registers a target (URL http://host:port) and returns its id, or -EINVAL (bad URL)
 * / -ENOSPC (full). name may be NULL (then host:port). The target starts unhealthy until its first report. */
int store_add_target(struct store *s, const char *name, const char *url, const char *kind);
/* store_set_zone records the zone (copied; "" = none) of remote target id's node. */
void store_set_zone(struct store *s, int id, const char *zone);
/* store_add_remote registers (or revives) the target remote_name of node node_id, reached at api_addr
 * (host:port of that node's agent): the slot with the same node id and remote name is reused. Returns its id,
 * -EINVAL (bad address) or -ENOSPC. *addr_changed tells the caller to reconnect its pool. */
int store_add_remote(struct store *s, const char *node, const uint8_t node_id[32], const char *remote_name,
                     const char *api_addr, const char *kind, bool *addr_changed);
/* store_changed appends target id to the change log (see struct store). The store's own setters call it; a
 * caller that writes a target field routing reads must use a setter instead. */
void store_changed(struct store *s, int id);
/* store_set_draining / store_set_degraded set target id's draining flag (no new requests) / degraded GPU flag. */
void store_set_draining(struct store *s, int id, bool draining);
void store_set_degraded(struct store *s, int id, bool degraded);
/* store_mark_gone takes target id out of routing for good (its node died or left): unhealthy, no models. */
void store_mark_gone(struct store *s, int id);
/* store_set_models replaces the model list of target id (strings are copied). */
void store_set_models(struct store *s, int id, const char *const *models, int n);
/* store_report records a successful load report taken at now_ns: the target becomes healthy and its
 * router-local "routed since report" count restarts. */
void store_report(struct store *s, int id, const struct target_load *load, uint64_t now_ns);
/* store_mark_down records a failed health check or connection error with a reason (copied); when the target
 * was healthy, down_cb follows. */
void store_mark_down(struct store *s, int id, const char *reason);
/* store_target_serves tells whether target t lists model. */
bool store_target_serves(const struct target *t, struct slice model);
/* store_model_known tells whether any target (healthy or not) lists model. */
bool store_model_known(const struct store *s, struct slice model);
/* store_all_reported tells whether every target has listed its models at least once (and there is at
 * least one target): only then can a model no target lists be called unknown. */
bool store_all_reported(const struct store *s);
/* store_bitmap_words is the length in 64-bit words of a bitmap with one bit per target id of s. */
static inline int store_bitmap_words(const struct store *s) { return (s->cap + 63) / 64; }
/* store_candidates writes the ids of healthy, not gone, not draining targets serving model (excluding those whose bit is set in
 * `exclude`, a bitmap of store_bitmap_words words, may be NULL) into out (at most max); returns their count. */
int store_candidates(const struct store *s, struct slice model, const uint64_t *exclude, int *out, int max);
/* store_reserve / store_release account one routed request on target id (release exactly once per reserve);
 * a release also takes the request out of routed_since_report: finished work is no load. */
void store_reserve(struct store *s, int id);
void store_release(struct store *s, int id);

/* store_kv_capacity is target t's KV pool in tokens (block_size * num_gpu_blocks), 0 when unknown. */
int64_t store_kv_capacity(const struct target *t);
/* store_kv_free is what a new request may still use of t's KV pool, in tokens:
 * (1 - kv_usage) * capacity - kv_reserved; INT64_MAX when kv_usage or the capacity is unknown. */
int64_t store_kv_free(const struct target *t);
/* store_kv_reserve adds tokens to target id's kv_reserved and returns the report sequence to hand back to
 * store_kv_release, which subtracts them again unless a load report came in between. */
uint32_t store_kv_reserve(struct store *s, int id, int64_t tokens);
void store_kv_release(struct store *s, int id, int64_t tokens, uint32_t seq);

/* Cache state reported by the runtime (see struct target). Blocks are chained hashes in the router's own hashing
 * (policy_prompt_hashes), at most STORE_KV_BLOCKS_MAX per target (least recently stored dropped first; memory
 * grows with use, ~40 bytes a block). store_kv_stored adds HASHES[0..n) (a prompt's consecutive blocks, parent
 * first), store_kv_removed drops them, store_kv_cleared empties the set; each stamps kv_ns = now_ns.
 * store_kv_match is how many leading HASHES[0..n) target t holds (0 without reports). */
#define STORE_KV_BLOCKS_MAX (1 << 20)
void store_kv_stored(struct store *s, int id, const uint64_t *hashes, int n, uint64_t now_ns);
void store_kv_removed(struct store *s, int id, const uint64_t *hashes, int n, uint64_t now_ns);
void store_kv_cleared(struct store *s, int id, uint64_t now_ns);
int store_kv_match(const struct target *t, const uint64_t *hashes, int n);
/* store_kv_blocks is how many blocks t is known to hold (0 without reports). */
int store_kv_blocks(const struct target *t);

/* store_ttfb_observe records one time-to-first-byte sample (seconds) of kind STORE_TTFB_* for target id. */
void store_ttfb_observe(struct store *s, int id, int kind, double seconds);
/* store_ttfb_quantile sets *out to quantile q (0..1, nearest rank) of target t's window of kind and returns
 * true, or returns false while the window holds fewer than min_samples samples. */
bool store_ttfb_quantile(const struct target *t, int kind, double q, int min_samples, double *out);

#endif
