/* Invite tokens: how a new node joins without ever being handed the cluster key in the clear.
 *
 * Token: "imt1." + base64url, without padding, of compact JSON with exactly these five keys (created in this
 * order, accepted in any):
 *   {"c":CLUSTER_ID,"s":[SEED,...],"t":TOKEN_ID,"e":EXPIRY,"k":SECRET}
 *   c  cluster id, 32 hex
 *   s  1..8 seed gossip addresses, "host:port" or "[v6]:port"
 *   t  token id, 32 hex (16 random bytes)
 *   e  expiry, unix seconds (0 = never)
 *   k  join secret, 64 hex = BLAKE2b-256 keyed with crypto_kdf(cluster key, 2, "im-invit") over
 *      "infermesh-invite" | cluster id | token id | expiry (8 bytes, big-endian)
 * Any member holding that key recomputes the secret from (token id, expiry): nothing is stored per token, a
 * changed expiry breaks the secret, and the cluster enforces the expiry. A token stays valid while the key it
 * was made with is in the ring (`infermesh keyring remove` revokes every token made with it).
 *
 * Join (over the gossip TCP port; the transport carries the bytes):
 *   joiner -> seed: the request, INVITE_REQ_LEN bytes:
 *     [u8 1][16 token id][8 expiry, big-endian][32 joiner node pk][24 random nonce][32 MAC]
 *     MAC = HMAC-SHA512-256 (crypto_auth) over the 81 bytes before it, keyed with
 *     crypto_kdf(join secret, 1, "im-joinr")
 *   seed -> joiner: the keyring:
 *     [u8 1][24 nonce][XChaCha20-Poly1305-IETF ciphertext of the payload, and tag], AD = the version byte,
 *     key crypto_kdf(join secret, 2, "im-kxfer"); payload = [u8 nkeys][16 cluster id][nkeys x 32-byte keys]
 * Both directions are bound to the join secret, which never travels: an eavesdropper learns nothing, and a
 * seed that answers is proven to hold the cluster key.
 *
 * All functions are pure (no I/O) and thread-safe; they call sodium_init() themselves. */
#ifndef IM_CLUSTER_INVITE_H
#define IM_CLUSTER_INVITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/keyring.h"

#define INVITE_PREFIX "imt1."
#define INVITE_MAX_SEEDS 8
#define INVITE_ADDR_MAX 64    /* a seed address with its NUL (same as GOSSIP_ADDR_MAX) */
#define INVITE_TOKEN_MAX 2048 /* longest token accepted, without its NUL (8 seeds of 63 bytes fit) */
#define INVITE_ID_LEN 16
#define INVITE_SECRET_LEN 32
#define INVITE_REQ_LEN (1 + INVITE_ID_LEN + 8 + 32 + 24 + 32)
#define INVITE_KEYRING_SEALED_MAX (KEYRING_OVERHEAD + 1 + KEYRING_ID_LEN + KEYRING_MAX * KEYRING_KEY_LEN)

/* A parsed token; plain data owned by the caller. secret is secret: wipe with invite_wipe. */
struct invite {
  uint8_t cluster_id[KEYRING_ID_LEN];
  char seeds[INVITE_MAX_SEEDS][INVITE_ADDR_MAX];
  int nseeds;
  uint8_t token_id[INVITE_ID_LEN];
  int64_t expiry; /* unix seconds; 0 = never */
  uint8_t secret[INVITE_SECRET_LEN];
};

/* invite_valid_seed says whether s is a usable seed address: "host:port" or "[ipv6]:port", port 1..65535,
 * host of letters, digits, '.', '-', '_' (or hex, ':', '.', '%' inside brackets), shorter than
 * INVITE_ADDR_MAX. */
bool invite_valid_seed(const char *s);

/* invite_create writes a NUL-terminated token for kr's cluster (its primary key) into out (capacity cap):
 * seeds (1..INVITE_MAX_SEEDS, each invite_valid_seed; borrowed) and expiry (unix seconds, 0 = never). Returns
 * the token length, -EINVAL (no key, bad seed or count, negative expiry) or -ENOSPC (cap too small;
 * INVITE_TOKEN_MAX + 1 always suffices). The token is a secret while it is valid. */
int invite_create(const struct keyring *kr, const char *const *seeds, int nseeds, int64_t expiry, char *out,
                  size_t cap);

/* invite_parse parses a token strictly (surrounding whitespace tolerated) into *inv. Does not check expiry
 * (see invite_expired): the cluster does. Returns 0, or -EINVAL with a message in err: "not an infermesh
 * invite token ...", "token is truncated ...", "token is damaged ...", "... version N ... not supported". */
int invite_parse(const char *token, struct invite *inv, char *err, size_t errlen);

/* invite_expired says whether inv had expired at unix time now. */
bool invite_expired(const struct invite *inv, int64_t now);

/* invite_join_request writes the join request proving inv for the node with public key node_pk into out
 * (capacity cap). Returns INVITE_REQ_LEN or -ENOSPC. */
int invite_join_request(const struct invite *inv, const uint8_t node_pk[32], uint8_t *out, size_t cap);

/* invite_check_request checks len bytes of req (any bytes at all; only req[0, len) is read) at a seed against
 * every key of kr at unix time now. On success returns 0 and fills node_pk_out with the joiner's node key and
 * secret_out with the join secret (for invite_seal_keyring; the caller wipes it). Returns -EACCES when req is
 * malformed or no key of this cluster made its token (another cluster, tampered, revoked), -ETIMEDOUT when
 * the token is genuine but expired. The outputs are written only on success. */
int invite_check_request(const struct keyring *kr, const uint8_t *req, size_t len, int64_t now,
                         uint8_t node_pk_out[32], uint8_t secret_out[INVITE_SECRET_LEN]);

/* invite_seal_keyring encrypts kr's keys and cluster id for the joiner under a key derived from secret into
 * out (capacity cap; INVITE_KEYRING_SEALED_MAX suffices). Returns the length, -EINVAL (kr has no key) or
 * -ENOSPC. */
int invite_seal_keyring(const struct keyring *kr, const uint8_t secret[INVITE_SECRET_LEN], uint8_t *out,
                        size_t cap);

/* invite_open_keyring opens a sealed keyring from a seed (any bytes; only in[0, len) is read) with inv's
 * secret into *kr_out (dropped = 0; written only on success; save it with keyring_save). Returns 0, -EBADMSG
 * (not authentic or malformed) or -EACCES (authentic but for another cluster id than the token's). */
int invite_open_keyring(const struct invite *inv, const uint8_t *in, size_t len, struct keyring *kr_out);

/* invite_wipe zeroes inv (sodium_memzero). */
void invite_wipe(struct invite *inv);

#endif
