/* libFuzzer target for net/sse: split feeding must equal a naive whole-input reference splitter. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "net/sse.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frames and data values laid end to end, with their lengths. */
struct out {
  struct buf frames, datas;
  size_t flen[4096], dlen[4096];
  int n;
  int stop_at;
};

static int rec_cb(void *arg, struct slice frame, struct slice data) {
  struct out *o = arg;
  CHECK(frame.len > 0);
  if (o->n < 4096) {
    o->flen[o->n] = frame.len;
    o->dlen[o->n] = data.len;
  }
  o->n++;
  buf_append_slice(&o->frames, frame);
  buf_append_slice(&o->datas, data);
  return o->n == o->stop_at ? 7 : 0;
}

/* Reference: the SSE spec read literally over the whole input. Returns the same codes sse_feed+sse_finish
 * would for the whole stream given at once. */
static int reference(const char *s, size_t n, size_t max, struct out *o) {
  size_t start = 0, i = 0;
  bool first = true;
  while (i < n) {
    /* One line: [ls, le) then its terminator. */
    size_t ls = i, le = i;
    while (le < n && s[le] != '\r' && s[le] != '\n') le++;
    if (le == n) break; /* unterminated line */
    size_t next = le + 1;
    if (s[le] == '\r' && le + 1 < n && s[le + 1] == '\n') next = le + 2;
    i = next;
    if (le > ls) continue;
    /* Blank line: the frame is [start, i). */
    size_t flen = i - start;
    if (flen > max) return IM_ETOOBIG;
    /* Data values, joined with LF. */
    struct buf d = {0};
    int nd = 0;
    size_t j = start;
    if (first && flen >= 3 && memcmp(s + start, "\xEF\xBB\xBF", 3) == 0) j += 3;
    first = false;
    while (j < i) {
      size_t a = j, b = j;
      while (b < i && s[b] != '\r' && s[b] != '\n') b++;
      j = (s[b] == '\r' && b + 1 < i && s[b + 1] == '\n') ? b + 2 : b + 1;
      size_t L = b - a;
      if (L >= 4 && memcmp(s + a, "data", 4) == 0 && (L == 4 || s[a + 4] == ':')) {
        size_t v = L == 4 ? 4 : 5;
        if (v < L && s[a + v] == ' ') v++;
        if (nd++) buf_append(&d, "\n", 1);
        buf_append(&d, s + a + v, L - v);
      }
    }
    int rc = rec_cb(o, slice_make(s + start, flen), buf_slice(&d));
    buf_free(&d);
    if (rc) return rc;
    start = i;
  }
  if (n - start > max) return IM_ETOOBIG;
  return n > start ? IM_EPARSE : 0;
}

static bool same(const struct buf *a, const struct buf *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

static void out_free(struct out *o) {
  buf_free(&o->frames);
  buf_free(&o->datas);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  /* Byte 0: max_frame (0 = default). Byte 1: split seed. Byte 2: stop_at. */
  size_t max = data[0] < 200 ? (size_t)data[0] + 1 : 0;
  unsigned seed = data[1];
  int stop_at = data[2] < 16 ? data[2] : 0;
  const char *s = (const char *)data + 3;
  size_t n = size - 3;

  static struct out ref, got;
  memset(&ref, 0, sizeof ref);
  memset(&got, 0, sizeof got);
  ref.stop_at = got.stop_at = stop_at;
  int rref = reference(s, n, max ? max : SSE_DEFAULT_MAX_FRAME, &ref);

  struct sse_parser p = {.max_frame = max};
  int rgot = 0;
  size_t off = 0;
  while (off < n && rgot == 0) {
    seed = seed * 1103515245u + 12345u;
    size_t piece = 1 + (seed >> 16) % (seed & 1 ? 4 : 64);
    if (piece > n - off) piece = n - off;
    char *copy = malloc(piece); /* a fresh allocation per feed: ASan catches slices kept past a feed */
    memcpy(copy, s + off, piece);
    rgot = sse_feed(&p, copy, piece, rec_cb, &got);
    free(copy);
    off += piece;
  }
  if (rgot == 0) rgot = sse_finish(&p, rec_cb, &got);

  CHECK(rgot == rref);
  CHECK(got.n == ref.n);
  CHECK(same(&got.frames, &ref.frames));
  CHECK(same(&got.datas, &ref.datas));
  for (int i = 0; i < got.n && i < 4096; i++) CHECK(got.flen[i] == ref.flen[i] && got.dlen[i] == ref.dlen[i]);
  /* Byte-exact relay: frames + leftover are the input's prefix when nothing failed. */
  if (rgot == 0 || rgot == IM_EPARSE) {
    CHECK(got.frames.len + p.pending.len == n);
    CHECK(got.frames.len == 0 || memcmp(got.frames.base, s, got.frames.len) == 0);
    CHECK(p.pending.len == 0 || memcmp(p.pending.base, s + got.frames.len, p.pending.len) == 0);
  }
  sse_parser_free(&p);
  out_free(&ref);
  out_free(&got);
  return 0;
}
