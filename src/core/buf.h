/* Growable byte buffers for building output (responses, metrics, JSON). */
#ifndef IM_CORE_BUF_H
#define IM_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* A buf owns base (heap) once anything was appended; zero-initialize it, release with buf_free.
 * base is always NUL-terminated after an append, so it can be printed; len excludes the NUL. */
struct buf {
  char *base;
  size_t len;
  size_t cap;
};

/* buf_reserve makes room for n more bytes. */
void buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *data, size_t n);
static inline void buf_append_slice(struct buf *b, struct slice s) { buf_append(b, s.base, s.len); }
void buf_puts(struct buf *b, const char *s);
/* buf_printf appends formatted text (vsnprintf, bounded). */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* buf_append_u64 appends v in decimal (no printf on hot paths). */
void buf_append_u64(struct buf *b, uint64_t v);
/* buf_json_str appends s as a JSON string literal with quotes and escapes; bytes of s that are not
 * well-formed UTF-8 come out as \ufffd, so the result is valid JSON whatever s holds. */
void buf_json_str(struct buf *b, struct slice s);
/* buf_label_value appends s escaped as a Prometheus label value (\\, \", \n), without quotes. */
void buf_label_value(struct buf *b, const char *s);
/* buf_path_segment appends s percent-encoded as one URL path segment (all but A-Z a-z 0-9 - . _ ~, so a '/'
 * in a name stays inside the segment). */
void buf_path_segment(struct buf *b, const char *s);
/* buf_consume drops the first n bytes (memmove), keeping the rest. */
void buf_consume(struct buf *b, size_t n);
static inline void buf_reset(struct buf *b) {
  b->len = 0;
  if (b->base) b->base[0] = '\0';
}
static inline struct slice buf_slice(const struct buf *b) { return slice_make(b->base, b->len); }
/* buf_shrink gives memory back: when b holds more than `keep` bytes of capacity but its content (and NUL)
 * fits in `keep`, it is moved to an allocation of just its size (freed when empty). Slices into b are
 * invalidated. */
void buf_shrink(struct buf *b, size_t keep);
void buf_free(struct buf *b);

#endif
