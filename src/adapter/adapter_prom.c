/* Runtime adapters' /metrics parsers: vLLM, SGLang, TGI, llama.cpp and Triton names onto runtime_state. */
#include <math.h>
#include <string.h>

#include "adapter/adapter_int.h"
#include "adapter/prom.h"
#include "adapter/vllm.h"
#include "core/err.h"

#define MAX_FIELDS 16
#define MAX_HISTS 4

/* One scalar family and the accumulator slot it feeds. */
struct fam {
  const char *name;
  int field;
};

/* How series of one field combine: summed (data-parallel ranks, models), except series that carry a
 * tp_rank label when tp_max is set, which fold by max (see adapter_sglang_metrics). */
struct acc {
  double sum, max;
  int n, ntp;
};

struct scan {
  const char *prefix;     /* every family of this runtime starts with it */
  const struct fam *fams; /* scalar families */
  size_t nfams;
  const char *const *hists; /* histogram base names, MAX_HISTS at most */
  size_t nhists;
  const char *model_label; /* label naming the model, or NULL */
  bool tp_max;
  /* special: a family that needs its labels (info gauges); returns true when it consumed the sample */
  bool (*special)(struct scan *sc, const struct prom_sample *s);
  struct acc acc[MAX_FIELDS];
  struct rs_hist hist[MAX_HISTS];
  bool hist_seen[MAX_HISTS];
  bool seen;                /* a family with prefix was seen */
  struct runtime_state *st; /* the working copy */
  /* special-family results */
  int64_t block_size, blocks;
  double lora_ts;
  bool have_lora;
};

static bool ends_with(struct slice s, const char *suf, struct slice *base) {
  size_t n = strlen(suf);
  if (s.len < n || memcmp(s.base + s.len - n, suf, n) != 0) return false;
  *base = slice_make(s.base, s.len - n);
  return true;
}

static bool hist_sample(struct scan *sc, const struct prom_sample *s) {
  static const char *const sufs[] = {"_bucket", "_sum", "_count"};
  for (size_t k = 0; k < 3; k++) {
    struct slice base;
    if (!ends_with(s->name, sufs[k], &base)) continue;
    for (size_t i = 0; i < sc->nhists; i++) {
      if (!slice_eqz(base, sc->hists[i])) continue;
      struct rs_hist *h = &sc->hist[i];
      if (!isfinite(s->value)) return true;
      sc->hist_seen[i] = true;
      if (k == 0) {
        struct slice le;
        double b;
        if (prom_label_get(s, "le", &le) && slice_to_double(slice_trim(le), &b) == 0)
          adapter_hist_add(h, b, s->value);
      } else if (k == 1) {
        h->sum += s->value;
      } else {
        h->count += s->value;
      }
      return true;
    }
  }
  return false;
}

static int scan_cb(const struct prom_sample *s, void *arg) {
  struct scan *sc = arg;
  if (!slice_starts(s->name, sc->prefix)) return 0;
  sc->seen = true;
  struct slice base;
  if (ends_with(s->name, "_created", &base)) return 0; /* creation timestamps of counters, not values */
  if (sc->model_label) {
    struct slice m;
    char buf[RS_NAME_MAX];
    if (prom_label_get(s, sc->model_label, &m)) {
      prom_label_unescape(m, buf, sizeof buf);
      adapter_add_name(sc->st, ADAPTER_MODELS, slice_cstr(buf));
    }
  }
  if (sc->special && sc->special(sc, s)) return 0;
  if (hist_sample(sc, s)) return 0;
  for (size_t i = 0; i < sc->nfams; i++) {
    if (!slice_eqz(s->name, sc->fams[i].name)) continue;
    if (!isfinite(s->value)) return 0;
    struct acc *a = &sc->acc[sc->fams[i].field];
    struct slice tp;
    if (sc->tp_max && prom_label_get(s, "tp_rank", &tp)) {
      if (a->ntp == 0 || s->value > a->max) a->max = s->value;
      a->ntp++;
    } else {
      a->sum += s->value;
      a->n++;
    }
    return 0;
  }
  return 0;
}

/* get reads field f: the sum of its untagged series, else the max over tensor-parallel ranks. */
static bool get(const struct scan *sc, int f, double *v) {
  const struct acc *a = &sc->acc[f];
  if (a->n > 0) return *v = a->sum, true;
  if (a->ntp > 0) return *v = a->max, true;
  return false;
}

/* run parses text into a copy of *st and commits it only on success, so a bad body changes nothing. */
static int run(struct scan *sc, const char *text, size_t len, struct runtime_state *st,
               void (*post)(struct scan *sc, struct runtime_state *w)) {
  struct runtime_state w = *st;
  sc->st = &w;
  int rc = prom_parse(text, len, scan_cb, sc, NULL);
  if (rc != 0) return rc < 0 ? rc : IM_EPARSE;
  if (!sc->seen) return -ENOENT;
  post(sc, &w);
  *st = w;
  return 0;
}

static void set_hist(struct scan *sc, int i, struct runtime_state *w, struct rs_hist *dst, unsigned bit) {
  if (!sc->hist_seen[i] || sc->hist[i].n == 0) return;
  *dst = sc->hist[i];
  w->have |= bit;
}

static int64_t mul_sat(int64_t a, int64_t b) { return a > 0 && b > INT64_MAX / a ? INT64_MAX : a * b; }

/* label_pos reads a label holding a positive decimal integer. */
static bool label_pos(const struct prom_sample *s, const char *name, int64_t *out) {
  struct slice v;
  uint64_t u;
  if (!prom_label_get(s, name, &v) || slice_to_u64(slice_trim(v), &u) < 0 || u == 0 ||
      u > (uint64_t)INT64_MAX)
    return false;
  *out = (int64_t)u;
  return true;
}

/* add_csv adds each comma-separated name of a (raw) label value to the LoRA list. */
static void add_csv(struct runtime_state *w, struct slice raw) {
  char buf[4096];
  size_t n = prom_label_unescape(raw, buf, sizeof buf), start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && buf[i] != ',') continue;
    struct slice one = slice_trim(slice_make(buf + start, i - start));
    if (one.len) adapter_add_name(w, ADAPTER_LORA, one);
    start = i + 1;
  }
}

/* vLLM -------------------------------------------------------------------------------------------------- */

enum { VH_TTFT, VH_ITL, VH_TPOT };

/* vllm:lora_requests_info is a gauge whose value is the time of the last change; one series per distinct
 * label set may linger, so the newest (largest value) is the current one. */
static bool vllm_special(struct scan *sc, const struct prom_sample *s) {
  if (!slice_eqz(s->name, "vllm:lora_requests_info")) return slice_eqz(s->name, "vllm:cache_config_info");
  if (!isfinite(s->value) || (sc->have_lora && s->value < sc->lora_ts)) return true;
  struct runtime_state *w = sc->st;
  struct slice v;
  int64_t max_lora = 0;
  w->nlora = w->nlora_total = 0;
  sc->have_lora = true;
  sc->lora_ts = s->value;
  w->have |= RS_LORA;
  w->max_lora = label_pos(s, "max_lora", &max_lora) && max_lora < 1 << 20 ? (int)max_lora : 0;
  if (prom_label_get(s, "running_lora_adapters", &v)) add_csv(w, v);
  if (prom_label_get(s, "waiting_lora_adapters", &v)) add_csv(w, v);
  return true;
}

static void vllm_post(struct scan *sc, struct runtime_state *w) {
  set_hist(sc, VH_TTFT, w, &w->ttft, RS_TTFT);
  /* inter_token_latency_seconds replaced time_per_output_token_seconds (v1); the new name wins */
  set_hist(sc, VH_ITL, w, &w->itl, RS_ITL);
  if (!(w->have & RS_ITL)) set_hist(sc, VH_TPOT, w, &w->itl, RS_ITL);
}

int adapter_vllm_metrics(const char *text, size_t len, struct runtime_state *st) {
  static const char *const hists[] = {"vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                                      "vllm:time_per_output_token_seconds"};
  struct runtime_metrics m;
  struct scan sc;
  memset(&sc, 0, sizeof sc);
  sc.prefix = "vllm:";
  sc.hists = hists;
  sc.nhists = 3;
  sc.model_label = "model_name";
  sc.special = vllm_special;
  /* the scalar fields, renames and rank sums are vllm_parse_metrics' job; this pass adds what it lacks */
  int rc = vllm_parse_metrics(text, len, &m, NULL);
  if (rc) return rc;
  rc = run(&sc, text, len, st, vllm_post);
  if (rc) return rc;
  if (m.have & RT_HAVE_WAITING) st->waiting = m.waiting, st->have |= RS_WAITING;
  if (m.have & RT_HAVE_RUNNING) st->running = m.running, st->have |= RS_RUNNING;
  if (m.have & RT_HAVE_KV) st->kv_usage = m.kv_usage, st->have |= RS_KV_USAGE;
  if (m.have & RT_HAVE_PREFIX) {
    st->prefix_queries = m.prefix_queries, st->prefix_hits = m.prefix_hits;
    st->have |= RS_PREFIX_COUNTERS;
    if (m.prefix_queries > 0)
      st->prefix_hit_rate = m.prefix_hits / m.prefix_queries, st->have |= RS_PREFIX_RATE;
  }
  /* runtime_metrics flags the pair only; a lone nonzero counter still counts */
  if (m.prompt_tokens > 0 || (m.have & RT_HAVE_TOKENS))
    st->prompt_tokens_total = m.prompt_tokens, st->have |= RS_PROMPT_TOKENS;
  if (m.generation_tokens > 0 || (m.have & RT_HAVE_TOKENS))
    st->generation_tokens_total = m.generation_tokens, st->have |= RS_GEN_TOKENS;
  if (m.have & RT_HAVE_CACHE_CONFIG) {
    st->block_size = m.block_size;
    st->kv_capacity_tokens = mul_sat(m.block_size, m.num_gpu_blocks);
    st->have |= RS_KV_CAPACITY;
  }
  return 0;
}

/* SGLang ------------------------------------------------------------------------------------------------ */

enum { SG_QUEUE, SG_RUNNING, SG_USAGE, SG_USED, SG_MAXTOK, SG_HIT, SG_PROMPT, SG_GEN, SG_CACHED, SG_GENTP };
enum { SH_TTFT, SH_ITL, SH_TPOT };

static bool sglang_special(struct scan *sc, const struct prom_sample *s) {
  if (!slice_eqz(s->name, "sglang:cache_config_info")) return false;
  int64_t v;
  if (!sc->block_size && label_pos(s, "page_size", &v)) sc->block_size = v;
  /* tensor-parallel ranks share one KV pool description: keep the largest, never add */
  if (label_pos(s, "num_pages", &v) && v > sc->blocks) sc->blocks = v;
  return true;
}

static void sglang_post(struct scan *sc, struct runtime_state *w) {
  double v, u, m;
  if (get(sc, SG_QUEUE, &v)) w->waiting = v, w->have |= RS_WAITING;
  if (get(sc, SG_RUNNING, &v)) w->running = v, w->have |= RS_RUNNING;
  if (get(sc, SG_MAXTOK, &v) && v >= 1 && v < 9e18)
    w->kv_capacity_tokens = (int64_t)v, w->have |= RS_KV_CAPACITY;
  if (sc->block_size) w->block_size = sc->block_size;
  if (!(w->have & RS_KV_CAPACITY) && sc->block_size && sc->blocks)
    w->kv_capacity_tokens = mul_sat(sc->block_size, sc->blocks), w->have |= RS_KV_CAPACITY;
  if (get(sc, SG_USAGE, &v))
    w->kv_usage = v, w->have |= RS_KV_USAGE;
  else if (get(sc, SG_USED, &u) && (w->have & RS_KV_CAPACITY) && w->kv_capacity_tokens > 0)
    w->kv_usage = u / (double)w->kv_capacity_tokens, w->have |= RS_KV_USAGE;
  if (get(sc, SG_HIT, &v)) w->prefix_hit_rate = v, w->have |= RS_PREFIX_RATE;
  if (get(sc, SG_PROMPT, &v)) w->prompt_tokens_total = v, w->have |= RS_PROMPT_TOKENS;
  if (get(sc, SG_GEN, &v)) w->generation_tokens_total = v, w->have |= RS_GEN_TOKENS;
  /* cached_tokens_total counts prompt tokens served from the radix cache: hits over prompt tokens */
  if (get(sc, SG_CACHED, &m) && get(sc, SG_PROMPT, &v))
    w->prefix_hits = m, w->prefix_queries = v, w->have |= RS_PREFIX_COUNTERS;
  if (get(sc, SG_GENTP, &v)) w->gen_tps_gauge = v, w->have |= RS_GEN_TPS;
  set_hist(sc, SH_TTFT, w, &w->ttft, RS_TTFT);
  set_hist(sc, SH_ITL, w, &w->itl, RS_ITL);
  if (!(w->have & RS_ITL)) set_hist(sc, SH_TPOT, w, &w->itl, RS_ITL);
}

int adapter_sglang_metrics(const char *text, size_t len, struct runtime_state *st) {
  static const struct fam fams[] = {
      {"sglang:num_queue_reqs", SG_QUEUE},        {"sglang:num_running_reqs", SG_RUNNING},
      {"sglang:token_usage", SG_USAGE},           {"sglang:num_used_tokens", SG_USED},
      {"sglang:max_total_num_tokens", SG_MAXTOK}, {"sglang:cache_hit_rate", SG_HIT},
      {"sglang:prompt_tokens_total", SG_PROMPT},  {"sglang:generation_tokens_total", SG_GEN},
      {"sglang:cached_tokens_total", SG_CACHED},  {"sglang:gen_throughput", SG_GENTP},
  };
  static const char *const hists[] = {"sglang:time_to_first_token_seconds",
                                      "sglang:inter_token_latency_seconds",
                                      "sglang:time_per_output_token_seconds"};
  struct scan sc;
  memset(&sc, 0, sizeof sc);
  sc.prefix = "sglang:";
  sc.fams = fams;
  sc.nfams = sizeof fams / sizeof fams[0];
  sc.hists = hists;
  sc.nhists = 3;
  sc.model_label = "model_name";
  /* SGLang's scheduler runs once per tensor-parallel rank and every rank reports the same batch (the ranks
   * split each layer, not the requests): summing tp_rank series would count each request tp_size times.
   * Ranks agree, so take the max (robust to one rank lagging a scrape). */
  sc.tp_max = true;
  sc.special = sglang_special;
  return run(&sc, text, len, st, sglang_post);
}

/* TGI --------------------------------------------------------------------------------------------------- */

enum { TG_QUEUE, TG_BATCH, TG_CURTOK, TG_MAXTOK, TG_INSUM, TG_GENSUM, TG_QSUM, TG_QCOUNT };
enum { TH_TPT };

static void tgi_post(struct scan *sc, struct runtime_state *w) {
  double v, cur;
  if (get(sc, TG_QUEUE, &v)) w->waiting = v, w->have |= RS_WAITING;
  if (get(sc, TG_BATCH, &v)) w->running = v, w->have |= RS_RUNNING;
  /* TGI has no KV gauge; its token budget is the same thing: the tokens the running batch may reach over
   * the most the batch may hold (gauge, else /info max_batch_total_tokens parsed before) */
  if (get(sc, TG_MAXTOK, &v) && v >= 1 && v < 9e18)
    w->kv_capacity_tokens = (int64_t)v, w->have |= RS_KV_CAPACITY;
  if (get(sc, TG_CURTOK, &cur) && (w->have & RS_KV_CAPACITY) && w->kv_capacity_tokens > 0)
    w->kv_usage = cur / (double)w->kv_capacity_tokens, w->have |= RS_KV_USAGE;
  if (get(sc, TG_INSUM, &v)) w->prompt_tokens_total = v, w->have |= RS_PROMPT_TOKENS;
  if (get(sc, TG_GENSUM, &v)) w->generation_tokens_total = v, w->have |= RS_GEN_TOKENS;
  if (get(sc, TG_QSUM, &v) && get(sc, TG_QCOUNT, &cur))
    w->queue_time_s_total = v, w->queued_requests_total = cur, w->have |= RS_QUEUE_TIME;
  set_hist(sc, TH_TPT, w, &w->itl, RS_ITL);
}

int adapter_tgi_metrics(const char *text, size_t len, struct runtime_state *st) {
  static const struct fam fams[] = {
      {"tgi_queue_size", TG_QUEUE},
      {"tgi_batch_current_size", TG_BATCH},
      {"tgi_batch_current_max_tokens", TG_CURTOK},
      {"tgi_batch_max_total_tokens", TG_MAXTOK},
      {"tgi_request_input_length_sum", TG_INSUM},      /* prompt tokens of finished requests */
      {"tgi_request_generated_tokens_sum", TG_GENSUM}, /* generated tokens of finished requests */
      {"tgi_request_queue_duration_sum", TG_QSUM},     /* seconds */
      {"tgi_request_queue_duration_count", TG_QCOUNT},
  };
  static const char *const hists[] = {"tgi_request_mean_time_per_token_duration"};
  struct scan sc;
  memset(&sc, 0, sizeof sc);
  sc.prefix = "tgi_";
  sc.fams = fams;
  sc.nfams = sizeof fams / sizeof fams[0];
  sc.hists = hists;
  sc.nhists = 1;
  return run(&sc, text, len, st, tgi_post);
}

/* llama.cpp --------------------------------------------------------------------------------------------- */

enum { LC_PROC, LC_DEFER, LC_PROMPT, LC_PRED, LC_PTPS, LC_GTPS, LC_KVRATIO };

static void llamacpp_post(struct scan *sc, struct runtime_state *w) {
  double v;
  if (get(sc, LC_PROC, &v)) w->running = v, w->have |= RS_RUNNING;
  if (get(sc, LC_DEFER, &v)) w->waiting = v, w->have |= RS_WAITING;
  if (get(sc, LC_PROMPT, &v)) w->prompt_tokens_total = v, w->have |= RS_PROMPT_TOKENS;
  if (get(sc, LC_PRED, &v)) w->generation_tokens_total = v, w->have |= RS_GEN_TOKENS;
  if (get(sc, LC_PTPS, &v)) w->prompt_tps_gauge = v, w->have |= RS_PROMPT_TPS;
  if (get(sc, LC_GTPS, &v)) w->gen_tps_gauge = v, w->have |= RS_GEN_TPS;
  /* builds before 2025 still export kv_cache_usage_ratio; /slots (parsed later) refines it */
  if (get(sc, LC_KVRATIO, &v)) w->kv_usage = v, w->have |= RS_KV_USAGE;
}

int adapter_llamacpp_metrics(const char *text, size_t len, struct runtime_state *st) {
  static const struct fam fams[] = {
      {"llamacpp:requests_processing", LC_PROC},     {"llamacpp:requests_deferred", LC_DEFER},
      {"llamacpp:prompt_tokens_total", LC_PROMPT},   {"llamacpp:tokens_predicted_total", LC_PRED},
      {"llamacpp:prompt_tokens_seconds", LC_PTPS},   {"llamacpp:predicted_tokens_seconds", LC_GTPS},
      {"llamacpp:kv_cache_usage_ratio", LC_KVRATIO},
  };
  struct scan sc;
  memset(&sc, 0, sizeof sc);
  sc.prefix = "llamacpp:";
  sc.fams = fams;
  sc.nfams = sizeof fams / sizeof fams[0];
  return run(&sc, text, len, st, llamacpp_post);
}

/* Triton ------------------------------------------------------------------------------------------------ */

enum { TR_PENDING, TR_QUS, TR_SUCCESS, TR_VRAM };

static void triton_post(struct scan *sc, struct runtime_state *w) {
  double v, n;
  if (get(sc, TR_PENDING, &v)) w->waiting = v, w->have |= RS_WAITING;
  /* cumulative queue time over successful requests: mean queue time over a window = delta / delta */
  if (get(sc, TR_QUS, &v) && get(sc, TR_SUCCESS, &n))
    w->queue_time_s_total = v / 1e6, w->queued_requests_total = n, w->have |= RS_QUEUE_TIME;
  if (get(sc, TR_VRAM, &v) && v >= 0 && v < 9e18) w->vram_bytes = (int64_t)v, w->have |= RS_VRAM;
}

int adapter_triton_metrics(const char *text, size_t len, struct runtime_state *st) {
  static const struct fam fams[] = {
      {"nv_inference_pending_request_count", TR_PENDING},
      {"nv_inference_queue_duration_us", TR_QUS},
      {"nv_inference_request_success", TR_SUCCESS},
      {"nv_gpu_memory_used_bytes", TR_VRAM},
  };
  struct scan sc;
  memset(&sc, 0, sizeof sc);
  sc.prefix = "nv_";
  sc.fams = fams;
  sc.nfams = sizeof fams / sizeof fams[0];
  sc.model_label = "model"; /* Triton exports per-model series only for loaded models */
  return run(&sc, text, len, st, triton_post);
}
