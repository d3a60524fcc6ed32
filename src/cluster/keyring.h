/* The cluster keyring: the shared secret that admits a node to the mesh, with room for rotation.
 *
 * Files in the data dir (both mode 0600, written atomically):
 *   cluster.key  one key per line, 64 lowercase hex characters (32 bytes) and '\n'; the first line is the
 *                primary key (seals), every line opens. At most KEYRING_MAX lines.
 *   cluster.id   the cluster id: 32 hex characters (16 random bytes) and '\n'.
 *
 * Uses of a key, each under its own key so one never helps attack another:
 *   gossip AEAD      the key itself, XChaCha20-Poly1305-IETF (keyring_seal / keyring_open)
 *   request auth     HMAC-SHA512-256 under crypto_kdf(key, id 1, "im-auth1") (keyring_auth_tag)
 *   invite secrets   crypto_kdf(key, id 2, "im-invit") (cluster/invite.h)
 *   tenant API keys  BLAKE2b under crypto_kdf(key, id 3, "im-tenky") of the creating command id and the name
 *                    (api/control_api.c: a retried create shows the key that was stored)
 *
 * A struct keyring is plain data: copy it freely, wipe it with keyring_wipe when done. Functions are not
 * thread-safe on the same keyring (keyring_open counts into kr->dropped). Every function that uses libsodium
 * calls sodium_init() itself. */
#ifndef IM_CLUSTER_KEYRING_H
#define IM_CLUSTER_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KEYRING_KEY_LEN 32
#define KEYRING_MAX 4
#define KEYRING_ID_LEN 16
#define KEYRING_VERSION 1
#define KEYRING_NONCE_LEN 24
#define KEYRING_TAG_LEN 16
#define KEYRING_OVERHEAD (1 + KEYRING_NONCE_LEN + KEYRING_TAG_LEN) /* version + nonce + Poly1305 tag */
#define KEYRING_AUTH_LEN 32
#define KEYRING_FP_LEN 8 /* hex characters of a key fingerprint */

#define KEYRING_TENANT_KEY_ID 3
#define KEYRING_TENANT_KEY_CTX "im-tenky"

#define KEYRING_KEY_FILE "cluster.key"
#define KEYRING_ID_FILE "cluster.id"

struct keyring {
  uint8_t keys[KEYRING_MAX][KEYRING_KEY_LEN]; /* keys[0] is the primary */
  int nkeys;
  uint8_t cluster_id[KEYRING_ID_LEN];
  uint64_t dropped; /* packets keyring_open refused */
};

/* keyring_create makes a new cluster in data_dir (created 0700 when missing): a random key and cluster id,
 * written to cluster.key and cluster.id. Refuses to replace an existing key (-EEXIST; err says how to join a
 * cluster instead). Read it back with keyring_load. Returns 0 or a negative errno with a message in err. */
int keyring_create(const char *data_dir, char *err, size_t errlen);

/* keyring_load reads data_dir's keyring into *kr (dropped = 0). *kr is written only on success. Errors, with
 * a message in err: -ENOENT "no cluster key in DIR: run `infermesh init` or join with an invite"; -EPERM when
 * the key file is accessible by group or others; -EINVAL for a malformed file (the line is named). */
int keyring_load(struct keyring *kr, const char *data_dir, char *err, size_t errlen);

/* keyring_reload rereads data_dir into *kr for a running agent (SIGHUP): keys change, the dropped counter
 * stays. Refuses (-EXDEV) a keyring of another cluster. On any error *kr is unchanged. */
int keyring_reload(struct keyring *kr, const char *data_dir, char *err, size_t errlen);

/* keyring_save writes kr (at least one key) to data_dir (created 0700 when missing) atomically, replacing
 * what is there. 0 or a negative errno with a message in err. */
int keyring_save(const struct keyring *kr, const char *data_dir, char *err, size_t errlen);

/* keyring_generate fills key with a fresh random key. */
void keyring_generate(uint8_t key[KEYRING_KEY_LEN]);

/* keyring_find returns the index of key in kr, or -1. Constant time in the key bytes. */
int keyring_find(const struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]);

/* Rotation, in memory (keyring_save persists). Keys are copied in.
 * keyring_install adds key as a secondary key: 0, -EEXIST already installed, -ENOSPC ring full.
 * keyring_use makes an installed key the primary (the old primary stays as a secondary): 0, or -ENOENT.
 * keyring_remove drops a secondary key: 0, -ENOENT not installed, -EBUSY it is the primary (so the last key
 * can never be removed: `use` another first). */
int keyring_install(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]);
int keyring_use(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]);
int keyring_remove(struct keyring *kr, const uint8_t key[KEYRING_KEY_LEN]);

/* keyring_seal encrypts len bytes of pt with the primary key into out (capacity cap): [version 1][24-byte
 * random nonce][XChaCha20-Poly1305-IETF ciphertext and tag], with the version byte as associated data. out
 * must not overlap pt. Returns the bytes written (len + KEYRING_OVERHEAD), -ENOSPC when cap is too small,
 * -EINVAL when kr has no key. */
ssize_t keyring_seal(const struct keyring *kr, const uint8_t *pt, size_t len, uint8_t *out, size_t cap);

/* keyring_open authenticates and decrypts len bytes of in (any bytes at all) with each key in turn into out
 * (capacity cap; must not overlap in). Returns the plaintext length; -EBADMSG, counting kr->dropped, when the
 * input is short, of another version, or no key authenticates it; -ENOSPC, also counted, when
 * cap < len - KEYRING_OVERHEAD. Reads only in[0, len); writes only out[0, cap). */
ssize_t keyring_open(struct keyring *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* keyring_auth_tag computes the agent-to-agent authentication tag of msg under the primary key's auth subkey
 * (HMAC-SHA512-256). kr must hold a key. */
void keyring_auth_tag(const struct keyring *kr, const uint8_t *msg, size_t len,
                      uint8_t tag[KEYRING_AUTH_LEN]);

/* keyring_auth_verify accepts a tag made by keyring_auth_tag with any key in the ring (constant-time
 * compare). */
bool keyring_auth_verify(const struct keyring *kr, const uint8_t *msg, size_t len,
                         const uint8_t tag[KEYRING_AUTH_LEN]);

/* keyring_fingerprint writes a short, non-secret name of key (the first 8 hex characters of a hash of it)
 * into out. Safe to print and log. */
void keyring_fingerprint(const uint8_t key[KEYRING_KEY_LEN], char out[KEYRING_FP_LEN + 1]);

/* keyring_key_hex writes key as 64 lowercase hex characters. The output is secret: wipe it after use. */
void keyring_key_hex(const uint8_t key[KEYRING_KEY_LEN], char out[2 * KEYRING_KEY_LEN + 1]);

/* keyring_parse_key parses exactly 64 hex characters (either case, surrounding spaces and a trailing newline
 * tolerated) into key: 0 or -EINVAL. */
int keyring_parse_key(const char *s, uint8_t key[KEYRING_KEY_LEN]);

/* keyring_id_hex writes a cluster id as 32 lowercase hex characters. */
void keyring_id_hex(const uint8_t id[KEYRING_ID_LEN], char out[2 * KEYRING_ID_LEN + 1]);

/* keyring_subkey derives a 32-byte subkey of key for one purpose (crypto_kdf: id and 8-character context).
 * The output is secret: the caller wipes it. Used by the invite code. */
void keyring_subkey(const uint8_t key[KEYRING_KEY_LEN], uint64_t id, const char ctx[8], uint8_t out[32]);

/* keyring_wipe zeroes kr (sodium_memzero). */
void keyring_wipe(struct keyring *kr);

#endif
