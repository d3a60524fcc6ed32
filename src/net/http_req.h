/* The protocol-neutral request and response API: what a handler sees of one request, whether it came over
 * HTTP/1.1 (net/http_server.c) or as an HTTP/2 stream (net/h2_server.c). The response operations are a table
 * each protocol implements (as h2o's do_send). */
#ifndef IM_NET_HTTP_REQ_H
#define IM_NET_HTTP_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/slice.h"
#include "net/http_common.h"

/* Request methods, independent of any parser. */
enum http_method_id {
  HTTP_M_OTHER = 0,
  HTTP_M_GET,
  HTTP_M_HEAD,
  HTTP_M_POST,
  HTTP_M_PUT,
  HTTP_M_DELETE,
  HTTP_M_PATCH,
  HTTP_M_OPTIONS,
};

/* http_method_parse maps a method token ("GET") to its id; HTTP_M_OTHER when not one of the above. */
int http_method_parse(struct slice token);
/* http_method_name returns the token of an id ("OTHER" for HTTP_M_OTHER); a static string. */
const char *http_method_name(int method);

struct http_req;
struct http_server;

/* What a protocol implements for its responses. Called only through the http_resp_* functions below, which
 * keep the state checks (started, ended, aborted) in one place: an op is never called after the request was
 * aborted, except end. */
struct http_resp_ops {
  void (*start)(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                int64_t content_length);
  void (*writev)(struct http_req *req, const struct slice *parts, size_t nparts);
  void (*flush)(struct http_req *req);
  /* end finishes the response and releases req (after the last op on it); called also after an abort. */
  void (*end)(struct http_req *req);
  size_t (*queued)(const struct http_req *req);
  void (*peer)(const struct http_req *req, char *out, size_t len);
  int (*dead_peer_timeout)(struct http_req *req, unsigned ms);
  const char *(*client_cn)(const struct http_req *req);
  /* trailers, if the protocol has them (HTTP/2), stores hdrs[0..n) (copied) to be sent after the body by the
   * end that follows at once; NULL: trailers are not sent (HTTP/1.1). */
  void (*trailers)(struct http_req *req, const struct http_header *hdrs, int n);
};

/* One request. Owned by the server: valid from the handler call until the handler calls http_resp_end,
 * which it must do exactly once, also after abort_cb. Slices (url, headers, body) point into server memory
 * and stay valid until then. */
struct http_req {
  struct http_server *server;
  int method;  /* enum http_method_id */
  int version; /* 10, 11 (HTTP/1.x) or 20 (HTTP/2) */
  struct slice url, path, query;
  struct http_header headers[HTTP_MAX_HEADERS];
  int nheaders;
  struct slice body;
  /* HTTP/1.x: the connection stays open after the response; a handler may clear it before starting the
   * response to close the connection after it. HTTP/2 ignores it (streams end, the connection stays). */
  bool keep_alive;
  uint64_t start_ns; /* monotonic time the request's headers (HTTP/2: its last frame) were complete */
  /* Request-lifetime memory: cleared when the server reuses or frees req, after http_resp_end. */
  struct mem_pool pool;
  /* For the handler. abort_cb, if set, is called once when the client goes away (HTTP/2: resets the stream)
   * before http_resp_end; afterwards every http_resp_* call is a no-op except http_resp_end, which still
   * must be called. */
  void *data;
  void (*abort_cb)(struct http_req *req);
  /* drain_cb, if set, is called when bytes queued for the client fall below the low watermark after
   * having been above the high one (see http_resp_queued): resume producing. */
  void (*drain_cb)(struct http_req *req);
  /* The client's EOF (half-close) normally leaves the request to be answered; a handler whose response never
   * ends by itself (an event stream) sets eof_aborts so that the EOF aborts it at once instead of at the
   * next write. */
  bool eof_aborts;
  /* private: the protocol's ops and its state (the HTTP/1.1 connection or the HTTP/2 stream) */
  const struct http_resp_ops *ops;
  void *impl;
  bool resp_started, resp_ended, aborted;
};

/* http_req_header finds a request header by name (case-insensitive); empty slice with base NULL if absent. */
struct slice http_req_header(const struct http_req *req, const char *name);
/* http_req_peer writes the client's IP address (no port) into out (NUL-terminated); "" when unknown. */
void http_req_peer(const struct http_req *req, char *out, size_t len);
/* http_req_client_cn is the subject CN of the client certificate req's TLS connection presented and that
 * verified against the listener's client CA; NULL when there is none (or no TLS). Valid until http_resp_end. */
const char *http_req_client_cn(const struct http_req *req);
/* http_req_dead_peer_timeout makes the kernel fail req's connection (which aborts req) when what was sent
 * stays unacknowledged for ms, or the idle peer stops answering TCP keepalive probes: for long-lived
 * responses to a client that may vanish without a FIN or a reset. Returns 0 or a negative errno. */
int http_req_dead_peer_timeout(struct http_req *req, unsigned ms);

/* http_resp_start starts the response: status and headers. content_length < 0 means the length is unknown
 * (HTTP/1.1 sends the body chunked). The protocol adds its own framing headers (Content-Length,
 * Transfer-Encoding, Connection); the head may be held back to leave with the first body bytes. */
void http_resp_start(struct http_req *req, int status, const struct http_header *hdrs, int nhdrs,
                     int64_t content_length);
/* http_resp_flush sends a head that http_resp_start held back: for responses whose first bytes may take long.
 */
void http_resp_flush(struct http_req *req);
/* http_resp_writev queues body bytes given as nparts slices, as one piece of the body (copied once into
 * the connection's or stream's output; the caller keeps ownership of the bytes). */
void http_resp_writev(struct http_req *req, const struct slice *parts, size_t nparts);
/* http_resp_write is http_resp_writev of one slice. */
void http_resp_write(struct http_req *req, const void *data, size_t len);
/* http_resp_end finishes the response and releases req (its pool with it, once the server reuses it). */
void http_resp_end(struct http_req *req);
/* http_resp_end_trailers is http_resp_end that sends trailer fields hdrs[0..n) (copied) after the body:
 * HTTP/2 as a closing HEADERS frame (gRPC's grpc-status). The response must have been started with an
 * unknown length (content_length < 0). A protocol without trailers (HTTP/1.1) drops them: answer requests
 * that need them (content-type application/grpc) over HTTP/2 only. */
void http_resp_end_trailers(struct http_req *req, const struct http_header *hdrs, int n);
/* http_req_has_trailers tells whether req's protocol can send trailers (HTTP/2). */
bool http_req_has_trailers(const struct http_req *req);
/* http_resp_send is start + write + end for a complete body with a Content-Type. */
void http_resp_send(struct http_req *req, int status, const char *content_type, const void *body, size_t len,
                    const struct http_header *extra, int nextra);
/* http_resp_queued returns bytes accepted but not yet written to the client: HTTP/1.1, the connection's
 * queue; HTTP/2, what the stream's and the connection's flow-control windows hold back plus the connection's
 * queue. Above HTTP_WRITE_HIGH_WATER a producer should pause until drain_cb. */
size_t http_resp_queued(const struct http_req *req);

/* Backpressure watermarks for http_resp_queued/drain_cb. */
#define HTTP_WRITE_HIGH_WATER (256 * 1024)
#define HTTP_WRITE_LOW_WATER (64 * 1024)

/* For protocol implementations (src/net): http__req_abort marks req aborted and calls its abort_cb once;
 * http__req_drained calls its drain_cb when the response is still open. */
void http__req_abort(struct http_req *req);
void http__req_drained(struct http_req *req);

#endif
