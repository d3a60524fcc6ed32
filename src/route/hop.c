/* Agent-to-agent forwarding: signing and checking x-infermesh-hop with the cluster keyring. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "route/router.h"

#define HOP_TEXT_MAX 512

/* The signed text: "v2.<purpose>.<ts>.<nonce>.<length of request id>:<request id>.<target>" (nonce: 16 hex
 * digits; the length makes the split between request id and target unambiguous); 0 when it does
 * not fit in cap (never signed truncated: what was cut off would not be bound). */
static size_t hop_text(char *out, size_t cap, const char *purpose, int64_t ts, struct slice nonce,
                       struct slice request_id, struct slice target) {
  int n = snprintf(out, cap, "v2.%s.%lld.%.*s.%zu:%.*s.%.*s", purpose, (long long)ts, (int)nonce.len, nonce.base,
                   request_id.len, (int)request_id.len, request_id.base, (int)target.len, target.base);
  return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void router_hop_sign(const struct keyring *kr, const char *purpose, int64_t now_s, uint64_t nonce,
                     const char *request_id, const char *target, char *out, size_t cap) {
  char text[HOP_TEXT_MAX], nhex[17];
  uint8_t tag[32];
  if (cap) out[0] = '\0';
  snprintf(nhex, sizeof nhex, "%016llx", (unsigned long long)nonce);
  size_t n = hop_text(text, sizeof text, purpose, now_s, slice_make(nhex, 16), slice_cstr(request_id),
                      slice_cstr(target));
  if (!n) return; /* an empty header: the receiver refuses it */
  keyring_auth_tag(kr, (const uint8_t *)text, n, tag);
  int off = snprintf(out, cap, "v2.%lld.%s.", (long long)now_s, nhex);
  if (off < 0 || (size_t)off + 2 * sizeof tag >= cap) { /* never a cut-off tag */
    if (cap) out[0] = '\0';
    return;
  }
  for (size_t i = 0; i < sizeof tag; i++) off += snprintf(out + off, cap - (size_t)off, "%02x", tag[i]);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int router_hop_verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now_s,
                      struct slice hop, struct slice request_id, struct slice target) {
  if (!kr || hop.len < 4 || memcmp(hop.base, "v2.", 3) != 0) return -EACCES;
  const char *p = hop.base + 3, *end = hop.base + hop.len;
  const char *dot = memchr(p, '.', (size_t)(end - p));
  uint64_t ts;
  if (!dot || slice_to_u64(slice_make(p, (size_t)(dot - p)), &ts) != 0 || ts > INT64_MAX) return -EACCES;
  /* then "<nonce 16 hex>.<tag 64 hex>" */
  const char *nonce = dot + 1;
  if (end - nonce != 16 + 1 + 64 || nonce[16] != '.') return -EACCES;
  for (int i = 0; i < 16; i++)
    if (hexval(nonce[i]) < 0) return -EACCES;
  const char *hex = nonce + 17;
  uint8_t tag[32];
  for (int i = 0; i < 32; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -EACCES;
    tag[i] = (uint8_t)(hi << 4 | lo);
  }
  char text[HOP_TEXT_MAX];
  size_t n = hop_text(text, sizeof text, purpose, (int64_t)ts, slice_make(nonce, 16), request_id, target);
  if (!n || !keyring_auth_verify(kr, (const uint8_t *)text, n, tag)) return -EACCES;
  int64_t skew = now_s - (int64_t)ts;
  if (skew > HOP_MAX_SKEW_S || skew < -HOP_MAX_SKEW_S) return -ETIMEDOUT;
  /* Authentic and fresh: accept it once. It stays refusable by its timestamp after ts + HOP_MAX_SKEW_S. */
  uint64_t key;
  memcpy(&key, tag, sizeof key);
  int rc = hop_seen_add(seen, key, (int64_t)ts + HOP_MAX_SKEW_S, now_s);
  return rc == 0 ? 0 : rc == -EALREADY ? -EALREADY : -EBUSY;
}
