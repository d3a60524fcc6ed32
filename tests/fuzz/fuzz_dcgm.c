/* libFuzzer target for the dcgm-exporter parser (and the JSON rendering of what it produced). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/dcgm.h"
#include "adapter/gpu_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gpu_info g_gpus[8];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy: the parser must not rely on a NUL after the input */
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  if (size) memcpy(text, data, size);
  int n = -1;
  struct prom_error err;
  int rc = dcgm_parse(text, size, g_gpus, 8, &n, &err);
  if (rc != 0 && n != 0) abort();
  if (rc == 0 && (n < 0 || n > 8)) abort();
  for (int i = 0; i < n; i++) {
    const struct gpu_info *x = &g_gpus[i];
    if (memchr(x->uuid, '\0', sizeof x->uuid) == NULL || memchr(x->name, '\0', sizeof x->name) == NULL)
      abort();
    if (x->mig_count > GPU_MIG_MAX) abort();
    if ((x->health == GPU_HEALTH_OK) != (x->health_reasons == 0)) abort();
  }
  struct buf b = {0};
  gpus_json(&b, "dcgm-exporter", true, NULL, NULL, g_gpus, n > 0 ? n : 0);
  buf_free(&b);
  free(text);
  return 0;
}
