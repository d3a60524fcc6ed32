/* Fuzz target: arbitrary bytes from a client into the HTTP server's connection state machine. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/http_server.h"

static uv_loop_t loop;
static struct http_server srv;
static int port;

/* A request whose path has "later" is answered from the input loop a few turns on (so the client's EOF and
 * pipelined bytes arrive while it runs), unless the client goes away first. */
static struct http_req *later;

static void later_abort_cb(struct http_req *req) {
  later = NULL;
  http_resp_end(req);
}

static void handler(struct http_req *req, void *arg) {
  if (!later && memmem(req->path.base, req->path.len, "later", 5)) {
    later = req;
    req->abort_cb = later_abort_cb;
    return;
  }
  /* Touch everything the server hands out, so ASan checks the slices. */
  size_t sum = req->url.len + req->body.len;
  for (int i = 0; i < req->nheaders; i++) sum += req->headers[i].name.len + req->headers[i].value.len;
  for (size_t i = 0; i < req->body.len; i++) sum += (unsigned char)req->body.base[i];
  if (sum & 1) {
    http_resp_start(req, 200, NULL, 0, -1);
    http_resp_write(req, req->body.base, req->body.len);
    http_resp_end(req);
  } else {
    http_resp_send(req, 200, "text/plain", req->url.base, req->url.len, NULL, 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!port) {
    struct http_limits lim;
    http_limits_default(&lim);
    lim.max_body = 256 * 1024;
    lim.max_buffered_bodies = 100 * 1024; /* one large body at a time: the second gets 503 */
    uv_loop_init(&loop);
    http_server_init(&srv, &loop, &lim, handler, NULL);
    if (http_server_listen(&srv, "127.0.0.1", 0) != 0) return 0;
    port = http_server_port(&srv);
  }
  if (size > 300 * 1024) return 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
    close(fd);
    return 0;
  }
  size_t off = 0;
  char sink[65536];
  /* Feed the input in pieces while the server runs, then half-close and drain until the server closes. */
  for (int spins = 0; spins < 20000; spins++) {
    if (off < size) {
      ssize_t w = send(fd, data + off, size - off > 4096 ? 4096 : size - off, MSG_NOSIGNAL);
      if (w > 0) off += (size_t)w;
      if (off == size) shutdown(fd, SHUT_WR);
    } else if (size == 0 && spins == 0) {
      shutdown(fd, SHUT_WR);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    if (later && spins % 16 == 15) {
      struct http_req *r = later;
      later = NULL;
      http_resp_send(r, 200, "text/plain", "later", 5, NULL, 0);
    }
    ssize_t r = recv(fd, sink, sizeof sink, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN)) break;
  }
  close(fd);
  for (int i = 0; i < 10; i++) uv_run(&loop, UV_RUN_NOWAIT);
  if (later) { /* the client is gone; the server may not have noticed yet */
    struct http_req *r = later;
    later = NULL;
    http_resp_send(r, 200, "text/plain", "later", 5, NULL, 0);
  }
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  return 0;
}
