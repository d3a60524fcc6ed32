/* Cluster keyring: key files, rotation, packet AEAD and request authentication (libsodium). */
#include "cluster/keyring.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster/datadir.h"

_Static_assert(KEYRING_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "AEAD key size");
_Static_assert(KEYRING_KEY_LEN == crypto_kdf_KEYBYTES, "KDF key size");
_Static_assert(KEYRING_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "AEAD nonce size");
_Static_assert(KEYRING_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "AEAD tag size");
_Static_assert(KEYRING_AUTH_LEN == crypto_auth_BYTES && crypto_auth_KEYBYTES == 32, "auth sizes");

/* Subkey ids and contexts (crypto_kdf): never reuse one for another purpose. */
#define AUTH_SUBKEY_ID 1
#define AUTH_SUBKEY_CTX "im-auth1"
#define FP_CONTEXT "infermesh-key-fingerprint"
#define KEY_FILE_MAX 2048 /* KEYRING_MAX lines of 65 bytes, with room for blank lines and CRLF */

static void init_sodium(void) {
  if (sodium_init() < 0) abort(); /* no usable randomness source: nothing secure can be done */
}

/* hex_exact decodes exactly 2 * n hex characters of s[0, slen) into out. 0 or -EINVAL. */
static int hex_exact(const char *s, size_t slen, uint8_t *out, size_t n) {
  size_t got = 0;
  if (slen != 2 * n) return -EINVAL;
  if (sodium_hex2bin(out, n, s, slen, NULL, &got, NULL) != 0 || got != n) return -EINVAL;
  return 0;
}

/* trim_span narrows [*b, *e) past spaces, tabs and CR on both sides. */
static void trim_span(const char **b, const char **e) {
  while (*b < *e && (**b == ' ' || **b == '\t' || **b == '\r' || **b == '\n'))
    (*b)++;
  while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r' || (*e)[-1] == '\n'))
    (*e)--;
}

void keyring_generate(uint8_t key[KEYRING_KEY_LEN]) {
  init_sodium();
  crypto_aead_xchacha20poly1305_ietf_keygen(key);
}

void keyring_key_hex(const uint8_t key[KEYRING_KEY_LEN], char out[2 * KEYRING_KEY_LEN + 1]) {
  sodium_bin2hex(out, 2 * KEYRING_KEY_LEN + 1, key, KEYRING_KEY_LEN);
}

void keyring_id_hex(const uint8_t id[KEYRING_ID_LEN], char out[2 * KEYRING_ID_LEN + 1]) {
  sodium_bin2hex(out, 2 * KEYRING_ID_LEN + 1, id, KEYRING_ID_LEN);
}

int keyring_parse_key(const char *s, uint8_t key[KEYRING_KEY_LEN]) {
  if (!s) return -EINVAL;
  const char *b = s, *e = s + strnlen(s, 4 * KEYRING_KEY_LEN);
  if (*e) return -EINVAL; /* far too long */
  trim_span(&b, &e);
  return hex_exact(b, (size_t)(e - b), key, KEYRING_KEY_LEN);
}

void keyring_fingerprint(const uint8_t key[KEYRING_KEY_LEN], char out[KEYRING_FP_LEN + 1]) {
  uint8_t h[KEYRING_FP_LEN / 2];
  init_sodium();
  crypto_generichash(h, sizeof h, key, KEYRING_KEY_LEN, (const uint8_t *)FP_CONTEXT, sizeof FP_CONTEXT - 1);
  sodium_bin2hex(out, KEYRING_FP_LEN + 1, h, sizeof h);
}

void keyring_subkey(const uint8_t key[KEYRING_KEY_LEN], uint64_t id, const char ctx[8], uint8_t out[32]) {
  init_sodium();
  crypto_kdf_derive_from_key(out, 32, id, ctx, key);
}

void keyring_wipe(struct keyring *kr) { sodium_memzero(kr, sizeof *kr); }

int keyring_find(const struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]) {
  int found = -1;
  for (int i = 0; i < kr->nkeys && i < KEYRING_MAX; i++)
    if (sodium_memcmp(kr->keys[i], key, KEYRING_KEY_LEN) == 0) found = i;
  return found;
}

/* --- files --- */

/* parse_keys reads cluster.key's text into kr. Blank lines are skipped; anything else must be a key. */
static int parse_keys(struct keyring *kr, const char *text, size_t len, const char *path, char *err,
                      size_t errlen) {
  const char *p = text, *end = text + len;
  int line = 0;
  kr->nkeys = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end, *b = p, *e = le;
    line++;
    p = nl ? nl + 1 : end;
    trim_span(&b, &e);
    if (b == e) continue;
    if (kr->nkeys == KEYRING_MAX) {
      snprintf(err, errlen, "%s holds more than %d keys: remove old ones (infermesh keyring remove KEY)",
               path, KEYRING_MAX);
      return -EINVAL;
    }
    uint8_t *k = kr->keys[kr->nkeys];
    if (hex_exact(b, (size_t)(e - b), k, KEYRING_KEY_LEN) != 0) {
      snprintf(err, errlen, "%s line %d is not a key (64 hex characters expected): the file is damaged", path,
               line);
      return -EINVAL;
    }
    for (int i = 0; i < kr->nkeys; i++)
      if (sodium_memcmp(kr->keys[i], k, KEYRING_KEY_LEN) == 0) {
        snprintf(err, errlen, "%s line %d repeats an earlier key: the file is damaged", path, line);
        return -EINVAL;
      }
    kr->nkeys++;
  }
  if (kr->nkeys == 0) {
    snprintf(err, errlen,
             "%s holds no key: restore it from another member, or run `infermesh init` in an empty "
             "data dir",
             path);
    return -EINVAL;
  }
  return 0;
}

static int read_id(uint8_t id[KEYRING_ID_LEN], const char *dir, char *err, size_t errlen) {
  char path[4096], text[256];
  size_t len;
  if (datadir_path(path, sizeof path, dir, KEYRING_ID_FILE) != 0) {
    snprintf(err, errlen, "data dir path is too long: %s", dir);
    return -ENAMETOOLONG;
  }
  int rc = datadir_read_file(path, text, sizeof text, &len, 0, err, errlen);
  if (rc == -ENOENT)
    snprintf(err, errlen,
             "%s is missing while the cluster key is there: copy it from another member's data dir", path);
  if (rc != 0) return rc;
  const char *b = text, *e = text + len;
  trim_span(&b, &e);
  if (memchr(b, '\0', (size_t)(e - b)) || hex_exact(b, (size_t)(e - b), id, KEYRING_ID_LEN) != 0) {
    snprintf(err, errlen, "%s is not a cluster id (32 hex characters expected): the file is damaged", path);
    return -EINVAL;
  }
  return 0;
}

int keyring_load(struct keyring *kr, const char *data_dir, char *err, size_t errlen) {
  char path[4096], text[KEY_FILE_MAX];
  size_t len = 0;
  struct keyring tmp;
  if (errlen) err[0] = '\0';
  init_sodium();
  if (datadir_path(path, sizeof path, data_dir, KEYRING_KEY_FILE) != 0) {
    snprintf(err, errlen, "data dir path is too long: %s", data_dir);
    return -ENAMETOOLONG;
  }
  memset(&tmp, 0, sizeof tmp);
  int rc = datadir_read_file(path, text, sizeof text, &len, 1, err, errlen);
  if (rc == -ENOENT)
    snprintf(err, errlen, "no cluster key in %s: run `infermesh init` or join with an invite", data_dir);
  else if (rc == -EFBIG)
    snprintf(err, errlen, "%s is too large to be a cluster key file: the file is damaged", path);
  if (rc == 0 && memchr(text, '\0', len)) {
    snprintf(err, errlen, "%s holds binary data, not keys: the file is damaged", path);
    rc = -EINVAL;
  }
  if (rc == 0) rc = parse_keys(&tmp, text, len, path, err, errlen);
  sodium_memzero(text, sizeof text);
  if (rc == 0) rc = read_id(tmp.cluster_id, data_dir, err, errlen);
  if (rc == 0) *kr = tmp;
  sodium_memzero(&tmp, sizeof tmp);
  return rc;
}

int keyring_reload(struct keyring *kr, const char *data_dir, char *err, size_t errlen) {
  struct keyring fresh;
  int rc = keyring_load(&fresh, data_dir, err, errlen);
  if (rc == 0 && sodium_memcmp(fresh.cluster_id, kr->cluster_id, KEYRING_ID_LEN) != 0) {
    char a[2 * KEYRING_ID_LEN + 1], b[2 * KEYRING_ID_LEN + 1];
    keyring_id_hex(kr->cluster_id, a);
    keyring_id_hex(fresh.cluster_id, b);
    snprintf(
        err, errlen,
        "%s now holds the keyring of cluster %s, not of cluster %s this agent is in: restart the agent to "
        "switch clusters",
        data_dir, b, a);
    rc = -EXDEV;
  }
  if (rc == 0) {
    fresh.dropped = kr->dropped;
    *kr = fresh;
  }
  sodium_memzero(&fresh, sizeof fresh);
  return rc;
}

/* write_keys renders kr's key file and writes it (replace or create-only). */
static int write_keys(const struct keyring *kr, const char *dir, int replace, char *err, size_t errlen) {
  char text[KEYRING_MAX * (2 * KEYRING_KEY_LEN + 1) + 1];
  size_t n = 0;
  for (int i = 0; i < kr->nkeys; i++) {
    keyring_key_hex(kr->keys[i], text + n);
    n += 2 * KEYRING_KEY_LEN;
    text[n++] = '\n';
  }
  int rc = datadir_write_private(dir, KEYRING_KEY_FILE, text, n, replace, err, errlen);
  sodium_memzero(text, sizeof text);
  return rc;
}

static int write_id(const struct keyring *kr, const char *dir, char *err, size_t errlen) {
  char text[2 * KEYRING_ID_LEN + 2];
  keyring_id_hex(kr->cluster_id, text);
  text[2 * KEYRING_ID_LEN] = '\n';
  return datadir_write_private(dir, KEYRING_ID_FILE, text, 2 * KEYRING_ID_LEN + 1, 1, err, errlen);
}

int keyring_save(const struct keyring *kr, const char *data_dir, char *err, size_t errlen) {
  if (errlen) err[0] = '\0';
  init_sodium();
  if (kr->nkeys < 1 || kr->nkeys > KEYRING_MAX) {
    snprintf(err, errlen, "refusing to save a keyring with %d keys (1 to %d)", kr->nkeys, KEYRING_MAX);
    return -EINVAL;
  }
  /* The id first: a key file without its id is an error, an id without a key is "not initialized". */
  int rc = datadir_ensure(data_dir, err, errlen);
  if (rc == 0) rc = write_id(kr, data_dir, err, errlen);
  if (rc == 0) rc = write_keys(kr, data_dir, 1, err, errlen);
  return rc;
}

static void exists_msg(const char *data_dir, char *err, size_t errlen) {
  char id[2 * KEYRING_ID_LEN + 1] = "";
  uint8_t raw[KEYRING_ID_LEN];
  char ignored[256];
  if (read_id(raw, data_dir, ignored, sizeof ignored) == 0) keyring_id_hex(raw, id);
  snprintf(
      err, errlen,
      "%s already holds a cluster key%s%s%s: refusing to overwrite it. To run this node in that cluster, "
      "start the agent; to join another cluster, use an invite from it with a fresh --data-dir",
      data_dir, id[0] ? " (cluster " : "", id, id[0] ? ")" : "");
}

int keyring_create(const char *data_dir, char *err, size_t errlen) {
  char path[4096];
  struct stat st;
  struct keyring kr;
  if (errlen) err[0] = '\0';
  init_sodium();
  if (datadir_path(path, sizeof path, data_dir, KEYRING_KEY_FILE) != 0) {
    snprintf(err, errlen, "data dir path is too long: %s", data_dir);
    return -ENAMETOOLONG;
  }
  if (lstat(path, &st) == 0) {
    exists_msg(data_dir, err, errlen);
    return -EEXIST;
  }
  int rc = datadir_ensure(data_dir, err, errlen);
  if (rc != 0) return rc;
  memset(&kr, 0, sizeof kr);
  keyring_generate(kr.keys[0]);
  kr.nkeys = 1;
  randombytes_buf(kr.cluster_id, sizeof kr.cluster_id);
  /* Claim the key file first (create-only: of two racing inits one wins), then write the id. */
  rc = write_keys(&kr, data_dir, 0, err, errlen);
  if (rc == -EEXIST) exists_msg(data_dir, err, errlen);
  if (rc == 0) rc = write_id(&kr, data_dir, err, errlen);
  keyring_wipe(&kr);
  return rc;
}

/* --- rotation --- */

int keyring_install(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]) {
  if (keyring_find(kr, key) >= 0) return -EEXIST;
  if (kr->nkeys >= KEYRING_MAX) return -ENOSPC;
  memcpy(kr->keys[kr->nkeys++], key, KEYRING_KEY_LEN);
  return 0;
}

int keyring_use(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]) {
  int i = keyring_find(kr, key);
  if (i < 0) return -ENOENT;
  uint8_t k[KEYRING_KEY_LEN];
  memcpy(k, kr->keys[i], KEYRING_KEY_LEN);
  memmove(kr->keys[1], kr->keys[0], (size_t)i * KEYRING_KEY_LEN); /* shift the ones before it down */
  memcpy(kr->keys[0], k, KEYRING_KEY_LEN);
  sodium_memzero(k, sizeof k);
  return 0;
}

int keyring_remove(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]) {
  int i = keyring_find(kr, key);
  if (i < 0) return -ENOENT;
  if (i == 0) return -EBUSY;
  if (i + 1 < kr->nkeys) memmove(kr->keys[i], kr->keys[i + 1], (size_t)(kr->nkeys - i - 1) * KEYRING_KEY_LEN);
  kr->nkeys--;
  sodium_memzero(kr->keys[kr->nkeys], KEYRING_KEY_LEN);
  return 0;
}

/* --- packets --- */

ssize_t keyring_seal(const struct keyring *kr, const uint8_t *pt, size_t len, uint8_t *out, size_t cap) {
  init_sodium();
  if (kr->nkeys < 1) return -EINVAL;
  if (len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX || len > SIZE_MAX - KEYRING_OVERHEAD ||
      cap < len + KEYRING_OVERHEAD)
    return -ENOSPC;
  unsigned long long clen = 0;
  out[0] = KEYRING_VERSION;
  randombytes_buf(out + 1, KEYRING_NONCE_LEN);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + KEYRING_NONCE_LEN, &clen, pt, len, out, 1, NULL,
                                             out + 1, kr->keys[0]);
  return (ssize_t)(1 + KEYRING_NONCE_LEN + clen);
}

ssize_t keyring_open(struct keyring *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
  init_sodium();
  if (!in || len < KEYRING_OVERHEAD || in[0] != KEYRING_VERSION) {
    kr->dropped++;
    return -EBADMSG;
  }
  size_t mlen = len - KEYRING_OVERHEAD;
  if (cap < mlen) {
    kr->dropped++;
    return -ENOSPC;
  }
  for (int i = 0; i < kr->nkeys && i < KEYRING_MAX; i++) {
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(mlen ? out : NULL, &got, NULL, in + 1 + KEYRING_NONCE_LEN,
                                                   len - 1 - KEYRING_NONCE_LEN, in, 1, in + 1,
                                                   kr->keys[i]) == 0)
      return (ssize_t)got;
  }
  kr->dropped++;
  return -EBADMSG;
}

/* --- agent-to-agent request authentication --- */

void keyring_auth_tag(const struct keyring *kr, const uint8_t *msg, size_t len,
                      uint8_t tag[KEYRING_AUTH_LEN]) {
  uint8_t sub[crypto_auth_KEYBYTES];
  if (kr->nkeys < 1) { /* a contract violation; never a valid tag */
    randombytes_buf(tag, KEYRING_AUTH_LEN);
    return;
  }
  keyring_subkey(kr->keys[0], AUTH_SUBKEY_ID, AUTH_SUBKEY_CTX, sub);
  crypto_auth(tag, msg, len, sub);
  sodium_memzero(sub, sizeof sub);
}

bool keyring_auth_verify(const struct keyring *kr, const uint8_t *msg, size_t len,
                         const uint8_t tag[KEYRING_AUTH_LEN]) {
  uint8_t sub[crypto_auth_KEYBYTES];
  bool ok = false;
  for (int i = 0; i < kr->nkeys && i < KEYRING_MAX; i++) {
    keyring_subkey(kr->keys[i], AUTH_SUBKEY_ID, AUTH_SUBKEY_CTX, sub);
    if (crypto_auth_verify(tag, msg, len, sub) == 0) ok = true;
  }
  sodium_memzero(sub, sizeof sub);
  return ok;
}
