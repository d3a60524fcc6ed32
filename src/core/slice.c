/* Slice helpers: comparisons and bounded number parsing without NUL-terminated input. */
#include "core/slice.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

bool slice_eq_nocase(struct slice a, const char *z) {
  size_t n = strlen(z);
  if (a.len != n) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a.base[i], y = (unsigned char)z[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
    if (x != y) return false;
  }
  return true;
}

bool slice_starts(struct slice a, const char *prefix) {
  size_t n = strlen(prefix);
  return a.len >= n && memcmp(a.base, prefix, n) == 0;
}

struct slice slice_trim(struct slice a) {
  while (a.len && (a.base[0] == ' ' || a.base[0] == '\t')) a.base++, a.len--;
  while (a.len && (a.base[a.len - 1] == ' ' || a.base[a.len - 1] == '\t')) a.len--;
  return a;
}

int slice_to_u64(struct slice a, uint64_t *out) {
  uint64_t v = 0;
  if (a.len == 0 || a.len > 20) return -EINVAL;
  for (size_t i = 0; i < a.len; i++) {
    unsigned d = (unsigned)(a.base[i] - '0');
    if (d > 9) return -EINVAL;
    if (v > (UINT64_MAX - d) / 10) return -EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int slice_to_double(struct slice a, double *out) {
  char tmp[64];
  char *end;
  if (a.len == 0 || a.len >= sizeof tmp) return -EINVAL;
  memcpy(tmp, a.base, a.len);
  tmp[a.len] = '\0';
  if (strcmp(tmp, "+Inf") == 0 || strcmp(tmp, "Inf") == 0) return *out = INFINITY, 0;
  if (strcmp(tmp, "-Inf") == 0) return *out = -INFINITY, 0;
  if (strcmp(tmp, "NaN") == 0) return *out = NAN, 0;
  errno = 0;
  double v = strtod(tmp, &end);
  if (end != tmp + a.len || errno == ERANGE) return -EINVAL;
  *out = v;
  return 0;
}

char *slice_dup(struct slice a) {
  char *s = xmalloc(a.len + 1);
  if (a.len) memcpy(s, a.base, a.len);
  s[a.len] = '\0';
  return s;
}

size_t str_copy(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  size_t m = n < cap - 1 ? n : cap - 1;
  memmove(dst, src, m);
  dst[m] = '\0';
  return n;
}
