/* `infermesh gpus`: local GPUs via NVML, or a dcgm-exporter's, as a table or JSON. */
#ifndef IM_CLI_GPUS_H
#define IM_CLI_GPUS_H

#include "adapter/gpu.h"
#include "core/buf.h"

/* gpus_json appends {"source":..,"available":..,"reason"|"driver_version":..,"gpus":[...]} to b: every known
 * field of g[0..n), unknown ones as null, health as "ok"/"degraded" with a reasons array. reason (may be
 * NULL) is written when available is false; driver (may be NULL or "") when it is true. */
void gpus_json(struct buf *b, const char *source, bool available, const char *reason, const char *driver,
               const struct gpu_info *g, int n);

/* gpus_main runs `infermesh gpus [--json] [--dcgm URL]`. Reads INFERMESH_NVML_LIB (library path override) and
 * CUDA_VISIBLE_DEVICES. Exit code: 0 ok, also when there is no NVIDIA GPU or NVML (a message says so);
 * 1 when the dcgm-exporter cannot be fetched or parsed, or NVML fails after loading; 2 bad usage. */
int gpus_main(int argc, char **argv);

#endif
