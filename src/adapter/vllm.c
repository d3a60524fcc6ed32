/* vLLM adapter: metric names and renames of vLLM's /metrics, and the /v1/models list. */
#include "adapter/vllm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* What each recognized series feeds. _NEW/_OLD/_OLDEST are the same quantity under successive vLLM names. */
enum field {
  F_WAITING,
  F_RUNNING,
  F_KV_NEW,
  F_KV_OLD,
  F_PQ_NEW,
  F_PQ_OLD,
  F_PQ_OLDEST,
  F_PH_NEW,
  F_PH_OLD,
  F_PH_OLDEST,
  F_PROMPT,
  F_GEN,
  F_TTFT_SUM,
  F_TTFT_COUNT,
  F_CACHE_CONFIG,
  F_COUNT
};

static const struct {
  const char *name; /* without the "vllm:" prefix */
  enum field field;
} names[] = {
    {"num_requests_waiting", F_WAITING},
    {"num_requests_running", F_RUNNING},
    {"kv_cache_usage_perc", F_KV_NEW},
    {"gpu_cache_usage_perc", F_KV_OLD},
    {"prefix_cache_queries_total", F_PQ_NEW},
    {"gpu_prefix_cache_queries_total", F_PQ_OLD},
    {"gpu_prefix_cache_queries", F_PQ_OLDEST},
    {"prefix_cache_hits_total", F_PH_NEW},
    {"gpu_prefix_cache_hits_total", F_PH_OLD},
    {"gpu_prefix_cache_hits", F_PH_OLDEST},
    {"prompt_tokens_total", F_PROMPT},
    {"generation_tokens_total", F_GEN},
    {"time_to_first_token_seconds_sum", F_TTFT_SUM},
    {"time_to_first_token_seconds_count", F_TTFT_COUNT},
    {"cache_config_info", F_CACHE_CONFIG},
};

struct acc {
  double sum;
  int n;
};

struct scan {
  struct acc acc[F_COUNT];
  int64_t block_size, num_gpu_blocks;
  bool have_block_size, have_blocks;
};

/* label_i64 reads a label holding a positive decimal integer (the cache_config_info values are strings). */
static bool label_i64(const struct prom_sample *s, const char *name, int64_t *out) {
  struct slice v;
  uint64_t u;
  if (!prom_label_get(s, name, &v) || slice_to_u64(slice_trim(v), &u) < 0) return false;
  if (u == 0 || u > (uint64_t)INT64_MAX) return false;
  *out = (int64_t)u;
  return true;
}

static void cache_config(struct scan *sc, const struct prom_sample *s) {
  int64_t v;
  if (!sc->have_block_size && label_i64(s, "block_size", &v)) {
    sc->block_size = v;
    sc->have_block_size = true;
  }
  if (label_i64(s, "num_gpu_blocks", &v)) {
    /* one series per data-parallel rank: capacity adds up (saturating) */
    sc->num_gpu_blocks = v > INT64_MAX - sc->num_gpu_blocks ? INT64_MAX : sc->num_gpu_blocks + v;
    sc->have_blocks = true;
  }
}

static int sample_cb(const struct prom_sample *s, void *arg) {
  struct scan *sc = arg;
  static const size_t plen = sizeof "vllm:" - 1;
  if (!slice_starts(s->name, "vllm:")) return 0;
  struct slice rest = slice_make(s->name.base + plen, s->name.len - plen);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!slice_eqz(rest, names[i].name)) continue;
    if (names[i].field == F_CACHE_CONFIG) {
      cache_config(sc, s);
    } else if (isfinite(s->value)) {
      sc->acc[names[i].field].sum += s->value;
      sc->acc[names[i].field].n++;
    }
    break;
  }
  return 0;
}

/* pick returns the first accumulator in fields[0..n) that saw a sample, or NULL. */
static const struct acc *pick(const struct scan *sc, const enum field *fields, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (sc->acc[fields[i]].n > 0) return &sc->acc[fields[i]];
  return NULL;
}

int vllm_parse_metrics(const char *text, size_t len, struct runtime_metrics *out, struct prom_error *err) {
  static const enum field kv[] = {F_KV_NEW, F_KV_OLD};
  static const enum field pq[] = {F_PQ_NEW, F_PQ_OLD, F_PQ_OLDEST};
  static const enum field ph[] = {F_PH_NEW, F_PH_OLD, F_PH_OLDEST};
  static const enum field f_waiting = F_WAITING, f_running = F_RUNNING, f_prompt = F_PROMPT, f_gen = F_GEN,
                          f_ttft_sum = F_TTFT_SUM, f_ttft_count = F_TTFT_COUNT;
  struct scan sc;
  const struct acc *a, *b;
  memset(out, 0, sizeof *out);
  memset(&sc, 0, sizeof sc);
  int rc = prom_parse(text, len, sample_cb, &sc, err);
  if (rc) return rc;

  if ((a = pick(&sc, &f_waiting, 1))) out->waiting = a->sum, out->have |= RT_HAVE_WAITING;
  if ((a = pick(&sc, &f_running, 1))) out->running = a->sum, out->have |= RT_HAVE_RUNNING;
  if ((a = pick(&sc, kv, 2))) out->kv_usage = a->sum / a->n, out->have |= RT_HAVE_KV;
  a = pick(&sc, pq, 3);
  b = pick(&sc, ph, 3);
  if (a) out->prefix_queries = a->sum;
  if (b) out->prefix_hits = b->sum;
  if (a && b) out->have |= RT_HAVE_PREFIX;
  a = pick(&sc, &f_prompt, 1);
  b = pick(&sc, &f_gen, 1);
  if (a) out->prompt_tokens = a->sum;
  if (b) out->generation_tokens = b->sum;
  if (a && b) out->have |= RT_HAVE_TOKENS;
  a = pick(&sc, &f_ttft_sum, 1);
  b = pick(&sc, &f_ttft_count, 1);
  if (a) out->ttft_sum = a->sum;
  if (b) out->ttft_count = b->sum;
  if (a && b) out->have |= RT_HAVE_TTFT;
  if (sc.have_block_size) out->block_size = sc.block_size;
  if (sc.have_blocks) out->num_gpu_blocks = sc.num_gpu_blocks;
  if (sc.have_block_size && sc.have_blocks) out->have |= RT_HAVE_CACHE_CONFIG;
  return 0;
}
