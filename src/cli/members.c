/* Membership commands: members (table or JSON), leave, drain NODE / undrain NODE, and the live event stream. */
#include "cli/members.h"

#include <jansson.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/http_get.h"
#include "core/buf.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"

static void usage(const char *cmd, FILE *f) {
  if (strcmp(cmd, "members") == 0)
    fprintf(f, "usage: infermesh members [--agent URL] [--json] [--all] [--token TOKEN]\n\n"
               "Members of the mesh as this agent sees them: name, id, gossip address, roles, state, incarnation,\n"
               "models and the age of their load signals. --all also lists dead and departed members.\n");
  else if (strcmp(cmd, "leave") == 0)
    fprintf(f, "usage: infermesh leave [--agent URL] [--token ADMIN_TOKEN]\n\n"
               "The agent announces that it leaves the mesh (others stop routing to it at once), finishes the\n"
               "requests in flight and exits. Needs the agent's admin token (--token, or INFERMESH_ADMIN_TOKEN).\n");
  else
    fprintf(f, "usage: infermesh %s NODE [--agent URL] [--json] [--token TOKEN]\n\n"
               "%s node NODE (a name or an id prefix of at least 6 characters): %s\n"
               "Needs the admin token (--token, or INFERMESH_ADMIN_TOKEN) of the agent asked; it forwards the\n"
               "drain to the node. The flag lives in the node's membership; with a control plane (Raft) the drain is\n"
               "also written there, where it survives restarts.\n",
            cmd, strcmp(cmd, "drain") == 0 ? "Drains" : "Undrains",
            strcmp(cmd, "drain") == 0 ? "it finishes in-flight work and gets no new requests."
                                      : "it takes new requests again.");
  fprintf(f, "\n  --agent URL   the agent to ask (INFERMESH_AGENT, else " DEFAULT_AGENT ")\n"
             "  --token TOKEN the agent's admin token (INFERMESH_ADMIN_TOKEN); members also takes the read token\n"
             "                (INFERMESH_READ_TOKEN), needed when the agent has tenants\n");
}

/* mesh_has_server tells whether an alive member of agent's mesh runs a control-plane server (role "server");
 * when the question cannot be answered it says yes, so that the durable write is tried and its error shown. */
static bool mesh_has_server(const char *agent, const char *token) {
  char auth[320], err[256];
  struct buf b = {0};
  int status = 0;
  cli_auth_header(token, auth, sizeof auth);
  if (http_request_hdrs("GET", agent, "/v1/cluster/members", NULL, auth, 10000, &status, &b, err, sizeof err) != 0 ||
      status != 200) {
    buf_free(&b);
    return true;
  }
  json_t *j = json_loadb(b.base ? b.base : "", b.len, 0, NULL);
  buf_free(&b);
  bool found = !j;
  size_t i, k;
  json_t *m, *r;
  json_array_foreach(json_object_get(j, "members"), i, m) {
    const char *st = json_string_value(json_object_get(m, "state"));
    if (!st || strcmp(st, "alive") != 0) continue;
    json_array_foreach(json_object_get(m, "roles"), k, r) found |= json_is_string(r) && !strcmp(json_string_value(r), "server");
  }
  json_decref(j);
  return found;
}

/* durable writes (PUT) or removes (DELETE) the control plane's drain of node with the admin token, retrying
 * while the control plane has no leader. Prints what happened; returns 0 or 1. */
static int durable(const char *agent, const char *node, bool on, const char *token) {
  char path[128], hdrs[600], err[256];
  if (!mesh_has_server(agent, token)) {
    printf("durable: no control-plane server (Raft) in this mesh: only the membership flag is set\n");
    return 0;
  }
  snprintf(path, sizeof path, "/v1/cluster/drains/%s", node);
  snprintf(hdrs, sizeof hdrs, "Authorization: Bearer %s\r\nx-infermesh-command-id: cli-drain-%ld-%d\r\n", token,
           (long)time(NULL), (int)getpid());
  struct buf b = {0};
  int status = 0;
  for (int tries = 0;; tries++) {
    buf_reset(&b);
    if (http_request_hdrs(on ? "PUT" : "DELETE", agent, path, on ? "{\"reason\":\"infermesh drain\"}" : NULL, hdrs,
                          10000, &status, &b, err, sizeof err) != 0) {
      fprintf(stderr, "infermesh: %s\n", err);
      buf_free(&b);
      return 1;
    }
    if (status != 503 || tries >= 25) break;
    usleep(200000);
  }
  int rc = 0;
  if (status / 100 == 2)
    printf("durable: the control plane %s (it survives restarts)\n", on ? "records the drain" : "dropped the drain");
  else if (status == 404 && !on)
    printf("durable: the control plane held no drain for %s\n", node);
  else if (status == 404 || status == 409)
    printf("durable: this agent runs no control plane: only the membership flag is set\n");
  else
    fprintf(stderr, "infermesh: the control plane refused the durable drain (HTTP %d): %.*s\n", status, (int)b.len,
            b.base ? b.base : ""), rc = 1;
  buf_free(&b);
  return rc;
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s && *s ? s : "-";
}

static void join_array(json_t *a, const char *field, char *out, size_t cap) {
  size_t i, off = 0;
  json_t *e;
  out[0] = '\0';
  json_array_foreach(a, i, e) {
    const char *s = field ? json_string_value(json_object_get(e, field)) : json_string_value(e);
    int w = snprintf(out + off, cap - off, "%s%s", i ? "," : "", s ? s : "?");
    if (w < 0 || (size_t)w >= cap - off) break;
    off += (size_t)w;
  }
  if (!out[0]) snprintf(out, cap, "-");
}

static void print_members(json_t *j, bool all) {
  if (json_is_true(json_object_get(j, "standalone"))) {
    printf("this agent runs alone: no cluster key in its data dir (infermesh init, or --join an invite)\n");
    return;
  }
  size_t i;
  json_t *m;
  int shown = 0, hidden = 0;
  printf("%-16s %-12s %-22s %-20s %-8s %5s %-14s %-9s %s\n", "NAME", "ID", "ADDRESS", "ROLES", "STATE", "INC", "GPUS",
         "LOAD_AGE", "MODELS");
  json_array_foreach(json_object_get(j, "members"), i, m) {
    const char *state = str(m, "state");
    if (!all && (strcmp(state, "dead") == 0 || strcmp(state, "left") == 0)) {
      hidden++;
      continue;
    }
    char roles[64], models[256], age[24] = "-", st[24], gpus[32] = "-";
    double ng = json_number_value(json_object_get(m, "gpus")), nd = json_number_value(json_object_get(m, "gpus_degraded"));
    if (ng > 0 && nd > 0)
      snprintf(gpus, sizeof gpus, "%.0f (%.0f degraded)", ng, nd);
    else if (ng > 0)
      snprintf(gpus, sizeof gpus, "%.0f ok", ng);
    join_array(json_object_get(m, "roles"), NULL, roles, sizeof roles);
    join_array(json_object_get(m, "models"), "name", models, sizeof models);
    json_t *a = json_object_get(m, "load_age_ms");
    if (json_is_number(a)) snprintf(age, sizeof age, "%.0f ms", json_number_value(a));
    snprintf(st, sizeof st, "%s%s", state, json_is_true(json_object_get(m, "draining")) ? "+drain" : "");
    printf("%-16s %-12s %-22s %-20s %-8s %5.0f %-14s %-9s %s%s\n", str(m, "name"), str(m, "id_short"),
           str(m, "addr"), roles, st, json_number_value(json_object_get(m, "incarnation")), gpus, age, models,
           json_is_true(json_object_get(m, "self")) ? "  (this node)" : "");
    shown++;
  }
  if (hidden) printf("(%d dead or departed member%s not shown: --all lists them)\n", hidden, hidden == 1 ? "" : "s");
}

int members_main(const char *cmd, int argc, char **argv) {
  const char *agent = getenv("INFERMESH_AGENT");
  bool as_json = false, all = false;
  bool is_members = strcmp(cmd, "members") == 0, is_leave = strcmp(cmd, "leave") == 0;
  const char *node = NULL, *token = is_members ? cli_token_env() : getenv("INFERMESH_ADMIN_TOKEN");
  if (!agent || !*agent) agent = DEFAULT_AGENT;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      as_json = true;
    else if (strcmp(argv[i], "--all") == 0 && is_members)
      all = true;
    else if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc)
      agent = argv[++i];
    else if (strncmp(argv[i], "--agent=", 8) == 0)
      agent = argv[i] + 8;
    else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
      token = argv[++i];
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(cmd, stdout);
      return 0;
    } else if (argv[i][0] != '-' && !node && !is_members && !is_leave) {
      node = argv[i];
    } else {
      fprintf(stderr, "infermesh %s: unexpected argument '%s'\n\n", cmd, argv[i]);
      usage(cmd, stderr);
      return 2;
    }
  }
  if (!is_members && !is_leave && !node) {
    fprintf(stderr, "infermesh %s: which node? (infermesh members lists them)\n\n", cmd);
    usage(cmd, stderr);
    return 2;
  }
  if (node && (strchr(node, '/') || strlen(node) > 64)) {
    fprintf(stderr, "infermesh %s: '%s' is not a node name\n", cmd, node);
    return 2;
  }
  char path[128];
  const char *method = "POST";
  if (is_members) {
    method = "GET";
    snprintf(path, sizeof path, "/v1/cluster/members");
  } else if (is_leave) {
    snprintf(path, sizeof path, "/v1/cluster/leave");
  } else {
    snprintf(path, sizeof path, "/v1/cluster/nodes/%s/%s", node, cmd);
  }
  if (!is_members && (!token || !*token)) {
    fprintf(stderr, "infermesh %s: this changes the mesh and needs the agent's admin token: pass --token or set "
                    "INFERMESH_ADMIN_TOKEN\n", cmd);
    return 2;
  }
  struct buf body = {0};
  char err[256], auth[320];
  int status = 0;
  cli_auth_header(token, auth, sizeof auth);
  if (http_request_hdrs(method, agent, path, NULL, auth, 10000, &status, &body, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh %s: %s\n", cmd, err);
    buf_free(&body);
    return 1;
  }
  json_error_t jerr;
  json_t *j = json_loadb(body.base ? body.base : "", body.len, 0, &jerr);
  if (status / 100 != 2) {
    const char *msg = j ? json_string_value(json_object_get(json_object_get(j, "error"), "message")) : NULL;
    fprintf(stderr, "infermesh %s: %s\n", cmd, msg ? msg : "the agent answered an error");
    json_decref(j);
    buf_free(&body);
    return 1;
  }
  if (as_json || !j) {
    fwrite(body.base, 1, body.len, stdout);
    putchar('\n');
  } else if (is_members) {
    print_members(j, all);
  } else if (is_leave) {
    printf("leaving: the agent announced its departure and exits once %.0f request(s) in flight are done\n",
           json_number_value(json_object_get(j, "in_flight")));
  } else {
    printf("%s %s (in flight there: %.0f)\n", str(j, "node"),
           json_is_true(json_object_get(j, "draining")) ? "is draining: no new requests" : "takes requests again",
           json_number_value(json_object_get(j, "in_flight")));
  }
  json_decref(j);
  buf_free(&body);
  if (!is_members && !is_leave) return durable(agent, node, strcmp(cmd, "drain") == 0, token);
  return 0;
}

/* ---- infermesh events ---- */

struct sse {
  struct buf line;
  char kind[32];
  bool json;
};

static void sig_exit_cb(int sig) {
  (void)sig;
  _exit(0); /* every event line was flushed as it was printed */
}

static void print_event(struct sse *e, const char *data) {
  if (e->json) {
    printf("{\"event\":\"%s\",\"data\":%s}\n", e->kind[0] ? e->kind : "message", data);
  } else {
    json_error_t jerr;
    json_t *j = json_loads(data, 0, &jerr);
    char when[32] = "-";
    json_t *ts = json_object_get(j, "ts");
    if (json_is_integer(ts)) {
      time_t t = (time_t)(json_integer_value(ts) / 1000);
      struct tm tm;
      localtime_r(&t, &tm);
      strftime(when, sizeof when, "%H:%M:%S", &tm);
    }
    printf("%s  %-7s", when, e->kind[0] ? e->kind : "message");
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
      if (strcmp(k, "ts") == 0) continue;
      if (json_is_string(v)) printf("  %s=%s", k, json_string_value(v));
      else if (json_is_boolean(v)) printf("  %s=%s", k, json_is_true(v) ? "true" : "false");
      else if (json_is_integer(v)) printf("  %s=%lld", k, (long long)json_integer_value(v));
    }
    if (!j) printf("  %s", data);
    putchar('\n');
    json_decref(j);
  }
  fflush(stdout);
}

/* SSE framing: `event:` sets the kind, `data:` is the (one-line) payload, a blank line ends an event. */
static int sse_cb(void *arg, const char *data, size_t len) {
  struct sse *e = arg;
  for (size_t i = 0; i < len; i++) {
    if (data[i] != '\n') {
      if (e->line.len < 1 << 20) buf_append(&e->line, data + i, 1);
      continue;
    }
    buf_append(&e->line, "", 1);
    const char *l = e->line.base;
    if (strncmp(l, "event: ", 7) == 0) str_copy(e->kind, sizeof e->kind, l + 7);
    else if (strncmp(l, "data: ", 6) == 0) print_event(e, l + 6);
    else if (!l[0]) e->kind[0] = '\0';
    buf_reset(&e->line);
  }
  return 0;
}

int events_main(int argc, char **argv) {
  const char *agent = getenv("INFERMESH_AGENT"), *token = cli_token_env();
  const char *since = NULL;
  struct sse e = {{0}, "", false};
  if (!agent || !*agent) agent = DEFAULT_AGENT;
  for (int i = 0; i < argc; i++) {
    uint64_t n;
    if (strcmp(argv[i], "--json") == 0) {
      e.json = true;
    } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
      token = argv[++i];
    } else if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc) {
      agent = argv[++i];
    } else if (strncmp(argv[i], "--agent=", 8) == 0) {
      agent = argv[i] + 8;
    } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc && slice_to_u64(slice_cstr(argv[i + 1]), &n) == 0) {
      since = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("usage: infermesh events [--agent URL] [--json] [--since N] [--token TOKEN]\n\n"
             "Prints the agent's membership, drain, target health and configuration events as they happen, one\n"
             "per line (TIME  KIND  details; --json: {\"event\":KIND,\"data\":{...}}), until Ctrl-C or the agent\n"
             "ends the stream. --since N first replays the recent events after sequence number N.\n"
             "\n  --agent URL   the agent to ask (INFERMESH_AGENT, else " DEFAULT_AGENT ")\n"
             "  --token TOKEN the agent's admin or read token, needed when it has tenants (INFERMESH_ADMIN_TOKEN,\n"
             "                else INFERMESH_READ_TOKEN)\n"
             "Exit codes: 0 stream ended or interrupted, 1 agent unreachable or refused, 2 bad usage.\n");
      return 0;
    } else {
      fprintf(stderr, "infermesh events: unexpected argument '%s' (see infermesh events --help)\n", argv[i]);
      return 2;
    }
  }
  char path[64], err[256];
  snprintf(path, sizeof path, "/v1/cluster/events%s%s", since ? "?since=" : "", since ? since : "");
  signal(SIGINT, sig_exit_cb);
  signal(SIGTERM, sig_exit_cb);
  struct buf body = {0};
  int status = 0;
  char auth[320], hdrs[352];
  cli_auth_header(token, auth, sizeof auth);
  snprintf(hdrs, sizeof hdrs, "%sAccept: text/event-stream\r\n", auth);
  int rc = http_stream(agent, path, hdrs, 5000, sse_cb, &e, &status, &body, err, sizeof err);
  buf_free(&e.line);
  if (rc != 0) {
    fprintf(stderr, "infermesh events: %s\n", err);
    buf_free(&body);
    return 1;
  }
  if (status / 100 != 2) {
    fprintf(stderr, "infermesh events: the agent answered HTTP %d: %.*s\n", status, (int)body.len,
            body.base ? body.base : "");
    buf_free(&body);
    return 1;
  }
  buf_free(&body);
  return 0;
}
