/* Unit tests for src/trace: W3C traceparent/tracestate (the spec's examples and edge cases), the sampler, the
 * protobuf encoding of one span checked byte by byte against the wire format, and OTLP endpoint URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/rng.h"
#include "trace/exporter.h"
#include "trace/otlp.h"
#include "trace/pb.h"
#include "trace/sampler.h"
#include "trace/span.h"
#include "trace/trace_context.h"

#define TP_SPEC "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, struct trace_ctx *c) { return traceparent_parse(slice_cstr(s), c); }

static void test_traceparent_spec_example(void **state) {
  struct trace_ctx c;
  assert_int_equal(parse(TP_SPEC, &c), 0);
  static const uint8_t tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                  0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
  static const uint8_t sid[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  assert_memory_equal(c.trace_id, tid, 16);
  assert_memory_equal(c.span_id, sid, 8);
  assert_int_equal(c.flags, 1);
  char out[TRACEPARENT_LEN + 1];
  traceparent_format(&c, out);
  assert_string_equal(out, TP_SPEC);
  /* not sampled (the spec's second example) */
  assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c), 0);
  assert_int_equal(c.flags, 0);
  traceparent_format(&c, out);
  assert_string_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  /* unknown flag bits are accepted; only the sampled bit goes on */
  assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", &c), 0);
  traceparent_format(&c, out);
  assert_string_equal(out, TP_SPEC);
}

static void test_traceparent_invalid(void **state) {
  static const char *const bad[] = {
      "",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* uppercase */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",  /* uppercase span id */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version not hex */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011", /* version 00 is exactly 55 */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* no extra fields in version 00 */
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* wrong separator */
      "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
      "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",   /* dash misplaced */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",   /* flags not hex */
      " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* leading space */
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x", /* a later version: '-' must follow */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct trace_ctx c;
    if (parse(bad[i], &c) != -EINVAL) fail_msg("accepted '%s'", bad[i]);
  }
}

static void test_traceparent_future_version(void **state) {
  struct trace_ctx c;
  /* the spec: a higher version is parsed by its version-00 fields, ignoring what follows a '-' */
  assert_int_equal(
      parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like", &c), 0);
  assert_int_equal(c.flags, 1);
  assert_int_equal(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c), 0);
  char out[TRACEPARENT_LEN + 1];
  traceparent_format(&c, out); /* we speak version 00 */
  assert_string_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

static struct slice ts(const char *s) { return tracestate_check(slice_cstr(s)); }

static void test_tracestate(void **state) {
  assert_true(slice_eqz(ts("congo=t61rcWkgMzE"), "congo=t61rcWkgMzE"));
  assert_true(
      slice_eqz(ts("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
  assert_true(slice_eqz(ts(" a=1 ,\tb=2 "), " a=1 ,\tb=2 "));       /* optional whitespace kept as sent */
  assert_true(slice_eqz(ts("a=1,,b=2"), "a=1,,b=2"));               /* empty members are allowed */
  assert_true(slice_eqz(ts("fw529a3039@dt=1"), "fw529a3039@dt=1")); /* multi-tenant key */
  assert_true(slice_eqz(ts("k=a value with spaces"), "k=a value with spaces"));
  static const char *const bad[] = {"Congo=1", "congo", "=1",   "a=1,b", "a=1=2", "a=",        "a=x\x7f",
                                    "a=\x01",  "1a=1",  "@x=1", "a@=1",  "a@1=2", "a=\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (ts(bad[i]).len != 0) fail_msg("accepted '%s'", bad[i]);
  /* 32 members are allowed, 33 are not */
  struct buf b = {0};
  for (int i = 0; i < 32; i++)
    buf_printf(&b, "%sk%d=v", i ? "," : "", i);
  assert_int_equal(tracestate_check(buf_slice(&b)).len, b.len);
  buf_puts(&b, ",k32=v");
  assert_int_equal(tracestate_check(buf_slice(&b)).len, 0);
  /* past 512 bytes: the longest prefix of whole members that fits */
  buf_reset(&b);
  char v[200];
  memset(v, 'x', sizeof v - 1);
  v[sizeof v - 1] = '\0';
  buf_printf(&b, "a=%s,b=%s,c=%s", v, v, v); /* 3 x 201 + 2 = 605 bytes */
  struct slice cut = tracestate_check(buf_slice(&b));
  assert_int_equal(cut.len, 2 * 201 + 1);
  assert_ptr_equal(cut.base, b.base);
  buf_free(&b);
}

static void test_sampler(void **state) {
  struct sampler never, always, half;
  sampler_init(&never, 0);
  sampler_init(&always, 1);
  sampler_init(&half, 0.5);
  struct rng r;
  rng_seed(&r, 42);
  int n = 20000, kept = 0;
  for (int i = 0; i < n; i++) {
    uint8_t id[TRACE_ID_LEN];
    uint64_t a = rng_next(&r), b = rng_next(&r);
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
    assert_false(sampler_decide(&never, NULL, id));
    assert_true(sampler_decide(&always, NULL, id));
    kept += sampler_decide(&half, NULL, id);
    assert_int_equal(sampler_decide(&half, NULL, id), sampler_decide(&half, NULL, id)); /* by the id alone */
  }
  assert_in_range(kept, n * 45 / 100, n * 55 / 100);
  /* parent-based: the incoming decision wins over the ratio, both ways */
  struct trace_ctx sampled, unsampled;
  assert_int_equal(parse(TP_SPEC, &sampled), 0);
  assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &unsampled), 0);
  assert_true(sampler_decide(&never, &sampled, sampled.trace_id));
  assert_false(sampler_decide(&always, &unsampled, unsampled.trace_id));
}

static void test_pb_varint(void **state) {
  struct buf b = {0};
  pb_varint(&b, 0);
  pb_varint(&b, 1);
  pb_varint(&b, 300); /* the protobuf docs' example: ac 02 */
  pb_varint(&b, UINT64_MAX);
  static const uint8_t want[] = {0x00, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(b.len, sizeof want);
  assert_memory_equal(b.base, want, sizeof want);
  /* a nested message longer than 127 bytes gets a two-byte length */
  buf_reset(&b);
  size_t m = pb_begin(&b, 1);
  char big[200];
  memset(big, 'z', sizeof big);
  pb_bytes(&b, 2, big, sizeof big);
  pb_end(&b, m);
  static const uint8_t head[] = {0x0a, 0xcb, 0x01, 0x12, 0xc8, 0x01}; /* 203 = 3 + 200; 200 */
  assert_int_equal(b.len, sizeof head + 200);
  assert_memory_equal(b.base, head, sizeof head);
  buf_free(&b);
}

static void append(struct buf *b, const uint8_t *p, size_t n) { buf_append(b, p, n); }
#define APPEND(b, ...)                                                                                       \
  do {                                                                                                       \
    static const uint8_t bytes_[] = {__VA_ARGS__};                                                           \
    append(b, bytes_, sizeof bytes_);                                                                        \
  } while (0)

/* One span with every kind of field, encoded, against the bytes the wire format gives for it (field numbers
 * from opentelemetry-proto: collector/trace/v1, trace/v1, common/v1, resource/v1). */
static void test_otlp_one_span(void **state) {
  uint8_t tid[16], sid[8], pid[8];
  for (int i = 0; i < 16; i++)
    tid[i] = (uint8_t)(0x01 + i);
  for (int i = 0; i < 8; i++)
    sid[i] = (uint8_t)(0x11 + i), pid[i] = (uint8_t)(0x21 + i);
  struct span s;
  span_init(&s, "x", SPAN_KIND_SERVER, tid, sid, pid, 1);
  s.end_ns = 2;
  span_str(&s, "k", "v");
  span_int(&s, "n", -1);
  span_error(&s, "e");
  struct otlp_resource res = {.service_name = "s", .instance_id = "", .version = ""};
  struct buf got = {0};
  otlp_encode_traces(&got, &res, &s, 1, 0, 1);

  struct buf w = {0};
  APPEND(&w, 0x0a, 0x88, 0x01);       /* ExportTraceServiceRequest.resource_spans, 136 bytes */
  APPEND(&w, 0x0a, 0x15);             /* ResourceSpans.resource, 21 */
  APPEND(&w, 0x0a, 0x13, 0x0a, 0x0c); /* Resource.attributes (19): KeyValue.key (12) */
  buf_puts(&w, "service.name");
  APPEND(&w, 0x12, 0x03, 0x0a, 0x01, 's'); /* KeyValue.value: AnyValue.string_value "s" */
  APPEND(&w, 0x12, 0x6f);                  /* ResourceSpans.scope_spans, 111 */
  APPEND(&w, 0x0a, 0x0b, 0x0a, 0x09);      /* ScopeSpans.scope: InstrumentationScope.name (9) */
  buf_puts(&w, "infermesh");
  APPEND(&w, 0x12, 0x60); /* ScopeSpans.spans: Span, 96 */
  APPEND(&w, 0x0a, 0x10); /* Span.trace_id */
  append(&w, tid, 16);
  APPEND(&w, 0x12, 0x08); /* Span.span_id */
  append(&w, sid, 8);
  APPEND(&w, 0x22, 0x08); /* Span.parent_span_id (field 4) */
  append(&w, pid, 8);
  APPEND(&w, 0x2a, 0x01, 'x');              /* Span.name */
  APPEND(&w, 0x30, 0x02);                   /* Span.kind = SPAN_KIND_SERVER */
  APPEND(&w, 0x39, 1, 0, 0, 0, 0, 0, 0, 0); /* Span.start_time_unix_nano (fixed64) */
  APPEND(&w, 0x41, 2, 0, 0, 0, 0, 0, 0, 0); /* Span.end_time_unix_nano */
  APPEND(&w, 0x4a, 0x08, 0x0a, 0x01, 'k', 0x12, 0x03, 0x0a, 0x01, 'v'); /* attributes: k = "v" */
  APPEND(&w, 0x4a, 0x10, 0x0a, 0x01, 'n', 0x12, 0x0b, 0x18, /* n = int_value -1 (10-byte varint) */
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
  APPEND(&w, 0x7a, 0x05, 0x12, 0x01, 'e', 0x18, 0x02); /* Span.status (15): message "e", code ERROR */
  assert_int_equal(got.len, w.len);
  assert_memory_equal(got.base, w.base, w.len);
  buf_free(&got);
  buf_free(&w);
}

static void test_span_bounds(void **state) {
  uint8_t id[16] = {1};
  struct span s;
  span_init(&s, "x", SPAN_KIND_INTERNAL, id, id, NULL, 0);
  assert_false(s.has_parent);
  for (int i = 0; i < SPAN_MAX_ATTRS + 3; i++)
    span_bool(&s, "b", true);
  assert_int_equal(s.nattrs, SPAN_MAX_ATTRS);
  assert_int_equal(s.dropped_attrs, 3);
  span_init(&s, "x", SPAN_KIND_INTERNAL, id, id, NULL, 0);
  char long_value[300];
  memset(long_value, 'a', sizeof long_value);
  long_value[sizeof long_value - 1] = '\0';
  long_value[0] = '\n';
  long_value[1] = (char)0xc3; /* not ASCII: OTLP strings must be UTF-8, so such bytes become '?' */
  span_str(&s, "k", long_value);
  assert_int_equal(strlen(s.attrs[0].s), SPAN_STR_MAX - 1);
  assert_memory_equal(s.attrs[0].s, "??aaa", 5);
}

static void test_endpoint(void **state) {
  char host[64], path[256], err[256];
  int port;
  assert_int_equal(trace_endpoint_parse("http://127.0.0.1:4318", host, sizeof host, &port, path, sizeof path,
                                        err, sizeof err),
                   0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 4318);
  assert_string_equal(path, "/v1/traces");
  assert_int_equal(trace_endpoint_parse("http://localhost:4318/otlp/", host, sizeof host, &port, path,
                                        sizeof path, err, sizeof err),
                   0);
  assert_string_equal(path, "/otlp/v1/traces");
  assert_int_equal(
      trace_endpoint_parse("http://[::1]:4318", host, sizeof host, &port, path, sizeof path, err, sizeof err),
      0);
  assert_string_equal(host, "::1");
  static const char *const bad[] = {
      "127.0.0.1:4318",        "https://127.0.0.1:4318", "http://127.0.0.1",
      "http://127.0.0.1:0",    "http://127.0.0.1:99999", "http://collector:4318",
      "http://127.0.0.1:43x8", "http://[::1:4318",       "http://127.0.0.1:4318/a b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (trace_endpoint_parse(bad[i], host, sizeof host, &port, path, sizeof path, err, sizeof err) != -EINVAL)
      fail_msg("accepted '%s'", bad[i]);
  assert_non_null(strstr(err, "http://HOST:PORT"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_traceparent_spec_example),
      cmocka_unit_test(test_traceparent_invalid),
      cmocka_unit_test(test_traceparent_future_version),
      cmocka_unit_test(test_tracestate),
      cmocka_unit_test(test_sampler),
      cmocka_unit_test(test_pb_varint),
      cmocka_unit_test(test_otlp_one_span),
      cmocka_unit_test(test_span_bounds),
      cmocka_unit_test(test_endpoint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
