/* Unit tests for net/sse: frame splitting across feeds, line endings, data extraction, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "net/sse.h"

#define MAXF 64

/* What the callback saw: copies of every frame and data value, and whether frames were zero-copy. */
struct seen {
  int n;
  char *frame[MAXF];
  char *data[MAXF];
  size_t frame_len[MAXF];
  bool in_input[MAXF]; /* frame pointed into the fed bytes */
  const char *feed_base;
  size_t feed_len;
  int stop_at; /* return 99 from the callback for frame number stop_at (1-based); 0 = never */
};

static int collect_cb(void *arg, struct slice frame, struct slice data) {
  struct seen *s = arg;
  assert_true(s->n < MAXF);
  s->frame[s->n] = slice_dup(frame);
  s->frame_len[s->n] = frame.len;
  s->data[s->n] = slice_dup(data);
  s->in_input[s->n] = frame.base >= s->feed_base && frame.base + frame.len <= s->feed_base + s->feed_len;
  s->n++;
  return s->stop_at == s->n ? 99 : 0;
}

static void seen_free(struct seen *s) {
  for (int i = 0; i < s->n; i++) {
    free(s->frame[i]);
    free(s->data[i]);
  }
  memset(s, 0, sizeof *s);
}

static int feed(struct sse_parser *p, struct seen *s, const char *bytes, size_t len) {
  s->feed_base = bytes;
  s->feed_len = len;
  return sse_feed(p, bytes, len, collect_cb, s);
}

/* Feeds text in pieces of the given size (0 = all at once), each from its own heap copy so that a slice into
 * an old feed would be caught by ASan. */
static int feed_split(struct sse_parser *p, struct seen *s, const char *text, size_t len, size_t piece) {
  if (piece == 0) piece = len ? len : 1;
  for (size_t off = 0; off < len; off += piece) {
    size_t k = len - off < piece ? len - off : piece;
    char *copy = malloc(k);
    memcpy(copy, text + off, k);
    int rc = feed(p, s, copy, k);
    free(copy);
    if (rc) return rc;
  }
  return 0;
}

static void assert_same(const struct seen *a, const struct seen *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    assert_int_equal(a->frame_len[i], b->frame_len[i]);
    assert_memory_equal(a->frame[i], b->frame[i], a->frame_len[i]);
    assert_string_equal(a->data[i], b->data[i]);
  }
}

static const char openai_stream[] =
    ": ping\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n"
    "data: [DONE]\n\n";

static void test_whole_stream(void **state) {
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed(&p, &s, openai_stream, sizeof openai_stream - 1), 0);
  assert_int_equal(s.n, 6);
  assert_string_equal(s.frame[0], ": ping\n\n");
  assert_string_equal(s.data[0], "");
  assert_string_equal(s.data[2], "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}");
  assert_string_equal(s.frame[5], "data: [DONE]\n\n");
  assert_string_equal(s.data[5], "[DONE]");
  /* Byte-exact: the frames put back together are the stream; all of them were zero-copy. */
  struct buf all = {0};
  for (int i = 0; i < s.n; i++) {
    buf_append(&all, s.frame[i], s.frame_len[i]);
    assert_true(s.in_input[i]);
  }
  assert_int_equal(all.len, sizeof openai_stream - 1);
  assert_memory_equal(all.base, openai_stream, all.len);
  assert_int_equal(p.pending.len, 0);
  assert_int_equal(sse_finish(&p, collect_cb, &s), 0);
  buf_free(&all);
  seen_free(&s);
  sse_parser_free(&p);
}

static void check_splits(const char *text, size_t len) {
  struct sse_parser p0 = {0};
  struct seen whole = {0};
  assert_int_equal(feed_split(&p0, &whole, text, len, 0), 0);
  assert_int_equal(sse_finish(&p0, collect_cb, &whole), 0);
  sse_parser_free(&p0);
  for (size_t piece = 1; piece <= len; piece++) {
    struct sse_parser p = {0};
    struct seen s = {0};
    assert_int_equal(feed_split(&p, &s, text, len, piece), 0);
    assert_int_equal(sse_finish(&p, collect_cb, &s), 0);
    assert_same(&whole, &s);
    seen_free(&s);
    sse_parser_free(&p);
  }
  seen_free(&whole);
}

static void test_byte_at_a_time(void **state) {
  check_splits(openai_stream, sizeof openai_stream - 1);
  /* A frame split byte by byte is delivered from the pending copy, not from the input. */
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed_split(&p, &s, "data: x\n\n", 9, 1), 0);
  assert_int_equal(s.n, 1);
  assert_false(s.in_input[0]);
  assert_string_equal(s.data[0], "x");
  seen_free(&s);
  sse_parser_free(&p);
}

static void test_line_endings(void **state) {
  static const char crlf[] = "data: a\r\n\r\n: c\r\nevent: e\r\ndata:b\r\n\r\n";
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed(&p, &s, crlf, sizeof crlf - 1), 0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.frame[0], "data: a\r\n\r\n");
  assert_string_equal(s.data[0], "a");
  assert_string_equal(s.frame[1], ": c\r\nevent: e\r\ndata:b\r\n\r\n");
  assert_string_equal(s.data[1], "b");
  seen_free(&s);
  sse_parser_free(&p);
  check_splits(crlf, sizeof crlf - 1);

  /* CR alone ends lines too. The last frame ends in a CR that could still be the start of a CRLF: it is held
   * until the next byte or sse_finish. */
  static const char cr[] = "data: a\r\rdata: b\r\r";
  assert_int_equal(feed(&p, &s, cr, sizeof cr - 1), 0);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.frame[0], "data: a\r\r");
  assert_int_equal(sse_finish(&p, collect_cb, &s), 0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.frame[1], "data: b\r\r");
  assert_string_equal(s.data[1], "b");
  seen_free(&s);
  sse_parser_free(&p);
  check_splits(cr, sizeof cr - 1);

  /* A held CR followed by LF: the LF belongs to that frame; followed by anything else: it starts the next. */
  assert_int_equal(feed(&p, &s, "data: a\n\r", 9), 0);
  assert_int_equal(s.n, 0);
  assert_int_equal(feed(&p, &s, "\ndata: b\n\n", 10), 0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.frame[0], "data: a\n\r\n");
  assert_string_equal(s.frame[1], "data: b\n\n");
  assert_true(s.in_input[1]);
  assert_int_equal(feed(&p, &s, "data: c\r\r", 9), 0);
  assert_int_equal(feed(&p, &s, "data: d\n\n", 9), 0);
  assert_int_equal(s.n, 4);
  assert_string_equal(s.frame[2], "data: c\r\r");
  assert_string_equal(s.frame[3], "data: d\n\n");
  seen_free(&s);
  sse_parser_free(&p);

  /* Mixed endings in one stream, and blank lines that are frames of their own. */
  static const char mixed[] = "\n\r\n\rdata: x\r\ndata: y\rid: 1\n\n";
  assert_int_equal(feed(&p, &s, mixed, sizeof mixed - 1), 0);
  assert_int_equal(sse_finish(&p, collect_cb, &s), 0);
  assert_int_equal(s.n, 4);
  assert_string_equal(s.frame[0], "\n");
  assert_string_equal(s.frame[1], "\r\n");
  assert_string_equal(s.frame[2], "\r");
  assert_string_equal(s.frame[3], "data: x\r\ndata: y\rid: 1\n\n");
  assert_string_equal(s.data[3], "x\ny");
  seen_free(&s);
  sse_parser_free(&p);
  check_splits(mixed, sizeof mixed - 1);
}

static void test_data_field_forms(void **state) {
  static const char text[] = "data:nospace\n\n"
                             "data:  two spaces\n\n"
                             "data\n\n"
                             "data:\n\n"
                             "database: no\n\n"
                             "data: first\ndata: second\ndata:third\n\n"
                             "event: done\ndata: [DONE]\n: trailing comment\n\n"
                             ": only a comment\n\n";
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed(&p, &s, text, sizeof text - 1), 0);
  assert_int_equal(s.n, 8);
  assert_string_equal(s.data[0], "nospace");
  assert_string_equal(s.data[1], " two spaces");
  assert_string_equal(s.data[2], "");
  assert_string_equal(s.data[3], "");
  assert_string_equal(s.data[4], "");
  assert_string_equal(s.data[5], "first\nsecond\nthird");
  assert_string_equal(s.frame[5], "data: first\ndata: second\ndata:third\n\n");
  assert_string_equal(s.data[6], "[DONE]");
  assert_string_equal(s.frame[6], "event: done\ndata: [DONE]\n: trailing comment\n\n");
  assert_string_equal(s.frame[7], ": only a comment\n\n");
  assert_string_equal(s.data[7], "");
  assert_int_equal(p.pending.len, 0); /* the joined value was scratch, not pending input */
  seen_free(&s);
  sse_parser_free(&p);
  check_splits(text, sizeof text - 1);
}

static void test_bom(void **state) {
  static const char text[] = "\xEF\xBB\xBF" "data: a\n\n\xEF\xBB\xBF" "data: b\n\n";
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed(&p, &s, text, sizeof text - 1), 0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.frame[0], "\xEF\xBB\xBF" "data: a\n\n");
  assert_string_equal(s.data[0], "a");
  assert_string_equal(s.data[1], ""); /* only the stream's first bytes may be a BOM */
  seen_free(&s);
  sse_parser_free(&p);
}

static void test_oversize(void **state) {
  struct sse_parser p = {.max_frame = 16};
  struct seen s = {0};
  /* Exactly max_frame is fine, in one feed or split. */
  assert_int_equal(feed(&p, &s, "data: 01234567\n\n", 16), 0);
  assert_int_equal(s.n, 1);
  assert_int_equal(feed_split(&p, &s, "data: 01234567\n\n", 16, 3), 0);
  assert_int_equal(s.n, 2);
  /* One byte more is refused, whole or split, and as soon as the partial frame is too long. */
  assert_int_equal(feed(&p, &s, "data: 012345678\n\n", 17), IM_ETOOBIG);
  assert_int_equal(p.pending.len, 0);
  assert_int_equal(feed_split(&p, &s, "data: 012345678\n\n", 17, 5), IM_ETOOBIG);
  assert_int_equal(p.pending.len, 0);
  assert_int_equal(feed(&p, &s, "data: 0123456789abcdef", 22), IM_ETOOBIG);
  assert_int_equal(feed(&p, &s, "data: 0123", 10), 0);
  assert_int_equal(feed(&p, &s, "456789", 6), 0);
  assert_int_equal(feed(&p, &s, "a", 1), IM_ETOOBIG);
  assert_int_equal(s.n, 2);
  seen_free(&s);
  sse_parser_free(&p);
  assert_int_equal(p.max_frame, 16);

  /* The default limit is 1 MiB. */
  struct sse_parser d = {0};
  size_t big = SSE_DEFAULT_MAX_FRAME + 1;
  char *junk = malloc(big);
  memset(junk, 'x', big);
  assert_int_equal(feed(&d, &s, junk, big - 1), 0);
  assert_int_equal(feed(&d, &s, junk, 1), IM_ETOOBIG);
  free(junk);
  sse_parser_free(&d);
}

static void test_callback_stop(void **state) {
  struct sse_parser p = {0};
  struct seen s = {.stop_at = 2};
  assert_int_equal(feed(&p, &s, openai_stream, sizeof openai_stream - 1), 99);
  assert_int_equal(s.n, 2);
  /* Stopping inside the pending path returns the value too. */
  seen_free(&s);
  s.stop_at = 1;
  assert_int_equal(feed(&p, &s, "data: a\n", 8), 0);
  assert_int_equal(feed(&p, &s, "\ndata: b\n\n", 10), 99);
  assert_int_equal(s.n, 1);
  assert_int_equal(p.pending.len, 0);
  seen_free(&s);
  sse_parser_free(&p);
}

static void test_finish_truncated(void **state) {
  struct sse_parser p = {0};
  struct seen s = {0};
  assert_int_equal(feed(&p, &s, "data: a\n\ndata: partial", 22), 0);
  assert_int_equal(s.n, 1);
  assert_int_equal(sse_finish(&p, collect_cb, &s), IM_EPARSE);
  assert_int_equal(p.pending.len, 13);
  assert_memory_equal(p.pending.base, "data: partial", 13);
  assert_int_equal(feed(&p, &s, "", 0), 0);
  seen_free(&s);
  sse_parser_free(&p);
  assert_null(p.pending.base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole_stream),      cmocka_unit_test(test_byte_at_a_time),
      cmocka_unit_test(test_line_endings),      cmocka_unit_test(test_data_field_forms),
      cmocka_unit_test(test_bom),               cmocka_unit_test(test_oversize),
      cmocka_unit_test(test_callback_stop),     cmocka_unit_test(test_finish_truncated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
