/* Agent-to-agent forwarding: signing and checking x-infermesh-hop with the cluster keyring. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "route/router.h"

/* The signed text: "v1.<purpose>.<ts>.<request id>.<target>". */
static size_t hop_text(char *out, size_t cap, const char *purpose, int64_t ts, struct slice request_id,
                       struct slice target) {
  int n = snprintf(out, cap, "v1.%s.%lld.%.*s.%.*s", purpose, (long long)ts, (int)request_id.len, request_id.base,
                   (int)target.len, target.base);
  return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void router_hop_sign(const struct keyring *kr, const char *purpose, int64_t now_s, const char *request_id,
                     const char *target, char *out, size_t cap) {
  char text[256];
  uint8_t tag[32];
  size_t n = hop_text(text, sizeof text, purpose, now_s, slice_cstr(request_id), slice_cstr(target));
  keyring_auth_tag(kr, (const uint8_t *)text, n, tag);
  int off = snprintf(out, cap, "v1.%lld.", (long long)now_s);
  for (int i = 0; i < 32 && off > 0 && (size_t)off + 2 < cap; i++) off += snprintf(out + off, cap - (size_t)off, "%02x", tag[i]);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int router_hop_verify(const struct keyring *kr, const char *purpose, int64_t now_s, struct slice hop,
                      struct slice request_id, struct slice target) {
  if (!kr || hop.len < 4 || memcmp(hop.base, "v1.", 3) != 0) return -EACCES;
  const char *p = hop.base + 3, *end = hop.base + hop.len;
  const char *dot = memchr(p, '.', (size_t)(end - p));
  uint64_t ts;
  if (!dot || slice_to_u64(slice_make(p, (size_t)(dot - p)), &ts) != 0) return -EACCES;
  if ((size_t)(end - dot - 1) != 64) return -EACCES;
  uint8_t tag[32];
  for (int i = 0; i < 32; i++) {
    int hi = hexval(dot[1 + 2 * i]), lo = hexval(dot[2 + 2 * i]);
    if (hi < 0 || lo < 0) return -EACCES;
    tag[i] = (uint8_t)(hi << 4 | lo);
  }
  char text[256];
  size_t n = hop_text(text, sizeof text, purpose, (int64_t)ts, request_id, target);
  if (!keyring_auth_verify(kr, (const uint8_t *)text, n, tag)) return -EACCES;
  int64_t skew = now_s - (int64_t)ts;
  if (skew > HOP_MAX_SKEW_S || skew < -HOP_MAX_SKEW_S) return -ETIMEDOUT;
  return 0;
}
