/* net/tls: a server session driven through memory against an OpenSSL client in the same process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "net/tls.h"

static EVP_PKEY *ca_key;
static X509 *ca_cert;
static char dir[64];

/* A certificate for cn signed by the CA (or self-signed when signer is NULL), written to dir/name.{pem,key}.
 */
static X509 *issue(const char *cn, const char *name, EVP_PKEY *signer_key, X509 *signer, EVP_PKEY **key_out) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *crt = X509_new();
  assert_non_null(key);
  ASN1_INTEGER_set(X509_get_serialNumber(crt), 7);
  X509_gmtime_adj(X509_getm_notBefore(crt), -60);
  X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
  X509_set_pubkey(crt, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                             -1, 0);
  X509_set_issuer_name(crt, signer ? X509_get_subject_name(signer) : X509_get_subject_name(crt));
  assert_true(X509_sign(crt, signer_key ? signer_key : key, EVP_sha256()) > 0);
  char path[128];
  snprintf(path, sizeof path, "%s/%s.pem", dir, name);
  FILE *f = fopen(path, "w");
  assert_true(f && PEM_write_X509(f, crt));
  fclose(f);
  snprintf(path, sizeof path, "%s/%s.key", dir, name);
  f = fopen(path, "w");
  assert_true(f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
  fclose(f);
  if (key_out)
    *key_out = key;
  else
    EVP_PKEY_free(key);
  return crt;
}

static int setup(void **state) {
  snprintf(dir, sizeof dir, "/tmp/infermesh-test-tls-%d", (int)getpid());
  assert_int_equal(mkdir(dir, 0700), 0);
  ca_cert = issue("unit-ca", "ca", NULL, NULL, &ca_key);
  X509_free(issue("localhost", "server", ca_key, ca_cert, NULL));
  X509_free(issue("billing-svc", "client", ca_key, ca_cert, NULL));
  EVP_PKEY *rogue_key;
  X509 *rogue = issue("rogue-ca", "rogue-ca", NULL, NULL, &rogue_key);
  X509_free(issue("billing-svc", "rogue", rogue_key, rogue, NULL));
  X509_free(rogue);
  EVP_PKEY_free(rogue_key);
  return 0;
}

static int teardown(void **state) {
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  X509_free(ca_cert);
  EVP_PKEY_free(ca_key);
  return 0;
}

static struct tls_ctx *server_ctx(bool client_ca) {
  char cert[128], key[128], ca[128];
  snprintf(cert, sizeof cert, "%s/server.pem", dir);
  snprintf(key, sizeof key, "%s/server.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  struct tls_files f = {cert, key, client_ca ? ca : NULL};
  struct tls_ctx *x = NULL;
  char err[256];
  assert_int_equal(tls_ctx_load(&f, &x, err, sizeof err), 0);
  return x;
}

/* An OpenSSL client on memory BIOs. */
struct client {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *in, *out; /* in: what the server sent; out: what the client sends */
};

static void client_init(struct client *c, const unsigned char *alpn, unsigned alpn_len, const char *cert) {
  c->ctx = SSL_CTX_new(TLS_client_method());
  char path[128];
  snprintf(path, sizeof path, "%s/ca.pem", dir);
  assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, path, NULL), 1);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  if (cert) {
    snprintf(path, sizeof path, "%s/%s.pem", dir, cert);
    assert_int_equal(SSL_CTX_use_certificate_file(c->ctx, path, SSL_FILETYPE_PEM), 1);
    snprintf(path, sizeof path, "%s/%s.key", dir, cert);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, path, SSL_FILETYPE_PEM), 1);
  }
  c->ssl = SSL_new(c->ctx);
  c->in = BIO_new(BIO_s_mem());
  c->out = BIO_new(BIO_s_mem());
  SSL_set_bio(c->ssl, c->in, c->out);
  SSL_set1_host(c->ssl, "localhost");
  if (alpn) SSL_set_alpn_protos(c->ssl, alpn, alpn_len);
  SSL_set_connect_state(c->ssl);
}

static void client_free(struct client *c) {
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
}

/* Move bytes both ways until neither side has anything to say; returns the server's last input result. */
static int pump(struct client *c, struct tls_conn *t, struct buf *plain) {
  int rc = 0;
  for (int round = 0; round < 20; round++) {
    SSL_do_handshake(c->ssl);
    char *p;
    long n = BIO_get_mem_data(c->out, &p);
    struct buf *sout = tls_conn_output(t);
    if (n == 0 && sout->len == 0) break;
    if (n > 0) {
      rc = tls_conn_input(t, p, (size_t)n, plain);
      (void)BIO_reset(c->out);
      if (rc != 0) {
        sout = tls_conn_output(t);
        if (sout->len) BIO_write(c->in, sout->base, (int)sout->len), buf_reset(sout);
        break;
      }
    }
    if (sout->len) {
      BIO_write(c->in, sout->base, (int)sout->len);
      buf_reset(sout);
    }
  }
  ERR_clear_error();
  return rc;
}

static void test_handshake_alpn_and_records(void **state) {
  struct tls_ctx *x = server_ctx(false);
  static const unsigned char both[] = "\x02h2\x08http/1.1";
  struct client c;
  client_init(&c, both, sizeof both - 1, NULL);
  struct tls_conn *t = tls_conn_new(x, false);
  tls_ctx_free(x); /* the session keeps the context */
  struct buf plain = {0};
  assert_int_equal(pump(&c, t, &plain), 0);
  assert_true(tls_conn_ready(t));
  assert_string_equal(tls_alpn(t), "http/1.1"); /* h2 is not offered while nothing takes it */
  assert_null(tls_peer_cn(t));
  assert_int_equal(SSL_version(c.ssl), TLS1_3_VERSION);
  /* client -> server: a request, decrypted into plain */
  assert_int_equal(SSL_write(c.ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
  assert_int_equal(pump(&c, t, &plain), 0);
  assert_int_equal(plain.len, 18);
  assert_memory_equal(plain.base, "GET / HTTP/1.1\r\n\r\n", 18);
  /* server -> client: sealed, and the plaintext buffer emptied */
  struct buf resp = {0};
  buf_puts(&resp, "HTTP/1.1 200 OK\r\n\r\n");
  assert_int_equal(tls_conn_seal(t, &resp), 0);
  assert_int_equal(resp.len, 0);
  pump(&c, t, &plain);
  char got[64];
  assert_int_equal(SSL_read(c.ssl, got, sizeof got), 19);
  /* the client's close_notify ends the input; ours goes back */
  SSL_shutdown(c.ssl);
  assert_int_equal(pump(&c, t, &plain), TLS_PEER_CLOSED);
  assert_true(tls_conn_close_notify(t));
  assert_false(tls_conn_close_notify(t));
  buf_free(&resp);
  buf_free(&plain);
  tls_conn_free(t);
  client_free(&c);
}

static void test_h2_offered_only_when_asked(void **state) {
  struct tls_ctx *x = server_ctx(false);
  static const unsigned char both[] = "\x02h2\x08http/1.1", h2[] = "\x02h2";
  struct client c;
  struct buf plain = {0};
  client_init(&c, both, sizeof both - 1, NULL);
  struct tls_conn *t = tls_conn_new(x, true);
  assert_int_equal(pump(&c, t, &plain), 0);
  assert_string_equal(tls_alpn(t), "h2");
  tls_conn_free(t);
  client_free(&c);
  /* a client that speaks only h2 gets no_application_protocol rather than HTTP/1.1 it cannot read */
  client_init(&c, h2, sizeof h2 - 1, NULL);
  t = tls_conn_new(x, false);
  assert_int_equal(pump(&c, t, &plain), TLS_FAILED);
  assert_false(tls_conn_ready(t));
  assert_false(tls_conn_close_notify(t));
  tls_conn_free(t);
  client_free(&c);
  buf_free(&plain);
  tls_ctx_free(x);
}

static void test_client_certificates(void **state) {
  struct tls_ctx *x = server_ctx(true);
  struct client c;
  struct buf plain = {0};
  client_init(&c, NULL, 0, "client");
  struct tls_conn *t = tls_conn_new(x, false);
  assert_int_equal(pump(&c, t, &plain), 0);
  assert_true(tls_conn_ready(t));
  assert_string_equal(tls_peer_cn(t), "billing-svc");
  assert_string_equal(tls_alpn(t), "");
  tls_conn_free(t);
  client_free(&c);
  /* the same CN from another CA: refused, and the reason names it */
  client_init(&c, NULL, 0, "rogue");
  t = tls_conn_new(x, false);
  assert_int_equal(pump(&c, t, &plain), TLS_FAILED);
  assert_true(tls_conn_cert_refused(t));
  assert_non_null(strstr(tls_conn_error(t), "CN=billing-svc"));
  assert_non_null(strstr(tls_conn_error(t), "unable to get local issuer certificate"));
  assert_null(tls_peer_cn(t));
  tls_conn_free(t);
  client_free(&c);
  /* no certificate at all is allowed */
  client_init(&c, NULL, 0, NULL);
  t = tls_conn_new(x, false);
  assert_int_equal(pump(&c, t, &plain), 0);
  assert_true(tls_conn_ready(t));
  assert_null(tls_peer_cn(t));
  tls_conn_free(t);
  client_free(&c);
  buf_free(&plain);
  tls_ctx_free(x);
}

static void test_plaintext_and_bad_files(void **state) {
  struct tls_ctx *x = server_ctx(false);
  struct tls_conn *t = tls_conn_new(x, false);
  struct buf plain = {0};
  const char *req = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(tls_conn_input(t, req, strlen(req), &plain), TLS_FAILED);
  assert_true(tls_conn_plain_http(t));
  assert_false(tls_conn_cert_refused(t));
  assert_int_equal(plain.len, 0);
  assert_int_equal(tls_conn_input(t, "x", 1, &plain), TLS_FAILED); /* stays failed */
  tls_conn_free(t);
  buf_free(&plain);
  char desc[320];
  tls_ctx_describe(x, desc, sizeof desc);
  assert_non_null(strstr(desc, "serial=07"));
  assert_non_null(strstr(desc, "subject=\"localhost\""));
  tls_ctx_free(x);
  /* files that do not load say which and why */
  char cert[128], key[128], other_key[128];
  snprintf(cert, sizeof cert, "%s/server.pem", dir);
  snprintf(key, sizeof key, "%s/missing.key", dir);
  snprintf(other_key, sizeof other_key, "%s/client.key", dir);
  char err[256];
  struct tls_files f = {cert, key, NULL};
  assert_int_equal(tls_ctx_load(&f, &x, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "cannot read tls.key"));
  f.key = other_key;
  assert_int_equal(tls_ctx_load(&f, &x, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "does not belong to the certificate"));
  f.cert = other_key;
  assert_int_equal(tls_ctx_load(&f, &x, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "is not a PEM certificate"));
  assert_null(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_alpn_and_records),
      cmocka_unit_test(test_h2_offered_only_when_asked),
      cmocka_unit_test(test_client_certificates),
      cmocka_unit_test(test_plaintext_and_bad_files),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
