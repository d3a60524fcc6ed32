/* Normalized GPU telemetry (filled by nvml.c or dcgm.c) and the health summary scoring reads. */
#ifndef IM_ADAPTER_GPU_H
#define IM_ADAPTER_GPU_H

#include <stdbool.h>
#include <stdint.h>

#define GPU_UUID_MAX 96 /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define GPU_NAME_MAX 96 /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define GPU_PCI_MAX 32  /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
#define GPU_MIG_MAX 8   /* A100/H100 have at most 7 GPU instances */
#define GPU_MAX 64      /* devices one node reports */

/* A temperature at or above this (C) marks the GPU "hot" in its health summary. */
#define GPU_HOT_C 85

/* "known" bits: a field is meaningful only when its bit is set (many queries can be NOT_SUPPORTED). */
enum {
  GPU_K_NAME = 1u << 0,
  GPU_K_PCI = 1u << 1,
  GPU_K_UTIL_GPU = 1u << 2,
  GPU_K_UTIL_MEM = 1u << 3,
  GPU_K_MEM_USED = 1u << 4,
  GPU_K_MEM_FREE = 1u << 5,
  GPU_K_MEM_TOTAL = 1u << 6,
  GPU_K_TEMP = 1u << 7,
  GPU_K_POWER = 1u << 8,
  GPU_K_POWER_LIMIT = 1u << 9,
  GPU_K_CLOCK_EVENTS = 1u << 10,
  GPU_K_ECC_MODE = 1u << 11,
  GPU_K_ECC_ERRORS = 1u << 12,
  GPU_K_MIG = 1u << 13, /* mig_enabled (and, when enabled, mig_count/mig[]) */
  GPU_K_XID = 1u << 14,
  GPU_K_GR_ACTIVE = 1u << 15,
  GPU_K_INDEX = 1u << 16
};

/* Clock-event (throttle) reasons: the NVML nvmlClocksEventReason* bit values, kept as is in clock_events. */
enum {
  GPU_CE_IDLE = 0x1,
  GPU_CE_APP_CLOCKS = 0x2,
  GPU_CE_SW_POWER_CAP = 0x4,
  GPU_CE_HW_SLOWDOWN = 0x8,
  GPU_CE_SYNC_BOOST = 0x10,
  GPU_CE_SW_THERMAL = 0x20,
  GPU_CE_HW_THERMAL = 0x40,
  GPU_CE_HW_POWER_BRAKE = 0x80,
  GPU_CE_DISPLAY_CLOCKS = 0x100
};

/* Reasons that mean the GPU runs slower than it should. SW power cap is left out on purpose: a fully loaded
 * GPU sits at its configured power limit, which is normal, not a fault. */
#define GPU_CE_DEGRADING (GPU_CE_HW_SLOWDOWN | GPU_CE_SW_THERMAL | GPU_CE_HW_THERMAL | GPU_CE_HW_POWER_BRAKE)

enum gpu_health { GPU_HEALTH_OK = 0, GPU_HEALTH_DEGRADED = 1 };

/* Why a GPU is degraded (bitmask in gpu_info.health_reasons). */
enum {
  GPU_HR_THROTTLE = 1u << 0, /* a GPU_CE_DEGRADING clock-event reason is active */
  GPU_HR_ECC = 1u << 1,      /* uncorrected (volatile) ECC errors > 0 */
  GPU_HR_HOT = 1u << 2,      /* temperature >= GPU_HOT_C */
  GPU_HR_XID = 1u << 3,      /* dcgm-exporter reports a nonzero last XID error */
  GPU_HR_LOST = 1u << 4      /* the driver lost the GPU (NVML_ERROR_GPU_IS_LOST, e.g. after Xid 79) */
};

/* One MIG GPU instance. */
struct gpu_mig {
  unsigned gi_id;          /* GPU instance id */
  char uuid[GPU_UUID_MAX]; /* "MIG-..." (NVML), empty when unknown */
  char profile[32];        /* e.g. "1g.6gb" (dcgm-exporter GPU_I_PROFILE), empty when unknown */
  uint32_t known;          /* GPU_K_MEM_*, GPU_K_GR_ACTIVE */
  uint64_t mem_used, mem_free, mem_total; /* bytes */
  double gr_active;                       /* 0..1, DCGM_FI_PROF_GR_ENGINE_ACTIVE */
};

/* One physical GPU. Plain data: no pointers, copy freely. */
struct gpu_info {
  unsigned index;          /* NVML enumeration index (PCI order), or dcgm-exporter's "gpu" label */
  char uuid[GPU_UUID_MAX]; /* "GPU-..."; the identity used for matching */
  char name[GPU_NAME_MAX];
  char pci_bus_id[GPU_PCI_MAX];           /* "00000000:07:00.0" */
  uint32_t known;                         /* GPU_K_* */
  unsigned util_gpu, util_mem;            /* % */
  uint64_t mem_used, mem_free, mem_total; /* bytes */
  unsigned temp_c;
  double power_w, power_limit_w;
  uint64_t clock_events; /* raw GPU_CE_* bitmask */
  /* decoded clock_events, valid with GPU_K_CLOCK_EVENTS */
  bool thr_thermal, thr_power_cap, thr_hw_slowdown, thr_idle;
  bool ecc_enabled;
  uint64_t ecc_uncorrected, ecc_corrected; /* volatile counts (since driver load) */
  bool mig_enabled;
  unsigned mig_count; /* entries in mig[] */
  struct gpu_mig mig[GPU_MIG_MAX];
  unsigned xid_last;       /* dcgm-exporter DCGM_FI_DEV_XID_ERRORS */
  double gr_active;        /* 0..1 */
  enum gpu_health health;  /* set by gpu_health_eval */
  uint32_t health_reasons; /* GPU_HR_* */
};

/* gpu_decode_clock_events sets clock_events, the thr_* flags and GPU_K_CLOCK_EVENTS from an NVML bitmask. */
static inline void gpu_decode_clock_events(struct gpu_info *g, uint64_t mask) {
  g->clock_events = mask;
  g->thr_thermal = (mask & (GPU_CE_SW_THERMAL | GPU_CE_HW_THERMAL)) != 0;
  g->thr_power_cap = (mask & (GPU_CE_SW_POWER_CAP | GPU_CE_HW_POWER_BRAKE)) != 0;
  g->thr_hw_slowdown = (mask & (GPU_CE_HW_SLOWDOWN | GPU_CE_HW_THERMAL | GPU_CE_HW_POWER_BRAKE)) != 0;
  g->thr_idle = (mask & GPU_CE_IDLE) != 0;
  g->known |= GPU_K_CLOCK_EVENTS;
}

/* gpu_health_eval sets g->health and g->health_reasons from the known fields only (an unknown field never
 * degrades a GPU). Pure; call it after filling g. */
static inline void gpu_health_eval(struct gpu_info *g) {
  uint32_t r = 0;
  if ((g->known & GPU_K_CLOCK_EVENTS) && (g->clock_events & GPU_CE_DEGRADING)) r |= GPU_HR_THROTTLE;
  if ((g->known & GPU_K_ECC_ERRORS) && g->ecc_uncorrected > 0) r |= GPU_HR_ECC;
  if ((g->known & GPU_K_TEMP) && g->temp_c >= GPU_HOT_C) r |= GPU_HR_HOT;
  if ((g->known & GPU_K_XID) && g->xid_last != 0) r |= GPU_HR_XID;
  r |= g->health_reasons & GPU_HR_LOST; /* set by the reader, not derived from fields */
  g->health_reasons = r;
  g->health = r ? GPU_HEALTH_DEGRADED : GPU_HEALTH_OK;
}

/* gpu_health_str names a health state: "ok" or "degraded". */
static inline const char *gpu_health_str(enum gpu_health h) { return h == GPU_HEALTH_OK ? "ok" : "degraded"; }

#endif
