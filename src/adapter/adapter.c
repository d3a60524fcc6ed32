/* Runtime adapter interface: kinds, endpoint tables, dispatch, window rates and quantiles, detection. */
#include "adapter/adapter.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "adapter/adapter_int.h"
#include "adapter/prom.h"
#include "core/buf.h"
#include "core/err.h"

static const char *const kind_names[RT_KIND_COUNT] = {"vllm",     "sglang", "tgi",
                                                      "llamacpp", "triton", "ollama"};

int runtime_kind_parse(const char *name, enum runtime_kind *out) {
  if (!name) return -EINVAL;
  if (strcasecmp(name, "llama.cpp") == 0 || strcasecmp(name, "llama-cpp") == 0) {
    *out = RT_KIND_LLAMACPP;
    return 0;
  }
  for (int i = 0; i < RT_KIND_COUNT; i++)
    if (strcasecmp(name, kind_names[i]) == 0) {
      *out = (enum runtime_kind)i;
      return 0;
    }
  return -EINVAL;
}

const char *runtime_kind_name(enum runtime_kind k) {
  return (unsigned)k < RT_KIND_COUNT ? kind_names[k] : "unknown";
}

/* What each kind exposes (fixtures README). Health first so "loading" explains why the rest failed. */
static const struct rt_endpoint eps_vllm[] = {
    {RT_EP_HEALTH, "GET", "/health", NULL, true},
    {RT_EP_METRICS, "GET", "/metrics", NULL, false},
    {RT_EP_MODELS, "GET", "/v1/models", NULL, true},
};
static const struct rt_endpoint eps_sglang[] = {
    {RT_EP_HEALTH, "GET", "/health", NULL, true},
    {RT_EP_METRICS, "GET", "/metrics", NULL, false},
    {RT_EP_MODELS, "GET", "/v1/models", NULL, true},
};
/* /info before /metrics: its max_batch_total_tokens is the budget when the gauge is missing. */
static const struct rt_endpoint eps_tgi[] = {
    {RT_EP_HEALTH, "GET", "/health", NULL, true},
    {RT_EP_TGI_INFO, "GET", "/info", NULL, true},
    {RT_EP_METRICS, "GET", "/metrics", NULL, false},
};
/* llama-server needs --metrics and --slots for those two; /health answers 503 while the model loads. */
static const struct rt_endpoint eps_llamacpp[] = {
    {RT_EP_HEALTH, "GET", "/health", NULL, false},
    {RT_EP_METRICS, "GET", "/metrics", NULL, true},
    {RT_EP_SLOTS, "GET", "/slots", NULL, true},
    {RT_EP_MODELS, "GET", "/v1/models", NULL, true},
};
/* Triton serves /metrics on its own port (8002 by default): optional here, point a second probe at it. */
static const struct rt_endpoint eps_triton[] = {
    {RT_EP_HEALTH, "GET", "/v2/health/ready", NULL, true},
    {RT_EP_METRICS, "GET", "/metrics", NULL, true},
    {RT_EP_TRITON_INDEX, "POST", "/v2/repository/index", "{}",
     true}, /* after /metrics: it says what is READY */
};
static const struct rt_endpoint eps_ollama[] = {
    {RT_EP_HEALTH, "GET", "/", NULL, true},
    {RT_EP_OLLAMA_PS, "GET", "/api/ps", NULL, false},
    {RT_EP_OLLAMA_TAGS, "GET", "/api/tags", NULL, true},
};

int runtime_endpoints(enum runtime_kind k, const struct rt_endpoint **eps) {
#define EPS(a) (*eps = a, (int)(sizeof a / sizeof a[0]))
  switch (k) {
  case RT_KIND_VLLM: return EPS(eps_vllm);
  case RT_KIND_SGLANG: return EPS(eps_sglang);
  case RT_KIND_TGI: return EPS(eps_tgi);
  case RT_KIND_LLAMACPP: return EPS(eps_llamacpp);
  case RT_KIND_TRITON: return EPS(eps_triton);
  case RT_KIND_OLLAMA: return EPS(eps_ollama);
  }
#undef EPS
  *eps = NULL;
  return 0;
}

void runtime_state_init(struct runtime_state *st) { memset(st, 0, sizeof *st); }

static bool kind_has(enum runtime_kind k, enum rt_endpoint_id ep) {
  const struct rt_endpoint *eps;
  int n = runtime_endpoints(k, &eps);
  for (int i = 0; i < n; i++)
    if (eps[i].id == ep) return true;
  return false;
}

int runtime_parse(enum runtime_kind k, enum rt_endpoint_id ep, int status, const char *body, size_t len,
                  struct runtime_state *st) {
  if (!st || !kind_has(k, ep)) return -EINVAL;
  if (!body) len = 0, body = "";
  if (ep == RT_EP_HEALTH) {
    st->healthy = status >= 200 && status < 300;
    st->loading = k == RT_KIND_LLAMACPP && status == 503;
    st->have |= RS_HEALTH;
    return 0;
  }
  if (status < 200 || status >= 300) return -EPROTO;
  switch (ep) {
  case RT_EP_METRICS:
    switch (k) {
    case RT_KIND_VLLM: return adapter_vllm_metrics(body, len, st);
    case RT_KIND_SGLANG: return adapter_sglang_metrics(body, len, st);
    case RT_KIND_TGI: return adapter_tgi_metrics(body, len, st);
    case RT_KIND_LLAMACPP: return adapter_llamacpp_metrics(body, len, st);
    case RT_KIND_TRITON: return adapter_triton_metrics(body, len, st);
    case RT_KIND_OLLAMA: return -EINVAL;
    }
    return -EINVAL;
  case RT_EP_MODELS: return adapter_openai_models(body, len, st);
  case RT_EP_TGI_INFO: return adapter_tgi_info(body, len, st);
  case RT_EP_SLOTS: return adapter_llamacpp_slots(body, len, st);
  case RT_EP_TRITON_INDEX: return adapter_triton_index(body, len, st);
  case RT_EP_OLLAMA_PS: return adapter_ollama_ps(body, len, st);
  case RT_EP_OLLAMA_TAGS: return adapter_ollama_tags(body, len, st);
  case RT_EP_HEALTH: break;
  }
  return -EINVAL;
}

void adapter_add_name(struct runtime_state *st, enum adapter_list l, struct slice name) {
  char(*names)[RS_NAME_MAX];
  int *n, *total;
  unsigned bit;
  switch (l) {
  case ADAPTER_MODELS:
    names = st->models, n = &st->nmodels, total = &st->nmodels_total, bit = RS_MODELS;
    break;
  case ADAPTER_AVAILABLE:
    names = st->available, n = &st->navailable, total = &st->navailable_total, bit = RS_AVAILABLE;
    break;
  default: names = st->lora, n = &st->nlora, total = &st->nlora_total, bit = RS_LORA; break;
  }
  st->have |= bit;
  if (name.len == 0) return;
  size_t keep = name.len < RS_NAME_MAX - 1 ? name.len : RS_NAME_MAX - 1;
  for (int i = 0; i < *n; i++)
    if (strlen(names[i]) == keep && memcmp(names[i], name.base, keep) == 0) return;
  (*total)++;
  if (*n >= RS_MAX_NAMES) return;
  memcpy(names[*n], name.base, keep);
  names[*n][keep] = '\0';
  (*n)++;
}

void adapter_hist_add(struct rs_hist *h, double le, double v) {
  if (isnan(le) || !isfinite(v)) return;
  int i = 0;
  while (i < h->n && h->le[i] < le)
    i++;
  if (i < h->n && h->le[i] == le) {
    h->cum[i] += v;
    return;
  }
  if (h->n >= RS_HIST_MAX) {
    /* Full. Buckets come in ascending order, so this one is above all kept: it replaces the highest, which
     * only coarsens the quantiles, while the top (+Inf: the count of everything) is never lost. */
    if (i < h->n) return;
    h->le[h->n - 1] = le;
    h->cum[h->n - 1] = v;
    return;
  }
  memmove(&h->le[i + 1], &h->le[i], (size_t)(h->n - i) * sizeof h->le[0]);
  memmove(&h->cum[i + 1], &h->cum[i], (size_t)(h->n - i) * sizeof h->cum[0]);
  h->le[i] = le;
  h->cum[i] = v;
  h->n++;
}

bool rs_hist_quantile(const struct rs_hist *h, double q, double *out) {
  if (!h || h->n <= 0 || h->n > RS_HIST_MAX || !(q >= 0 && q <= 1)) return false;
  double total = h->cum[h->n - 1];
  if (!(total > 0) || !isfinite(total)) return false;
  double rank = q * total, prev_cum = 0;
  for (int i = 0; i < h->n; i++) {
    if (h->cum[i] >= rank) {
      if (isinf(h->le[i])) {
        if (i == 0 || isinf(h->le[i - 1])) return false;
        *out = h->le[i - 1]; /* the +Inf bucket has no width: report its lower edge, as Prometheus does */
        return true;
      }
      double lo = i == 0 ? (h->le[0] > 0 ? 0 : h->le[0]) : h->le[i - 1];
      double c = h->cum[i] - prev_cum;
      *out = c > 0 ? lo + (h->le[i] - lo) * (rank - prev_cum) / c : h->le[i];
      return true;
    }
    prev_cum = h->cum[i];
  }
  return false;
}

/* hist_delta sets *d = b - a when both have the same bounds and no bucket went down; otherwise *d = b
 * (everything since the runtime started) and *reset tells a counter went backwards. */
static void hist_delta(const struct rs_hist *a, const struct rs_hist *b, struct rs_hist *d, bool *reset) {
  *d = *b;
  if (!a) return;
  if (a->n != b->n) return;
  for (int i = 0; i < b->n; i++)
    if (a->le[i] != b->le[i]) return;
  for (int i = 0; i < b->n; i++)
    if (b->cum[i] < a->cum[i]) {
      *reset = true;
      return;
    }
  for (int i = 0; i < b->n; i++)
    d->cum[i] = b->cum[i] - a->cum[i];
  d->sum = b->sum - a->sum;
  d->count = b->count - a->count;
}

/* counter_delta: b - a, or b when the counter went backwards (restart). */
static double counter_delta(double a, double b, bool *reset) {
  if (b < a) {
    *reset = true;
    return b;
  }
  return b - a;
}

static void quantiles(const struct rs_hist *prev, const struct rs_hist *cur, bool *reset, double *p50,
                      double *p95, double *count, bool *ok) {
  struct rs_hist d;
  hist_delta(prev, cur, &d, reset);
  *count = d.n ? d.cum[d.n - 1] : 0;
  *ok = rs_hist_quantile(&d, 0.5, p50) && rs_hist_quantile(&d, 0.95, p95);
}

int runtime_rates(const struct runtime_state *prev, const struct runtime_state *cur, double dt_s,
                  struct runtime_rates *out) {
  if (!cur || !out || (prev && !(dt_s > 0))) return -EINVAL;
  memset(out, 0, sizeof *out);
  bool reset = false, ok;
  unsigned both = prev ? prev->have & cur->have : 0;
  if (both & RS_PROMPT_TOKENS) {
    out->prompt_tps = counter_delta(prev->prompt_tokens_total, cur->prompt_tokens_total, &reset) / dt_s;
    out->have |= RR_PROMPT_TPS;
  } else if (cur->have & RS_PROMPT_TPS) {
    out->prompt_tps = cur->prompt_tps_gauge, out->have |= RR_PROMPT_TPS;
  }
  if (both & RS_GEN_TOKENS) {
    out->gen_tps = counter_delta(prev->generation_tokens_total, cur->generation_tokens_total, &reset) / dt_s;
    out->have |= RR_GEN_TPS;
  } else if (cur->have & RS_GEN_TPS) {
    out->gen_tps = cur->gen_tps_gauge, out->have |= RR_GEN_TPS;
  }
  if (cur->have & RS_TTFT) {
    quantiles(both & RS_TTFT ? &prev->ttft : NULL, &cur->ttft, &reset, &out->ttft_p50, &out->ttft_p95,
              &out->ttft_count, &ok);
    if (ok) out->have |= RR_TTFT;
  }
  if (cur->have & RS_ITL) {
    quantiles(both & RS_ITL ? &prev->itl : NULL, &cur->itl, &reset, &out->itl_p50, &out->itl_p95,
              &out->itl_count, &ok);
    if (ok) out->have |= RR_ITL;
  }
  if (both & RS_PREFIX_COUNTERS) {
    double dq = counter_delta(prev->prefix_queries, cur->prefix_queries, &reset);
    double dh = counter_delta(prev->prefix_hits, cur->prefix_hits, &reset);
    if (dq > 0) out->prefix_hit_rate = dh / dq, out->have |= RR_PREFIX;
  }
  /* the runtime's own rate only where it has no counters: an idle window with counters stays unknown */
  if (!(both & RS_PREFIX_COUNTERS) && (cur->have & RS_PREFIX_RATE))
    out->prefix_hit_rate = cur->prefix_hit_rate, out->have |= RR_PREFIX;
  if (both & RS_QUEUE_TIME) {
    double dtime = counter_delta(prev->queue_time_s_total, cur->queue_time_s_total, &reset);
    double dreq = counter_delta(prev->queued_requests_total, cur->queued_requests_total, &reset);
    if (dreq > 0) out->queue_time_mean_s = dtime / dreq, out->have |= RR_QUEUE_TIME;
  }
  if (reset) out->have |= RR_RESET;
  return 0;
}

/* Detection ---------------------------------------------------------------------------------------------- */

static const struct rt_probe probes[] = {
    {"GET", "/metrics", NULL},         /* 0: metric name prefixes say vLLM, SGLang, TGI, llama.cpp, Triton */
    {"GET", "/api/tags", NULL},        /* 1: Ollama */
    {"GET", "/v2/health/ready", NULL}, /* 2: Triton (KServe v2 protocol) */
    {"GET", "/info", NULL},            /* 3: TGI */
    {"GET", "/props", NULL},           /* 4: llama.cpp */
    {"GET", "/slots", NULL},           /* 5: llama.cpp with --slots */
    {"GET", "/get_model_info", NULL},  /* 6: SGLang */
    {"GET", "/v1/models", NULL},       /* 7: vLLM says owned_by "vllm" */
};

int runtime_detect_probes(const struct rt_probe **p) {
  *p = probes;
  return (int)(sizeof probes / sizeof probes[0]);
}

static int detect_cb(const struct prom_sample *s, void *arg) {
  static const struct {
    const char *prefix;
    enum runtime_kind kind;
  } pre[] = {{"vllm:", RT_KIND_VLLM},
             {"sglang:", RT_KIND_SGLANG},
             {"tgi_", RT_KIND_TGI},
             {"llamacpp:", RT_KIND_LLAMACPP},
             {"nv_inference_", RT_KIND_TRITON}};
  (void)arg;
  for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
    if (slice_starts(s->name, pre[i].prefix)) return 1 + (int)pre[i].kind;
  return 0;
}

bool runtime_detect(int i, int status, const char *body, size_t len, enum runtime_kind *out) {
  if (status < 200 || status >= 300) return false;
  if (!body) body = "", len = 0;
  if (i == 0) {
    int rc = prom_parse(body, len, detect_cb, NULL, NULL);
    if (rc > 0 && rc <= RT_KIND_COUNT) {
      *out = (enum runtime_kind)(rc - 1);
      return true;
    }
    return false;
  }
  if (i == 2) {
    *out = RT_KIND_TRITON;
    return true;
  }
  json_error_t jerr;
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  bool hit = false;
  if (!j) return false;
  switch (i) {
  case 1: hit = json_is_array(json_object_get(j, "models")), *out = RT_KIND_OLLAMA; break;
  case 3: hit = json_is_string(json_object_get(j, "model_id")), *out = RT_KIND_TGI; break;
  case 4:
    hit = json_is_object(json_object_get(j, "default_generation_settings")), *out = RT_KIND_LLAMACPP;
    break;
  case 5:
    hit = json_is_array(j) && json_is_integer(json_object_get(json_array_get(j, 0), "n_ctx"));
    *out = RT_KIND_LLAMACPP;
    break;
  case 6: hit = json_is_string(json_object_get(j, "model_path")), *out = RT_KIND_SGLANG; break;
  case 7: {
    const char *o =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "owned_by"));
    hit = o && strcmp(o, "vllm") == 0;
    *out = RT_KIND_VLLM;
    break;
  }
  default: break;
  }
  json_decref(j);
  return hit;
}

/* JSON view ---------------------------------------------------------------------------------------------- */

static void jnum(struct buf *b, const char *k, bool have, double v) {
  buf_printf(b, ",\"%s\":", k);
  if (have && isfinite(v))
    buf_printf(b, "%.10g", v);
  else
    buf_puts(b, "null");
}

static void jlist(struct buf *b, const char *k, bool have, char (*names)[RS_NAME_MAX], int n, int total) {
  buf_printf(b, ",\"%s\":", k);
  if (!have) {
    buf_puts(b, "null");
    return;
  }
  buf_puts(b, "[");
  for (int i = 0; i < n; i++) {
    if (i) buf_puts(b, ",");
    buf_json_str(b, slice_cstr(names[i]));
  }
  buf_puts(b, "]");
  buf_printf(b, ",\"%s_total\":%d", k, total);
}

void runtime_state_json(const struct runtime_state *st, const struct runtime_rates *r, enum runtime_kind k,
                        struct buf *out) {
  unsigned h = st->have;
  buf_puts(out, "{\"runtime\":");
  buf_json_str(out, slice_cstr(runtime_kind_name(k)));
  buf_puts(out, ",\"healthy\":");
  buf_puts(out, !(h & RS_HEALTH) ? "null" : st->healthy ? "true" : "false");
  buf_printf(out, ",\"loading\":%s", st->loading ? "true" : "false");
  jnum(out, "waiting", h & RS_WAITING, st->waiting);
  jnum(out, "running", h & RS_RUNNING, st->running);
  jnum(out, "kv_usage", h & RS_KV_USAGE, st->kv_usage);
  jnum(out, "kv_capacity_tokens", h & RS_KV_CAPACITY, (double)st->kv_capacity_tokens);
  jnum(out, "block_size", st->block_size > 0, (double)st->block_size);
  jnum(out, "prefix_hit_rate", h & RS_PREFIX_RATE, st->prefix_hit_rate);
  jnum(out, "prefix_queries", h & RS_PREFIX_COUNTERS, st->prefix_queries);
  jnum(out, "prefix_hits", h & RS_PREFIX_COUNTERS, st->prefix_hits);
  jnum(out, "prompt_tokens_total", h & RS_PROMPT_TOKENS, st->prompt_tokens_total);
  jnum(out, "generation_tokens_total", h & RS_GEN_TOKENS, st->generation_tokens_total);
  jnum(out, "prompt_tps_gauge", h & RS_PROMPT_TPS, st->prompt_tps_gauge);
  jnum(out, "gen_tps_gauge", h & RS_GEN_TPS, st->gen_tps_gauge);
  jnum(out, "ttft_count", h & RS_TTFT, st->ttft.count);
  jnum(out, "itl_count", h & RS_ITL, st->itl.count);
  jnum(out, "queue_time_s_total", h & RS_QUEUE_TIME, st->queue_time_s_total);
  jnum(out, "queued_requests_total", h & RS_QUEUE_TIME, st->queued_requests_total);
  jnum(out, "vram_bytes", h & RS_VRAM, (double)st->vram_bytes);
  jnum(out, "max_seq_tokens", h & RS_MAX_SEQ, (double)st->max_seq_tokens);
  jnum(out, "max_lora", st->max_lora > 0, st->max_lora);
  jlist(out, "models", h & RS_MODELS, (char(*)[RS_NAME_MAX])st->models, st->nmodels, st->nmodels_total);
  jlist(out, "available", h & RS_AVAILABLE, (char(*)[RS_NAME_MAX])st->available, st->navailable,
        st->navailable_total);
  jlist(out, "lora", h & RS_LORA, (char(*)[RS_NAME_MAX])st->lora, st->nlora, st->nlora_total);
  if (r) {
    buf_puts(out, ",\"window\":{\"reset\":");
    buf_puts(out, r->have & RR_RESET ? "true" : "false");
    jnum(out, "prompt_tps", r->have & RR_PROMPT_TPS, r->prompt_tps);
    jnum(out, "gen_tps", r->have & RR_GEN_TPS, r->gen_tps);
    jnum(out, "ttft_p50_s", r->have & RR_TTFT, r->ttft_p50);
    jnum(out, "ttft_p95_s", r->have & RR_TTFT, r->ttft_p95);
    jnum(out, "itl_p50_s", r->have & RR_ITL, r->itl_p50);
    jnum(out, "itl_p95_s", r->have & RR_ITL, r->itl_p95);
    jnum(out, "prefix_hit_rate", r->have & RR_PREFIX, r->prefix_hit_rate);
    jnum(out, "queue_time_mean_s", r->have & RR_QUEUE_TIME, r->queue_time_mean_s);
    buf_puts(out, "}");
  }
  buf_puts(out, "}");
}

/* Control ------------------------------------------------------------------------------------------------ */

int runtime_control_request(enum runtime_kind k, enum rt_control_op op, const char *name,
                            const char *lora_path, const char **method, char *path, size_t pathcap,
                            struct buf *body) {
  bool lora = op == RT_CTL_LOAD_LORA || op == RT_CTL_UNLOAD_LORA;
  bool load = op == RT_CTL_LOAD_MODEL || op == RT_CTL_LOAD_LORA;
  const char *key = "model";
  int n;
  if (!name || !*name || strlen(name) >= RS_NAME_MAX || !pathcap) return -EINVAL;
  if (op == RT_CTL_LOAD_LORA && (!lora_path || !*lora_path)) return -EINVAL;
  if ((unsigned)k >= RT_KIND_COUNT) return -EINVAL;
  if (k == RT_KIND_TGI || lora != (k == RT_KIND_VLLM || k == RT_KIND_SGLANG)) return -ENOTSUP;
  switch (k) {
  case RT_KIND_VLLM: n = snprintf(path, pathcap, "/v1/%s_lora_adapter", load ? "load" : "unload"); break;
  case RT_KIND_SGLANG: n = snprintf(path, pathcap, "/%s_lora_adapter", load ? "load" : "unload"); break;
  case RT_KIND_LLAMACPP: n = snprintf(path, pathcap, "/models/%s", load ? "load" : "unload"); break;
  case RT_KIND_OLLAMA: n = snprintf(path, pathcap, "/api/generate"); break;
  default:
    /* Triton names the model in the path: allow only what needs no escaping */
    for (const char *c = name; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
            *c == '-' || *c == '.'))
        return -EINVAL;
    n = snprintf(path, pathcap, "/v2/repository/models/%s/%s", name, load ? "load" : "unload");
    break;
  }
  if (n < 0 || (size_t)n >= pathcap) return -EINVAL;
  *method = "POST";
  if (k == RT_KIND_TRITON) {
    buf_puts(body, "{}");
    return 0;
  }
  if (lora) key = "lora_name";
  buf_printf(body, "{\"%s\":", key);
  buf_json_str(body, slice_cstr(name));
  if (op == RT_CTL_LOAD_LORA) {
    buf_puts(body, ",\"lora_path\":");
    buf_json_str(body, slice_cstr(lora_path));
  }
  if (k == RT_KIND_OLLAMA && !load) buf_puts(body, ",\"keep_alive\":0"); /* unload at once */
  buf_puts(body, "}");
  return 0;
}
