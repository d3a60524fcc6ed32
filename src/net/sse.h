/* Incremental Server-Sent Events frame splitter: relays an upstream event stream frame by frame, byte-exact. */
#ifndef IM_NET_SSE_H
#define IM_NET_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/slice.h"

#define SSE_DEFAULT_MAX_FRAME ((size_t)1 << 20)

/* One parser per stream. Zero-initialize it, optionally set max_frame (0 means SSE_DEFAULT_MAX_FRAME), feed it
 * with sse_feed, and release it with sse_parser_free. The fields after max_frame are private.
 *
 * A frame is one event exactly as it arrived: its field and comment (":") lines and the blank line that ends
 * it, with their original line endings (LF, CRLF or CR, as the SSE spec allows, mixed freely). Every input
 * byte belongs to exactly one frame, so writing the frames out in order reproduces the stream; a blank line
 * with nothing before it is a frame of its own. Memory: pending holds at most one partial frame (at most
 * max_frame bytes) plus, while a multi-line data value is delivered, that value. */
struct sse_parser {
  struct buf pending; /* bytes of the frame still incomplete at the end of the last feed */
  size_t max_frame;   /* largest frame accepted, in bytes, terminating blank line included */
  bool in_line;       /* private: the current line has bytes */
  bool after_cr;      /* private: the last byte was a CR ending a line (an LF next is part of it) */
  bool cr_blank;      /* private: ... and that CR ended a blank line, so the frame ends at or after it */
  bool started;       /* private: the first frame was delivered (only it may begin with a UTF-8 BOM) */
};

/* Called once per complete frame, in stream order. frame is the raw event bytes including the terminating
 * blank line; data is the value of its "data" field with one leading space removed ("data" alone gives an
 * empty value). When a frame has several data lines, data is their values joined with "\n", as the spec
 * defines, built in parser-owned memory. A frame without data lines (comments only, a bare blank line, an
 * event: or id: line) has empty data. Both slices are valid only during the call: they point into the bytes
 * given to this sse_feed (a frame that arrived whole in one feed is not copied) or into p->pending.
 * Return 0 to go on; anything else stops sse_feed, which returns that value. The callback must not feed or
 * free the parser that called it. */
typedef int (*sse_frame_cb)(void *arg, struct slice frame, struct slice data);

/* sse_feed consumes bytes[0..len) of the stream: calls cb for each frame that completes and keeps the bytes of
 * a trailing partial frame in p->pending for the next feed (a frame split over any number of feeds comes out
 * the same as when fed at once). A frame whose last byte is a CR that ends a blank line is held until the next
 * byte shows whether an LF belongs to it (or until sse_finish). Returns 0; the callback's nonzero value when
 * it stopped; IM_ETOOBIG when a frame exceeds max_frame (detected as soon as more than max_frame bytes of it
 * are known). After a nonzero return the rest of bytes is dropped, the parser is reset to the start of a
 * frame and the stream should be abandoned. bytes need not outlive the call. */
int sse_feed(struct sse_parser *p, const char *bytes, size_t len, sse_frame_cb cb, void *arg);

/* sse_finish is for the end of the stream: it delivers a frame held back only for its final CR (see sse_feed).
 * Returns 0 when no bytes are left over, the callback's nonzero value, or IM_EPARSE when the stream ended
 * inside an event: those bytes (not a frame: the spec discards an unterminated event) stay in p->pending for
 * the caller to relay or drop before sse_parser_free. */
int sse_finish(struct sse_parser *p, sse_frame_cb cb, void *arg);

/* sse_parser_free releases pending and resets the parser to zero state, keeping max_frame, ready to reuse. */
void sse_parser_free(struct sse_parser *p);

#endif
