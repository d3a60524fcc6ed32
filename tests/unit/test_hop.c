/* Agent-to-agent hop signatures (route/hop.c) and the replay memory behind them (route/hop_seen.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "route/hop.h"
#include "route/hop_seen.h"

static struct keyring ring(uint8_t fill) {
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], fill, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  return kr;
}

static uint8_t NODE_A[HOP_NODE_LEN], NODE_B[HOP_NODE_LEN]; /* all 0xa1, all 0xb2 (main) */
#define CHAT "/v1/chat/completions"
#define BODY "{\"model\":\"m\",\"messages\":[]}"

/* A binding for request id rid and target, to node, of "POST <path>" with body. */
static struct hop_bind bind(const char *rid, const char *target, const uint8_t *node, const char *path,
                            const char *body) {
  struct hop_bind b = {.request_id = slice_cstr(rid), .target = slice_cstr(target), .node = node};
  struct slice s = slice_cstr(body);
  hop_digest("POST", slice_cstr(path), &s, 1, b.digest);
  return b;
}

static void sign(const struct keyring *kr, const char *purpose, int64_t now, uint64_t nonce, const char *rid,
                 const char *target, char *hop, size_t cap) {
  struct hop_bind b = bind(rid, target, NODE_A, CHAT, BODY);
  hop_sign(kr, purpose, now, nonce, &b, hop, cap);
}

/* verify as node A receiving POST /v1/chat/completions with BODY */
static int verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now,
                  const char *hop, const char *rid, const char *target) {
  struct hop_bind b = bind(rid, target, NODE_A, CHAT, BODY);
  return hop_verify(kr, seen, purpose, now, slice_cstr(hop), &b);
}

static int verify_as(const struct keyring *kr, struct hop_seen *seen, const char *hop, const uint8_t *node,
                     const char *path, const char *body) {
  struct hop_bind b = bind("req-1", "engine-a", node, path, body);
  return hop_verify(kr, seen, HOP_INFER, 1700000001, slice_cstr(hop), &b);
}

static void test_sign_verify_once(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX];
  sign(&kr, HOP_INFER, 1700000000, 0xabcdef, "req-1", "engine-a", hop, sizeof hop);
  assert_int_equal(strlen(hop), 3 + 10 + 1 + 16 + 1 + 64);
  /* the wire format, as an independent HMAC (Python's hashlib, see test_mesh.py's hop_header) computes it */
  assert_string_equal(hop, "v3.1700000000.0000000000abcdef."
                           "86e56107a087621eeb0d464aece9d45e9087a9bd0e2aa34c7bb5a9f83ae07820");
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000010, hop, "req-1", "engine-a"), 0);
  /* the same header again is a replay, however soon or late within the window */
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000011, hop, "req-1", "engine-a"), -EALREADY);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000060, hop, "req-1", "engine-a"), -EALREADY);
  /* past the window the timestamp refuses it */
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000061, hop, "req-1", "engine-a"), -ETIMEDOUT);
  /* same request and target, another nonce: another signature */
  sign(&kr, HOP_INFER, 1700000000, 0xabcdf0, "req-1", "engine-a", hop, sizeof hop);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1700000001, hop, "req-1", "engine-a"), 0);
  hop_seen_free(&seen);
}

static void test_digest(void **state) {
  (void)state;
  uint8_t d[HOP_DIGEST_LEN], e[HOP_DIGEST_LEN];
  char hex[2 * HOP_DIGEST_LEN + 1];
  struct slice whole = SLICE_LIT(BODY);
  hop_digest("POST", SLICE_LIT(CHAT), &whole, 1, d);
  sodium_bin2hex(hex, sizeof hex, d, sizeof d); /* BLAKE2b-256("POST /v1/chat/completions\n" BODY) */
  assert_string_equal(hex, "10fc0d1b514c1b9e3944362e9642976ce189b2b3391a4e833106c058e2236094");
  /* the sender hashes the parts it sends (the proxy splices stream_options in), the receiver what arrived */
  struct slice parts[3] = {SLICE_LIT("{\"model\":"), SLICE_LIT(""), SLICE_LIT("\"m\",\"messages\":[]}")};
  hop_digest("POST", SLICE_LIT(CHAT), parts, 3, e);
  assert_memory_equal(d, e, sizeof d);
  /* no body and one empty part are the same request */
  struct slice empty = SLICE_LIT("");
  hop_digest("GET", SLICE_LIT("/v1/cluster/state?after=3"), NULL, 0, d);
  hop_digest("GET", SLICE_LIT("/v1/cluster/state?after=3"), &empty, 1, e);
  assert_memory_equal(d, e, sizeof d);
  /* the split between request target and body is fixed by the newline (which no request target holds) */
  struct slice b1 = SLICE_LIT("x");
  hop_digest("GET", SLICE_LIT("/a"), &b1, 1, d);
  hop_digest("GET", SLICE_LIT("/ax"), NULL, 0, e);
  assert_memory_not_equal(d, e, sizeof d);
}

static void test_receiver_mismatch(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen_a = {0}, seen_b = {0}; /* each node remembers only what it accepted itself */
  char hop[HOP_HEADER_MAX];
  struct hop_bind b = bind("req-1", "engine-a", NODE_A, CHAT, BODY);
  hop_sign(&kr, HOP_INFER, 1700000000, 1, &b, hop, sizeof hop);
  /* captured on the way to A and presented to B (same target name, same body): refused by its tag */
  assert_int_equal(verify_as(&kr, &seen_b, hop, NODE_B, CHAT, BODY), -EACCES);
  assert_int_equal(seen_b.n, 0);
  assert_int_equal(verify_as(&kr, &seen_a, hop, NODE_A, CHAT, BODY), 0);
  assert_int_equal(verify_as(&kr, &seen_b, hop, NODE_B, CHAT, BODY), -EACCES); /* also after A took it */
  /* a receiver that does not know who it is accepts nothing; a sender that does not know signs nothing */
  assert_int_equal(verify_as(&kr, &seen_b, hop, NULL, CHAT, BODY), -EACCES);
  b.node = NULL;
  hop_sign(&kr, HOP_INFER, 1700000000, 2, &b, hop, sizeof hop);
  assert_string_equal(hop, "");
  hop_seen_free(&seen_a);
  hop_seen_free(&seen_b);
}

static void test_body_mismatch(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX];
  struct hop_bind b = bind("req-1", "engine-a", NODE_A, CHAT, BODY);
  hop_sign(&kr, HOP_INFER, 1700000000, 1, &b, hop, sizeof hop);
  /* another prompt, one byte more, none at all, another endpoint: refused, and the real one not used up */
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, CHAT, "{\"model\":\"m\",\"messages\":[1]}"), -EACCES);
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, CHAT, BODY " "), -EACCES);
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, CHAT, ""), -EACCES);
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, "/v1/completions", BODY), -EACCES);
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, CHAT "?x=1", BODY), -EACCES);
  struct hop_bind g = b;
  struct slice body = SLICE_LIT(BODY);
  hop_digest("PUT", SLICE_LIT(CHAT), &body, 1, g.digest); /* another method */
  assert_int_equal(hop_verify(&kr, &seen, HOP_INFER, 1700000001, slice_cstr(hop), &g), -EACCES);
  assert_int_equal(seen.n, 0);
  assert_int_equal(verify_as(&kr, &seen, hop, NODE_A, CHAT, BODY), 0);
  hop_seen_free(&seen);
}

static void test_refusals(void **state) {
  (void)state;
  struct keyring kr = ring(7), other = ring(8);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX], bad[HOP_HEADER_MAX];
  sign(&kr, HOP_CTL, 1000, 1, "r", "drain:a", hop, sizeof hop);
  assert_int_equal(verify(&kr, &seen, HOP_INFER, 1000, hop, "r", "drain:a"), -EACCES);  /* another purpose */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", "drain:b"), -EACCES);    /* another target */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r2", "drain:a"), -EACCES);   /* another request */
  assert_int_equal(verify(&other, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), -EACCES); /* another cluster */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000 - HOP_MAX_SKEW_S - 1, hop, "r", "drain:a"), -ETIMEDOUT);
  /* a tampered nonce or timestamp breaks the tag */
  memcpy(bad, hop, sizeof hop);
  bad[strlen("v3.1000.") + 3] = 'f';
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, bad, "r", "drain:a"), -EACCES);
  memcpy(bad, hop, sizeof hop);
  bad[3] = '2';
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 2000, bad, "r", "drain:a"), -EACCES);
  /* malformed headers: truncated, no nonce, non-hex, another version */
  const char *junk[] = {
      "",
      "v3.",
      "v3",
      "v4.1000.0000000000000001.0000000000000000000000000000000000000000000000000000000000000000",
      "v3.1000.0000000000000000000000000000000000000000000000000000000000000000",
      "v3.x.0000000000000001.0000000000000000000000000000000000000000000000000000000000000000",
      "v3.1000.000000000000000g.0000000000000000000000000000000000000000000000000000000000000000",
      "v3.1000.0000000000000001.000000000000000000000000000000000000000000000000000000000000000z",
      "v3.99999999999999999999.0000000000000001."
      "0000000000000000000000000000000000000000000000000000000000000000"};
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
    assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, junk[i], "r", "drain:a"), -EACCES);
  /* none of the refusals used up the real one */
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), 0);
  assert_int_equal(verify(NULL, &seen, HOP_CTL, 1000, hop, "r", "drain:a"), -EACCES);
  hop_seen_free(&seen);
}

static void test_older_versions_refused(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  /* what a v2 agent sends (well formed, right key): not bound to the receiver or the body, so refused as such
   */
  const char *old[] = {
      "v2.1000.0000000000000001.0000000000000000000000000000000000000000000000000000000000000000",
      "v1.1000.0000000000000000000000000000000000000000000000000000000000000000", "v2.", "v1."};
  for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
    assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, old[i], "r", "drain:a"), -EPROTO);
  assert_non_null(strstr(hop_refusal(-EPROTO), "v3"));
  assert_non_null(strstr(hop_refusal(-EALREADY), "replayed"));
  assert_non_null(strstr(hop_refusal(-ETIMEDOUT), "clock skew"));
  assert_non_null(strstr(hop_refusal(-EACCES), "this node"));
  assert_int_equal(seen.n, 0);
}

static void test_too_long_is_never_signed(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct hop_seen seen = {0};
  char hop[HOP_HEADER_MAX], target[700];
  memset(target, 't', sizeof target - 1);
  target[sizeof target - 1] = '\0';
  sign(&kr, HOP_CTL, 1000, 1, "r", target, hop, sizeof hop);
  assert_string_equal(hop, "");
  assert_int_equal(verify(&kr, &seen, HOP_CTL, 1000, hop, "r", target), -EACCES);
  sign(&kr, HOP_CTL, 1000, 1, "r", "t", hop, 60); /* too small for the tag: nothing, not a cut tag */
  assert_string_equal(hop, "");
  target[500] = '\0'; /* still fits */
  sign(&kr, HOP_CTL, 1000, 1, "r", target, hop, sizeof hop);
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
  sign(&old, HOP_INFER, 50, 9, "r", "t", hop, sizeof hop);
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
  assert_true(k >= 400 && k <= 513);                          /* at most half full */
  assert_int_equal(hop_seen_add(&s, 4000, 100, 50), -ENOSPC); /* nothing expired yet */
  /* time passes, the keys expire: room again */
  assert_int_equal(hop_seen_add(&s, 5000, 300, 200), 0);
  assert_true(s.n == 1);
  hop_seen_free(&s);
}

/* A key pair from a seed of 32 bytes fill. */
static struct identity ident(uint8_t fill) {
  struct identity id;
  uint8_t seed[32];
  memset(seed, fill, sizeof seed);
  crypto_sign_seed_keypair(id.pk, id.sk, seed);
  return id;
}

static void test_node_signature(void **state) {
  (void)state;
  struct keyring kr = ring(7);
  struct identity host = ident(5), other = ident(6);
  char hop[HOP_HEADER_MAX], sig[HOP_NODE_SIG_MAX], other_sig[HOP_NODE_SIG_MAX];
  struct hop_bind b = bind("req-1", "rpc-release:x", NODE_A, CHAT, BODY);
  hop_sign(&kr, HOP_CTL, 1700000000, 0xabcdef, &b, hop, sizeof hop);
  hop_sign_node(&host, HOP_CTL, slice_cstr(hop), &b, sig, sizeof sig);
  /* the wire format, as Python's cryptography (Ed25519, RFC 8032) computes it over "node." and the hop text
   * (test_tunnel_rpc.py's node_sig) */
  assert_string_equal(sig, "ba8d6d873ee887660743d3a0b2362a20449d0595e94da89c8942324f50ed6e5f"
                           "c7ce0fe4cbc529a0c2497c55bed5b871dbfc512d2f848d5fca2159499f39080b");
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr(sig)), 0);
  /* another agent of the cluster signs the same request with its own key: not the host's signature */
  hop_sign_node(&other, HOP_CTL, slice_cstr(hop), &b, other_sig, sizeof other_sig);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr(other_sig)), -EACCES);
  assert_int_equal(hop_verify_node(other.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr(sig)), -EACCES);
  /* the host's signature is bound to the request: another purpose, body, receiver, target or hop header */
  assert_int_equal(hop_verify_node(host.pk, HOP_INFER, slice_cstr(hop), &b, slice_cstr(sig)), -EACCES);
  struct hop_bind b2 = bind("req-1", "rpc-release:x", NODE_A, CHAT, "{\"host\":\"h2\"}");
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b2, slice_cstr(sig)), -EACCES);
  b2 = bind("req-1", "rpc-release:x", NODE_B, CHAT, BODY);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b2, slice_cstr(sig)), -EACCES);
  b2 = bind("req-1", "rpc-lease:x", NODE_A, CHAT, BODY);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b2, slice_cstr(sig)), -EACCES);
  char hop2[HOP_HEADER_MAX];
  hop_sign(&kr, HOP_CTL, 1700000000, 0xabcdf0, &b, hop2, sizeof hop2);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop2), &b, slice_cstr(sig)), -EACCES);
  /* missing or malformed: refused, never read past */
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr("")), -EACCES);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_make(hop, 0), &b, slice_cstr(sig)), -EACCES);
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_make(sig, 127)), -EACCES);
  char bad[HOP_NODE_SIG_MAX];
  memcpy(bad, sig, sizeof bad);
  bad[0] = 'g';
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr(bad)), -EACCES);
  bad[0] = sig[0] == '0' ? '1' : '0'; /* one bit of the signature */
  assert_int_equal(hop_verify_node(host.pk, HOP_CTL, slice_cstr(hop), &b, slice_cstr(bad)), -EACCES);
  /* nothing to sign: an unparsable hop header, no receiver, too small a buffer */
  hop_sign_node(&host, HOP_CTL, slice_cstr("v3.garbage"), &b, bad, sizeof bad);
  assert_string_equal(bad, "");
  hop_sign_node(&host, HOP_CTL, slice_cstr(hop), &b, bad, 128);
  assert_string_equal(bad, "");
  b.node = NULL;
  hop_sign_node(&host, HOP_CTL, slice_cstr(hop), &b, bad, sizeof bad);
  assert_string_equal(bad, "");
}

int main(void) {
  if (sodium_init() < 0) return 1;
  memset(NODE_A, 0xa1, sizeof NODE_A);
  memset(NODE_B, 0xb2, sizeof NODE_B);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sign_verify_once),
      cmocka_unit_test(test_digest),
      cmocka_unit_test(test_receiver_mismatch),
      cmocka_unit_test(test_body_mismatch),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_older_versions_refused),
      cmocka_unit_test(test_too_long_is_never_signed),
      cmocka_unit_test(test_rotated_key_verifies),
      cmocka_unit_test(test_seen_grows_and_forgets),
      cmocka_unit_test(test_seen_full),
      cmocka_unit_test(test_node_signature),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
