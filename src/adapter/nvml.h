/* GPU telemetry from NVML, loaded at run time with dlopen (never linked), filtered by CUDA_VISIBLE_DEVICES.
 */
#ifndef IM_ADAPTER_NVML_H
#define IM_ADAPTER_NVML_H

#include <stdbool.h>

#include "adapter/gpu.h"

#define NVML_DEFAULT_LIB "libnvidia-ml.so.1"

/* An opened NVML: the library handle and its resolved symbols. Owned by whoever called nvml_open; freed by
 * nvml_close. Every call into NVML may block (driver ioctls, sometimes for seconds on a wedged GPU), so the
 * agent must run nvml_read on a worker thread (uv_queue_work), never on the event loop. One nvml object must
 * not be used by two threads at once. */
struct nvml;

/* nvml_open dlopens lib_path (NULL or "": NVML_DEFAULT_LIB) and calls nvmlInit_v2. Always returns an object
 * (allocation failure aborts). When the library is missing, lacks nvmlInit_v2 or nvmlDeviceGetCount_v2, or
 * its init fails, the object is "not available" (nvml_available false, nvml_errmsg says why): that is the
 * normal state of a machine without an NVIDIA GPU, not an error. Optional symbols that are missing just leave
 * their fields unknown. Callers (the CLI, the agent) pass INFERMESH_NVML_LIB here; this module reads no
 * environment. */
struct nvml *nvml_open(const char *lib_path);

/* nvml_available says whether NVML loaded and initialized. */
bool nvml_available(const struct nvml *n);

/* nvml_errmsg returns why NVML is not available ("" when it is), e.g. "NVML not available: libnvidia-ml.so.1:
 * cannot open shared object file". Valid until nvml_close. */
const char *nvml_errmsg(const struct nvml *n);

/* nvml_driver_version returns the driver version string, or "" when unknown. Valid until nvml_close. */
const char *nvml_driver_version(const struct nvml *n);

/* nvml_read fills out[0..*count) with the GPUs visible under `visible` (the value of CUDA_VISIBLE_DEVICES, or
 * NULL when it is unset: all GPUs in NVML order). visible is a comma list of indices (NVML/PCI order, i.e.
 * CUDA_DEVICE_ORDER=PCI_BUS_ID), GPU UUIDs (with or without "GPU-", or a unique prefix) and MIG UUIDs
 * ("MIG-..."); GPUs come in the listed order and, as CUDA does, an invalid or repeated entry ends the list.
 * A MIG entry selects its parent GPU, whose mig[] then holds only the listed instances. Every GPU comes with
 * gpu_health_eval applied. Returns 0, -ENODEV when NVML is not available, or -EIO when the device count
 * cannot be read; a failing query for one field only leaves that field unknown. Blocks (see above). */
int nvml_read(struct nvml *n, const char *visible, struct gpu_info *out, int cap, int *count);

/* nvml_close calls nvmlShutdown (when init succeeded), dlcloses the library and frees n. NULL is a no-op. */
void nvml_close(struct nvml *n);

#endif
