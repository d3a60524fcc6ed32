/* The agent-to-agent tunnel's wire format: handshake messages and sealed frames (pure: no I/O; see tunnel.h).
 *
 * Handshake, client C dialing server S for loopback port P (K_i: a key of the cluster keyring both hold;
 * Ka = crypto_kdf(K_i, 5, "im-tun-a"), Ke = crypto_kdf(K_i, 6, "im-tun-e"); eC/eS: fresh X25519 key pairs;
 * pkC/pkS, skC/skS: the nodes' ed25519 identities, cluster/identity.h):
 *   C -> S  HELLO  "IMTUN001" | eC[32] | macH[32]                                            (72 bytes)
 *   S -> C  REPLY  eS[32] | pkS[32] | sigS[64] | macS[32] | hdr_s2c[24]                      (184 bytes)
 *   C -> S  FINISH pkC[32] | P (u16 BE) | sigC[64] | macC[32] | hdr_c2s[24]                  (154 bytes)
 *   S -> C  first frame: one status byte (TUNX_OK, or why the stream is refused), then the relay.
 * with macH = HMAC-SHA512-256(Ka, "H" "IMTUN001" eC) under the client's primary key (the server answers with
 * the key it matches, so a node whose primary was rotated still reaches one that installed the new key),
 *   th = BLAKE2b-256("IMTUN001" eC eS pkS), tc = BLAKE2b-256(th pkC P),
 *   sigS = Ed25519(skS, "im-tun-S" th)    macS = HMAC-SHA512-256(Ka, "S" th)
 *   sigC = Ed25519(skC, "im-tun-C" tc)    macC = HMAC-SHA512-256(Ka, "C" tc)
 *   k_s2c = BLAKE2b-256(key Ke, "s2c" X25519(e, e') th), k_c2s likewise with "c2s".
 * So: the MACs prove both ends hold the cluster key (only mesh members connect; a hello without it costs the
 * server one HMAC per key, not an X25519 and a signature); each signature binds a node identity to this
 * exchange's fresh ephemeral keys, and the client pins pkS to the member it meant to reach, the server checks
 * pkC is a member it knows; the session keys are forward secret (ephemeral X25519) and also depend on the
 * cluster key. A replayed or altered reply or finish fails a signature or a MAC, since the other side's
 * ephemeral key is new every time (a replayed hello gets a reply, and leads nowhere).
 *
 * Frames after the handshake, each direction its own crypto_secretstream (XChaCha20-Poly1305):
 *   [u32 BE length][ciphertext of at most TUNX_FRAME_MAX plaintext bytes]
 * A frame with TAG_FINAL ends its direction (a half-close); a connection that ends without one was cut
 * (truncation is detected, not passed on as a clean end). Reordered, replayed, dropped or forged frames fail
 * to open. */
#ifndef IM_TUNNEL_TUNNEL_WIRE_H
#define IM_TUNNEL_TUNNEL_WIRE_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/identity.h"
#include "cluster/keyring.h"

#define TUNX_MAGIC "IMTUN001"
#define TUNX_EPK_LEN 32
#define TUNX_HDR_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define TUNX_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define TUNX_HELLO_LEN (8 + TUNX_EPK_LEN + crypto_auth_BYTES)
#define TUNX_REPLY_LEN (TUNX_EPK_LEN + IDENTITY_PK_LEN + crypto_sign_BYTES + crypto_auth_BYTES + TUNX_HDR_LEN)
#define TUNX_FINISH_LEN (IDENTITY_PK_LEN + 2 + crypto_sign_BYTES + crypto_auth_BYTES + TUNX_HDR_LEN)
#define TUNX_FRAME_MAX 65536

/* The status byte that opens the server's direction. */
enum tunx_status {
  TUNX_OK = 0,
  TUNX_PORT_REFUSED = 1,   /* the port is not on the server's allow-list */
  TUNX_CONNECT_FAILED = 2, /* nothing answers on that loopback port */
  TUNX_BUSY = 3,           /* the client holds the most streams the server allows one peer */
  TUNX_NOT_MEMBER = 4,     /* the server does not know the client's identity as a mesh member */
};

/* One side's handshake and session state: plain data, owned by the caller; wipe with tunx_wipe. */
struct tunx_session {
  uint8_t esk[32], epk[32]; /* this side's ephemeral X25519 key pair */
  uint8_t peer_epk[32];
  uint8_t th[32];                   /* transcript hash, see above */
  uint8_t krx[32];                  /* server: k_c2s until the finish arrives */
  int key;                          /* index of the keyring key both hold */
  uint8_t peer_pk[IDENTITY_PK_LEN]; /* the peer's identity, once proven */
  uint16_t port;                    /* the port asked for */
  crypto_secretstream_xchacha20poly1305_state tx, rx;
};

/* tunx_client_hello (client) makes a fresh ephemeral key pair in s and writes the hello, MACed under kr's
 * primary key, to out. 0, or -EINVAL when kr holds no key. */
int tunx_client_hello(struct tunx_session *s, const struct keyring *kr, uint8_t out[TUNX_HELLO_LEN]);

/* tunx_parse_hello (server): 0, the client's ephemeral key in s->peer_epk and the index of the key of kr
 * that made its MAC in s->key, when in starts with a hello; -EAGAIN when len is too short to tell; -EPROTO
 * for a wrong magic; -EACCES when no key of kr made the MAC (another cluster). */
int tunx_parse_hello(struct tunx_session *s, const struct keyring *kr, const uint8_t *in, size_t len);

/* tunx_server_reply (server, after tunx_parse_hello) makes the ephemeral key pair, derives the keys under
 * the key the hello used (s->key), starts s->tx and writes the reply, signed with identity id, to out. 0, or
 * -EBADMSG when the client's ephemeral key is degenerate (X25519 gives zero), -EINVAL when s->key is not a
 * key of kr. */
int tunx_server_reply(struct tunx_session *s, const struct keyring *kr, const struct identity *id,
                      uint8_t out[TUNX_REPLY_LEN]);

/* tunx_client_check_reply (client, after tunx_client_hello) checks the server's reply in[0, len): its MAC
 * under a key of kr, that it was signed by expect_pk (the member this client means to reach), and starts
 * s->rx; then writes the finish, asking for port and signed with identity id, to out and starts s->tx.
 * 0; -EAGAIN (len < TUNX_REPLY_LEN); -EACCES (no key of kr made the MAC: another cluster); -EPERM (another
 * identity than expect_pk, or its signature fails); -EBADMSG (degenerate key or bad stream header). */
int tunx_client_check_reply(struct tunx_session *s, const struct keyring *kr, const struct identity *id,
                            const uint8_t expect_pk[IDENTITY_PK_LEN], uint16_t port, const uint8_t *in,
                            size_t len, uint8_t out[TUNX_FINISH_LEN]);

/* tunx_server_check_finish (server, after tunx_server_reply) checks the client's finish in[0, len): its MAC
 * under the key the reply used and the signature of the identity it names; sets s->peer_pk and s->port and
 * starts s->rx. 0; -EAGAIN (len < TUNX_FINISH_LEN); -EACCES (bad MAC); -EPERM (bad signature); -EBADMSG
 * (bad stream header). Whether peer_pk is a member is the caller's question. */
int tunx_server_check_finish(struct tunx_session *s, const struct keyring *kr, const uint8_t *in, size_t len);

/* tunx_frame_next: the ciphertext length of the frame at in in *clen. 1: the whole frame (4 + *clen bytes) is
 * in in[0, len); 0: more bytes needed; -EPROTO: the length is out of range. */
int tunx_frame_next(const uint8_t *in, size_t len, uint32_t *clen);

/* tunx_seal writes the frame of pt[0, n) (n <= TUNX_FRAME_MAX) sealed with s->tx, tag 0 or
 * crypto_secretstream_xchacha20poly1305_TAG_FINAL, to out (4 + n + TUNX_ABYTES bytes). Returns its length. */
size_t tunx_seal(struct tunx_session *s, const uint8_t *pt, size_t n, uint8_t tag, uint8_t *out);

/* tunx_open opens the ciphertext c[0, clen) of one frame with s->rx into out (clen - TUNX_ABYTES bytes):
 * 0 and *final (its tag was TAG_FINAL), or -EBADMSG (forged, replayed, reordered or corrupt). */
int tunx_open(struct tunx_session *s, const uint8_t *c, size_t clen, uint8_t *out, size_t *n, int *final);

/* tunx_wipe zeroes s (secrets included). */
void tunx_wipe(struct tunx_session *s);

#endif
