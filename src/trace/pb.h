/* A minimal protobuf writer (proto3 wire format) into a struct buf: varints, fixed64, doubles, bytes and
 * nested messages, for the few OTLP messages the exporter sends. No schema, no generated code: the caller
 * writes fields in order with their numbers. Inline: a span is a few dozen of these calls. */
#ifndef IM_TRACE_PB_H
#define IM_TRACE_PB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"

/* Wire types. */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2 };

/* pb_room makes room for n more bytes in b and returns where they go (buf_reserve only when it must). */
static inline uint8_t *pb_room(struct buf *b, size_t n) {
  if (b->len + n + 1 > b->cap) buf_reserve(b, n);
  return (uint8_t *)b->base + b->len;
}

/* pb_put_varint writes v as a base-128 varint at out (room for 10 bytes) and returns its length. */
static inline size_t pb_put_varint(uint8_t *out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

/* pb_grow counts n bytes written at pb_room's pointer, keeping buf's NUL after them. */
static inline void pb_grow(struct buf *b, size_t n) {
  b->len += n;
  b->base[b->len] = '\0';
}

/* pb_varint appends v as a varint. */
static inline void pb_varint(struct buf *b, uint64_t v) { pb_grow(b, pb_put_varint(pb_room(b, 10), v)); }

/* pb_tag appends the key of field (number) with wire type wt. */
static inline void pb_tag(struct buf *b, uint32_t field, int wt) {
  pb_varint(b, (uint64_t)field << 3 | (uint64_t)wt);
}

/* pb_uint appends field = v as a varint field (int32/int64/uint32/uint64/bool/enum), also when v is 0. */
static inline void pb_uint(struct buf *b, uint32_t field, uint64_t v) {
  uint8_t *p = pb_room(b, 20);
  size_t n = pb_put_varint(p, (uint64_t)field << 3 | PB_VARINT);
  pb_grow(b, n + pb_put_varint(p + n, v));
}

/* pb_fixed64 appends field = v as 8 little-endian bytes (fixed64). */
static inline void pb_fixed64(struct buf *b, uint32_t field, uint64_t v) {
  uint8_t *p = pb_room(b, 18);
  size_t n = pb_put_varint(p, (uint64_t)field << 3 | PB_I64);
  for (int i = 0; i < 8; i++)
    p[n + i] = (uint8_t)(v >> (8 * i));
  pb_grow(b, n + 8);
}

/* pb_double appends field = v (IEEE 754, little-endian). */
static inline void pb_double(struct buf *b, uint32_t field, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  pb_fixed64(b, field, bits);
}

/* pb_bytes appends field = data[0..n) as a length-delimited field (bytes or string). */
static inline void pb_bytes(struct buf *b, uint32_t field, const void *data, size_t n) {
  uint8_t *p = pb_room(b, 20 + n);
  size_t h = pb_put_varint(p, (uint64_t)field << 3 | PB_LEN);
  h += pb_put_varint(p + h, n);
  if (n) memcpy(p + h, data, n);
  pb_grow(b, h + n);
}

/* pb_begin starts a nested message in field; it returns the mark that pb_end takes, once the message's
 * fields are written. Nesting is any depth. Lengths are written minimal: one byte is kept for it (most
 * messages here, attributes and values, are shorter than 128 bytes), and pb_end moves a message of 128 bytes
 * or more by the extra bytes its length takes. */
static inline size_t pb_begin(struct buf *b, uint32_t field) {
  uint8_t *p = pb_room(b, 11);
  size_t n = pb_put_varint(p, (uint64_t)field << 3 | PB_LEN);
  p[n] = 0;
  pb_grow(b, n + 1);
  return b->len;
}

/* pb_end_long is pb_end's path for a message of 128 bytes or more. */
void pb_end_long(struct buf *b, size_t mark);

static inline void pb_end(struct buf *b, size_t mark) {
  size_t len = b->len - mark;
  if (len < 0x80)
    b->base[mark - 1] = (char)len;
  else
    pb_end_long(b, mark);
}

#endif
