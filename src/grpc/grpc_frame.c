/* gRPC message framing, grpc-timeout and grpc-message encoding. */
#include "grpc/grpc_frame.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

int grpc_frame_one(struct slice body, struct slice *msg, const char **err) {
  const uint8_t *p = (const uint8_t *)body.base;
  if (body.len < GRPC_HEADER_LEN) {
    *err = body.len ? "truncated gRPC message prefix" : "the request carries no message";
    return GRPC_INVALID_ARGUMENT;
  }
  if (p[0] > 1) {
    *err = "invalid gRPC message flags";
    return GRPC_INVALID_ARGUMENT;
  }
  if (p[0] == 1) {
    *err = "compressed messages are not supported: send them uncompressed (no grpc-encoding)";
    return GRPC_UNIMPLEMENTED;
  }
  uint32_t len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
  if (len > GRPC_MAX_MESSAGE) {
    *err = "the request message is too large";
    return GRPC_RESOURCE_EXHAUSTED;
  }
  if (body.len - GRPC_HEADER_LEN < len) {
    *err = "truncated gRPC message";
    return GRPC_INVALID_ARGUMENT;
  }
  if (body.len - GRPC_HEADER_LEN > len) {
    *err = "this method takes exactly one request message";
    return GRPC_INVALID_ARGUMENT;
  }
  *msg = slice_make(body.base + GRPC_HEADER_LEN, len);
  return GRPC_OK;
}

void grpc_frame_header(uint8_t out[GRPC_HEADER_LEN], uint32_t len) {
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

int grpc_timeout_parse(struct slice v, uint64_t *ns) {
  if (v.len < 2 || v.len > 9) return -EINVAL;
  uint64_t n = 0;
  for (size_t i = 0; i + 1 < v.len; i++) {
    if (v.base[i] < '0' || v.base[i] > '9') return -EINVAL;
    n = n * 10 + (uint64_t)(v.base[i] - '0');
  }
  uint64_t unit;
  switch (v.base[v.len - 1]) {
  case 'H': unit = 3600000000000ull; break;
  case 'M': unit = 60000000000ull; break;
  case 'S': unit = 1000000000ull; break;
  case 'm': unit = 1000000ull; break;
  case 'u': unit = 1000ull; break;
  case 'n': unit = 1; break;
  default: return -EINVAL;
  }
  *ns = n > UINT64_MAX / unit ? UINT64_MAX : n * unit;
  return 0;
}

size_t grpc_percent_encode(const char *msg, char *out, size_t cap) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
    bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
    size_t need = plain ? 1 : 3;
    if (n + need >= cap) break;
    if (plain)
      out[n++] = (char)*p;
    else
      n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
  }
  out[n] = '\0';
  return n;
}

int grpc_code_of_http(int status) {
  switch (status) {
  case 200:
  case 201: return GRPC_OK;
  case 400:
  case 413:
  case 422: return GRPC_INVALID_ARGUMENT;
  case 401: return GRPC_UNAUTHENTICATED;
  case 403: return GRPC_PERMISSION_DENIED;
  case 404: return GRPC_NOT_FOUND;
  case 409: return GRPC_FAILED_PRECONDITION;
  case 429: return GRPC_RESOURCE_EXHAUSTED;
  case 501: return GRPC_UNIMPLEMENTED;
  case 502:
  case 503: return GRPC_UNAVAILABLE;
  case 504: return GRPC_DEADLINE_EXCEEDED;
  case 507: return GRPC_RESOURCE_EXHAUSTED;
  default: return status >= 500 ? GRPC_INTERNAL : GRPC_UNKNOWN;
  }
}
