/* Unit tests for grpc/grpc_frame.c: message framing, grpc-timeout, grpc-message encoding, HTTP status
 * mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "grpc/grpc_frame.h"

static void test_one_message_is_framed_exactly(void **state) {
  struct slice msg;
  const char *err = NULL;
  static const char ok[] = "\0\0\0\0\3abc";
  assert_int_equal(grpc_frame_one(slice_make(ok, 8), &msg, &err), GRPC_OK);
  assert_int_equal(msg.len, 3);
  assert_memory_equal(msg.base, "abc", 3);
  static const char empty[] = "\0\0\0\0\0"; /* an empty message is a message (all fields default) */
  assert_int_equal(grpc_frame_one(slice_make(empty, 5), &msg, &err), GRPC_OK);
  assert_int_equal(msg.len, 0);
  assert_int_equal(grpc_frame_one(slice_make(ok, 7), &msg, &err), GRPC_INVALID_ARGUMENT); /* truncated */
  assert_non_null(strstr(err, "truncated"));
  assert_int_equal(grpc_frame_one(slice_make(ok, 3), &msg, &err),
                   GRPC_INVALID_ARGUMENT); /* a partial prefix */
  assert_int_equal(grpc_frame_one(slice_make(NULL, 0), &msg, &err), GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(err, "no message"));
  static const char two[] = "\0\0\0\0\1a\0\0\0\0\1b";
  assert_int_equal(grpc_frame_one(slice_make(two, 12), &msg, &err), GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(err, "exactly one"));
  static const char gz[] = "\1\0\0\0\1a";
  assert_int_equal(grpc_frame_one(slice_make(gz, 6), &msg, &err), GRPC_UNIMPLEMENTED);
  static const char flags[] = "\2\0\0\0\1a";
  assert_int_equal(grpc_frame_one(slice_make(flags, 6), &msg, &err), GRPC_INVALID_ARGUMENT);
  static const char huge[] = "\0\xff\xff\xff\xff";
  assert_int_equal(grpc_frame_one(slice_make(huge, 5), &msg, &err), GRPC_RESOURCE_EXHAUSTED);
}

static void test_header_is_big_endian(void **state) {
  uint8_t h[GRPC_HEADER_LEN];
  grpc_frame_header(h, 0x01020304);
  assert_memory_equal(h, "\0\1\2\3\4", 5);
}

static void test_timeouts(void **state) {
  uint64_t ns;
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("10S"), &ns), 0);
  assert_true(ns == 10000000000ull);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("250m"), &ns), 0);
  assert_true(ns == 250000000ull);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("7n"), &ns), 0);
  assert_true(ns == 7);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("99999999H"), &ns), 0); /* 8 digits of hours: saturates */
  assert_true(ns == UINT64_MAX);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("2M"), &ns), 0);
  assert_true(ns == 120000000000ull);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("S"), &ns), -EINVAL);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("123456789S"), &ns), -EINVAL); /* 9 digits */
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("10s"), &ns), -EINVAL);
  assert_int_equal(grpc_timeout_parse(SLICE_LIT("1-S"), &ns), -EINVAL);
}

static void test_messages_are_percent_encoded(void **state) {
  char out[32];
  assert_int_equal(grpc_percent_encode("plain text: ok", out, sizeof out), 14);
  assert_string_equal(out, "plain text: ok");
  grpc_percent_encode("100% caf\xc3\xa9\n", out, sizeof out);
  assert_string_equal(out, "100%25 caf%C3%A9%0A");
  char small[6];
  grpc_percent_encode("ab\ncd", small, sizeof small); /* an escape is never cut */
  assert_string_equal(small, "ab%0A");
  grpc_percent_encode("abcd\n", small, sizeof small);
  assert_string_equal(small, "abcd");
}

static void test_http_statuses_map_to_codes(void **state) {
  assert_int_equal(grpc_code_of_http(200), GRPC_OK);
  assert_int_equal(grpc_code_of_http(400), GRPC_INVALID_ARGUMENT);
  assert_int_equal(grpc_code_of_http(401), GRPC_UNAUTHENTICATED);
  assert_int_equal(grpc_code_of_http(403), GRPC_PERMISSION_DENIED);
  assert_int_equal(grpc_code_of_http(404), GRPC_NOT_FOUND);
  assert_int_equal(grpc_code_of_http(409), GRPC_FAILED_PRECONDITION);
  assert_int_equal(grpc_code_of_http(429), GRPC_RESOURCE_EXHAUSTED);
  assert_int_equal(grpc_code_of_http(503), GRPC_UNAVAILABLE);
  assert_int_equal(grpc_code_of_http(500), GRPC_INTERNAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_message_is_framed_exactly),
      cmocka_unit_test(test_header_is_big_endian),
      cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_messages_are_percent_encoded),
      cmocka_unit_test(test_http_statuses_map_to_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
