/* The simulated inference engine in virtual time (vLLM-V1-like batching, prefix caching, preemption).
 *
 * Continuous batching, chunked prefill, prefix caching and preemption like vLLM V1, with step durations from
 * a profile. Pure model: no I/O, no clocks, no event loop, so a server and a discrete-event simulator can
 * both drive it. */
#ifndef IM_SIM_ENGINE_H
#define IM_SIM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/hist.h"
#include "sim/kvpool.h"
#include "sim/profile.h"

/* Tokenization of the simulated engine: 1 token = 4 bytes of prompt text, rounded up. Deterministic and
 * prefix-preserving. sim_tokens_for_bytes returns ceil(nbytes / 4), capped at INT_MAX (0 for 0 bytes). */
int sim_tokens_for_bytes(size_t nbytes);

/* sim_block_hashes writes the chained hashes of the FULL KV blocks of PROMPT[0..len) (one block = block_size
 * tokens = 4 * block_size bytes; a partial last block has no hash) to OUT, at most MAX of them, and returns
 * how many it wrote. h_0 = XXH3(model id of P); h_i = XXH3_withSeed(block i bytes, seed h_{i-1}): prompts
 * that share their first k blocks share their first k hashes, whatever follows. */
int sim_block_hashes(const struct sim_profile *p, const char *prompt, size_t len, uint64_t *out, int max);

enum { SIM_EV_FIRST_TOKEN = 1, SIM_EV_TOKEN = 2, SIM_EV_DONE = 3 };

/* One output event. t_ns is the virtual time at which the step that produced it ended. tokens_out counts the
 * request's output tokens so far (1 for FIRST_TOKEN; max_tokens for DONE). cached_tokens is the prompt prefix
 * found in the prefix cache when the request was first admitted (usage.prompt_tokens_details.cached_tokens).
 */
struct sim_event {
  int kind;
  uint64_t id;
  void *udata;
  uint64_t t_ns;
  int tokens_out;
  int prompt_tokens;
  int cached_tokens;
};

/* Event callback. EV is valid only during the call. The callback may call sim_engine_submit and
 * sim_engine_abort; a nested sim_engine_advance is ignored; it must not call sim_engine_free. */
typedef void (*sim_event_cb)(void *arg, const struct sim_event *ev);

/* Counters and gauges for /metrics (the caller renders them under vLLM's metric names). Gauges (waiting,
 * running, kv_usage) are current after every engine call. Histograms are in virtual seconds with
 * hist_latency_bounds: ttft = submit to first token, e2e = submit to last token, itl = between consecutive
 * tokens of one request. kv_usage = blocks in use by requests / num_gpu_blocks (cached free blocks count as
 * free, as in vLLM's kv_cache_usage_perc). prefix_* count prompt tokens looked up / found in the prefix cache
 * at admission. */
struct sim_stats {
  int waiting, running;
  double kv_usage;
  uint64_t prefix_queries_tokens, prefix_hits_tokens;
  uint64_t prompt_tokens_total, generation_tokens_total;
  uint64_t requests_finished, preemptions;
  struct hist ttft, e2e, itl;
};

struct sim_engine;

/* sim_engine_new creates an idle engine at virtual time 0 with an empty KV pool. P is copied. SEED is kept
 * for stochastic extensions; the model itself is deterministic. Returns NULL when P fails
 * sim_profile_validate. Free with sim_engine_free. */
struct sim_engine *sim_engine_new(const struct sim_profile *p, uint64_t seed);

/* sim_engine_free drops every request (no events) and frees the engine. Not from inside a callback. */
void sim_engine_free(struct sim_engine *e);

/* sim_engine_check says whether a request of PROMPT_TOKENS and MAX_TOKENS can be served: 0, -EINVAL (empty
 * prompt, max_tokens < 1) or IM_ETOOBIG (prompt + max_tokens > max_model_len), with vLLM's wording in ERRMSG
 * (may be NULL). Servers call it to answer 400 before submitting. */
int sim_engine_check(const struct sim_engine *e, int prompt_tokens, int max_tokens, char *errmsg,
                     size_t errlen);

/* sim_engine_submit queues a request at virtual time NOW_NS (FIFO behind earlier submissions) and returns
 * its id (>= 1; ids are never reused), or 0 when sim_engine_check rejects it. BLOCK_HASHES[0..nblocks) are
 * the chained hashes of the prompt's full blocks (sim_block_hashes); they are copied, and only the first
 * min(nblocks, prompt_tokens / block_size) are used. UDATA is returned in events, never dereferenced.
 * The request is first considered by the step that starts at or after NOW_NS; call sim_engine_next_event
 * after submitting, since an idle engine then wants to be advanced at NOW_NS. */
uint64_t sim_engine_submit(struct sim_engine *e, uint64_t now_ns, const uint64_t *block_hashes, int nblocks,
                           int prompt_tokens, int max_tokens, void *udata);

/* sim_engine_abort removes request ID, waiting or running, and frees its KV blocks (its full prompt blocks
 * stay in the prefix cache). No event for ID is delivered after it returns, including ones already produced
 * by the step being delivered. Safe at any time and from callbacks; an unknown or finished id is a no-op. */
void sim_engine_abort(struct sim_engine *e, uint64_t id);

/* sim_engine_next_event returns the virtual time at which sim_engine_advance must next be called: the end of
 * the step in progress, the start time of the next step when requests are waiting on an idle engine, or
 * UINT64_MAX when there is nothing to do. */
uint64_t sim_engine_next_event(const struct sim_engine *e);

/* sim_engine_advance moves virtual time to NOW_NS: it completes every step ending at or before NOW_NS,
 * delivering that step's events to CB (in order; CB may be NULL) before scheduling the next step, and starts
 * the step that follows. Each step decodes one token for every running request and admits waiting requests
 * FIFO while max_num_seqs, the token budget and the KV pool allow; see engine.c for the exact policy. */
void sim_engine_advance(struct sim_engine *e, uint64_t now_ns, sim_event_cb cb, void *arg);

/* sim_engine_stats returns the engine's live stats; valid until sim_engine_free. */
const struct sim_stats *sim_engine_stats(const struct sim_engine *e);

/* sim_engine_profile and sim_engine_pool expose the engine's own profile and KV pool, read-only. */
const struct sim_profile *sim_engine_profile(const struct sim_engine *e);
const struct kvpool *sim_engine_pool(const struct sim_engine *e);

/* Cache observer: what a KV-cache event publisher reports (vLLM's BlockStored / BlockRemoved). stored: block
 * HASH became findable, extending the cached prefix whose last block is PARENT (has_parent false for a
 * prompt's first block); removed: HASH was evicted. Called from inside engine calls; the callback must not
 * call back into the engine. sim_engine_set_cache_cb sets (or, with NULL, clears) it. */
struct sim_cache_cb {
  void (*stored)(void *arg, uint64_t hash, bool has_parent, uint64_t parent);
  void (*removed)(void *arg, uint64_t hash);
  void *arg;
};
void sim_engine_set_cache_cb(struct sim_engine *e, const struct sim_cache_cb *cb);

/* sim_engine_busy_ns is the virtual time the engine has spent in steps: the sum of the durations of every
 * step started so far (the one in progress counted whole). Utilization = busy / elapsed. */
uint64_t sim_engine_busy_ns(const struct sim_engine *e);

#endif
