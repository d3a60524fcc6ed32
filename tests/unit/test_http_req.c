/* Unit tests for net/http_req: the protocol-neutral response API's state rules, over a recording protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/buf.h"
#include "net/http_req.h"

struct rec {
  int starts, flushes, ends, aborts, drains, trailers;
  int status;
  int64_t length;
  struct buf body;
  size_t writes;
};

static struct rec R;

static void r_start(struct http_req *req, int status, const struct http_header *h, int n, int64_t len) {
  R.starts++, R.status = status, R.length = len;
}
static void r_writev(struct http_req *req, const struct slice *v, size_t n) {
  R.writes++;
  for (size_t i = 0; i < n; i++)
    buf_append_slice(&R.body, v[i]);
}
static void r_flush(struct http_req *req) { R.flushes++; }
static void r_end(struct http_req *req) { R.ends++; }
static size_t r_queued(const struct http_req *req) { return 1234; }
static void r_peer(const struct http_req *req, char *out, size_t len) { strncpy(out, "10.0.0.1", len - 1); }
static int r_dead(struct http_req *req, unsigned ms) { return 0; }
static const char *r_client_cn(const struct http_req *req) { return NULL; }
static void r_trailers(struct http_req *req, const struct http_header *h, int n) {
  R.trailers += n;
  assert_int_equal(R.ends, 0); /* before the end that sends them */
}
static const struct http_resp_ops ops = {.start = r_start,
                                         .writev = r_writev,
                                         .flush = r_flush,
                                         .end = r_end,
                                         .queued = r_queued,
                                         .peer = r_peer,
                                         .dead_peer_timeout = r_dead,
                                         .client_cn = r_client_cn,
                                         .trailers = r_trailers};
static const struct http_resp_ops ops_no_trailers = {.start = r_start,
                                                     .writev = r_writev,
                                                     .flush = r_flush,
                                                     .end = r_end,
                                                     .queued = r_queued,
                                                     .peer = r_peer,
                                                     .dead_peer_timeout = r_dead,
                                                     .client_cn = r_client_cn};

static void abort_cb(struct http_req *req) { R.aborts++; }
static void drain_cb(struct http_req *req) { R.drains++; }

static void setup(struct http_req *req) {
  buf_free(&R.body);
  memset(&R, 0, sizeof R);
  memset(req, 0, sizeof *req);
  req->ops = &ops;
  req->abort_cb = abort_cb;
  req->drain_cb = drain_cb;
}

static void test_send_is_start_write_end(void **state) {
  struct http_req req;
  setup(&req);
  struct http_header extra = {SLICE_LIT("x-a"), SLICE_LIT("1")};
  http_resp_send(&req, 201, "application/json", "{}", 2, &extra, 1);
  assert_int_equal(R.starts, 1);
  assert_int_equal(R.status, 201);
  assert_int_equal(R.length, 2);
  assert_int_equal(R.ends, 1);
  assert_string_equal(R.body.base, "{}");
  assert_true(req.resp_started && req.resp_ended);
  buf_free(&R.body);
}

static void test_trailers_go_before_the_end_and_not_after_an_abort(void **state) {
  struct http_req req;
  setup(&req);
  struct http_header tr[2] = {{SLICE_LIT("grpc-status"), SLICE_LIT("0")},
                              {SLICE_LIT("grpc-message"), SLICE_LIT("ok")}};
  assert_true(http_req_has_trailers(&req));
  http_resp_start(&req, 200, NULL, 0, -1);
  http_resp_end_trailers(&req, tr, 2);
  assert_int_equal(R.trailers, 2);
  assert_int_equal(R.ends, 1);
  setup(&req);
  http_resp_start(&req, 200, NULL, 0, -1);
  http__req_abort(&req);
  http_resp_end_trailers(&req, tr, 2);
  assert_int_equal(R.trailers, 0);
  assert_int_equal(R.ends, 1);
  setup(&req);
  req.ops = &ops_no_trailers; /* HTTP/1.1: dropped, the response still ends */
  assert_false(http_req_has_trailers(&req));
  http_resp_start(&req, 200, NULL, 0, -1);
  http_resp_end_trailers(&req, tr, 2);
  assert_int_equal(R.ends, 1);
}

static void test_writev_is_one_piece_and_empty_writes_vanish(void **state) {
  struct http_req req;
  setup(&req);
  http_resp_start(&req, 200, NULL, 0, -1);
  struct slice v[3] = {SLICE_LIT("data: a\n\n"), slice_make(NULL, 0), SLICE_LIT("data: b\n\n")};
  http_resp_writev(&req, v, 3);
  http_resp_write(&req, "", 0);
  http_resp_writev(&req, v + 1, 1);
  assert_int_equal(R.writes, 1); /* a chunk per piece for HTTP/1.1: empty ones would end the body */
  assert_string_equal(R.body.base, "data: a\n\ndata: b\n\n");
  assert_int_equal(http_resp_queued(&req), 1234);
  http_resp_end(&req);
  buf_free(&R.body);
}

static void test_after_an_abort_only_end_reaches_the_protocol(void **state) {
  struct http_req req;
  setup(&req);
  http_resp_start(&req, 200, NULL, 0, -1);
  http__req_abort(&req);
  http__req_abort(&req); /* once */
  assert_int_equal(R.aborts, 1);
  http_resp_write(&req, "x", 1);
  http_resp_flush(&req);
  http__req_drained(&req);
  assert_int_equal(R.writes, 0);
  assert_int_equal(R.flushes, 0);
  assert_int_equal(R.drains, 0);
  assert_int_equal(http_resp_queued(&req), 0);
  assert_int_not_equal(http_req_dead_peer_timeout(&req, 1000), 0);
  http_resp_end(&req);
  assert_int_equal(R.ends, 1);
  /* A request aborted before its response started still has its start and end called by the handler. */
  setup(&req);
  http__req_abort(&req);
  http_resp_start(&req, 503, NULL, 0, 0);
  assert_int_equal(R.starts, 0);
  http_resp_end(&req);
  assert_int_equal(R.ends, 1);
}

static void test_no_abort_or_drain_after_the_end(void **state) {
  struct http_req req;
  setup(&req);
  http_resp_send(&req, 200, "text/plain", "ok", 2, NULL, 0);
  http__req_abort(&req);
  http__req_drained(&req);
  assert_int_equal(R.aborts, 0);
  assert_int_equal(R.drains, 0);
  buf_free(&R.body);
}

static void test_methods_are_neutral(void **state) {
  assert_int_equal(http_method_parse(SLICE_LIT("GET")), HTTP_M_GET);
  assert_int_equal(http_method_parse(SLICE_LIT("DELETE")), HTTP_M_DELETE);
  assert_int_equal(http_method_parse(SLICE_LIT("get")), HTTP_M_OTHER); /* methods are case-sensitive */
  assert_int_equal(http_method_parse(SLICE_LIT("BREW")), HTTP_M_OTHER);
  assert_string_equal(http_method_name(HTTP_M_OPTIONS), "OPTIONS");
  assert_string_equal(http_method_name(99), "OTHER");
  char peer[16];
  struct http_req req;
  setup(&req);
  http_req_peer(&req, peer, sizeof peer);
  assert_string_equal(peer, "10.0.0.1");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_send_is_start_write_end),
      cmocka_unit_test(test_trailers_go_before_the_end_and_not_after_an_abort),
      cmocka_unit_test(test_writev_is_one_piece_and_empty_writes_vanish),
      cmocka_unit_test(test_after_an_abort_only_end_reaches_the_protocol),
      cmocka_unit_test(test_no_abort_or_drain_after_the_end),
      cmocka_unit_test(test_methods_are_neutral),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
