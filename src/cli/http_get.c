/* Blocking HTTP client for the CLI: connect with a timeout, send, read to EOF, parse with http_parser. */
#include "cli/http_get.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/tls_client.h"
#include "core/clock.h"

struct resp {
  struct buf *body;
  bool done;
  http_stream_cb cb; /* streaming: body bytes of a 2xx answer go here as they arrive */
  void *cb_arg;
  bool headers_done;
};

static int on_body(http_parser *p, const char *at, size_t len) {
  struct resp *r = p->data;
  if (r->cb && p->status_code / 100 == 2) return r->cb(r->cb_arg, at, len) != 0;
  buf_append(r->body, at, len);
  return 0;
}

static int on_headers_complete(http_parser *p) {
  ((struct resp *)p->data)->headers_done = true;
  return 0;
}

static int on_complete(http_parser *p) {
  ((struct resp *)p->data)->done = true;
  return 0;
}

static int wait_fd(int fd, short ev, uint64_t deadline) {
  uint64_t now = clock_mono_ns();
  int ms = deadline == UINT64_MAX ? -1 : now >= deadline ? 0 : (int)((deadline - now) / 1000000);
  struct pollfd pfd = {fd, ev, 0};
  int rc = poll(&pfd, 1, ms);
  return rc > 0 ? 0 : rc == 0 ? -ETIMEDOUT : -errno;
}

/* The connection: a socket, with TLS on it for https:// URLs. */
struct conn {
  int fd;
  struct tls_client *tls;
};

static ssize_t conn_send(struct conn *c, const char *data, size_t n, uint64_t deadline) {
  if (c->tls) return tls_client_send(c->tls, data, n, deadline);
  for (size_t off = 0; off < n;) {
    ssize_t w = send(c->fd, data + off, n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN && wait_fd(c->fd, POLLOUT, deadline) == 0) continue;
    if (w <= 0) return -EIO;
    off += (size_t)w;
  }
  return (ssize_t)n;
}

/* Bytes received (0 at the end), -ETIMEDOUT past the deadline, or another negative errno. */
static ssize_t conn_recv(struct conn *c, char *data, size_t n, uint64_t deadline) {
  if (c->tls) return tls_client_recv(c->tls, data, n, deadline);
  for (;;) {
    ssize_t got = recv(c->fd, data, n, 0);
    if (got >= 0) return got;
    if (errno != EAGAIN) return -EIO;
    int rc = wait_fd(c->fd, POLLIN, deadline);
    if (rc) return rc;
  }
}

static void conn_close(struct conn *c) {
  tls_client_close(c->tls);
  close(c->fd);
}

/* request does the work of http_get and http_request; agent picks the wording of connection errors. */
static int request(const char *method, const char *base_url, const char *path, const char *req_body,
                   const char *extra, int timeout_ms, int *status, struct buf *body, char *err, size_t errlen,
                   bool agent, http_stream_cb cb, void *cb_arg) {
  char host[64], name[64];
  struct sockaddr_in sa = {.sin_family = AF_INET};
  const char *p = base_url;
  bool https = strncmp(p, "https://", 8) == 0;
  if (!https && strncmp(p, "http://", 7) != 0) goto bad_url;
  p += https ? 8 : 7;
  const char *colon = strchr(p, ':');
  if (!colon || (size_t)(colon - p) >= sizeof host) goto bad_url;
  memcpy(host, p, (size_t)(colon - p));
  host[colon - p] = '\0';
  str_copy(name, sizeof name, host); /* what the server's certificate must name */
  if (strcmp(host, "localhost") == 0) str_copy(host, sizeof host, "127.0.0.1");
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (port <= 0 || port > 65535 || (*end && strcmp(end, "/") != 0) || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
    goto bad_url;
  sa.sin_port = htons((uint16_t)port);

  uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return snprintf(err, errlen, "socket: %s", strerror(errno)), -errno;
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  if (rc != 0 && errno == EINPROGRESS) {
    rc = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (rc == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl), rc = -soerr;
  } else if (rc != 0) {
    rc = -errno;
  }
  if (rc != 0) {
    if (agent)
      snprintf(err, errlen, "cannot reach the agent at %s: %s (is it running? pass --agent URL)", base_url,
               strerror(-rc));
    else
      snprintf(err, errlen, "cannot reach %s: %s", base_url, strerror(-rc));
    close(fd);
    return rc;
  }
  struct conn cn = {fd, NULL};
  if (https && (rc = tls_client_open(&cn.tls, fd, name, base_url, deadline, err, errlen)) != 0) {
    close(fd);
    return rc;
  }
  struct buf req = {0};
  size_t blen = req_body ? strlen(req_body) : 0;
  buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s:%ld\r\nConnection: close\r\nAccept: application/json\r\n", method,
             path, host, port);
  if (req_body) buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
  if (extra) buf_puts(&req, extra);
  buf_puts(&req, "\r\n");
  if (req_body) buf_append(&req, req_body, blen);
  if (conn_send(&cn, req.base, req.len, deadline) < 0) {
    snprintf(err, errlen, "sending to %s failed: %s", base_url, strerror(errno));
    conn_close(&cn);
    buf_free(&req);
    return -EIO;
  }
  buf_free(&req);
  http_parser parser;
  http_parser_settings settings = {
      .on_body = on_body, .on_headers_complete = on_headers_complete, .on_message_complete = on_complete};
  struct resp r = {body, false, cb, cb_arg, false};
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &r;
  char buf[16384];
  while (!r.done) {
    if (r.cb && r.headers_done && parser.status_code / 100 == 2) deadline = UINT64_MAX; /* a stream: no end */
    ssize_t got = conn_recv(&cn, buf, sizeof buf, deadline);
    if (got == -ETIMEDOUT) {
      snprintf(err, errlen, "no answer from %s within %d ms", base_url, timeout_ms);
      conn_close(&cn);
      return -ETIMEDOUT;
    }
    if (got < 0) {
      snprintf(err, errlen, "reading from %s failed: %s", base_url, strerror(errno));
      conn_close(&cn);
      return -EIO;
    }
    size_t parsed = http_parser_execute(&parser, &settings, buf, (size_t)got);
    if (got == 0) break;
    if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || parsed != (size_t)got) break;
  }
  conn_close(&cn);
  if (r.cb && r.headers_done) { /* a stream that ended (or that the callback stopped) is a success */
    *status = parser.status_code;
    return 0;
  }
  if (!r.done) {
    snprintf(err, errlen, "%s sent an incomplete or invalid HTTP response", base_url);
    return -EPROTO;
  }
  *status = parser.status_code;
  return 0;
bad_url:
  snprintf(err, errlen, "%s URL '%s' must look like http://127.0.0.1:8080 or https://HOST:PORT", agent ? "agent" : "the",
           base_url);
  return -EINVAL;
}

int http_get(const char *base_url, const char *path, int timeout_ms, int *status, struct buf *body, char *err,
             size_t errlen) {
  return request("GET", base_url, path, NULL, NULL, timeout_ms, status, body, err, errlen, true, NULL, NULL);
}

int http_request(const char *method, const char *base_url, const char *path, const char *req_body, int timeout_ms,
                 int *status, struct buf *body, char *err, size_t errlen) {
  return request(method, base_url, path, req_body, NULL, timeout_ms, status, body, err, errlen, false, NULL, NULL);
}

int http_request_hdrs(const char *method, const char *base_url, const char *path, const char *req_body,
                      const char *headers, int timeout_ms, int *status, struct buf *body, char *err, size_t errlen) {
  return request(method, base_url, path, req_body, headers, timeout_ms, status, body, err, errlen, true, NULL, NULL);
}

int http_stream(const char *base_url, const char *path, const char *headers, int connect_timeout_ms, http_stream_cb cb,
                void *arg, int *status, struct buf *body, char *err, size_t errlen) {
  return request("GET", base_url, path, NULL, headers, connect_timeout_ms, status, body, err, errlen, true, cb, arg);
}
