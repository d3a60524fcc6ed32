/* libFuzzer target for route/hop.c: the input, split at its first four NUL bytes into the x-infermesh-hop
 * value, the request id, the target, the body and the x-infermesh-hop-node value, goes to hop_verify and
 * hop_verify_node with a fixed keyring, node id and sender key. Forged input must never be accepted (the tag
 * is a MAC, the node signature ed25519); a header signed for the same request id, target, node and body must
 * verify exactly once, and never on another node or with another body; its node signature verifies with the
 * sender's key only. Inputs are copied to exact-size allocations so a read past them is caught. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
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
  char *h, *r, *t, *bd, *ns;
  struct slice hop = part(&p, end, &h), rid = part(&p, end, &r), target = part(&p, end, &t),
               body = part(&p, end, &bd), nsig = part(&p, end, &ns);
  static struct identity sender, stranger;
  if (!sender.pk[0]) {
    uint8_t seed[32];
    memset(seed, 0x33, sizeof seed);
    crypto_sign_seed_keypair(sender.pk, sender.sk, seed);
    memset(seed, 0x44, sizeof seed);
    crypto_sign_seed_keypair(stranger.pk, stranger.sk, seed);
  }
  struct hop_bind fb = {.request_id = rid, .target = target, .node = self};
  hop_digest("POST", SLICE_LIT(PATH), &body, 1, fb.digest);
  CHECK(hop_verify_node(sender.pk, HOP_INFER, hop, &fb, nsig) == -EACCES); /* no forged node signature */
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
  char nsig_ok[HOP_NODE_SIG_MAX];
  hop_sign_node(&sender, HOP_INFER, s, &b, nsig_ok, sizeof nsig_ok);
  CHECK(hop_verify_node(sender.pk, HOP_INFER, s, &b, slice_cstr(nsig_ok)) == 0);
  CHECK(hop_verify_node(stranger.pk, HOP_INFER, s, &b, slice_cstr(nsig_ok)) == -EACCES);
  if (!slice_eq(nsig, slice_cstr(nsig_ok)))
    CHECK(hop_verify_node(sender.pk, HOP_INFER, s, &b, nsig) == -EACCES);
  CHECK(verify(&kr, &seen, NOW + 1, s, r2, t2, self, body) == 0);
  CHECK(verify(&kr, &seen, NOW + 2, s, r2, t2, self, body) == -EALREADY);
  hop_seen_free(&seen);
  hop_seen_free(&seen_other);
  free(h);
  free(r);
  free(t);
  free(bd);
  free(ns);
  return 0;
}
