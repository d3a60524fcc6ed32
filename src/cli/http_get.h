/* A small blocking HTTP/1.1 (and HTTPS) client for the CLI (never used on an event loop). */
#ifndef IM_CLI_HTTP_GET_H
#define IM_CLI_HTTP_GET_H

#include "core/buf.h"

/* http_get fetches http://HOST:PORT/PATH from base_url (e.g. "http://127.0.0.1:8080") + path with a
 * timeout, sending "Connection: close" and reading to EOF. An https:// base_url speaks TLS, the server's
 * certificate verified against --ca / INFERMESH_CA (cli/tls_client.h) and the URL's host. Fills *status and body (caller frees).
 * Returns 0, or a negative errno with a human-readable reason in err. */
int http_get(const char *base_url, const char *path, int timeout_ms, int *status, struct buf *body, char *err,
             size_t errlen);

/* http_request is http_get with any method and an optional JSON request body (req_body, NUL-terminated, sent
 * with Content-Type: application/json; NULL sends none). Connection errors name the URL, not "the agent".
 * Same ownership and returns as http_get; any status code is a success for the call (check *status). */
int http_request(const char *method, const char *base_url, const char *path, const char *req_body, int timeout_ms,
                 int *status, struct buf *body, char *err, size_t errlen);

/* http_request_hdrs is http_request with extra header lines (each ending in \r\n; borrowed; NULL = none), and
 * errors worded for an agent. */
int http_request_hdrs(const char *method, const char *base_url, const char *path, const char *req_body,
                      const char *headers, int timeout_ms, int *status, struct buf *body, char *err, size_t errlen);

/* http_stream_cb receives body bytes of a streaming answer as they arrive (borrowed for the call); nonzero
 * stops reading. */
typedef int (*http_stream_cb)(void *arg, const char *data, size_t len);

/* http_stream GETs path and, when the answer is 2xx, hands its body to cb as it arrives, without a deadline
 * once the headers are in (connect_timeout_ms bounds connecting and the headers). A non-2xx body goes to
 * body (caller frees). Returns 0 when the stream ended or cb stopped it (*status set), else like http_get. */
int http_stream(const char *base_url, const char *path, const char *headers, int connect_timeout_ms, http_stream_cb cb,
                void *arg, int *status, struct buf *body, char *err, size_t errlen);

#endif
