/* A fake libnvidia-ml for the tests: two canned GPUs (one MIG-enabled, one throttling with ECC errors). */
/* Built twice: as is, and with -DFAKE_NVML_LEGACY, which omits nvmlDeviceGetCurrentClocksEventReasons
 * (exporting the older ...ThrottleReasons instead), nvmlDeviceGetEnforcedPowerLimit and every MIG entry
 * point, like an old driver. FAKE_NVML_INIT_FAIL=1 in the environment makes nvmlInit_v2 fail
 * (NVML_ERROR_DRIVER_NOT_LOADED). */
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
#define OK 0
#define E_UNINIT 1
#define E_INVALID 2
#define E_NOT_SUPPORTED 3
#define E_NOT_FOUND 6
#define E_INSUFFICIENT 7
#define E_DRIVER_NOT_LOADED 9

struct fake_mig {
  unsigned gi;
  const char *uuid;
  unsigned long long total, used;
};

struct fake_dev {
  const char *uuid, *name, *bus;
  int util_ok;
  unsigned util_gpu, util_mem;
  unsigned long long mem_total, mem_used;
  unsigned temp, power_mw, limit_mw;
  unsigned long long reasons;
  int ecc_on;
  unsigned long long ecc_ue, ecc_ce;
  unsigned mig_mode;
  struct fake_mig mig[7]; /* slots; uuid NULL = empty */
};

#define GIB (1024ull * 1024 * 1024)

/* The MIG devices' handles point at these; the GPUs' handles point at devs[]. */
static struct fake_dev devs[2] = {
    {"GPU-11111111-2222-3333-4444-555555555555",
     "NVIDIA A100-SXM4-80GB",
     "00000000:07:00.0",
     0,
     0,
     0,
     80 * GIB,
     3 * GIB,
     41,
     88000,
     400000,
     0x1,
     1,
     0,
     0,
     1,
     {{1, "MIG-aaaaaaaa-0000-0000-0000-000000000001", 10 * GIB, 1 * GIB},
      {0, NULL, 0, 0},
      {5, "MIG-bbbbbbbb-0000-0000-0000-000000000002", 20 * GIB, 2 * GIB}}},
    {"GPU-99999999-8888-7777-6666-555555555555",
     "NVIDIA H100 80GB HBM3",
     "00000000:0A:00.0",
     1,
     97,
     60,
     80 * GIB,
     70 * GIB,
     89,
     699123,
     700000,
     0x44,
     1,
     2,
     17,
     0,
     {{0, NULL, 0, 0}}},
};

static int inited;

static int is_dev(void *h) { return h == &devs[0] || h == &devs[1]; }
static struct fake_mig *as_mig(void *h) {
  for (int d = 0; d < 2; d++)
    for (int i = 0; i < 7; i++)
      if (h == &devs[d].mig[i] && devs[d].mig[i].uuid) return &devs[d].mig[i];
  return NULL;
}

static nvmlReturn_t put_str(char *dst, unsigned len, const char *s) {
  size_t n = strlen(s);
  if (!dst || len <= n) return E_INSUFFICIENT;
  memcpy(dst, s, n + 1);
  return OK;
}

nvmlReturn_t nvmlInit_v2(void) {
  const char *f = getenv("FAKE_NVML_INIT_FAIL");
  if (f && *f == '1') return E_DRIVER_NOT_LOADED;
  inited = 1;
  return OK;
}
nvmlReturn_t nvmlShutdown(void) {
  inited = 0;
  return OK;
}
const char *nvmlErrorString(nvmlReturn_t r) {
  return r == E_DRIVER_NOT_LOADED ? "Driver Not Loaded"
         : r == E_NOT_SUPPORTED   ? "Not Supported"
                                  : "Unknown Error";
}
nvmlReturn_t nvmlSystemGetDriverVersion(char *v, unsigned len) { return put_str(v, len, "999.99.99-fake"); }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *n) {
  if (!inited) return E_UNINIT;
  *n = 2;
  return OK;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) {
  if (!inited) return E_UNINIT;
  if (i >= 2) return E_INVALID;
  /* FAKE_NVML_LOST=i: device i fell off the bus (NVML_ERROR_GPU_IS_LOST); FAKE_NVML_DENIED=i: it is not ours
   * to see (NVML_ERROR_NO_PERMISSION) */
  const char *lost = getenv("FAKE_NVML_LOST"), *denied = getenv("FAKE_NVML_DENIED");
  if (lost && *lost && strtoul(lost, NULL, 10) == i) return 15;
  if (denied && *denied && strtoul(denied, NULL, 10) == i) return 4;
  *h = &devs[i];
  return OK;
}
nvmlReturn_t nvmlDeviceGetUUID(void *h, char *uuid, unsigned len) {
  struct fake_mig *m = as_mig(h);
  if (m) return put_str(uuid, len, m->uuid);
  if (!is_dev(h)) return E_INVALID;
  return put_str(uuid, len, ((struct fake_dev *)h)->uuid);
}
nvmlReturn_t nvmlDeviceGetName(void *h, char *name, unsigned len) {
  if (!is_dev(h)) return E_INVALID;
  return put_str(name, len, ((struct fake_dev *)h)->name);
}

typedef struct {
  char busIdLegacy[16];
  unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} pci_t;
nvmlReturn_t nvmlDeviceGetPciInfo_v3(void *h, pci_t *p) {
  if (!is_dev(h)) return E_INVALID;
  memset(p, 0, sizeof *p);
  return put_str(p->busId, sizeof p->busId, ((struct fake_dev *)h)->bus);
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(void *h, unsigned *u) {
  if (!is_dev(h)) return E_INVALID;
  struct fake_dev *d = h;
  if (!d->util_ok) return E_NOT_SUPPORTED;
  u[0] = d->util_gpu;
  u[1] = d->util_mem;
  return OK;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(void *h, unsigned long long *m) {
  struct fake_mig *mg = as_mig(h);
  if (mg) {
    m[0] = mg->total;
    m[1] = mg->total - mg->used;
    m[2] = mg->used;
    return OK;
  }
  if (!is_dev(h)) return E_INVALID;
  struct fake_dev *d = h;
  m[0] = d->mem_total;
  m[1] = d->mem_total - d->mem_used;
  m[2] = d->mem_used;
  return OK;
}
nvmlReturn_t nvmlDeviceGetTemperature(void *h, int sensor, unsigned *t) {
  if (!is_dev(h) || sensor != 0) return E_INVALID;
  *t = ((struct fake_dev *)h)->temp;
  return OK;
}
nvmlReturn_t nvmlDeviceGetPowerUsage(void *h, unsigned *mw) {
  if (!is_dev(h)) return E_INVALID;
  *mw = ((struct fake_dev *)h)->power_mw;
  return OK;
}
nvmlReturn_t nvmlDeviceGetEccMode(void *h, int *cur, int *pend) {
  if (!is_dev(h)) return E_INVALID;
  *cur = *pend = ((struct fake_dev *)h)->ecc_on;
  return OK;
}
nvmlReturn_t nvmlDeviceGetTotalEccErrors(void *h, int type, int counter, unsigned long long *n) {
  if (!is_dev(h) || counter != 0) return E_INVALID;
  *n = type == 1 ? ((struct fake_dev *)h)->ecc_ue : ((struct fake_dev *)h)->ecc_ce;
  return OK;
}

#ifdef FAKE_NVML_LEGACY
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(void *h, unsigned long long *r) {
  if (!is_dev(h)) return E_INVALID;
  *r = ((struct fake_dev *)h)->reasons;
  return OK;
}
#else
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(void *h, unsigned long long *r) {
  if (!is_dev(h)) return E_INVALID;
  *r = ((struct fake_dev *)h)->reasons;
  return OK;
}
nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(void *h, unsigned *mw) {
  if (!is_dev(h)) return E_INVALID;
  *mw = ((struct fake_dev *)h)->limit_mw;
  return OK;
}
nvmlReturn_t nvmlDeviceGetMigMode(void *h, unsigned *cur, unsigned *pend) {
  if (!is_dev(h)) return E_INVALID;
  *cur = *pend = ((struct fake_dev *)h)->mig_mode;
  return OK;
}
nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(void *h, unsigned *n) {
  if (!is_dev(h)) return E_INVALID;
  *n = ((struct fake_dev *)h)->mig_mode ? 7 : 0;
  return OK;
}
nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(void *h, unsigned i, void **mh) {
  if (!is_dev(h)) return E_INVALID;
  struct fake_dev *d = h;
  if (!d->mig_mode) return E_NOT_SUPPORTED;
  if (i >= 7) return E_INVALID;
  if (!d->mig[i].uuid) return E_NOT_FOUND;
  *mh = &d->mig[i];
  return OK;
}
nvmlReturn_t nvmlDeviceGetGpuInstanceId(void *h, unsigned *id) {
  struct fake_mig *m = as_mig(h);
  if (!m) return E_INVALID;
  *id = m->gi;
  return OK;
}
#endif
