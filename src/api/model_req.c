/* Load/unload requests of the model control API: path and body parsing, the runtime's error text. */
#include "api/model_req.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PREFIX "/v1/cluster/targets/"

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

int model_req_parse_path(struct slice path, char *target, size_t cap, bool *unload) {
  static const size_t plen = sizeof PREFIX - 1;
  if (!slice_starts(path, PREFIX)) return -ENOENT;
  const char *end = path.base + path.len;
  const char *slash = end;
  while (slash > path.base + plen && slash[-1] != '/')
    slash--;
  struct slice verb = slice_make(slash, (size_t)(end - slash));
  if (slash == path.base + plen || (!slice_eqz(verb, "load") && !slice_eqz(verb, "unload"))) return -ENOENT;
  *unload = slice_eqz(verb, "unload");
  size_t n = 0;
  for (const char *p = path.base + plen; p < slash - 1; p++) {
    char ch = *p;
    if (ch == '%') {
      if (slash - 1 - p < 3) return -EINVAL;
      int h = hexval(p[1]), l = hexval(p[2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0)) return -EINVAL;
      ch = (char)(h * 16 + l);
      p += 2;
    }
    if (n + 1 >= cap) return -EINVAL;
    target[n++] = ch;
  }
  if (n == 0) return -EINVAL;
  target[n] = '\0';
  return 0;
}

int model_req_parse_body(const char *body, size_t len, struct model_req *out, char *err, size_t errlen) {
  json_error_t je;
  memset(out, 0, sizeof *out);
  out->timeout_ms = MODEL_REQ_TIMEOUT_MS;
  json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
  int rc = -EINVAL;
  if (!json_is_object(root)) {
    snprintf(err, errlen,
             "the body must be a JSON object: {\"model\": NAME, \"lora_path\": PATH (LoRA load), "
             "\"type\": \"model\"|\"lora\"}");
    goto out;
  }
  json_t *m = json_object_get(root, "model"), *p = json_object_get(root, "lora_path"),
         *t = json_object_get(root, "type"), *to = json_object_get(root, "timeout_s");
  if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) >= sizeof out->model ||
      strlen(json_string_value(m)) != json_string_length(m)) {
    snprintf(err, errlen, "\"model\": the model or LoRA adapter name, 1 to %zu bytes", sizeof out->model - 1);
    goto out;
  }
  if (p && !json_is_null(p) &&
      (!json_is_string(p) || json_string_length(p) >= sizeof out->lora_path ||
       strlen(json_string_value(p)) != json_string_length(p))) {
    snprintf(err, errlen, "\"lora_path\": a string of at most %zu bytes", sizeof out->lora_path - 1);
    goto out;
  }
  const char *ts = json_string_value(t);
  if (t && !json_is_null(t) && (!ts || (strcmp(ts, "model") != 0 && strcmp(ts, "lora") != 0))) {
    snprintf(err, errlen,
             "\"type\": \"model\" or \"lora\" (default: lora on vLLM and SGLang, model elsewhere)");
    goto out;
  }
  double tv = json_number_value(to);
  if (to && !json_is_null(to) && (!json_is_number(to) || !(tv >= 1 && tv <= MODEL_REQ_TIMEOUT_MAX_S))) {
    snprintf(err, errlen, "\"timeout_s\": seconds to wait for the runtime, 1 to %d", MODEL_REQ_TIMEOUT_MAX_S);
    goto out;
  }
  str_copy(out->model, sizeof out->model, json_string_value(m));
  if (json_is_string(p)) str_copy(out->lora_path, sizeof out->lora_path, json_string_value(p));
  out->type = !ts ? MODEL_REQ_TYPE_DEFAULT : ts[0] == 'm' ? MODEL_REQ_TYPE_MODEL : MODEL_REQ_TYPE_LORA;
  if (json_is_number(to)) out->timeout_ms = (uint32_t)lround(tv * 1000);
  rc = 0;
out:
  json_decref(root);
  return rc;
}

enum rt_control_op model_req_op(enum runtime_kind k, struct model_req *r, bool unload) {
  if (r->type == MODEL_REQ_TYPE_DEFAULT)
    r->type = k == RT_KIND_VLLM || k == RT_KIND_SGLANG ? MODEL_REQ_TYPE_LORA : MODEL_REQ_TYPE_MODEL;
  if (r->type == MODEL_REQ_TYPE_LORA) return unload ? RT_CTL_UNLOAD_LORA : RT_CTL_LOAD_LORA;
  return unload ? RT_CTL_UNLOAD_MODEL : RT_CTL_LOAD_MODEL;
}

/* text_of returns the first string among the candidate members of a runtime's error object. */
static const char *text_of(json_t *root) {
  json_t *e = json_object_get(root, "error");
  const char *s;
  if ((s = json_string_value(json_object_get(e, "message")))) return s; /* OpenAI, llama.cpp's object form */
  if ((s = json_string_value(e))) return s;                             /* Ollama, Triton */
  if ((s = json_string_value(json_object_get(root, "message")))) return s; /* vLLM's flat ErrorResponse */
  json_t *d = json_object_get(root, "detail");                             /* FastAPI */
  if ((s = json_string_value(d))) return s;
  if (json_is_array(d)) return json_string_value(json_object_get(json_array_get(d, 0), "msg"));
  return NULL;
}

void model_req_runtime_error(int status, const char *body, size_t len, char *out, size_t cap) {
  json_error_t je;
  json_t *root = len ? json_loadb(body, len, 0, &je) : NULL;
  const char *s = json_is_object(root) ? text_of(root) : NULL;
  if (s) {
    snprintf(out, cap, "%s", s);
  } else if (len) {
    size_t n = 0;
    while (n < len && body[n] != '\n' && body[n] != '\r' && n < 400)
      n++;
    snprintf(out, cap, "%.*s%s", (int)n, body, n < len ? " ..." : "");
  } else {
    snprintf(out, cap, "(empty body, HTTP %d)", status);
  }
  json_decref(root);
}
