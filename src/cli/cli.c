/* Client commands: fetch the agent's JSON views and print them as tables (or raw JSON with --json). */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http_get.h"
#include "core/buf.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"

static void usage(const char *cmd, FILE *f) {
  fprintf(f, "usage: infermesh %s [--agent URL] [--ca FILE] [--json] [--token TOKEN]\n\n"
             "  --agent URL   the agent to ask (INFERMESH_AGENT, else " DEFAULT_AGENT "); https://HOST:PORT for TLS\n"
             "  --ca FILE     PEM CA certificates an https:// agent's certificate must chain to (INFERMESH_CA, else\n"
             "                the system's CAs); its host name or IP address must match too\n"
             "  --json        print the agent's JSON instead of a table\n"
             "  --token TOKEN the agent's admin or read token; needed when it has tenants (INFERMESH_ADMIN_TOKEN,\n"
             "                else INFERMESH_READ_TOKEN)\n",
          cmd);
}

const char *cli_token_env(void) {
  const char *t = getenv("INFERMESH_ADMIN_TOKEN");
  if (!t || !*t) t = getenv("INFERMESH_READ_TOKEN");
  return t && *t ? t : NULL;
}

void cli_auth_header(const char *token, char *out, size_t cap) {
  out[0] = '\0';
  if (!token || !*token || strpbrk(token, "\r\n")) return;
  int n = snprintf(out, cap, "Authorization: Bearer %s\r\n", token);
  if (n < 0 || (size_t)n >= cap) out[0] = '\0';
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "-";
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void print_status(json_t *j) {
  json_t *t = json_object_get(j, "targets");
  printf("node        %s\nversion     %s\nlisten      %s\nuptime      %.0f s\nin flight   %d\nrequests    %.0f\n"
         "targets     %.0f healthy of %.0f\nmodels      ",
         str(j, "node"), str(j, "version"), str(j, "listen"), num(j, "uptime_s"), (int)num(j, "inflight"),
         num(j, "requests_total"), num(t, "healthy"), num(t, "total"));
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(j, "models"), i, m) printf("%s%s", i ? ", " : "", str(m, "id"));
  printf("%s\n", json_array_size(json_object_get(j, "models")) ? "" : "(none yet)");
  json_t *g = json_object_get(j, "gpus");
  if (!g) return;
  if (!json_is_true(json_object_get(g, "available"))) {
    printf("gpus        none (%s)\n", str(g, "reason"));
    return;
  }
  json_t *gpu;
  json_array_foreach(json_object_get(g, "gpus"), i, gpu) {
    json_t *h = json_object_get(gpu, "health");
    const char *health = json_is_string(h) ? json_string_value(h) : str(h, "status");
    printf("%-12s%zu  %s  %s\n", i ? "" : "gpus", i, str(gpu, "name"), health ? health : "-");
  }
}

static void print_models(json_t *j) {
  size_t i;
  json_t *m;
  printf("%-48s %8s %8s\n", "MODEL", "TARGETS", "HEALTHY");
  json_array_foreach(json_object_get(j, "models"), i, m)
      printf("%-48s %8.0f %8.0f\n", str(m, "id"), num(m, "targets"), num(m, "healthy"));
}

/* The PROCESS column, one word: "-" (no exec), "starting(ELAPSED/TIMEOUTs)", "running:PID", "stopping:PID",
 * "backoff(INs)", "crash_loop(INs)", "stopped". */
static void process_cell(json_t *p, char *out, size_t cap) {
  const char *st = json_string_value(json_object_get(p, "state"));
  json_t *pid = json_object_get(p, "pid"), *hw = json_object_get(p, "health_wait");
  json_t *in = json_object_get(p, "restart_in_s");
  if (!st)
    snprintf(out, cap, "-");
  else if (json_is_object(hw))
    snprintf(out, cap, "%s(%.0f/%.0fs)", st, num(hw, "elapsed_s"), num(hw, "timeout_s"));
  else if (json_is_number(pid))
    snprintf(out, cap, "%s:%.0f", st, json_number_value(pid));
  else if (json_is_number(in))
    snprintf(out, cap, "%s(%.1fs)", st, json_number_value(in));
  else
    snprintf(out, cap, "%s", st);
}

static void print_targets(json_t *j) {
  size_t i;
  json_t *t;
  printf("%-20s %-26s %-8s %7s %7s %6s %8s %8s %7s %8s %-20s %8s  %s\n", "TARGET", "URL", "STATE", "WAITING",
         "RUNNING", "KV%", "HIT%", "INFLIGHT", "AGE_MS", "SCORE", "PROCESS", "RESTARTS", "MODELS");
  json_array_foreach(json_object_get(j, "targets"), i, t) {
    char kv[16] = "-", age[16] = "-", models[256] = "";
    json_t *kvj = json_object_get(t, "kv_usage"), *agej = json_object_get(t, "age_ms");
    if (json_is_number(kvj)) snprintf(kv, sizeof kv, "%.1f", 100 * json_number_value(kvj));
    if (json_is_number(agej)) snprintf(age, sizeof age, "%.0f", json_number_value(agej));
    size_t k;
    json_t *m;
    size_t off = 0;
    json_array_foreach(json_object_get(t, "models"), k, m) {
      int w = snprintf(models + off, sizeof models - off, "%s%s", k ? "," : "", json_string_value(m));
      if (w < 0 || (size_t)w >= sizeof models - off) break;
      off += (size_t)w;
    }
    json_t *proc = json_object_get(t, "process");
    char pcell[64], restarts[16] = "-";
    process_cell(proc, pcell, sizeof pcell);
    if (json_is_object(proc)) snprintf(restarts, sizeof restarts, "%.0f", num(proc, "restarts"));
    printf("%-20s %-26s %-8s %7.0f %7.0f %6s %8.1f %8.0f %7s %8.2f %-20s %8s  %s\n", str(t, "name"), str(t, "url"),
           json_is_true(json_object_get(t, "healthy")) ? "healthy" : "down", num(t, "waiting"), num(t, "running"), kv,
           100 * num(t, "prefix_hit_rate"), num(t, "inflight"), age, num(t, "score"), pcell, restarts, models);
    if (!json_is_true(json_object_get(t, "healthy"))) printf("  └ %s\n", str(t, "last_error"));
  }
}

int cli_main(const char *cmd, int argc, char **argv) {
  const char *agent = getenv("INFERMESH_AGENT"), *token = cli_token_env();
  bool as_json = false;
  if (!agent || !*agent) agent = DEFAULT_AGENT;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      as_json = true;
    else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
      token = argv[++i];
    else if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc)
      agent = argv[++i];
    else if (strncmp(argv[i], "--agent=", 8) == 0)
      agent = argv[i] + 8;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(cmd, stdout);
      return 0;
    } else {
      fprintf(stderr, "infermesh %s: unknown argument '%s'\n", cmd, argv[i]);
      usage(cmd, stderr);
      return 2;
    }
  }
  const char *path = strcmp(cmd, "targets") == 0 ? "/v1/cluster/targets" : "/v1/cluster/status";
  struct buf body = {0};
  char err[256], auth[320];
  int status = 0;
  cli_auth_header(token, auth, sizeof auth);
  if (http_request_hdrs("GET", agent, path, NULL, auth, 5000, &status, &body, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh %s: %s\n", cmd, err);
    buf_free(&body);
    return 1;
  }
  if (status != 200) {
    fprintf(stderr, "infermesh %s: the agent answered %d: %.*s\n", cmd, status, (int)body.len, body.base ? body.base : "");
    buf_free(&body);
    return 1;
  }
  if (as_json) {
    fwrite(body.base, 1, body.len, stdout);
    putchar('\n');
    buf_free(&body);
    return 0;
  }
  json_error_t jerr;
  json_t *j = json_loadb(body.base, body.len, 0, &jerr);
  buf_free(&body);
  if (!j) {
    fprintf(stderr, "infermesh %s: the agent's answer is not JSON: %s\n", cmd, jerr.text);
    return 1;
  }
  if (strcmp(cmd, "status") == 0)
    print_status(j);
  else if (strcmp(cmd, "models") == 0)
    print_models(j);
  else
    print_targets(j);
  json_decref(j);
  return 0;
}
