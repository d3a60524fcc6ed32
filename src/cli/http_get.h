/* A small blocking HTTP/1.1 GET for the CLI (never used on an event loop). */
#ifndef IM_CLI_HTTP_GET_H
#define IM_CLI_HTTP_GET_H

#include "core/buf.h"

/* http_get fetches http://HOST:PORT/PATH from base_url (e.g. "http://127.0.0.1:8080") + path with a
 * timeout, sending "Connection: close" and reading to EOF. Fills *status and body (caller frees).
 * Returns 0, or a negative errno with a human-readable reason in err. */
int http_get(const char *base_url, const char *path, int timeout_ms, int *status, struct buf *body, char *err,
             size_t errlen);

#endif
