/* Membership commands: members (table or JSON), leave, drain NODE / undrain NODE. */
#include "cli/members.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http_get.h"
#include "core/buf.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"

static void usage(const char *cmd, FILE *f) {
  if (strcmp(cmd, "members") == 0)
    fprintf(f, "usage: infermesh members [--agent URL] [--json] [--all]\n\n"
               "Members of the mesh as this agent sees them: name, id, gossip address, roles, state, incarnation,\n"
               "models and the age of their load signals. --all also lists dead and departed members.\n");
  else if (strcmp(cmd, "leave") == 0)
    fprintf(f, "usage: infermesh leave [--agent URL]\n\n"
               "The agent announces that it leaves the mesh (others stop routing to it at once), finishes the\n"
               "requests in flight and exits.\n");
  else
    fprintf(f, "usage: infermesh %s NODE [--agent URL] [--json]\n\n"
               "%s node NODE (a name or an id prefix of at least 6 characters): %s\n"
               "Until the control plane makes drains durable, the flag lives in the node's membership and is\n"
               "lost when that node restarts.\n",
            cmd, strcmp(cmd, "drain") == 0 ? "Drains" : "Undrains",
            strcmp(cmd, "drain") == 0 ? "it finishes in-flight work and gets no new requests."
                                      : "it takes new requests again.");
  fprintf(f, "\n  --agent URL   the agent to ask (INFERMESH_AGENT, else " DEFAULT_AGENT ")\n");
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
  const char *node = NULL;
  bool as_json = false, all = false;
  bool is_members = strcmp(cmd, "members") == 0, is_leave = strcmp(cmd, "leave") == 0;
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
  struct buf body = {0};
  char err[256];
  int status = 0;
  if (http_request(method, agent, path, NULL, 10000, &status, &body, err, sizeof err) != 0) {
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
  return 0;
}
