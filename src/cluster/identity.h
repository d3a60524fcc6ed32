/* Node identity: an ed25519 key pair kept in the data dir; a member is known by its public key.
 *
 * File: <data_dir>/node.key, mode 0600, the 32-byte ed25519 seed as 64 lowercase hex characters and '\n'
 * (the key pair is derived from it). Created on first use and never replaced, so the identity is stable
 * across restarts. */
#ifndef IM_CLUSTER_IDENTITY_H
#define IM_CLUSTER_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define IDENTITY_FILE "node.key"
#define IDENTITY_PK_LEN 32
#define IDENTITY_SK_LEN 64

/* A struct identity is plain data owned by the caller; sk is secret: wipe it with identity_wipe when done. */
struct identity {
  uint8_t pk[IDENTITY_PK_LEN];
  uint8_t sk[IDENTITY_SK_LEN]; /* libsodium's form: seed followed by pk */
};

/* identity_load_or_create reads data_dir/node.key into *id, creating data_dir (0700) and a new key (0600)
 * when there is none. Two processes racing on the first use end up with the same key. Refuses a key file that
 * group or others may access (-EPERM) or a malformed one (-EINVAL). Returns 0 or a negative errno with a
 * message naming the file and the fix in err; *id is written only on success. */
int identity_load_or_create(struct identity *id, const char *data_dir, char *err, size_t errlen);

/* identity_short writes the first 12 hex characters of pk (for display) into out. */
void identity_short(const uint8_t pk[IDENTITY_PK_LEN], char out[13]);

/* identity_hex writes pk as 64 lowercase hex characters into out. */
void identity_hex(const uint8_t pk[IDENTITY_PK_LEN], char out[65]);

/* identity_parse_hex parses exactly 64 hex characters (a whole string) into pk: 0 or -EINVAL. */
int identity_parse_hex(const char *s, uint8_t pk[IDENTITY_PK_LEN]);

/* identity_wipe zeroes id (sodium_memzero). */
void identity_wipe(struct identity *id);

#endif
