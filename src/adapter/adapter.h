/* Runtime adapters: one interface that turns any runtime's HTTP responses into a normalized runtime_state. */
#ifndef IM_ADAPTER_ADAPTER_H
#define IM_ADAPTER_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Everything here is pure: no I/O, no globals written, no allocation kept. The caller fetches the endpoints
 * runtime_endpoints names, hands each response to runtime_parse, and keeps the runtime_state (a plain value:
 * no pointers, copy it freely). Two states some seconds apart give rates with runtime_rates. */

enum runtime_kind {
  RT_KIND_VLLM,
  RT_KIND_SGLANG,
  RT_KIND_TGI,
  RT_KIND_LLAMACPP,
  RT_KIND_TRITON,
  RT_KIND_OLLAMA
};
#define RT_KIND_COUNT 6

/* runtime_kind_parse maps "vllm", "sglang", "tgi", "llamacpp" (also "llama.cpp"), "triton", "ollama"
 * (ASCII case-insensitive) to *out. Returns 0, or -EINVAL (NULL or unknown name; *out untouched). */
int runtime_kind_parse(const char *name, enum runtime_kind *out);

/* runtime_kind_name returns the static lowercase name of k ("vllm", ...), or "unknown" when out of range. */
const char *runtime_kind_name(enum runtime_kind k);

/* Bits of runtime_state.have: which fields were read from the runtime. Fields whose bit is clear are 0. */
enum {
  RS_WAITING = 1u << 0,     /* waiting */
  RS_RUNNING = 1u << 1,     /* running */
  RS_KV_USAGE = 1u << 2,    /* kv_usage */
  RS_KV_CAPACITY = 1u << 3, /* kv_capacity_tokens (block_size too when the runtime has blocks) */
  RS_PREFIX_RATE = 1u << 4, /* prefix_hit_rate: the runtime's own gauge (SGLang) or lifetime hits/queries */
  RS_PREFIX_COUNTERS = 1u << 5, /* prefix_queries and prefix_hits counters (tokens) */
  RS_PROMPT_TOKENS = 1u << 6,   /* prompt_tokens_total counter */
  RS_GEN_TOKENS = 1u << 7,      /* generation_tokens_total counter */
  RS_TTFT = 1u << 8,            /* ttft histogram */
  RS_ITL = 1u << 9,             /* itl histogram */
  RS_QUEUE_TIME = 1u << 10,     /* queue_time_s_total and queued_requests_total counters */
  RS_MODELS = 1u << 11,         /* models[] (served / loaded / ready) */
  RS_AVAILABLE = 1u << 12,      /* available[] (on disk / in the repository, loadable) */
  RS_LORA = 1u << 13,           /* lora[] and max_lora */
  RS_HEALTH = 1u << 14,         /* healthy (and loading) */
  RS_VRAM = 1u << 15,           /* vram_bytes */
  RS_MAX_SEQ = 1u << 16,        /* max_seq_tokens: longest prompt+output one request may use */
  RS_PROMPT_TPS = 1u << 17,     /* prompt_tps_gauge: prompt tokens/s as the runtime computes it */
  RS_GEN_TPS = 1u << 18         /* gen_tps_gauge: generated tokens/s as the runtime computes it */
};

/* Names kept per list; more are counted in the n*_total fields but not stored (and, not being stored,
 * repeats of them cannot be recognized: past RS_MAX_NAMES a total may count a name twice). */
#define RS_MAX_NAMES 16
#define RS_NAME_MAX 128 /* bytes per name, NUL included; longer names are truncated */
#define RS_HIST_MAX 64  /* histogram buckets kept; past that the highest one (+Inf) replaces the one below */

/* A histogram snapshot with Prometheus semantics: le[] ascending upper bounds (the last may be +Inf) and
 * cum[] cumulative counts, summed over every series of the family (ranks, models). */
struct rs_hist {
  int n;
  double le[RS_HIST_MAX];
  double cum[RS_HIST_MAX];
  double sum, count;
};

/* The normalized state of one runtime instance. Counters are cumulative since the runtime started. */
struct runtime_state {
  unsigned have;                      /* RS_* bits */
  double waiting, running;            /* requests */
  double kv_usage;                    /* 0..1 of the KV cache (or of the token budget, TGI) in use */
  int64_t kv_capacity_tokens;         /* KV cache capacity in tokens */
  int64_t block_size;                 /* KV block (page) size in tokens; 0 when unknown */
  double prefix_hit_rate;             /* 0..1 */
  double prefix_queries, prefix_hits; /* counters, tokens */
  double prompt_tokens_total, generation_tokens_total; /* counters */
  double prompt_tps_gauge, gen_tps_gauge;              /* tokens/s as the runtime reports them */
  double queue_time_s_total, queued_requests_total;    /* counters: mean queue time = delta / delta */
  struct rs_hist ttft, itl;                            /* seconds */
  int64_t vram_bytes;                                  /* GPU memory the loaded models use (Ollama) */
  int64_t max_seq_tokens;     /* per-request token limit (TGI max_total_tokens, llama.cpp n_ctx per slot) */
  bool healthy, loading;      /* from the health endpoint: 2xx, or 503 while the model loads (llama.cpp) */
  int max_lora;               /* adapters that fit at once (vLLM max_lora); 0 when unknown */
  int nmodels, nmodels_total; /* stored / seen */
  int navailable, navailable_total;
  int nlora, nlora_total;
  char models[RS_MAX_NAMES][RS_NAME_MAX];
  char available[RS_MAX_NAMES][RS_NAME_MAX];
  char lora[RS_MAX_NAMES][RS_NAME_MAX]; /* LoRA adapters running or waiting */
};

/* Which response an endpoint gives; runtime_parse dispatches on it. */
enum rt_endpoint_id {
  RT_EP_METRICS,      /* GET /metrics: Prometheus text */
  RT_EP_HEALTH,       /* GET /health (or /v2/health/ready, /): the status code is what counts */
  RT_EP_MODELS,       /* GET /v1/models: OpenAI model list */
  RT_EP_TGI_INFO,     /* GET /info */
  RT_EP_SLOTS,        /* GET /slots (llama.cpp) */
  RT_EP_TRITON_INDEX, /* POST /v2/repository/index */
  RT_EP_OLLAMA_PS,    /* GET /api/ps */
  RT_EP_OLLAMA_TAGS   /* GET /api/tags */
};

/* One request to make. Strings are static. body is NULL for GET. optional: a failure of this endpoint leaves
 * its fields unknown but does not fail the scrape (e.g. /slots needs llama.cpp's --slots). */
struct rt_endpoint {
  enum rt_endpoint_id id;
  const char *method, *path, *body;
  bool optional;
};

/* runtime_endpoints sets *eps to a static table of what to fetch for kind k and returns its length
 * (0 and *eps = NULL for an unknown kind). Fetch them in order: later parses may use earlier results
 * (TGI's /info token budget complements its /metrics). */
int runtime_endpoints(enum runtime_kind k, const struct rt_endpoint **eps);

/* runtime_state_init zeroes st. Call it once per scrape before the runtime_parse calls. */
void runtime_state_init(struct runtime_state *st);

/* runtime_parse merges the response of endpoint ep (HTTP status, body[0..len), no NUL needed) of a runtime
 * of kind k into st. body is only read during the call. For RT_EP_HEALTH only the status matters.
 * Returns 0; IM_EPARSE for a malformed body (st keeps what earlier endpoints filled, and nothing of this
 * one); -EPROTO for a non-2xx status on a data endpoint; -EINVAL for an endpoint k does not have. */
int runtime_parse(enum runtime_kind k, enum rt_endpoint_id ep, int status, const char *body, size_t len,
                  struct runtime_state *st);

/* Per-endpoint parsers (what runtime_parse calls); same contract as runtime_parse. Exposed for tests and
 * fuzzing. The metrics parsers fill only what that runtime's /metrics has, and return -ENOENT (st
 * unchanged) when the text holds no family of that runtime at all: the URL is not that kind. */
int adapter_vllm_metrics(const char *text, size_t len, struct runtime_state *st);
int adapter_sglang_metrics(const char *text, size_t len, struct runtime_state *st);
int adapter_tgi_metrics(const char *text, size_t len, struct runtime_state *st);
int adapter_llamacpp_metrics(const char *text, size_t len, struct runtime_state *st);
int adapter_triton_metrics(const char *text, size_t len, struct runtime_state *st);
int adapter_openai_models(const char *json, size_t len, struct runtime_state *st);
int adapter_tgi_info(const char *json, size_t len, struct runtime_state *st);
int adapter_llamacpp_slots(const char *json, size_t len, struct runtime_state *st);
int adapter_triton_index(const char *json, size_t len, struct runtime_state *st);
int adapter_ollama_ps(const char *json, size_t len, struct runtime_state *st);
int adapter_ollama_tags(const char *json, size_t len, struct runtime_state *st);

/* Rates over the window between two scrapes of the same runtime. */
enum {
  RR_PROMPT_TPS = 1u << 0, /* prompt_tps */
  RR_GEN_TPS = 1u << 6,    /* gen_tps */
  RR_TTFT = 1u << 1,       /* ttft_p50, ttft_p95 (and ttft_count: observations in the window) */
  RR_ITL = 1u << 2,        /* itl_p50, itl_p95 */
  RR_PREFIX = 1u << 3,     /* prefix_hit_rate */
  RR_QUEUE_TIME = 1u << 4, /* queue_time_mean_s */
  RR_RESET = 1u << 5       /* a counter went backwards (the runtime restarted): cur alone was used */
};

struct runtime_rates {
  unsigned have;
  double prompt_tps, gen_tps;            /* tokens/s */
  double ttft_p50, ttft_p95, ttft_count; /* seconds; observations */
  double itl_p50, itl_p95, itl_count;
  double prefix_hit_rate; /* 0..1 over the window from counters; the runtime's own rate if no counters */
  double queue_time_mean_s;
};

/* runtime_rates computes *out from two states of the same runtime taken dt_s > 0 seconds apart (prev may
 * be NULL: then only gauges are used). Counter rates come from deltas; where a runtime has no token counters
 * its own tokens/s gauges are used. Quantiles are interpolated linearly inside the bucket of the histogram
 * delta (like Prometheus histogram_quantile); a quantile falling in the +Inf bucket is the highest finite
 * bound. A window without observations leaves that quantile's bit clear. Returns 0 or -EINVAL (cur or out
 * NULL, dt_s not > 0 when prev is given). */
int runtime_rates(const struct runtime_state *prev, const struct runtime_state *cur, double dt_s,
                  struct runtime_rates *out);

/* rs_hist_quantile estimates quantile q (0..1) of the cumulative histogram h; returns false when h has no
 * observations or no finite bound. */
bool rs_hist_quantile(const struct rs_hist *h, double q, double *out);

/* Detection: probes that runtime_detect understands, tried in order; the first match wins. */
struct rt_probe {
  const char *method, *path, *body;
};

/* runtime_detect_probes sets *probes to a static table and returns its length. */
int runtime_detect_probes(const struct rt_probe **probes);

/* runtime_detect looks at the answer (status, body[0..len)) to probe number i and sets *out when it shows a
 * runtime kind. Returns true on a match. Pure; any body is safe. */
bool runtime_detect(int i, int status, const char *body, size_t len, enum runtime_kind *out);

struct buf;

/* Control: the request that loads or unloads a model or LoRA adapter, where the runtime has one. */
enum rt_control_op { RT_CTL_LOAD_MODEL, RT_CTL_UNLOAD_MODEL, RT_CTL_LOAD_LORA, RT_CTL_UNLOAD_LORA };

/* runtime_control_request builds the request for op on name (lora_path: where a LoRA adapter's weights are,
 * needed for RT_CTL_LOAD_LORA, else ignored). On 0, *method is a static string, path[0..pathcap) the
 * NUL-terminated path and body (caller's, appended to; caller frees) the JSON body.
 *   vLLM   LoRA: POST /v1/load_lora_adapter, /v1/unload_lora_adapter (needs VLLM_ALLOW_RUNTIME_LORA_UPDATING)
 *   SGLang LoRA: POST /load_lora_adapter, /unload_lora_adapter
 *   llama.cpp (router mode) models: POST /models/load, /models/unload {"model":name}
 *   Triton models: POST /v2/repository/models/NAME/load|unload (explicit model control mode)
 *   Ollama models: POST /api/generate {"model":name} loads; with "keep_alive":0 unloads
 * Returns -ENOTSUP when kind k has no such control (TGI has none), -EINVAL for an empty or over-long name,
 * a missing lora_path, or a Triton name that would need escaping in a URL path. */
int runtime_control_request(enum runtime_kind k, enum rt_control_op op, const char *name,
                            const char *lora_path, const char **method, char *path, size_t pathcap,
                            struct buf *body);

/* runtime_state_json appends st (and r, when not NULL) as a JSON object to *out (a struct buf *, see
 * core/buf.h); fields whose bit is clear are null. */
void runtime_state_json(const struct runtime_state *st, const struct runtime_rates *r, enum runtime_kind k,
                        struct buf *out);

#endif
