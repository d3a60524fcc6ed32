/* infermesh ledger usage|contributions|settle|payouts: clients of /v1/ledger/... on an agent. */
#include "cli/ledger_cmds.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/control_cmds.h"
#include "cli/http_get.h"
#include "core/buf.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage:\n"
      "  infermesh ledger usage [--tenant T] [--model M] [--provider P] [--since 1h|ISO-8601]\n"
      "                         [--by tenant|model|node|provider|hour] [--json]\n"
      "  infermesh ledger contributions [--json]       what each provider earned, was paid, is owed\n"
      "  infermesh ledger settle --min-amount X [--json]   pay each provider's unpaid contributions that "
      "add\n"
      "                         up to at least X in one payout batch (admin token)\n"
      "  infermesh ledger payouts [BATCH] [--format csv|json]   the batches, or one for whatever pays\n"
      "common: --agent URL (INFERMESH_AGENT, else " DEFAULT_AGENT
      "), --token TOKEN (INFERMESH_ADMIN_TOKEN, else\n"
      "        INFERMESH_READ_TOKEN; a tenant's API key reads that tenant's usage)\n"
      "Amounts are exact decimals in the price's currency. The ledger is the agent's (DATA_DIR/ledger.db):\n"
      "ask the agent that answered the clients.\n");
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s && *s ? s : "-";
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void print_usage(json_t *j) {
  printf("%-28s %-4s %9s %12s %12s %12s %14s\n", "KEY", "CUR", "REQUESTS", "PROMPT", "CACHED", "COMPLETION",
         "COST");
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(j, "groups"), i, g) {
    printf("%-28s %-4s %9.0f %12.0f %12.0f %12.0f %14s\n", str(g, "key"), str(g, "currency"),
           num(g, "requests"), num(g, "prompt_tokens"), num(g, "cached_tokens"), num(g, "completion_tokens"),
           str(g, "cost"));
  }
  if (json_array_size(json_object_get(j, "groups")) == 0) printf("(no usage recorded)\n");
}

static void print_contributions(json_t *j) {
  printf("%-24s %-4s %9s %14s %14s %14s\n", "PROVIDER", "CUR", "RECORDS", "EARNED", "PAID", "UNPAID");
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(j, "providers"), i, p) {
    printf("%-24s %-4s %9.0f %14s %14s %14s\n", str(p, "provider"), str(p, "currency"), num(p, "records"),
           str(p, "earned"), str(p, "paid"), str(p, "unpaid"));
  }
}

static void print_batch(json_t *j) {
  if (json_is_null(json_object_get(j, "batch"))) {
    printf("nothing to pay: %s\n", str(j, "message"));
    return;
  }
  if (json_object_get(j, "batches")) {
    printf("%-36s %14s %10s %9s\n", "BATCH", "CREATED_MS", "PROVIDERS", "RECORDS");
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(j, "batches"), i, b) {
      printf("%-36s %14.0f %10.0f %9.0f\n", str(b, "batch"), num(b, "created_ms"), num(b, "providers"),
             num(b, "records"));
    }
    return;
  }
  printf("batch %s (created %.0f ms)\n", str(j, "batch"), num(j, "created_ms"));
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(j, "payouts"), i, p) {
    printf("  %-24s %-4s %14s  (%.0f records)\n", str(p, "provider"), str(p, "currency"), str(p, "amount"),
           num(p, "records"));
  }
}

/* Appends &NAME=VALUE (escaped) when value is set. */
static void query(struct buf *path, const char *name, const char *value) {
  if (!value) return;
  buf_printf(path, "%c%s=", strchr(path->base, '?') ? '&' : '?', name);
  buf_path_segment(path, value);
}

int ledger_cmd_main(int argc, char **argv) {
  const char *agent = getenv("INFERMESH_AGENT"), *token = cli_token_env();
  const char *verb = NULL, *batch = NULL, *fmt = NULL, *min = NULL;
  const char *f_tenant = NULL, *f_model = NULL, *f_provider = NULL, *f_since = NULL, *f_by = NULL;
  bool as_json = false;
  if (!agent || !*agent) agent = DEFAULT_AGENT;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = strcmp(a, "--agent") == 0        ? &agent
                        : strcmp(a, "--token") == 0      ? &token
                        : strcmp(a, "--tenant") == 0     ? &f_tenant
                        : strcmp(a, "--model") == 0      ? &f_model
                        : strcmp(a, "--provider") == 0   ? &f_provider
                        : strcmp(a, "--since") == 0      ? &f_since
                        : strcmp(a, "--by") == 0         ? &f_by
                        : strcmp(a, "--format") == 0     ? &fmt
                        : strcmp(a, "--min-amount") == 0 ? &min
                                                         : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      as_json = true;
    } else if (slot && i + 1 < argc) {
      *slot = argv[++i];
    } else if (a[0] != '-' && !verb) {
      verb = a;
    } else if (a[0] != '-' && verb && strcmp(verb, "payouts") == 0 && !batch) {
      batch = a;
    } else {
      fprintf(stderr, "infermesh ledger: unexpected argument '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  struct buf path = {0};
  const char *method = "GET";
  if (verb && strcmp(verb, "usage") == 0) {
    buf_puts(&path, "/v1/ledger/usage");
    query(&path, "tenant", f_tenant);
    query(&path, "model", f_model);
    query(&path, "provider", f_provider);
    query(&path, "since", f_since);
    query(&path, "by", f_by);
  } else if (verb && strcmp(verb, "contributions") == 0) {
    buf_puts(&path, "/v1/ledger/contributions");
  } else if (verb && strcmp(verb, "settle") == 0) {
    if (!min) {
      fprintf(stderr,
              "infermesh ledger settle: --min-amount X is needed (0 pays every unpaid contribution)\n");
      return 2;
    }
    method = "POST";
    buf_puts(&path, "/v1/ledger/settle");
    query(&path, "min_amount", min);
  } else if (verb && strcmp(verb, "payouts") == 0) {
    buf_puts(&path, "/v1/ledger/payouts");
    if (batch) {
      buf_puts(&path, "/");
      buf_path_segment(&path, batch);
    }
    if (fmt && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
      fprintf(stderr, "infermesh ledger payouts: --format csv or json\n");
      buf_free(&path);
      return 2;
    }
    query(&path, "format", fmt && strcmp(fmt, "csv") == 0 ? "csv" : NULL);
    as_json |= fmt && strcmp(fmt, "json") == 0;
  } else {
    usage(stderr);
    return 2;
  }
  char auth[320], err[256];
  struct buf body = {0};
  int status = 0;
  cli_auth_header(token, auth, sizeof auth);
  int rc = http_request_hdrs(method, agent, path.base, NULL, auth, 30000, &status, &body, err, sizeof err);
  buf_free(&path);
  if (rc != 0) {
    fprintf(stderr, "infermesh ledger: %s\n", err);
    buf_free(&body);
    return 1;
  }
  if (status / 100 != 2) {
    rc = control_cmds_fail_status(status, &body);
    buf_free(&body);
    return rc ? rc : 1;
  }
  json_t *j = NULL;
  if (fmt && strcmp(fmt, "csv") == 0) {
    fwrite(body.base, 1, body.len, stdout);
  } else if (as_json || !(j = json_loadb(body.base ? body.base : "", body.len, 0, NULL))) {
    fwrite(body.base, 1, body.len, stdout);
    putchar('\n');
  } else if (strcmp(verb, "usage") == 0) {
    print_usage(j);
  } else if (strcmp(verb, "contributions") == 0) {
    print_contributions(j);
  } else {
    print_batch(j);
  }
  json_decref(j);
  buf_free(&body);
  return 0;
}
