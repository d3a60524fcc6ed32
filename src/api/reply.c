/* JSON answers of the agent's HTTP API (api/reply.h). */
#include "api/reply.h"

void api_reply_json(struct http_req *req, int status, const struct buf *b) {
  http_resp_send(req, status, "application/json", b->base, b->len, NULL, 0);
}

/* The one error writer: OpenAI's error object, extra headers, Retry-After on a 503 that has none. */
static void reply_error(struct http_req *req, int status, const char *msg, const char *type, const char *code,
                        const struct http_header *h, int nh) {
  struct http_header all[8];
  int n = 0;
  for (int i = 0; i < nh && n < 7; i++)
    all[n++] = h[i];
  if (status == 503 && !http_find_header(all, n, "retry-after").len)
    all[n++] = (struct http_header){SLICE_LIT("Retry-After"), SLICE_LIT("1")};
  struct buf b = {0};
  http_error_json(&b, msg, type, code);
  http_resp_send(req, status, "application/json", b.base, b.len, all, n);
  buf_free(&b);
}

void api_reply_error(struct http_req *req, int status, const char *msg, const char *code) {
  reply_error(req, status, msg, "invalid_request_error", code, NULL, 0);
}

void api_reply_error_type(struct http_req *req, int status, const char *msg, const char *type,
                          const char *code) {
  reply_error(req, status, msg, type, code, NULL, 0);
}

void api_reply_error_headers(struct http_req *req, int status, const char *msg, const char *code,
                             const struct http_header *h, int nh) {
  reply_error(req, status, msg, "invalid_request_error", code, h, nh);
}
