/* What the simulated engine answers for OpenAI's generation options: n choices, stop strings, logprobs,
 * response_format (JSON) and tool calls. Pure: request JSON in, choice text out (server.c paces and frames
 * it). */
#ifndef IM_SIM_OAI_GEN_H
#define IM_SIM_OAI_GEN_H

#include <jansson.h>
#include <stdbool.h>

#include "core/buf.h"

#define SIM_GEN_MAX_N 16    /* choices per request (400 beyond) */
#define SIM_GEN_MAX_STOPS 4 /* OpenAI's limit */
#define SIM_GEN_STOP_MAX 64 /* bytes per stop string */
#define SIM_GEN_MAX_TOP 20  /* top_logprobs */
#define SIM_GEN_PIECE 4     /* bytes per output token: the sim's filler words are 4 bytes */

enum sim_format { SIM_FMT_TEXT, SIM_FMT_JSON_OBJECT, SIM_FMT_JSON_SCHEMA };

struct sim_gen {
  int n;                                           /* choices, 1.. SIM_GEN_MAX_N */
  char stops[SIM_GEN_MAX_STOPS][SIM_GEN_STOP_MAX]; /* output ends before the first of these */
  int nstops;
  bool logprobs;    /* chat: per-token logprobs in OpenAI's chat format */
  int top_logprobs; /* alternatives per token, 0..SIM_GEN_MAX_TOP */
  enum sim_format format;
  json_t *schema; /* json_schema: the schema (a reference held by g) */
  bool tool_call; /* tool_choice requires a call (or names a function): answer with one */
  char tool_name[128];
  json_t *tool_params; /* that function's parameters schema (a reference held by g; may be NULL) */
};

/* One choice's output. text: the content, or the tool call's arguments (JSON); finish: "length", "stop" or
 * "tool_calls"; tokens: what it counts as in usage. Owned by the caller: sim_choice_free. */
struct sim_choice {
  struct buf text;
  const char *finish;
  int tokens;
};

/* sim_gen_parse reads n, stop, logprobs, top_logprobs, response_format, tools and tool_choice from root (the
 * request object; chat: /v1/chat/completions, where logprobs, response_format and tools apply). Returns 0, or
 * -EINVAL with an OpenAI-style message in err for a value of the wrong type or out of range, a tool_choice
 * that names a function not among tools, or a json_schema without a schema. Free g with sim_gen_free. */
int sim_gen_parse(json_t *root, bool chat, struct sim_gen *g, char *err, size_t errlen);
void sim_gen_free(struct sim_gen *g);

/* sim_gen_choice writes choice i's output for a request allowed max_tokens: filler text of max_tokens tokens
 * (each choice different) cut before the first stop string; for json_object / json_schema a JSON document
 * (an object with the schema's required properties, values of their types); for a tool call the arguments
 * (an object with the parameters' required properties). JSON output is whole even past max_tokens. */
void sim_gen_choice(const struct sim_gen *g, int i, int max_tokens, struct sim_choice *c);
void sim_choice_free(struct sim_choice *c);

/* sim_gen_piece is the byte length of the output token starting at off in text[0..len): SIM_GEN_PIECE bytes,
 * extended so that no UTF-8 sequence is split; 0 at the end. */
size_t sim_gen_piece(const char *text, size_t len, size_t off);

/* sim_gen_logprobs appends OpenAI's chat logprobs object for the tokens of text[0..len) (pieces as above,
 * first_token numbering them): {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}. */
void sim_gen_logprobs(struct buf *b, const char *text, size_t len, int first_token, int top);

#endif
