/* HTTPS for the CLI's blocking HTTP client (cli/http_get.c): OpenSSL over a connected non-blocking socket,
 * waiting with poll(2) up to a deadline. Never used on an event loop. */
#ifndef IM_CLI_TLS_CLIENT_H
#define IM_CLI_TLS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tls_client;

/* tls_client_set_ca names the PEM file of the CAs that server certificates must chain to (--ca; borrowed: it
 * must outlive the requests). NULL: INFERMESH_CA when set, else the system's CAs. */
void tls_client_set_ca(const char *file);

/* cli_take_ca removes `--ca FILE` / `--ca=FILE` from argv[0..argc) (so that each command's own parser never
 * sees it), passes FILE to tls_client_set_ca, and returns the new argc; -1 when --ca has no value. */
int cli_take_ca(int argc, char **argv);

/* tls_client_open runs the handshake on fd (connected, non-blocking) before deadline (clock_mono_ns),
 * checking the server's certificate against the CAs and against host (a name or an IP address) and offering
 * ALPN http/1.1. url names the server in messages. Returns 0 and *out (tls_client_close frees it; fd stays
 * the caller's), or a negative errno with a message in err that says what did not verify and how to fix it.
 */
int tls_client_open(struct tls_client **out, int fd, const char *host, const char *url, uint64_t deadline,
                    char *err, size_t errlen);
/* tls_client_send writes all n bytes before deadline: n, -ETIMEDOUT or -EIO. */
ssize_t tls_client_send(struct tls_client *t, const void *data, size_t n, uint64_t deadline);
/* tls_client_recv reads up to n bytes, waiting until deadline (UINT64_MAX: no deadline): the count, 0 at the
 * end of the stream (close_notify or EOF), -ETIMEDOUT or -EIO. */
ssize_t tls_client_recv(struct tls_client *t, void *data, size_t n, uint64_t deadline);
/* tls_client_close sends close_notify (best effort) and frees t (NULL: no-op). */
void tls_client_close(struct tls_client *t);

#endif
