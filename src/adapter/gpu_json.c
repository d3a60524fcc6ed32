/* JSON rendering of GPU telemetry (shared by `infermesh gpus` and the agent's status). */
#include "adapter/gpu_json.h"

#include <string.h>

static void key(struct buf *b, bool *first, const char *k) {
  buf_printf(b, "%s\"%s\":", *first ? "" : ",", k);
  *first = false;
}

static void jstr(struct buf *b, bool *first, const char *k, bool known, const char *v) {
  key(b, first, k);
  if (known && v && *v)
    buf_json_str(b, slice_cstr(v));
  else
    buf_puts(b, "null");
}

static void ju64(struct buf *b, bool *first, const char *k, bool known, uint64_t v) {
  key(b, first, k);
  if (known)
    buf_append_u64(b, v);
  else
    buf_puts(b, "null");
}

static void jdbl(struct buf *b, bool *first, const char *k, bool known, double v) {
  key(b, first, k);
  if (known)
    buf_printf(b, "%.10g", v);
  else
    buf_puts(b, "null");
}

static void jbool(struct buf *b, bool *first, const char *k, bool known, bool v) {
  key(b, first, k);
  buf_puts(b, !known ? "null" : v ? "true" : "false");
}

static void json_mig(struct buf *b, const struct gpu_mig *m) {
  bool f = true;
  buf_puts(b, "{");
  ju64(b, &f, "gi_id", true, m->gi_id);
  jstr(b, &f, "uuid", true, m->uuid);
  jstr(b, &f, "profile", true, m->profile);
  ju64(b, &f, "memory_used_bytes", m->known & GPU_K_MEM_USED, m->mem_used);
  ju64(b, &f, "memory_free_bytes", m->known & GPU_K_MEM_FREE, m->mem_free);
  ju64(b, &f, "memory_total_bytes", m->known & GPU_K_MEM_TOTAL, m->mem_total);
  jdbl(b, &f, "gr_engine_active", m->known & GPU_K_GR_ACTIVE, m->gr_active);
  buf_puts(b, "}");
}

static void json_gpu(struct buf *b, const struct gpu_info *g) {
  bool f = true;
  uint32_t k = g->known;
  buf_puts(b, "{");
  ju64(b, &f, "index", k & GPU_K_INDEX, g->index);
  jstr(b, &f, "uuid", true, g->uuid);
  jstr(b, &f, "name", k & GPU_K_NAME, g->name);
  jstr(b, &f, "pci_bus_id", k & GPU_K_PCI, g->pci_bus_id);
  ju64(b, &f, "utilization_gpu_pct", k & GPU_K_UTIL_GPU, g->util_gpu);
  ju64(b, &f, "utilization_memory_pct", k & GPU_K_UTIL_MEM, g->util_mem);
  ju64(b, &f, "memory_used_bytes", k & GPU_K_MEM_USED, g->mem_used);
  ju64(b, &f, "memory_free_bytes", k & GPU_K_MEM_FREE, g->mem_free);
  ju64(b, &f, "memory_total_bytes", k & GPU_K_MEM_TOTAL, g->mem_total);
  ju64(b, &f, "temperature_c", k & GPU_K_TEMP, g->temp_c);
  jdbl(b, &f, "power_w", k & GPU_K_POWER, g->power_w);
  jdbl(b, &f, "power_limit_w", k & GPU_K_POWER_LIMIT, g->power_limit_w);
  ju64(b, &f, "clock_event_reasons", k & GPU_K_CLOCK_EVENTS, g->clock_events);
  key(b, &f, "throttle");
  if (k & GPU_K_CLOCK_EVENTS)
    buf_printf(b, "{\"thermal\":%s,\"power_cap\":%s,\"hw_slowdown\":%s,\"idle\":%s}",
               g->thr_thermal ? "true" : "false", g->thr_power_cap ? "true" : "false",
               g->thr_hw_slowdown ? "true" : "false", g->thr_idle ? "true" : "false");
  else
    buf_puts(b, "null");
  jbool(b, &f, "ecc_enabled", k & GPU_K_ECC_MODE, g->ecc_enabled);
  ju64(b, &f, "ecc_uncorrected", k & GPU_K_ECC_ERRORS, g->ecc_uncorrected);
  ju64(b, &f, "ecc_corrected", k & GPU_K_ECC_ERRORS, g->ecc_corrected);
  jbool(b, &f, "mig_enabled", k & GPU_K_MIG, g->mig_enabled);
  key(b, &f, "mig");
  buf_puts(b, "[");
  for (unsigned i = 0; i < g->mig_count; i++) {
    if (i) buf_puts(b, ",");
    json_mig(b, &g->mig[i]);
  }
  buf_puts(b, "]");
  ju64(b, &f, "xid_last", k & GPU_K_XID, g->xid_last);
  jdbl(b, &f, "gr_engine_active", k & GPU_K_GR_ACTIVE, g->gr_active);
  jstr(b, &f, "health", true, gpu_health_str(g->health));
  key(b, &f, "health_reasons");
  static const struct {
    uint32_t bit;
    const char *name;
  } reasons[] = {{GPU_HR_THROTTLE, "throttle"}, {GPU_HR_ECC, "ecc"}, {GPU_HR_HOT, "hot"}, {GPU_HR_XID, "xid"},
                 {GPU_HR_LOST, "lost"}};
  buf_puts(b, "[");
  bool first = true;
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (g->health_reasons & reasons[i].bit) {
      buf_printf(b, "%s\"%s\"", first ? "" : ",", reasons[i].name);
      first = false;
    }
  buf_puts(b, "]");
  buf_puts(b, "}");
}

void gpus_json(struct buf *b, const char *source, bool available, const char *reason, const char *driver,
               const struct gpu_info *g, int n) {
  bool f = true;
  buf_puts(b, "{");
  jstr(b, &f, "source", true, source);
  jbool(b, &f, "available", true, available);
  if (!available) jstr(b, &f, "reason", true, reason);
  if (available) jstr(b, &f, "driver_version", true, driver);
  key(b, &f, "gpus");
  buf_puts(b, "[");
  for (int i = 0; i < n; i++) {
    if (i) buf_puts(b, ",");
    json_gpu(b, &g[i]);
  }
  buf_puts(b, "]}");
}

