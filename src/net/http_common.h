/* Types and helpers shared by the HTTP server and client. */
#ifndef IM_NET_HTTP_COMMON_H
#define IM_NET_HTTP_COMMON_H

#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"

#define HTTP_MAX_HEADERS 64

struct http_header {
  struct slice name, value;
};

/* http_status_text returns the reason phrase of a status code ("Unknown" if not known). */
const char *http_status_text(int status);
/* http_find_header looks a header up by name, case-insensitively; returns its value or {NULL,0}. */
struct slice http_find_header(const struct http_header *h, int n, const char *name);
/* http_error_json appends an OpenAI-format error object: {"error":{"message","type","param","code"}}.
 * code may be NULL (rendered as null). */
void http_error_json(struct buf *out, const char *message, const char *type, const char *code);

/* http_query_get finds NAME=VALUE in a query string ("a=1&b=x%20y") and writes VALUE percent-decoded ('+' is a
 * space) into out (capacity cap, NUL-terminated). 0, -ENOENT when absent, -EINVAL when malformed, too long or
 * decoding to a NUL byte. */
int http_query_get(struct slice query, const char *name, char *out, size_t cap);

#endif
