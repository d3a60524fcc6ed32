/* TLS for the HTTP server (OpenSSL 3): a server certificate context, and a per-connection layer that turns
 * the socket's ciphertext into plaintext for the HTTP parser and the server's plaintext back into ciphertext.
 * The layer does no socket I/O: it works on memory (custom in-memory BIOs), the server moves the bytes. */
#ifndef IM_NET_TLS_H
#define IM_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* Where a server context's PEM files are. */
struct tls_files {
  const char *cert;      /* the certificate, then its chain */
  const char *key;       /* its private key */
  const char *client_ca; /* CAs that sign client certificates; NULL or "" = no client certificate asked */
};

/* A server context: TLS 1.2 and 1.3 (1.3 preferred), ALPN http/1.1 (and h2 where the connection offers it),
 * client certificates verified against client_ca when set. Connections made from it hold their own reference
 * (OpenSSL counts them), so freeing a context that connections still use is safe: it goes with the last one.
 */
struct tls_ctx;

/* tls_ctx_load reads f's files into a new context (*out, owned by the caller: tls_ctx_free). Safe to call off
 * the loop thread (a reload runs in the thread pool). Returns 0, or -EINVAL with a message in err naming the
 * file and what is wrong with it. */
int tls_ctx_load(const struct tls_files *f, struct tls_ctx **out, char *err, size_t errlen);
/* tls_ctx_free drops the caller's reference (NULL: no-op). */
void tls_ctx_free(struct tls_ctx *x);
/* tls_ctx_describe writes the certificate's serial (hex), subject CN and expiry as logfmt pairs
 * (`serial=... subject="..." not_after="..."`) for log lines. */
void tls_ctx_describe(const struct tls_ctx *x, char *out, size_t cap);

/* One connection's TLS state, owned by the connection (tls_conn_free). */
struct tls_conn;

/* tls_conn_new starts a server-side session on x (which it references; x may be freed afterwards). offer_h2:
 * ALPN may choose "h2" (only once an HTTP/2 server takes such connections), else only "http/1.1". */
struct tls_conn *tls_conn_new(struct tls_ctx *x, bool offer_h2);
void tls_conn_free(struct tls_conn *t);

/* Results of tls_conn_input besides 0 (all input consumed). */
enum { TLS_PEER_CLOSED = 1, TLS_FAILED = -1 };

/* tls_conn_input takes ciphertext data[0..n) from the socket, runs the handshake, and appends the plaintext
 * it decrypts to plain (kept NUL-terminated). Returns 0, TLS_PEER_CLOSED when the peer sent close_notify, or
 * TLS_FAILED (the handshake or a record failed: tls_conn_error says why; an alert may wait in the output).
 * Bytes to send (handshake, alerts, tickets) accumulate in tls_conn_output. */
int tls_conn_input(struct tls_conn *t, const char *data, size_t n, struct buf *plain);
/* tls_conn_seal encrypts plain into the output and empties it; before the handshake has finished it leaves
 * plain as is (call again later). Returns 0 or TLS_FAILED. */
int tls_conn_seal(struct tls_conn *t, struct buf *plain);
/* tls_conn_output is the ciphertext waiting for the socket (borrowed; the caller writes it and resets it). */
struct buf *tls_conn_output(struct tls_conn *t);
/* tls_conn_close_notify queues the close_notify alert; false when there is nothing to say (no finished
 * handshake, or it failed). */
bool tls_conn_close_notify(struct tls_conn *t);

/* tls_conn_ready: the handshake has finished. */
bool tls_conn_ready(const struct tls_conn *t);
/* tls_alpn is the protocol ALPN chose ("h2", "http/1.1"), or "" when the client offered none. */
const char *tls_alpn(const struct tls_conn *t);
/* tls_peer_cn is the subject CN of the client's certificate once it was verified against client_ca; NULL when
 * none was presented (or it has no CN). Valid while t lives. */
const char *tls_peer_cn(const struct tls_conn *t);
/* tls_conn_error describes why input failed: the certificate verification error and the certificate's subject
 * when a client certificate was refused, else OpenSSL's reason. "" before a failure. */
const char *tls_conn_error(const struct tls_conn *t);
/* tls_conn_cert_refused: the failure was a client certificate that did not verify. */
bool tls_conn_cert_refused(const struct tls_conn *t);
/* tls_conn_plain_http: the failure was a plaintext HTTP request sent to the TLS port. */
bool tls_conn_plain_http(const struct tls_conn *t);

#endif
