/* The simulated engine's LoRA adapters: vLLM's runtime load/unload semantics, /v1/models cards, metric. */
#include "sim/lora.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/slice.h"

void sim_loras_init(struct sim_loras *l, int max) {
  memset(l, 0, sizeof *l);
  l->max = max > 0 ? max : 0;
  if (l->max) l->v = xcalloc((size_t)l->max, sizeof *l->v);
}

void sim_loras_free(struct sim_loras *l) {
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int find(const struct sim_loras *l, const char *name) {
  for (int i = 0; name && i < l->n; i++)
    if (strcmp(l->v[i].name, name) == 0) return i;
  return -1;
}

const struct sim_lora *sim_loras_find(const struct sim_loras *l, const char *name) {
  int i = find(l, name);
  return i < 0 ? NULL : &l->v[i];
}

static void answer(struct sim_lora_answer *a, int status, const char *type, const char *fmt,
                   const char *name) {
  a->status = status;
  a->type = type;
  snprintf(a->msg, sizeof a->msg, fmt, name);
}

/* body_name parses the body and returns its "lora_name" string (owned by *root), NULL when absent or empty;
 * *root is NULL when the body is not a JSON object. */
static const char *body_name(const char *body, size_t len, json_t **root) {
  json_error_t je;
  *root = json_loadb(body ? body : "", len, 0, &je);
  if (!json_is_object(*root)) {
    json_decref(*root);
    *root = NULL;
    return NULL;
  }
  const char *n = json_string_value(json_object_get(*root, "lora_name"));
  return n && *n ? n : NULL;
}

void sim_loras_load(struct sim_loras *l, const char *body, size_t len, double now_s,
                    struct sim_lora_answer *a) {
  json_t *root;
  const char *name = body_name(body, len, &root);
  const char *path = root ? json_string_value(json_object_get(root, "lora_path")) : NULL;
  if (!root) {
    answer(a, 400, "BadRequestError", "%s", "the body must be a JSON object");
  } else if (!name || !path || !*path) {
    answer(a, 400, "InvalidUserInput", "%s", "Both 'lora_name' and 'lora_path' must be provided.");
  } else if (find(l, name) >= 0) {
    answer(a, 400, "InvalidUserInput", "The lora adapter '%.200s' has already been loaded.", name);
  } else if (strlen(name) >= SIM_LORA_NAME_MAX || strlen(path) >= SIM_LORA_PATH_MAX) {
    answer(a, 400, "BadRequestError", "%s", "lora_name or lora_path too long for the simulated engine");
  } else if (l->n >= l->max) {
    a->status = 400;
    a->type = "BadRequestError";
    snprintf(a->msg, sizeof a->msg,
             "cannot load '%.200s': the simulated engine holds at most %d LoRA adapters "
             "(--max-loras); unload one first",
             name, l->max);
  } else {
    struct sim_lora *x = &l->v[l->n++];
    memset(x, 0, sizeof *x);
    str_copy(x->name, sizeof x->name, name);
    str_copy(x->path, sizeof x->path, path);
    answer(a, 200, NULL, "Success: LoRA adapter '%.200s' added successfully.", name);
  }
  (void)now_s;
  json_decref(root);
}

void sim_loras_unload(struct sim_loras *l, const char *body, size_t len, double now_s,
                      struct sim_lora_answer *a) {
  json_t *root;
  const char *name = body_name(body, len, &root);
  int i = find(l, name);
  if (!root) {
    answer(a, 400, "BadRequestError", "%s", "the body must be a JSON object");
  } else if (!name) {
    answer(a, 400, "InvalidUserInput", "%s", "either 'lora_name' and 'lora_int_id' needs to be provided.");
  } else if (i < 0) {
    answer(a, 404, "NotFoundError", "The lora adapter '%.200s' cannot be found.", name);
  } else {
    answer(a, 200, NULL, "Success: LoRA adapter '%.200s' removed successfully.", name);
    if (l->v[i].inflight) l->changed_s = now_s;
    memmove(&l->v[i], &l->v[i + 1], (size_t)(l->n - i - 1) * sizeof *l->v);
    l->n--;
  }
  json_decref(root);
}

void sim_loras_begin(struct sim_loras *l, const char *name, double now_s) {
  int i = find(l, name);
  if (i < 0) return;
  if (l->v[i].inflight++ == 0) l->changed_s = now_s;
}

void sim_loras_end(struct sim_loras *l, const char *name, double now_s) {
  int i = find(l, name);
  if (i < 0 || l->v[i].inflight == 0) return;
  if (--l->v[i].inflight == 0) l->changed_s = now_s;
}

void sim_loras_model_cards(const struct sim_loras *l, const char *base, int64_t created, struct buf *out) {
  for (int i = 0; i < l->n; i++) {
    buf_puts(out, ",{\"id\":");
    buf_json_str(out, slice_cstr(l->v[i].name));
    buf_printf(out, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"infermesh-sim\",\"root\":",
               (long long)created);
    buf_json_str(out, slice_cstr(l->v[i].path));
    buf_puts(out, ",\"parent\":");
    buf_json_str(out, slice_cstr(base));
    buf_puts(out, ",\"max_model_len\":null}");
  }
}

void sim_loras_metric(const struct sim_loras *l, struct buf *out) {
  if (!l->max) return;
  buf_printf(out,
             "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
             "# TYPE vllm:lora_requests_info gauge\n"
             "vllm:lora_requests_info{max_lora=\"%d\",running_lora_adapters=\"",
             l->max);
  bool first = true;
  for (int i = 0; i < l->n; i++) {
    if (!l->v[i].inflight) continue;
    if (!first) buf_puts(out, ",");
    buf_label_value(out, l->v[i].name);
    first = false;
  }
  buf_printf(out, "\",waiting_lora_adapters=\"\"} %.7e\n", l->changed_s);
}
