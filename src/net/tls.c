/* TLS for the HTTP server: OpenSSL contexts, and sessions that read from and write to memory (custom BIOs).
 */
#include "net/tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/slice.h"

/* Plaintext decrypted per SSL_read: one TLS record. */
#define READ_CHUNK (16 * 1024)

struct tls_ctx {
  SSL_CTX *ssl;
  char desc[320];
};

struct tls_conn {
  SSL *ssl;
  const char *in; /* ciphertext being fed by tls_conn_input */
  size_t in_len;
  struct buf out; /* ciphertext for the socket */
  bool offer_h2, ready, failed, closed, cert_refused, plain_http;
  char cn[128];
  bool has_cn;
  char alpn[16]; /* what ALPN chose, "" = nothing */
  char err[320];
};

/* OpenSSL could not allocate: like core/alloc, abort (DESIGN §13). */
static void oom(void) {
  fprintf(stderr, "infermesh: out of memory in OpenSSL\n");
  abort();
}

/* ---- the in-memory BIO: reads from t->in, appends writes to t->out (no copy through a BIO buffer) ---- */

static int bio_write_cb(BIO *b, const char *data, int len) {
  struct tls_conn *t = BIO_get_data(b);
  if (len > 0) buf_append(&t->out, data, (size_t)len);
  return len;
}

static int bio_read_cb(BIO *b, char *data, int len) {
  struct tls_conn *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_len == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = len > 0 && (size_t)len < t->in_len ? (size_t)len : t->in_len;
  memcpy(data, t->in, n);
  t->in += n;
  t->in_len -= n;
  return (int)n;
}

static long bio_ctrl_cb(BIO *b, int cmd, long num, void *ptr) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

static int bio_create_cb(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_make(void) {
  bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "infermesh memory");
  if (!bio_method || !BIO_meth_set_write(bio_method, bio_write_cb) ||
      !BIO_meth_set_read(bio_method, bio_read_cb) || !BIO_meth_set_ctrl(bio_method, bio_ctrl_cb) ||
      !BIO_meth_set_create(bio_method, bio_create_cb))
    oom();
}

/* ---- contexts ---- */

/* OpenSSL's reason for the first error on this thread's queue, the root cause (then cleared). */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r ? r : "unknown error";
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg) {
  static const unsigned char with_h2[] = "\x02h2\x08http/1.1", h1[] = "\x08http/1.1";
  const struct tls_conn *t = SSL_get_app_data(ssl);
  const unsigned char *srv = t && t->offer_h2 ? with_h2 : h1;
  unsigned int srvlen = t && t->offer_h2 ? sizeof with_h2 - 1 : sizeof h1 - 1;
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, srv, srvlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol, rather than a guess */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* Keep the first verification failure of a client certificate for the log line. */
static int verify_cb(int ok, X509_STORE_CTX *xs) {
  if (ok) return ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  struct tls_conn *t = ssl ? SSL_get_app_data(ssl) : NULL;
  if (t && !t->cert_refused) {
    char subject[160] = "?";
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (cert) X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
    t->cert_refused = true;
    snprintf(t->err, sizeof t->err, "client certificate %s refused: %s", subject,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
  }
  return ok;
}

static bool readable(const char *what, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f) {
    fclose(f);
    return true;
  }
  snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
  return false;
}

static void describe(struct tls_ctx *x) {
  X509 *crt = SSL_CTX_get0_certificate(x->ssl);
  char cn[128] = "", when[32] = "?", *hex = NULL;
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(crt), NULL);
  if (bn) hex = BN_bn2hex(bn);
  X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName, cn, sizeof cn);
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notAfter(crt), &tm) == 1)
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf(x->desc, sizeof x->desc, "serial=%s subject=\"%s\" not_after=%s", hex ? hex : "?", cn, when);
  OPENSSL_free(hex);
  BN_free(bn);
}

int tls_ctx_load(const struct tls_files *f, struct tls_ctx **out, char *err, size_t errlen) {
  *out = NULL;
  bool want_ca = f->client_ca && f->client_ca[0];
  if (!readable("tls.cert", f->cert, err, errlen) || !readable("tls.key", f->key, err, errlen) ||
      (want_ca && !readable("tls.client_ca", f->client_ca, err, errlen)))
    return -EINVAL;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) oom();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle keep-alive connections hold no record buffers */
  SSL_CTX_set_read_ahead(ctx, 1); /* take all the input in one BIO read, not a header and then a body */
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20"); /* TLS 1.2: forward secrecy, AEAD only */
  SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"infermesh", 9);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
  if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
    snprintf(err, errlen, "tls.cert %s is not a PEM certificate: %s", f->cert, ssl_reason());
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) != ERR_LIB_X509 || ERR_GET_REASON(e) != X509_R_KEY_VALUES_MISMATCH) {
      snprintf(err, errlen, "tls.key %s is not a PEM private key: %s", f->key, ssl_reason());
      goto fail;
    }
    snprintf(err, errlen, "tls.key %s does not belong to the certificate in %s", f->key, f->cert);
    goto fail;
  }
  if (want_ca) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(f->client_ca);
    if (!names || SSL_CTX_load_verify_locations(ctx, f->client_ca, NULL) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      snprintf(err, errlen, "tls.client_ca %s holds no PEM CA certificate: %s", f->client_ca, ssl_reason());
      goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    /* Ask for a certificate and refuse one that does not verify; a client without one is let through (its
     * requests then need an API key like any other). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
  }
  struct tls_ctx *x = xcalloc(1, sizeof *x);
  x->ssl = ctx;
  describe(x);
  *out = x;
  return 0;
fail:
  ERR_clear_error();
  SSL_CTX_free(ctx);
  return -EINVAL;
}

void tls_ctx_free(struct tls_ctx *x) {
  if (!x) return;
  SSL_CTX_free(x->ssl);
  free(x);
}

void tls_ctx_describe(const struct tls_ctx *x, char *out, size_t cap) { str_copy(out, cap, x->desc); }

/* ---- connections ---- */

struct tls_conn *tls_conn_new(struct tls_ctx *x, bool offer_h2) {
  pthread_once(&bio_once, bio_method_make);
  struct tls_conn *t = xcalloc(1, sizeof *t);
  t->offer_h2 = offer_h2;
  t->ssl = SSL_new(x->ssl);
  BIO *b = BIO_new(bio_method);
  if (!t->ssl || !b) oom();
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b);
  SSL_set_app_data(t->ssl, t);
  SSL_set_accept_state(t->ssl);
  return t;
}

void tls_conn_free(struct tls_conn *t) {
  if (!t) return;
  SSL_free(t->ssl);
  buf_free(&t->out);
  free(t);
}

static void fail(struct tls_conn *t) {
  t->failed = true;
  unsigned long e = ERR_peek_error();
  int reason = ERR_GET_REASON(e);
  t->plain_http =
      ERR_GET_LIB(e) == ERR_LIB_SSL && (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST);
  if (!t->cert_refused) {
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(t->err, sizeof t->err, "%s", r ? r : "the peer broke the TLS protocol");
  }
  ERR_clear_error();
}

/* The verified client certificate's CN (none with embedded NULs). */
static void take_peer_cn(struct tls_conn *t) {
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (!peer || SSL_get_verify_result(t->ssl) != X509_V_OK) return;
  X509_NAME *name = X509_get_subject_name(peer);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return;
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n > 0 && (size_t)n < sizeof t->cn && memchr(utf8, '\0', (size_t)n) == NULL) {
    memcpy(t->cn, utf8, (size_t)n);
    t->cn[n] = '\0';
    t->has_cn = true;
  }
  OPENSSL_free(utf8);
}

int tls_conn_input(struct tls_conn *t, const char *data, size_t n, struct buf *plain) {
  if (t->failed) return TLS_FAILED;
  t->in = data;
  t->in_len = n;
  int rc = 0;
  for (;;) {
    buf_reserve(plain, READ_CHUNK);
    ERR_clear_error();
    int r = SSL_read(t->ssl, plain->base + plain->len, READ_CHUNK);
    if (r > 0) {
      plain->len += (size_t)r;
      if (t->in_len == 0 && !SSL_has_pending(t->ssl)) break; /* another SSL_read would only say WANT_READ */
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) break; /* all input consumed (our BIO never blocks a write) */
    if (e == SSL_ERROR_ZERO_RETURN) {
      rc = TLS_PEER_CLOSED;
      break;
    }
    fail(t);
    rc = TLS_FAILED;
    break;
  }
  if (plain->base) plain->base[plain->len] = '\0';
  if (!t->ready && !t->failed && SSL_is_init_finished(t->ssl)) {
    t->ready = true;
    take_peer_cn(t);
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (p && len < sizeof t->alpn) memcpy(t->alpn, p, len);
  }
  t->in = NULL;
  t->in_len = 0;
  return rc;
}

int tls_conn_seal(struct tls_conn *t, struct buf *plain) {
  if (t->failed) return TLS_FAILED;
  if (!t->ready) return 0;
  for (size_t off = 0; off < plain->len;) {
    size_t chunk = plain->len - off > INT_MAX ? INT_MAX : plain->len - off;
    ERR_clear_error();
    int r = SSL_write(t->ssl, plain->base + off, (int)chunk);
    if (r <= 0) {
      fail(t);
      return TLS_FAILED;
    }
    off += (size_t)r;
  }
  buf_reset(plain);
  return 0;
}

struct buf *tls_conn_output(struct tls_conn *t) {
  return &t->out;
}

bool tls_conn_close_notify(struct tls_conn *t) {
  if (!t->ready || t->failed || t->closed) return false;
  t->closed = true;
  size_t before = t->out.len;
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
  return t->out.len > before;
}

bool tls_conn_ready(const struct tls_conn *t) { return t->ready; }

const char *tls_alpn(const struct tls_conn *t) { return t->alpn; }

const char *tls_peer_cn(const struct tls_conn *t) { return t->has_cn ? t->cn : NULL; }
const char *tls_conn_error(const struct tls_conn *t) { return t->err; }
bool tls_conn_cert_refused(const struct tls_conn *t) { return t->cert_refused; }
bool tls_conn_plain_http(const struct tls_conn *t) { return t->plain_http; }
