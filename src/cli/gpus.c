/* `infermesh gpus`: read GPUs through NVML (or scrape a dcgm-exporter) and print them. */
#include "cli/gpus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/dcgm.h"
#include "adapter/gpu_json.h"
#include "adapter/nvml.h"
#include "cli/http_get.h"
#include "core/err.h"

static void usage(FILE *f) {
  fprintf(f, "usage: infermesh gpus [--json] [--dcgm URL]\n\n"
             "  --json        print JSON instead of a table\n"
             "  --dcgm URL    read a dcgm-exporter (e.g. http://host:9400/metrics) instead of local NVML\n\n"
             "Local GPUs come from NVML (libnvidia-ml.so.1, or INFERMESH_NVML_LIB), limited to "
             "CUDA_VISIBLE_DEVICES.\n");
}

static void fmt_u(char *dst, size_t cap, bool known, unsigned v, const char *unit) {
  if (known)
    snprintf(dst, cap, "%u%s", v, unit);
  else
    str_copy(dst, cap, "-");
}

static void print_table(const struct gpu_info *g, int n) {
  printf("%-3s %-40s %-24s %5s %17s %5s %15s %-8s %s\n", "IDX", "UUID", "NAME", "UTIL", "MEMORY GiB", "TEMP",
         "POWER W", "MIG", "HEALTH");
  for (int i = 0; i < n; i++) {
    const struct gpu_info *x = &g[i];
    char idx[16], util[16], mem[40], temp[16], pw[40], mig[16];
    fmt_u(idx, sizeof idx, x->known & GPU_K_INDEX, x->index, "");
    fmt_u(util, sizeof util, x->known & GPU_K_UTIL_GPU, x->util_gpu, "%");
    fmt_u(temp, sizeof temp, x->known & GPU_K_TEMP, x->temp_c, "C");
    if ((x->known & GPU_K_MEM_USED) && (x->known & GPU_K_MEM_TOTAL))
      snprintf(mem, sizeof mem, "%.1f/%.1f", x->mem_used / 1073741824.0, x->mem_total / 1073741824.0);
    else
      str_copy(mem, sizeof mem, "-");
    if (x->known & GPU_K_POWER)
      snprintf(pw, sizeof pw, (x->known & GPU_K_POWER_LIMIT) ? "%.0f/%.0f" : "%.0f/-", x->power_w,
               x->power_limit_w);
    else
      str_copy(pw, sizeof pw, "-");
    if (x->known & GPU_K_MIG)
      snprintf(mig, sizeof mig, x->mig_enabled ? "on(%u)" : "off", x->mig_count);
    else
      str_copy(mig, sizeof mig, "-");
    printf("%-3s %-40s %-24.24s %5s %17s %5s %15s %-8s %s", idx, x->uuid[0] ? x->uuid : "-",
           (x->known & GPU_K_NAME) ? x->name : "-", util, mem, temp, pw, mig, gpu_health_str(x->health));
    if (x->health_reasons) {
      static const char *const why[] = {"throttling", "ecc-errors", "hot", "xid", "lost by the driver"};
      const char *sep = " (";
      for (unsigned b = 0; b < sizeof why / sizeof why[0]; b++)
        if (x->health_reasons & (1u << b)) {
          printf("%s%s", sep, why[b]);
          sep = ", ";
        }
      putchar(')');
    }
    putchar('\n');
    for (unsigned k = 0; k < x->mig_count; k++) {
      const struct gpu_mig *m = &x->mig[k];
      printf("    └ MIG gi=%u %s %s", m->gi_id, m->uuid[0] ? m->uuid : "", m->profile);
      if ((m->known & GPU_K_MEM_USED) && (m->known & GPU_K_MEM_TOTAL))
        printf(" mem %.1f/%.1f GiB", m->mem_used / 1073741824.0, m->mem_total / 1073741824.0);
      else if (m->known & GPU_K_MEM_FREE)
        printf(" free %.1f GiB", m->mem_free / 1073741824.0);
      if (m->known & GPU_K_GR_ACTIVE) printf(" gr %.0f%%", 100 * m->gr_active);
      putchar('\n');
    }
  }
}

/* split_url turns "http://h:p/path" into base "http://h:p" and path ("/metrics" when none). */
static int split_url(const char *url, char *base, size_t bcap, const char **path) {
  const char *s = strstr(url, "://");
  const char *slash = strchr(s ? s + 3 : url, '/');
  size_t bl = slash ? (size_t)(slash - url) : strlen(url);
  if (bl == 0 || bl >= bcap) return -EINVAL;
  memcpy(base, url, bl);
  base[bl] = 0;
  *path = slash && slash[1] ? slash : "/metrics";
  return 0;
}

static int from_dcgm(const char *url, bool as_json) {
  char base[512], err[256];
  const char *path;
  if (split_url(url, base, sizeof base, &path) != 0) {
    fprintf(stderr, "infermesh gpus: bad URL '%s'\n", url);
    return 2;
  }
  struct buf body = {0};
  int status = 0;
  if (http_get(base, path, 5000, &status, &body, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh gpus: %s\n", err);
    buf_free(&body);
    return 1;
  }
  if (status != 200) {
    fprintf(stderr, "infermesh gpus: %s%s answered %d\n", base, path, status);
    buf_free(&body);
    return 1;
  }
  static struct gpu_info g[GPU_MAX];
  int n = 0;
  struct prom_error perr;
  int rc = dcgm_parse(body.base ? body.base : "", body.len, g, GPU_MAX, &n, &perr);
  buf_free(&body);
  if (rc != 0) {
    fprintf(stderr, "infermesh gpus: %s%s is not a Prometheus exposition: line %d: %s\n", base, path,
            perr.line, perr.msg);
    return 1;
  }
  if (as_json) {
    struct buf out = {0};
    gpus_json(&out, "dcgm-exporter", true, NULL, NULL, g, n);
    printf("%s\n", out.base);
    buf_free(&out);
  } else if (n == 0) {
    printf("%s%s reports no GPU\n", base, path);
  } else {
    print_table(g, n);
  }
  return 0;
}

int gpus_main(int argc, char **argv) {
  bool as_json = false;
  const char *dcgm = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      as_json = true;
    else if (strcmp(argv[i], "--dcgm") == 0 && i + 1 < argc)
      dcgm = argv[++i];
    else if (strncmp(argv[i], "--dcgm=", 7) == 0)
      dcgm = argv[i] + 7;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "infermesh gpus: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (dcgm) return from_dcgm(dcgm, as_json);

  struct nvml *nv = nvml_open(getenv("INFERMESH_NVML_LIB"));
  static struct gpu_info g[GPU_MAX];
  int n = 0, rc = 0;
  if (nvml_available(nv)) {
    rc = nvml_read(nv, getenv("CUDA_VISIBLE_DEVICES"), g, GPU_MAX, &n);
    if (rc != 0) {
      fprintf(stderr, "infermesh gpus: reading NVML failed: %s\n", im_strerror(rc));
      nvml_close(nv);
      return 1;
    }
  }
  if (as_json) {
    struct buf out = {0};
    gpus_json(&out, "nvml", nvml_available(nv), nvml_errmsg(nv), nvml_driver_version(nv), g, n);
    printf("%s\n", out.base);
    buf_free(&out);
  } else if (!nvml_available(nv)) {
    printf("no NVIDIA GPU here (%s)\n", nvml_errmsg(nv));
  } else if (n == 0) {
    printf("no visible NVIDIA GPU (NVML driver %s%s%s)\n", nvml_driver_version(nv),
           getenv("CUDA_VISIBLE_DEVICES") ? ", CUDA_VISIBLE_DEVICES=" : "",
           getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "");
  } else {
    print_table(g, n);
  }
  nvml_close(nv);
  return 0;
}
