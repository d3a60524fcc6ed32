/* Periodic GPU telemetry for the agent: NVML read on a worker thread, the latest snapshot kept on the loop. */
#ifndef IM_AGENT_GPU_POLL_H
#define IM_AGENT_GPU_POLL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "adapter/gpu.h"
#include "core/buf.h"

/* All NVML calls (open, read, close) run in uv_queue_work: they may block in the driver. The snapshot fields
 * are written only on the loop thread (after_work), so loop code reads them freely. */
struct gpu_poll {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_work_t work;
  bool busy, stopping, closing_nvml;
  struct nvml *nv;
  char lib[256]; /* INFERMESH_NVML_LIB as given at start */
  char *visible; /* owned: CUDA_VISIBLE_DEVICES as given at start, whole; NULL when unset ("" is no GPU) */
  /* worker side */
  struct gpu_info scratch[GPU_MAX];
  int nscratch, rc;
  /* loop side: the latest snapshot */
  struct gpu_info gpus[GPU_MAX];
  int ngpus;
  bool available, polled;
  char reason[160], driver[64];
  void (*closed_cb)(void *arg);
  void *closed_arg;
  /* Called on the loop thread after each new snapshot; set after gpu_poll_start. */
  void (*updated_cb)(void *arg);
  void *updated_arg;
};

/* gpu_poll_start reads NVML now and every interval_ms. lib and visible may be NULL (default library; all GPUs). */
void gpu_poll_start(struct gpu_poll *g, uv_loop_t *loop, uint32_t interval_ms, const char *lib, const char *visible);
/* gpu_poll_close stops polling, closes NVML on a worker thread, then calls cb(arg) (g may be freed then). */
void gpu_poll_close(struct gpu_poll *g, void (*cb)(void *arg), void *arg);
/* gpu_poll_json appends the snapshot in `infermesh gpus --json` form (source "nvml"). */
void gpu_poll_json(const struct gpu_poll *g, struct buf *out);

#endif
