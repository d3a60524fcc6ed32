/* Agent-to-agent hop signatures (route/hop.c) and the replay memory behind them (route/hop_seen.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "route/hop_seen.h"
#include "route/router.h"

static struct keyring ring(uint8_t fill) {
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], fill, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  return kr;
}

static int verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now,
                  const char *hop, const char *rid, const char *target) {
  return router_hop_verify(kr, seen, purpose, now, slice_cstr(hop), slice_cstr(rid), slice_cstr(target));
}

static void test_sign_verify_once(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX];
  router_hop_sign(&kr, HOP_INFER, 1700000000, 0xabcdef, "req-1", "engine-a", hop, sizeof hop);
  assert_int_equal(strlen(hop), 3 + 10 + 1 + 16 + 1 + 64);
  assert_memory_equal(hop, "v2.1700000000.0000000000abcdef.", 31);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000010, hop, "req-1", "engine-a"), 0);
  /* the same header again is a replay, however soon or late within the window */
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000011, hop, "req-1", "engine-a"), -EALREADY);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000060, hop, "req-1", "engine-a"), -EALREADY);
  /* past the window the timestamp refuses it */
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000061, hop, "req-1", "engine-a"), -ETIMEDOUT);
  /* same request and target, another nonce: another signature */
  router_hop_sign(&kr, HOP_INFER, 1700000000, 0xabcdf0, "req-1", "engine-a", hop, sizeof hop);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000001, hop, "req-1", "engine-a"), 0);
  hop_seen_free(&seen);
}

static void test_refusals(void **state) {
  (void)state;
  struct keyring kr = ring(7), other = ring(8);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX], bad[HOP_HEADER_MAX];
  router_hop_sign(&kr, HOP_CTL, 1000, 1, "r", "drain:a", hop, sizeof hop);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1000, hop, "r", "drain:a"), -EACCES);  /* another purpose */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", "drain:b"), -EACCES);    /* another target */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r2", "drain:a"), -EACCES);   /* another request */
  assert_int_equal(verify(&other, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), -EACCES); /* another cluster */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000 - HOP_MAX_SKEW_S - 1, hop, "r", "drain:a"), -ETIMEDOUT);
  /* a tampered nonce or timestamp breaks the tag */
  memcpy(bad, hop, sizeof hop);
  bad[strlen("v2.1000.") + 3] = 'f';
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, bad, "r", "drain:a"), -EACCES);
  memcpy(bad, hop, sizeof hop);
  bad[3] = '2';
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 2000, bad, "r", "drain:a"), -EACCES);
  /* malformed headers: old version, truncated, no nonce, non-hex */
  const char *junk[] = {
      "",
      "v2.",
      "v1.1000."
      "0000000000000000000000000000000000000000000000000000000000000000",
      "v2.1000.0000000000000000000000000000000000000000000000000000000000000000",
      "v2.x.0000000000000001.0000000000000000000000000000000000000000000000000000000000000000",
      "v2.1000.000000000000000g.0000000000000000000000000000000000000000000000000000000000000000",
      "v2.1000.0000000000000001.000000000000000000000000000000000000000000000000000000000000000z",
      "v2.99999999999999999999.0000000000000001."
      "0000000000000000000000000000000000000000000000000000000000000000"};
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
    assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, junk[i], "r", "drain:a"), -EACCES);
  /* none of the refusals used up the real one */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), 0);
  assert_int_equal(verify(NULL, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), -EACCES);
  hop_seen_free(&seen);
}

static void test_too_long_is_never_signed(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX], target[600];
  memset(target, 't', sizeof target - 1);
  target[sizeof target - 1] = '\0';
  router_hop_sign(&kr, HOP_CTL, 1000, 1, "r", target, hop, sizeof hop);
  assert_string_equal(hop, "");
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", target), -EACCES);
  router_hop_sign(&kr, HOP_CTL, 1000, 1, "r", "t", hop, 60); /* too small for the tag: nothing, not a cut tag */
  assert_string_equal(hop, "");
  target[400] = '\0'; /* still fits */
  router_hop_sign(&kr, HOP_CTL, 1000, 1, "r", target, hop, sizeof hop);
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", target), 0);
  hop_seen_free(&seen);
}

static void test_rotated_key_verifies(void **state) {
  (void)state;
  struct keyring old = ring(1), both = ring(2);
  memset(both.keys[1], 1, KEYRING_KEY_LEN);
  both.nkeys = 2;
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX];
  router_hop_sign(&old, HOP_INFER, 50, 9, "r", "t", hop, sizeof hop);
  assert_int_equal(verify(&both, &seen, HOP_INFER, 50, hop, "r", "t"), 0);
  hop_seen_free(&seen);
}

static void test_seen_grows_and_forgets(void **state) {
  (void)state;
  struct hop_seen s = {0};
  /* 10000 keys live at once: all remembered across the table's growth */
  for (uint64_t k = 1; k <= 10000; k++)
    assert_int_equal(hop_seen_add(&s, k * 0x9e3779b97f4a7c15ull, 100, 0), 0);
  for (uint64_t k = 1; k <= 10000; k++)
    assert_int_equal(hop_seen_add(&s, k * 0x9e3779b97f4a7c15ull, 100, 50), -EALREADY);
  assert_true(s.cap >= 20000);
  /* once expired, they are dropped at the next rebuild and the table shrinks back */
  size_t big = s.cap;
  for (uint64_t k = 1; k <= 3 * big; k++)
    assert_int_equal(hop_seen_add(&s, k * 0xc2b2ae3d27d4eb4full, 300 + (int64_t)k, 200 + (int64_t)k), 0);
  assert_true(s.n <= big);
  /* key 0 is a key like any other */
  assert_int_equal(hop_seen_add(&s, 0, 1000, 999), 0);
  assert_int_equal(hop_seen_add(&s, 0, 1000, 999), -EALREADY);
  hop_seen_free(&s);
  assert_int_equal(s.cap, 0);
}

static void test_seen_full(void **state) {
  (void)state;
  struct hop_seen s = {.max_slots = 1024};
  int rc = 0;
  uint64_t k = 1;
  for (; k < 2000 && (rc = hop_seen_add(&s, k, 100, 0)) == 0; k++) {
  }
  assert_int_equal(rc, -ENOSPC);
  assert_true(k >= 400 && k <= 513); /* at most half full */
  assert_int_equal(hop_seen_add(&s, 4000, 100, 50), -ENOSPC); /* nothing expired yet */
  /* time passes, the keys expire: room again */
  assert_int_equal(hop_seen_add(&s, 5000, 300, 200), 0);
  assert_true(s.n == 1);
  hop_seen_free(&s);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sign_verify_once),         cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_too_long_is_never_signed), cmocka_unit_test(test_rotated_key_verifies),
      cmocka_unit_test(test_seen_grows_and_forgets),   cmocka_unit_test(test_seen_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
