/* HTTP server tests: a real server on a loop thread, driven by blocking sockets on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "net/http_server.h"

static uv_loop_t loop;
static struct http_server srv;
/* A second server with room for large bodies and a small global budget for them (two fit at once). */
static struct http_server big;
static int big_port;
#define BIG_BUDGET (300 * 1000)
static uv_async_t stop_async;
static pthread_t thread;
static int port;
static atomic_int aborts;
static atomic_int handled;

/* Handler: "/echo" answers "METHOD PATH BODYLEN:BODY"; "/stream" sends 3 chunks; "/hold" never answers
 * (until the client goes away). */
static void hold_abort_cb(struct http_req *req) {
  atomic_fetch_add(&aborts, 1);
  http_resp_end(req);
}

/* "/later" answers after 150 ms (one at a time), unless the client goes away first. */
static uv_timer_t later_timer;
static struct http_req *later_req;

static void later_cb(uv_timer_t *t) {
  struct http_req *req = later_req;
  later_req = NULL;
  if (req) http_resp_send(req, 200, "text/plain", "later", 5, NULL, 0);
}

static void later_abort_cb(struct http_req *req) {
  atomic_fetch_add(&aborts, 1);
  later_req = NULL;
  uv_timer_stop(&later_timer);
  http_resp_end(req);
}

static void handler(struct http_req *req, void *arg) {
  struct buf b = {0};
  atomic_fetch_add(&handled, 1);
  if (slice_eqz(req->path, "/later")) {
    later_req = req;
    req->abort_cb = later_abort_cb;
    uv_timer_start(&later_timer, later_cb, 150, 0);
    return;
  }
  if (slice_eqz(req->path, "/hold")) {
    req->abort_cb = hold_abort_cb;
    return;
  }
  if (slice_eqz(req->path, "/reap")) {
    char rc[16];
    int n = snprintf(rc, sizeof rc, "reap=%d", http_req_dead_peer_timeout(req, 3000));
    http_resp_send(req, 200, "text/plain", rc, (size_t)n, NULL, 0);
    return;
  }
  if (slice_eqz(req->path, "/stream")) {
    http_resp_start(req, 200, NULL, 0, -1);
    http_resp_write(req, "one,", 4);
    http_resp_write(req, "two,", 4);
    http_resp_write(req, "three", 5);
    http_resp_end(req);
    return;
  }
  buf_printf(&b, "%d %.*s %zu:", req->method, (int)req->path.len, req->path.base, req->body.len);
  buf_append_slice(&b, req->body);
  struct slice x = http_req_header(req, "x-test");
  if (x.len) buf_printf(&b, " x-test=%.*s", (int)x.len, x.base);
  http_resp_send(req, 200, "text/plain", b.base, b.len, NULL, 0);
  buf_free(&b);
}

static void stop_cb(uv_async_t *a) {
  uv_close((uv_handle_t *)&later_timer, NULL);
  http_server_drain(&srv, NULL);
  http_server_drain(&big, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg) {
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

static int setup(void **state) {
  struct http_limits lim;
  http_limits_default(&lim);
  lim.max_header_bytes = 2048;
  lim.max_headers = 16;
  lim.max_body = 4096;
  lim.header_timeout_ms = 300;
  lim.body_timeout_ms = 300;
  lim.idle_timeout_ms = 2000;
  uv_loop_init(&loop);
  http_server_init(&srv, &loop, &lim, handler, NULL);
  assert_int_equal(http_server_listen(&srv, "127.0.0.1", 0), 0);
  port = http_server_port(&srv);
  lim.max_body = 1024 * 1024;
  lim.body_timeout_ms = 5000;
  lim.max_buffered_bodies = BIG_BUDGET;
  http_server_init(&big, &loop, &lim, handler, NULL);
  assert_int_equal(http_server_listen(&big, "127.0.0.1", 0), 0);
  big_port = http_server_port(&big);
  uv_async_init(&loop, &stop_async, stop_cb);
  uv_timer_init(&loop, &later_timer);
  pthread_create(&thread, NULL, loop_main, NULL);
  return 0;
}

static int teardown(void **state) {
  uv_async_send(&stop_async);
  pthread_join(thread, NULL);
  uv_loop_close(&loop);
  return 0;
}

static int dial_port(int p) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int dial(void) { return dial_port(port); }

static void send_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    assert_true(w > 0);
    s += w, n -= (size_t)w;
  }
}

/* Read until `want` occurrences of `needle` were seen, EOF, or 3 s pass. Returns bytes read into out. */
static size_t read_until(int fd, char *out, size_t cap, const char *needle, int want, bool *eof) {
  size_t n = 0;
  *eof = false;
  for (int waited = 0; waited < 3000;) {
    int seen = 0;
    for (char *p = out; n && (p = memmem(p, n - (size_t)(p - out), needle, strlen(needle))); p++) seen++;
    if (seen >= want) break;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 50) == 0) {
      waited += 50;
      continue;
    }
    ssize_t r = recv(fd, out + n, cap - n - 1, 0);
    if (r <= 0) {
      *eof = true;
      break;
    }
    n += (size_t)r;
    out[n] = '\0';
  }
  out[n] = '\0';
  return n;
}

static void test_keepalive_two_requests(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  send_all(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 31);
  read_until(fd, buf, sizeof buf, "/echo 0:", 1, &eof);
  assert_non_null(strstr(buf, "/echo 0:"));
  send_all(fd, "GET /again HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n\r\n", 45);
  read_until(fd, buf, sizeof buf, "x-test=yes", 1, &eof);
  assert_false(eof);
  assert_non_null(strstr(buf, "/again 0: x-test=yes"));
  close(fd);
}

static void test_pipelining_in_one_write(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *two = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                    "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nde";
  send_all(fd, two, strlen(two));
  read_until(fd, buf, sizeof buf, "/b 2:de", 1, &eof);
  char *a = strstr(buf, "/a 3:abc"), *b = strstr(buf, "/b 2:de");
  assert_non_null(a);
  assert_non_null(b);
  assert_true(a < b); /* answered in order */
  close(fd);
}

static void test_split_reads_byte_by_byte(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *req = "POST /split HTTP/1.1\r\nHost: x\r\nX-Test: slow\r\nContent-Length: 5\r\n\r\nhello";
  for (size_t i = 0; req[i]; i++) {
    send_all(fd, req + i, 1);
    if (i % 7 == 0) usleep(1000);
  }
  read_until(fd, buf, sizeof buf, "x-test=slow", 1, &eof);
  assert_non_null(strstr(buf, "/split 5:hello x-test=slow"));
  close(fd);
}

static void test_chunked_request_body(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *req = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
  send_all(fd, req, strlen(req));
  read_until(fd, buf, sizeof buf, "chunks.", 1, &eof);
  assert_non_null(strstr(buf, "/c 24:Wikipedia in \r\n\r\nchunks."));
  close(fd);
}

static void test_chunked_response(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  send_all(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 33);
  read_until(fd, buf, sizeof buf, "0\r\n\r\n", 1, &eof);
  assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
  assert_non_null(strstr(buf, "4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"));
  close(fd);
}

static void expect_status_and_close(const char *req, size_t len, const char *status) {
  int fd = dial();
  char buf[8192];
  bool eof;
  send_all(fd, req, len);
  read_until(fd, buf, sizeof buf, "\"error\"", 1, &eof);
  assert_non_null(strstr(buf, status));
  assert_non_null(strstr(buf, "Connection: close"));
  read_until(fd, buf, sizeof buf, "never", 1, &eof);
  assert_true(eof);
  close(fd);
}

static void test_body_too_large_413(void **state) {
  const char *req = "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
  expect_status_and_close(req, strlen(req), "HTTP/1.1 413");
}

static void test_chunked_body_too_large_413(void **state) {
  struct buf b = {0};
  buf_puts(&b, "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 6; i++) {
    buf_puts(&b, "400\r\n");
    for (int j = 0; j < 1024; j++) buf_puts(&b, "a");
    buf_puts(&b, "\r\n");
  }
  expect_status_and_close(b.base, b.len, "HTTP/1.1 413");
  buf_free(&b);
}

static void test_headers_too_large_431(void **state) {
  struct buf b = {0};
  buf_puts(&b, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  for (int i = 0; i < 3000; i++) buf_puts(&b, "b");
  buf_puts(&b, "\r\n\r\n");
  expect_status_and_close(b.base, b.len, "HTTP/1.1 431");
  buf_free(&b);
}

static void test_too_many_headers_431(void **state) {
  struct buf b = {0};
  buf_puts(&b, "GET / HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 20; i++) buf_printf(&b, "X-H%d: v\r\n", i);
  buf_puts(&b, "\r\n");
  expect_status_and_close(b.base, b.len, "HTTP/1.1 431");
  buf_free(&b);
}

static void test_malformed_400(void **state) {
  const char *req = "GET / HTTP/1.1\r\nHost x\r\n\r\n";
  expect_status_and_close(req, strlen(req), "HTTP/1.1 400");
}

static void test_slow_headers_408(void **state) {
  const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\n"; /* never finished */
  expect_status_and_close(req, strlen(req), "HTTP/1.1 408");
}

static void test_http10_closes(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  send_all(fd, "GET /old HTTP/1.0\r\n\r\n", 21);
  read_until(fd, buf, sizeof buf, "never", 1, &eof);
  assert_true(eof);
  assert_non_null(strstr(buf, "/old 0:"));
  close(fd);
}

static void test_client_abort_calls_abort_cb(void **state) {
  int before = atomic_load(&aborts);
  int fd = dial();
  send_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n", 31);
  for (int i = 0; i < 100 && atomic_load(&handled) == 0; i++) usleep(10000);
  usleep(50000);
  close(fd);
  for (int i = 0; i < 300 && atomic_load(&aborts) == before; i++) usleep(10000);
  assert_int_equal(atomic_load(&aborts), before + 1);
}

/* RFC 9112: versions other than 1.0/1.1, a request line without a version, obs-fold continuation lines and
 * whitespace between a field name and the colon are 400 and close (smuggling vectors behind a proxy). */
static void test_http_version_9_9_400(void **state) {
  const char *req = "GET /echo HTTP/9.9\r\nHost: x\r\n\r\n";
  expect_status_and_close(req, strlen(req), "HTTP/1.1 400");
}

static void test_no_version_400(void **state) {
  const char *req = "GET /echo\r\nHost: x\r\n\r\n";
  expect_status_and_close(req, strlen(req), "HTTP/1.1 400");
  const char *bare = "GET /echo\r\n\r\n";
  expect_status_and_close(bare, strlen(bare), "HTTP/1.1 400");
}

static void test_obs_fold_400(void **state) {
  const char *sp = "GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n b\r\n\r\n";
  expect_status_and_close(sp, strlen(sp), "HTTP/1.1 400");
  const char *tab = "GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n\tb\r\n\r\n";
  expect_status_and_close(tab, strlen(tab), "HTTP/1.1 400");
  const char *empty = "GET /echo HTTP/1.1\r\nX-Test:\r\n b\r\nHost: x\r\n\r\n";
  expect_status_and_close(empty, strlen(empty), "HTTP/1.1 400");
}

static void test_space_before_colon_400(void **state) {
  const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc";
  expect_status_and_close(req, strlen(req), "HTTP/1.1 400");
}

/* Optional whitespace around a value is still fine, also when the request arrives byte by byte. */
static void test_ows_in_values_ok(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *req = "GET /ows HTTP/1.1\r\nHost: x\r\nX-Test:   spaced \t \r\n\r\n";
  for (size_t i = 0; req[i]; i++)
    send_all(fd, req + i, 1);
  read_until(fd, buf, sizeof buf, "x-test=", 1, &eof);
  assert_non_null(strstr(buf, "/ows 0: x-test=spaced"));
  close(fd);
}

/* A client that sends complete requests and then shuts down its side still gets the answers (also to one
 * that takes a while, and to the one pipelined behind it), then EOF; no abort. */
static void test_half_close_is_answered(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  int before = atomic_load(&aborts);
  const char *three = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  send_all(fd, three, strlen(three));
  shutdown(fd, SHUT_WR);
  read_until(fd, buf, sizeof buf, "never", 1, &eof);
  assert_true(eof);
  char *a = strstr(buf, "/a 3:abc"), *l = strstr(buf, "\r\n\r\nlater"), *b = strstr(buf, "/b 0:");
  assert_non_null(a);
  assert_non_null(l);
  assert_non_null(b);
  assert_true(a < l && l < b);
  assert_int_equal(atomic_load(&aborts), before);
  close(fd);
}

/* A client that half-closes while its request waits and then resets the connection is noticed by the EOF
 * probe (TCP state CLOSE): the request is aborted. (A plain close() is test_client_abort_calls_abort_cb: the
 * probe's 100 Continue draws the reset.) */
static void test_close_while_waiting_aborts(void **state) {
  int before = atomic_load(&aborts);
  int fd = dial();
  struct linger lg = {1, 0};
  send_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n", 31);
  usleep(50000);
  shutdown(fd, SHUT_WR);
  usleep(50000);
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  for (int i = 0; i < 300 && atomic_load(&aborts) == before; i++)
    usleep(10000);
  assert_int_equal(atomic_load(&aborts), before + 1);
}

/* A half-close in the middle of a request cannot complete it: the connection closes without a response. */
static void test_half_close_mid_request_closes(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *part = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nabc";
  send_all(fd, part, strlen(part));
  shutdown(fd, SHUT_WR);
  size_t n = read_until(fd, buf, sizeof buf, "never", 1, &eof);
  assert_true(eof);
  assert_int_equal(n, 0);
  close(fd);
}

static char *big_request(size_t body_len, size_t send_len, size_t *out_len) {
  struct buf b = {0};
  buf_printf(&b, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", body_len);
  for (size_t i = 0; i < send_len; i++)
    buf_append(&b, "z", 1);
  *out_len = b.len;
  return b.base;
}

/* Large bodies count against the global budget from their headers until their response ends: with two
 * stalled 140 kB bodies in, a third gets 503 + Retry-After in the OpenAI error format; once one stalled
 * client goes away, a large body is accepted again. Small bodies are never refused. */
static void test_body_budget_503(void **state) {
  size_t len;
  char *stall = big_request(140000, 100000, &len);
  int a = dial_port(big_port), b = dial_port(big_port);
  send_all(a, stall, len);
  send_all(b, stall, len);
  for (int i = 0; i < 300 && big.buffered_bodies < 280000; i++)
    usleep(10000);
  assert_int_equal(big.buffered_bodies, 280000);
  int c = dial_port(big_port);
  char buf[8192];
  bool eof;
  send_all(c, stall, 200); /* the head only */
  read_until(c, buf, sizeof buf, "\"error\"", 1, &eof);
  assert_non_null(strstr(buf, "HTTP/1.1 503"));
  assert_non_null(strstr(buf, "Retry-After: 1"));
  assert_non_null(strstr(buf, "\"type\":\"server_error\""));
  assert_int_equal(big.refused_budget, 1);
  close(c);
  int d = dial_port(big_port); /* a small body still goes through */
  const char *small = "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
  send_all(d, small, strlen(small));
  read_until(d, buf, sizeof buf, "/small 2:ok", 1, &eof);
  assert_non_null(strstr(buf, "HTTP/1.1 200"));
  close(d);
  close(a);
  for (int i = 0; i < 300 && big.buffered_bodies > 140000; i++)
    usleep(10000);
  assert_int_equal(big.buffered_bodies, 140000);
  size_t flen;
  char *full = big_request(140000, 140000, &flen);
  int e = dial_port(big_port);
  send_all(e, full, flen);
  read_until(e, buf, sizeof buf, "/big 140000:", 1, &eof);
  assert_non_null(strstr(buf, "HTTP/1.1 200"));
  /* answered: its share is given back while the connection stays open */
  for (int i = 0; i < 300 && big.buffered_bodies > 140000; i++)
    usleep(10000);
  assert_int_equal(big.buffered_bodies, 140000);
  close(e);
  close(b);
  for (int i = 0; i < 300 && big.buffered_bodies > 0; i++)
    usleep(10000);
  assert_int_equal(big.buffered_bodies, 0);
  free(stall);
  free(full);
}

/* A connection accepted with fewer than fd_reserve descriptors left below the limit gets 503 and is closed,
 * and is counted; the limit is lowered for the test below the descriptors already open. */
static void test_fd_reserve_503(void **state) {
  uint64_t saved = big.fd_limit;
  big.fd_limit = 8; /* every descriptor number is past 8 - reserve (capped at limit/4 = 2) */
  uint64_t before = big.refused_fds;
  int fd = dial_port(big_port);
  char buf[4096];
  bool eof;
  send_all(fd, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", strlen("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"));
  read_until(fd, buf, sizeof buf, "never", 1, &eof);
  big.fd_limit = saved;
  assert_true(eof);
  assert_non_null(strstr(buf, "HTTP/1.1 503"));
  assert_non_null(strstr(buf, "Retry-After: 1"));
  assert_non_null(strstr(buf, "\"error\""));
  assert_int_equal(big.refused_fds, before + 1);
  close(fd);
  struct buf m = {0};
  http_server_metrics(&big, &m);
  assert_non_null(strstr(m.base, "infermesh_http_refused_total{reason=\"descriptors\"} 1\n"));
  assert_non_null(strstr(m.base, "process_open_fds "));
  assert_non_null(strstr(m.base, "process_max_fds "));
  buf_free(&m);
}

/* A long-lived response can ask the kernel to reap a peer that vanished (TCP_USER_TIMEOUT + keepalive). */
static void test_dead_peer_timeout(void **state) {
  int fd = dial();
  char buf[4096];
  bool eof;
  const char *req = "GET /reap HTTP/1.1\r\nHost: x\r\n\r\n";
  send_all(fd, req, strlen(req));
  read_until(fd, buf, sizeof buf, "reap=", 1, &eof);
  assert_non_null(strstr(buf, "reap=0"));
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive_two_requests),
      cmocka_unit_test(test_pipelining_in_one_write),
      cmocka_unit_test(test_split_reads_byte_by_byte),
      cmocka_unit_test(test_chunked_request_body),
      cmocka_unit_test(test_chunked_response),
      cmocka_unit_test(test_body_too_large_413),
      cmocka_unit_test(test_chunked_body_too_large_413),
      cmocka_unit_test(test_headers_too_large_431),
      cmocka_unit_test(test_too_many_headers_431),
      cmocka_unit_test(test_malformed_400),
      cmocka_unit_test(test_slow_headers_408),
      cmocka_unit_test(test_http10_closes),
      cmocka_unit_test(test_client_abort_calls_abort_cb),
      cmocka_unit_test(test_http_version_9_9_400),
      cmocka_unit_test(test_no_version_400),
      cmocka_unit_test(test_obs_fold_400),
      cmocka_unit_test(test_space_before_colon_400),
      cmocka_unit_test(test_ows_in_values_ok),
      cmocka_unit_test(test_half_close_is_answered),
      cmocka_unit_test(test_half_close_mid_request_closes),
      cmocka_unit_test(test_close_while_waiting_aborts),
      cmocka_unit_test(test_body_budget_503),
      cmocka_unit_test(test_fd_reserve_503),
      cmocka_unit_test(test_dead_peer_timeout),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
