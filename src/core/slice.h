/* Slices: borrowed {base,len} views of bytes owned by someone else. */
#ifndef IM_CORE_SLICE_H
#define IM_CORE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A slice never owns its bytes and is not NUL-terminated; whoever made it says how long it stays valid. */
struct slice {
  const char *base;
  size_t len;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})

static inline struct slice slice_make(const char *base, size_t len) { return (struct slice){base, len}; }
static inline struct slice slice_cstr(const char *s) { return (struct slice){s, s ? strlen(s) : 0}; }
static inline bool slice_eq(struct slice a, struct slice b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}
static inline bool slice_eqz(struct slice a, const char *z) { return slice_eq(a, slice_cstr(z)); }

/* slice_eq_nocase compares ASCII case-insensitively (HTTP header names). */
bool slice_eq_nocase(struct slice a, const char *z);
/* slice_starts compares a prefix. */
bool slice_starts(struct slice a, const char *prefix);
/* slice_trim drops leading and trailing spaces and tabs. */
struct slice slice_trim(struct slice a);
/* slice_to_u64 parses a whole slice as a decimal unsigned integer; 0 or -EINVAL (empty, junk, overflow). */
int slice_to_u64(struct slice a, uint64_t *out);
/* slice_to_double parses a whole slice as a floating-point number (also NaN, +Inf, -Inf); 0 or -EINVAL. */
int slice_to_double(struct slice a, double *out);
/* slice_dup returns a NUL-terminated heap copy the caller frees. Aborts on allocation failure. */
char *slice_dup(struct slice a);
/* str_copy copies src into dst (capacity cap > 0), truncating, always NUL-terminating; returns strlen(src). */
size_t str_copy(char *dst, size_t cap, const char *src);

#endif
