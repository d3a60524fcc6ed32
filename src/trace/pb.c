/* Protobuf wire-format writer. */
#include "trace/pb.h"

#include <string.h>

/* Append n bytes that fit in the room reserved; keep buf's NUL after them. */
static inline uint8_t *room(struct buf *b, size_t n) {
  buf_reserve(b, n);
  return (uint8_t *)b->base + b->len;
}

static inline size_t varint_put(uint8_t *out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

static inline void grow(struct buf *b, size_t n) {
  b->len += n;
  b->base[b->len] = '\0'; /* as buf keeps it */
}

void pb_varint(struct buf *b, uint64_t v) { grow(b, varint_put(room(b, 10), v)); }

void pb_tag(struct buf *b, uint32_t field, int wt) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wt); }

void pb_uint(struct buf *b, uint32_t field, uint64_t v) {
  uint8_t *p = room(b, 20);
  size_t n = varint_put(p, (uint64_t)field << 3 | PB_VARINT);
  grow(b, n + varint_put(p + n, v));
}

void pb_fixed64(struct buf *b, uint32_t field, uint64_t v) {
  uint8_t *p = room(b, 18);
  size_t n = varint_put(p, (uint64_t)field << 3 | PB_I64);
  for (int i = 0; i < 8; i++)
    p[n + i] = (uint8_t)(v >> (8 * i));
  grow(b, n + 8);
}

void pb_double(struct buf *b, uint32_t field, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  pb_fixed64(b, field, bits);
}

void pb_bytes(struct buf *b, uint32_t field, const void *data, size_t n) {
  uint8_t *p = room(b, 20 + n);
  size_t h = varint_put(p, (uint64_t)field << 3 | PB_LEN);
  h += varint_put(p + h, n);
  if (n) memcpy(p + h, data, n);
  grow(b, h + n);
}

/* A nested message gets one byte for its length up front: most (attributes, values, status) are shorter than
 * 128 bytes, so pb_end only writes that byte; a longer one is moved by the extra bytes its length needs. */
size_t pb_begin(struct buf *b, uint32_t field) {
  uint8_t *p = room(b, 11);
  size_t n = varint_put(p, (uint64_t)field << 3 | PB_LEN);
  p[n] = 0;
  grow(b, n + 1);
  return b->len; /* the message starts here */
}

void pb_end(struct buf *b, size_t mark) {
  size_t len = b->len - mark;
  if (len < 0x80) {
    b->base[mark - 1] = (char)len;
    return;
  }
  uint8_t tmp[10];
  size_t n = varint_put(tmp, len);
  buf_reserve(b, n - 1);
  memmove(b->base + mark + n - 1, b->base + mark, len);
  memcpy(b->base + mark - 1, tmp, n);
  grow(b, n - 1);
}
