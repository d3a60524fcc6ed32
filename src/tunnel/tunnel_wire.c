/* The tunnel's handshake messages and sealed frames (see tunnel_wire.h). */
#include "tunnel/tunnel_wire.h"

#include <errno.h>
#include <string.h>

#define SIG_LEN crypto_sign_BYTES
#define MAC_LEN crypto_auth_BYTES
#define PK_LEN IDENTITY_PK_LEN

_Static_assert(TUNX_HDR_LEN == 24, "secretstream header");
_Static_assert(crypto_scalarmult_BYTES == 32 && crypto_scalarmult_SCALARBYTES == 32, "X25519 sizes");

static void subkeys(const struct keyring *kr, int key, uint8_t ka[32], uint8_t ke[32]) {
  keyring_subkey(kr->keys[key], 5, "im-tun-a", ka);
  keyring_subkey(kr->keys[key], 6, "im-tun-e", ke);
}

static void mac(const uint8_t ka[32], char role, const uint8_t t[32], uint8_t out[MAC_LEN]) {
  crypto_auth_hmacsha512256_state h;
  crypto_auth_hmacsha512256_init(&h, ka, 32);
  crypto_auth_hmacsha512256_update(&h, (const uint8_t *)&role, 1);
  crypto_auth_hmacsha512256_update(&h, t, 32);
  crypto_auth_hmacsha512256_final(&h, out);
}

/* th = BLAKE2b-256(magic eC eS pkS) */
static void transcript(const uint8_t ec[32], const uint8_t es[32], const uint8_t pks[PK_LEN],
                       uint8_t th[32]) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, 32);
  crypto_generichash_update(&h, (const uint8_t *)TUNX_MAGIC, 8);
  crypto_generichash_update(&h, ec, 32);
  crypto_generichash_update(&h, es, 32);
  crypto_generichash_update(&h, pks, PK_LEN);
  crypto_generichash_final(&h, th, 32);
}

/* tc = BLAKE2b-256(th pkC port) */
static void transcript_c(const uint8_t th[32], const uint8_t pkc[PK_LEN], const uint8_t port[2],
                         uint8_t tc[32]) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, 32);
  crypto_generichash_update(&h, th, 32);
  crypto_generichash_update(&h, pkc, PK_LEN);
  crypto_generichash_update(&h, port, 2);
  crypto_generichash_final(&h, tc, 32);
}

static void session_key(const uint8_t ke[32], const char *dir, const uint8_t dh[32], const uint8_t th[32],
                        uint8_t out[32]) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, ke, 32, 32);
  crypto_generichash_update(&h, (const uint8_t *)dir, 3);
  crypto_generichash_update(&h, dh, 32);
  crypto_generichash_update(&h, th, 32);
  crypto_generichash_final(&h, out, 32);
}

static void sign_msg(const char ctx[8], const uint8_t t[32], uint8_t m[40]) {
  memcpy(m, ctx, 8);
  memcpy(m + 8, t, 32);
}

static void hello_mac(const struct keyring *kr, int key, const uint8_t epk[32], uint8_t out[MAC_LEN]) {
  uint8_t ka[32], ke[32];
  crypto_auth_hmacsha512256_state h;
  subkeys(kr, key, ka, ke);
  crypto_auth_hmacsha512256_init(&h, ka, 32);
  crypto_auth_hmacsha512256_update(&h, (const uint8_t *)"H" TUNX_MAGIC, 9);
  crypto_auth_hmacsha512256_update(&h, epk, 32);
  crypto_auth_hmacsha512256_final(&h, out);
  sodium_memzero(ka, 32), sodium_memzero(ke, 32);
}

int tunx_client_hello(struct tunx_session *s, const struct keyring *kr, uint8_t out[TUNX_HELLO_LEN]) {
  if (kr->nkeys < 1) return -EINVAL;
  randombytes_buf(s->esk, 32);
  crypto_scalarmult_base(s->epk, s->esk);
  memcpy(out, TUNX_MAGIC, 8);
  memcpy(out + 8, s->epk, 32);
  hello_mac(kr, 0, s->epk, out + 40);
  return 0;
}

int tunx_parse_hello(struct tunx_session *s, const struct keyring *kr, const uint8_t *in, size_t len) {
  if (len < TUNX_HELLO_LEN) return -EAGAIN;
  if (memcmp(in, TUNX_MAGIC, 8) != 0) return -EPROTO;
  uint8_t want[MAC_LEN];
  for (int i = 0; i < kr->nkeys; i++) {
    hello_mac(kr, i, in + 8, want);
    if (sodium_memcmp(want, in + 40, MAC_LEN) == 0) {
      memcpy(s->peer_epk, in + 8, 32);
      s->key = i;
      return 0;
    }
  }
  return -EACCES;
}

int tunx_server_reply(struct tunx_session *s, const struct keyring *kr, const struct identity *id,
                      uint8_t out[TUNX_REPLY_LEN]) {
  if (s->key < 0 || s->key >= kr->nkeys) return -EINVAL;
  uint8_t dh[32], ka[32], ke[32], k[32], m[40];
  randombytes_buf(s->esk, 32);
  crypto_scalarmult_base(s->epk, s->esk);
  if (crypto_scalarmult(dh, s->esk, s->peer_epk) != 0) return -EBADMSG;
  subkeys(kr, s->key, ka, ke);
  transcript(s->peer_epk, s->epk, id->pk, s->th);
  uint8_t *q = out;
  memcpy(q, s->epk, 32), q += 32;
  memcpy(q, id->pk, PK_LEN), q += PK_LEN;
  sign_msg("im-tun-S", s->th, m);
  crypto_sign_detached(q, NULL, m, sizeof m, id->sk), q += SIG_LEN;
  mac(ka, 'S', s->th, q), q += MAC_LEN;
  session_key(ke, "s2c", dh, s->th, k);
  crypto_secretstream_xchacha20poly1305_init_push(&s->tx, q, k);
  session_key(ke, "c2s", dh, s->th, s->krx);
  sodium_memzero(dh, 32), sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  return 0;
}

int tunx_client_check_reply(struct tunx_session *s, const struct keyring *kr, const struct identity *id,
                            const uint8_t expect_pk[IDENTITY_PK_LEN], uint16_t port, const uint8_t *in,
                            size_t len, uint8_t out[TUNX_FINISH_LEN]) {
  if (len < TUNX_REPLY_LEN) return -EAGAIN;
  const uint8_t *es = in, *pks = in + 32, *sig = pks + PK_LEN, *tag = sig + SIG_LEN, *hdr = tag + MAC_LEN;
  uint8_t th[32], ka[32], ke[32], k[32], dh[32], want[MAC_LEN], m[40];
  int rc = -EACCES;
  transcript(s->epk, es, pks, th);
  for (int i = 0; i < kr->nkeys && rc == -EACCES; i++) {
    subkeys(kr, i, ka, ke);
    mac(ka, 'S', th, want);
    if (sodium_memcmp(want, tag, MAC_LEN) == 0) rc = i;
  }
  if (rc < 0) goto out;
  s->key = rc;
  rc = -EPERM;
  sign_msg("im-tun-S", th, m);
  if (sodium_memcmp(pks, expect_pk, PK_LEN) != 0 || crypto_sign_verify_detached(sig, m, sizeof m, pks) != 0)
    goto out;
  rc = -EBADMSG;
  if (crypto_scalarmult(dh, s->esk, es) != 0) goto out;
  memcpy(s->peer_epk, es, 32);
  memcpy(s->peer_pk, pks, PK_LEN);
  memcpy(s->th, th, 32);
  session_key(ke, "s2c", dh, th, k);
  if (crypto_secretstream_xchacha20poly1305_init_pull(&s->rx, hdr, k) != 0) goto out;
  s->port = port;
  uint8_t p[2] = {(uint8_t)(port >> 8), (uint8_t)port}, tc[32];
  uint8_t *q = out;
  memcpy(q, id->pk, PK_LEN), q += PK_LEN;
  memcpy(q, p, 2), q += 2;
  transcript_c(th, id->pk, p, tc);
  sign_msg("im-tun-C", tc, m);
  crypto_sign_detached(q, NULL, m, sizeof m, id->sk), q += SIG_LEN;
  mac(ka, 'C', tc, q), q += MAC_LEN;
  session_key(ke, "c2s", dh, th, k);
  crypto_secretstream_xchacha20poly1305_init_push(&s->tx, q, k);
  rc = 0;
out:
  sodium_memzero(dh, 32), sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(k, 32);
  return rc;
}

int tunx_server_check_finish(struct tunx_session *s, const struct keyring *kr, const uint8_t *in,
                             size_t len) {
  if (len < TUNX_FINISH_LEN) return -EAGAIN;
  const uint8_t *pkc = in, *p = in + PK_LEN, *sig = p + 2, *tag = sig + SIG_LEN, *hdr = tag + MAC_LEN;
  uint8_t ka[32], ke[32], tc[32], want[MAC_LEN], m[40];
  int rc = -EACCES;
  if (s->key < 0 || s->key >= kr->nkeys) return -EACCES;
  subkeys(kr, s->key, ka, ke);
  transcript_c(s->th, pkc, p, tc);
  mac(ka, 'C', tc, want);
  if (sodium_memcmp(want, tag, MAC_LEN) != 0) goto out;
  rc = -EPERM;
  sign_msg("im-tun-C", tc, m);
  if (crypto_sign_verify_detached(sig, m, sizeof m, pkc) != 0) goto out;
  rc = -EBADMSG;
  if (crypto_secretstream_xchacha20poly1305_init_pull(&s->rx, hdr, s->krx) != 0) goto out;
  memcpy(s->peer_pk, pkc, PK_LEN);
  s->port = (uint16_t)(p[0] << 8 | p[1]);
  rc = 0;
out:
  sodium_memzero(ka, 32), sodium_memzero(ke, 32), sodium_memzero(s->krx, 32);
  return rc;
}

int tunx_frame_next(const uint8_t *in, size_t len, uint32_t *clen) {
  if (len < 4) return 0;
  uint32_t n = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
  if (n < TUNX_ABYTES || n > TUNX_FRAME_MAX + TUNX_ABYTES) return -EPROTO;
  *clen = n;
  return len - 4 < n ? 0 : 1;
}

size_t tunx_seal(struct tunx_session *s, const uint8_t *pt, size_t n, uint8_t tag, uint8_t *out) {
  uint32_t clen = (uint32_t)(n + TUNX_ABYTES);
  out[0] = (uint8_t)(clen >> 24), out[1] = (uint8_t)(clen >> 16), out[2] = (uint8_t)(clen >> 8),
  out[3] = (uint8_t)clen;
  crypto_secretstream_xchacha20poly1305_push(&s->tx, out + 4, NULL, pt, n, NULL, 0, tag);
  return 4 + clen;
}

int tunx_open(struct tunx_session *s, const uint8_t *c, size_t clen, uint8_t *out, size_t *n, int *final) {
  unsigned long long plen = 0;
  uint8_t tag = 0;
  if (clen < TUNX_ABYTES ||
      crypto_secretstream_xchacha20poly1305_pull(&s->rx, out, &plen, &tag, c, clen, NULL, 0) != 0)
    return -EBADMSG;
  *n = (size_t)plen;
  *final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
  return 0;
}

void tunx_wipe(struct tunx_session *s) { sodium_memzero(s, sizeof *s); }
