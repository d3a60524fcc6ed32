/* JSON answers of the agent's HTTP API: one place for the reply and error helpers every handler uses. */
#ifndef IM_API_REPLY_H
#define IM_API_REPLY_H

#include "core/buf.h"
#include "net/http_server.h"

/* api_reply_json answers req with status and the JSON in b (borrowed: the caller frees it). Ends req. */
void api_reply_json(struct http_req *req, int status, const struct buf *b);

/* api_reply_error answers req with an OpenAI-format error of type invalid_request_error (code may be NULL).
 * A 503 carries Retry-After: 1 (the condition is passing: a leader election, a node starting). Ends req. */
void api_reply_error(struct http_req *req, int status, const char *msg, const char *code);

/* api_reply_error_type is api_reply_error with another error type (e.g. "runtime_error"). Ends req. */
void api_reply_error_type(struct http_req *req, int status, const char *msg, const char *type,
                          const char *code);

/* api_reply_error_headers is api_reply_error with extra headers h[0..nh) (borrowed for the call), e.g. Allow
 * or WWW-Authenticate. Ends req. */
void api_reply_error_headers(struct http_req *req, int status, const char *msg, const char *code,
                             const struct http_header *h, int nh);

#endif
