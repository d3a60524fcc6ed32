/* HTTP client tests: the pooled client on a loop in this thread against a scripted upstream (blocking sockets on
 * 127.0.0.1 in a second thread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/http_client.h"

/* The upstream: answers the first request of its first connection, reads the second request there and closes
 * without answering (an idle keep-alive connection it had already given up on), then answers one request on a
 * second connection. It records the request line of each request it read. */
struct upstream {
  int lfd, port;
  char lines[3][64];
  int nlines;
};

static void read_head(int fd, struct upstream *u) {
  char buf[2048];
  size_t n = 0;
  while (n < sizeof buf - 1) {
    ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    buf[n] = '\0';
    if (strstr(buf, "\r\n\r\n")) break;
  }
  buf[n] = '\0';
  char *eol = strstr(buf, "\r\n");
  if (eol && u->nlines < 3) snprintf(u->lines[u->nlines++], sizeof u->lines[0], "%.*s", (int)(eol - buf), buf);
}

static void answer(int fd) {
  static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ssize_t w = write(fd, ok, sizeof ok - 1);
  (void)w;
}

static void *upstream_main(void *arg) {
  struct upstream *u = arg;
  int c1 = accept(u->lfd, NULL, NULL);
  read_head(c1, u);
  answer(c1);
  read_head(c1, u);
  close(c1);
  int c2 = accept(u->lfd, NULL, NULL);
  read_head(c2, u);
  answer(c2);
  close(c2);
  return NULL;
}

struct call {
  int status, err, done, resends;
  struct http_pool *pool;
  const char *resend_head;
};

static int on_head(void *arg, int status, const struct http_header *h, int n) {
  (void)h, (void)n;
  ((struct call *)arg)->status = status;
  return 0;
}
static int on_body(void *arg, const char *d, size_t len) {
  (void)arg, (void)d, (void)len;
  return 0;
}
static void on_done(void *arg, int err) {
  struct call *c = arg;
  c->err = err;
  c->done = 1;
}
static struct slice on_resend(void *arg) {
  struct call *c = arg;
  c->resends++;
  return slice_cstr(c->resend_head);
}

static void run_until(uv_loop_t *loop, const int *flag) {
  for (int i = 0; i < 1000000 && !*flag; i++) uv_run(loop, UV_RUN_ONCE);
}

static void test_resend_gets_a_new_head(void **state) {
  (void)state;
  struct upstream u = {0};
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  u.lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_int_equal(bind(u.lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(u.lfd, 4), 0);
  getsockname(u.lfd, (struct sockaddr *)&a, &al);
  pthread_t th;
  pthread_create(&th, NULL, upstream_main, &u);

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct http_pool pool;
  assert_int_equal(http_pool_init(&pool, &loop, "127.0.0.1", ntohs(a.sin_port)), 0);
  static const struct hc_callbacks cbs = {
      .on_head = on_head, .on_body = on_body, .on_done = on_done, .on_resend = on_resend};
  struct call c1 = {.resend_head = "GET /never HTTP/1.1\r\nHost: x\r\n\r\n"};
  hc_request(&pool, slice_cstr("GET /first HTTP/1.1\r\nHost: x\r\n\r\n"), NULL, 0, &cbs, &c1, 5000);
  run_until(&loop, &c1.done);
  assert_int_equal(c1.err, 0);
  assert_int_equal(c1.status, 200);
  assert_int_equal(c1.resends, 0);
  /* The second request goes out on the kept-alive connection, which the upstream closes unanswered: the client
   * sends it again on a new connection, with the head on_resend gave. */
  struct call c2 = {.resend_head = "GET /again HTTP/1.1\r\nHost: x\r\n\r\n"};
  hc_request(&pool, slice_cstr("GET /second HTTP/1.1\r\nHost: x\r\n\r\n"), NULL, 0, &cbs, &c2, 5000);
  run_until(&loop, &c2.done);
  assert_int_equal(c2.err, 0);
  assert_int_equal(c2.status, 200);
  assert_int_equal(c2.resends, 1);
  pthread_join(th, NULL);
  assert_int_equal(u.nlines, 3);
  assert_string_equal(u.lines[0], "GET /first HTTP/1.1");
  assert_string_equal(u.lines[1], "GET /second HTTP/1.1");
  assert_string_equal(u.lines[2], "GET /again HTTP/1.1");
  assert_int_equal(pool.connects, 2);
  http_pool_close(&pool);
  for (int i = 0; i < 100 && uv_loop_alive(&loop); i++) uv_run(&loop, UV_RUN_NOWAIT);
  uv_loop_close(&loop);
  close(u.lfd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resend_gets_a_new_head),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
