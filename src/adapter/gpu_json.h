/* JSON rendering of GPU telemetry. */
#ifndef IM_ADAPTER_GPU_JSON_H
#define IM_ADAPTER_GPU_JSON_H

#include <stdbool.h>

#include "adapter/gpu.h"
#include "core/buf.h"

/* gpus_json appends {"source":..,"available":..,"reason"|"driver_version":..,"gpus":[...]} to b: every known
 * field of g[0..n), unknown ones as null, health as "ok"/"degraded" with a reasons array. reason (may be
 * NULL) is written when available is false; driver (may be NULL or "") when it is true. */
void gpus_json(struct buf *b, const char *source, bool available, const char *reason, const char *driver,
               const struct gpu_info *g, int n);

#endif
