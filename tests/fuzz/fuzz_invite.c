/* libFuzzer target for cluster/invite and cluster/keyring: every byte string is fed, as a token, as a join
 * request and as a sealed keyring, to invite_parse, invite_check_request, invite_open_keyring and
 * keyring_open with a fixed keyring. None may crash or read past the input (it is copied to an exact-size
 * allocation); results must obey their contracts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/invite.h"
#include "cluster/keyring.h"
#include "core/err.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000LL

/* The fixed cluster: key 0x42.., secondary 0x43.., id 0x17... The seeds in corpus/fuzz_invite were made with
 * it. */
static void fixed_keyring(struct keyring *kr) {
  memset(kr, 0, sizeof *kr);
  memset(kr->keys[0], 0x42, KEYRING_KEY_LEN);
  memset(kr->keys[1], 0x43, KEYRING_KEY_LEN);
  kr->nkeys = 2;
  memset(kr->cluster_id, 0x17, KEYRING_ID_LEN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct keyring kr;
  fixed_keyring(&kr);

  /* As a token: a NUL-terminated copy. */
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  struct invite inv;
  char err[256];
  memset(&inv, 0, sizeof inv);
  int rc = invite_parse(s, &inv, err, sizeof err);
  CHECK(rc == 0 || rc == -EINVAL);
  if (rc == 0) {
    CHECK(inv.nseeds >= 1 && inv.nseeds <= INVITE_MAX_SEEDS);
    for (int i = 0; i < inv.nseeds; i++)
      CHECK(invite_valid_seed(inv.seeds[i]));
    CHECK(inv.expiry >= 0);
    /* A parsed token makes a request the fixed cluster judges without crashing. */
    uint8_t req[INVITE_REQ_LEN], pk[32] = {0}, pk_out[32], secret[INVITE_SECRET_LEN];
    CHECK(invite_join_request(&inv, pk, req, sizeof req) == INVITE_REQ_LEN);
    int c = invite_check_request(&kr, req, sizeof req, NOW, pk_out, secret);
    CHECK(c == 0 || c == -EACCES || c == -ETIMEDOUT);
  } else {
    CHECK(err[0] != '\0');
  }
  free(s);

  /* The remaining interpretations read an exact-size copy: ASan reports any overread. */
  uint8_t *b = malloc(size ? size : 1);
  memcpy(b, data, size);

  uint8_t pk_out[32], secret[INVITE_SECRET_LEN];
  rc = invite_check_request(&kr, b, size, NOW, pk_out, secret);
  CHECK(rc == 0 || rc == -EACCES || rc == -ETIMEDOUT);
  if (rc == 0) {
    CHECK(size == INVITE_REQ_LEN);
    /* A genuine request gets a keyring that opens with an invite holding the same secret. */
    uint8_t box[INVITE_KEYRING_SEALED_MAX];
    int n = invite_seal_keyring(&kr, secret, box, sizeof box);
    CHECK(n > 0);
    struct invite mine;
    memset(&mine, 0, sizeof mine);
    memcpy(mine.cluster_id, kr.cluster_id, KEYRING_ID_LEN);
    memcpy(mine.secret, secret, INVITE_SECRET_LEN);
    struct keyring got;
    CHECK(invite_open_keyring(&mine, box, (size_t)n, &got) == 0);
    CHECK(got.nkeys == kr.nkeys && memcmp(got.keys, kr.keys, sizeof kr.keys[0] * (size_t)kr.nkeys) == 0);
  }

  /* As a sealed keyring for an invite of the fixed cluster (secret 0x55..). */
  struct invite fixed_inv;
  memset(&fixed_inv, 0, sizeof fixed_inv);
  memcpy(fixed_inv.cluster_id, kr.cluster_id, KEYRING_ID_LEN);
  memset(fixed_inv.secret, 0x55, INVITE_SECRET_LEN);
  struct keyring got;
  got.nkeys = -1;
  rc = invite_open_keyring(&fixed_inv, b, size, &got);
  CHECK(rc == 0 || rc == -EBADMSG || rc == -EACCES);
  if (rc == 0)
    CHECK(got.nkeys >= 1 && got.nkeys <= KEYRING_MAX);
  else
    CHECK(got.nkeys == -1);

  /* As a gossip packet, into an output buffer exactly as large as the plaintext can be. */
  size_t cap = size > KEYRING_OVERHEAD ? size - KEYRING_OVERHEAD : 0;
  uint8_t *out = malloc(cap ? cap : 1);
  uint64_t before = kr.dropped;
  ssize_t n = keyring_open(&kr, b, size, out, cap);
  if (n >= 0) {
    CHECK((size_t)n == cap);
    CHECK(kr.dropped == before);
  } else {
    CHECK(n == -EBADMSG);
    CHECK(kr.dropped == before + 1);
  }
  free(out);

  /* As a request with an authentication tag in its last 32 bytes. */
  if (size >= KEYRING_AUTH_LEN)
    (void)keyring_auth_verify(&kr, b, size - KEYRING_AUTH_LEN, b + size - KEYRING_AUTH_LEN);
  free(b);
  return 0;
}
