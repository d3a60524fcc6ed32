/* HTTPS for the CLI: a blocking OpenSSL client with verification of the server's certificate and name. */
#include "cli/tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

struct tls_client {
  SSL_CTX *ctx;
  SSL *ssl;
};

static const char *ca_file;

void tls_client_set_ca(const char *file) { ca_file = file; }

int cli_take_ca(int argc, char **argv) {
  int out = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--ca") == 0) {
      if (i + 1 >= argc) return -1;
      tls_client_set_ca(argv[++i]);
    } else if (strncmp(argv[i], "--ca=", 5) == 0) {
      tls_client_set_ca(argv[i] + 5);
    } else {
      argv[out++] = argv[i];
    }
  }
  return out;
}

/* Wait for what OpenSSL asked (SSL_ERROR_WANT_READ/WRITE) until deadline: 0, -ETIMEDOUT, or -EIO. */
static int wait_want(struct tls_client *t, int ret, uint64_t deadline) {
  int e = SSL_get_error(t->ssl, ret);
  if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -EIO;
  uint64_t now = clock_mono_ns();
  int ms = deadline == UINT64_MAX ? -1 : now >= deadline ? 0 : (int)((deadline - now) / 1000000);
  struct pollfd pfd = {SSL_get_fd(t->ssl), e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 0};
  int rc = poll(&pfd, 1, ms);
  return rc > 0 ? 0 : rc == 0 ? -ETIMEDOUT : -EIO;
}

static const char *first_reason(void) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "the connection was closed";
}

int tls_client_open(struct tls_client **out, int fd, const char *host, const char *url, uint64_t deadline,
                    char *err, size_t errlen) {
  *out = NULL;
  const char *ca = ca_file ? ca_file : getenv("INFERMESH_CA");
  if (ca && !*ca) ca = NULL;
  ERR_clear_error();
  struct tls_client *t = calloc(1, sizeof *t);
  if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
    free(t);
    snprintf(err, errlen, "cannot set up TLS: out of memory");
    return -ENOMEM;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
  if (ca ? SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1
         : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
    snprintf(err, errlen, "cannot read the CA file %s: %s (--ca FILE or INFERMESH_CA: PEM CA certificates)",
             ca ? ca : "(system)", first_reason());
    tls_client_close(t);
    return -EINVAL;
  }
  t->ssl = SSL_new(t->ctx);
  SSL_set_fd(t->ssl, fd);
  unsigned char ip[16];
  bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
  if (is_ip)
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
  else {
    SSL_set_tlsext_host_name(t->ssl, host);
    SSL_set1_host(t->ssl, host);
  }
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_set_alpn_protos(t->ssl, alpn, sizeof alpn - 1);
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(t->ssl);
    if (r == 1) break;
    int w = wait_want(t, r, deadline);
    if (w == 0) continue;
    long v = SSL_get_verify_result(t->ssl);
    if (w == -ETIMEDOUT)
      snprintf(err, errlen, "TLS handshake with %s timed out", url);
    else if (v != X509_V_OK)
      snprintf(err, errlen,
               "the certificate of %s did not verify: %s (pass --ca FILE or set INFERMESH_CA to the CA "
               "that signed it)",
               url, X509_verify_cert_error_string(v));
    else
      snprintf(err, errlen, "TLS handshake with %s failed: %s (is it an https:// listener?)", url,
               first_reason());
    tls_client_close(t);
    return w == -ETIMEDOUT ? -ETIMEDOUT : -EPROTO;
  }
  *out = t;
  return 0;
}

ssize_t tls_client_send(struct tls_client *t, const void *data, size_t n, uint64_t deadline) {
  for (size_t off = 0; off < n;) {
    ERR_clear_error();
    size_t done = 0;
    int r = SSL_write_ex(t->ssl, (const char *)data + off, n - off, &done);
    if (r == 1) {
      off += done;
      continue;
    }
    int w = wait_want(t, r, deadline);
    if (w) return w;
  }
  return (ssize_t)n;
}

ssize_t tls_client_recv(struct tls_client *t, void *data, size_t n, uint64_t deadline) {
  for (;;) {
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, data, n, &got);
    if (r == 1) return (ssize_t)got;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) return 0;
    int w = wait_want(t, r, deadline);
    if (w) return w;
  }
}

void tls_client_close(struct tls_client *t) {
  if (!t) return;
  if (t->ssl) {
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    SSL_free(t->ssl);
  }
  SSL_CTX_free(t->ctx);
  ERR_clear_error();
  free(t);
}
