/* A minimal protobuf writer (proto3 wire format) into a struct buf: varints, fixed64, doubles, bytes and
 * nested messages, for the few OTLP messages the exporter sends. No schema, no generated code: the caller
 * writes fields in order with their numbers. */
#ifndef IM_TRACE_PB_H
#define IM_TRACE_PB_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Wire types. */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2 };

/* pb_varint appends v as a base-128 varint. */
void pb_varint(struct buf *b, uint64_t v);
/* pb_tag appends the key of field (number) with wire type wt. */
void pb_tag(struct buf *b, uint32_t field, int wt);
/* pb_uint appends field = v as a varint field (int32/int64/uint32/uint64/bool/enum), also when v is 0. */
void pb_uint(struct buf *b, uint32_t field, uint64_t v);
/* pb_fixed64 appends field = v as 8 little-endian bytes (fixed64). */
void pb_fixed64(struct buf *b, uint32_t field, uint64_t v);
/* pb_double appends field = v (IEEE 754, little-endian). */
void pb_double(struct buf *b, uint32_t field, double v);
/* pb_bytes appends field = data[0..n) as a length-delimited field (bytes or string). */
void pb_bytes(struct buf *b, uint32_t field, const void *data, size_t n);
/* pb_begin starts a nested message in field; it returns the mark that pb_end takes, once the message's
 * fields are written. Nesting is any depth. Lengths are written minimal: one byte is kept for it, and pb_end
 * moves a message of 128 bytes or more by the extra bytes its length takes. */
size_t pb_begin(struct buf *b, uint32_t field);
void pb_end(struct buf *b, size_t mark);

#endif
