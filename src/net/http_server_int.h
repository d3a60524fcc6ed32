/* HTTP/1.1 server internals shared by its files (http_server.c: connections and writing; http_parse.c: the
 * parser callbacks; http_guard.c: process-wide bounds). Not for use outside src/net. */
#ifndef IM_NET_HTTP_SERVER_INT_H
#define IM_NET_HTTP_SERVER_INT_H

#include <http_parser.h>

#include "net/http_server.h"

struct hoff {
  size_t no, nl, vo, vl;
};

/* One connection. Request slices point into `in`, which is never reallocated while a request is active:
 * bytes that arrive meanwhile go to `pending` and are appended after the response ends. */
struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uint64_t deadline; /* loop time (ms) the armed timeout expires at; 0 = none (the timer may still run) */
  struct http_server *srv;
  struct http_conn *next, *prev;
  http_parser parser;
  struct buf in;      /* received bytes not yet released */
  size_t parsed;      /* bytes of `in` consumed by the parser */
  struct buf pending; /* bytes that arrived while a request was active */
  /* the message being parsed, as offsets into `in` (it may move between reads) */
  size_t url_off, url_len;
  struct hoff hdr[HTTP_MAX_HEADERS];
  int nhdr;
  bool in_value;
  size_t header_bytes;
  size_t body_off, body_len;
  bool body_copied;
  struct buf body; /* only for bodies that arrived non-contiguously (chunked) */
  int fail_status; /* status to answer when the parser stops on a limit */
  const char *fail_msg;
  bool in_message, headers_done;
  struct http_req req;
  bool req_active;
  bool in_dispatch;
  bool closing;  /* uv_close issued */
  bool shutting; /* uv_shutdown issued: flush writes, then close */
  bool write_failed;
  bool closed;     /* close callbacks done (socket and timer) */
  bool peer_eof;   /* the client half-closed: answer what it sent, then close */
  bool probed;     /* the 100 Continue probe for a client gone after EOF was sent */
  size_t reserved; /* bytes of this request's body counted in srv->buffered_bodies */
  int handles_open;
  bool reading;
  struct buf head; /* response head, held back to go out with the first body bytes */
  struct buf out;  /* output gathered during this loop turn */
  bool dirty;      /* on the server's dirty list */
  struct http_conn *dirty_next, *dirty_prev;
  size_t write_queued; /* bytes handed to uv_write and not yet written */
  bool above_high;
  bool resp_chunked;
  bool h1;               /* the first bytes were not the HTTP/2 preface */
  struct h2_session *h2; /* set once the HTTP/2 preface arrived: every later byte goes to it */
  struct tls_conn *tls; /* NULL on a plaintext listener */
};

/* The parser callbacks (http_parse.c): they fill c's message offsets, enforce the limits, the global body
 * budget and RFC 9112's strictness, and pause the parser at the end of each message. */
extern const http_parser_settings http__parser_settings;

/* http__conn_arm_timer sets c's timeout to ms from now (0: none). */
void http__conn_arm_timer(struct http_conn *c, uint32_t ms);
/* http__conn_write gathers up to three parts (copied) for this loop turn's write. */
void http__conn_write(struct http_conn *c, const void *a, size_t alen, const void *b, size_t blen,
                      const void *d, size_t dlen);
/* http__method_id maps http_parser's method to enum http_method_id. */
int http__method_id(int parser_method);
/* http__conn_peer writes c's peer address as http_req_peer does. */
void http__conn_peer(const struct http_conn *c, char *out, size_t len);
/* Bytes of ciphertext read from a TLS connection at once (the size of srv->tls_rbuf). */
#define HTTP_TLS_READ (64 * 1024)
/* http__tls_input decrypts n bytes of ciphertext from c's socket into plain (c->in or c->pending), where the
 * HTTP/2 preface check and the HTTP/1.1 parser find them as they find plaintext; when the handshake ends it arms
 * the idle timeout; a failure is counted and logged, and answered (an alert, or a 400 in plaintext to a plaintext
 * request). Returns tls_conn_input's result. The caller sends what waits in tls_conn_output (net/http_tls.c). */
int http__tls_input(struct http_conn *c, const char *data, size_t n, struct buf *plain);
/* http__conn_client_cn is http_req_client_cn for the requests of c (net/http_tls.c). */
const char *http__conn_client_cn(const struct http_conn *c);

/* http__budget_release gives back what c's body holds of the server's body budget. */
void http__budget_release(struct http_conn *c);

#endif
