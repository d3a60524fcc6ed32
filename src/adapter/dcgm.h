/* GPU telemetry from a dcgm-exporter scrape (Prometheus text), the alternative to NVML. */
#ifndef IM_ADAPTER_DCGM_H
#define IM_ADAPTER_DCGM_H

#include <stddef.h>

#include "adapter/gpu.h"
#include "adapter/prom.h"

/* dcgm_parse reads a dcgm-exporter /metrics body text[0..len) into out[0..*count), one entry per GPU UUID in
 * order of first appearance (the UUID label is found by name case-insensitively: "UUID" or "uuid"; without
 * one, the "gpu" index label keys the entry). Read: DCGM_FI_DEV_GPU_UTIL, MEM_COPY_UTIL (%),
 * FB_USED/FB_FREE/FB_TOTAL (MiB; the missing one of the three is derived), GPU_TEMP, POWER_USAGE and
 * POWER_MGMT_LIMIT (W), XID_ERRORS, ECC_DBE_VOL_TOTAL/ECC_SBE_VOL_TOTAL,
 * CLOCK_THROTTLE_REASONS/CLOCKS_EVENT_REASONS, PROF_GR_ENGINE_ACTIVE (0-1). Samples with a GPU_I_ID label
 * belong to a MIG instance of their GPU (mig[], with GPU_I_PROFILE; FB and GR engine values go there) and
 * mark the GPU MIG-enabled. modelName and pci_bus_id labels give name and PCI id. GPUs past cap and instances
 * past GPU_MIG_MAX are dropped. Each GPU comes with gpu_health_eval applied. Returns 0, or prom_parse's error
 * (IM_EPARSE/IM_ETOOBIG with err filled; err may be NULL), in which case *count is 0. Pure: no I/O, no
 * allocation. */
int dcgm_parse(const char *text, size_t len, struct gpu_info *out, int cap, int *count,
               struct prom_error *err);

#endif
