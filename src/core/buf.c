/* Growable byte buffers. */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void buf_reserve(struct buf *b, size_t n) {
  if (b->len + n + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  b->base = xrealloc(b->base, cap);
  b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->base + b->len, data, n);
  b->len += n;
  b->base[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  buf_reserve(b, 128);
  /* One pass in the common case: format into the free space, and only when it did not fit grow and redo. */
  int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    b->base[b->len] = '\0';
    return;
  }
  if ((size_t)n >= b->cap - b->len) {
    buf_reserve(b, (size_t)n);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
  }
  b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void buf_append_u64(struct buf *b, uint64_t v) {
  char tmp[20];
  int i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  buf_append(b, tmp + i, sizeof tmp - (size_t)i);
}

/* utf8_len returns the length of the well-formed UTF-8 sequence at p (1..4), or 0 when it is not one:
 * a stray continuation byte, a truncated sequence, an overlong form, a surrogate or a code point past
 * U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c == 0xE0)
    len = 3, lo = 0xA0;
  else if (c == 0xED)
    len = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF)
    len = 3;
  else if (c == 0xF0)
    len = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    len = 4;
  else if (c == 0xF4)
    len = 4, hi = 0x8F;
  else
    return 0;
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return len;
}

void buf_json_str(struct buf *b, struct slice s) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s.base;
  buf_reserve(b, s.len + 2);
  buf_append(b, "\"", 1);
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = u[i];
    switch (c) {
    case '"': buf_append(b, "\\\"", 2); break;
    case '\\': buf_append(b, "\\\\", 2); break;
    case '\n': buf_append(b, "\\n", 2); break;
    case '\r': buf_append(b, "\\r", 2); break;
    case '\t': buf_append(b, "\\t", 2); break;
    default:
      if (c < 0x20) {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        buf_append(b, e, 6);
      } else if (c < 0x80) {
        buf_append(b, &s.base[i], 1);
      } else {
        /* Input from the network (a model name, a path) may be any bytes: a JSON text must be UTF-8, so a
         * byte that does not start a well-formed sequence becomes U+FFFD. */
        size_t n = utf8_len(u + i, s.len - i);
        if (n == 0) {
          buf_append(b, "\\ufffd", 6);
        } else {
          buf_append(b, &s.base[i], n);
          i += n - 1;
        }
      }
    }
  }
  buf_append(b, "\"", 1);
}

void buf_label_value(struct buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\n') {
      buf_append(b, "\\n", 2);
      continue;
    }
    if (*s == '"' || *s == '\\') buf_append(b, "\\", 1);
    buf_append(b, s, 1);
  }
}

void buf_path_segment(struct buf *b, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
      buf_append(b, s, 1);
    else
      buf_printf(b, "%%%02X", ch);
  }
}

void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    buf_reset(b);
    return;
  }
  memmove(b->base, b->base + n, b->len - n);
  b->len -= n;
  b->base[b->len] = '\0';
}

void buf_shrink(struct buf *b, size_t keep) {
  if (b->cap <= keep || b->len + 1 > keep) return;
  if (b->len == 0) {
    buf_free(b);
    return;
  }
  char *nb = xmalloc(b->len + 1);
  memcpy(nb, b->base, b->len + 1);
  free(b->base);
  b->base = nb;
  b->cap = b->len + 1;
}

void buf_free(struct buf *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}
