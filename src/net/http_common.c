/* Shared HTTP helpers: reason phrases, header lookup, the OpenAI error body. */
#include "net/http_common.h"

#include <errno.h>
#include <string.h>

const char *http_status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 499: return "Client Closed Request";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

struct slice http_find_header(const struct http_header *h, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (slice_eq_nocase(h[i].name, name)) return h[i].value;
  return (struct slice){NULL, 0};
}

void http_error_json(struct buf *out, const char *message, const char *type, const char *code) {
  buf_puts(out, "{\"error\":{\"message\":");
  buf_json_str(out, slice_cstr(message));
  buf_puts(out, ",\"type\":");
  buf_json_str(out, slice_cstr(type));
  buf_puts(out, ",\"param\":null,\"code\":");
  if (code)
    buf_json_str(out, slice_cstr(code));
  else
    buf_puts(out, "null");
  buf_puts(out, "}}");
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

int http_query_get(struct slice query, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < query.len;) {
    size_t end = i;
    while (end < query.len && query.base[end] != '&') end++;
    if (end - i >= nl + 1 && memcmp(query.base + i, name, nl) == 0 && query.base[i + nl] == '=') {
      size_t n = 0;
      for (size_t j = i + nl + 1; j < end; j++) {
        char ch = query.base[j];
        if (ch == '%') {
          if (j + 2 >= end) return -EINVAL;
          int hi = hex_digit(query.base[j + 1]), lo = hex_digit(query.base[j + 2]);
          if (hi < 0 || lo < 0) return -EINVAL;
          ch = (char)(hi * 16 + lo);
          if (ch == '\0') return -EINVAL;
          j += 2;
        } else if (ch == '+') {
          ch = ' ';
        }
        if (n + 1 >= cap) return -EINVAL;
        out[n++] = ch;
      }
      out[n] = '\0';
      return 0;
    }
    i = end + 1;
  }
  return -ENOENT;
}
