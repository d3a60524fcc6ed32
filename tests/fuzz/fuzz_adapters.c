/* libFuzzer target for every runtime adapter parser, the detection probes and the window math. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/adapter.h"
#include "core/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*parse_fn)(const char *, size_t, struct runtime_state *);

static const parse_fn fns[] = {adapter_vllm_metrics,     adapter_sglang_metrics, adapter_tgi_metrics,
                               adapter_llamacpp_metrics, adapter_triton_metrics, adapter_openai_models,
                               adapter_tgi_info,         adapter_llamacpp_slots, adapter_triton_index,
                               adapter_ollama_ps,        adapter_ollama_tags};

/* check asserts the invariants every parser keeps, whatever the input. */
static void check(const struct runtime_state *st) {
  if (st->nmodels < 0 || st->nmodels > RS_MAX_NAMES || st->nmodels > st->nmodels_total) abort();
  if (st->navailable < 0 || st->navailable > RS_MAX_NAMES || st->nlora < 0 || st->nlora > RS_MAX_NAMES)
    abort();
  for (int i = 0; i < st->nmodels; i++)
    if (!memchr(st->models[i], '\0', RS_NAME_MAX)) abort();
  for (int i = 0; i < st->nlora; i++)
    if (!memchr(st->lora[i], '\0', RS_NAME_MAX)) abort();
  if (st->ttft.n < 0 || st->ttft.n > RS_HIST_MAX || st->itl.n < 0 || st->itl.n > RS_HIST_MAX) abort();
  for (int i = 1; i < st->ttft.n; i++)
    if (!(st->ttft.le[i - 1] < st->ttft.le[i])) abort(); /* bounds stay sorted and distinct */
  if ((st->have & RS_KV_CAPACITY) && st->kv_capacity_tokens < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy: no parser may rely on a NUL after the input */
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  if (size) memcpy(text, data, size);
  static struct runtime_state st, before, prev;
  runtime_state_init(&st);
  runtime_state_init(&prev);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    before = st;
    int rc = fns[i](text, size, &st);
    if (rc != 0 && memcmp(&st, &before, sizeof st) != 0) abort(); /* a failed parse changes nothing */
    check(&st);
    if (i == 0) prev = st;
  }
  const struct rt_probe *probes;
  int n = runtime_detect_probes(&probes);
  for (int i = 0; i < n; i++) {
    enum runtime_kind k;
    if (runtime_detect(i, 200, text, size, &k) && (unsigned)k >= RT_KIND_COUNT) abort();
  }
  struct runtime_rates r;
  if (runtime_rates(&prev, &st, 1.0, &r) != 0) abort();
  if ((r.have & RR_TTFT) && !(r.ttft_p50 <= r.ttft_p95 || isnan(r.ttft_p50))) abort();
  struct buf b = {0};
  runtime_state_json(&st, &r, RT_KIND_VLLM, &b);
  buf_free(&b);
  free(text);
  return 0;
}
