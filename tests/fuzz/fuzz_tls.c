/* libFuzzer target for net/tls: the server side of a TLS session fed arbitrary bytes from the network, in
 * arbitrary splits. The records are OpenSSL's to parse; ours are the in-memory BIOs, the handshake-end and
 * failure bookkeeping, and the buffers plaintext lands in. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "fuzz_check.h"
#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A self-signed P-256 certificate for CN=fuzz, written to temporary files only for tls_ctx_load. */
static struct tls_ctx *make_ctx(void) {
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *crt = X509_new();
  CHECK(pkey && crt);
  ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
  X509_gmtime_adj(X509_getm_notBefore(crt), 0);
  X509_gmtime_adj(X509_getm_notAfter(crt), 86400);
  X509_set_pubkey(crt, pkey);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC, (const unsigned char *)"fuzz",
                             -1, -1, 0);
  X509_set_issuer_name(crt, X509_get_subject_name(crt));
  CHECK(X509_sign(crt, pkey, EVP_sha256()) > 0);
  char cert[64], key[64];
  snprintf(cert, sizeof cert, "/tmp/fuzz_tls_%d.pem", (int)getpid());
  snprintf(key, sizeof key, "/tmp/fuzz_tls_%d.key", (int)getpid());
  FILE *f = fopen(cert, "w");
  CHECK(f && PEM_write_X509(f, crt));
  fclose(f);
  f = fopen(key, "w");
  CHECK(f && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL));
  fclose(f);
  struct tls_files files = {cert, key, cert}; /* client certificates verified against itself */
  struct tls_ctx *x = NULL;
  char err[256];
  CHECK(tls_ctx_load(&files, &x, err, sizeof err) == 0);
  unlink(cert);
  unlink(key);
  X509_free(crt);
  EVP_PKEY_free(pkey);
  return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct tls_ctx *ctx;
  if (!ctx) ctx = make_ctx();
  if (size < 1) return 0;
  size_t step = data[0] ? data[0] : size; /* how the bytes arrive: in steps of data[0], or at once */
  struct tls_conn *t = tls_conn_new(ctx, size % 2 == 0);
  struct buf plain = {0};
  int rc = 0;
  for (size_t off = 1; off < size && rc == 0;) {
    size_t n = size - off < step ? size - off : step;
    size_t before = plain.len;
    rc = tls_conn_input(t, (const char *)data + off, n, &plain);
    CHECK(rc == 0 || rc == TLS_PEER_CLOSED || rc == TLS_FAILED);
    CHECK(plain.len >= before);
    CHECK(!plain.base || plain.base[plain.len] == '\0');
    CHECK(rc != TLS_FAILED || tls_conn_error(t)[0]);
    off += n;
  }
  if (tls_conn_ready(t)) {
    const char *alpn = tls_alpn(t);
    CHECK(alpn[0] == '\0' || strcmp(alpn, "http/1.1") == 0 || strcmp(alpn, "h2") == 0);
  }
  struct buf out = {0};
  buf_puts(&out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  int s = tls_conn_seal(t, &out);
  CHECK(s == 0 || s == TLS_FAILED);
  CHECK(!tls_conn_ready(t) || s != 0 || out.len == 0);
  tls_conn_close_notify(t);
  buf_free(&out);
  buf_free(&plain);
  tls_conn_free(t);
  return 0;
}
