/* libFuzzer target for the agent-to-agent tunnel's handshake and framing parsers (tunnel/tunnel_wire.h, as
 * tunnel.c's read callbacks use them). Every input is read, from an exact-size copy (ASan reports overreads),
 * as
 *   - a client hello, by a server (tunx_parse_hello, then tunx_server_reply when its MAC checked);
 *   - a server reply followed by sealed frames, by a client with a fixed ephemeral key expecting the fixed
 *     server identity (tunx_client_check_reply, then tunx_frame_next and tunx_open as relay_in does);
 *   - a client finish followed by frames, by a server that answered a fixed hello (tunx_server_check_finish);
 *   - a bare frame stream.
 * Results must obey their contracts; none may crash. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tunnel/tunnel_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_frames(struct tunx_session *s, const uint8_t *in, size_t len) {
  size_t off = 0;
  while (len - off >= 4) {
    uint32_t clen = 0;
    int fr = tunx_frame_next(in + off, len - off, &clen);
    CHECK(fr == 1 || fr == 0 || fr == -EPROTO);
    if (fr != 1) break;
    CHECK(clen >= TUNX_ABYTES && clen <= TUNX_FRAME_MAX + TUNX_ABYTES && len - off - 4 >= clen);
    uint8_t *pt = malloc(clen);
    size_t n = 0;
    int final = 0;
    int rc = tunx_open(s, in + off + 4, clen, pt, &n, &final);
    free(pt);
    CHECK(rc == 0 || rc == -EBADMSG);
    if (rc != 0) break;
    CHECK(n == clen - TUNX_ABYTES);
    off += 4 + clen;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (sodium_init() < 0) abort();
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], 0x42, KEYRING_KEY_LEN);
  memset(kr.keys[1], 0x43, KEYRING_KEY_LEN);
  kr.nkeys = 2;
  struct identity cid, sid;
  uint8_t seed[32];
  memset(seed, 1, sizeof seed);
  crypto_sign_seed_keypair(cid.pk, cid.sk, seed);
  memset(seed, 2, sizeof seed);
  crypto_sign_seed_keypair(sid.pk, sid.sk, seed);

  uint8_t *b = malloc(size ? size : 1);
  memcpy(b, data, size);

  /* A hello, by a server. */
  struct tunx_session s;
  memset(&s, 0, sizeof s);
  int rc = tunx_parse_hello(&s, &kr, b, size);
  if (size < TUNX_HELLO_LEN) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == 0 || rc == -EPROTO || rc == -EACCES);
    CHECK((rc != -EPROTO) == (memcmp(b, TUNX_MAGIC, 8) == 0));
    if (rc == 0) {
      CHECK(s.key >= 0 && s.key < kr.nkeys);
      uint8_t reply[TUNX_REPLY_LEN];
      rc = tunx_server_reply(&s, &kr, &sid, reply);
      CHECK(rc == 0 || rc == -EBADMSG);
    }
  }

  /* A reply, by a client with a fixed ephemeral key; then frames. */
  struct tunx_session c;
  memset(&c, 0, sizeof c);
  memset(c.esk, 0x33, sizeof c.esk);
  crypto_scalarmult_base(c.epk, c.esk);
  uint8_t fin[TUNX_FINISH_LEN];
  rc = tunx_client_check_reply(&c, &kr, &cid, sid.pk, 8080, b, size, fin);
  if (size < TUNX_REPLY_LEN) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == 0 || rc == -EACCES || rc == -EPERM || rc == -EBADMSG);
    if (rc == 0) read_frames(&c, b + TUNX_REPLY_LEN, size - TUNX_REPLY_LEN);
  }

  /* A finish, by a server that answered a fixed hello; then frames. */
  uint8_t hello[TUNX_HELLO_LEN], reply[TUNX_REPLY_LEN];
  struct tunx_session cc, ss;
  memset(&cc, 0, sizeof cc);
  memset(&ss, 0, sizeof ss);
  CHECK(tunx_client_hello(&cc, &kr, hello) == 0);
  CHECK(tunx_parse_hello(&ss, &kr, hello, sizeof hello) == 0);
  CHECK(tunx_server_reply(&ss, &kr, &sid, reply) == 0);
  rc = tunx_server_check_finish(&ss, &kr, b, size);
  if (size < TUNX_FINISH_LEN) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == 0 || rc == -EACCES || rc == -EPERM || rc == -EBADMSG);
    if (rc == 0) read_frames(&ss, b + TUNX_FINISH_LEN, size - TUNX_FINISH_LEN);
  }

  /* A bare frame stream under a stream nobody keyed. */
  struct tunx_session z;
  memset(&z, 0, sizeof z);
  uint8_t k0[crypto_secretstream_xchacha20poly1305_KEYBYTES] = {0}, hdr[TUNX_HDR_LEN] = {0};
  crypto_secretstream_xchacha20poly1305_init_pull(&z.rx, hdr, k0);
  read_frames(&z, b, size);

  free(b);
  return 0;
}
