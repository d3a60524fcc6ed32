/* `infermesh probe`: detect a runtime's kind, scrape it twice, print the normalized state and window rates.
 */
#include "cli/probe.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapter/adapter.h"
#include "cli/http_get.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"

static void usage(FILE *f) {
  fprintf(f, "usage: infermesh probe [--runtime KIND] URL [--json] [--interval-ms N] [--timeout-ms N]\n\n"
             "  URL             the runtime's base URL, e.g. http://127.0.0.1:8000\n"
             "  --runtime KIND  vllm, sglang, tgi, llamacpp, triton or ollama (default: detect by probing)\n"
             "  --json          print the normalized state as JSON\n"
             "  --interval-ms N time between the two scrapes that give rates (default 1000; 0: one scrape)\n"
             "  --timeout-ms N  per-request timeout (default 3000)\n");
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = (int)v;
  return true;
}

/* detect tries the probes in order. Returns 0 with *kind set, 1 when nothing matched, -1 unreachable. */
static int detect(const char *url, int timeout_ms, enum runtime_kind *kind, bool quiet) {
  const struct rt_probe *probes;
  int n = runtime_detect_probes(&probes);
  for (int i = 0; i < n; i++) {
    struct buf body = {0};
    char err[256];
    int status = 0;
    int rc = http_request(probes[i].method, url, probes[i].path, probes[i].body, timeout_ms, &status, &body,
                          err, sizeof err);
    if (rc != 0) {
      buf_free(&body);
      if (i == 0) {
        fprintf(stderr, "infermesh probe: %s\n", err);
        return -1;
      }
      continue;
    }
    bool hit = runtime_detect(i, status, body.base, body.len, kind);
    buf_free(&body);
    if (hit) {
      if (!quiet)
        fprintf(stderr, "detected %s at %s (%s %s answered like one)\n", runtime_kind_name(*kind), url,
                probes[i].method, probes[i].path);
      return 0;
    }
  }
  fprintf(stderr, "infermesh probe: no known runtime answered at %s (tried", url);
  for (int i = 0; i < n; i++)
    fprintf(stderr, " %s", probes[i].path);
  fprintf(stderr, "); pass --runtime KIND to force one\n");
  return 1;
}

/* scrape fetches every endpoint of kind k into *st. Returns 0; 1 when a required endpoint failed or no data
 * endpoint answered like that kind; -1 when the URL is unreachable. Reasons go to stderr. */
static int scrape(const char *url, enum runtime_kind k, int timeout_ms, struct runtime_state *st,
                  bool verbose) {
  const struct rt_endpoint *eps;
  int n = runtime_endpoints(k, &eps), ok_data = 0, failed_required = 0;
  runtime_state_init(st);
  for (int i = 0; i < n; i++) {
    struct buf body = {0};
    char err[256];
    int status = 0;
    int rc = http_request(eps[i].method, url, eps[i].path, eps[i].body, timeout_ms, &status, &body, err,
                          sizeof err);
    if (rc != 0) {
      buf_free(&body);
      if (rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH || rc == -EINVAL ||
          rc == -ENETUNREACH) {
        fprintf(stderr, "infermesh probe: %s\n", err);
        return -1;
      }
      if (verbose || !eps[i].optional) fprintf(stderr, "  %s %s: %s\n", eps[i].method, eps[i].path, err);
      failed_required += !eps[i].optional;
      continue;
    }
    rc = runtime_parse(k, eps[i].id, status, body.base, body.len, st);
    if (rc == 0 && eps[i].id != RT_EP_HEALTH) ok_data++;
    if (rc != 0 && (verbose || !eps[i].optional)) {
      const char *why = rc == -EPROTO     ? "answered with an error status"
                        : rc == -ENOENT   ? "has none of this runtime's metrics"
                        : rc == IM_EPARSE ? "answered something this adapter cannot read"
                                          : im_strerror(rc);
      fprintf(stderr, "  %s %s: %s (HTTP %d)\n", eps[i].method, eps[i].path, why, status);
    }
    if (rc != 0) failed_required += !eps[i].optional;
    buf_free(&body);
  }
  if (failed_required || ok_data == 0) {
    fprintf(stderr, "infermesh probe: %s does not look like runtime kind '%s'%s\n", url, runtime_kind_name(k),
            (st->have & RS_HEALTH) && st->loading ? " ready to serve (it is still loading its model)" : "");
    return 1;
  }
  return 0;
}

static void print_list(const char *label, bool have, char (*names)[RS_NAME_MAX], int n, int total) {
  printf("%-14s", label);
  if (!have) {
    printf("-\n");
    return;
  }
  if (n == 0) printf("(none)");
  for (int i = 0; i < n; i++)
    printf("%s%s", i ? ", " : "", names[i]);
  if (total > n) printf(" (+%d more)", total - n);
  printf("\n");
}

static void print_num(const char *label, bool have, double v, const char *unit) {
  if (have)
    printf("%-14s%.6g%s\n", label, v, unit);
  else
    printf("%-14s-\n", label);
}

static void print_table(const char *url, enum runtime_kind k, const struct runtime_state *st,
                        const struct runtime_rates *r, double dt_s) {
  unsigned h = st->have;
  printf("%-14s%s at %s\n", "runtime", runtime_kind_name(k), url);
  printf("%-14s%s\n", "health",
         !(h & RS_HEALTH) ? "-"
         : st->healthy    ? "healthy"
         : st->loading    ? "loading"
                          : "unhealthy");
  print_list("models", h & RS_MODELS, (char(*)[RS_NAME_MAX])st->models, st->nmodels, st->nmodels_total);
  if (h & RS_AVAILABLE)
    print_list("available", true, (char(*)[RS_NAME_MAX])st->available, st->navailable, st->navailable_total);
  if (h & RS_LORA) {
    print_list("lora", true, (char(*)[RS_NAME_MAX])st->lora, st->nlora, st->nlora_total);
    if (st->max_lora) printf("%-14s%d\n", "max lora", st->max_lora);
  }
  print_num("waiting", h & RS_WAITING, st->waiting, "");
  print_num("running", h & RS_RUNNING, st->running, "");
  print_num("kv usage", h & RS_KV_USAGE, 100 * st->kv_usage, " %");
  print_num("kv capacity", h & RS_KV_CAPACITY, (double)st->kv_capacity_tokens, " tokens");
  if (st->block_size) print_num("kv block", true, (double)st->block_size, " tokens");
  print_num("max seq", h & RS_MAX_SEQ, (double)st->max_seq_tokens, " tokens");
  print_num("prefix hit", h & RS_PREFIX_RATE, 100 * st->prefix_hit_rate, " % (runtime / lifetime)");
  print_num("prompt tokens", h & RS_PROMPT_TOKENS, st->prompt_tokens_total, " (total)");
  print_num("gen tokens", h & RS_GEN_TOKENS, st->generation_tokens_total, " (total)");
  if (h & RS_VRAM) print_num("vram", true, (double)st->vram_bytes / (1024.0 * 1024 * 1024), " GiB");
  if (h & RS_QUEUE_TIME && st->queued_requests_total > 0)
    print_num("queue time", true, 1000 * st->queue_time_s_total / st->queued_requests_total,
              " ms mean (lifetime)");
  if (!r) return;
  if (dt_s > 0)
    printf("window        %.2f s%s\n", dt_s,
           r->have & RR_RESET ? " (a counter went back: runtime restarted)" : "");
  else
    printf("window        since start (one scrape)\n");
  print_num("prompt tok/s", r->have & RR_PROMPT_TPS, r->prompt_tps, "");
  print_num("gen tok/s", r->have & RR_GEN_TPS, r->gen_tps, "");
  if (r->have & RR_TTFT)
    printf("%-14sp50 %.1f ms  p95 %.1f ms  (%.0f requests)\n", "ttft", 1000 * r->ttft_p50, 1000 * r->ttft_p95,
           r->ttft_count);
  else
    printf("%-14s- (no requests in the window)\n", "ttft");
  if (r->have & RR_ITL)
    printf("%-14sp50 %.2f ms  p95 %.2f ms  (%.0f tokens)\n", "itl", 1000 * r->itl_p50, 1000 * r->itl_p95,
           r->itl_count);
  else
    printf("%-14s-\n", "itl");
  print_num("prefix hit", r->have & RR_PREFIX, 100 * r->prefix_hit_rate, " %");
  if (r->have & RR_QUEUE_TIME) print_num("queue time", true, 1000 * r->queue_time_mean_s, " ms mean");
}

int probe_main(int argc, char **argv) {
  const char *url = NULL, *kind_arg = NULL;
  bool as_json = false, verbose = false;
  int interval_ms = 1000, timeout_ms = 3000;
  const char *a = NULL;
  for (int i = 0; i < argc; i++) {
    a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      as_json = true;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      verbose = true;
    } else if (strcmp(a, "--runtime") == 0 && i + 1 < argc) {
      kind_arg = argv[++i];
    } else if (strncmp(a, "--runtime=", 10) == 0) {
      kind_arg = a + 10;
    } else if (strcmp(a, "--interval-ms") == 0 && i + 1 < argc) {
      if (!parse_int(argv[++i], 0, 600000, &interval_ms)) goto bad;
    } else if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc) {
      if (!parse_int(argv[++i], 1, 600000, &timeout_ms)) goto bad;
    } else if (a[0] != '-' && !url) {
      url = a;
    } else {
      goto bad;
    }
  }
  if (!url) {
    fprintf(stderr, "infermesh probe: a URL is needed\n");
    usage(stderr);
    return 2;
  }
  enum runtime_kind k;
  if (kind_arg) {
    if (runtime_kind_parse(kind_arg, &k) != 0) {
      fprintf(stderr, "infermesh probe: unknown runtime '%s' (vllm, sglang, tgi, llamacpp, triton, ollama)\n",
              kind_arg);
      return 2;
    }
  } else {
    int rc = detect(url, timeout_ms, &k, false);
    if (rc != 0) return 1;
  }

  static struct runtime_state prev, cur; /* ~8 KB each: off the stack */
  struct runtime_rates rates;
  double dt_s = 0;
  int rc = scrape(url, k, timeout_ms, &cur, verbose);
  if (rc != 0) return 1;
  if (interval_ms > 0) {
    prev = cur;
    uint64_t t0 = clock_mono_ns();
    struct timespec ts = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    if (scrape(url, k, timeout_ms, &cur, verbose) != 0) return 1;
    dt_s = (double)(clock_mono_ns() - t0) / 1e9;
    runtime_rates(&prev, &cur, dt_s, &rates);
  } else {
    runtime_rates(NULL, &cur, 0, &rates);
  }
  if (as_json) {
    struct buf out = {0};
    runtime_state_json(&cur, &rates, k, &out);
    printf("%s\n", out.base);
    buf_free(&out);
  } else {
    print_table(url, k, &cur, &rates, dt_s);
  }
  return 0;
bad:
  fprintf(stderr, "infermesh probe: bad or incomplete argument '%s'\n", a ? a : "");
  usage(stderr);
  return 2;
}
