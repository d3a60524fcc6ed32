/* HTTP/2 server sessions (libnghttp2) over any byte stream: the plaintext listener after the client preface
 * (h2c with prior knowledge), and a TLS connection once ALPN chose "h2". Each stream is a struct http_req
 * handed to the server's handler, answered through the same response API as HTTP/1.1 (net/http_req.h). */
#ifndef IM_NET_H2_SERVER_H
#define IM_NET_H2_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/slice.h"

struct http_server;
struct h2_session;

/* The connection's 24-byte client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"). */
#define H2_PREFACE_LEN 24
/* Limits beyond http_limits (which also apply: header bytes and count as 431, body size as 413, the global
 * budget for large bodies as 503). */
#define H2_MAX_STREAMS 100         /* SETTINGS_MAX_CONCURRENT_STREAMS; more get RST_STREAM */
#define H2_RST_MAX 200             /* RST_STREAM frames from a client per window before GOAWAY ... */
#define H2_RST_WINDOW_MS 10000     /* ... (CVE-2023-44487, rapid reset) */
#define H2_STREAM_WINDOW (1 << 20) /* initial receive window per stream (request bodies) */
#define H2_CONN_WINDOW (4 << 20)   /* receive window of the connection */

/* h2_preface_check compares the first bytes of a connection with the client preface: 1 when all of it is
 * there, 0 when what arrived is a prefix of it (wait for more), -1 when it is not HTTP/2. */
int h2_preface_check(const char *data, size_t len);

/* What the transport under a session provides. Every callback is called on the loop thread with arg. */
struct h2_io {
  /* write gathers bytes for the peer (copied). */
  void (*write)(void *arg, const struct slice *parts, size_t nparts);
  /* queued returns bytes given to write and not yet on the wire. */
  size_t (*queued)(void *arg);
  /* close asks the transport to close once what was written has left (the session wants no more I/O). */
  void (*close)(void *arg);
  /* activity reports the number of requests whose handler has not ended them, when it changes to or from
   * zero: the transport runs its idle timeout at zero, and may free the session then if it is gone. */
  void (*activity)(void *arg, int nactive);
  /* peer and dead_peer_timeout as http_req_peer and http_req_dead_peer_timeout, for the connection. */
  void (*peer)(void *arg, char *out, size_t len);
  int (*dead_peer_timeout)(void *arg, unsigned ms);
  /* client_cn as http_req_client_cn, for the connection. */
  const char *(*client_cn)(void *arg);
};

/* h2_session_new starts an HTTP/2 server session for srv (its handler, limits and counters) on a transport:
 * it queues the server's SETTINGS through io. The transport then feeds every byte it receives, from the
 * client preface on, to h2_session_feed. io and srv must outlive the session. */
struct h2_session *h2_session_new(struct http_server *srv, const struct h2_io *io, void *arg);
/* h2_session_feed processes received bytes (not kept after the call); requests whose last frame arrived are
 * handed to the handler. Returns 0, or a negative value when the connection must end: the transport flushes
 * what was written (a GOAWAY) and closes. */
int h2_session_feed(struct h2_session *h, const char *data, size_t len);
/* h2_session_written tells the session that the transport's queue shrank: it sends what flow control
 * allows and calls the drain_cb of requests whose queue fell below the low watermark. */
void h2_session_written(struct h2_session *h);
/* h2_session_shutdown sends GOAWAY (no new streams); the transport is asked to close once no stream is left.
 */
void h2_session_shutdown(struct h2_session *h);
/* h2_session_detach is for a transport that is gone: requests still open are aborted (abort_cb); of io, only
 * activity is called after this (when the last of them ends, so the transport can free the session). */
void h2_session_detach(struct h2_session *h);
/* h2_session_active returns the number of requests handed to the handler and not ended yet. */
int h2_session_active(const struct h2_session *h);
/* h2_session_free releases the session; only once h2_session_active is 0 (after h2_session_detach). */
void h2_session_free(struct h2_session *h);

#endif
