/* The HTTP server's TLS glue: the listener's certificate context, and what a connection does with TLS input
 * (handshake end, refusals and their log lines). The record work is net/tls.c's. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/http_server.h"
#include "net/http_server_int.h"
#include "net/tls.h"

void http_server_set_tls(struct http_server *s, struct tls_ctx *ctx) {
  tls_ctx_free(s->tls);
  s->tls = ctx;
  if (ctx && !s->tls_rbuf) s->tls_rbuf = xmalloc(HTTP_TLS_READ);
  if (!ctx) {
    free(s->tls_rbuf);
    s->tls_rbuf = NULL;
  }
}

const char *http__conn_client_cn(const struct http_conn *c) { return c->tls ? tls_peer_cn(c->tls) : NULL; }

/* Log the failure (the reason may hold a certificate subject: no double quotes in a logfmt value) and answer
 * a plaintext request in plaintext, the way the client will read it. */
static void refused(struct http_conn *c) {
  struct http_server *s = c->srv;
  char peer[64], why[320];
  s->tls_refused++;
  http__conn_peer(c, peer, sizeof peer);
  str_copy(why, sizeof why, tls_conn_error(c->tls));
  for (char *q = why; (q = strchr(q, '"'));)
    *q = '\'';
  if (tls_conn_cert_refused(c->tls)) {
    log_warn("refused a TLS client certificate", "peer=%s reason=\"%s\"", peer, why);
  } else if (tls_conn_plain_http(c->tls)) {
    log_info("refused plaintext HTTP on the TLS listener", "peer=%s", peer);
    struct buf body = {0}, *out = tls_conn_output(c->tls);
    http_error_json(&body, "this port speaks HTTPS: use https:// URLs", "invalid_request_error",
                    "https_required");
    buf_printf(out,
               "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n",
               body.len);
    buf_append(out, body.base, body.len);
    buf_free(&body);
  } else {
    log_info("TLS handshake failed", "peer=%s reason=\"%s\"", peer, why);
  }
}

int http__tls_input(struct http_conn *c, const char *data, size_t n, struct buf *plain) {
  bool was_ready = tls_conn_ready(c->tls);
  int rc = tls_conn_input(c->tls, data, n, plain);
  if (rc == TLS_FAILED) {
    refused(c);
    return rc;
  }
  if (!was_ready && tls_conn_ready(c->tls)) http__conn_arm_timer(c, c->srv->limits.idle_timeout_ms);
  return rc;
}
