/* Unit tests for route/jscan: request scanning, strictness, duplicate keys, usage extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "route/jscan.h"

static char errmsg[256];

static int scan(const char *body, struct oai_req *r) {
  errmsg[0] = '\0';
  return jscan_request(body, strlen(body), r, errmsg, sizeof errmsg);
}

static void assert_slice(struct slice s, const char *want) {
  char *got = slice_dup(s);
  assert_string_equal(got, want);
  free(got);
}

/* The slice lies inside [base, base+len). */
static void assert_inside(struct slice s, const char *base, size_t len) {
  assert_true(s.base >= base && s.base + s.len <= base + len);
}

static void expect_err(const char *body, int code, const char *msg_part) {
  struct oai_req r;
  int rc = scan(body, &r);
  if (rc != code) fail_msg("body %s: got %d (%s), want %d", body, rc, errmsg, code);
  if (msg_part && !strstr(errmsg, msg_part)) fail_msg("body %s: message '%s' lacks '%s'", body, errmsg, msg_part);
}

static void test_chat_full(void **state) {
  const char *body = "{\"model\":\"llama-3.1-8b\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x/y.png\"}}]}],"
                     "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":128,"
                     "\"user\":\"alice\",\"temperature\":0.2}";
  struct oai_req r;
  assert_int_equal(scan(body, &r), 0);
  assert_slice(r.model, "llama-3.1-8b");
  assert_inside(r.model, body, strlen(body));
  assert_int_equal(r.stream, 1);
  assert_true(r.has_stream_options);
  assert_slice(r.stream_options, "{\"include_usage\":true}");
  assert_int_equal(r.include_usage, 1);
  assert_slice(r.include_usage_val, "true");
  assert_inside(r.include_usage_val, body, strlen(body));
  assert_true(r.is_chat);
  assert_true(r.prompt.len > 2 && r.prompt.base[0] == '[' && r.prompt.base[r.prompt.len - 1] == ']');
  assert_ptr_equal(r.prompt.base, strstr(body, "[{\"role\""));
  assert_int_equal(r.max_tokens, 128);
  assert_slice(r.user, "alice");
  assert_int_equal(r.prompt_text_bytes, strlen("Be brief.") + strlen("Hello"));
  assert_int_equal(r.prompt_token_ids, 0);
}

static void test_completions(void **state) {
  struct oai_req r;
  const char *body = "{\"prompt\":\"Once upon a time\",\"model\":\"m\",\"max_tokens\":16}";
  assert_int_equal(scan(body, &r), 0);
  assert_false(r.is_chat);
  assert_slice(r.prompt, "\"Once upon a time\"");
  assert_int_equal(r.prompt_text_bytes, 16);
  assert_int_equal(r.max_tokens, 16);
  assert_int_equal(r.stream, 0);
  assert_int_equal(r.include_usage, -1);
  assert_int_equal(r.user.len, 0);

  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":[\"ab\",\"cde\"]}", &r), 0);
  assert_slice(r.prompt, "[\"ab\",\"cde\"]");
  assert_int_equal(r.prompt_text_bytes, 5);

  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":[1,2,3]}", &r), 0);
  assert_int_equal(r.prompt_text_bytes, 0);
  assert_int_equal(r.prompt_token_ids, 3);
  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":[[1,2],[3]]}", &r), 0);
  assert_int_equal(r.prompt_token_ids, 3);

  /* No prompt at all is upstream's business: scanned with an empty span. */
  assert_int_equal(scan("{\"model\":\"m\"}", &r), 0);
  assert_int_equal(r.prompt.len, 0);
  assert_false(r.is_chat);
}

static void test_stream_flag(void **state) {
  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"m\",\"stream\":true}", &r), 0);
  assert_int_equal(r.stream, 1);
  assert_int_equal(scan("{\"model\":\"m\",\"stream\":false}", &r), 0);
  assert_int_equal(r.stream, 0);
  assert_int_equal(scan("{\"model\":\"m\"}", &r), 0);
  assert_int_equal(r.stream, 0);
  assert_int_equal(scan("{\"model\":\"m\",\"stream\":null}", &r), 0);
  assert_int_equal(r.stream, 0);
}

static void test_stream_options(void **state) {
  struct oai_req r;
  const char *b1 = "{\"model\":\"m\",\"stream\":true,\"stream_options\": { \"include_usage\" : false } }";
  assert_int_equal(scan(b1, &r), 0);
  assert_true(r.has_stream_options);
  assert_slice(r.stream_options, "{ \"include_usage\" : false }");
  assert_int_equal(r.include_usage, 0);
  assert_slice(r.include_usage_val, "false");
  assert_ptr_equal(r.include_usage_val.base, strstr(b1, "false"));

  assert_int_equal(scan("{\"model\":\"m\",\"stream_options\":{}}", &r), 0);
  assert_true(r.has_stream_options);
  assert_slice(r.stream_options, "{}");
  assert_int_equal(r.include_usage, -1);
  assert_int_equal(r.include_usage_val.len, 0);

  assert_int_equal(scan("{\"model\":\"m\",\"stream\":true}", &r), 0);
  assert_false(r.has_stream_options);
  assert_int_equal(r.stream_options.len, 0);
  assert_int_equal(r.include_usage, -1);

  /* include_usage null is OpenAI's default (false), reported with its span so the proxy can overwrite it. */
  const char *b2 = "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":null}}";
  assert_int_equal(scan(b2, &r), 0);
  assert_int_equal(r.include_usage, 0);
  assert_slice(r.include_usage_val, "null");
  assert_ptr_equal(r.include_usage_val.base, strstr(b2, "null"));
  /* A null stream_options means "not given"; its span lets a proxy replace it rather than add a second key. */
  const char *b3 = "{\"model\":\"m\",\"stream\":true,\"stream_options\":null}";
  assert_int_equal(scan(b3, &r), 0);
  assert_false(r.has_stream_options);
  assert_int_equal(r.include_usage, -1);
  assert_slice(r.stream_options_null, "null");
  assert_ptr_equal(r.stream_options_null.base, strstr(b3, "null"));

  /* Keys inside stream_options are unescaped too, and nested keys of other objects don't count. */
  assert_int_equal(scan("{\"model\":\"m\",\"stream_options\":{\"include_\\u0075sage\":true}}", &r), 0);
  assert_int_equal(r.include_usage, 1);
  assert_int_equal(scan("{\"model\":\"m\",\"metadata\":{\"include_usage\":true}}", &r), 0);
  assert_int_equal(r.include_usage, -1);
}

static void test_duplicates(void **state) {
  expect_err("{\"model\":\"a\",\"model\":\"b\"}", IM_EDUPKEY, "'model'");
  expect_err("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", IM_EDUPKEY, "'model'");
  expect_err("{\"\\u006d\\u006f\\u0064\\u0065\\u006c\":\"a\",\"model\":\"a\"}", IM_EDUPKEY, "'model'");
  expect_err("{\"model\":\"a\",\"stream\":false,\"stream\":true}", IM_EDUPKEY, "'stream'");
  expect_err("{\"model\":\"a\",\"stream\":null,\"str\\u0065am\":true}", IM_EDUPKEY, "'stream'");
  expect_err("{\"model\":\"a\",\"stream_options\":{},\"stream_options\":{}}", IM_EDUPKEY, "'stream_options'");
  expect_err("{\"model\":\"a\",\"messages\":[],\"messages\":[]}", IM_EDUPKEY, "'messages'");
  expect_err("{\"model\":\"a\",\"prompt\":\"x\",\"prompt\":\"y\"}", IM_EDUPKEY, "'prompt'");
  expect_err("{\"model\":\"a\",\"max_tokens\":1,\"max_tokens\":2}", IM_EDUPKEY, "'max_tokens'");
  expect_err("{\"model\":\"a\",\"max_completion_tokens\":1,\"max_completion_tokens\":2}", IM_EDUPKEY,
             "'max_completion_tokens'");
  expect_err("{\"model\":\"a\",\"user\":\"x\",\"user\":\"y\"}", IM_EDUPKEY, "'user'");
  expect_err("{\"model\":\"a\",\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}", IM_EDUPKEY,
             "include_usage");

  /* Keys that don't matter may repeat (JSON allows it); keys that merely look alike are different keys. */
  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"a\",\"temperature\":1,\"temperature\":0}", &r), 0);
  assert_int_equal(scan("{\"model\":\"a\",\"Model\":\"b\",\"model \":\"c\",\"model\\u0000\":\"d\"}", &r), 0);
  assert_slice(r.model, "a");
  assert_int_equal(scan("{\"model\":\"a\",\"messages\":[{\"model\":\"x\",\"model\":\"y\"}]}", &r), 0);
}

static void test_escaped_model(void **state) {
  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"gpt\\u002d4o\\/mini\"}", &r), 0);
  assert_slice(r.model, "gpt-4o/mini");
  assert_ptr_equal(r.model.base, r.model_buf);
  assert_string_equal(r.model_buf, "gpt-4o/mini");

  assert_int_equal(scan("{\"model\":\"caf\\u00e9-\\ud83d\\ude00\"}", &r), 0);
  assert_slice(r.model, "caf\xc3\xa9-\xf0\x9f\x98\x80");

  /* Raw UTF-8 passes through as is and stays in the body. */
  const char *raw = "{\"model\":\"caf\xc3\xa9\"}";
  assert_int_equal(scan(raw, &r), 0);
  assert_slice(r.model, "caf\xc3\xa9");
  assert_inside(r.model, raw, strlen(raw));

  expect_err("{\"model\":\"a\\ud800\"}", -EINVAL, "surrogate");
  expect_err("{\"model\":\"a\\udc00b\"}", -EINVAL, "surrogate");
  expect_err("{\"model\":\"a\\u0000b\"}", -EINVAL, "control");
  expect_err("{\"model\":\"a\\nb\"}", -EINVAL, "control");
  expect_err("{\"model\":\"a\x7f\"}", -EINVAL, "control");

  /* 255 bytes is the limit, raw or decoded. */
  struct buf b = {0};
  buf_puts(&b, "{\"model\":\"");
  for (int i = 0; i < 255; i++) buf_puts(&b, "x");
  buf_puts(&b, "\"}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), 0);
  assert_int_equal(r.model.len, 255);
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"");
  for (int i = 0; i < 256; i++) buf_puts(&b, "x");
  buf_puts(&b, "\"}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), -EINVAL);
  assert_non_null(strstr(errmsg, "too long"));
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"");
  for (int i = 0; i < 255; i++) buf_puts(&b, "\\u0078");
  buf_puts(&b, "\"}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), 0);
  assert_int_equal(r.model.len, 255);
  assert_ptr_equal(r.model.base, r.model_buf);
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"");
  for (int i = 0; i < 256; i++) buf_puts(&b, "\\u0078");
  buf_puts(&b, "\"}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), -EINVAL);
  buf_free(&b);
}

static void test_nested_model_ignored(void **state) {
  struct oai_req r;
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"model\":\"evil\"}],"
                     "\"metadata\":{\"model\":\"evil2\"},\"model\":\"good\"}";
  assert_int_equal(scan(body, &r), 0);
  assert_slice(r.model, "good");
  expect_err("{\"messages\":[{\"model\":\"x\"}],\"tools\":[{\"model\":\"y\"}]}", -EINVAL,
             "missing required parameter: 'model'");
  /* A key string that contains "model" as its value is not a key. */
  expect_err("{\"name\":\"model\",\"x\":[\"model\",\"y\"]}", -EINVAL, "missing required parameter: 'model'");
}

static void test_wrong_types(void **state) {
  expect_err("{\"messages\":[]}", -EINVAL, "missing required parameter: 'model'");
  expect_err("{}", -EINVAL, "missing required parameter: 'model'");
  expect_err("{\"model\":5}", -EINVAL, "'model' must be a non-empty string");
  expect_err("{\"model\":\"\"}", -EINVAL, "'model' must be a non-empty string");
  expect_err("{\"model\":null}", -EINVAL, "'model'");
  expect_err("{\"model\":[\"a\"]}", -EINVAL, "'model'");
  expect_err("{\"model\":{\"name\":\"a\"}}", -EINVAL, "'model'");
  expect_err("{\"model\":\"m\",\"stream\":\"true\"}", -EINVAL, "'stream' must be a boolean");
  expect_err("{\"model\":\"m\",\"stream\":1}", -EINVAL, "'stream' must be a boolean");
  expect_err("{\"model\":\"m\",\"max_tokens\":-1}", -EINVAL, "'max_tokens' must be a non-negative integer");
  expect_err("{\"model\":\"m\",\"max_tokens\":1.5}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_tokens\":10.0}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_tokens\":1e3}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_tokens\":\"10\"}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_tokens\":true}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_tokens\":9223372036854775808}", -EINVAL, "'max_tokens'");
  expect_err("{\"model\":\"m\",\"max_completion_tokens\":-5}", -EINVAL, "'max_completion_tokens'");
  expect_err("{\"model\":\"m\",\"messages\":{}}", -EINVAL, "'messages' must be an array");
  expect_err("{\"model\":\"m\",\"messages\":\"hi\"}", -EINVAL, "'messages' must be an array");
  expect_err("{\"model\":\"m\",\"prompt\":5}", -EINVAL, "'prompt' must be a string or an array");
  expect_err("{\"model\":\"m\",\"stream_options\":true}", -EINVAL, "'stream_options' must be an object");
  expect_err("{\"model\":\"m\",\"stream_options\":[]}", -EINVAL, "'stream_options' must be an object");
  expect_err("{\"model\":\"m\",\"stream_options\":{\"include_usage\":\"yes\"}}", -EINVAL,
             "'stream_options.include_usage' must be a boolean");
  expect_err("{\"model\":\"m\",\"user\":5}", -EINVAL, "'user' must be a string");

  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":9223372036854775807}", &r), 0);
  assert_int_equal(r.max_tokens, INT64_MAX);
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":0,\"user\":null,\"messages\":null}", &r), 0);
  assert_int_equal(r.max_tokens, 0);
  assert_int_equal(r.user.len, 0);
}

static void test_malformed(void **state) {
  static const char *bad[] = {
      "",
      "   \n",
      "{",
      "}",
      "{\"model\":\"a\"",
      "{\"model\":\"a\",}",
      "{\"model\" \"a\"}",
      "{\"model\":\"a\" \"stream\":true}",
      "{\"model\"::\"a\"}",
      "{,\"model\":\"a\"}",
      "{\"model\":\"a\"} x",
      "{\"model\":\"a\"}{}",
      "{\"model\":\"a\"},",
      "{'model':'a'}",
      "{model:\"a\"}",
      "{\"model\":\"a\",\"x\":[1,]}",
      "{\"model\":\"a\",\"x\":[,1]}",
      "{\"model\":\"a\",\"x\":[1 2]}",
      "{\"model\":\"a\",\"x\":[1:2]}",
      "{\"model\":\"a\",\"x\":[\"k\":2]}",
      "{\"model\":\"a\",\"x\":tru}",
      "{\"model\":\"a\",\"x\":truex}",
      "{\"model\":\"a\",\"x\":nul}",
      "{\"model\":\"a\",\"x\":01}",
      "{\"model\":\"a\",\"x\":1.}",
      "{\"model\":\"a\",\"x\":.5}",
      "{\"model\":\"a\",\"x\":-}",
      "{\"model\":\"a\",\"x\":1e}",
      "{\"model\":\"a\",\"x\":+1}",
      "{\"model\":\"a\",\"x\":NaN}",
      "{\"model\":\"a\",\"x\":\"\\x\"}",
      "{\"model\":\"a\",\"x\":\"\\u12G4\"}",
      "{\"model\":\"a\",\"x\":\"\\u12\"}",
      "{\"model\":\"a\",\"x\":\"tab\there\"}",
      "{\"model\":\"a\",\"x\":{\"k\"}}",
      "{\"model\":\"a\",\"x\":{\"k\":}}",
      "{\"model\":\"a\",\"x\":{1:2}}",
      "{\"model\":\"a\",\"x\":[}",
      "{\"model\":\"a\",\"x\":{]}",
      "\xef\xbb\xbf{\"model\":\"a\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    expect_err(bad[i], IM_EPARSE, NULL);
    assert_true(strlen(errmsg) > 0);
  }
  expect_err("{\"model\":\"a\",}", IM_EPARSE, "We could not parse the JSON body");

  /* Not objects. */
  expect_err("[{\"model\":\"a\"}]", IM_EPARSE, "must be a JSON object");
  expect_err("\"model\"", IM_EPARSE, "must be a JSON object");
  expect_err("42", IM_EPARSE, "must be a JSON object");
  expect_err("null", IM_EPARSE, "must be a JSON object");

  /* A NUL byte is just an invalid byte, wherever it is (jsmn alone would stop at it). */
  struct oai_req r;
  static const char nul1[] = "{\"model\":\"a\"}\0garbage";
  assert_int_equal(jscan_request(nul1, sizeof nul1 - 1, &r, errmsg, sizeof errmsg), IM_EPARSE);
  static const char nul2[] = "{\"model\":\"a\0b\"}";
  assert_int_equal(jscan_request(nul2, sizeof nul2 - 1, &r, errmsg, sizeof errmsg), IM_EPARSE);
  /* The length is what counts, not a terminator: a prefix that is a whole object is fine. */
  assert_int_equal(jscan_request(nul1, 13, &r, errmsg, sizeof errmsg), 0);
  /* Special bytes are found wherever they sit relative to the 8-byte words the string scan reads. */
  for (int pos = 0; pos < 24; pos++) {
    char body[96];
    struct slice m;
    int n = snprintf(body, sizeof body, "{\"model\":\"%.*s\x01%.*s\"}", pos, "\xc3\xa9xxxxxxxxxxxxxxxxxxxxxxxxx", 9,
                     "yyyyyyyyy");
    assert_int_equal(jscan_request(body, (size_t)n, &r, errmsg, sizeof errmsg), IM_EPARSE);
    n = snprintf(body, sizeof body, "{\"model\":\"%.*s\\\"%.*s\"}", pos, "\xc3\xa9xxxxxxxxxxxxxxxxxxxxxxxxx", 9,
                 "yyyyyyyyy");
    assert_int_equal(jscan_request(body, (size_t)n, &r, errmsg, sizeof errmsg), 0);
    m = r.model;
    assert_int_equal(m.len, (size_t)pos + 1 + 9);
    assert_int_equal(m.base[pos], '"');
    n = snprintf(body, sizeof body, "{\"model\":\"%.*s\"}", pos + 1, "\xff\x80\x9f\xa0\xdc\xe2xxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(jscan_request(body, (size_t)n, &r, errmsg, sizeof errmsg), 0);
    assert_int_equal(r.model.len, (size_t)pos + 1);
  }
  /* Whitespace around the object is fine. */
  assert_int_equal(scan(" \t\r\n{ \"model\" : \"a\" } \n", &r), 0);
  assert_slice(r.model, "a");
  /* errmsg is optional. */
  assert_int_equal(jscan_request("{", 1, &r, NULL, 0), IM_EPARSE);
  char tiny[4];
  assert_int_equal(jscan_request("{", 1, &r, tiny, sizeof tiny), IM_EPARSE);
  assert_int_equal(strlen(tiny), 3);
}

static void test_depth_and_size(void **state) {
  struct buf b = {0};
  struct oai_req r;
  /* The object itself is level 1: 127 nested arrays inside reach the limit exactly. */
  buf_puts(&b, "{\"model\":\"m\",\"x\":");
  for (int i = 0; i < JSCAN_MAX_DEPTH - 1; i++) buf_puts(&b, "[");
  for (int i = 0; i < JSCAN_MAX_DEPTH - 1; i++) buf_puts(&b, "]");
  buf_puts(&b, "}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), 0);
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"m\",\"x\":");
  for (int i = 0; i < JSCAN_MAX_DEPTH; i++) buf_puts(&b, "[");
  for (int i = 0; i < JSCAN_MAX_DEPTH; i++) buf_puts(&b, "]");
  buf_puts(&b, "}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), IM_ETOOBIG);
  assert_non_null(strstr(errmsg, "nested"));

  /* Deep runs repeated through a big body would cost jsmn O(len * depth): refused, while the same bytes in
   * shallow runs are fine. */
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"m\",\"x\":[");
  for (int u = 0; u < 4000; u++) {
    buf_puts(&b, u ? ",[" : "[");
    for (int i = 0; i < 63; i++) buf_puts(&b, "[");
    for (int i = 0; i < 64; i++) buf_puts(&b, "]");
  }
  buf_puts(&b, "]}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), IM_ETOOBIG);
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"m\",\"x\":[");
  for (int u = 0; u < 32000; u++) buf_puts(&b, u ? ",[[[[[[[]]]]]]]" : "[[[[[[[]]]]]]]");
  buf_puts(&b, "]}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), 0);

  /* Past the kept scratch: a one-off token array, same answers, and the scratch still works afterwards. */
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"m\",\"prompt\":[");
  for (int i = 0; i < 50000; i++) buf_printf(&b, "%s%d", i ? "," : "", i);
  buf_puts(&b, "]}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), 0);
  assert_int_equal(r.prompt_token_ids, 50000);
  assert_int_equal(scan("{\"model\":\"small\"}", &r), 0);
  assert_slice(r.model, "small");

  /* Past the token cap. */
  buf_reset(&b);
  buf_puts(&b, "{\"model\":\"m\",\"prompt\":[");
  for (unsigned i = 0; i < JSCAN_MAX_TOKENS; i++) buf_puts(&b, i ? ",0" : "0");
  buf_puts(&b, "]}");
  assert_int_equal(jscan_request(b.base, b.len, &r, errmsg, sizeof errmsg), IM_ETOOBIG);
  buf_free(&b);
}

static void test_max_tokens(void **state) {
  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":10,\"max_completion_tokens\":20}", &r), 0);
  assert_int_equal(r.max_tokens, 20);
  assert_int_equal(scan("{\"max_completion_tokens\":20,\"model\":\"m\",\"max_tokens\":10}", &r), 0);
  assert_int_equal(r.max_tokens, 20);
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":10}", &r), 0);
  assert_int_equal(r.max_tokens, 10);
  assert_int_equal(scan("{\"model\":\"m\",\"max_completion_tokens\":7}", &r), 0);
  assert_int_equal(r.max_tokens, 7);
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":10,\"max_completion_tokens\":null}", &r), 0);
  assert_int_equal(r.max_tokens, 10);
  assert_int_equal(scan("{\"model\":\"m\"}", &r), 0);
  assert_int_equal(r.max_tokens, -1);
  assert_int_equal(scan("{\"model\":\"m\",\"max_tokens\":null}", &r), 0);
  assert_int_equal(r.max_tokens, -1);
}

static void test_prompt_text_bytes(void **state) {
  struct oai_req r;
  /* Escapes count as the bytes they decode to: \n is 1, \u00e9 is 2 (UTF-8), a surrogate pair 4. */
  assert_int_equal(scan("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\nb\\u00e9\\ud83d\\ude00\"}]}",
                        &r),
                   0);
  assert_int_equal(r.prompt_text_bytes, 3 + 2 + 4);
  /* Array content: only text parts count; a part's keys may come in any order; other messages add up. */
  const char *body = "{\"model\":\"m\",\"messages\":["
                     "{\"role\":\"system\",\"content\":\"12345\"},"
                     "{\"role\":\"user\",\"content\":[{\"text\":\"abc\",\"type\":\"text\"},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:xxxxxxxxxxxxxxxx\"}},"
                     "{\"type\":\"input_audio\",\"text\":\"not counted\"},"
                     "{\"type\":\"text\",\"text\":\"defg\"}]},"
                     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
                     "\"not an object\",42]}";
  assert_int_equal(scan(body, &r), 0);
  assert_int_equal(r.prompt_text_bytes, 5 + 3 + 4);
  /* A repeated content key counts once, the last one, as a JSON parser upstream would read it. */
  assert_int_equal(scan("{\"model\":\"m\",\"messages\":[{\"content\":\"aaaaaaaa\",\"content\":\"bb\"}]}", &r), 0);
  assert_int_equal(r.prompt_text_bytes, 2);
  /* Completions. */
  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":\"\\u00e9t\\u00e9\"}", &r), 0);
  assert_int_equal(r.prompt_text_bytes, 5);
  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":[\"ab\",7,[8,9],\"c\"]}", &r), 0);
  assert_int_equal(r.prompt_text_bytes, 3);
  assert_int_equal(r.prompt_token_ids, 3);
  /* messages wins over prompt when both are present. */
  assert_int_equal(scan("{\"model\":\"m\",\"prompt\":\"xxxxxxxx\",\"messages\":[{\"content\":\"y\"}]}", &r), 0);
  assert_true(r.is_chat);
  assert_int_equal(r.prompt_text_bytes, 1);
}

static void test_user_raw(void **state) {
  struct oai_req r;
  assert_int_equal(scan("{\"model\":\"m\",\"user\":\"a\\\"b\"}", &r), 0);
  assert_slice(r.user, "a\\\"b");
}

static const char final_chunk[] =
    "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"llama\","
    "\"system_fingerprint\":null,\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":12,"
    "\"total_tokens\":43,\"prompt_tokens_details\":{\"cached_tokens\":16}}}";

static void test_usage_final_chunk(void **state) {
  struct oai_usage u;
  assert_int_equal(jscan_usage(final_chunk, strlen(final_chunk), &u), 0);
  assert_true(u.present);
  assert_int_equal(u.prompt_tokens, 31);
  assert_int_equal(u.completion_tokens, 12);
  assert_int_equal(u.total_tokens, 43);
  assert_int_equal(u.cached_tokens, 16);
  assert_true(jscan_is_usage_only_chunk(final_chunk, strlen(final_chunk)));

  const char *mid = "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                    "\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}";
  assert_int_equal(jscan_usage(mid, strlen(mid), &u), 0);
  assert_false(u.present);
  assert_int_equal(u.prompt_tokens, -1);
  assert_false(jscan_is_usage_only_chunk(mid, strlen(mid)));

  const char *nousage = "{\"choices\":[]}";
  assert_false(jscan_is_usage_only_chunk(nousage, strlen(nousage)));
  const char *nullusage = "{\"choices\":[],\"usage\":null}";
  assert_false(jscan_is_usage_only_chunk(nullusage, strlen(nullusage)));
  const char *withchoice = "{\"choices\":[{\"index\":0}],\"usage\":{\"prompt_tokens\":1}}";
  assert_false(jscan_is_usage_only_chunk(withchoice, strlen(withchoice)));
  const char *nochoices = "{\"usage\":{\"prompt_tokens\":1}}";
  assert_false(jscan_is_usage_only_chunk(nochoices, strlen(nochoices)));
  const char *escaped = "{\"ch\\u006fices\":[],\"usage\":{}}";
  assert_true(jscan_is_usage_only_chunk(escaped, strlen(escaped)));
  const char *spaced = "{\"choices\":[ \n ],\"usage\":{}}";
  assert_true(jscan_is_usage_only_chunk(spaced, strlen(spaced)));
  const char *decoy = "{\"choices\":[{\"delta\":{\"content\":\"[]\"}}],\"usage\":{}}";
  assert_false(jscan_is_usage_only_chunk(decoy, strlen(decoy)));
  const char *dup = "{\"choices\":[],\"usage\":{},\"usage\":null}";
  assert_false(jscan_is_usage_only_chunk(dup, strlen(dup)));
  assert_false(jscan_is_usage_only_chunk("[DONE]", 6));
  assert_false(jscan_is_usage_only_chunk("", 0));
  assert_false(jscan_is_usage_only_chunk(final_chunk, strlen(final_chunk) - 1));
}

static void test_usage_response(void **state) {
  const char *resp =
      "{\"id\":\"cmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
      "\"message\":{\"role\":\"assistant\",\"content\":\"usage: {\\\"prompt_tokens\\\": 999}\"},"
      "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"total_tokens\":12,\"completion_tokens\":3}}";
  struct oai_usage u;
  assert_int_equal(jscan_usage(resp, strlen(resp), &u), 0);
  assert_true(u.present);
  assert_int_equal(u.prompt_tokens, 9);
  assert_int_equal(u.completion_tokens, 3);
  assert_int_equal(u.total_tokens, 12);
  assert_int_equal(u.cached_tokens, -1);
  assert_false(jscan_is_usage_only_chunk(resp, strlen(resp)));

  /* llama.cpp: no cached_tokens, but timings.prompt_n = the prompt tokens it computed (the rest were cached)
   */
  const char *llama =
      "{\"choices\":[],\"usage\":{\"completion_tokens\":8,\"prompt_tokens\":374,\"total_tokens\":382},"
      "\"timings\":{\"prompt_n\":16,\"prompt_ms\":2.7,\"predicted_n\":8}}";
  assert_int_equal(jscan_usage(llama, strlen(llama), &u), 0);
  assert_int_equal(u.prompt_tokens, 374);
  assert_int_equal(u.cached_tokens, 358);
  const char *llama_bad = "{\"usage\":{\"prompt_tokens\":4},\"timings\":{\"prompt_n\":9}}";
  assert_int_equal(jscan_usage(llama_bad, strlen(llama_bad), &u), 0);
  assert_int_equal(u.cached_tokens, -1); /* more computed than asked: not believed */
  const char *both = "{\"usage\":{\"prompt_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":2}},"
                     "\"timings\":{\"prompt_n\":1}}";
  assert_int_equal(jscan_usage(both, strlen(both), &u), 0);
  assert_int_equal(u.cached_tokens, 2); /* the runtime's own count wins */

  /* jscan_top_string: the raw bytes of a top-level string, for renaming a response's model */
  struct slice m;
  const char *chunk = "{\"id\":\"x\",\"choices\":[{\"model\":\"inner\"}],\"model\":\"a\\/b\",\"n\":1}";
  assert_int_equal(jscan_top_string(chunk, strlen(chunk), "model", &m), 0);
  assert_int_equal(m.len, 4);
  assert_memory_equal(m.base, "a\\/b", 4);
  assert_int_equal(jscan_top_string(chunk, strlen(chunk), "object", &m), -ENOENT);
  assert_int_equal(jscan_top_string("{\"model\":1}", 11, "model", &m), -ENOENT);
  assert_int_equal(jscan_top_string("{\"model\":\"a\",\"model\":\"b\"}", 25, "model", &m), -ENOENT);
  assert_int_equal(jscan_top_string("{\"model\":\"a\"", 12, "model", &m), IM_EPARSE);

  const char *nulldetails = "{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens_details\":null}}";
  assert_int_equal(jscan_usage(nulldetails, strlen(nulldetails), &u), 0);
  assert_true(u.present);
  assert_int_equal(u.prompt_tokens, 1);
  assert_int_equal(u.completion_tokens, -1);
  assert_int_equal(u.cached_tokens, -1);

  const char *none = "{\"choices\":[]}";
  assert_int_equal(jscan_usage(none, strlen(none), &u), 0);
  assert_false(u.present);
  /* Found among other top-level values whatever they hold (braces and quotes inside strings, nesting,
   * whitespace, an escaped key), and read after the rest is skipped without tokens. */
  const char *tricky = " {\"choices\" : [ {\"message\":{\"content\":\"}]} \\\" \\\\ {\\\"usage\\\":1}\"}} ],"
                       "\"n\":-1.5e3 , \"t\":true,\"x\":null,\"us\\u0061ge\" :\n{ \"prompt_tokens\" : 7 } } ";
  assert_int_equal(jscan_usage(tricky, strlen(tricky), &u), 0);
  assert_true(u.present);
  assert_int_equal(u.prompt_tokens, 7);
  const char *last = "{\"usage\":{\"total_tokens\":3},\"id\":\"x\"}";
  assert_int_equal(jscan_usage(last, strlen(last), &u), 0);
  assert_int_equal(u.total_tokens, 3);
  const char *nullusage = "{\"id\":\"x\",\"usage\":null}";
  assert_int_equal(jscan_usage(nullusage, strlen(nullusage), &u), 0);
  assert_false(u.present);
  const char *dupesc = "{\"usage\":{},\"\\u0075sage\":{\"prompt_tokens\":1}}";
  assert_int_equal(jscan_usage(dupesc, strlen(dupesc), &u), IM_EDUPKEY);
  const char *numusage = "{\"usage\":12}";
  assert_int_equal(jscan_usage(numusage, strlen(numusage), &u), -EINVAL);
  /* A nested "usage" is not the response's usage. */
  const char *nested = "{\"data\":{\"usage\":{\"prompt_tokens\":5}}}";
  assert_int_equal(jscan_usage(nested, strlen(nested), &u), 0);
  assert_false(u.present);

  /* Ambiguous or wrong usage is refused, and leaves nothing behind. */
  const char *dupusage = "{\"usage\":{\"prompt_tokens\":1},\"usage\":{\"prompt_tokens\":100}}";
  assert_int_equal(jscan_usage(dupusage, strlen(dupusage), &u), IM_EDUPKEY);
  assert_false(u.present);
  const char *dupcount = "{\"usage\":{\"completion_tokens\":1,\"completion_t\\u006fkens\":1000}}";
  assert_int_equal(jscan_usage(dupcount, strlen(dupcount), &u), IM_EDUPKEY);
  assert_int_equal(u.completion_tokens, -1);
  const char *dupcached = "{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":1,\"cached_tokens\":2}}}";
  assert_int_equal(jscan_usage(dupcached, strlen(dupcached), &u), IM_EDUPKEY);
  const char *neg = "{\"usage\":{\"prompt_tokens\":-1}}";
  assert_int_equal(jscan_usage(neg, strlen(neg), &u), -EINVAL);
  const char *frac = "{\"usage\":{\"prompt_tokens\":1.5}}";
  assert_int_equal(jscan_usage(frac, strlen(frac), &u), -EINVAL);
  const char *str = "{\"usage\":{\"prompt_tokens\":\"1\"}}";
  assert_int_equal(jscan_usage(str, strlen(str), &u), -EINVAL);
  const char *notobj = "{\"usage\":[1,2]}";
  assert_int_equal(jscan_usage(notobj, strlen(notobj), &u), -EINVAL);
  assert_int_equal(jscan_usage("[DONE]", 6, &u), IM_EPARSE);
  assert_int_equal(jscan_usage("[]", 2, &u), IM_EPARSE);
  assert_int_equal(jscan_usage("{\"usage\":{}", 11, &u), IM_EPARSE);
  assert_false(u.present);
  assert_int_equal(u.prompt_tokens, -1);
}

static void test_validate(void **state) {
  size_t off = 99;
  const char *all = "[1, -0.5e+3, \"x\", true, false, null, {}, [], {\"k\":[0]}]";
  assert_int_equal(jscan_validate(all, strlen(all), &off), 0);
  assert_int_equal(off, 0);
  assert_int_equal(jscan_validate("\"str\"", 5, NULL), 0);
  assert_int_equal(jscan_validate("-0", 2, NULL), 0);
  assert_int_equal(jscan_validate("[1,2,]", 6, &off), IM_EPARSE);
  assert_int_equal(off, 5);
  assert_int_equal(jscan_validate("{\"a\":1} x", 9, &off), IM_EPARSE);
  assert_int_equal(off, 8);
  assert_int_equal(jscan_validate("[1", 2, &off), IM_EPARSE);
  assert_int_equal(off, 2);
}

static int teardown(void **state) {
  jscan_thread_free();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chat_full),        cmocka_unit_test(test_completions),
      cmocka_unit_test(test_stream_flag),      cmocka_unit_test(test_stream_options),
      cmocka_unit_test(test_duplicates),       cmocka_unit_test(test_escaped_model),
      cmocka_unit_test(test_nested_model_ignored), cmocka_unit_test(test_wrong_types),
      cmocka_unit_test(test_malformed),        cmocka_unit_test(test_depth_and_size),
      cmocka_unit_test(test_max_tokens),       cmocka_unit_test(test_prompt_text_bytes),
      cmocka_unit_test(test_user_raw),         cmocka_unit_test(test_usage_final_chunk),
      cmocka_unit_test(test_usage_response),   cmocka_unit_test(test_validate),
  };
  return cmocka_run_group_tests(tests, NULL, teardown);
}
