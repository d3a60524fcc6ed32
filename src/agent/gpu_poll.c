/* GPU polling: NVML on uv's thread pool, snapshot published on the loop thread. */
#include "agent/gpu_poll.h"

#include <stdlib.h>
#include <string.h>

#include "adapter/gpu_json.h"
#include "adapter/nvml.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"

static void read_work(uv_work_t *w) {
  struct gpu_poll *g = w->data;
  if (g->closing_nvml) {
    nvml_close(g->nv);
    g->nv = NULL;
    return;
  }
  if (!g->nv) g->nv = nvml_open(g->lib[0] ? g->lib : NULL);
  g->nscratch = 0;
  g->rc = nvml_available(g->nv) ? nvml_read(g->nv, g->visible, g->scratch, GPU_MAX, &g->nscratch) : -ENODEV;
}

static void timer_closed_cb(uv_handle_t *h) {
  struct gpu_poll *g = h->data;
  free(g->visible);
  g->visible = NULL;
  if (g->closed_cb) g->closed_cb(g->closed_arg);
}

static void after_work(uv_work_t *w, int status) {
  struct gpu_poll *g = w->data;
  g->busy = false;
  if (g->closing_nvml) {
    uv_close((uv_handle_t *)&g->timer, timer_closed_cb);
    return;
  }
  bool was = g->available;
  g->available = nvml_available(g->nv) && g->rc == 0;
  g->ngpus = g->available ? g->nscratch : 0;
  memcpy(g->gpus, g->scratch, (size_t)g->ngpus * sizeof g->gpus[0]);
  str_copy(g->reason, sizeof g->reason, nvml_available(g->nv) ? (g->rc ? "NVML read failed" : "") : nvml_errmsg(g->nv));
  str_copy(g->driver, sizeof g->driver, nvml_driver_version(g->nv));
  if (!g->polled || was != g->available) {
    if (g->available)
      log_info("gpus", "source=nvml count=%d driver=%s", g->ngpus, g->driver);
    else
      log_info("no GPU telemetry", "reason=\"%s\"", g->reason);
  }
  g->polled = true;
  if (g->updated_cb && !g->stopping) g->updated_cb(g->updated_arg);
  if (g->stopping) gpu_poll_close(g, g->closed_cb, g->closed_arg);
}

static void tick_cb(uv_timer_t *t) {
  struct gpu_poll *g = t->data;
  if (g->busy || g->stopping) return;
  g->busy = true;
  uv_queue_work(g->loop, &g->work, read_work, after_work);
}

void gpu_poll_start(struct gpu_poll *g, uv_loop_t *loop, uint32_t interval_ms, const char *lib, const char *visible) {
  memset(g, 0, sizeof *g);
  g->loop = loop;
  g->work.data = g;
  str_copy(g->lib, sizeof g->lib, lib ? lib : "");
  g->visible = visible ? xstrdup(visible) : NULL;
  uv_timer_init(loop, &g->timer);
  g->timer.data = g;
  uv_timer_start(&g->timer, tick_cb, 0, interval_ms);
}

void gpu_poll_close(struct gpu_poll *g, void (*cb)(void *arg), void *arg) {
  g->stopping = true;
  g->closed_cb = cb;
  g->closed_arg = arg;
  uv_timer_stop(&g->timer);
  if (g->busy || g->closing_nvml) return; /* after_work continues the stop */
  g->closing_nvml = true;
  g->busy = true;
  uv_queue_work(g->loop, &g->work, read_work, after_work);
}

void gpu_poll_json(const struct gpu_poll *g, struct buf *out) {
  gpus_json(out, "nvml", g->available, g->polled ? g->reason : "not read yet", g->driver, g->gpus, g->ngpus);
}
