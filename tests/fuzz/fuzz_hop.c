/* libFuzzer target for route/hop.c: the input, split at its first two NUL bytes into the x-infermesh-hop
 * value, the request id and the target, goes to router_hop_verify with a fixed keyring. Forged input must
 * never be accepted (the tag is a MAC); and a header signed for the same request id and target must verify
 * exactly once. Inputs are copied to exact-size allocations so a read past them is caught. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/hop_seen.h"
#include "route/router.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000LL

static struct slice part(const uint8_t **p, const uint8_t *end, char **copy) {
  const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
  size_t len = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
  *copy = malloc(len ? len : 1);
  memcpy(*copy, *p, len);
  *p += len + (nul ? 1 : 0);
  return slice_make(*copy, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], 0x42, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  struct hop_seen seen = {.max_slots = 1024};
  const uint8_t *p = data, *end = data + size;
  char *h, *r, *t;
  struct slice hop = part(&p, end, &h), rid = part(&p, end, &r), target = part(&p, end, &t);
  int rc = router_hop_verify(&kr, &seen, HOP_INFER, NOW, hop, rid, target);
  CHECK(rc == -EACCES); /* nothing made without the key passes */
  /* The same request id and target, signed: accepted once, then a replay. */
  char rs[64], ts[128], sig[HOP_HEADER_MAX];
  size_t rl = rid.len < sizeof rs - 1 ? rid.len : sizeof rs - 1,
         tl = target.len < sizeof ts - 1 ? target.len : sizeof ts - 1;
  memcpy(rs, rid.base, rl);
  rs[rl] = '\0';
  memcpy(ts, target.base, tl);
  ts[tl] = '\0';
  router_hop_sign(&kr, HOP_INFER, NOW, size, rs, ts, sig, sizeof sig);
  CHECK(router_hop_verify(&kr, &seen, HOP_INFER, NOW + 1, slice_cstr(sig), slice_cstr(rs), slice_cstr(ts)) ==
        0);
  CHECK(router_hop_verify(&kr, &seen, HOP_INFER, NOW + 2, slice_cstr(sig), slice_cstr(rs), slice_cstr(ts)) ==
        -EALREADY);
  hop_seen_free(&seen);
  free(h);
  free(r);
  free(t);
  return 0;
}
