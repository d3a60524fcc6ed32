/* Agent-to-agent forwarding: signing and checking x-infermesh-hop with the cluster keyring (route/hop.h). */
#include "route/hop.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HOP_TEXT_MAX 768

/* The signed text (route/hop.h):
 *   "v3.<purpose>.<ts>.<nonce>.<length of request id>:<request id>.<receiver>.<digest>.<target>"
 * (nonce: 16 hex digits; receiver and digest: 64 each, fixed length, so with the length of the request id
 * every split is unambiguous); 0 when it does not fit in cap (never signed truncated: what was cut off would
 * not be bound). */
static size_t hop_text(char *out, size_t cap, const char *purpose, int64_t ts, struct slice nonce,
                       const struct hop_bind *b) {
  char node[2 * HOP_NODE_LEN + 1], digest[2 * HOP_DIGEST_LEN + 1];
  sodium_bin2hex(node, sizeof node, b->node, HOP_NODE_LEN);
  sodium_bin2hex(digest, sizeof digest, b->digest, HOP_DIGEST_LEN);
  int n = snprintf(out, cap, "v3.%s.%lld.%.*s.%zu:%.*s.%s.%s.%.*s", purpose, (long long)ts, (int)nonce.len,
                   nonce.base, b->request_id.len, (int)b->request_id.len, b->request_id.base, node, digest,
                   (int)b->target.len, b->target.base);
  return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void hop_digest(const char *method, struct slice request_target, const struct slice *body, int nbody,
                       uint8_t out[HOP_DIGEST_LEN]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, HOP_DIGEST_LEN);
  crypto_generichash_update(&st, (const unsigned char *)method, strlen(method));
  crypto_generichash_update(&st, (const unsigned char *)" ", 1);
  crypto_generichash_update(&st, (const unsigned char *)request_target.base, request_target.len);
  crypto_generichash_update(&st, (const unsigned char *)"\n", 1);
  for (int i = 0; i < nbody; i++)
    if (body[i].len) crypto_generichash_update(&st, (const unsigned char *)body[i].base, body[i].len);
  crypto_generichash_final(&st, out, HOP_DIGEST_LEN);
}

void hop_sign(const struct keyring *kr, const char *purpose, int64_t now_s, uint64_t nonce,
                     const struct hop_bind *b, char *out, size_t cap) {
  char text[HOP_TEXT_MAX], nhex[17];
  uint8_t tag[32];
  if (cap) out[0] = '\0';
  if (!b->node) return;
  snprintf(nhex, sizeof nhex, "%016llx", (unsigned long long)nonce);
  size_t n = hop_text(text, sizeof text, purpose, now_s, slice_make(nhex, 16), b);
  if (!n) return; /* an empty header: the receiver refuses it */
  keyring_auth_tag(kr, (const uint8_t *)text, n, tag);
  int off = snprintf(out, cap, "v3.%lld.%s.", (long long)now_s, nhex);
  if (off < 0 || (size_t)off + 2 * sizeof tag >= cap) { /* never a cut-off tag */
    if (cap) out[0] = '\0';
    return;
  }
  sodium_bin2hex(out + off, cap - (size_t)off, tag, sizeof tag);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* hop_parse splits a header value "v3.<ts>.<nonce 16 hex>.<tag 64 hex>": 0 with *ts, *nonce (16 characters
 * in hop) and tag; -EPROTO (an older version) or -EACCES (malformed). */
static int hop_parse(struct slice hop, uint64_t *ts, const char **nonce, uint8_t tag[32]) {
  if (hop.len >= 3 && (memcmp(hop.base, "v1.", 3) == 0 || memcmp(hop.base, "v2.", 3) == 0)) return -EPROTO;
  if (hop.len < 4 || memcmp(hop.base, "v3.", 3) != 0) return -EACCES;
  const char *p = hop.base + 3, *end = hop.base + hop.len;
  const char *dot = memchr(p, '.', (size_t)(end - p));
  if (!dot || slice_to_u64(slice_make(p, (size_t)(dot - p)), ts) != 0 || *ts > INT64_MAX) return -EACCES;
  /* then "<nonce 16 hex>.<tag 64 hex>" */
  const char *n = dot + 1;
  if (end - n != 16 + 1 + 64 || n[16] != '.') return -EACCES;
  for (int i = 0; i < 16; i++)
    if (hexval(n[i]) < 0) return -EACCES;
  const char *hex = n + 17;
  for (int i = 0; i < 32; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -EACCES;
    tag[i] = (uint8_t)(hi << 4 | lo);
  }
  *nonce = n;
  return 0;
}

int hop_verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now_s,
                      struct slice hop, const struct hop_bind *b) {
  uint64_t ts;
  const char *nonce;
  uint8_t tag[32];
  int prc = hop_parse(hop, &ts, &nonce, tag);
  if (prc == -EPROTO) return -EPROTO;
  if (!kr || !b->node || prc != 0) return -EACCES;
  char text[HOP_TEXT_MAX];
  size_t n = hop_text(text, sizeof text, purpose, (int64_t)ts, slice_make(nonce, 16), b);
  if (!n || !keyring_auth_verify(kr, (const uint8_t *)text, n, tag)) return -EACCES;
  int64_t skew = now_s - (int64_t)ts;
  if (skew > HOP_MAX_SKEW_S || skew < -HOP_MAX_SKEW_S) return -ETIMEDOUT;
  /* Authentic and fresh: accept it once. It stays refusable by its timestamp after ts + HOP_MAX_SKEW_S. */
  uint64_t key;
  memcpy(&key, tag, sizeof key);
  int rc = hop_seen_add(seen, key, (int64_t)ts + HOP_MAX_SKEW_S, now_s);
  return rc == 0 ? 0 : rc == -EALREADY ? -EALREADY : -EBUSY;
}

/* node_text writes "node." and the hop text of the header value hop for purpose and b into out: its length,
 * or 0 (hop does not parse, no b->node, too long). */
static size_t node_text(char *out, size_t cap, const char *purpose, struct slice hop, const struct hop_bind *b) {
  uint64_t ts;
  const char *nonce;
  uint8_t tag[32];
  if (!b->node || cap < 5 || hop_parse(hop, &ts, &nonce, tag) != 0) return 0;
  memcpy(out, "node.", 5);
  size_t n = hop_text(out + 5, cap - 5, purpose, (int64_t)ts, slice_make(nonce, 16), b);
  return n ? 5 + n : 0;
}

void hop_sign_node(const struct identity *id, const char *purpose, struct slice hop, const struct hop_bind *b,
                   char *out, size_t cap) {
  char text[HOP_TEXT_MAX];
  uint8_t sig[crypto_sign_BYTES];
  if (cap) out[0] = '\0';
  size_t n = node_text(text, sizeof text, purpose, hop, b);
  if (!n || cap < HOP_NODE_SIG_MAX) return;
  crypto_sign_detached(sig, NULL, (const uint8_t *)text, n, id->sk);
  sodium_bin2hex(out, cap, sig, sizeof sig);
}

int hop_verify_node(const uint8_t *pk, const char *purpose, struct slice hop, const struct hop_bind *b,
                    struct slice sig) {
  char text[HOP_TEXT_MAX];
  uint8_t bin[crypto_sign_BYTES];
  if (sig.len != 2 * sizeof bin) return -EACCES;
  for (size_t i = 0; i < sizeof bin; i++) {
    int hi = hexval(sig.base[2 * i]), lo = hexval(sig.base[2 * i + 1]);
    if (hi < 0 || lo < 0) return -EACCES;
    bin[i] = (uint8_t)(hi << 4 | lo);
  }
  size_t n = node_text(text, sizeof text, purpose, hop, b);
  if (!n || crypto_sign_verify_detached(bin, (const uint8_t *)text, n, pk) != 0) return -EACCES;
  return 0;
}

const char *hop_refusal(int rc) {
  switch (rc) {
  case -ETIMEDOUT: return "forwarded request outside the allowed clock skew: check the nodes' clocks";
  case -EALREADY: return "forwarded request already accepted once (a replayed signature)";
  case -EPROTO:
    return "forwarded request signed in an older format (x-infermesh-hop v1/v2; this agent accepts v3 "
           "only): run the same infermesh version on every node";
  default: return "forwarded request not signed with this cluster's key for this node and this request body";
  }
}
