/* HTTP/1.1 request parsing: http_parser callbacks that record a message as offsets into the connection's
 * buffer, enforce the limits and the global body budget, and refuse what RFC 9112 lets a server refuse. */
#include <assert.h>
#include <string.h>

#include "net/http_server_int.h"

/* Give back what this connection's body holds of the global budget. */
void http__budget_release(struct http_conn *c) {
  assert(c->srv->buffered_bodies >= c->reserved);
  c->srv->buffered_bodies -= c->reserved;
  c->reserved = 0;
}

int http__method_id(int parser_method) {
  switch (parser_method) {
  case HTTP_GET: return HTTP_M_GET;
  case HTTP_HEAD: return HTTP_M_HEAD;
  case HTTP_POST: return HTTP_M_POST;
  case HTTP_PUT: return HTTP_M_PUT;
  case HTTP_DELETE: return HTTP_M_DELETE;
  case HTTP_PATCH: return HTTP_M_PATCH;
  case HTTP_OPTIONS: return HTTP_M_OPTIONS;
  default: return HTTP_M_OTHER;
  }
}

static void msg_reset(struct http_conn *c) {
  c->url_off = c->url_len = 0;
  c->nhdr = 0;
  c->in_value = false;
  c->header_bytes = 0;
  c->body_off = c->body_len = 0;
  c->body_copied = false;
  buf_reset(&c->body);
  c->fail_status = 0;
  c->fail_msg = NULL;
  c->headers_done = false;
}

static int on_message_begin(http_parser *p) {
  struct http_conn *c = p->data;
  msg_reset(c);
  c->in_message = true;
  http__conn_arm_timer(c, c->srv->limits.header_timeout_ms);
  return 0;
}

static int limit_headers(struct http_conn *c, size_t more) {
  c->header_bytes += more;
  if (c->header_bytes > c->srv->limits.max_header_bytes) {
    c->fail_status = 431;
    c->fail_msg = "request headers are too large";
    return -1;
  }
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  struct http_conn *c = p->data;
  if (limit_headers(c, len)) return -1;
  if (c->url_len == 0) c->url_off = (size_t)(at - c->in.base);
  c->url_len += len;
  return 0;
}

static int bad_request(struct http_conn *c, const char *msg) {
  c->fail_status = 400;
  c->fail_msg = msg;
  return -1;
}

/* RFC 9110 token characters: a field name is one token, nothing else (no space before the colon). */
static bool is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  struct http_conn *c = p->data;
  if (limit_headers(c, len)) return -1;
  for (size_t i = 0; i < len; i++)
    if (!is_tchar((unsigned char)at[i])) return bad_request(c, "invalid character in a header name");
  if (c->in_value || c->nhdr == 0) {
    if (c->nhdr >= c->srv->limits.max_headers) {
      c->fail_status = 431;
      c->fail_msg = "too many request headers";
      return -1;
    }
    c->hdr[c->nhdr++] = (struct hoff){(size_t)(at - c->in.base), len, 0, 0};
    c->in_value = false;
  } else {
    c->hdr[c->nhdr - 1].nl += len;
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  struct http_conn *c = p->data;
  if (limit_headers(c, len)) return -1;
  /* obs-fold (a line that starts with SP/HT continues the previous value) is what a proxy in front may read
   * differently: RFC 9112 §5.2 lets a server reject it, and we do. http_parser reports the continuation as a
   * value whose bytes follow a line break (past the leading whitespace). */
  const char *q = at;
  while (q > c->in.base && (q[-1] == ' ' || q[-1] == '\t'))
    q--;
  if (q > c->in.base && q[-1] == '\n')
    return bad_request(c, "obsolete line folding in a header is not accepted");
  struct hoff *h = &c->hdr[c->nhdr - 1];
  if (!c->in_value) {
    h->vo = (size_t)(at - c->in.base);
    h->vl = 0;
    c->in_value = true;
  }
  h->vl += len;
  return 0;
}

/* Count `more` body bytes against the global budget once the body is large; false when it does not fit. */
static bool budget_take(struct http_conn *c, size_t total) {
  struct http_server *s = c->srv;
  if (total <= HTTP_SMALL_BODY || total <= c->reserved) return true;
  size_t more = total - c->reserved;
  if (s->limits.max_buffered_bodies && s->buffered_bodies + more > s->limits.max_buffered_bodies) {
    s->refused_budget++;
    c->fail_status = 503;
    c->fail_msg = "the server is receiving too many large request bodies at once; retry shortly";
    return false;
  }
  s->buffered_bodies += more;
  c->reserved = total;
  return true;
}

static int on_headers_complete(http_parser *p) {
  struct http_conn *c = p->data;
  c->headers_done = true;
  /* HTTP/1.0 and 1.1 only: "HTTP/9.9", and a request line without a version (HTTP/0.9), are not requests
   * we can frame the way a proxy in front would. */
  if (p->http_major != 1 || p->http_minor > 1)
    return bad_request(c, "unsupported HTTP version: use HTTP/1.1");
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body) {
    c->fail_status = 413;
    c->fail_msg = "request body is too large";
    return -1;
  }
  if ((p->flags & F_CONTENTLENGTH) && !budget_take(c, (size_t)p->content_length)) return -1;
  http__conn_arm_timer(c, c->srv->limits.body_timeout_ms);
  /* curl and others wait for 100 Continue before sending large bodies. */
  for (int i = 0; i < c->nhdr; i++) {
    struct slice n = slice_make(c->in.base + c->hdr[i].no, c->hdr[i].nl);
    struct slice v = slice_make(c->in.base + c->hdr[i].vo, c->hdr[i].vl);
    if (slice_eq_nocase(n, "expect") && slice_eq_nocase(v, "100-continue"))
      http__conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  struct http_conn *c = p->data;
  size_t off = (size_t)(at - c->in.base);
  if (c->body_len + len > c->srv->limits.max_body) {
    c->fail_status = 413;
    c->fail_msg = "request body is too large";
    return -1;
  }
  if (!budget_take(c, c->body_len + len)) return -1; /* chunked bodies grow into the budget */
  if (c->body_copied) {
    buf_append(&c->body, at, len);
  } else if (c->body_len == 0) {
    c->body_off = off;
  } else if (c->body_off + c->body_len != off) {
    /* Chunked: pieces are separated by chunk framing, so gather them. */
    buf_append(&c->body, c->in.base + c->body_off, c->body_len);
    buf_append(&c->body, at, len);
    c->body_copied = true;
  }
  c->body_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  struct http_conn *c = p->data;
  c->in_message = false;
  http_parser_pause(p, 1);
  return 0;
}

const http_parser_settings http__parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
