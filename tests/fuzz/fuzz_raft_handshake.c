/* libFuzzer target for the Raft transport's handshake and framing parsers (cluster/raft_transport.h, the
 * rtx_* functions the transport's read callback uses). Every input is read, from an exact-size copy (ASan
 * reports overreads), as
 *   - a client hello, by the server (rtx_parse_hello);
 *   - a server reply followed by sealed frames, by a client that sent the fixed nonce NC (rtx_check_server_reply,
 *     then rtx_frame_next and secretstream pulls, as relay_in does);
 *   - a client finish followed by sealed frames, by a server that used key 0 and nonces NC and NS
 *     (rtx_finish_len, rtx_check_client_finish, then the frames);
 *   - a bare frame stream (rtx_frame_next).
 * Results must obey their contracts; none may crash. The fixed cluster: keys 0x42.. (primary) and 0x43..; the
 * seeds in corpus/fuzz_raft_handshake were made with it (replies under either key, finishes under key 0). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/keyring.h"
#include "cluster/raft_transport.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

static void fixed_keyring(struct keyring *kr) {
  memset(kr, 0, sizeof *kr);
  memset(kr->keys[0], 0x42, KEYRING_KEY_LEN);
  memset(kr->keys[1], 0x43, KEYRING_KEY_LEN);
  kr->nkeys = 2;
  memset(kr->cluster_id, 0x17, KEYRING_ID_LEN);
}

/* Reads frames from in[0, len) as relay_in does; returns how many opened. */
static int read_frames(crypto_secretstream_xchacha20poly1305_state *rx, const uint8_t *in, size_t len) {
  size_t off = 0;
  int frames = 0;
  while (len - off >= 4) {
    uint32_t clen = 0;
    int fr = rtx_frame_next(in + off, len - off, &clen);
    CHECK(fr == 1 || fr == 0 || fr == -EPROTO);
    if (fr != 1) {
      if (fr == 0) CHECK(clen == 0 || len - off - 4 < clen);
      break;
    }
    CHECK(clen >= ABYTES && clen <= RTX_FRAME_MAX + ABYTES && len - off - 4 >= clen);
    uint8_t *pt = malloc(clen);
    unsigned long long plen = 0;
    uint8_t tag = 0xff;
    int rc = crypto_secretstream_xchacha20poly1305_pull(rx, pt, &plen, &tag, in + off + 4, clen, NULL, 0);
    free(pt);
    if (rc != 0) break; /* the transport closes the connection here */
    CHECK(plen == clen - ABYTES);
    frames++;
    off += 4 + clen;
  }
  return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct keyring kr;
  fixed_keyring(&kr);
  uint8_t nc[RTX_NONCE_LEN], ns[RTX_NONCE_LEN];
  memset(nc, 0x11, sizeof nc);
  memset(ns, 0x22, sizeof ns);

  uint8_t *b = malloc(size ? size : 1);
  memcpy(b, data, size);

  /* A hello. */
  uint8_t got[RTX_NONCE_LEN];
  memset(got, 0xee, sizeof got);
  int rc = rtx_parse_hello(b, size, got);
  if (size < RTX_HELLO_LEN) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == 0 || rc == -EPROTO);
    CHECK((rc == 0) == (memcmp(b, "IMRAFT01", 8) == 0));
    if (rc == 0) CHECK(memcmp(got, b + 8, RTX_NONCE_LEN) == 0);
  }

  /* A server's reply to our hello (nonce NC), then frames. */
  crypto_secretstream_xchacha20poly1305_state rx;
  uint8_t ns_got[RTX_NONCE_LEN];
  rc = rtx_check_server_reply(&kr, nc, b, size, ns_got, &rx);
  if (size < RTX_REPLY_LEN) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == -EACCES || rc == -EBADMSG || (rc >= 0 && rc < kr.nkeys));
    if (rc >= 0) {
      CHECK(memcmp(ns_got, b, RTX_NONCE_LEN) == 0);
      (void)read_frames(&rx, b + RTX_REPLY_LEN, size - RTX_REPLY_LEN);
    }
  }

  /* A client's finish to our reply (key 0, nonces NC and NS), then frames. */
  size_t need = rtx_finish_len(b, size);
  if (size < RTX_FINISH_MIN) CHECK(need == 0);
  else CHECK(need >= RTX_FINISH_MIN && need <= RTX_FINISH_MIN + RTX_ADDR_MAX);
  raft_id peer = 0;
  char addr[RTX_ADDR_MAX + 1];
  memset(addr, 'x', sizeof addr);
  rc = rtx_check_client_finish(&kr, 0, nc, ns, b, size, &rx, &peer, addr);
  if (need == 0 || size < need) {
    CHECK(rc == -EAGAIN);
  } else {
    CHECK(rc == 0 || rc == -EACCES);
    if (rc == 0) {
      CHECK(strlen(addr) <= RTX_ADDR_MAX);
      (void)read_frames(&rx, b + need, size - need);
    }
  }
  /* Under the secondary key too (a server whose primary is 0x43..). */
  if (need && size >= need) {
    rc = rtx_check_client_finish(&kr, 1, nc, ns, b, size, &rx, &peer, addr);
    CHECK(rc == 0 || rc == -EACCES);
  }

  /* A bare frame stream: lengths parse, nothing opens under a stream nobody keyed. */
  crypto_secretstream_xchacha20poly1305_state zero;
  uint8_t k0[crypto_secretstream_xchacha20poly1305_KEYBYTES] = {0}, hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES] = {0};
  crypto_secretstream_xchacha20poly1305_init_pull(&zero, hdr, k0);
  (void)read_frames(&zero, b, size);

  free(b);
  return 0;
}
