/* infermesh ledger usage|budgets|contributions|settle|payouts: clients of /v1/ledger/... on an agent. */
#include "cli/ledger_cmds.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/control_cmds.h"
#include "cli/http_get.h"
#include "core/alloc.h"
#include "core/amount.h"
#include "core/buf.h"
#include "core/slice.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage:\n"
      "  infermesh ledger usage [--tenant T] [--model M] [--provider P] [--since 1h|ISO-8601]\n"
      "                         [--by tenant|model|node|provider|hour] [--json]\n"
      "  infermesh ledger budgets [--json]             each tenant's budget, spend (mesh-wide), what is "
      "left\n"
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

static void print_budgets(json_t *j) {
  printf("%-24s %-6s %14s %14s %14s  %s\n", "TENANT", "PERIOD", "BUDGET", "SPENT", "REMAINING", "RESETS");
  size_t i;
  json_t *b;
  json_array_foreach(json_object_get(j, "budgets"), i, b) {
    printf("%-24s %-6s %14s %14s %14s  %s\n", str(b, "tenant"), str(b, "period"), str(b, "budget"),
           str(b, "spent"), str(b, "remaining"), str(b, "resets_at"));
  }
  if (json_array_size(json_object_get(j, "budgets")) == 0) printf("(no tenants)\n");
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

/* ---- usage across the mesh: every alive member's ledger, added up ---- */

struct group {
  char key[160], currency[8];
  int64_t requests, prompt, cached, completion, cost_nano;
};

struct merged {
  struct group *g;
  int n, cap;
  json_t *asked, *missing; /* node names */
};

static int64_t ival(json_t *o, const char *k) { return (int64_t)json_number_value(json_object_get(o, k)); }

static void add_groups(struct merged *m, json_t *j) {
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(j, "groups"), i, x) {
    const char *key = str(x, "key"), *cur = str(x, "currency");
    int64_t cost = 0;
    amount_parse(str(x, "cost"), &cost);
    struct group *g = NULL;
    for (int k = 0; k < m->n && !g; k++)
      if (strcmp(m->g[k].key, key) == 0 && strcmp(m->g[k].currency, cur) == 0) g = &m->g[k];
    if (!g) {
      if (m->n == m->cap) m->g = xrealloc(m->g, (size_t)(m->cap = m->cap ? m->cap * 2 : 16) * sizeof *m->g);
      g = &m->g[m->n++];
      memset(g, 0, sizeof *g);
      str_copy(g->key, sizeof g->key, key);
      str_copy(g->currency, sizeof g->currency, cur);
    }
    g->requests += ival(x, "requests");
    g->prompt += ival(x, "prompt_tokens");
    g->cached += ival(x, "cached_tokens");
    g->completion += ival(x, "completion_tokens");
    g->cost_nano += cost;
  }
}

static int cmp_group(const void *a, const void *b) {
  const struct group *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : strcmp(x->currency, y->currency);
}

/* usage_mesh asks each alive member (members: the agent's /v1/cluster/members answer) for path and prints the
 * sum; members are reached the way the agent was (https:// when its URL is: one mesh, one listener setup).
 * Returns the exit code: 0, or 1 when no member answered. */
static int usage_mesh(json_t *members, const char *agent, const char *path, const char *auth, const char *by,
                      bool as_json) {
  const char *scheme = strncmp(agent, "https://", 8) == 0 ? "https" : "http";
  struct merged m = {.asked = json_array(), .missing = json_array()};
  size_t i;
  json_t *mem;
  json_array_foreach(json_object_get(members, "members"), i, mem) {
    const char *name = str(mem, "name"), *api = json_string_value(json_object_get(mem, "api"));
    const char *state = str(mem, "state");
    if (strcmp(state, "alive") != 0 && strcmp(state, "suspect") != 0) { /* its records are not in the sum */
      char what[120];
      snprintf(what, sizeof what, "%s (%s)", name, state);
      json_array_append_new(m.missing, json_string(what));
      continue;
    }
    char base[160], err[256];
    struct buf body = {0};
    int status = 0;
    snprintf(base, sizeof base, "%s://%s", scheme, api ? api : "");
    json_t *j = NULL;
    if (api && *api &&
        http_request_hdrs("GET", base, path, NULL, auth, 10000, &status, &body, err, sizeof err) == 0 &&
        status == 200 && (j = json_loadb(body.base ? body.base : "", body.len, 0, NULL)) != NULL) {
      add_groups(&m, j);
      json_array_append_new(m.asked, json_string(name));
    } else {
      json_array_append_new(m.missing, json_string(name));
    }
    json_decref(j);
    buf_free(&body);
  }
  if (m.n > 1) qsort(m.g, (size_t)m.n, sizeof *m.g, cmp_group);
  json_t *out = json_object(), *groups = json_array();
  json_object_set_new(out, "by", json_string(by && *by ? by : "all"));
  for (int k = 0; k < m.n; k++) {
    char a[32];
    amount_format(m.g[k].cost_nano, a, sizeof a);
    json_array_append_new(groups,
                          json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "key", m.g[k].key, "currency",
                                    m.g[k].currency, "requests", (json_int_t)m.g[k].requests, "prompt_tokens",
                                    (json_int_t)m.g[k].prompt, "cached_tokens", (json_int_t)m.g[k].cached,
                                    "completion_tokens", (json_int_t)m.g[k].completion, "cost", a));
  }
  json_object_set_new(out, "groups", groups);
  json_object_set(out, "nodes", m.asked);
  json_object_set(out, "not_answered", m.missing);
  if (as_json) {
    char *t = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", t);
    free(t);
  } else {
    print_usage(out);
    printf("(%zu node(s) answered", json_array_size(m.asked));
    size_t k;
    json_t *x;
    if (json_array_size(m.missing)) {
      printf("; not answered:");
      json_array_foreach(m.missing, k, x) printf(" %s", json_string_value(x));
    }
    printf(")\n");
  }
  if (json_array_size(m.missing))
    fprintf(stderr, "infermesh ledger usage: %zu member(s) did not answer: their usage is missing\n",
            json_array_size(m.missing));
  int rc = json_array_size(m.asked) ? 0 : 1;
  json_decref(out);
  json_decref(m.asked);
  json_decref(m.missing);
  free(m.g);
  return rc;
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
  bool as_json = false, local = false;
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
    } else if (strcmp(a, "--local") == 0) {
      local = true;
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
  } else if (verb && strcmp(verb, "budgets") == 0) {
    buf_puts(&path, "/v1/ledger/budgets");
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
  if (rc != 0 || status / 100 != 2) {
    if (rc != 0)
      fprintf(stderr, "infermesh ledger: %s\n", err);
    else
      rc = control_cmds_fail_status(status, &body);
    buf_free(&path);
    buf_free(&body);
    return 1;
  }
  /* A node's own ledger answered (no PostgreSQL): in a mesh, every member's ledger is asked and added up. */
  if (strcmp(verb, "usage") == 0 && !local && strstr(body.base ? body.base : "", "\"scope\":\"node\"")) {
    struct buf mb = {0};
    json_t *members = NULL;
    if (http_request_hdrs("GET", agent, "/v1/cluster/members", NULL, auth, 10000, &status, &mb, err,
                          sizeof err) == 0 &&
        status == 200)
      members = json_loadb(mb.base ? mb.base : "", mb.len, 0, NULL);
    buf_free(&mb);
    if (members && json_array_size(json_object_get(members, "members")) > 0) {
      int mrc = usage_mesh(members, agent, path.base, auth, f_by, as_json);
      json_decref(members);
      buf_free(&path);
      buf_free(&body);
      return mrc;
    }
    json_decref(members);
  }
  buf_free(&path);
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
  } else if (strcmp(verb, "budgets") == 0) {
    print_budgets(j);
  } else {
    print_batch(j);
  }
  json_decref(j);
  buf_free(&body);
  return 0;
}
