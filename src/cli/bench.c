/* `infermesh bench`: options, trace loading, the report (table or JSON). The replay itself is bench_run.c.
 * Definitions follow the simulator's (src/sim/des.c) so that live and simulated runs compare: latencies from
 * the scheduled send time, duration = first scheduled send to last completion, goodput = completed requests
 * with TTFT <= SLO per second of duration, prefix-cache hit rate = cached / prompt tokens of completed
 * requests. */
#include "cli/bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_int.h"
#include "core/alloc.h"
#include "core/slice.h"

#define NAME "infermesh bench"
#define MAX_STATUS 32

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: infermesh bench --trace FILE [options]\n\n"
      "Replays a Mooncake-format trace against a running mesh, open loop: every request is sent at its\n"
      "scheduled time whatever is still in flight. Prompts are built so that equal hash ids give equal "
      "bytes\n"
      "(block id -> 512 deterministic 4-byte words); max_tokens = output_length; responses are streamed.\n"
      "Reports TTFT and end-to-end percentiles, throughput, goodput under a TTFT SLO, the prefix-cache hit\n"
      "rate (usage.prompt_tokens_details.cached_tokens) and errors by status.\n\n"
      "  --trace FILE            Mooncake trace (JSON lines: timestamp ms, input_length, output_length,\n"
      "                          hash_ids of 512-token blocks)\n"
      "  --agent URL             the mesh's OpenAI endpoint (http://127.0.0.1:8080); repeat it (up to 16)\n"
      "                          to spread the requests over several ingress nodes, in turn\n"
      "  --time-scale X          multiply trace timestamps by X (1; 0.5 = twice the rate)\n"
      "  --limit N               only the first N requests of the trace (all)\n"
      "  --duration S            only requests scheduled in the first S seconds (all)\n"
      "  --concurrency-cap C     at most C requests in flight; later ones wait, and the wait counts in "
      "their\n"
      "                          TTFT (1024)\n"
      "  --slo-ttft-ms MS        TTFT objective for goodput (2000)\n"
      "  --model ID              model to ask for (the first of GET /v1/models)\n"
      "  --max-model-len N       clip prompt + output to N tokens, as the simulator does (131072)\n"
      "  --api-key KEY           sent as Authorization: Bearer KEY (a tenant's key)\n"
      "  --slo latency|throughput  sent as x-infermesh-slo\n"
      "  --chat                  use /v1/chat/completions (default /v1/completions: exact token counts)\n"
      "  --timeout-s S           longest silence of one response (600)\n"
      "  --salt N                another set of prompt texts (0): a second run on a warm mesh hits no cache\n"
      "  --json                  JSON on stdout instead of a table\n\n"
      "exit codes: 0 the replay ran (errors are in the report), 1 the trace could not be read or nothing\n"
      "could be sent, 2 bad usage\n");
}

static int bad(const char *opt, const char *val, const char *why) {
  fprintf(stderr, NAME ": %s '%s': %s (see --help)\n", opt, val, why);
  return 2;
}

static bool num(const char *v, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(v, &end);
  if (!*v || !end || *end || errno || !isfinite(d) || d < lo || d > hi) return false;
  *out = d;
  return true;
}

static int parse_agent(struct bench_opts *o, const char *v) {
  if (o->nagents == BENCH_MAX_AGENTS) return bad("--agent", v, "at most 16 agents");
  struct bench_agent *ag = &o->agents[o->nagents];
  const char *p = v;
  if (strncmp(p, "http://", 7) == 0) p += 7;
  const char *colon = strrchr(p, ':');
  double port;
  char portbuf[16];
  if (!colon || colon == p || (size_t)(colon - p) >= sizeof ag->host)
    return bad("--agent", v, "expected http://HOST:PORT");
  size_t pl = strcspn(colon + 1, "/");
  if (pl == 0 || pl >= sizeof portbuf) return bad("--agent", v, "expected http://HOST:PORT");
  memcpy(portbuf, colon + 1, pl);
  portbuf[pl] = '\0';
  if (!num(portbuf, 1, 65535, &port) || port != floor(port)) return bad("--agent", v, "bad port");
  if (str_copy(ag->url, sizeof ag->url, v) >= sizeof ag->url) return bad("--agent", v, "too long");
  memcpy(ag->host, p, (size_t)(colon - p));
  ag->host[colon - p] = '\0';
  ag->port = (int)port;
  o->nagents++;
  return 0;
}

static int parse_args(struct bench_opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->time_scale = 1;
  o->concurrency_cap = 1024;
  o->slo_ttft_ms = 2000;
  o->max_model_len = 131072;
  o->timeout_s = 600;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    double d;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    }
    if (strcmp(a, "--chat") == 0) {
      o->chat = true;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) return bad("argument", a, "unexpected");
    if (i + 1 >= argc) return bad(a, "", "needs a value");
    const char *v = argv[++i];
    if (strcmp(a, "--trace") == 0) {
      if (str_copy(o->trace, sizeof o->trace, v) >= sizeof o->trace) return bad(a, v, "path too long");
    } else if (strcmp(a, "--agent") == 0) {
      int rc = parse_agent(o, v);
      if (rc) return rc;
    } else if (strcmp(a, "--model") == 0) {
      if (str_copy(o->model, sizeof o->model, v) >= sizeof o->model || !*v)
        return bad(a, v, "1-255 characters");
    } else if (strcmp(a, "--api-key") == 0) {
      size_t n = strlen(v);
      bool ok = n > 0 && n < sizeof o->api_key;
      for (size_t k = 0; ok && k < n; k++)
        ok = (unsigned char)v[k] > 0x20 && (unsigned char)v[k] < 0x7f;
      if (!ok) return bad(a, "...", "printable characters without spaces");
      str_copy(o->api_key, sizeof o->api_key, v);
    } else if (strcmp(a, "--slo") == 0) {
      if (strcmp(v, "latency") != 0 && strcmp(v, "throughput") != 0)
        return bad(a, v, "latency or throughput");
      str_copy(o->slo_class, sizeof o->slo_class, v);
    } else if (strcmp(a, "--time-scale") == 0) {
      if (!num(v, 1e-6, 1e6, &o->time_scale)) return bad(a, v, "a number > 0");
    } else if (strcmp(a, "--limit") == 0) {
      if (!num(v, 1, 1e9, &d) || d != floor(d)) return bad(a, v, "an integer >= 1");
      o->limit = (size_t)d;
    } else if (strcmp(a, "--duration") == 0) {
      if (!num(v, 1e-3, 1e7, &o->duration_s)) return bad(a, v, "seconds > 0");
    } else if (strcmp(a, "--concurrency-cap") == 0) {
      if (!num(v, 1, 1000000, &d) || d != floor(d)) return bad(a, v, "an integer from 1 to 1000000");
      o->concurrency_cap = (int)d;
    } else if (strcmp(a, "--slo-ttft-ms") == 0) {
      if (!num(v, 0, 1e9, &o->slo_ttft_ms)) return bad(a, v, "milliseconds >= 0");
    } else if (strcmp(a, "--max-model-len") == 0) {
      if (!num(v, 2, 1 << 30, &d) || d != floor(d)) return bad(a, v, "an integer >= 2");
      o->max_model_len = (int)d;
    } else if (strcmp(a, "--timeout-s") == 0) {
      if (!num(v, 0.001, 86400, &o->timeout_s)) return bad(a, v, "seconds > 0");
    } else if (strcmp(a, "--salt") == 0) {
      if (!num(v, 0, 9e15, &d) || d != floor(d)) return bad(a, v, "an integer >= 0");
      o->salt = (uint64_t)d;
    } else {
      return bad("option", a, "unknown");
    }
  }
  if (!o->trace[0]) {
    fprintf(stderr, NAME ": --trace FILE is required (see --help)\n");
    return 2;
  }
  if (o->nagents == 0) parse_agent(o, "http://127.0.0.1:8080");
  return 0;
}

/* ---- report ---- */

struct summary {
  size_t requests, sent, completed, good, stream_errors, transport_errors, not_sent;
  double duration_s, arrival_span_s, offered_rps;
  double ttft_mean, ttft_p50, ttft_p90, ttft_p99;
  double e2e_mean, e2e_p50, e2e_p90, e2e_p99;
  double tpot_mean, tpot_p50, tpot_p90;
  double throughput_rps, output_tps, goodput_rps, slo_attainment, prefix_hit_rate;
  double prompt_tokens, cached_tokens, output_tokens, max_send_lag_s;
  int status[MAX_STATUS], status_n[MAX_STATUS], nstatus;
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* As in src/sim/des.c: linear interpolation between closest ranks of sorted v. */
static double quantile(const double *v, size_t n, double q) {
  if (n == 0) return 0;
  double pos = q * (double)(n - 1);
  size_t lo = (size_t)pos;
  if (lo + 1 >= n) return v[n - 1];
  return v[lo] + (v[lo + 1] - v[lo]) * (pos - (double)lo);
}

static void count_status(struct summary *s, int status) {
  for (int i = 0; i < s->nstatus; i++)
    if (s->status[i] == status) {
      s->status_n[i]++;
      return;
    }
  if (s->nstatus < MAX_STATUS) {
    s->status[s->nstatus] = status;
    s->status_n[s->nstatus++] = 1;
  }
}

static void summarize(const struct bench_opts *o, const struct workload *w, const struct bench_req *q,
                      size_t n, struct summary *s) {
  memset(s, 0, sizeof *s);
  size_t cap = n ? n : 1;
  double *ttft = xmalloc(cap * sizeof *ttft), *e2e = xmalloc(cap * sizeof *e2e),
         *tpot = xmalloc(cap * sizeof *tpot);
  size_t m = 0, nt = 0;
  uint64_t last = 0;
  double tsum = 0, esum = 0, psum = 0;
  s->requests = n;
  for (size_t i = 0; i < n; i++) {
    const struct bench_req *r = &q[i];
    if (r->status == -1 && r->err == 0) {
      s->not_sent++;
      continue;
    }
    s->sent++;
    if (!r->ok) {
      if (r->status > 0 && r->status != 200)
        count_status(s, r->status);
      else if (r->stream_error)
        s->stream_errors++, count_status(s, 200);
      else
        s->transport_errors++, count_status(s, 0);
      continue;
    }
    double send_lag = (double)(r->t_send - r->t_sched) / 1e9;
    if (send_lag > s->max_send_lag_s) s->max_send_lag_s = send_lag;
    ttft[m] = (double)(r->t_first - r->t_sched) / 1e9;
    e2e[m] = (double)(r->t_end - r->t_sched) / 1e9;
    tsum += ttft[m];
    esum += e2e[m];
    if (ttft[m] * 1000.0 <= o->slo_ttft_ms) s->good++;
    if (r->t_end > last) last = r->t_end;
    int64_t out = r->completion_tokens >= 0 ? r->completion_tokens : w->reqs[i].output_tokens;
    s->output_tokens += (double)out;
    s->prompt_tokens += (double)(r->prompt_tokens >= 0 ? r->prompt_tokens : w->reqs[i].prompt_tokens);
    s->cached_tokens += (double)(r->cached_tokens > 0 ? r->cached_tokens : 0);
    if (out > 1) {
      tpot[nt] = (e2e[m] - ttft[m]) / (double)(out - 1);
      psum += tpot[nt++];
    }
    m++;
  }
  qsort(ttft, m, sizeof *ttft, cmp_double);
  qsort(e2e, m, sizeof *e2e, cmp_double);
  qsort(tpot, nt, sizeof *tpot, cmp_double);
  s->completed = m;
  s->duration_s = (double)last / 1e9; /* from the first scheduled send (time 0) */
  s->arrival_span_s = n ? (double)q[n - 1].t_sched / 1e9 : 0;
  size_t scheduled = n - s->not_sent;
  if (scheduled > 1 && scheduled <= n) s->arrival_span_s = (double)q[scheduled - 1].t_sched / 1e9;
  s->offered_rps = s->arrival_span_s > 0 ? (double)(scheduled - 1) / s->arrival_span_s : 0;
  s->ttft_mean = m ? tsum / (double)m : 0;
  s->ttft_p50 = quantile(ttft, m, 0.5), s->ttft_p90 = quantile(ttft, m, 0.9),
  s->ttft_p99 = quantile(ttft, m, 0.99);
  s->e2e_mean = m ? esum / (double)m : 0;
  s->e2e_p50 = quantile(e2e, m, 0.5), s->e2e_p90 = quantile(e2e, m, 0.9), s->e2e_p99 = quantile(e2e, m, 0.99);
  s->tpot_mean = nt ? psum / (double)nt : 0;
  s->tpot_p50 = quantile(tpot, nt, 0.5), s->tpot_p90 = quantile(tpot, nt, 0.9);
  double d = s->duration_s > 0 ? s->duration_s : 1;
  s->throughput_rps = (double)m / d;
  s->output_tps = s->output_tokens / d;
  s->goodput_rps = (double)s->good / d;
  s->slo_attainment = s->sent ? (double)s->good / (double)s->sent : 0;
  s->prefix_hit_rate = s->prompt_tokens > 0 ? s->cached_tokens / s->prompt_tokens : 0;
  free(ttft);
  free(e2e);
  free(tpot);
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static void print_table(const struct bench_opts *o, const struct summary *s, bool interrupted) {
  printf("%s: %zu requests of %s, time scale %g, %.2f req/s offered, against %s", NAME, s->sent,
         base_name(o->trace), o->time_scale, s->offered_rps, o->agents[0].url);
  for (int i = 1; i < o->nagents; i++)
    printf(", %s", o->agents[i].url);
  printf("%s\n\n", interrupted ? " (interrupted)" : "");
  printf("%-22s %10s %10s %10s %10s\n", "", "p50", "p90", "p99", "mean");
  printf("%-22s %10.1f %10.1f %10.1f %10.1f\n", "TTFT (ms)", s->ttft_p50 * 1e3, s->ttft_p90 * 1e3,
         s->ttft_p99 * 1e3, s->ttft_mean * 1e3);
  printf("%-22s %10.3f %10.3f %10.3f %10.3f\n", "end to end (s)", s->e2e_p50, s->e2e_p90, s->e2e_p99,
         s->e2e_mean);
  printf("%-22s %10.2f %10.2f %10s %10.2f\n\n", "time per token (ms)", s->tpot_p50 * 1e3, s->tpot_p90 * 1e3,
         "-", s->tpot_mean * 1e3);
  printf("requests:   %zu sent, %zu completed, %zu failed (duration %.1f s)\n", s->sent, s->completed,
         s->sent - s->completed, s->duration_s);
  printf("throughput: %.2f req/s, %.0f output tokens/s\n", s->throughput_rps, s->output_tps);
  printf("goodput:    %.2f req/s with TTFT <= %g ms (%.1f%% of requests)\n", s->goodput_rps, o->slo_ttft_ms,
         s->slo_attainment * 100);
  printf("prefix cache: %.1f%% of prompt tokens cached (%.0f of %.0f)\n", s->prefix_hit_rate * 100,
         s->cached_tokens, s->prompt_tokens);
  if (s->max_send_lag_s > 0.05)
    printf("note: requests waited up to %.2f s at the concurrency cap (%d) or the client's loop\n",
           s->max_send_lag_s, o->concurrency_cap);
  if (s->nstatus) {
    printf("errors:    ");
    for (int i = 0; i < s->nstatus; i++)
      printf(" %s%d: %d",
             s->status[i] == 0     ? "no response "
             : s->status[i] == 200 ? "broken stream "
                                   : "",
             s->status[i], s->status_n[i]);
    printf("\n");
  }
}

static void print_json(const struct bench_opts *o, const struct summary *s, bool interrupted) {
  json_t *errors = json_object();
  for (int i = 0; i < s->nstatus; i++) {
    char k[32];
    snprintf(k, sizeof k, "%s",
             s->status[i] == 0     ? "no_response"
             : s->status[i] == 200 ? "broken_stream"
                                   : "");
    if (!k[0]) snprintf(k, sizeof k, "%d", s->status[i]);
    json_object_set_new(errors, k, json_integer(s->status_n[i]));
  }
  json_t *root = json_object();
  json_object_set_new(root, "trace", json_string(o->trace));
  json_object_set_new(root, "agent", json_string(o->agents[0].url));
  json_t *agents = json_array();
  for (int i = 0; i < o->nagents; i++)
    json_array_append_new(agents, json_string(o->agents[i].url));
  json_object_set_new(root, "agents", agents);
  json_object_set_new(root, "interrupted", json_boolean(interrupted));
  const struct {
    const char *k;
    double v;
  } nums[] = {{"time_scale", o->time_scale},
              {"slo_ttft_ms", o->slo_ttft_ms},
              {"requests", (double)s->requests},
              {"sent", (double)s->sent},
              {"completed", (double)s->completed},
              {"duration_s", s->duration_s},
              {"arrival_span_s", s->arrival_span_s},
              {"offered_rps", s->offered_rps},
              {"ttft_mean", s->ttft_mean},
              {"ttft_p50", s->ttft_p50},
              {"ttft_p90", s->ttft_p90},
              {"ttft_p99", s->ttft_p99},
              {"e2e_mean", s->e2e_mean},
              {"e2e_p50", s->e2e_p50},
              {"e2e_p90", s->e2e_p90},
              {"e2e_p99", s->e2e_p99},
              {"tpot_mean", s->tpot_mean},
              {"tpot_p50", s->tpot_p50},
              {"tpot_p90", s->tpot_p90},
              {"throughput_rps", s->throughput_rps},
              {"output_tps", s->output_tps},
              {"goodput_rps", s->goodput_rps},
              {"slo_attainment", s->slo_attainment},
              {"prefix_hit_rate", s->prefix_hit_rate},
              {"prompt_tokens", s->prompt_tokens},
              {"cached_tokens", s->cached_tokens},
              {"output_tokens", s->output_tokens},
              {"max_send_lag_s", s->max_send_lag_s}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    double v = nums[i].v;
    json_object_set_new(root, nums[i].k,
                        v == floor(v) && fabs(v) < 9e15 ? json_integer((json_int_t)v) : json_real(v));
  }
  json_object_set_new(root, "errors", errors);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
  printf("%s\n", text);
  free(text);
  json_decref(root);
}

int bench_main(int argc, char **argv) {
  static struct bench_opts o; /* large: not on the stack */
  int rc = parse_args(&o, argc, argv);
  if (rc == 1) return 0;
  if (rc) return rc;
  struct workload w;
  char err[512];
  workload_init(&w);
  if ((rc = trace_load(o.trace, o.limit, &w, err, sizeof err)) != 0) {
    fprintf(stderr, NAME ": %s\n", err);
    workload_free(&w);
    return 1;
  }
  if (w.n == 0) {
    fprintf(stderr, NAME ": %s holds no request\n", o.trace);
    workload_free(&w);
    return 1;
  }
  workload_scale_time(&w, o.time_scale);
  workload_clip(&w, o.max_model_len);
  struct bench_req *q = xcalloc(w.n, sizeof *q);
  size_t sent = 0;
  bool interrupted = false;
  if (bench_run(&o, &w, q, &sent, &interrupted, err, sizeof err) != 0) {
    fprintf(stderr, NAME ": %s\n", err);
    free(q);
    workload_free(&w);
    return 1;
  }
  struct summary s;
  summarize(&o, &w, q, w.n, &s);
  if (o.json)
    print_json(&o, &s, interrupted);
  else
    print_table(&o, &s, interrupted);
  if (w.truncated)
    fprintf(stderr, NAME ": %zu prompts were cut to fit --max-model-len %d\n", w.truncated, o.max_model_len);
  free(q);
  workload_free(&w);
  return sent > 0 && s.transport_errors < sent ? 0 : 1;
}
