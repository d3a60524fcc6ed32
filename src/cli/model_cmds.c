/* `infermesh model load|unload NAME --target T`: ask an agent to load or unload a model or LoRA adapter. */
#include "cli/model_cmds.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/control_cmds.h"
#include "cli/http_get.h"
#include "core/buf.h"

#define DEFAULT_AGENT "http://127.0.0.1:8080"
#define DEFAULT_TIMEOUT_S 120
#define MAX_TIMEOUT_S 600

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: infermesh model load NAME --target T [--lora-path P] [--type model|lora] [options]\n"
      "       infermesh model unload NAME --target T [--type model|lora] [options]\n\n"
      "Loads or unloads a model or LoRA adapter on one target, through the runtime's own API where it has\n"
      "one: vLLM and SGLang LoRA adapters, llama.cpp (router mode), Triton (explicit model control),\n"
      "Ollama. A target of another node is reached through that node's agent.\n\n"
      "  --target T        the target, as `infermesh targets` names it (NODE/NAME for another node's)\n"
      "  --lora-path P     where the LoRA adapter's weights are, as the runtime sees it (LoRA load)\n"
      "  --type model|lora what NAME is (lora on vLLM and SGLang, model elsewhere)\n"
      "  --timeout S       how long the runtime may take, in seconds (%d; at most %d)\n"
      "  --token ADMIN     the agent's admin token (INFERMESH_ADMIN_TOKEN)\n"
      "  --addr URL        the agent to ask (also --agent; INFERMESH_AGENT, else " DEFAULT_AGENT ")\n"
      "  --json            print the agent's JSON answer\n",
      DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S);
}

struct opts {
  const char *verb, *name, *target, *lora_path, *type, *token, *agent;
  long timeout_s;
  bool json;
};

/* parse returns 0, 1 for --help, or -1 (message printed). */
static int parse(struct opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->agent = getenv("INFERMESH_AGENT");
  if (!o->agent || !*o->agent) o->agent = DEFAULT_AGENT;
  o->token = getenv("INFERMESH_ADMIN_TOKEN");
  o->timeout_s = DEFAULT_TIMEOUT_S;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) {
      if (!o->verb)
        o->verb = a;
      else if (!o->name)
        o->name = a;
      else
        goto bad;
      continue;
    }
    if (i + 1 >= argc) goto bad;
    const char *v = argv[++i];
    if (strcmp(a, "--target") == 0)
      o->target = v;
    else if (strcmp(a, "--lora-path") == 0)
      o->lora_path = v;
    else if (strcmp(a, "--type") == 0)
      o->type = v;
    else if (strcmp(a, "--token") == 0)
      o->token = v;
    else if (strcmp(a, "--addr") == 0 || strcmp(a, "--agent") == 0)
      o->agent = v;
    else if (strcmp(a, "--timeout") == 0) {
      char *end;
      o->timeout_s = strtol(v, &end, 10);
      if (*end || end == v || o->timeout_s < 1 || o->timeout_s > MAX_TIMEOUT_S) goto bad;
    } else {
      goto bad;
    }
  }
  if (!o->verb || (strcmp(o->verb, "load") != 0 && strcmp(o->verb, "unload") != 0) || !o->name || !*o->name) {
    fprintf(stderr, "infermesh model: say load or unload, and the model's name\n\n");
    return -1;
  }
  if (!o->target || !*o->target) {
    fprintf(stderr, "infermesh model: --target T is needed (`infermesh targets` lists them)\n\n");
    return -1;
  }
  if (o->type && strcmp(o->type, "model") != 0 && strcmp(o->type, "lora") != 0) {
    fprintf(stderr, "infermesh model: --type is model or lora\n\n");
    return -1;
  }
  return 0;
bad:
  fprintf(stderr, "infermesh model: bad or unknown option near '%s'\n\n", argc ? argv[argc - 1] : "");
  return -1;
}

int model_cmd_main(int argc, char **argv) {
  struct opts o;
  int rc = parse(&o, argc, argv);
  if (rc != 0) {
    usage(rc == 1 ? stdout : stderr);
    return rc == 1 ? 0 : 2;
  }
  if (!o.token || !*o.token) {
    fprintf(stderr, "infermesh model: loading and unloading need the admin token: pass --token or set "
                    "INFERMESH_ADMIN_TOKEN\n");
    return 2;
  }
  json_t *req = json_pack("{s:s, s:I}", "model", o.name, "timeout_s", (json_int_t)o.timeout_s);
  if (o.lora_path) json_object_set_new(req, "lora_path", json_string(o.lora_path));
  if (o.type) json_object_set_new(req, "type", json_string(o.type));
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  struct buf path = {0}, out = {0};
  buf_puts(&path, "/v1/cluster/targets/");
  buf_path_segment(&path, o.target);
  buf_printf(&path, "/%s", o.verb);
  char hdrs[400], err[512];
  snprintf(hdrs, sizeof hdrs, "Authorization: Bearer %s\r\n", o.token);
  int status = 0;
  /* the agent waits up to timeout_s for the runtime (more when it forwards): wait a little longer */
  rc = http_request_hdrs("POST", o.agent, path.base, body, hdrs, (int)(o.timeout_s + 10) * 1000, &status,
                         &out, err, sizeof err);
  free(body);
  buf_free(&path);
  if (rc != 0) {
    fprintf(stderr, "infermesh model: %s\n", err);
    rc = 1;
  } else if (status != 200) {
    rc = control_cmds_fail_status(status, &out);
  } else if (o.json) {
    control_cmds_print_body(&out);
  } else {
    json_t *j = json_loadb(out.base ? out.base : "", out.len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *kind = json_string_value(json_object_get(j, "kind"));
    printf("%s %s '%s' on target %s (%s answered %d)\n", strcmp(o.verb, "load") == 0 ? "loaded" : "unloaded",
           type ? type : "model", o.name, o.target, kind ? kind : "the runtime",
           (int)json_integer_value(json_object_get(j, "runtime_status")));
    json_decref(j);
  }
  buf_free(&out);
  return rc;
}
