/* HTTP server on libuv: HTTP/1.1 (keep-alive, pipelining, chunked request bodies, limits and timeouts) and,
 * on the same listener, HTTP/2 with prior knowledge (net/h2_server.h). Handlers see net/http_req.h. */
#ifndef IM_NET_HTTP_SERVER_H
#define IM_NET_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/slice.h"
#include "net/http_common.h"
#include "net/http_req.h"

struct http_limits {
  size_t max_header_bytes;    /* request line + headers; beyond: 431 */
  int max_headers;            /* at most HTTP_MAX_HEADERS; beyond: 431 */
  size_t max_body;            /* beyond: 413 */
  uint32_t header_timeout_ms; /* from the first byte of a request until its headers end; then 408 */
  uint32_t body_timeout_ms;   /* from the end of the headers until the body ends; then 408 */
  uint32_t idle_timeout_ms;   /* a keep-alive connection with no request is closed after this */
  /* Global bounds (DESIGN §10). Bodies larger than HTTP_SMALL_BODY are counted against max_buffered_bodies
   * (0: no bound) from their headers until the response ends; a new one that does not fit gets 503 with
   * Retry-After instead of memory. A connection accepted while fewer than fd_reserve descriptors are left
   * below RLIMIT_NOFILE gets 503 and is closed, so the process keeps descriptors to answer, log and reach
   * its upstreams. */
  size_t max_buffered_bodies;
  int fd_reserve;
};

/* Bodies up to this size are never refused for the global budget (they are bounded by the connection). */
#define HTTP_SMALL_BODY (64 * 1024)

/* http_limits_default fills sane defaults: 16 KiB headers, 64 headers, 8 MiB body, 10 s / 30 s / 60 s,
 * 64 MiB of large bodies buffered at once, 64 descriptors in reserve. */
void http_limits_default(struct http_limits *l);

struct http_conn;
struct http_server;
struct tls_ctx;

/* Called once per request on the loop thread. */
typedef void (*http_handler_cb)(struct http_req *req, void *arg);

struct http_server {
  uv_loop_t *loop;
  uv_tcp_t tcp;
  struct http_limits limits;
  http_handler_cb handler;
  void *arg;
  struct http_conn *conns; /* intrusive list of open connections */
  int nconns;
  int nactive; /* requests between handler call and http_resp_end */
  bool listening, draining;
  void (*drained_cb)(struct http_server *s);
  /* Output is gathered per connection and written once per loop turn: before the loop blocks (prepare) and
   * after I/O callbacks ran (check), so a head, the frames of one upstream read and the final chunk leave
   * in one write(2). */
  uv_prepare_t prepare;
  uv_check_t check;
  bool flushers_started, finished;
  struct http_conn *dirty; /* connections with output waiting for the flush */
  /* Global bounds, read by http_server_metrics. */
  size_t buffered_bodies;  /* bytes of large bodies counted against limits.max_buffered_bodies now */
  uint64_t refused_fds;    /* connections answered 503 for want of descriptors */
  uint64_t refused_budget; /* requests answered 503 because the body budget was spent */
  uint64_t fd_limit;       /* soft RLIMIT_NOFILE when listening started */
  uint64_t fd_warned_ms;   /* loop time of the last "near the descriptor limit" log line */
  uint64_t h2_conns;       /* HTTP/2 sessions started */
  uint64_t h2_streams;     /* HTTP/2 requests handed to the handler */
  uint64_t refused_rapid_reset; /* HTTP/2 connections sent GOAWAY for resetting too many streams */
  /* TLS (net/http_tls.c): the context new connections use (NULL: plaintext, and the TLS code costs nothing), and
   * the buffer every TLS connection reads its ciphertext into before it is decrypted into the connection's. */
  struct tls_ctx *tls;
  char *tls_rbuf;
  uint64_t tls_refused; /* handshakes that failed (bad certificates, old protocols, plaintext) */
  char errmsg[160];
};

/* http_server_init prepares s (caller owns its memory, which must outlive the close callback). */
void http_server_init(struct http_server *s, uv_loop_t *loop, const struct http_limits *lim, http_handler_cb handler,
                      void *arg);
/* http_server_listen binds and listens on host:port (port 0: any). Returns 0 or a negative UV error with
 * a message in s->errmsg naming the problem and the fix. */
int http_server_listen(struct http_server *s, const char *host, int port);
/* http_server_set_tls makes connections accepted from now on speak TLS with ctx, which s owns from then on.
 * The context it replaces is freed; connections using it keep it until they close, so a certificate reload drops
 * nothing. NULL ends TLS and frees what it holds: only once no TLS connection is open (the drain does it; an
 * owner that gives up before serving does it too). */
void http_server_set_tls(struct http_server *s, struct tls_ctx *ctx);
/* http_server_port returns the bound port (useful after port 0), or -1. */
int http_server_port(struct http_server *s);
/* http_server_drain stops accepting, closes idle connections, lets active requests finish (their
 * connections close after the response), and calls cb once no connection is left. The listener handle
 * is closed too; after cb, s may be freed. */
void http_server_drain(struct http_server *s, void (*cb)(struct http_server *s));

/* http_server_metrics appends Prometheus text about the server's global bounds: open descriptors and the
 * limit (process_open_fds, process_max_fds), connections, buffered body bytes and the budget, and the counter
 * of refusals (infermesh_http_refused_total{reason="descriptors"|"body_budget"|"rapid_reset"}), and the
 * HTTP/2 counters (infermesh_http2_connections_total, infermesh_http2_streams_total), and with TLS on the
 * failed handshakes (infermesh_tls_handshake_failures_total). */
void http_server_metrics(struct http_server *s, struct buf *out);

/* http_raise_nofile raises the soft RLIMIT_NOFILE of the process to its hard limit (capped at 1<<20) and
 * returns the soft limit now in force (0 if it cannot be read). Call once at start, before listening. */
uint64_t http_raise_nofile(void);

#endif
