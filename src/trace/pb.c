/* Protobuf wire-format writer. */
#include "trace/pb.h"

#include <string.h>

static size_t varint_put(uint8_t out[10], uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

void pb_varint(struct buf *b, uint64_t v) {
  uint8_t tmp[10];
  buf_append(b, tmp, varint_put(tmp, v));
}

void pb_tag(struct buf *b, uint32_t field, int wt) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wt); }

void pb_uint(struct buf *b, uint32_t field, uint64_t v) {
  pb_tag(b, field, PB_VARINT);
  pb_varint(b, v);
}

void pb_fixed64(struct buf *b, uint32_t field, uint64_t v) {
  uint8_t le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (uint8_t)(v >> (8 * i));
  pb_tag(b, field, PB_I64);
  buf_append(b, le, 8);
}

void pb_double(struct buf *b, uint32_t field, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  pb_fixed64(b, field, bits);
}

void pb_bytes(struct buf *b, uint32_t field, const void *data, size_t n) {
  pb_tag(b, field, PB_LEN);
  pb_varint(b, n);
  buf_append(b, data, n);
}

size_t pb_begin(struct buf *b, uint32_t field) {
  pb_tag(b, field, PB_LEN);
  return b->len; /* the message starts here; its length goes in front of it at pb_end */
}

void pb_end(struct buf *b, size_t mark) {
  uint8_t tmp[10];
  size_t len = b->len - mark;
  size_t n = varint_put(tmp, len);
  buf_reserve(b, n);
  memmove(b->base + mark + n, b->base + mark, len);
  memcpy(b->base + mark, tmp, n);
  b->len += n;
  b->base[b->len] = '\0'; /* as buf keeps it */
}
