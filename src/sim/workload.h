/* Simulator workloads: timed requests whose prompts are sequences of content spans, from traces or generators.
 *
 * A prompt is described, not materialized: a list of spans (id, tokens), each span standing for `tokens`
 * tokens of content named `id` (a trace's 512-token hash id, a shared system prompt, a user turn...). Two
 * prompts that start with the same spans start with the same tokens, so they share KV-cache prefix blocks.
 *
 * Block hashes (workload_block_hashes) map spans onto a runtime's KV blocks deterministically:
 *   h_0 = XXH3_64bits(model id), like sim_block_hashes;
 *   engine block b covers prompt tokens [b*bs, (b+1)*bs); it overlaps one or more spans, each in a piece
 *   (span id, offset of the piece inside the span, piece length); a = h_{b-1}; for each piece in order,
 *   a = XXH3_64bits_withSeed(piece as three little-endian u64, 24 bytes, a); h_b = a.
 * For a Mooncake trace (512-token hash-id blocks) and block_size 16, engine block k of trace block j with id h
 * is the single piece (h, 16k, 16): XXH3((h, sub-block k), seed = previous hash). Requests whose hash-id
 * lists agree on their first m ids get the same first 32m engine hashes, and a partial last trace block
 * shares the full engine blocks it has in common with a longer block of the same id. */
#ifndef IM_SIM_WORKLOAD_H
#define IM_SIM_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

struct wl_span {
  uint64_t id;
  int32_t tokens;
};

struct wl_req {
  uint64_t t_ns;              /* arrival, virtual ns from the start */
  int32_t prompt_tokens;      /* <= the spans' total */
  int32_t output_tokens;      /* >= 1 */
  int32_t tenant;             /* 0.. */
  uint32_t span0, nspans;     /* spans[span0 .. span0 + nspans) of the workload */
};

/* A workload owns its arrays. Requests are kept in arrival order once workload_sort ran. */
struct workload {
  struct wl_req *reqs;
  size_t n, cap;
  struct wl_span *spans;
  size_t nspans, capspans;
  uint64_t next_unique; /* for workload_unique_id */
  size_t truncated;     /* prompts cut by workload_clip */
};

/* Span-id namespaces, so trace ids, generated groups and unique content never collide. */
#define WL_ID_TRACE (1ull << 62)
#define WL_ID_GROUP (2ull << 62)
#define WL_ID_UNIQUE (3ull << 62)

void workload_init(struct workload *w);
void workload_free(struct workload *w);

/* workload_unique_id returns a span id no other span of W uses. */
uint64_t workload_unique_id(struct workload *w);

/* workload_add appends a request (SPANS copied). PROMPT_TOKENS >= 1, OUTPUT_TOKENS >= 1; when the spans
 * cover fewer tokens than the prompt, a unique span pads the rest. */
void workload_add(struct workload *w, uint64_t t_ns, int prompt_tokens, int output_tokens, int tenant,
                  const struct wl_span *spans, int nspans);

/* workload_sort orders requests by arrival time (stable). */
void workload_sort(struct workload *w);

/* workload_scale_time multiplies every arrival time by FACTOR (> 0): 0.5 = the same requests twice as fast. */
void workload_scale_time(struct workload *w, double factor);

/* workload_spread_bursts spreads requests that share an arrival time evenly over their time bucket: W sorted,
 * the bucket is the median gap between consecutive distinct arrival times (Mooncake's released traces
 * round timestamps into buckets of about 3 s, ~10 requests per bucket), cut short by the next distinct arrival
 * time; the k-th of m requests at time t moves to t + k * bucket / m. Order is kept. Returns how many requests
 * moved. */
size_t workload_spread_bursts(struct workload *w);

/* workload_clip cuts prompts so that prompt + output <= MAX_MODEL_LEN (output first cut to max_model_len/2 if
 * alone it leaves too little room); counts cut prompts in w->truncated. */
void workload_clip(struct workload *w, int max_model_len);

/* workload_block_hashes writes the chained hashes (see above) of R's full blocks of BLOCK_SIZE tokens to OUT,
 * at most MAX, seeded with SEED (XXH3_64bits of the model id). Returns how many it wrote. */
int workload_block_hashes(const struct workload *w, const struct wl_req *r, uint64_t seed, int block_size,
                          uint64_t *out, int max);

/* workload_model_seed is h_0 for model MODEL (as sim_block_hashes computes it). */
uint64_t workload_model_seed(const char *model);

/* ---- generators (workload_gen.c) ---- */

enum wl_kind { WL_NO_REUSE, WL_SHARED_PREFIX, WL_MULTI_TURN };

/* Generator parameters; wl_gen_default fills the documented defaults of each kind. */
struct wl_gen {
  enum wl_kind kind;
  int n;                       /* requests */
  double rate;                 /* mean arrivals per second */
  uint64_t seed;
  int bursty;                  /* on/off arrivals: on 25% of each 20 s period at 4x the rate, off otherwise */
  int tenants;                 /* requests are spread over this many tenants (>= 1) */
  int prompt_min, prompt_max;  /* no-reuse prompt; the unique question of shared-prefix; the user turn */
  int output_min, output_max;  /* output tokens, uniform */
  int groups;                  /* shared-prefix / multi-turn: distinct shared system prompts */
  int system_tokens;           /* tokens of each shared system prompt */
  double zipf;                 /* popularity of the groups: P(g) ~ 1 / (g+1)^zipf (0 = uniform) */
  int turns_min, turns_max;    /* multi-turn: turns per session, uniform */
  double think_s;              /* multi-turn: mean gap between the turns of a session (exponential) */
};

void wl_gen_default(struct wl_gen *g, enum wl_kind kind);

/* wl_kind_parse maps "no-reuse", "shared-prefix", "multi-turn" to a kind: 0 or -EINVAL. */
int wl_kind_parse(const char *s, enum wl_kind *out);
const char *wl_kind_name(enum wl_kind k);

/* workload_generate appends G->n requests to W (sorted) and returns 0, or -EINVAL with a reason in ERR. */
int workload_generate(const struct wl_gen *g, struct workload *w, char *err, size_t errlen);

/* ---- Mooncake traces (trace.c) ---- */

/* trace_parse_line parses one trace line ({"timestamp": ms, "input_length": n, "output_length": n,
 * "hash_ids": [...]}; other keys are ignored) and appends the request to W. A blank line adds nothing.
 * Returns 0, or IM_EPARSE / -EINVAL with "line LINENO: reason" in ERR. */
int trace_parse_line(struct workload *w, const char *line, size_t len, long lineno, char *err, size_t errlen);

/* trace_load reads the first LIMIT requests (0 = all) of the trace file PATH into W (sorted by time).
 * 0, -errno (cannot open: the reason names the path) or the first bad line's error. */
int trace_load(const char *path, size_t limit, struct workload *w, char *err, size_t errlen);

/* Trace hash-id blocks are this many tokens (Mooncake's release). */
#define TRACE_BLOCK_TOKENS 512

#endif
