/* HTTP/1.1 client on libuv with per-upstream keep-alive connection pools. */
#ifndef IM_NET_HTTP_CLIENT_H
#define IM_NET_HTTP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/slice.h"
#include "net/http_common.h"

/* A way to open a pool's connections other than TCP connect (the agent-to-agent tunnel, tunnel/tunnel.h).
 * dial starts a connection to port of node (HTTP_DIALER_NODE_LEN bytes, borrowed for the call) and returns a
 * handle for cancel; unless cancelled it calls cb(cbarg, status, fd) once, never inside dial: status 0 and a
 * connected stream socket fd (ownership passes), or a negative errno (a UV error code). */
#define HTTP_DIALER_NODE_LEN 32
typedef void (*http_dial_cb)(void *cbarg, int status, uv_os_sock_t fd);
struct http_dialer {
  void *(*dial)(void *arg, const uint8_t *node, int port, http_dial_cb cb, void *cbarg);
  void (*cancel)(void *handle);
  void *arg;
};

/* One upstream address (host:port) and its idle keep-alive connections. The caller owns the struct;
 * call http_pool_close before freeing it. */
struct http_pool {
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  char authority[128]; /* host:port, for the Host header */
  struct hc_conn *idle;
  int nidle, max_idle;
  int nbusy;
  uint32_t connect_timeout_ms;
  uint64_t connects, reuses; /* counters, for metrics and tests */
  const struct http_dialer *dialer; /* NULL: TCP connect to addr */
  uint8_t node[HTTP_DIALER_NODE_LEN]; /* what the dialer connects to */
  int port;
};

/* http_pool_init resolves a numeric host (IPv4/IPv6 literal or "localhost") and port. 0 or -EINVAL. */
int http_pool_init(struct http_pool *p, uv_loop_t *loop, const char *host, int port);
/* http_pool_set_dialer makes p open its new connections with d (borrowed; it must outlive p) to node (copied)
 * at p's port, instead of connecting to its address. Set it before the first request. */
void http_pool_set_dialer(struct http_pool *p, const struct http_dialer *d, const uint8_t node[HTTP_DIALER_NODE_LEN]);
/* http_pool_close closes idle connections. Requests in flight must have ended or been cancelled. */
void http_pool_close(struct http_pool *p);

struct hc_req;

/* Callbacks of one request, called on the loop thread. on_head and on_body return 0 to continue or
 * nonzero to stop: the connection is closed and on_done follows with UV_ECANCELED. on_done is called
 * exactly once: err 0 when the response completed, or a negative UV error (UV_ETIMEDOUT, UV_ECONNREFUSED,
 * UV_EOF ...). After hc_cancel no callback is called. */
struct hc_callbacks {
  int (*on_head)(void *arg, int status, const struct http_header *h, int n);
  int (*on_body)(void *arg, const char *data, size_t len); /* decoded body bytes, borrowed for the call */
  void (*on_done)(void *arg, int err);
  /* on_resend, optional: the request is about to be sent again on a fresh connection (see hc_request); it
   * returns the head to send this time (borrowed like hc_request's), e.g. one with a new single-use
   * signature. NULL: the same head is sent again. */
  struct slice (*on_resend)(void *arg);
};

/* hc_request sends a request: `head` is the complete request line and headers including the final blank
 * line; body parts are written after it. head and body memory is borrowed and must stay valid until
 * on_done or hc_cancel. timeout_ms bounds the wait for each read (connect, first byte, between bytes).
 * A failure on a reused keep-alive connection before any response byte is retried once on a new one
 * (cbs->on_resend may give it a new head).
 * Returns the request handle (owned by the client; invalid after on_done/hc_cancel). */
struct hc_req *hc_request(struct http_pool *p, struct slice head, const struct slice *body, int nbody,
                          const struct hc_callbacks *cbs, void *arg, uint32_t timeout_ms);
/* hc_cancel aborts a request: its connection is closed (so the upstream sees the abort) and no callback
 * follows. Not from inside on_head/on_body: return nonzero there instead. */
void hc_cancel(struct hc_req *r);
/* hc_pause / hc_resume stop and restart reading the response (backpressure). */
void hc_pause(struct hc_req *r);
void hc_resume(struct hc_req *r);
/* hc_bytes_received tells whether any response byte arrived (a retry is safe only before that). */
bool hc_got_response(const struct hc_req *r);

#endif
