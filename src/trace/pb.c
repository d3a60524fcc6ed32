/* Protobuf wire-format writer: the one part not inline, moving a long nested message behind its length. */
#include "trace/pb.h"

void pb_end_long(struct buf *b, size_t mark) {
  size_t len = b->len - mark;
  uint8_t tmp[10];
  size_t n = pb_put_varint(tmp, len);
  pb_room(b, n - 1);
  memmove(b->base + mark + n - 1, b->base + mark, len);
  memcpy(b->base + mark - 1, tmp, n);
  pb_grow(b, n - 1);
}
