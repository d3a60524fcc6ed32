/* libFuzzer target for route/jscan: crashes, invariants, and a differential check against jansson. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"
#include "route/jscan.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(struct slice s, const char *base, size_t len) {
  return s.len == 0 || (s.base >= base && s.base + s.len <= base + len);
}

/* jansson refuses some valid JSON we accept on purpose: bad UTF-8 (we do not check it), lone surrogate
 * escapes, huge numbers, NUL in keys. */
static bool jansson_only_stricter(const json_error_t *e) {
  enum json_error_code c = json_error_code(e);
  return c == json_error_invalid_utf8 || c == json_error_numeric_overflow || c == json_error_null_byte_in_key ||
         (c == json_error_invalid_syntax && strncmp(e->text, "invalid Unicode", 15) == 0);
}

static size_t content_len(json_t *c) {
  if (json_is_string(c)) return json_string_length(c);
  size_t total = 0, i;
  json_t *part;
  if (!json_is_array(c)) return 0;
  json_array_foreach(c, i, part) {
    json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
    if (json_is_string(type) && strcmp(json_string_value(type), "text") == 0 &&
        json_string_length(type) == 4 && json_is_string(text))
      total += json_string_length(text);
  }
  return total;
}

static void compare_request(const struct oai_req *r, json_t *root) {
  json_t *model = json_object_get(root, "model");
  CHECK(json_is_string(model));
  CHECK(json_string_length(model) == r->model.len);
  CHECK(memcmp(json_string_value(model), r->model.base, r->model.len) == 0);

  json_t *stream = json_object_get(root, "stream");
  CHECK(r->stream == (json_is_true(stream) ? 1 : 0));

  json_t *mt = json_object_get(root, "max_tokens"), *mct = json_object_get(root, "max_completion_tokens");
  int64_t want = -1;
  if (json_is_integer(mct))
    want = json_integer_value(mct);
  else if (json_is_integer(mt))
    want = json_integer_value(mt);
  CHECK(r->max_tokens == want);

  json_t *so = json_object_get(root, "stream_options");
  CHECK(r->has_stream_options == json_is_object(so));
  json_t *iu = json_object_get(so, "include_usage");
  CHECK(r->include_usage == (json_is_true(iu) ? 1 : iu ? 0 : -1));

  json_t *msgs = json_object_get(root, "messages"), *prompt = json_object_get(root, "prompt");
  size_t bytes = 0, ids = 0, i, j;
  json_t *e, *x;
  if (json_is_array(msgs)) {
    CHECK(r->is_chat);
    json_array_foreach(msgs, i, e) if (json_is_object(e)) bytes += content_len(json_object_get(e, "content"));
  } else if (json_is_string(prompt)) {
    bytes = json_string_length(prompt);
  } else if (json_is_array(prompt)) {
    json_array_foreach(prompt, i, e) {
      if (json_is_string(e)) bytes += json_string_length(e);
      if (json_is_number(e)) ids++;
      if (json_is_array(e)) json_array_foreach(e, j, x) if (json_is_number(x)) ids++;
    }
  }
  CHECK(r->prompt_text_bytes == bytes);
  CHECK(r->prompt_token_ids == ids);

  json_t *user = json_object_get(root, "user");
  CHECK(json_is_string(user) ? r->user.len >= json_string_length(user) : r->user.len == 0);
}

static void check_usage(const char *s, size_t n, json_t *root) {
  struct oai_usage u;
  int rc = jscan_usage(s, n, &u);
  bool only = jscan_is_usage_only_chunk(s, n);
  if (rc != 0) {
    CHECK(!u.present && u.prompt_tokens == -1 && u.cached_tokens == -1);
  }
  if (!root) {
    if (rc == 0) CHECK(u.present ? true : true);
    return;
  }
  json_t *usage = json_object_get(root, "usage");
  if (rc == 0) {
    CHECK(u.present == json_is_object(usage));
    if (u.present) {
      json_t *pt = json_object_get(usage, "prompt_tokens");
      CHECK(u.prompt_tokens == (json_is_integer(pt) ? json_integer_value(pt) : -1));
      json_t *ct = json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens");
      /* else llama.cpp's: prompt_tokens - timings.prompt_n */
      json_t *tpn = json_object_get(json_object_get(root, "timings"), "prompt_n");
      json_int_t want = -1;
      if (json_is_integer(ct))
        want = json_integer_value(ct);
      else if (json_is_integer(pt) && json_is_integer(tpn) && json_integer_value(tpn) >= 0 &&
               json_integer_value(tpn) <= json_integer_value(pt))
        want = json_integer_value(pt) - json_integer_value(tpn);
      /* a repeated key (jansson keeps the last; jscan believes no repeated "timings") leaves it unchecked */
      json_t *strict =
          json_is_integer(ct) ? NULL : json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
      if (json_is_integer(ct) || strict) CHECK(u.cached_tokens == want);
      json_decref(strict);
    }
  }
  json_t *choices = json_object_get(root, "choices");
  if (only) CHECK(json_is_array(choices) && json_array_size(choices) == 0 && json_is_object(usage));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  struct oai_req r;
  char msg[160];
  size_t off;

  int vrc = jscan_validate(s, size, &off);
  CHECK(vrc == 0 || vrc == IM_EPARSE || vrc == IM_ETOOBIG);
  CHECK(vrc != 0 || off == 0);
  CHECK(off <= size);

  json_error_t jerr;
  json_t *root = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  /* jansson takes a raw NUL byte for the end of input ("2\0" parses): no reference for such input. */
  if (root && memchr(s, '\0', size)) {
    json_decref(root);
    root = NULL;
  }
  if (vrc == 0) CHECK(root || jansson_only_stricter(&jerr));
  if (root) CHECK(vrc == 0 || vrc == IM_ETOOBIG);

  memset(msg, 'Z', sizeof msg);
  int rc = jscan_request(s, size, &r, msg, sizeof msg);
  CHECK(rc == 0 || rc == IM_EPARSE || rc == IM_ETOOBIG || rc == IM_EDUPKEY || rc == -EINVAL);
  if (rc != 0) {
    CHECK(memchr(msg, '\0', sizeof msg) != NULL && msg[0] != '\0');
  } else {
    CHECK(vrc == 0);
    CHECK(r.model.len >= 1 && r.model.len <= 255);
    CHECK(inside(r.model, s, size) || r.model.base == r.model_buf);
    CHECK(r.stream == 0 || r.stream == 1);
    CHECK(r.include_usage >= -1 && r.include_usage <= 1);
    CHECK(r.max_tokens >= -1);
    CHECK(inside(r.stream_options, s, size) && inside(r.include_usage_val, s, size));
    CHECK(inside(r.prompt, s, size) && inside(r.user, s, size));
    if (r.has_stream_options)
      CHECK(r.stream_options.base[0] == '{' && r.stream_options.base[r.stream_options.len - 1] == '}');
    if (r.include_usage >= 0) CHECK(r.include_usage_val.len == (r.include_usage ? 4u : 5u) ||
                                    memcmp(r.include_usage_val.base, "null", 4) == 0);
    CHECK(r.has_stream_options == (r.stream_options.len > 0));
    CHECK(r.prompt_text_bytes <= size);
    if (root) compare_request(&r, root);
  }
  if (root && json_is_object(root) && rc == IM_EPARSE) CHECK(!"jansson parsed an object we call invalid");

  check_usage(s, size, root);
  json_decref(root);
  return 0;
}
