/* Invite token tests: the token, the join request a seed checks, expiry enforced by the cluster, keyring
 * transfer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/invite.h"
#include "cluster/keyring.h"

#define NOW 1800000000LL

static const char *const seeds2[] = {"10.0.0.2:7946", "[fd00::3]:7946"};

static void mem_keyring(struct keyring *kr) {
  memset(kr, 0, sizeof *kr);
  keyring_generate(kr->keys[0]);
  kr->nkeys = 1;
  randombytes_buf(kr->cluster_id, sizeof kr->cluster_id);
}

static void make_invite(const struct keyring *kr, int64_t expiry, struct invite *inv) {
  char tok[INVITE_TOKEN_MAX + 1], err[256];
  assert_true(invite_create(kr, seeds2, 2, expiry, tok, sizeof tok) > 0);
  assert_int_equal(invite_parse(tok, inv, err, sizeof err), 0);
}

/* token_of wraps arbitrary JSON as a token ("imt1." + base64url). */
static void token_of(const char *json, char *out, size_t cap) {
  memcpy(out, "imt1.", 5);
  sodium_bin2base64(out + 5, cap - 5, (const uint8_t *)json, strlen(json),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* decode_token puts a token's JSON into out. */
static void decode_token(const char *tok, char *out, size_t cap) {
  size_t n = 0;
  assert_int_equal(sodium_base642bin((uint8_t *)out, cap - 1, tok + 5, strlen(tok + 5), NULL, &n, NULL,
                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                   0);
  out[n] = 0;
}

static void test_token_roundtrip(void **state) {
  struct keyring kr;
  struct invite inv;
  char tok[INVITE_TOKEN_MAX + 1], err[256], json[2048], hex[65], idhex[33], padded[INVITE_TOKEN_MAX + 16];
  mem_keyring(&kr);
  int n = invite_create(&kr, seeds2, 2, NOW + 3600, tok, sizeof tok);
  assert_int_equal(n, (int)strlen(tok));
  assert_memory_equal(tok, "imt1.", 5);
  assert_null(strchr(tok, '=')); /* no padding */
  assert_int_equal(invite_parse(tok, &inv, err, sizeof err), 0);
  assert_memory_equal(inv.cluster_id, kr.cluster_id, sizeof kr.cluster_id);
  assert_int_equal(inv.nseeds, 2);
  assert_string_equal(inv.seeds[0], "10.0.0.2:7946");
  assert_string_equal(inv.seeds[1], "[fd00::3]:7946");
  assert_int_equal(inv.expiry, NOW + 3600);
  assert_false(invite_expired(&inv, NOW));
  assert_true(invite_expired(&inv, NOW + 3600));
  /* The token carries neither the cluster key nor anything that equals it. */
  decode_token(tok, json, sizeof json);
  keyring_key_hex(kr.keys[0], hex);
  assert_null(strstr(json, hex));
  assert_null(strstr(tok, hex));
  assert_memory_not_equal(inv.secret, kr.keys[0], 32);
  keyring_id_hex(kr.cluster_id, idhex);
  assert_non_null(strstr(json, idhex));
  /* Two tokens differ (token id, secret) even with the same inputs. */
  struct invite inv2;
  char tok2[INVITE_TOKEN_MAX + 1];
  assert_true(invite_create(&kr, seeds2, 2, NOW + 3600, tok2, sizeof tok2) > 0);
  assert_string_not_equal(tok, tok2);
  assert_int_equal(invite_parse(tok2, &inv2, err, sizeof err), 0);
  assert_memory_not_equal(inv.token_id, inv2.token_id, INVITE_ID_LEN);
  assert_memory_not_equal(inv.secret, inv2.secret, INVITE_SECRET_LEN);
  /* Pasted with whitespace around it. */
  snprintf(padded, sizeof padded, "  %s\r\n", tok);
  assert_int_equal(invite_parse(padded, &inv2, err, sizeof err), 0);
  /* Eight seeds of the longest allowed length fit. */
  char longseed[8][INVITE_ADDR_MAX];
  const char *eight[8];
  for (int i = 0; i < 8; i++) {
    memset(longseed[i], 'a' + i, INVITE_ADDR_MAX - 7);
    snprintf(longseed[i] + INVITE_ADDR_MAX - 7, 7, ":65535");
    assert_int_equal(strlen(longseed[i]), INVITE_ADDR_MAX - 1);
    eight[i] = longseed[i];
  }
  n = invite_create(&kr, eight, 8, 0, tok, sizeof tok);
  assert_true(n > 0 && n <= INVITE_TOKEN_MAX);
  assert_int_equal(invite_parse(tok, &inv, err, sizeof err), 0);
  assert_int_equal(inv.nseeds, 8);
  assert_string_equal(inv.seeds[7], longseed[7]);
  assert_int_equal(inv.expiry, 0);
  assert_false(invite_expired(&inv, INT64_MAX));
}

static void test_create_rejects(void **state) {
  struct keyring kr, empty = {.nkeys = 0};
  char tok[INVITE_TOKEN_MAX + 1];
  const char *bad[] = {"10.0.0.2"};
  const char *nine[9];
  mem_keyring(&kr);
  for (int i = 0; i < 9; i++)
    nine[i] = "10.0.0.1:1";
  assert_int_equal(invite_create(&kr, seeds2, 0, 0, tok, sizeof tok), -EINVAL);
  assert_int_equal(invite_create(&kr, nine, 9, 0, tok, sizeof tok), -EINVAL);
  assert_int_equal(invite_create(&kr, bad, 1, 0, tok, sizeof tok), -EINVAL);
  assert_int_equal(invite_create(&kr, seeds2, 2, -1, tok, sizeof tok), -EINVAL);
  assert_int_equal(invite_create(&empty, seeds2, 2, 0, tok, sizeof tok), -EINVAL);
  assert_int_equal(invite_create(&kr, seeds2, 2, 0, tok, 40), -ENOSPC);
}

static void test_valid_seeds(void **state) {
  const char *good[] = {"10.0.0.2:7946", "node-1.example.com:1", "localhost:65535",
                        "[::1]:7946",    "[fe80::1%eth0]:7946",  "gpu_a:80"};
  const char *bad[] = {"",
                       "10.0.0.2",
                       ":7946",
                       "10.0.0.2:",
                       "10.0.0.2:0",
                       "10.0.0.2:65536",
                       "10.0.0.2:123456",
                       "10.0.0.2:79a6",
                       "a b:1",
                       "a\"b:1",
                       "a\\b:1",
                       "[::1]7946",
                       "[]:1",
                       "[::1:1",
                       "::1:7946",
                       "host:-1",
                       "http://h:1",
                       "h:1/x",
                       "é:1"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!invite_valid_seed(good[i])) fail_msg("'%s' should be a valid seed", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (invite_valid_seed(bad[i])) fail_msg("'%s' should not be a valid seed", bad[i]);
  char toolong[INVITE_ADDR_MAX + 8];
  memset(toolong, 'a', sizeof toolong);
  memcpy(toolong + INVITE_ADDR_MAX - 5, ":7946", 6);
  assert_int_equal(strlen(toolong), INVITE_ADDR_MAX);
  assert_false(invite_valid_seed(toolong));
  assert_false(invite_valid_seed(NULL));
}

/* The whole join: token -> request -> seed check -> sealed keyring -> joiner's keyring. */
static void test_join_roundtrip(void **state) {
  struct keyring kr, got;
  struct invite inv;
  uint8_t pk[32], pk_out[32], secret[INVITE_SECRET_LEN], req[INVITE_REQ_LEN + 8],
      box[INVITE_KEYRING_SEALED_MAX];
  mem_keyring(&kr);
  uint8_t k2[KEYRING_KEY_LEN];
  keyring_generate(k2);
  assert_int_equal(keyring_install(&kr, k2), 0);
  kr.dropped = 9;
  make_invite(&kr, NOW + 60, &inv);
  randombytes_buf(pk, sizeof pk);
  assert_int_equal(invite_join_request(&inv, pk, req, INVITE_REQ_LEN - 1), -ENOSPC);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  uint8_t *exact = malloc(INVITE_REQ_LEN);
  memcpy(exact, req, INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, exact, INVITE_REQ_LEN, NOW, pk_out, secret), 0);
  assert_memory_equal(pk_out, pk, 32);
  assert_memory_equal(secret, inv.secret, INVITE_SECRET_LEN);
  free(exact);
  /* Two requests for the same token differ (fresh nonce) and both pass. */
  uint8_t req2[INVITE_REQ_LEN];
  assert_int_equal(invite_join_request(&inv, pk, req2, sizeof req2), INVITE_REQ_LEN);
  assert_memory_not_equal(req, req2, INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, req2, INVITE_REQ_LEN, NOW, pk_out, secret), 0);

  assert_int_equal(invite_seal_keyring(&kr, secret, box, 10), -ENOSPC);
  int n = invite_seal_keyring(&kr, secret, box, sizeof box);
  assert_int_equal(n, KEYRING_OVERHEAD + 1 + KEYRING_ID_LEN + 2 * KEYRING_KEY_LEN);
  /* The key is not visible in what travels. */
  assert_null(memmem(box, (size_t)n, kr.keys[0], KEYRING_KEY_LEN));
  memset(&got, 0xAA, sizeof got);
  uint8_t *xb = malloc((size_t)n);
  memcpy(xb, box, (size_t)n);
  assert_int_equal(invite_open_keyring(&inv, xb, (size_t)n, &got), 0);
  free(xb);
  assert_int_equal(got.nkeys, 2);
  assert_memory_equal(got.keys[0], kr.keys[0], KEYRING_KEY_LEN);
  assert_memory_equal(got.keys[1], k2, KEYRING_KEY_LEN);
  assert_memory_equal(got.cluster_id, kr.cluster_id, KEYRING_ID_LEN);
  assert_int_equal(got.dropped, 0);
  /* The received keyring works: packets sealed by the cluster open on the joiner. */
  uint8_t pkt[64], out[64];
  ssize_t pl = keyring_seal(&kr, (const uint8_t *)"welcome", 7, pkt, sizeof pkt);
  assert_int_equal(keyring_open(&got, pkt, (size_t)pl, out, sizeof out), 7);
}

static void test_expired_token(void **state) {
  struct keyring kr;
  struct invite inv;
  uint8_t pk[32] = {1}, pk_out[32] = {0}, secret[32] = {0}, req[INVITE_REQ_LEN];
  mem_keyring(&kr);
  make_invite(&kr, NOW, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW - 1, pk_out, secret), 0);
  memset(pk_out, 0, sizeof pk_out);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW, pk_out, secret), -ETIMEDOUT);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW + 86400, pk_out, secret), -ETIMEDOUT);
  uint8_t zero[32] = {0};
  assert_memory_equal(pk_out, zero, 32); /* nothing handed out */
  /* A token without expiry is valid whenever. */
  make_invite(&kr, 0, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, INT64_MAX, pk_out, secret), 0);
}

/* A joiner who edits the expiry in the token gets refused: the secret is bound to it. */
static void test_extended_expiry_refused(void **state) {
  struct keyring kr;
  struct invite inv;
  char tok[INVITE_TOKEN_MAX + 1], json[2048], forged_json[2048], forged[INVITE_TOKEN_MAX + 1], err[256], *e;
  uint8_t pk[32] = {2}, pk_out[32], secret[32], req[INVITE_REQ_LEN];
  mem_keyring(&kr);
  assert_true(invite_create(&kr, seeds2, 1, NOW, tok, sizeof tok) > 0);
  decode_token(tok, json, sizeof json);
  e = strstr(json, "\"e\":");
  assert_non_null(e);
  snprintf(forged_json, sizeof forged_json, "%.*s\"e\":0%s", (int)(e - json), json, strchr(e, ','));
  token_of(forged_json, forged, sizeof forged);
  assert_int_equal(invite_parse(forged, &inv, err, sizeof err), 0);
  assert_int_equal(inv.expiry, 0);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW + 10, pk_out, secret), -EACCES);
  /* Editing it in the request instead breaks the MAC. */
  assert_int_equal(invite_parse(tok, &inv, err, sizeof err), 0);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  memset(req + 1 + INVITE_ID_LEN, 0, 8);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW + 10, pk_out, secret), -EACCES);
}

static void test_other_cluster_refused(void **state) {
  struct keyring a, b;
  struct invite inv;
  uint8_t pk[32] = {3}, pk_out[32], secret[32], req[INVITE_REQ_LEN];
  mem_keyring(&a);
  mem_keyring(&b);
  make_invite(&b, NOW + 60, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&a, req, sizeof req, NOW, pk_out, secret), -EACCES);
  /* Same key, another cluster id (a re-init that reused a key): refused too. */
  struct keyring c = a;
  randombytes_buf(c.cluster_id, sizeof c.cluster_id);
  make_invite(&c, NOW + 60, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&a, req, sizeof req, NOW, pk_out, secret), -EACCES);
  /* Even an expired token of another cluster says "not ours", not "expired". */
  make_invite(&b, NOW - 10, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&a, req, sizeof req, NOW, pk_out, secret), -EACCES);
}

static void test_tampered_request(void **state) {
  struct keyring kr;
  struct invite inv;
  uint8_t pk[32] = {4}, pk_out[32], secret[32], req[INVITE_REQ_LEN + 1];
  mem_keyring(&kr);
  make_invite(&kr, NOW + 60, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  for (size_t bit = 0; bit < INVITE_REQ_LEN * 8; bit++) {
    req[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (invite_check_request(&kr, req, INVITE_REQ_LEN, NOW, pk_out, secret) != -EACCES)
      fail_msg("flipping bit %zu was not detected", bit);
    req[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  assert_int_equal(invite_check_request(&kr, req, INVITE_REQ_LEN, NOW, pk_out, secret), 0);
  /* Wrong lengths, exact allocations so ASan sees overreads. */
  for (size_t n = 0; n <= INVITE_REQ_LEN + 1; n++) {
    if (n == INVITE_REQ_LEN) continue;
    uint8_t *x = malloc(n ? n : 1);
    memcpy(x, req, n <= INVITE_REQ_LEN ? n : INVITE_REQ_LEN);
    if (n > INVITE_REQ_LEN) x[INVITE_REQ_LEN] = 0;
    assert_int_equal(invite_check_request(&kr, x, n, NOW, pk_out, secret), -EACCES);
    free(x);
  }
  assert_int_equal(invite_check_request(&kr, NULL, 0, NOW, pk_out, secret), -EACCES);
  /* Someone who knows the token id and expiry but not the secret cannot forge a request. */
  struct invite guess = inv;
  randombytes_buf(guess.secret, sizeof guess.secret);
  assert_int_equal(invite_join_request(&guess, pk, req, sizeof req), INVITE_REQ_LEN);
  assert_int_equal(invite_check_request(&kr, req, INVITE_REQ_LEN, NOW, pk_out, secret), -EACCES);
}

static void test_tokens_follow_rotation(void **state) {
  struct keyring kr;
  struct invite inv;
  uint8_t pk[32] = {5}, pk_out[32], secret[32], req[INVITE_REQ_LEN], old[KEYRING_KEY_LEN],
          k2[KEYRING_KEY_LEN];
  mem_keyring(&kr);
  memcpy(old, kr.keys[0], sizeof old);
  make_invite(&kr, NOW + 60, &inv);
  assert_int_equal(invite_join_request(&inv, pk, req, sizeof req), INVITE_REQ_LEN);
  keyring_generate(k2);
  assert_int_equal(keyring_install(&kr, k2), 0);
  assert_int_equal(keyring_use(&kr, k2), 0);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW, pk_out, secret),
                   0); /* old key installed */
  assert_int_equal(keyring_remove(&kr, old), 0);
  assert_int_equal(invite_check_request(&kr, req, sizeof req, NOW, pk_out, secret), -EACCES); /* revoked */
}

static void test_keyring_transfer_tampered(void **state) {
  struct keyring kr, got, other;
  struct invite inv, inv2;
  uint8_t box[INVITE_KEYRING_SEALED_MAX + 1];
  mem_keyring(&kr);
  make_invite(&kr, NOW + 60, &inv);
  make_invite(&kr, NOW + 60, &inv2);
  int n = invite_seal_keyring(&kr, inv.secret, box, sizeof box);
  assert_true(n > 0);
  got.nkeys = 77;
  for (int bit = 0; bit < n * 8; bit++) {
    box[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (invite_open_keyring(&inv, box, (size_t)n, &got) != -EBADMSG) fail_msg("bit %d flip accepted", bit);
    box[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  assert_int_equal(got.nkeys, 77); /* untouched on failure */
  for (int len = 0; len < n; len++)
    assert_int_equal(invite_open_keyring(&inv, box, (size_t)len, &got), -EBADMSG);
  box[n] = 0;
  assert_int_equal(invite_open_keyring(&inv, box, (size_t)n + 1, &got), -EBADMSG);
  assert_int_equal(invite_open_keyring(&inv, NULL, 0, &got), -EBADMSG);
  /* Another token's secret cannot open it. */
  assert_int_equal(invite_open_keyring(&inv2, box, (size_t)n, &got), -EBADMSG);
  assert_int_equal(invite_open_keyring(&inv, box, (size_t)n, &got), 0);
  /* A seed of another cluster that somehow shares the secret hands out a keyring the token did not ask for.
   */
  mem_keyring(&other);
  n = invite_seal_keyring(&other, inv.secret, box, sizeof box);
  assert_int_equal(invite_open_keyring(&inv, box, (size_t)n, &got), -EACCES);
  struct keyring none = {.nkeys = 0};
  assert_int_equal(invite_seal_keyring(&none, inv.secret, box, sizeof box), -EINVAL);
  /* A full ring fits INVITE_KEYRING_SEALED_MAX exactly. */
  for (int i = 1; i < KEYRING_MAX; i++) {
    uint8_t k[KEYRING_KEY_LEN];
    keyring_generate(k);
    assert_int_equal(keyring_install(&kr, k), 0);
  }
  assert_int_equal(invite_seal_keyring(&kr, inv.secret, box, INVITE_KEYRING_SEALED_MAX),
                   INVITE_KEYRING_SEALED_MAX);
  assert_int_equal(invite_open_keyring(&inv, box, INVITE_KEYRING_SEALED_MAX, &got), 0);
  assert_int_equal(got.nkeys, KEYRING_MAX);
}

static void expect_parse_error(const char *tok, const char *want) {
  struct invite inv;
  char err[256] = "";
  inv.nseeds = 42;
  int rc = invite_parse(tok, &inv, err, sizeof err);
  if (rc != -EINVAL) fail_msg("token '%.60s' parsed (rc %d)", tok ? tok : "(null)", rc);
  if (!strstr(err, want)) fail_msg("token '%.60s': error '%s' does not say '%s'", tok ? tok : "", err, want);
  assert_int_equal(inv.nseeds, 42); /* untouched */
}

static void test_parse_errors(void **state) {
  struct keyring kr;
  char tok[INVITE_TOKEN_MAX + 1], t[4096], json[2048], idhex[33];
  mem_keyring(&kr);
  keyring_id_hex(kr.cluster_id, idhex);
  assert_true(invite_create(&kr, seeds2, 2, NOW, tok, sizeof tok) > 0);
  expect_parse_error(NULL, "not an infermesh invite token");
  expect_parse_error("", "not an infermesh invite token");
  expect_parse_error("   \n", "not an infermesh invite token");
  expect_parse_error("hello", "not an infermesh invite token");
  expect_parse_error("10.0.0.2:7946", "not an infermesh invite token");
  expect_parse_error("IMT1.abc", "not an infermesh invite token");
  expect_parse_error("imt2.eyJ9", "version 2 is not supported");
  expect_parse_error("imt10.eyJ9", "version 10 is not supported");
  expect_parse_error("imt1.", "truncated");
  /* Every truncation of a real token is refused, most as "truncated". */
  size_t len = strlen(tok);
  int truncated = 0;
  for (size_t cut = 5; cut < len; cut++) {
    struct invite inv;
    char err[256];
    snprintf(t, sizeof t, "%.*s", (int)cut, tok);
    assert_int_equal(invite_parse(t, &inv, err, sizeof err), -EINVAL);
    if (strstr(err, "truncated")) truncated++;
  }
  assert_true(truncated > (int)(len - 5) * 9 / 10);
  snprintf(t, sizeof t, "%.20s!%s", tok, tok + 21);
  expect_parse_error(t, "damaged");
  snprintf(t, sizeof t, "%s=", tok);
  expect_parse_error(t, "damaged");
  snprintf(t, sizeof t, "%.20s %s", tok, tok + 20);
  expect_parse_error(t, "damaged");
  memset(t, 'A', sizeof t - 1);
  memcpy(t, "imt1.", 5);
  t[sizeof t - 1] = 0;
  expect_parse_error(t, "too long");

  static const char *const k64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  static const char *const t32 = "ffeeddccbbaa99887766554433221100";
  struct {
    const char *json;
    const char *want;
  } cases[] = {
      {"not json", "damaged"},
      {"[1,2]", "its fields"},
      {"{}", "its fields"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":0}", "its fields"}, /* no secret */
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":0,\"k\":\"%s\",\"x\":1}", "its fields"}, /* extra */
      {"{\"c\":\"%.30s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":0,\"k\":\"%s\"}", "cluster id"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%.31sz\",\"e\":0,\"k\":\"%s\"}", "token id"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":0,\"k\":\"%.62s\"}", "join secret"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":-5,\"k\":\"%s\"}", "expiry"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":1.5,\"k\":\"%s\"}", "expiry"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":\"0\",\"k\":\"%s\"}", "expiry"},
      {"{\"c\":\"%s\",\"s\":[],\"t\":\"%s\",\"e\":0,\"k\":\"%s\"}", "seed list"},
      {"{\"c\":\"%s\",\"s\":\"a:1\",\"t\":\"%s\",\"e\":0,\"k\":\"%s\"}", "seed list"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\",\"a:1\",\"a:1\",\"a:1\",\"a:1\",\"a:1\",\"a:1\",\"a:1\",\"a:1\"],\"t\":"
       "\"%s\","
       "\"e\":0,\"k\":\"%s\"}",
       "seed list"},
      {"{\"c\":\"%s\",\"s\":[\"no-port\"],\"t\":\"%s\",\"e\":0,\"k\":\"%s\"}", "seed address"},
      {"{\"c\":\"%s\",\"s\":[1],\"t\":\"%s\",\"e\":0,\"k\":\"%s\"}", "seed address"},
      {"{\"c\":\"%s\",\"s\":[\"a:1\"],\"t\":\"%s\",\"e\":0,\"e\":1,\"k\":\"%s\"}",
       "damaged"}, /* duplicate key */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(json, sizeof json, cases[i].json, idhex, t32, k64);
    token_of(json, t, sizeof t);
    expect_parse_error(t, cases[i].want);
  }
  /* The same shape with good values parses (so the cases above fail for the reason they test). */
  struct invite inv;
  char err[256];
  snprintf(json, sizeof json, "{\"s\":[\"a:1\"],\"k\":\"%s\",\"c\":\"%s\",\"e\":0,\"t\":\"%s\"}", k64, idhex,
           t32);
  token_of(json, t, sizeof t);
  assert_int_equal(invite_parse(t, &inv, err, sizeof err), 0);
  assert_string_equal(inv.seeds[0], "a:1");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_token_roundtrip),
      cmocka_unit_test(test_create_rejects),
      cmocka_unit_test(test_valid_seeds),
      cmocka_unit_test(test_join_roundtrip),
      cmocka_unit_test(test_expired_token),
      cmocka_unit_test(test_extended_expiry_refused),
      cmocka_unit_test(test_other_cluster_refused),
      cmocka_unit_test(test_tampered_request),
      cmocka_unit_test(test_tokens_follow_rotation),
      cmocka_unit_test(test_keyring_transfer_tampered),
      cmocka_unit_test(test_parse_errors),
  };
  if (sodium_init() < 0) return 1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
