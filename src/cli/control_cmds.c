/* Control-plane CLI: raft status, policy, pin/unpin, tenant, price, provider — clients of /v1/cluster/... on an agent. */
#include "cli/control_cmds.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/http_get.h"
#include "core/buf.h"
#include "core/slice.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"
#define TIMEOUT_MS 10000
#define RETRY_FOR_MS 15000

struct opts {
  const char *agent, *token;
  bool json;
  json_t *value; /* fields given as flags */
  const char *pos[4];
  int npos;
};

static void usage(FILE *f) {
  fprintf(f, "usage:\n"
             "  infermesh raft status\n"
             "  infermesh policy set MODEL [--strategy S] [--slo latency|throughput] [--max-queue N] [--hedge true|false]\n"
             "                             [--hedge-delay-ms N] [--hedge-max-pct P] [--fallback MODEL]...\n"
             "  infermesh policy get MODEL | policy list | policy delete MODEL\n"
             "  infermesh pin MODEL [--node NODE]... [--zone ZONE]...   |   infermesh unpin MODEL\n"
             "  infermesh tenant add NAME [--rps R] [--tokens-per-min T] [--max-concurrent C] [--weight W] [--priority P]\n"
             "                             [--model MODEL]...   (only these models; others answer 403)\n"
             "                             [--budget AMOUNT --period day|month|total]   (spend limit; 0: none)\n"
             "  infermesh tenant list | tenant limits NAME [limit flags] | tenant revoke NAME\n"
             "  infermesh price set MODEL --prompt X --completion Y [--cached-prompt Z] [--currency USD]\n"
             "                             (per million tokens; cached prompt tokens cost the prompt price unless set)\n"
             "  infermesh price get MODEL | price list | price delete MODEL\n"
             "  infermesh provider set NAME --share S   (the part of served cost NAME earns, 0..1; default 1)\n"
             "  infermesh provider get NAME | provider list | provider delete NAME\n"
             "common: --agent URL (INFERMESH_AGENT, else " DEFAULT_AGENT "), --token ADMIN_TOKEN\n"
             "        (INFERMESH_ADMIN_TOKEN; writes need it, and reads when the agent has tenants, where\n"
             "        INFERMESH_READ_TOKEN also reads), --json\n");
}

/* A flag that sets one field of the value: name, JSON field, type (s string, i integer, f number, b bool,
 * a string appended to an array). */
static const struct {
  const char *flag, *field;
  char type;
} fields[] = {
    {"--strategy", "strategy", 's'},   {"--slo", "slo_class", 's'},           {"--max-queue", "max_queue", 'i'},
    {"--hedge", "hedge", 'b'},         {"--hedge-delay-ms", "hedge_delay_ms", 'i'},
    {"--hedge-max-pct", "hedge_max_pct", 'f'}, {"--fallback", "fallbacks", 'a'}, {"--node", "nodes", 'a'},
    {"--zone", "zones", 'a'},          {"--rps", "rps", 'f'},                  {"--tokens-per-min", "tokens_per_min", 'i'},
    {"--max-concurrent", "max_concurrent", 'i'}, {"--weight", "weight", 'f'}, {"--priority", "priority", 'i'},
    {"--reason", "reason", 's'},       {"--model", "models", 'a'},             {"--prompt", "prompt_per_mtok", 'f'},
    {"--completion", "completion_per_mtok", 'f'}, {"--cached-prompt", "cached_prompt_per_mtok", 'f'},
    {"--currency", "currency", 's'},   {"--budget", "budget", 's'},           {"--period", "period", 's'},
    {"--share", "share", 'f'},
};

static int parse(struct opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->agent = getenv("INFERMESH_AGENT");
  if (!o->agent || !*o->agent) o->agent = DEFAULT_AGENT;
  o->token = getenv("INFERMESH_ADMIN_TOKEN");
  o->value = json_object();
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strncmp(a, "--", 2) != 0) {
      if (o->npos == 4) goto bad;
      o->pos[o->npos++] = a;
      continue;
    }
    if (i + 1 >= argc) goto bad;
    const char *v = argv[++i];
    if (strcmp(a, "--agent") == 0) {
      o->agent = v;
      continue;
    }
    if (strcmp(a, "--token") == 0) {
      o->token = v;
      continue;
    }
    size_t k = 0, nf = sizeof fields / sizeof fields[0];
    while (k < nf && strcmp(fields[k].flag, a) != 0) k++;
    if (k == nf) goto bad;
    char *end;
    switch (fields[k].type) {
    case 's': json_object_set_new(o->value, fields[k].field, json_string(v)); break;
    case 'i': {
      long long n = strtoll(v, &end, 10);
      if (*end || end == v) goto bad;
      json_object_set_new(o->value, fields[k].field, json_integer(n));
      break;
    }
    case 'f': {
      double d = strtod(v, &end);
      if (*end || end == v) goto bad;
      json_object_set_new(o->value, fields[k].field, json_real(d));
      break;
    }
    case 'b':
      if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) goto bad;
      json_object_set_new(o->value, fields[k].field, json_boolean(v[0] == 't'));
      break;
    case 'a': {
      json_t *arr = json_object_get(o->value, fields[k].field);
      if (!arr) json_object_set_new(o->value, fields[k].field, arr = json_array());
      json_array_append_new(arr, json_string(v));
      break;
    }
    }
  }
  return 0;
bad:
  fprintf(stderr, "infermesh: bad or unknown option near '%s'\n\n", argc ? argv[argc - 1] : "");
  usage(stderr);
  return -EINVAL;
}

void control_cmds_print_body(const struct buf *body) {
  json_t *j = json_loadb(body->base ? body->base : "", body->len, 0, NULL);
  if (j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(j);
  } else {
    printf("%.*s\n", (int)body->len, body->base ? body->base : "");
  }
}

int control_cmds_fail_status(int status, const struct buf *body) {
  json_t *j = json_loadb(body->base ? body->base : "", body->len, 0, NULL);
  const char *msg = j ? json_string_value(json_object_get(json_object_get(j, "error"), "message")) : NULL;
  fprintf(stderr, "infermesh: %d: %s\n", status, msg ? msg : (body->base ? body->base : "error"));
  json_decref(j);
  return 1;
}

/* call sends one request; writes carry the admin token and a command id and are retried with the same id
 * while the control plane answers 503 (no leader yet, or the outcome is unknown). */
static int call(struct opts *o, const char *method, const char *path, const char *body, bool write,
                struct buf *out, int *status) {
  char hdrs[512], err[512], id[40];
  uint8_t r[12];
  randombytes_buf(r, sizeof r);
  char hex[25];
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  snprintf(id, sizeof id, "cli-%s", hex);
  hdrs[0] = '\0';
  if (write) {
    if (!o->token || !*o->token) {
      fprintf(stderr, "infermesh: writes need the admin token: pass --token or set INFERMESH_ADMIN_TOKEN\n");
      return 2;
    }
    snprintf(hdrs, sizeof hdrs, "Authorization: Bearer %s\r\nx-infermesh-command-id: %s\r\n", o->token, id);
  } else {
    cli_auth_header(o->token && *o->token ? o->token : cli_token_env(), hdrs, sizeof hdrs);
  }
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    buf_reset(out);
    int rc = http_request_hdrs(method, o->agent, path, body, hdrs, TIMEOUT_MS, status, out, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "infermesh: %s\n", err);
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    if (*status != 503 || !write || ms > RETRY_FOR_MS) return 0;
    usleep(200000);
  }
}

static int finish(struct opts *o, int rc, int status, struct buf *b, bool quiet_ok) {
  if (rc == 0 && status >= 300) rc = control_cmds_fail_status(status, b);
  else if (rc == 0 && (o->json || !quiet_ok)) control_cmds_print_body(b);
  buf_free(b);
  json_decref(o->value);
  return rc;
}

static int kind_cmd(struct opts *o, const char *kind, const char *verb, const char *name) {
  struct buf path = {0}, b = {0};
  int status = 0, rc;
  char *value = NULL;
  buf_printf(&path, "/v1/cluster/%s", kind);
  if (name) {
    buf_puts(&path, "/");
    buf_path_segment(&path, name);
  }
  if (strcmp(verb, "get") == 0 || strcmp(verb, "list") == 0) {
    rc = call(o, "GET", path.base, NULL, false, &b, &status);
  } else if (strcmp(verb, "delete") == 0) {
    rc = call(o, "DELETE", path.base, NULL, true, &b, &status);
  } else {
    if (strcmp(verb, "create") == 0) json_object_set_new(o->value, "name", json_string(name));
    value = json_dumps(o->value, JSON_COMPACT);
    if (strcmp(verb, "create") == 0) {
      buf_reset(&path);
      buf_printf(&path, "/v1/cluster/%s", kind);
    }
    rc = call(o, strcmp(verb, "create") == 0 ? "POST" : "PUT", path.base, value, true, &b, &status);
    free(value);
    if (rc == 0 && status == 201 && !o->json) {
      json_t *j = json_loadb(b.base, b.len, 0, NULL);
      printf("tenant %s created. Its API key (shown only now; store it):\n%s\n", name,
             json_string_value(json_object_get(j, "api_key")));
      json_decref(j);
      buf_free(&path);
      return finish(o, rc, status, &b, true);
    }
  }
  buf_free(&path);
  return finish(o, rc, status, &b, false);
}

int control_cmd_main(const char *cmd, int argc, char **argv) {
  struct opts o;
  int rc = parse(&o, argc, argv);
  if (rc != 0) {
    if (rc == 1) usage(stdout);
    json_decref(o.value);
    return rc == 1 ? 0 : 2;
  }
  const char *verb = o.npos > 0 ? o.pos[0] : "";
  const char *name = o.npos > 1 ? o.pos[1] : NULL;
  if (strcmp(cmd, "raft") == 0 && strcmp(verb, "status") == 0) {
    struct buf b = {0};
    int status = 0;
    rc = call(&o, "GET", "/v1/cluster/raft", NULL, false, &b, &status);
    return finish(&o, rc, status, &b, false);
  }
  if (strcmp(cmd, "policy") == 0) {
    if (strcmp(verb, "list") == 0) return kind_cmd(&o, "policies", "list", NULL);
    if (name && strcmp(verb, "get") == 0) return kind_cmd(&o, "policies", "get", name);
    if (name && strcmp(verb, "set") == 0) return kind_cmd(&o, "policies", "set", name);
    if (name && strcmp(verb, "delete") == 0) return kind_cmd(&o, "policies", "delete", name);
  }
  if (strcmp(cmd, "pin") == 0 && o.npos == 1) return kind_cmd(&o, "pins", "set", o.pos[0]);
  if (strcmp(cmd, "unpin") == 0 && o.npos == 1) return kind_cmd(&o, "pins", "delete", o.pos[0]);
  if (strcmp(cmd, "tenant") == 0) {
    if (strcmp(verb, "list") == 0) return kind_cmd(&o, "tenants", "list", NULL);
    if (name && strcmp(verb, "add") == 0) return kind_cmd(&o, "tenants", "create", name);
    if (name && strcmp(verb, "limits") == 0) return kind_cmd(&o, "tenants", "set", name);
    if (name && strcmp(verb, "revoke") == 0) {
      json_object_set_new(o.value, "revoked", json_true());
      return kind_cmd(&o, "tenants", "set", name);
    }
  }
  if (strcmp(cmd, "price") == 0) {
    if (strcmp(verb, "list") == 0) return kind_cmd(&o, "prices", "list", NULL);
    if (name && strcmp(verb, "get") == 0) return kind_cmd(&o, "prices", "get", name);
    if (name && strcmp(verb, "delete") == 0) return kind_cmd(&o, "prices", "delete", name);
    if (name && strcmp(verb, "set") == 0) {
      if (!json_object_get(o.value, "prompt_per_mtok") || !json_object_get(o.value, "completion_per_mtok")) {
        fprintf(stderr, "infermesh price set: --prompt and --completion are needed (prices per million tokens)\n");
        json_decref(o.value);
        return 2;
      }
      return kind_cmd(&o, "prices", "set", name);
    }
  }
  if (strcmp(cmd, "provider") == 0) {
    if (strcmp(verb, "list") == 0) return kind_cmd(&o, "providers", "list", NULL);
    if (name && strcmp(verb, "get") == 0) return kind_cmd(&o, "providers", "get", name);
    if (name && strcmp(verb, "delete") == 0) return kind_cmd(&o, "providers", "delete", name);
    if (name && strcmp(verb, "set") == 0) {
      if (!json_object_get(o.value, "share")) {
        fprintf(stderr, "infermesh provider set: --share is needed (the part of served cost it earns, 0..1)\n");
        json_decref(o.value);
        return 2;
      }
      return kind_cmd(&o, "providers", "set", name);
    }
  }
  usage(stderr);
  json_decref(o.value);
  return 2;
}
