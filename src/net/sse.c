/* SSE frame splitter: a line state machine that survives feed boundaries; whole frames are delivered zero copy. */
#include "net/sse.h"

#include <stdint.h>
#include <string.h>

#include "core/err.h"

/* Index of the first CR or LF in b[i..n), or n; 8 bytes a step on little-endian machines (the lowest flagged
 * byte of the haszero trick is exact, see "Bit Twiddling Hacks"). */
static inline size_t to_eol(const char *b, size_t i, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  while (n - i >= 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    uint64_t lf = w ^ (ones * '\n'), cr = w ^ (ones * '\r');
    uint64_t m = (((lf - ones) & ~lf) | ((cr - ones) & ~cr)) & high;
    if (m) return i + ((size_t)__builtin_ctzll(m) >> 3);
    i += 8;
  }
#endif
  while (i < n && b[i] != '\n' && b[i] != '\r') i++;
  return i;
}

static void reset_state(struct sse_parser *p) {
  p->in_line = p->after_cr = p->cr_blank = false;
}

/* Runs the line state machine over b[from..to). Returns true and sets *end (exclusive) when a blank line ends
 * the frame, resetting the state for the next frame; false when b ran out first, keeping the state. */
static bool scan(struct sse_parser *p, const char *b, size_t from, size_t to, size_t *end) {
  for (size_t i = from; i < to; i++) {
    char c = b[i];
    if (p->after_cr) {
      bool blank = p->cr_blank;
      p->after_cr = p->cr_blank = false;
      if (c == '\n') {
        if (blank) {
          *end = i + 1;
          reset_state(p);
          return true;
        }
        continue; /* the LF of a CRLF: the new line is still empty */
      }
      if (blank) {
        *end = i; /* the frame ended with that CR; c starts the next one */
        reset_state(p);
        return true;
      }
    }
    if (c == '\n') {
      if (!p->in_line) {
        *end = i + 1;
        reset_state(p);
        return true;
      }
      p->in_line = false;
    } else if (c == '\r') {
      p->after_cr = true;
      p->cr_blank = !p->in_line;
      p->in_line = false;
    } else {
      p->in_line = true;
      i = to_eol(b, i + 1, to) - 1; /* the rest of the line at once */
    }
  }
  return false;
}

/* Length of the line starting at f[i] (up to CR or LF) and, in *next, where the following line starts. */
static size_t line_at(const char *f, size_t n, size_t i, size_t *next) {
  size_t e = to_eol(f, i, n);
  if (e < n && f[e] == '\r' && e + 1 < n && f[e + 1] == '\n')
    *next = e + 2;
  else
    *next = e < n ? e + 1 : n;
  return e - i;
}

/* If line is a "data" field, sets *val to its value and returns true. */
static bool data_value(const char *line, size_t len, struct slice *val) {
  if (len < 4 || memcmp(line, "data", 4) != 0) return false;
  if (len == 4) {
    *val = slice_make(line + 4, 0);
    return true;
  }
  if (line[4] != ':') return false;
  size_t v = 5;
  if (v < len && line[v] == ' ') v++;
  *val = slice_make(line + v, len - v);
  return true;
}

/* Calls cb for the frame f[0..n). in_pending says f is p->pending.base (it may move if we append). */
static int deliver(struct sse_parser *p, const char *f, size_t n, bool in_pending, sse_frame_cb cb, void *arg) {
  size_t first = 0, i, next;
  int ndata = 0;
  struct slice data = slice_make(f, 0), val;
  if (!p->started && n >= 3 && memcmp(f, "\xEF\xBB\xBF", 3) == 0) first = 3;
  p->started = true;
  for (i = first; i < n; i = next) {
    size_t len = line_at(f, n, i, &next);
    if (data_value(f + i, len, &val) && ndata++ == 0) data = val;
  }
  size_t base_len = p->pending.len; /* n when in_pending, else 0 */
  if (ndata > 1) {
    /* Join the values with "\n" behind whatever pending holds; the joined text is shorter than the frame. */
    buf_reserve(&p->pending, n);
    if (in_pending) f = p->pending.base;
    int k = 0;
    for (i = first; i < n; i = next) {
      size_t len = line_at(f, n, i, &next);
      if (!data_value(f + i, len, &val)) continue;
      if (k++) buf_append(&p->pending, "\n", 1);
      buf_append_slice(&p->pending, val);
    }
    data = slice_make(p->pending.base + base_len, p->pending.len - base_len);
  }
  int rc = cb(arg, slice_make(f, n), data);
  if (ndata > 1) {
    p->pending.len = base_len;
    p->pending.base[base_len] = '\0';
  }
  return rc;
}

static int stop(struct sse_parser *p, int rc) {
  buf_reset(&p->pending);
  reset_state(p);
  return rc;
}

int sse_feed(struct sse_parser *p, const char *bytes, size_t len, sse_frame_cb cb, void *arg) {
  size_t max = p->max_frame ? p->max_frame : SSE_DEFAULT_MAX_FRAME;
  size_t pos = 0, end;
  int rc;
  if (len == 0) return 0;
  if (p->pending.len > 0) {
    /* Finish the frame started in an earlier feed: the only case that copies. */
    if (!scan(p, bytes, 0, len, &end)) {
      if (len > max || p->pending.len > max - len) return stop(p, IM_ETOOBIG);
      buf_append(&p->pending, bytes, len);
      return 0;
    }
    if (end > max || p->pending.len > max - end) return stop(p, IM_ETOOBIG);
    buf_append(&p->pending, bytes, end);
    rc = deliver(p, p->pending.base, p->pending.len, true, cb, arg);
    buf_reset(&p->pending);
    if (rc) return stop(p, rc);
    pos = end;
  }
  while (pos < len) {
    if (!scan(p, bytes, pos, len, &end)) {
      if (len - pos > max) return stop(p, IM_ETOOBIG);
      buf_append(&p->pending, bytes + pos, len - pos);
      return 0;
    }
    if (end - pos > max) return stop(p, IM_ETOOBIG);
    if ((rc = deliver(p, bytes + pos, end - pos, false, cb, arg)) != 0) return stop(p, rc);
    pos = end;
  }
  return 0;
}

int sse_finish(struct sse_parser *p, sse_frame_cb cb, void *arg) {
  if (p->pending.len == 0) return 0;
  if (p->after_cr && p->cr_blank) {
    int rc = deliver(p, p->pending.base, p->pending.len, true, cb, arg);
    buf_reset(&p->pending);
    reset_state(p);
    return rc;
  }
  return IM_EPARSE;
}

void sse_parser_free(struct sse_parser *p) {
  size_t max = p->max_frame;
  buf_free(&p->pending);
  memset(p, 0, sizeof *p);
  p->max_frame = max;
}
