/* libFuzzer target for route/hop.c: the input, split at its first three NUL bytes into the x-infermesh-hop
 * value, the request id, the target and the body, goes to hop_verify with a fixed keyring and node id.
 * Forged input must never be accepted (the tag is a MAC); and a header signed for the same request id,
 * target, node and body must verify exactly once, and never on another node or with another body. Inputs are
 * copied to exact-size allocations so a read past them is caught. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/hop.h"
#include "route/hop_seen.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000LL
#define PATH "/v1/chat/completions"

static struct slice part(const uint8_t **p, const uint8_t *end, char **copy) {
  const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
  size_t len = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
  *copy = malloc(len ? len : 1);
  memcpy(*copy, *p, len);
  *p += len + (nul ? 1 : 0);
  return slice_make(*copy, len);
}

static int verify(const struct keyring *kr, struct hop_seen *seen, int64_t now, struct slice hop,
                  struct slice rid, struct slice target, const uint8_t *node, struct slice body) {
  struct hop_bind b = {.request_id = rid, .target = target, .node = node};
  hop_digest("POST", SLICE_LIT(PATH), &body, 1, b.digest);
  return hop_verify(kr, seen, HOP_INFER, now, hop, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], 0x42, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  uint8_t self[HOP_NODE_LEN], other[HOP_NODE_LEN];
  memset(self, 0x11, sizeof self);
  memset(other, 0x22, sizeof other);
  struct hop_seen seen = {.max_slots = 1024}, seen_other = {.max_slots = 1024};
  const uint8_t *p = data, *end = data + size;
  char *h, *r, *t, *bd;
  struct slice hop = part(&p, end, &h), rid = part(&p, end, &r), target = part(&p, end, &t),
               body = part(&p, end, &bd);
  int rc = verify(&kr, &seen, NOW, hop, rid, target, self, body);
  CHECK(rc == -EACCES || rc == -EPROTO); /* nothing made without the key passes */
  CHECK(rc == -EACCES ||
        (hop.len >= 3 && (memcmp(hop.base, "v1.", 3) == 0 || memcmp(hop.base, "v2.", 3) == 0)));
  /* The same request id, target and body, signed for this node: refused on another node and with another
   * body, then accepted once, then a replay. */
  char rs[64], ts[128], sig[HOP_HEADER_MAX];
  size_t rl = rid.len < sizeof rs - 1 ? rid.len : sizeof rs - 1,
         tl = target.len < sizeof ts - 1 ? target.len : sizeof ts - 1;
  memcpy(rs, rid.base, rl);
  rs[rl] = '\0';
  memcpy(ts, target.base, tl);
  ts[tl] = '\0';
  struct hop_bind b = {.request_id = slice_cstr(rs), .target = slice_cstr(ts), .node = self};
  hop_digest("POST", SLICE_LIT(PATH), &body, 1, b.digest);
  hop_sign(&kr, HOP_INFER, NOW, size, &b, sig, sizeof sig);
  struct slice s = slice_cstr(sig), r2 = slice_cstr(rs), t2 = slice_cstr(ts);
  CHECK(verify(&kr, &seen_other, NOW + 1, s, r2, t2, other, body) == -EACCES);
  if (body.len)
    CHECK(verify(&kr, &seen, NOW + 1, s, r2, t2, self, slice_make(body.base, body.len - 1)) == -EACCES);
  CHECK(verify(&kr, &seen, NOW + 1, s, r2, t2, self, body) == 0);
  CHECK(verify(&kr, &seen, NOW + 2, s, r2, t2, self, body) == -EALREADY);
  hop_seen_free(&seen);
  hop_seen_free(&seen_other);
  free(h);
  free(r);
  free(t);
  free(bd);
  return 0;
}
