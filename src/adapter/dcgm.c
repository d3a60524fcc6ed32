/* dcgm-exporter scrape → gpu_info[]: one entry per GPU UUID, MIG instances from the GPU_I_ID label. */
#include "adapter/dcgm.h"

#include <math.h>
#include <string.h>

#include "core/slice.h"

#define MIB (1024ull * 1024ull)

struct ctx {
  struct gpu_info *out;
  int cap, n;
};

/* to_u64 accepts finite, non-negative values that fit; anything else is ignored as garbage. */
static bool to_u64(double v, uint64_t *out) {
  if (!isfinite(v) || v < 0 || v >= 18446744073709549568.0) return false;
  *out = (uint64_t)v;
  return true;
}

/* label copies the unescaped value of a label whose name equals name ignoring case; false when absent/empty.
 */
static bool label(const struct prom_sample *s, const char *name, char *dst, size_t cap) {
  for (int i = 0; i < s->nlabels; i++)
    if (slice_eq_nocase(s->labels[i].name, name))
      return prom_label_unescape(s->labels[i].value, dst, cap) > 0;
  return false;
}

static struct gpu_info *entry(struct ctx *c, const char *uuid, bool has_idx, unsigned idx) {
  for (int i = 0; i < c->n; i++) {
    struct gpu_info *g = &c->out[i];
    if (uuid[0] ? strcmp(g->uuid, uuid) == 0 : (!g->uuid[0] && (g->known & GPU_K_INDEX) && g->index == idx))
      return g;
  }
  if (c->n >= c->cap) return NULL;
  struct gpu_info *g = &c->out[c->n++];
  memset(g, 0, sizeof *g);
  str_copy(g->uuid, sizeof g->uuid, uuid);
  if (has_idx) {
    g->index = idx;
    g->known |= GPU_K_INDEX;
  }
  return g;
}

static struct gpu_mig *mig_entry(struct gpu_info *g, unsigned gi) {
  for (unsigned i = 0; i < g->mig_count; i++)
    if (g->mig[i].gi_id == gi) return &g->mig[i];
  if (g->mig_count >= GPU_MIG_MAX) return NULL;
  struct gpu_mig *m = &g->mig[g->mig_count++];
  memset(m, 0, sizeof *m);
  m->gi_id = gi;
  return m;
}

static int sample_cb(const struct prom_sample *s, void *arg) {
  struct ctx *c = arg;
  struct slice nm = s->name;
  if (!slice_starts(nm, "DCGM_FI_")) return 0;
  char uuid[GPU_UUID_MAX] = "", tmp[64];
  uint64_t idx = 0, gi = 0;
  bool has_idx =
      label(s, "gpu", tmp, sizeof tmp) && slice_to_u64(slice_cstr(tmp), &idx) == 0 && idx <= 0xffffffffu;
  if (!label(s, "uuid", uuid, sizeof uuid) && !has_idx) return 0; /* cannot tell which GPU */
  struct gpu_info *g = entry(c, uuid, has_idx, (unsigned)idx);
  if (!g) return 0;
  if (!(g->known & GPU_K_NAME) && label(s, "modelName", g->name, sizeof g->name)) g->known |= GPU_K_NAME;
  if (!(g->known & GPU_K_PCI) && label(s, "pci_bus_id", g->pci_bus_id, sizeof g->pci_bus_id))
    g->known |= GPU_K_PCI;
  struct gpu_mig *m = NULL;
  if (label(s, "GPU_I_ID", tmp, sizeof tmp) && slice_to_u64(slice_cstr(tmp), &gi) == 0 && gi <= 0xffffffffu) {
    g->known |= GPU_K_MIG;
    g->mig_enabled = true;
    m = mig_entry(g, (unsigned)gi);
    if (!m) return 0;
    if (!m->profile[0]) label(s, "GPU_I_PROFILE", m->profile, sizeof m->profile);
  }
  uint32_t *known = m ? &m->known : &g->known;
  double v = s->value;
  uint64_t u;
  if (slice_eqz(nm, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")) {
    if (!isfinite(v) || v < 0) return 0;
    *(m ? &m->gr_active : &g->gr_active) = v;
    *known |= GPU_K_GR_ACTIVE;
    return 0;
  }
  if (slice_eqz(nm, "DCGM_FI_DEV_FB_USED") || slice_eqz(nm, "DCGM_FI_DEV_FB_FREE") ||
      slice_eqz(nm, "DCGM_FI_DEV_FB_TOTAL")) {
    if (!to_u64(v, &u) || u > UINT64_MAX / MIB) return 0;
    char k = nm.base[sizeof "DCGM_FI_DEV_FB_" - 1];
    uint64_t *dst = k == 'U'   ? (m ? &m->mem_used : &g->mem_used)
                    : k == 'F' ? (m ? &m->mem_free : &g->mem_free)
                               : (m ? &m->mem_total : &g->mem_total);
    *dst = u * MIB;
    *known |= k == 'U' ? GPU_K_MEM_USED : k == 'F' ? GPU_K_MEM_FREE : GPU_K_MEM_TOTAL;
    return 0;
  }
  if (m) return 0; /* other per-instance fields have no home yet */
  if (slice_eqz(nm, "DCGM_FI_DEV_POWER_USAGE") || slice_eqz(nm, "DCGM_FI_DEV_POWER_MGMT_LIMIT")) {
    if (!isfinite(v) || v < 0) return 0;
    bool lim = slice_eqz(nm, "DCGM_FI_DEV_POWER_MGMT_LIMIT");
    *(lim ? &g->power_limit_w : &g->power_w) = v;
    g->known |= lim ? GPU_K_POWER_LIMIT : GPU_K_POWER;
    return 0;
  }
  if (!to_u64(v, &u)) return 0;
  unsigned u32 = u > 0xffffffffu ? 0xffffffffu : (unsigned)u;
  if (slice_eqz(nm, "DCGM_FI_DEV_GPU_UTIL")) {
    g->util_gpu = u32;
    g->known |= GPU_K_UTIL_GPU;
  } else if (slice_eqz(nm, "DCGM_FI_DEV_MEM_COPY_UTIL")) {
    g->util_mem = u32;
    g->known |= GPU_K_UTIL_MEM;
  } else if (slice_eqz(nm, "DCGM_FI_DEV_GPU_TEMP")) {
    g->temp_c = u32;
    g->known |= GPU_K_TEMP;
  } else if (slice_eqz(nm, "DCGM_FI_DEV_XID_ERRORS")) {
    g->xid_last = u32;
    g->known |= GPU_K_XID;
  } else if (slice_eqz(nm, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")) {
    g->ecc_uncorrected = u;
    g->known |= GPU_K_ECC_ERRORS; /* with SBE missing, corrected stays 0 */
  } else if (slice_eqz(nm, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL")) {
    g->ecc_corrected = u;
  } else if (slice_eqz(nm, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS") ||
             slice_eqz(nm, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS")) {
    gpu_decode_clock_events(g, u);
  }
  return 0;
}

/* derive fills the third of used/free/total when two are known. */
static void derive(uint32_t *known, uint64_t *used, uint64_t *fr, uint64_t *total) {
  uint32_t k = *known & (GPU_K_MEM_USED | GPU_K_MEM_FREE | GPU_K_MEM_TOTAL);
  if (k == (GPU_K_MEM_USED | GPU_K_MEM_FREE) && *used <= UINT64_MAX - *fr) {
    *total = *used + *fr;
    *known |= GPU_K_MEM_TOTAL;
  } else if (k == (GPU_K_MEM_USED | GPU_K_MEM_TOTAL) && *total >= *used) {
    *fr = *total - *used;
    *known |= GPU_K_MEM_FREE;
  } else if (k == (GPU_K_MEM_FREE | GPU_K_MEM_TOTAL) && *total >= *fr) {
    *used = *total - *fr;
    *known |= GPU_K_MEM_USED;
  }
}

int dcgm_parse(const char *text, size_t len, struct gpu_info *out, int cap, int *count,
               struct prom_error *err) {
  struct ctx c = {out, cap < 0 ? 0 : cap, 0};
  *count = 0;
  int rc = prom_parse(text, len, sample_cb, &c, err);
  if (rc != 0) return rc;
  for (int i = 0; i < c.n; i++) {
    struct gpu_info *g = &out[i];
    derive(&g->known, &g->mem_used, &g->mem_free, &g->mem_total);
    for (unsigned k = 0; k < g->mig_count; k++)
      derive(&g->mig[k].known, &g->mig[k].mem_used, &g->mig[k].mem_free, &g->mig[k].mem_total);
    gpu_health_eval(g);
  }
  *count = c.n;
  return 0;
}
