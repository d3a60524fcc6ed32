/* libFuzzer target for the Prometheus text parser and the vLLM adapter built on it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/prom.h"
#include "adapter/vllm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t g_sink; /* keeps the reads in sample_cb from being optimized away */

/* touch every field and decode every label, so out-of-bounds slices show up under ASan */
static int sample_cb(const struct prom_sample *s, void *arg) {
  size_t *sink = arg;
  char buf[32];
  struct slice v;
  *sink += s->name.len + (size_t)s->nlabels + (size_t)s->has_ts;
  if (s->name.len) *sink += (unsigned char)s->name.base[s->name.len - 1];
  for (int i = 0; i < s->nlabels; i++) {
    *sink += prom_label_unescape(s->labels[i].value, buf, sizeof buf);
    *sink += prom_label_unescape(s->labels[i].value, buf, 1);
    if (s->labels[i].name.len) *sink += (unsigned char)s->labels[i].name.base[s->labels[i].name.len - 1];
  }
  if (prom_label_get(s, "le", &v) && v.len) *sink += (unsigned char)v.base[v.len - 1];
  /* stop early now and then to exercise the callback's return path */
  return s->value == 42.0 ? 42 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy: the parser must not rely on a NUL after the input */
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  if (size) memcpy(text, data, size);

  size_t sink = 0;
  struct prom_error err;
  int rc = prom_parse(text, size, sample_cb, &sink, &err);
  if (rc != 0 && rc != 42 && (err.line < 1 || memchr(err.msg, '\0', sizeof err.msg) == NULL)) abort();

  struct runtime_metrics m;
  rc = vllm_parse_metrics(text, size, &m, NULL);
  if (rc != 0 && m.have != 0) abort();
  if ((m.have & RT_HAVE_CACHE_CONFIG) && (m.block_size <= 0 || m.num_gpu_blocks <= 0)) abort();

  free(text);
  g_sink = sink;
  return 0;
}
