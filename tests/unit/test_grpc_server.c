/* Unit tests for grpc/grpc_server.c: a call's life over a recording protocol — refusals before the handler
 * (unknown method, credentials, malformed message, passed deadline) as trailers-only responses, a unary
 * reply, a client's cancel and a deadline reaching a handler that holds the call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "grpc/grpc_server.h"
#include "grpc/health/v1/health.pb-c.h"

struct rec {
  int status, ends, messages;
  char grpc_status[8], grpc_message[128];
  struct buf body;
};
static struct rec R;

static void r_start(struct http_req *req, int status, const struct http_header *h, int n, int64_t len) {
  R.status = status;
  assert_true(len < 0); /* gRPC responses end with trailers: never a fixed length */
}
static void r_writev(struct http_req *req, const struct slice *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    buf_append_slice(&R.body, v[i]);
  R.messages++;
}
static void r_flush(struct http_req *req) {}
static void r_end(struct http_req *req) { R.ends++; }
static size_t r_queued(const struct http_req *req) { return 0; }
static void r_peer(const struct http_req *req, char *out, size_t len) {}
static int r_dead(struct http_req *req, unsigned ms) { return 0; }
static void r_trailers(struct http_req *req, const struct http_header *h, int n) {
  for (int i = 0; i < n; i++) {
    char *dst = slice_eqz(h[i].name, "grpc-status") ? R.grpc_status : R.grpc_message;
    size_t cap = dst == R.grpc_status ? sizeof R.grpc_status : sizeof R.grpc_message;
    snprintf(dst, cap, "%.*s", (int)h[i].value.len, h[i].value.base);
  }
}
static const struct http_resp_ops ops = {.start = r_start,
                                         .writev = r_writev,
                                         .flush = r_flush,
                                         .end = r_end,
                                         .queued = r_queued,
                                         .peer = r_peer,
                                         .dead_peer_timeout = r_dead,
                                         .trailers = r_trailers};

static int cancels;

static void on_cancel(struct grpc_call *call, void *arg) {
  cancels++;
  grpc_call_release(call);
}
static void reply(struct grpc_call *call, const ProtobufCMessage *in) {
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  grpc_reply(call, &r.base);
}
static void hold(struct grpc_call *call, const ProtobufCMessage *in) {

  grpc_call_hold(call);
  grpc_call_on_cancel(call, on_cancel, NULL);
}

static const struct grpc_method methods[] = {
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor, reply},
    {"/infermesh.v1.Control/SubscribeEvents", &grpc__health__v1__health_check_request__descriptor, hold},
    {"/infermesh.v1.Scoring/ReportOutcome", &grpc__health__v1__health_check_request__descriptor, reply},
};

static enum api_verdict verdict(void *arg, const struct api_route *rt, struct http_req *req) {
  return rt->need == API_ADMIN ? API_UNAUTH : API_ALLOW;
}

static struct grpc_server g;
static struct http_req req;

static void call(const char *path, const void *body, size_t len, const char *timeout) {
  buf_free(&R.body);
  memset(&R, 0, sizeof R);
  pool_free(&req.pool);
  memset(&req, 0, sizeof req);
  req.ops = &ops;
  req.version = 20;
  req.method = HTTP_M_POST;
  req.path = req.url = slice_cstr(path);
  req.body = slice_make(body, len);
  req.start_ns = clock_mono_ns();
  req.headers[req.nheaders++] =
      (struct http_header){SLICE_LIT("content-type"), SLICE_LIT("application/grpc")};
  if (timeout)
    req.headers[req.nheaders++] = (struct http_header){SLICE_LIT("grpc-timeout"), slice_cstr(timeout)};
  assert_true(grpc_is_call(&req));
  grpc_handle(&g, &req);
}

static int setup(void **state) {
  g = (struct grpc_server){
      .env = {.methods = methods, .nmethods = 3, .loop = uv_default_loop(), .verdict = verdict}};
  return 0;
}

static void test_refusals_are_trailers_only(void **state) {
  static const char empty[] = "\0\0\0\0\0";
  call("/grpc.health.v1.Health/Nope", empty, 5, NULL);
  assert_string_equal(R.grpc_status, "12");
  assert_int_equal(R.status, 200);
  assert_int_equal(R.messages, 0);
  assert_int_equal(R.ends, 1);
  call("/infermesh.v1.Scoring/ReportOutcome", empty, 5, NULL); /* API_ADMIN: the verdict refuses */
  assert_string_equal(R.grpc_status, "16");
  static const char bad[] = "\0\0\0\0\2\xff\xff";
  call("/grpc.health.v1.Health/Check", bad, 7, NULL);
  assert_string_equal(R.grpc_status, "3");
  assert_non_null(strstr(R.grpc_message, "HealthCheckRequest"));
  call("/grpc.health.v1.Health/Check", empty, 5, "0n");
  assert_string_equal(R.grpc_status, "4");
  call("/grpc.health.v1.Health/Check", empty, 5, "soon");
  assert_string_equal(R.grpc_status, "3");
  assert_int_equal(g.calls, 0);
  assert_int_equal(g.refused, 5);
}

static void test_unary_reply_is_one_framed_message_then_ok(void **state) {
  static const char empty[] = "\0\0\0\0\0";
  call("/grpc.health.v1.Health/Check", empty, 5, "5S");
  assert_string_equal(R.grpc_status, "0");
  assert_int_equal(R.ends, 1);
  assert_int_equal(R.body.len, 7); /* prefix + field 1 = 1 */
  assert_memory_equal(R.body.base, "\0\0\0\0\2\x08\x01", 7);
  uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* nothing armed: a finished call leaves no timer */
  assert_int_equal(uv_loop_alive(uv_default_loop()), 0);
}

static void test_cancel_reaches_a_holding_handler(void **state) {
  static const char empty[] = "\0\0\0\0\0";
  cancels = 0;
  call("/infermesh.v1.Control/SubscribeEvents", empty, 5, "10S");
  assert_int_equal(R.ends, 0);
  http__req_abort(&req); /* the client's RST_STREAM */
  assert_int_equal(cancels, 1);
  assert_int_equal(R.ends, 1);
  assert_string_equal(R.grpc_status, "");    /* no trailers to a client that left */
  uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* the deadline timer closes, the call is freed */
}

static void test_deadline_finishes_a_holding_handler(void **state) {
  static const char empty[] = "\0\0\0\0\0";
  cancels = 0;
  call("/infermesh.v1.Control/SubscribeEvents", empty, 5, "20m");
  assert_int_equal(R.ends, 0);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  assert_string_equal(R.grpc_status, "4");
  assert_int_equal(cancels, 1);
  assert_int_equal(R.ends, 1);
}

static int teardown(void **state) {
  buf_free(&R.body);
  pool_free(&req.pool);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals_are_trailers_only),
      cmocka_unit_test(test_unary_reply_is_one_framed_message_then_ok),
      cmocka_unit_test(test_cancel_reaches_a_holding_handler),
      cmocka_unit_test(test_deadline_finishes_a_holding_handler),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
