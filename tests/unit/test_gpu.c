/* Tests for GPU telemetry: NVML through a fake libnvidia-ml, CUDA_VISIBLE_DEVICES, dcgm-exporter, health,
 * CLI. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include <jansson.h>

#include "adapter/dcgm.h"
#include "adapter/nvml.h"
#include "adapter/gpu_json.h"
#include "cli/gpus.h"
#include "core/err.h"

#ifndef IM_FAKE_NVML
#error "IM_FAKE_NVML (path of the fake libnvidia-ml.so.1) must be defined by the build"
#endif

#define GIB (1024ull * 1024 * 1024)
#define MIB (1024ull * 1024)
#define UUID0 "GPU-11111111-2222-3333-4444-555555555555"
#define UUID1 "GPU-99999999-8888-7777-6666-555555555555"
#define MIG_A "MIG-aaaaaaaa-0000-0000-0000-000000000001"
#define MIG_B "MIG-bbbbbbbb-0000-0000-0000-000000000002"

#define assert_dbl(got, want)                                                                                \
  do {                                                                                                       \
    double got_ = (got), want_ = (want);                                                                     \
    if (!(got_ == want_)) fail_msg("%s = %.17g, want %.17g", #got, got_, want_);                             \
  } while (0)

static struct gpu_info g[GPU_MAX];

/* read_visible opens the fake library, reads under `visible` and closes it; returns the count. */
static int read_visible(const char *lib, const char *visible) {
  struct nvml *n = nvml_open(lib);
  assert_true(nvml_available(n));
  int cnt = -1;
  memset(g, 0xA5, sizeof g);
  assert_int_equal(nvml_read(n, visible, g, GPU_MAX, &cnt), 0);
  nvml_close(n);
  return cnt;
}

static void test_nvml_values(void **state) {
  struct nvml *n = nvml_open(IM_FAKE_NVML);
  assert_true(nvml_available(n));
  assert_string_equal(nvml_errmsg(n), "");
  assert_string_equal(nvml_driver_version(n), "999.99.99-fake");
  int cnt = 0;
  assert_int_equal(nvml_read(n, NULL, g, GPU_MAX, &cnt), 0);
  nvml_close(n);
  assert_int_equal(cnt, 2);

  /* GPU 0: MIG-enabled A100; utilization NOT_SUPPORTED */
  struct gpu_info *a = &g[0];
  assert_int_equal(a->index, 0);
  assert_string_equal(a->uuid, UUID0);
  assert_string_equal(a->name, "NVIDIA A100-SXM4-80GB");
  assert_string_equal(a->pci_bus_id, "00000000:07:00.0");
  assert_false(a->known & (GPU_K_UTIL_GPU | GPU_K_UTIL_MEM));
  assert_true(a->known & GPU_K_MEM_USED && a->known & GPU_K_MEM_TOTAL && a->known & GPU_K_MEM_FREE);
  assert_int_equal(a->mem_total, 80 * GIB);
  assert_int_equal(a->mem_used, 3 * GIB);
  assert_int_equal(a->mem_free, 77 * GIB);
  assert_int_equal(a->temp_c, 41);
  assert_dbl(a->power_w, 88.0);
  assert_dbl(a->power_limit_w, 400.0);
  assert_true(a->known & GPU_K_CLOCK_EVENTS);
  assert_int_equal(a->clock_events, GPU_CE_IDLE);
  assert_true(a->thr_idle);
  assert_false(a->thr_thermal || a->thr_power_cap || a->thr_hw_slowdown);
  assert_true(a->known & GPU_K_ECC_MODE && a->ecc_enabled);
  assert_true(a->known & GPU_K_ECC_ERRORS);
  assert_int_equal(a->ecc_uncorrected, 0);
  assert_int_equal(a->ecc_corrected, 0);
  assert_true(a->known & GPU_K_MIG && a->mig_enabled);
  assert_int_equal(a->mig_count, 2); /* slot 1 of 7 is empty (NOT_FOUND) */
  assert_int_equal(a->mig[0].gi_id, 1);
  assert_string_equal(a->mig[0].uuid, MIG_A);
  assert_int_equal(a->mig[0].mem_total, 10 * GIB);
  assert_int_equal(a->mig[0].mem_used, 1 * GIB);
  assert_int_equal(a->mig[1].gi_id, 5);
  assert_string_equal(a->mig[1].uuid, MIG_B);
  assert_int_equal(a->mig[1].mem_total, 20 * GIB);
  assert_int_equal(a->mig[1].mem_free, 18 * GIB);
  assert_int_equal(a->health, GPU_HEALTH_OK);
  assert_int_equal(a->health_reasons, 0);

  /* GPU 1: H100, hot, thermally throttled, uncorrected ECC errors */
  struct gpu_info *b = &g[1];
  assert_int_equal(b->index, 1);
  assert_string_equal(b->uuid, UUID1);
  assert_string_equal(b->name, "NVIDIA H100 80GB HBM3");
  assert_string_equal(b->pci_bus_id, "00000000:0A:00.0");
  assert_true(b->known & GPU_K_UTIL_GPU);
  assert_int_equal(b->util_gpu, 97);
  assert_int_equal(b->util_mem, 60);
  assert_int_equal(b->mem_used, 70 * GIB);
  assert_int_equal(b->temp_c, 89);
  assert_dbl(b->power_w, 699.123);
  assert_dbl(b->power_limit_w, 700.0);
  assert_int_equal(b->clock_events, GPU_CE_SW_POWER_CAP | GPU_CE_HW_THERMAL);
  assert_true(b->thr_thermal && b->thr_power_cap && b->thr_hw_slowdown);
  assert_false(b->thr_idle);
  assert_int_equal(b->ecc_uncorrected, 2);
  assert_int_equal(b->ecc_corrected, 17);
  assert_true(b->known & GPU_K_MIG);
  assert_false(b->mig_enabled);
  assert_int_equal(b->mig_count, 0);
  assert_int_equal(b->health, GPU_HEALTH_DEGRADED);
  assert_int_equal(b->health_reasons, GPU_HR_THROTTLE | GPU_HR_ECC | GPU_HR_HOT);
}

static void test_nvml_visible_devices(void **state) {
  /* unset: all, NVML order */
  assert_int_equal(read_visible(IM_FAKE_NVML, NULL), 2);
  assert_string_equal(g[0].uuid, UUID0);
  /* indices, in the listed order */
  assert_int_equal(read_visible(IM_FAKE_NVML, "1,0"), 2);
  assert_string_equal(g[0].uuid, UUID1);
  assert_string_equal(g[1].uuid, UUID0);
  assert_int_equal(g[0].index, 1); /* index stays the physical one */
  assert_int_equal(read_visible(IM_FAKE_NVML, " 1 "), 1);
  assert_string_equal(g[0].uuid, UUID1);
  /* full UUIDs, without "GPU-", unique prefixes, any case */
  assert_int_equal(read_visible(IM_FAKE_NVML, UUID1 "," UUID0), 2);
  assert_string_equal(g[0].uuid, UUID1);
  assert_string_equal(g[1].uuid, UUID0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "99999999-8888-7777-6666-555555555555"), 1);
  assert_string_equal(g[0].uuid, UUID1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "GPU-1111"), 1);
  assert_string_equal(g[0].uuid, UUID0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "gpu-9999,0"), 2);
  assert_string_equal(g[0].uuid, UUID1);
  /* invalid entries end the list, as in CUDA */
  assert_int_equal(read_visible(IM_FAKE_NVML, "0,7,1"), 1);
  assert_string_equal(g[0].uuid, UUID0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "GPU-deadbeef,0"), 0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "-1"), 0);
  assert_int_equal(read_visible(IM_FAKE_NVML, ""), 0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "GPU-"), 0);  /* prefix of both: ambiguous */
  assert_int_equal(read_visible(IM_FAKE_NVML, "1,1,0"), 1); /* a repeat ends the list */
  assert_int_equal(read_visible(IM_FAKE_NVML, "1,,0"), 1);  /* so does an empty entry */
  assert_int_equal(read_visible(IM_FAKE_NVML, "0x1"), 0);
  /* MIG UUIDs select the parent GPU with just those instances */
  assert_int_equal(read_visible(IM_FAKE_NVML, MIG_B), 1);
  assert_string_equal(g[0].uuid, UUID0);
  assert_int_equal(g[0].mig_count, 1);
  assert_int_equal(g[0].mig[0].gi_id, 5);
  assert_int_equal(read_visible(IM_FAKE_NVML, MIG_B "," MIG_A ",1"), 2);
  assert_int_equal(g[0].mig_count, 2);
  assert_int_equal(g[0].mig[0].gi_id, 5);
  assert_int_equal(g[0].mig[1].gi_id, 1);
  assert_string_equal(g[1].uuid, UUID1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "MIG-GPU-11111111-2222-3333-4444-555555555555/1/0"), 1);
  assert_int_equal(g[0].mig_count, 1);
  assert_int_equal(g[0].mig[0].gi_id, 1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "MIG-GPU-11111111-2222-3333-4444-555555555555/3/0"), 0);
  assert_int_equal(read_visible(IM_FAKE_NVML, "MIG-cccc"), 0);
  /* cap is honoured */
  struct nvml *n = nvml_open(IM_FAKE_NVML);
  int cnt = -1;
  assert_int_equal(nvml_read(n, "1,0", g, 1, &cnt), 0);
  assert_int_equal(cnt, 1);
  assert_string_equal(g[0].uuid, UUID1);
  nvml_close(n);
}

/* A GPU the driver lost is shown degraded, not left out; one we may not see is left out, and indices keep
 * naming the physical devices. */
static void test_nvml_lost_and_hidden_devices(void **state) {
  setenv("FAKE_NVML_LOST", "0", 1);
  assert_int_equal(read_visible(IM_FAKE_NVML, NULL), 2);
  assert_int_equal(g[0].index, 0);
  assert_int_equal(g[0].health, GPU_HEALTH_DEGRADED);
  assert_int_equal(g[0].health_reasons, GPU_HR_LOST);
  assert_string_equal(g[0].uuid, "");
  assert_string_equal(g[1].uuid, UUID1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "0"), 1); /* selected by index, still lost */
  assert_int_equal(g[0].health_reasons, GPU_HR_LOST);
  unsetenv("FAKE_NVML_LOST");
  setenv("FAKE_NVML_DENIED", "0", 1);
  assert_int_equal(read_visible(IM_FAKE_NVML, NULL), 1);
  assert_string_equal(g[0].uuid, UUID1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "1"), 1); /* index 1 is still device 1, not the 2nd entry */
  assert_string_equal(g[0].uuid, UUID1);
  assert_int_equal(read_visible(IM_FAKE_NVML, "0"), 0); /* not visible to us: an invalid entry */
  unsetenv("FAKE_NVML_DENIED");
}

static void test_nvml_missing_library(void **state) {
  struct nvml *n = nvml_open("/nonexistent/libnvidia-ml.so.1");
  assert_false(nvml_available(n));
  assert_non_null(strstr(nvml_errmsg(n), "NVML not available"));
  assert_non_null(strstr(nvml_errmsg(n), "/nonexistent/libnvidia-ml.so.1"));
  assert_string_equal(nvml_driver_version(n), "");
  int cnt = 5;
  assert_int_equal(nvml_read(n, NULL, g, GPU_MAX, &cnt), -ENODEV);
  assert_int_equal(cnt, 0);
  nvml_close(n);
  nvml_close(NULL);

  /* a library that is not NVML at all */
  n = nvml_open("libm.so.6");
  assert_false(nvml_available(n));
  assert_non_null(strstr(nvml_errmsg(n), "nvmlInit_v2"));
  nvml_close(n);

  /* the driver is not loaded: nvmlInit_v2 fails */
  setenv("FAKE_NVML_INIT_FAIL", "1", 1);
  n = nvml_open(IM_FAKE_NVML);
  unsetenv("FAKE_NVML_INIT_FAIL");
  assert_false(nvml_available(n));
  assert_string_equal(nvml_errmsg(n), "NVML not available: nvmlInit_v2: Driver Not Loaded");
  nvml_close(n);
}

static void test_nvml_missing_symbols(void **state) {
  /* an old driver: ThrottleReasons instead of ClocksEventReasons, no power limit, no MIG entry points */
  assert_int_equal(read_visible(IM_FAKE_NVML_LEGACY, NULL), 2);
  assert_string_equal(g[1].uuid, UUID1);
  assert_true(g[1].known & GPU_K_CLOCK_EVENTS); /* fell back to the older name */
  assert_int_equal(g[1].clock_events, 0x44);
  assert_false(g[1].known & GPU_K_POWER_LIMIT);
  assert_true(g[1].known & GPU_K_POWER);
  assert_dbl(g[1].power_w, 699.123);
  assert_false(g[0].known & GPU_K_MIG);
  assert_int_equal(g[0].mig_count, 0);
  assert_false(g[0].known & GPU_K_UTIL_GPU);
  assert_int_equal(g[1].health_reasons, GPU_HR_THROTTLE | GPU_HR_ECC | GPU_HR_HOT);
  /* MIG entries cannot be resolved without the MIG API: the list ends there */
  assert_int_equal(read_visible(IM_FAKE_NVML_LEGACY, "1," MIG_A), 1);
}

static void test_health(void **state) {
  struct gpu_info x;
  memset(&x, 0, sizeof x);
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_OK); /* nothing known: nothing wrong */
  x.temp_c = 99;                             /* unknown temperature never counts */
  x.ecc_uncorrected = 3;
  x.clock_events = GPU_CE_HW_SLOWDOWN;
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_OK);

  memset(&x, 0, sizeof x);
  x.known = GPU_K_TEMP;
  x.temp_c = GPU_HOT_C - 1;
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_OK);
  x.temp_c = GPU_HOT_C;
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_DEGRADED);
  assert_int_equal(x.health_reasons, GPU_HR_HOT);
  assert_string_equal(gpu_health_str(x.health), "degraded");

  const uint64_t degrading[] = {GPU_CE_HW_SLOWDOWN, GPU_CE_SW_THERMAL, GPU_CE_HW_THERMAL,
                                GPU_CE_HW_POWER_BRAKE};
  for (size_t i = 0; i < 4; i++) {
    memset(&x, 0, sizeof x);
    gpu_decode_clock_events(&x, degrading[i] | GPU_CE_SW_POWER_CAP);
    gpu_health_eval(&x);
    assert_int_equal(x.health_reasons, GPU_HR_THROTTLE);
  }
  const uint64_t benign[] = {GPU_CE_IDLE, GPU_CE_SW_POWER_CAP, GPU_CE_APP_CLOCKS, GPU_CE_SYNC_BOOST,
                             GPU_CE_DISPLAY_CLOCKS};
  for (size_t i = 0; i < 5; i++) {
    memset(&x, 0, sizeof x);
    gpu_decode_clock_events(&x, benign[i]);
    gpu_health_eval(&x);
    assert_int_equal(x.health, GPU_HEALTH_OK);
  }
  memset(&x, 0, sizeof x);
  gpu_decode_clock_events(&x, GPU_CE_HW_POWER_BRAKE);
  assert_true(x.thr_power_cap && x.thr_hw_slowdown);
  assert_false(x.thr_thermal);

  memset(&x, 0, sizeof x);
  x.known = GPU_K_ECC_ERRORS;
  x.ecc_corrected = 1000; /* corrected errors alone are not a fault */
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_OK);
  x.ecc_uncorrected = 1;
  gpu_health_eval(&x);
  assert_int_equal(x.health_reasons, GPU_HR_ECC);

  memset(&x, 0, sizeof x);
  x.known = GPU_K_XID;
  gpu_health_eval(&x);
  assert_int_equal(x.health, GPU_HEALTH_OK);
  x.xid_last = 79;
  gpu_health_eval(&x);
  assert_int_equal(x.health_reasons, GPU_HR_XID);
}


static int parse_text(const char *text) {
  size_t len = strlen(text);
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, text, len);
  int cnt = -1;
  int rc = dcgm_parse(copy, len, g, GPU_MAX, &cnt, NULL);
  free(copy);
  assert_int_equal(rc, 0);
  return cnt;
}

static void test_dcgm_fixture_t4(void **state) {
  size_t len;
  char *t = fixture_load("dcgm-exporter.metrics.txt", &len, FIXTURE_EXACT);
  int cnt = -1;
  struct prom_error err;
  assert_int_equal(dcgm_parse(t, len, g, GPU_MAX, &cnt, &err), 0);
  free(t);
  assert_int_equal(cnt, 2); /* two captures, two T4s */

  struct gpu_info *a = &g[0];
  assert_string_equal(a->uuid, "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e");
  assert_true(a->known & GPU_K_INDEX);
  assert_int_equal(a->index, 0);
  assert_string_equal(a->name, "Tesla T4");
  assert_false(a->known & GPU_K_PCI);
  assert_true(a->known & GPU_K_TEMP);
  assert_int_equal(a->temp_c, 25);
  assert_true(a->known & GPU_K_POWER);
  assert_dbl(a->power_w, 8.969);
  assert_false(a->known & GPU_K_POWER_LIMIT);
  assert_true(a->known & GPU_K_UTIL_GPU && a->known & GPU_K_UTIL_MEM);
  assert_int_equal(a->util_gpu, 0);
  assert_int_equal(a->util_mem, 0);
  assert_true(a->known & GPU_K_XID);
  assert_int_equal(a->xid_last, 0);
  assert_int_equal(a->mem_free, 15109 * MIB);
  assert_int_equal(a->mem_used, 0);
  assert_true(a->known & GPU_K_MEM_TOTAL); /* derived: used + free */
  assert_int_equal(a->mem_total, 15109 * MIB);
  assert_false(a->known & (GPU_K_MIG | GPU_K_ECC_ERRORS | GPU_K_CLOCK_EVENTS | GPU_K_GR_ACTIVE));
  assert_int_equal(a->health, GPU_HEALTH_OK);

  struct gpu_info *b = &g[1];
  assert_string_equal(b->uuid, "GPU-9ef1b6d0-3643-5dd7-b823-c0ec20dcf2d5");
  assert_int_equal(b->index, 0);
  assert_string_equal(b->name, "Tesla T4");
  assert_true(b->known & GPU_K_POWER_LIMIT);
  assert_dbl(b->power_limit_w, 70.0);
  assert_false(b->known & GPU_K_POWER);
  assert_true(b->known & GPU_K_MEM_TOTAL);
  assert_int_equal(b->mem_total, 15109 * MIB);
  assert_false(b->known & (GPU_K_MEM_USED | GPU_K_MEM_FREE | GPU_K_TEMP | GPU_K_UTIL_GPU));
  assert_int_equal(b->health, GPU_HEALTH_OK);
}

static void test_dcgm_fixture_mig(void **state) {
  size_t len;
  char *t = fixture_load("dcgm-exporter-mig.metrics.txt", &len, FIXTURE_EXACT);
  int cnt = -1;
  assert_int_equal(dcgm_parse(t, len, g, GPU_MAX, &cnt, NULL), 0);
  free(t);
  assert_int_equal(cnt, 2);

  struct gpu_info *a = &g[0];
  assert_string_equal(a->uuid, "GPU-fc60126e-514d-3522-2828-c5daa8e99d85");
  assert_int_equal(a->index, 1);
  assert_string_equal(a->name, "NVIDIA RTX 2000 Ada Generation");
  assert_string_equal(a->pci_bus_id, "00000000:B1:00.0");
  assert_true(a->known & GPU_K_MEM_FREE);
  assert_int_equal(a->mem_free, 11275 * MIB);
  assert_false(a->known & (GPU_K_MEM_USED | GPU_K_MEM_TOTAL | GPU_K_MIG | GPU_K_UTIL_GPU));
  assert_int_equal(a->mig_count, 0);

  struct gpu_info *b = &g[1];
  assert_string_equal(b->uuid, "GPU-63bc0b91-2265-1b94-831c-15c41fe92675");
  assert_int_equal(b->index, 2);
  assert_string_equal(b->name, "NVIDIA A30");
  assert_string_equal(b->pci_bus_id, "00000000:CA:00.0");
  assert_true(b->known & GPU_K_MIG && b->mig_enabled);
  assert_int_equal(b->mig_count, 1);
  assert_int_equal(b->mig[0].gi_id, 3);
  assert_string_equal(b->mig[0].profile, "1g.6gb");
  assert_true(b->mig[0].known & GPU_K_MEM_FREE);
  assert_int_equal(b->mig[0].mem_free, 2207 * MIB);
  assert_false(b->known & GPU_K_MEM_FREE); /* the instance's memory is not the GPU's */
  assert_int_equal(b->health, GPU_HEALTH_OK);
}

static void test_dcgm_inline(void **state) {
  /* lowercase uuid label, GR engine per GPU and per MIG instance, ECC, XID, clock reasons, all of FB */
  int cnt = parse_text(
      "DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",uuid=\"GPU-aa\",modelName=\"NVIDIA H100\"} 0.25\n"
      "DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"1\",uuid=\"GPU-bb\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"2\"} "
      "0.5\n"
      "DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"1\",uuid=\"GPU-bb\",GPU_I_PROFILE=\"1g.10gb\",GPU_I_ID=\"9\"} "
      "0.125\n"
      "DCGM_FI_DEV_FB_USED{gpu=\"1\",uuid=\"GPU-bb\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"2\"} 100\n"
      "DCGM_FI_DEV_FB_FREE{gpu=\"1\",uuid=\"GPU-bb\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"2\"} 300\n"
      "DCGM_FI_DEV_FB_USED{gpu=\"0\",uuid=\"GPU-aa\"} 1024\n"
      "DCGM_FI_DEV_FB_TOTAL{gpu=\"0\",uuid=\"GPU-aa\"} 4096\n"
      "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu=\"0\",uuid=\"GPU-aa\"} 1\n"
      "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",uuid=\"GPU-aa\"} 40\n"
      "DCGM_FI_DEV_XID_ERRORS{gpu=\"1\",uuid=\"GPU-bb\"} 79\n"
      "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu=\"0\",uuid=\"GPU-aa\"} 4\n"
      "DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",uuid=\"GPU-aa\"} NaN\n"
      "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",uuid=\"GPU-aa\"} -3\n"
      "DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",uuid=\"GPU-aa\"} +Inf\n"
      "DCGM_FI_DEV_GPU_UTIL{gpu=\"2\"} 55\n"
      "DCGM_FI_DEV_GPU_UTIL{Hostname=\"x\"} 66\n"
      "vllm:num_requests_waiting 3\n");
  assert_int_equal(cnt, 3);
  assert_string_equal(g[0].uuid, "GPU-aa");
  assert_string_equal(g[0].name, "NVIDIA H100");
  assert_dbl(g[0].gr_active, 0.25);
  assert_int_equal(g[0].mem_used, 1024 * MIB);
  assert_int_equal(g[0].mem_free, 3072 * MIB);
  assert_int_equal(g[0].ecc_uncorrected, 1);
  assert_int_equal(g[0].ecc_corrected, 40);
  assert_int_equal(g[0].clock_events, GPU_CE_SW_POWER_CAP);
  assert_true(g[0].thr_power_cap);
  assert_false(g[0].known & (GPU_K_TEMP | GPU_K_UTIL_GPU | GPU_K_POWER)); /* NaN, negative, Inf ignored */
  assert_int_equal(g[0].health_reasons, GPU_HR_ECC);

  assert_string_equal(g[1].uuid, "GPU-bb");
  assert_int_equal(g[1].mig_count, 2);
  assert_int_equal(g[1].mig[0].gi_id, 2);
  assert_string_equal(g[1].mig[0].profile, "3g.40gb");
  assert_dbl(g[1].mig[0].gr_active, 0.5);
  assert_int_equal(g[1].mig[0].mem_used, 100 * MIB);
  assert_int_equal(g[1].mig[0].mem_total, 400 * MIB);
  assert_int_equal(g[1].mig[1].gi_id, 9);
  assert_dbl(g[1].mig[1].gr_active, 0.125);
  assert_false(g[1].known & GPU_K_GR_ACTIVE);
  assert_int_equal(g[1].health_reasons, GPU_HR_XID);

  /* no UUID label: keyed by the gpu index */
  assert_string_equal(g[2].uuid, "");
  assert_int_equal(g[2].index, 2);
  assert_int_equal(g[2].util_gpu, 55);

  /* cap and garbage */
  int n = -1;
  const char *two = "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\"} 1\nDCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-b\"} 2\n";
  assert_int_equal(dcgm_parse(two, strlen(two), g, 1, &n, NULL), 0);
  assert_int_equal(n, 1);
  assert_string_equal(g[0].uuid, "GPU-a");
  struct prom_error err;
  const char *bad = "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\"} 1\nDCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\" 2\n";
  assert_int_equal(dcgm_parse(bad, strlen(bad), g, GPU_MAX, &n, &err), IM_EPARSE);
  assert_int_equal(n, 0);
  assert_int_equal(err.line, 2);
  assert_int_equal(dcgm_parse("", 0, g, GPU_MAX, &n, NULL), 0);
  assert_int_equal(n, 0);
}

static void test_json(void **state) {
  assert_int_equal(read_visible(IM_FAKE_NVML, NULL), 2);
  struct buf b = {0};
  gpus_json(&b, "nvml", true, NULL, "999", g, 2);
  json_error_t jerr;
  json_t *j = json_loadb(b.base, b.len, 0, &jerr);
  if (!j) fail_msg("not JSON (%s): %s", jerr.text, b.base);
  assert_string_equal(json_string_value(json_object_get(j, "source")), "nvml");
  assert_true(json_is_true(json_object_get(j, "available")));
  assert_string_equal(json_string_value(json_object_get(j, "driver_version")), "999");
  json_t *gs = json_object_get(j, "gpus");
  assert_int_equal(json_array_size(gs), 2);
  json_t *a = json_array_get(gs, 0), *c = json_array_get(gs, 1);
  assert_string_equal(json_string_value(json_object_get(a, "uuid")), UUID0);
  assert_true(json_is_null(json_object_get(a, "utilization_gpu_pct")));
  assert_true(json_is_true(json_object_get(a, "mig_enabled")));
  assert_int_equal(json_array_size(json_object_get(a, "mig")), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(a, "mig"), 1), "gi_id")),
                   5);
  assert_string_equal(json_string_value(json_object_get(a, "health")), "ok");
  assert_int_equal(json_array_size(json_object_get(a, "health_reasons")), 0);
  assert_int_equal(json_integer_value(json_object_get(c, "utilization_gpu_pct")), 97);
  assert_int_equal(json_integer_value(json_object_get(c, "memory_total_bytes")), (json_int_t)(80 * GIB));
  assert_dbl(json_number_value(json_object_get(c, "power_w")), 699.123);
  assert_true(json_is_true(json_object_get(json_object_get(c, "throttle"), "thermal")));
  assert_int_equal(json_integer_value(json_object_get(c, "ecc_uncorrected")), 2);
  assert_string_equal(json_string_value(json_object_get(c, "health")), "degraded");
  json_t *r = json_object_get(c, "health_reasons");
  assert_int_equal(json_array_size(r), 3);
  assert_string_equal(json_string_value(json_array_get(r, 0)), "throttle");
  assert_string_equal(json_string_value(json_array_get(r, 1)), "ecc");
  assert_string_equal(json_string_value(json_array_get(r, 2)), "hot");
  json_decref(j);

  buf_reset(&b);
  gpus_json(&b, "nvml", false, "NVML not available: \"x\"", NULL, NULL, 0);
  j = json_loadb(b.base, b.len, 0, &jerr);
  assert_non_null(j);
  assert_true(json_is_false(json_object_get(j, "available")));
  assert_string_equal(json_string_value(json_object_get(j, "reason")), "NVML not available: \"x\"");
  assert_int_equal(json_array_size(json_object_get(j, "gpus")), 0);
  json_decref(j);
  buf_free(&b);
}

/* run_cli runs gpus_main with stdout captured into out (NUL-terminated); returns its exit code. */
static int run_cli(char **argv, int argc, char *out, size_t cap) {
  char path[] = "/tmp/test_gpu_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stdout);
  int saved = dup(1);
  dup2(fd, 1);
  int rc = gpus_main(argc, argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  ssize_t n = pread(fd, out, cap - 1, 0);
  out[n > 0 ? n : 0] = 0;
  close(fd);
  unlink(path);
  return rc;
}

static void test_cli(void **state) {
  static char out[65536];
  char *json[] = {"--json"};
  setenv("INFERMESH_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
  assert_int_equal(run_cli(json, 1, out, sizeof out), 0);
  assert_non_null(strstr(out, "\"available\":false"));
  assert_int_equal(run_cli(NULL, 0, out, sizeof out), 0);
  assert_non_null(strstr(out, "no NVIDIA GPU here (NVML not available"));

  setenv("INFERMESH_NVML_LIB", IM_FAKE_NVML, 1);
  setenv("CUDA_VISIBLE_DEVICES", "1", 1);
  assert_int_equal(run_cli(NULL, 0, out, sizeof out), 0);
  assert_non_null(strstr(out, UUID1));
  assert_null(strstr(out, UUID0));
  assert_non_null(strstr(out, "degraded (throttling, ecc-errors, hot)\n"));
  unsetenv("CUDA_VISIBLE_DEVICES");
  assert_int_equal(run_cli(json, 1, out, sizeof out), 0);
  json_t *j = json_loads(out, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_array_size(json_object_get(j, "gpus")), 2);
  json_decref(j);
  unsetenv("INFERMESH_NVML_LIB");

  char *bad[] = {"--frob"};
  assert_int_equal(run_cli(bad, 1, out, sizeof out), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nvml_values),
      cmocka_unit_test(test_nvml_visible_devices),
      cmocka_unit_test(test_nvml_lost_and_hidden_devices),
      cmocka_unit_test(test_nvml_missing_library),
      cmocka_unit_test(test_nvml_missing_symbols),
      cmocka_unit_test(test_health),
      cmocka_unit_test(test_dcgm_fixture_t4),
      cmocka_unit_test(test_dcgm_fixture_mig),
      cmocka_unit_test(test_dcgm_inline),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
