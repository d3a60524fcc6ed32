/* A small blocking HTTP/1.1 GET for the CLI (never used on an event loop). */
#ifndef IM_CLI_HTTP_GET_H
#define IM_CLI_HTTP_GET_H

#include "core/buf.h"

/* http_get fetches http://HOST:PORT/PATH from base_url (e.g. "http://127.0.0.1:8080") + path with a
 * timeout, sending "Connection: close" and reading to EOF. Fills *status and body (caller frees).
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

#endif
