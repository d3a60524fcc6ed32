/* Load/unload requests of the agent's model control API (api/model_api.h): parsing and the runtime's
 * error text. Pure: no I/O, nothing kept. */
#ifndef IM_API_MODEL_REQ_H
#define IM_API_MODEL_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter/adapter.h"
#include "core/slice.h"

#define MODEL_REQ_TARGET_MAX 128    /* bytes of a target name, NUL included */
#define MODEL_REQ_PATH_MAX 1024     /* bytes of a LoRA path, NUL included */
#define MODEL_REQ_TIMEOUT_MS 120000 /* default wait for the runtime: loading can take minutes */
#define MODEL_REQ_TIMEOUT_MAX_S 600

/* What to change, from the body {"model", "lora_path"?, "type"?: "model"|"lora", "timeout_s"?}. */
struct model_req {
  char model[RS_NAME_MAX];
  char lora_path[MODEL_REQ_PATH_MAX]; /* "" when not given */
  int type;                           /* MODEL_REQ_TYPE_*: DEFAULT until resolved for a runtime kind */
  uint32_t timeout_ms;
};
enum { MODEL_REQ_TYPE_DEFAULT, MODEL_REQ_TYPE_MODEL, MODEL_REQ_TYPE_LORA };

/* model_req_parse_path matches POST paths /v1/cluster/targets/TARGET/load and .../unload: TARGET is
 * percent-decoded into target[0..cap) (it may hold '/': "node/name" for another node's target) and *unload
 * tells which. Returns 0; -ENOENT when path is not of that shape (another endpoint); -EINVAL for a malformed,
 * empty or over-long TARGET. */
int model_req_parse_path(struct slice path, char *target, size_t cap, bool *unload);

/* model_req_parse_body parses body[0..len) into *out. Returns 0, or -EINVAL with a message for the client in
 * err (not a JSON object, "model" missing, empty or too long, "type" not model|lora, "lora_path" not a string
 * or too long, "timeout_s" not a number in 1..600). */
int model_req_parse_body(const char *body, size_t len, struct model_req *out, char *err, size_t errlen);

/* model_req_op resolves the default type for runtime kind k (LoRA for vLLM and SGLang, whose runtime control
 * is for adapters; a model elsewhere), sets r->type to it, and returns the control operation. */
enum rt_control_op model_req_op(enum runtime_kind k, struct model_req *r, bool unload);

/* model_req_runtime_error writes into out[0..cap) what a runtime said when it refused (status, body[0..len)):
 * the message of an OpenAI/vLLM error object, FastAPI's "detail", an {"error": "..."} string (llama.cpp,
 * Ollama, Triton), else the body's text (first line, bounded); "(empty body)" when there is none. */
void model_req_runtime_error(int status, const char *body, size_t len, char *out, size_t cap);

#endif
