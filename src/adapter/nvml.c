/* NVML through dlopen: our own declarations of the few entry points we use, device reads,
 * CUDA_VISIBLE_DEVICES. */
#include "adapter/nvml.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/slice.h"

/* From NVIDIA's nvml.h (API stable across drivers): return codes, opaque handles and the structs we read. */
typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_GPU_IS_LOST 15
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
  unsigned int gpu, memory;
} nvmlUtilization_t;
typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;
#define NVML_TEMPERATURE_GPU 0
#define NVML_FEATURE_ENABLED 1
#define NVML_DEVICE_MIG_ENABLE 1
#define NVML_MEMORY_ERROR_TYPE_CORRECTED 0
#define NVML_MEMORY_ERROR_TYPE_UNCORRECTED 1
#define NVML_VOLATILE_ECC 0

struct nvml {
  void *lib;
  bool ready;       /* nvmlInit_v2 succeeded */
  char errmsg[256]; /* why not ready */
  char driver[96];
  nvmlReturn_t (*init)(void);
  nvmlReturn_t (*shutdown)(void);
  const char *(*error_string)(nvmlReturn_t);
  nvmlReturn_t (*sys_driver_version)(char *, unsigned int);
  nvmlReturn_t (*get_count)(unsigned int *);
  nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t *);
  nvmlReturn_t (*get_uuid)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_name)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_pci)(nvmlDevice_t, nvmlPciInfo_t *);
  nvmlReturn_t (*get_util)(nvmlDevice_t, nvmlUtilization_t *);
  nvmlReturn_t (*get_mem)(nvmlDevice_t, nvmlMemory_t *);
  nvmlReturn_t (*get_temp)(nvmlDevice_t, int, unsigned int *);
  nvmlReturn_t (*get_power)(nvmlDevice_t, unsigned int *);
  nvmlReturn_t (*get_power_limit)(nvmlDevice_t, unsigned int *);
  nvmlReturn_t (*get_clock_events)(nvmlDevice_t, unsigned long long *);
  nvmlReturn_t (*get_ecc_mode)(nvmlDevice_t, int *, int *);
  nvmlReturn_t (*get_ecc_total)(nvmlDevice_t, int, int, unsigned long long *);
  nvmlReturn_t (*get_mig_mode)(nvmlDevice_t, unsigned int *, unsigned int *);
  nvmlReturn_t (*get_mig_max)(nvmlDevice_t, unsigned int *);
  nvmlReturn_t (*get_mig_handle)(nvmlDevice_t, unsigned int, nvmlDevice_t *);
  nvmlReturn_t (*get_gi_id)(nvmlDevice_t, unsigned int *);
};

/* sym resolves name into the function pointer at fp (NULL when absent); memcpy avoids the object-to-function
 * pointer cast ISO C leaves undefined. */
static void sym(void *lib, const char *name, void *fp) {
  void *p = dlsym(lib, name);
  memcpy(fp, &p, sizeof p);
}

static const char *nverr(const struct nvml *n, nvmlReturn_t rc) {
  const char *s = n->error_string ? n->error_string(rc) : NULL;
  return s ? s : "unknown NVML error";
}

struct nvml *nvml_open(const char *lib_path) {
  struct nvml *n = xcalloc(1, sizeof *n);
  if (!lib_path || !*lib_path) lib_path = NVML_DEFAULT_LIB;
  n->lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
  if (!n->lib) {
    const char *e = dlerror();
    snprintf(n->errmsg, sizeof n->errmsg, "NVML not available: %s", e ? e : lib_path);
    return n;
  }
  void *l = n->lib;
  sym(l, "nvmlInit_v2", &n->init);
  sym(l, "nvmlShutdown", &n->shutdown);
  sym(l, "nvmlErrorString", &n->error_string);
  sym(l, "nvmlSystemGetDriverVersion", &n->sys_driver_version);
  sym(l, "nvmlDeviceGetCount_v2", &n->get_count);
  sym(l, "nvmlDeviceGetHandleByIndex_v2", &n->get_handle);
  sym(l, "nvmlDeviceGetUUID", &n->get_uuid);
  sym(l, "nvmlDeviceGetName", &n->get_name);
  sym(l, "nvmlDeviceGetPciInfo_v3", &n->get_pci);
  sym(l, "nvmlDeviceGetUtilizationRates", &n->get_util);
  sym(l, "nvmlDeviceGetMemoryInfo", &n->get_mem);
  sym(l, "nvmlDeviceGetTemperature", &n->get_temp);
  sym(l, "nvmlDeviceGetPowerUsage", &n->get_power);
  sym(l, "nvmlDeviceGetEnforcedPowerLimit", &n->get_power_limit);
  sym(l, "nvmlDeviceGetCurrentClocksEventReasons", &n->get_clock_events);
  if (!n->get_clock_events) sym(l, "nvmlDeviceGetCurrentClocksThrottleReasons", &n->get_clock_events);
  sym(l, "nvmlDeviceGetEccMode", &n->get_ecc_mode);
  sym(l, "nvmlDeviceGetTotalEccErrors", &n->get_ecc_total);
  sym(l, "nvmlDeviceGetMigMode", &n->get_mig_mode);
  sym(l, "nvmlDeviceGetMaxMigDeviceCount", &n->get_mig_max);
  sym(l, "nvmlDeviceGetMigDeviceHandleByIndex", &n->get_mig_handle);
  sym(l, "nvmlDeviceGetGpuInstanceId", &n->get_gi_id);
  if (!n->init || !n->get_count || !n->get_handle) {
    snprintf(n->errmsg, sizeof n->errmsg, "NVML not available: %s lacks %s", lib_path,
             !n->init        ? "nvmlInit_v2"
             : !n->get_count ? "nvmlDeviceGetCount_v2"
                             : "nvmlDeviceGetHandleByIndex_v2");
    return n;
  }
  nvmlReturn_t rc = n->init();
  if (rc != NVML_SUCCESS) {
    snprintf(n->errmsg, sizeof n->errmsg, "NVML not available: nvmlInit_v2: %s", nverr(n, rc));
    return n;
  }
  n->ready = true;
  if (n->sys_driver_version && n->sys_driver_version(n->driver, sizeof n->driver) != NVML_SUCCESS)
    n->driver[0] = 0;
  n->driver[sizeof n->driver - 1] = 0;
  return n;
}

bool nvml_available(const struct nvml *n) { return n && n->ready; }

const char *nvml_errmsg(const struct nvml *n) { return n ? n->errmsg : "NVML not available"; }

const char *nvml_driver_version(const struct nvml *n) { return n ? n->driver : ""; }

void nvml_close(struct nvml *n) {
  if (!n) return;
  if (n->ready && n->shutdown) n->shutdown();
  if (n->lib) dlclose(n->lib);
  free(n);
}

/* read_str calls an NVML string getter into dst (NUL-terminated even if the library forgets to). */
static bool read_str(nvmlReturn_t (*fn)(nvmlDevice_t, char *, unsigned int), nvmlDevice_t d, char *dst,
                     size_t cap) {
  dst[0] = 0;
  if (!fn || fn(d, dst, (unsigned int)cap) != NVML_SUCCESS) {
    dst[0] = 0;
    return false;
  }
  dst[cap - 1] = 0;
  return true;
}

static void read_mem(struct nvml *n, nvmlDevice_t d, uint32_t *known, uint64_t *used, uint64_t *fr,
                     uint64_t *total) {
  nvmlMemory_t m;
  if (n->get_mem && n->get_mem(d, &m) == NVML_SUCCESS) {
    *used = m.used;
    *fr = m.free;
    *total = m.total;
    *known |= GPU_K_MEM_USED | GPU_K_MEM_FREE | GPU_K_MEM_TOTAL;
  }
}

static void read_mig(struct nvml *n, nvmlDevice_t d, struct gpu_info *g) {
  unsigned int cur = 0, pend = 0, max = 0;
  if (!n->get_mig_mode || n->get_mig_mode(d, &cur, &pend) != NVML_SUCCESS) return;
  g->known |= GPU_K_MIG;
  g->mig_enabled = cur == NVML_DEVICE_MIG_ENABLE;
  if (!g->mig_enabled || !n->get_mig_max || !n->get_mig_handle) return;
  if (n->get_mig_max(d, &max) != NVML_SUCCESS) return;
  for (unsigned int i = 0; i < max && g->mig_count < GPU_MIG_MAX; i++) {
    nvmlDevice_t md;
    if (n->get_mig_handle(d, i, &md) != NVML_SUCCESS) continue; /* NOT_FOUND: an empty slot */
    struct gpu_mig *m = &g->mig[g->mig_count++];
    memset(m, 0, sizeof *m);
    unsigned int gi = 0;
    if (n->get_gi_id && n->get_gi_id(md, &gi) == NVML_SUCCESS) m->gi_id = gi;
    read_str(n->get_uuid, md, m->uuid, sizeof m->uuid);
    read_mem(n, md, &m->known, &m->mem_used, &m->mem_free, &m->mem_total);
  }
}

static void read_dev(struct nvml *n, nvmlDevice_t d, unsigned idx, struct gpu_info *g) {
  memset(g, 0, sizeof *g);
  g->index = idx;
  g->known = GPU_K_INDEX;
  read_str(n->get_uuid, d, g->uuid, sizeof g->uuid);
  if (read_str(n->get_name, d, g->name, sizeof g->name)) g->known |= GPU_K_NAME;
  nvmlPciInfo_t pci;
  if (n->get_pci && n->get_pci(d, &pci) == NVML_SUCCESS) {
    pci.busId[sizeof pci.busId - 1] = 0;
    str_copy(g->pci_bus_id, sizeof g->pci_bus_id, pci.busId);
    g->known |= GPU_K_PCI;
  }
  nvmlUtilization_t u;
  if (n->get_util && n->get_util(d, &u) == NVML_SUCCESS) { /* NOT_SUPPORTED on MIG-enabled GPUs */
    g->util_gpu = u.gpu;
    g->util_mem = u.memory;
    g->known |= GPU_K_UTIL_GPU | GPU_K_UTIL_MEM;
  }
  read_mem(n, d, &g->known, &g->mem_used, &g->mem_free, &g->mem_total);
  unsigned int v;
  if (n->get_temp && n->get_temp(d, NVML_TEMPERATURE_GPU, &v) == NVML_SUCCESS) {
    g->temp_c = v;
    g->known |= GPU_K_TEMP;
  }
  if (n->get_power && n->get_power(d, &v) == NVML_SUCCESS) {
    g->power_w = v / 1000.0;
    g->known |= GPU_K_POWER;
  }
  if (n->get_power_limit && n->get_power_limit(d, &v) == NVML_SUCCESS) {
    g->power_limit_w = v / 1000.0;
    g->known |= GPU_K_POWER_LIMIT;
  }
  unsigned long long reasons;
  if (n->get_clock_events && n->get_clock_events(d, &reasons) == NVML_SUCCESS)
    gpu_decode_clock_events(g, (uint64_t)reasons);
  int cur = 0, pend = 0;
  if (n->get_ecc_mode && n->get_ecc_mode(d, &cur, &pend) == NVML_SUCCESS) {
    g->ecc_enabled = cur == NVML_FEATURE_ENABLED;
    g->known |= GPU_K_ECC_MODE;
  }
  unsigned long long ue, ce;
  if (g->ecc_enabled && n->get_ecc_total &&
      n->get_ecc_total(d, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, &ue) == NVML_SUCCESS &&
      n->get_ecc_total(d, NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_VOLATILE_ECC, &ce) == NVML_SUCCESS) {
    g->ecc_uncorrected = ue;
    g->ecc_corrected = ce;
    g->known |= GPU_K_ECC_ERRORS;
  }
  read_mig(n, d, g);
  gpu_health_eval(g);
}

/* uuid_match: does the device UUID have want (already "GPU-"/"MIG-"-prefixed) as a prefix, ignoring case? */
static bool uuid_match(const char *uuid, const char *want) {
  size_t wl = strlen(want);
  return wl > 4 && strlen(uuid) >= wl && strncasecmp(uuid, want, wl) == 0;
}

/* find_gpu returns the only device whose UUID starts with want, or -1 (none, or ambiguous). */
static int find_gpu(const struct gpu_info *all, int n, const char *want) {
  int hit = -1;
  for (int i = 0; i < n; i++) {
    if (!uuid_match(all[i].uuid, want)) continue;
    if (hit >= 0) return -1;
    hit = i;
  }
  return hit;
}

/* find_mig finds a MIG instance by its UUID ("MIG-<uuid>") or the old "MIG-GPU-<uuid>/<gi>/<ci>" form. */
static int find_mig(const struct gpu_info *all, int n, const char *tok, int *mig) {
  if (strncasecmp(tok, "MIG-GPU-", 8) == 0) {
    char parent[GPU_UUID_MAX];
    const char *slash = strchr(tok, '/');
    if (!slash || (size_t)(slash - tok - 4) >= sizeof parent) return -1;
    memcpy(parent, tok + 4, (size_t)(slash - tok - 4));
    parent[slash - tok - 4] = 0;
    uint64_t gi;
    const char *s2 = strchr(slash + 1, '/');
    if (slice_to_u64(slice_make(slash + 1, s2 ? (size_t)(s2 - slash - 1) : strlen(slash + 1)), &gi) != 0)
      return -1;
    int g = find_gpu(all, n, parent);
    if (g < 0) return -1;
    for (unsigned k = 0; k < all[g].mig_count; k++)
      if (all[g].mig[k].gi_id == gi) {
        *mig = (int)k;
        return g;
      }
    return -1;
  }
  int hit = -1;
  for (int i = 0; i < n; i++)
    for (unsigned k = 0; k < all[i].mig_count; k++)
      if (uuid_match(all[i].mig[k].uuid, tok)) {
        if (hit >= 0) return -1;
        hit = i;
        *mig = (int)k;
      }
  return hit;
}

/* resolve one CUDA_VISIBLE_DEVICES entry to a device (and MIG slot, or -1); -1 when invalid. */
static int resolve(const struct gpu_info *all, int n, struct slice t, int *mig) {
  char tok[GPU_UUID_MAX + 8];
  *mig = -1;
  t = slice_trim(t);
  if (t.len == 0 || t.len >= sizeof tok - 4) return -1;
  uint64_t idx;
  if (slice_to_u64(t, &idx) == 0) { /* an NVML index, whatever devices were skipped before it */
    for (int i = 0; i < n; i++)
      if (all[i].index == idx) return i;
    return -1;
  }
  if (slice_starts(t, "MIG-") || slice_starts(t, "mig-")) {
    memcpy(tok, t.base, t.len);
    tok[t.len] = 0;
    return find_mig(all, n, tok, mig);
  }
  size_t off = 0;
  if (!(t.len > 4 && strncasecmp(t.base, "GPU-", 4) == 0)) {
    memcpy(tok, "GPU-", 4);
    off = 4;
  }
  memcpy(tok + off, t.base, t.len);
  tok[off + t.len] = 0;
  return find_gpu(all, n, tok);
}

int nvml_read(struct nvml *n, const char *visible, struct gpu_info *out, int cap, int *count) {
  *count = 0;
  if (!nvml_available(n)) return -ENODEV;
  unsigned int total = 0;
  if (n->get_count(&total) != NVML_SUCCESS) return -EIO;
  if (total > GPU_MAX) total = GPU_MAX;
  struct gpu_info *all = xcalloc(total ? total : 1, sizeof *all);
  int nall = 0;
  for (unsigned int i = 0; i < total; i++) {
    nvmlDevice_t d;
    int rc = n->get_handle(i, &d);
    if (rc == NVML_ERROR_GPU_IS_LOST) { /* it is there and broken: a degraded entry, not a missing one */
      struct gpu_info *g = &all[nall++];
      g->index = i;
      snprintf(g->name, sizeof g->name, "GPU %u (lost by the driver)", i);
      g->known = GPU_K_NAME | GPU_K_INDEX;
      g->health_reasons = GPU_HR_LOST;
      gpu_health_eval(g);
      continue;
    }
    if (rc != NVML_SUCCESS) continue; /* e.g. NVML_ERROR_NO_PERMISSION: not ours to see */
    read_dev(n, d, i, &all[nall++]);
  }
  if (!visible) {
    for (int i = 0; i < nall && *count < cap; i++)
      out[(*count)++] = all[i];
    free(all);
    return 0;
  }
  /* CUDA semantics: entries in order; the first invalid or repeated one ends the list */
  bool used[GPU_MAX] = {false};
  int last_mig_parent = -1; /* out slot of a GPU selected through MIG entries */
  const char *p = visible;
  for (;;) {
    const char *comma = strchr(p, ',');
    struct slice t = slice_make(p, comma ? (size_t)(comma - p) : strlen(p));
    int mig, g = resolve(all, nall, t, &mig);
    if (g < 0) break;
    if (mig < 0) {
      if (used[g] || *count >= cap) break;
      used[g] = true;
      out[(*count)++] = all[g];
      last_mig_parent = -1;
    } else {
      /* consecutive MIG entries of one GPU gather into one entry holding only the listed instances */
      struct gpu_info *o;
      if (last_mig_parent >= 0 && strcmp(out[last_mig_parent].uuid, all[g].uuid) == 0) {
        o = &out[last_mig_parent];
      } else {
        if (used[g] || *count >= cap) break;
        used[g] = true;
        last_mig_parent = *count;
        o = &out[(*count)++];
        *o = all[g];
        o->mig_count = 0;
      }
      bool dup = false;
      for (unsigned k = 0; k < o->mig_count; k++)
        dup |= o->mig[k].gi_id == all[g].mig[mig].gi_id;
      if (dup || o->mig_count >= GPU_MIG_MAX) break;
      o->mig[o->mig_count++] = all[g].mig[mig];
    }
    if (!comma) break;
    p = comma + 1;
  }
  free(all);
  return 0;
}
