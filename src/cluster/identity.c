/* Node identity: ed25519 key pair from a seed file in the data dir. */
#include "cluster/identity.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/datadir.h"

_Static_assert(IDENTITY_PK_LEN == crypto_sign_PUBLICKEYBYTES, "ed25519 public key size");
_Static_assert(IDENTITY_SK_LEN == crypto_sign_SECRETKEYBYTES, "ed25519 secret key size");
_Static_assert(crypto_sign_SEEDBYTES == 32, "ed25519 seed size");

void identity_hex(const uint8_t pk[IDENTITY_PK_LEN], char out[65]) {
  sodium_bin2hex(out, 65, pk, IDENTITY_PK_LEN);
}

void identity_short(const uint8_t pk[IDENTITY_PK_LEN], char out[13]) {
  char full[65];
  identity_hex(pk, full);
  memcpy(out, full, 12);
  out[12] = '\0';
}

int identity_parse_hex(const char *s, uint8_t pk[IDENTITY_PK_LEN]) {
  size_t got = 0;
  if (!s || strnlen(s, 65) != 64) return -EINVAL;
  if (sodium_hex2bin(pk, IDENTITY_PK_LEN, s, 64, NULL, &got, NULL) != 0 || got != IDENTITY_PK_LEN)
    return -EINVAL;
  return 0;
}

void identity_wipe(struct identity *id) { sodium_memzero(id, sizeof *id); }

/* read_seed: 0, -ENOENT (no file, no message) or another error with a message. */
static int read_seed(const char *path, uint8_t seed[crypto_sign_SEEDBYTES], char *err, size_t errlen) {
  char text[256];
  size_t len = 0, got = 0;
  int rc = datadir_read_file(path, text, sizeof text, &len, 1, err, errlen);
  if (rc == -EFBIG)
    snprintf(err, errlen, "%s is not a node key (too large): move it away to get a new identity", path);
  if (rc != 0) return rc;
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
    len--;
  if (len != 2 * crypto_sign_SEEDBYTES || memchr(text, '\0', len) ||
      sodium_hex2bin(seed, crypto_sign_SEEDBYTES, text, len, NULL, &got, NULL) != 0 ||
      got != crypto_sign_SEEDBYTES) {
    snprintf(err, errlen,
             "%s is not a node key (64 hex characters expected): the file is damaged; move it away "
             "to get a new identity (members will see a new node)",
             path);
    rc = -EINVAL;
  }
  sodium_memzero(text, sizeof text);
  return rc;
}

static int write_new_seed(const char *data_dir, char *err, size_t errlen) {
  uint8_t seed[crypto_sign_SEEDBYTES];
  char text[2 * crypto_sign_SEEDBYTES + 2];
  randombytes_buf(seed, sizeof seed);
  sodium_bin2hex(text, sizeof text, seed, sizeof seed);
  text[2 * crypto_sign_SEEDBYTES] = '\n';
  int rc =
      datadir_write_private(data_dir, IDENTITY_FILE, text, 2 * crypto_sign_SEEDBYTES + 1, 0, err, errlen);
  sodium_memzero(seed, sizeof seed);
  sodium_memzero(text, sizeof text);
  return rc;
}

int identity_load_or_create(struct identity *id, const char *data_dir, char *err, size_t errlen) {
  char path[4096];
  uint8_t seed[crypto_sign_SEEDBYTES];
  if (errlen) err[0] = '\0';
  if (sodium_init() < 0) abort();
  if (datadir_path(path, sizeof path, data_dir, IDENTITY_FILE) != 0) {
    snprintf(err, errlen, "data dir path is too long: %s", data_dir);
    return -ENAMETOOLONG;
  }
  int rc = read_seed(path, seed, err, errlen);
  if (rc == -ENOENT) {
    rc = datadir_ensure(data_dir, err, errlen);
    if (rc == 0) rc = write_new_seed(data_dir, err, errlen);
    if (rc == 0 || rc == -EEXIST) rc = read_seed(path, seed, err, errlen); /* -EEXIST: another process won */
    if (rc == -ENOENT) snprintf(err, errlen, "%s vanished while it was being created", path);
  }
  if (rc == 0) {
    struct identity tmp;
    crypto_sign_seed_keypair(tmp.pk, tmp.sk, seed);
    *id = tmp;
    sodium_memzero(&tmp, sizeof tmp);
  }
  sodium_memzero(seed, sizeof seed);
  return rc;
}
