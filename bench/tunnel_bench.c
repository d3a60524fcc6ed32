/* tunnel_bench: what the agent-to-agent tunnel's crypto costs (tunnel/tunnel_wire.c), per handshake and per
 * relayed byte, on one thread with no I/O.
 *
 * Build and run (from the repository root; -O2, no sanitizers):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -o /tmp/tunnel_bench bench/tunnel_bench.c src/tunnel/tunnel_wire.c \
 *      src/cluster/keyring.c src/cluster/datadir.c src/core/slice.c src/core/alloc.c src/core/log.c -lsodium
 * \
 *      && /tmp/tunnel_bench
 * Prints markdown rows: the whole handshake (both sides: hello, reply, check, finish, check) and, per frame
 * size, seal + open of one frame (what the two ends of a stream do per relayed read). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tunnel/tunnel_wire.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t pt[TUNX_FRAME_MAX], frame[4 + TUNX_FRAME_MAX + TUNX_ABYTES], out[TUNX_FRAME_MAX];

int main(void) {
  if (sodium_init() < 0) return 1;
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], 7, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  struct identity a, b;
  crypto_sign_keypair(a.pk, a.sk);
  crypto_sign_keypair(b.pk, b.sk);
  struct tunx_session c, s;
  uint8_t hello[TUNX_HELLO_LEN], reply[TUNX_REPLY_LEN], fin[TUNX_FINISH_LEN];
  int iters = 2000;
  double t0 = now_s();
  for (int i = 0; i < iters; i++) {
    memset(&c, 0, sizeof c), memset(&s, 0, sizeof s);
    if (tunx_client_hello(&c, &kr, hello) || tunx_parse_hello(&s, &kr, hello, sizeof hello) ||
        tunx_server_reply(&s, &kr, &b, reply) ||
        tunx_client_check_reply(&c, &kr, &a, b.pk, 8080, reply, sizeof reply, fin) ||
        tunx_server_check_finish(&s, &kr, fin, sizeof fin))
      return 2;
  }
  double hs = (now_s() - t0) / iters * 1e6;
  printf("| handshake, both sides | %.1f µs |\n", hs);
  static const size_t sizes[] = {256, 1024, 16384, 65536};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k], pn;
    int final, reps = n >= 16384 ? 20000 : 200000;
    t0 = now_s();
    for (int i = 0; i < reps; i++) {
      size_t len = tunx_seal(&c, pt, n, 0, frame);
      if (tunx_open(&s, frame + 4, len - 4, out, &pn, &final) != 0) return 3;
    }
    double us = (now_s() - t0) / reps * 1e6;
    printf("| frame of %zu B, seal + open | %.2f µs (%.2f GB/s) |\n", n, us, n / us / 1e3);
  }
  return 0;
}
