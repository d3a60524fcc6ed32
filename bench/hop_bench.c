/* hop_bench: what a v3 hop signature costs on the forwarding path, per request body size.
 *
 * Build and run (from the repository root; -O2, no sanitizers):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -o /tmp/hop_bench bench/hop_bench.c src/route/hop.c \
 *      src/route/hop_seen.c src/cluster/keyring.c src/cluster/datadir.c src/core/slice.c src/core/alloc.c \
 *      src/core/log.c -lsodium && /tmp/hop_bench
 * Columns (microseconds per request): digest = hop_digest of "POST /v1/chat/completions\n" + body (the
 * part that is new in v3); sign = digest + hop_sign, what the sending agent does per attempt; verify =
 * digest + hop_verify (tag check, replay memory), what the receiving agent does once. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route/hop.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char body[1 << 20];

int main(void) {
  if (sodium_init() < 0) return 1;
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], 7, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  uint8_t node[HOP_NODE_LEN];
  memset(node, 0xa1, sizeof node);
  memset(body, 'x', sizeof body);
  static const size_t sizes[] = {0, 256, 2048, 16384, 131072, 1 << 20};
  printf("| body | digest | sign (digest + tag) | verify (digest + check + remember) | digest rate |\n"
         "|---:|---:|---:|---:|---:|\n");
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    int iters = n >= 131072 ? 2000 : 100000;
    struct slice b = slice_make(body, n), path = SLICE_LIT("/v1/chat/completions");
    struct hop_bind hb = {
        .request_id = SLICE_LIT("req-0123456789abcdef"), .target = SLICE_LIT("vllm0"), .node = node};
    char(*hops)[HOP_HEADER_MAX] = malloc((size_t)iters * HOP_HEADER_MAX);
    double t0 = now_s();
    for (int i = 0; i < iters; i++)
      hop_digest("POST", path, &b, 1, hb.digest);
    double td = (now_s() - t0) / iters;
    t0 = now_s();
    for (int i = 0; i < iters; i++) {
      hop_digest("POST", path, &b, 1, hb.digest);
      hop_sign(&kr, HOP_INFER, 1700000000, (uint64_t)i, &hb, hops[i], HOP_HEADER_MAX);
    }
    double ts = (now_s() - t0) / iters;
    struct hop_seen seen = {0};
    int bad = 0;
    t0 = now_s();
    for (int i = 0; i < iters; i++) {
      struct hop_bind v = hb;
      hop_digest("POST", path, &b, 1, v.digest);
      bad += hop_verify(&kr, &seen, HOP_INFER, 1700000001, slice_cstr(hops[i]), &v) != 0;
    }
    double tv = (now_s() - t0) / iters;
    printf("| %zu B | %.2f µs | %.2f µs | %.2f µs | %.2f GB/s |%s\n", n, td * 1e6, ts * 1e6, tv * 1e6,
           n ? (double)n / td / 1e9 : 0.0, bad ? " VERIFY FAILED" : "");
    hop_seen_free(&seen);
    free(hops);
  }
  return 0;
}
