/* HTTP/1.1 server on libuv: keep-alive, pipelining, chunked request bodies, limits and timeouts. */
#ifndef IM_NET_HTTP_SERVER_H
#define IM_NET_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/slice.h"
#include "net/http_common.h"

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

/* One request. Owned by the server: valid from the handler call until the handler calls http_resp_end,
 * which it must do exactly once, also after abort_cb. Slices (url, headers, body) point into server memory
 * and stay valid until then. */
struct http_req {
  struct http_server *server;
  int method; /* enum http_method of http_parser */
  struct slice url, path, query;
  struct http_header headers[HTTP_MAX_HEADERS];
  int nheaders;
  struct slice body;
  bool keep_alive;
  uint64_t start_ns; /* monotonic time the request's headers were complete */
  /* For the handler. abort_cb, if set, is called once when the client goes away before http_resp_end;
   * afterwards every http_resp_* call is a no-op except http_resp_end, which still must be called. */
  void *data;
  void (*abort_cb)(struct http_req *req);
  /* drain_cb, if set, is called when bytes queued for the client fall below the low watermark after
   * having been above the high one (see http_resp_queued): resume producing. */
  void (*drain_cb)(struct http_req *req);
  /* The client's EOF (half-close) normally leaves the request to be answered; a handler whose response never
   * ends by itself (an event stream) sets eof_aborts so that the EOF aborts it at once instead of at the
   * next write. */
  bool eof_aborts;
  /* private */
  struct http_conn *conn;
  bool resp_started, resp_chunked, resp_ended, aborted;
};

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
  /* TLS (net/http_tls.c): the context new connections use (NULL: plaintext, and the TLS code costs nothing), and
   * the buffer every TLS connection reads its ciphertext into before it is decrypted into the connection's. */
  struct tls_ctx *tls;
  char *tls_rbuf;
  /* Set by the HTTP/2 server to take connections (NULL: none): when set, ALPN offers "h2" besides "http/1.1",
   * and a TLS connection that chose h2 is handed to it when its handshake ends instead of being parsed as
   * HTTP/1.1 (plaintext that arrived with the handshake is in c->in). */
  void (*h2_take)(struct http_server *s, struct http_conn *c);
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
 * limit (process_open_fds, process_max_fds), connections, buffered body bytes and the budget, the counter
 * of refusals (infermesh_http_refused_total{reason="descriptors"|"body_budget"}), and with TLS on the failed
 * handshakes (infermesh_tls_handshake_failures_total). */
void http_server_metrics(struct http_server *s, struct buf *out);

/* http_raise_nofile raises the soft RLIMIT_NOFILE of the process to its hard limit (capped at 1<<20) and
 * returns the soft limit now in force (0 if it cannot be read). Call once at start, before listening. */
uint64_t http_raise_nofile(void);

/* http_req_dead_peer_timeout makes the kernel fail req's connection (which aborts req) when what was sent
 * stays unacknowledged for ms, or the idle peer stops answering TCP keepalive probes: for long-lived
 * responses to a client that may vanish without a FIN or a reset. Returns 0 or a negative errno. */
int http_req_dead_peer_timeout(struct http_req *req, unsigned ms);

/* http_req_peer writes the client's IP address (no port) into out (NUL-terminated); "" when unknown. */
void http_req_peer(const struct http_req *req, char *out, size_t len);

/* http_req_client_cn is the subject CN of the client certificate req's TLS connection presented and that
 * verified against the listener's client CA; NULL when there is none (or no TLS). Valid until http_resp_end. */
const char *http_req_client_cn(const struct http_req *req);

/* http_req_header finds a request header by name (case-insensitive); empty slice with base NULL if absent. */
struct slice http_req_header(const struct http_req *req, const char *name);

/* http_resp_start sends the status line and headers. content_length < 0 means the length is unknown:
 * the body is sent chunked. The server adds Content-Length/Transfer-Encoding and Connection itself. */
void http_resp_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                     int64_t content_length);
/* http_resp_flush sends a head that http_resp_start held back (it normally leaves with the first body
 * bytes, in one segment): for responses whose first body bytes may take long. */
void http_resp_flush(struct http_req *req);
/* http_resp_write queues body bytes (copied; the caller keeps ownership of data). */
void http_resp_write(struct http_req *req, const void *data, size_t len);
/* http_resp_end finishes the response (the last chunk when chunked) and releases req. */
void http_resp_end(struct http_req *req);
/* http_resp_send is start + write + end for a complete body with a Content-Type. */
void http_resp_send(struct http_req *req, int status, const char *content_type, const void *body, size_t len,
                    const struct http_header *extra, int nextra);
/* http_resp_queued returns bytes accepted but not yet written to the client's socket. */
size_t http_resp_queued(const struct http_req *req);

/* Backpressure watermarks for http_resp_queued/drain_cb. */
#define HTTP_WRITE_HIGH_WATER (256 * 1024)
#define HTTP_WRITE_LOW_WATER (64 * 1024)

#endif
