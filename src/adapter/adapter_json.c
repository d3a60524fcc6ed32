/* Runtime adapters' JSON endpoints: OpenAI /v1/models, TGI /info, llama.cpp /slots, Triton index, Ollama. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "adapter/adapter_int.h"
#include "core/err.h"

/* At most this many array entries are looked at; more is IM_ETOOBIG (sizes the runtime controls). */
#define MAX_ENTRIES 4096

static json_t *load(const char *json, size_t len) {
  json_error_t jerr;
  return json ? json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
}

static struct slice jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? slice_make(json_string_value(v), json_string_length(v)) : slice_make(NULL, 0);
}

/* jint reads a non-negative integer member (JSON integer, or an integral real) into *out. */
static bool jint(json_t *o, const char *k, int64_t *out) {
  json_t *v = json_object_get(o, k);
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!(d >= 0 && d < 9e18) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
  }
  return false;
}

int adapter_openai_models(const char *json, size_t len, struct runtime_state *st) {
  json_t *root = load(json, len), *data, *item;
  size_t i;
  int rc = IM_EPARSE;
  struct runtime_state w = *st;
  if (!json_is_object(root)) goto out;
  data = json_object_get(root, "data");
  if (!json_is_array(data)) goto out;
  if (json_array_size(data) > MAX_ENTRIES) {
    rc = IM_ETOOBIG;
    goto out;
  }
  w.have |= RS_MODELS;
  json_array_foreach(data, i, item) {
    struct slice id = jstr(item, "id");
    int64_t maxlen;
    if (!id.len) goto out;
    /* vLLM lists a LoRA adapter as a model whose "parent" is the base model. It is also a model the
     * runtime serves (a request names it in "model"), so it goes to models[] too: routing by its name. */
    if (json_is_string(json_object_get(item, "parent"))) {
      adapter_add_name(&w, ADAPTER_LORA, id);
      adapter_add_name(&w, ADAPTER_MODELS, id);
      continue;
    }
    adapter_add_name(&w, ADAPTER_MODELS, id);
    if (jint(item, "max_model_len", &maxlen) && maxlen > 0) w.max_seq_tokens = maxlen, w.have |= RS_MAX_SEQ;
  }
  *st = w;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

int adapter_tgi_info(const char *json, size_t len, struct runtime_state *st) {
  json_t *root = load(json, len);
  int rc = IM_EPARSE;
  int64_t v;
  struct runtime_state w = *st;
  struct slice id = jstr(root, "model_id");
  if (!json_is_object(root) || !id.len) goto out;
  adapter_add_name(&w, ADAPTER_MODELS, id);
  if (jint(root, "max_total_tokens", &v) && v > 0) w.max_seq_tokens = v, w.have |= RS_MAX_SEQ;
  /* the batch token budget; null on TGI builds that size it at warmup (then the /metrics gauge has it) */
  if (!(w.have & RS_KV_CAPACITY) && jint(root, "max_batch_total_tokens", &v) && v > 0)
    w.kv_capacity_tokens = v, w.have |= RS_KV_CAPACITY;
  *st = w;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

/* llama-server's GET /slots: one object per slot (parallel sequence), each with its own n_ctx of KV cells.
 * Token counts per slot: older builds give n_past; some n_prompt_tokens(_processed) and next_token.n_decoded;
 * upstream 2025-07 (the one in ../shared) only next_token.n_decoded and the prompt's text, whose tokens are
 * estimated at 4 bytes each. When a build gives none, a busy slot counts as its whole n_ctx: without a
 * unified KV cache each slot owns n_ctx cells, so that is what it holds. */
int adapter_llamacpp_slots(const char *json, size_t len, struct runtime_state *st) {
  json_t *root = load(json, len), *slot;
  size_t i;
  int rc = IM_EPARSE;
  int64_t cap = 0, first_ctx = 0;
  double used = 0, busy = 0;
  struct runtime_state w = *st;
  if (!json_is_array(root) || json_array_size(root) == 0) goto out;
  if (json_array_size(root) > MAX_ENTRIES) {
    rc = IM_ETOOBIG;
    goto out;
  }
  json_array_foreach(root, i, slot) {
    int64_t n_ctx, t, dec = 0;
    json_t *proc = json_object_get(slot, "is_processing");
    if (!jint(slot, "n_ctx", &n_ctx) || n_ctx <= 0 || n_ctx > INT64_MAX / MAX_ENTRIES) goto out;
    if (proc && !json_is_boolean(proc)) goto out;
    if (!first_ctx) first_ctx = n_ctx;
    cap += n_ctx;
    if (!json_is_true(proc)) continue;
    busy++;
    if (jint(slot, "n_past", &t)) {
      used += (double)(t < n_ctx ? t : n_ctx);
    } else if (jint(slot, "n_prompt_tokens_processed", &t) || jint(slot, "n_prompt_tokens", &t)) {
      jint(json_object_get(slot, "next_token"), "n_decoded", &dec);
      double u = (double)t + (double)dec;
      used += u < (double)n_ctx ? u : (double)n_ctx;
    } else if (json_is_string(json_object_get(slot, "prompt")) &&
               jint(json_object_get(slot, "next_token"), "n_decoded", &dec)) {
      double u = (double)((json_string_length(json_object_get(slot, "prompt")) + 3) / 4) + (double)dec;
      used += u < (double)n_ctx ? u : (double)n_ctx;
    } else {
      used += (double)n_ctx;
    }
  }
  w.kv_capacity_tokens = cap;
  w.kv_usage = used / (double)cap;
  w.max_seq_tokens = first_ctx;
  w.have |= RS_KV_CAPACITY | RS_KV_USAGE | RS_MAX_SEQ;
  if (!(w.have & RS_RUNNING)) w.running = busy, w.have |= RS_RUNNING; /* /metrics, when present, wins */
  *st = w;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

/* Triton's POST /v2/repository/index: [{"name","version","state","reason"}]. READY models are served;
 * every entry is in the repository (available). */
int adapter_triton_index(const char *json, size_t len, struct runtime_state *st) {
  json_t *root = load(json, len), *m;
  size_t i;
  int rc = IM_EPARSE;
  struct runtime_state w = *st;
  if (!json_is_array(root)) goto out;
  if (json_array_size(root) > MAX_ENTRIES) {
    rc = IM_ETOOBIG;
    goto out;
  }
  w.have |= RS_AVAILABLE | RS_MODELS;
  /* the index is authoritative for readiness: model names seen in /metrics are replaced */
  w.nmodels = w.nmodels_total = 0;
  json_array_foreach(root, i, m) {
    struct slice name = jstr(m, "name"), state = jstr(m, "state");
    if (!name.len) goto out;
    adapter_add_name(&w, ADAPTER_AVAILABLE, name);
    if (state.len && slice_eqz(state, "READY")) adapter_add_name(&w, ADAPTER_MODELS, name);
  }
  *st = w;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

/* ollama_models walks {"models":[{"name":...,"size_vram":...}]}; vram sums size_vram when asked. */
static int ollama_models(const char *json, size_t len, struct runtime_state *st, enum adapter_list l,
                         bool vram) {
  json_t *root = load(json, len), *models, *m;
  size_t i;
  int rc = IM_EPARSE;
  int64_t total = 0;
  struct runtime_state w = *st;
  models = json_object_get(root, "models");
  if (!json_is_object(root) || !json_is_array(models)) goto out;
  if (json_array_size(models) > MAX_ENTRIES) {
    rc = IM_ETOOBIG;
    goto out;
  }
  w.have |= l == ADAPTER_MODELS ? RS_MODELS : RS_AVAILABLE;
  json_array_foreach(models, i, m) {
    struct slice name = jstr(m, "name");
    int64_t v;
    if (!name.len) name = jstr(m, "model");
    if (!name.len) goto out;
    adapter_add_name(&w, l, name);
    if (vram && jint(m, "size_vram", &v)) total = v > INT64_MAX - total ? INT64_MAX : total + v;
  }
  if (vram) w.vram_bytes = total, w.have |= RS_VRAM;
  *st = w;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

int adapter_ollama_ps(const char *json, size_t len, struct runtime_state *st) {
  return ollama_models(json, len, st, ADAPTER_MODELS, true);
}

int adapter_ollama_tags(const char *json, size_t len, struct runtime_state *st) {
  return ollama_models(json, len, st, ADAPTER_AVAILABLE, false);
}
