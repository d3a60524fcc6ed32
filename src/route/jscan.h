/* Hot-path JSON scans of OpenAI request bodies and responses: strict validation, no DOM, no copy of the body. */
#ifndef IM_ROUTE_JSCAN_H
#define IM_ROUTE_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* Limits (DESIGN §13: sizes an attacker controls are capped before allocation).
 * JSCAN_MAX_DEPTH bounds nesting (like serde_json's 128): deeper input is rejected with IM_ETOOBIG. jsmn walks
 * O(depth) tokens per closing bracket, so the validator also caps the summed walk at 8 steps per input byte
 * (plus a few full-depth runs): 2 MB of 126-deep bracket runs took jsmn 150 ms, now refused in ~1 ms; the
 * worst accepted 2 MB body costs ~2x a flat one.
 * JSCAN_MAX_TOKENS bounds the number of JSON values (keys count as values) per document: IM_ETOOBIG beyond it.
 * JSCAN_MAX_LEN is what jsmn's int offsets can address; the caller's body-size cap is normally far smaller. */
#define JSCAN_MAX_DEPTH 128
#define JSCAN_MAX_TOKENS (1u << 20)
#define JSCAN_MAX_LEN ((size_t)1 << 30)

/* Token storage. Each scan first runs a strict single-pass validator (RFC 8259 grammar, no raw control bytes in
 * strings, depth <= JSCAN_MAX_DEPTH) that also counts the tokens exactly, then sizes the jsmn token array to that
 * count and runs jsmn once (it can no longer run out of tokens or see input it is lax about). The array lives in
 * a per-thread scratch that grows on demand and is kept for reuse while it holds at most JSCAN_KEEP_TOKENS
 * tokens (20 bytes each), so the common request costs no malloc after a thread's first scan; a larger document
 * gets a heap array that is freed before the call returns. A loop thread that exits should call
 * jscan_thread_free. Nothing here is reentrant from signal handlers; threads never share scratch. */
#define JSCAN_KEEP_TOKENS 16384u

/* What the ingress needs from a /v1/chat/completions or /v1/completions body. Every slice points into the body
 * passed to jscan_request (valid while that body is), except model when the model string held escapes: it then
 * points into model_buf of this same struct, so copy the struct by value only after re-pointing model (or
 * compare with slice_eq before copying). Top-level keys are matched after unescaping ("mod\u0065l" is model). */
struct oai_req {
  struct slice model;              /* model string's raw bytes between the quotes; decoded into model_buf when it
                                      held escapes. Always 1..255 bytes, no control bytes. */
  char model_buf[256];             /* NUL-terminated decoded model, only meaningful when model points here */
  struct slice model_raw;          /* the model string's raw (still escaped) bytes between the quotes, in the body */
  int stream;                      /* 1 true, 0 false, absent or null */
  bool has_stream_options;         /* top-level "stream_options" present (it must be an object) */
  struct slice stream_options;     /* span of the stream_options object, braces included; empty when absent */
  struct slice stream_options_null;/* span of the literal null when "stream_options": null (has_stream_options is
                                      then false): a proxy that adds include_usage overwrites this token */
  int include_usage;               /* stream_options.include_usage: -1 absent, 0 false or null, 1 true */
  struct slice include_usage_val;  /* span of its literal true/false/null token when present, so the proxy can
                                      overwrite it in place */
  struct slice prompt;             /* raw JSON span of "messages" (chat) or else "prompt" (completions) */
  bool is_chat;                    /* "messages" was present (it wins over "prompt" if both are) */
  int64_t max_tokens;              /* "max_completion_tokens" if given, else "max_tokens"; -1 absent/null */
  struct slice user;               /* raw (still escaped) bytes of the "user" string; empty if absent or null */
  size_t prompt_text_bytes;        /* decoded UTF-8 bytes of text the model reads: message "content" strings and
                                      "text" parts of content arrays (type "text"), or the prompt string(s) */
  size_t prompt_token_ids;         /* integers in a completions prompt given as token ids ([1,2] or [[1],[2]]) */
};

/* jscan_request validates body[0..len) (no NUL terminator needed) as exactly one JSON object and fills *out.
 * Rules (DESIGN §3, reject ambiguity at the edges):
 *  - any JSON syntax error, trailing bytes, an empty body or a top-level value that is not an object: IM_EPARSE;
 *  - nesting deeper than JSCAN_MAX_DEPTH, more than JSCAN_MAX_TOKENS values, len > JSCAN_MAX_LEN, or deep
 *    nesting repeated all through a large body (it would cost jsmn more than linear time): IM_ETOOBIG;
 *  - a top-level key we read (model, stream, stream_options, messages, prompt, max_tokens,
 *    max_completion_tokens, user) given twice, also when spelled with escapes: IM_EDUPKEY, and so is a repeated
 *    include_usage inside stream_options (it decides metering);
 *  - wrong types: -EINVAL. model: a non-empty string of at most 255 decoded bytes without control characters
 *    or unpaired surrogates; stream: boolean; max_tokens / max_completion_tokens: integer >= 0 that fits int64
 *    (no fraction or exponent); messages: array; prompt: string or array; stream_options: object or null;
 *    include_usage: boolean; user: string. As in OpenAI's schema, null means "not given" for stream,
 *    max_tokens, max_completion_tokens, messages, prompt, user and stream_options, and "false" for include_usage.
 *    A null stream_options is reported by its span (stream_options_null), so a proxy that asks for usage
 *    replaces the token instead of adding a second stream_options key.
 *    Missing model: -EINVAL "missing required parameter: 'model'".
 * Keys other than those listed, and keys nested below the top level (a "model" inside messages), are ignored.
 * On error errmsg (when errlen > 0) receives a NUL-terminated OpenAI-style message for the 400 response and
 * *out is unspecified; on success errmsg is untouched. Uses this thread's token scratch (see above). */
int jscan_request(const char *body, size_t len, struct oai_req *out, char *errmsg, size_t errlen);

/* Token counts from the top-level "usage" object of a response body or a stream chunk. Counts absent or null
 * in the usage object are -1; cached_tokens comes from usage.prompt_tokens_details.cached_tokens, else
 * (llama.cpp) from usage.prompt_tokens less the top-level timings.prompt_n (the prompt tokens it computed).
 * present is false (and every count -1) when usage is absent or null. */
struct oai_usage {
  int64_t prompt_tokens, completion_tokens, total_tokens, cached_tokens;
  bool present;
  struct slice span; /* the usage object's bytes, '{' to '}', inside the scanned JSON (when present) */
};

/* jscan_usage reads json[0..len) (one JSON object, same strict validation as jscan_request) into *u.
 * Returns 0 (also when there is no usage), IM_EPARSE for invalid JSON or a non-object, IM_ETOOBIG past the
 * limits, IM_EDUPKEY when "usage" or one of the counts it reads is repeated (a provider must not be able to
 * bill two ways), -EINVAL when usage is neither an object nor null or a count is not an integer >= 0.
 * *u is always written: on error every count is -1 and present is false. */
int jscan_usage(const char *json, size_t len, struct oai_usage *u);

/* jscan_top_string finds the top-level key `key` of the JSON object json[0..len) (validated as jscan_usage
 * does) whose value is a string: 0 with *raw its raw bytes between the quotes (borrowed from json), -ENOENT
 * when the key is absent, repeated or not a string, IM_EPARSE for invalid JSON or a non-object. */
int jscan_top_string(const char *json, size_t len, const char *key, struct slice *raw);

/* jscan_is_usage_only_chunk is true for the final chunk of a stream with include_usage: a valid JSON object
 * whose top-level "choices" is an empty array and whose "usage" is an object. False for anything else,
 * including invalid JSON, "[DONE]" and repeated choices/usage keys. */
bool jscan_is_usage_only_chunk(const char *json, size_t len);

/* jscan_validate checks that json[0..len) is exactly one JSON value of any type (RFC 8259, strict: no trailing
 * commas, no raw control characters in strings, only whitespace around the value), at most JSCAN_MAX_DEPTH
 * deep (and within the same repeated-deep-nesting budget). Returns 0, IM_EPARSE or IM_ETOOBIG; when err_off is not NULL it receives the byte offset of the
 * problem (0 on success). Does not allocate; does not check UTF-8. */
int jscan_validate(const char *json, size_t len, size_t *err_off);

/* jscan_thread_free releases the calling thread's token scratch; the next scan on this thread allocates anew. */
void jscan_thread_free(void);

#endif
