/* The simulated engine's LoRA adapters: vLLM's runtime load/unload API, its /v1/models cards and metric. */
#ifndef IM_SIM_LORA_H
#define IM_SIM_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define SIM_LORA_NAME_MAX 128 /* bytes, NUL included */
#define SIM_LORA_PATH_MAX 512

struct sim_lora {
  char name[SIM_LORA_NAME_MAX];
  char path[SIM_LORA_PATH_MAX];
  int inflight; /* requests for it not finished yet */
};

/* The loaded adapters (at most max; the table is owned by the struct: sim_loras_free releases it). Pure
 * bookkeeping: no I/O, time comes from the caller. changed_s is when the set of adapters with requests in
 * flight last changed (vLLM's lora_requests_info value). */
struct sim_loras {
  struct sim_lora *v;
  int n, max;
  double changed_s;
};

/* sim_loras_init makes an empty table for at most max adapters (max 0: LoRA disabled, the endpoints are
 * absent as in a vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING). sim_loras_free releases it. */
void sim_loras_init(struct sim_loras *l, int max);
void sim_loras_free(struct sim_loras *l);

/* sim_loras_find returns the adapter named name (owned by l; valid until the next add/remove), or NULL. */
const struct sim_lora *sim_loras_find(const struct sim_loras *l, const char *name);

/* The answer to a load or unload request: HTTP status, the error type when status is not 200 (a static
 * string) and the message (vLLM's plain-text success line, or the error message). */
struct sim_lora_answer {
  int status;
  const char *type;
  char msg[400];
};

/* sim_loras_load / sim_loras_unload apply the JSON body[0..len) of POST /v1/load_lora_adapter
 * ({"lora_name","lora_path"}) or /v1/unload_lora_adapter ({"lora_name"}) and fill *a the way vLLM answers:
 * 200 "Success: LoRA adapter 'x' added|removed successfully."; 400 InvalidUserInput for a missing name or
 * path or a name already loaded; 404 NotFoundError for unloading an adapter that is not loaded; 400
 * BadRequestError when the table is full (the sim's --max-loras bound) or the body is not a JSON object. */
void sim_loras_load(struct sim_loras *l, const char *body, size_t len, double now_s,
                    struct sim_lora_answer *a);
void sim_loras_unload(struct sim_loras *l, const char *body, size_t len, double now_s,
                      struct sim_lora_answer *a);

/* sim_loras_begin / sim_loras_end count one request for adapter name in flight (no-op for a name not
 * loaded, e.g. unloaded meanwhile). */
void sim_loras_begin(struct sim_loras *l, const char *name, double now_s);
void sim_loras_end(struct sim_loras *l, const char *name, double now_s);

/* sim_loras_model_cards appends one /v1/models card per adapter, each preceded by a comma, as vLLM lists
 * them: id = name, root = path, parent = base. */
void sim_loras_model_cards(const struct sim_loras *l, const char *base, int64_t created, struct buf *out);

/* sim_loras_metric appends the vllm:lora_requests_info family (HELP, TYPE, one sample): max_lora, and the
 * adapters with requests in flight in running_lora_adapters (comma-separated; waiting ones are not told
 * apart); value changed_s. Nothing when LoRA is disabled. */
void sim_loras_metric(const struct sim_loras *l, struct buf *out);

#endif
