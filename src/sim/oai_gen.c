/* The simulated engine's answers to OpenAI's generation options (n, stop, logprobs, response_format, tools).
 */
#include "sim/oai_gen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "sim/sim_text.h"

static int bad(char *err, size_t errlen, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

static int parse_stop(json_t *stop, struct sim_gen *g, char *err, size_t errlen) {
  if (!stop || json_is_null(stop)) return 0;
  json_t *one[1] = {stop};
  size_t n = json_is_array(stop) ? json_array_size(stop) : 1;
  if (!json_is_string(stop) && !json_is_array(stop))
    return bad(err, errlen, "'stop' must be a string or an array");
  if (n > SIM_GEN_MAX_STOPS) return bad(err, errlen, "'stop' may hold at most 4 strings");
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_is_array(stop) ? json_array_get(stop, i) : one[0];
    if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) >= SIM_GEN_STOP_MAX)
      return bad(err, errlen, "each 'stop' entry must be a non-empty string of at most 63 bytes");
    str_copy(g->stops[g->nstops++], SIM_GEN_STOP_MAX, json_string_value(s));
  }
  return 0;
}

static int parse_format(json_t *rf, struct sim_gen *g, char *err, size_t errlen) {
  if (!rf || json_is_null(rf)) return 0;
  const char *type = json_string_value(json_object_get(rf, "type"));
  if (!json_is_object(rf) || !type)
    return bad(err, errlen, "'response_format' must be an object with a 'type'");
  if (strcmp(type, "text") == 0) return 0;
  if (strcmp(type, "json_object") == 0) {
    g->format = SIM_FMT_JSON_OBJECT;
    return 0;
  }
  if (strcmp(type, "json_schema") != 0)
    return bad(err, errlen, "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
  json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
  if (!json_is_object(schema))
    return bad(err, errlen, "'response_format.json_schema.schema' must be a JSON Schema object");
  g->format = SIM_FMT_JSON_SCHEMA;
  g->schema = json_incref(schema);
  return 0;
}

/* The function named name among tools, or NULL. */
static json_t *find_tool(json_t *tools, const char *name) {
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *tn = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
    if (tn && (!name || strcmp(tn, name) == 0)) return json_object_get(t, "function");
  }
  return NULL;
}

static int parse_tools(json_t *tools, json_t *choice, struct sim_gen *g, char *err, size_t errlen) {
  if (tools && !json_is_null(tools)) {
    if (!json_is_array(tools)) return bad(err, errlen, "'tools' must be an array");
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
      json_t *params = json_object_get(json_object_get(t, "function"), "parameters");
      if (!json_is_object(t) || !json_is_string(json_object_get(json_object_get(t, "function"), "name")))
        return bad(err, errlen, "each tool must be {\"type\":\"function\",\"function\":{\"name\":...}}");
      if (params && !json_is_object(params))
        return bad(err, errlen, "a function's 'parameters' must be an object");
    }
  }
  if (!choice || json_is_null(choice)) return 0;
  const char *name = NULL;
  if (json_is_string(choice)) {
    const char *c = json_string_value(choice);
    if (strcmp(c, "none") == 0 || strcmp(c, "auto") == 0) return 0;
    if (strcmp(c, "required") != 0)
      return bad(err, errlen, "'tool_choice' must be none, auto, required or an object");
  } else if (json_is_object(choice)) {
    name = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    if (!name)
      return bad(err, errlen,
                 "'tool_choice' must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}");
  } else {
    return bad(err, errlen, "'tool_choice' must be a string or an object");
  }
  json_t *fn = json_is_array(tools) ? find_tool(tools, name) : NULL;
  if (!fn) {
    snprintf(err, errlen,
             name ? "'tool_choice' names the function '%.100s', which is not among 'tools'"
                  : "'tool_choice' is 'required' but there are no 'tools'%.0s",
             name ? name : "");
    return -EINVAL;
  }
  g->tool_call = true;
  str_copy(g->tool_name, sizeof g->tool_name, json_string_value(json_object_get(fn, "name")));
  json_t *params = json_object_get(fn, "parameters");
  g->tool_params = params ? json_incref(params) : NULL;
  return 0;
}

int sim_gen_parse(json_t *root, bool chat, struct sim_gen *g, char *err, size_t errlen) {
  memset(g, 0, sizeof *g);
  g->n = 1;
  json_t *n = json_object_get(root, "n");
  if (n && !json_is_null(n)) {
    if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > SIM_GEN_MAX_N)
      return bad(err, errlen, "'n' must be an integer from 1 to 16");
    g->n = (int)json_integer_value(n);
  }
  int rc = parse_stop(json_object_get(root, "stop"), g, err, errlen);
  if (rc || !chat) return rc; /* completions' legacy integer logprobs are not modelled */
  json_t *lp = json_object_get(root, "logprobs"), *top = json_object_get(root, "top_logprobs");
  if (lp && !json_is_null(lp) && !json_is_boolean(lp))
    return bad(err, errlen, "'logprobs' must be a boolean");
  g->logprobs = json_is_true(lp);
  if (top && !json_is_null(top)) {
    if (!json_is_integer(top) || json_integer_value(top) < 0 || json_integer_value(top) > SIM_GEN_MAX_TOP)
      return bad(err, errlen, "'top_logprobs' must be an integer from 0 to 20");
    if (!g->logprobs) return bad(err, errlen, "'top_logprobs' needs 'logprobs': true");
    g->top_logprobs = (int)json_integer_value(top);
  }
  if ((rc = parse_format(json_object_get(root, "response_format"), g, err, errlen)) != 0) return rc;
  return parse_tools(json_object_get(root, "tools"), json_object_get(root, "tool_choice"), g, err, errlen);
}

void sim_gen_free(struct sim_gen *g) {
  json_decref(g->schema);
  json_decref(g->tool_params);
  g->schema = g->tool_params = NULL;
}

/* ---- output ---- */

#define MAX_DEPTH 8

/* A value that satisfies schema s (its type, enum or const; objects get their required properties). */
static json_t *value_for(json_t *s, int i, int depth) {
  json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
  if (cn) return json_deep_copy(cn);
  if (json_is_array(en) && json_array_size(en) > 0) return json_deep_copy(json_array_get(en, 0));
  json_t *tv = json_object_get(s, "type");
  const char *type = json_is_string(tv) ? json_string_value(tv) : json_string_value(json_array_get(tv, 0));
  if (!type && json_is_object(json_object_get(s, "properties"))) type = "object";
  if (!type) type = "string";
  if (strcmp(type, "integer") == 0) return json_integer(i + 1);
  if (strcmp(type, "number") == 0) return json_real(i + 1.5);
  if (strcmp(type, "boolean") == 0) return json_true();
  if (strcmp(type, "null") == 0) return json_null();
  if (strcmp(type, "array") == 0) {
    json_t *a = json_array();
    json_t *items = json_object_get(s, "items");
    if (json_is_object(items) && depth < MAX_DEPTH) json_array_append_new(a, value_for(items, i, depth + 1));
    return a;
  }
  if (strcmp(type, "object") == 0) {
    json_t *o = json_object();
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    size_t k;
    json_t *name;
    json_array_foreach(req, k, name) {
      const char *key = json_string_value(name);
      if (!key || depth >= MAX_DEPTH) continue;
      json_t *ps = json_object_get(props, key);
      json_object_set_new(o, key, ps ? value_for(ps, i, depth + 1) : json_string("value"));
    }
    return o;
  }
  char w[16];
  snprintf(w, sizeof w, "%.*s%.*s", 4, sim_text_token(i).base, 3, sim_text_token(i + 1).base);
  return json_string(w);
}

static void dump_json(json_t *v, struct buf *out) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (s) buf_puts(out, s);
  free(s);
  json_decref(v);
}

static int tokens_of(size_t bytes) { return (int)((bytes + SIM_GEN_PIECE - 1) / SIM_GEN_PIECE); }

void sim_gen_choice(const struct sim_gen *g, int i, int max_tokens, struct sim_choice *c) {
  memset(c, 0, sizeof *c);
  if (g->tool_call) {
    if (g->tool_params)
      dump_json(value_for(g->tool_params, i, 0), &c->text);
    else
      buf_puts(&c->text, "{}"); /* a function without parameters */
    c->finish = "tool_calls";
    c->tokens = tokens_of(c->text.len);
    return;
  }
  if (g->format == SIM_FMT_JSON_SCHEMA) {
    dump_json(value_for(g->schema, i, 0), &c->text);
    c->finish = "stop";
    c->tokens = tokens_of(c->text.len);
    return;
  }
  if (g->format == SIM_FMT_JSON_OBJECT) {
    struct buf words = {0};
    for (int k = 0; k < (max_tokens < 8 ? max_tokens : 8); k++)
      buf_append_slice(&words, sim_text_token(k + 5 * i));
    json_t *o = json_object();
    json_object_set_new(o, "answer", json_stringn(words.base ? words.base : "", words.len));
    buf_free(&words);
    dump_json(o, &c->text);
    c->finish = "stop";
    c->tokens = tokens_of(c->text.len);
    return;
  }
  for (int k = 0; k < max_tokens; k++)
    buf_append_slice(&c->text, sim_text_token(k + 5 * i));
  c->finish = "length";
  size_t cut = c->text.len;
  for (int s = 0; s < g->nstops; s++) {
    const char *hit =
        c->text.len ? memmem(c->text.base, c->text.len, g->stops[s], strlen(g->stops[s])) : NULL;
    if (hit && (size_t)(hit - c->text.base) < cut) cut = (size_t)(hit - c->text.base);
  }
  if (cut < c->text.len) {
    c->text.len = cut;
    c->finish = "stop";
  }
  c->tokens = tokens_of(c->text.len);
}

void sim_choice_free(struct sim_choice *c) { buf_free(&c->text); }

size_t sim_gen_piece(const char *text, size_t len, size_t off) {
  if (off >= len) return 0;
  size_t end = off + SIM_GEN_PIECE < len ? off + SIM_GEN_PIECE : len;
  while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80)
    end++;
  return end - off;
}

static void token_entry(struct buf *b, struct slice tok, double logprob) {
  buf_puts(b, "{\"token\":");
  buf_json_str(b, tok);
  buf_printf(b, ",\"logprob\":%.4f,\"bytes\":[", logprob);
  for (size_t k = 0; k < tok.len; k++)
    buf_printf(b, "%s%u", k ? "," : "", (unsigned char)tok.base[k]);
  buf_puts(b, "]");
}

void sim_gen_logprobs(struct buf *b, const char *text, size_t len, int first_token, int top) {
  buf_puts(b, "{\"content\":[");
  int t = first_token;
  for (size_t off = 0, n; (n = sim_gen_piece(text, len, off)) > 0; off += n, t++) {
    double lp = -0.05 * (double)(1 + t % 7);
    if (t != first_token) buf_puts(b, ",");
    token_entry(b, slice_make(text + off, n), lp);
    buf_puts(b, ",\"top_logprobs\":[");
    for (int k = 0; k < top; k++) {
      if (k) buf_puts(b, ",");
      /* the chosen token first, then filler words, each less likely */
      token_entry(b, k == 0 ? slice_make(text + off, n) : sim_text_token(t + 3 * k), lp - 1.0 * k);
      buf_puts(b, "}");
    }
    buf_puts(b, "]}");
  }
  buf_puts(b, "]}");
}
