/* W3C traceparent / tracestate: strict parsing and formatting. */
#include "trace/trace_context.h"

#include <errno.h>
#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1; /* uppercase is invalid in traceparent */
}

/* Decode 2n lowercase hex digits at s into out[0..n); false on any other character. */
static bool unhex(const char *s, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

static bool all_zero(const uint8_t *b, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++)
    acc |= b[i];
  return acc == 0;
}

int traceparent_parse(struct slice v, struct trace_ctx *out) {
  const char *s = v.base;
  uint8_t version;
  if (v.len < TRACEPARENT_LEN || !unhex(s, &version, 1) || version == 0xff) return -EINVAL;
  if (version == 0 && v.len != TRACEPARENT_LEN) return -EINVAL;
  if (v.len > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-')
    return -EINVAL; /* a later version's extra fields */
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -EINVAL;
  if (!unhex(s + 3, out->trace_id, TRACE_ID_LEN) || !unhex(s + 36, out->span_id, SPAN_ID_LEN) ||
      !unhex(s + 53, &out->flags, 1))
    return -EINVAL;
  if (all_zero(out->trace_id, TRACE_ID_LEN) || all_zero(out->span_id, SPAN_ID_LEN)) return -EINVAL;
  return 0;
}

void trace_hex(const uint8_t *id, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[id[i] >> 4];
    out[2 * i + 1] = digits[id[i] & 15];
  }
  out[2 * n] = '\0';
}

void traceparent_format(const struct trace_ctx *c, char out[TRACEPARENT_LEN + 1]) {
  memcpy(out, "00-", 3);
  trace_hex(c->trace_id, TRACE_ID_LEN, out + 3);
  out[35] = '-';
  trace_hex(c->span_id, SPAN_ID_LEN, out + 36);
  out[52] = '-';
  out[53] = '0';
  out[54] = (c->flags & TRACE_FLAG_SAMPLED) ? '1' : '0';
  out[55] = '\0';
}

static bool lcalpha(char c) { return c >= 'a' && c <= 'z'; }
static bool digit(char c) { return c >= '0' && c <= '9'; }
static bool keychar(char c) { return lcalpha(c) || digit(c) || c == '_' || c == '-' || c == '*' || c == '/'; }
/* value characters: printable ASCII but ',' and '='; a space only inside */
static bool nblk(char c) { return c >= 0x21 && c <= 0x7e && c != ',' && c != '='; }

/* key: simple-key = lcalpha 0*255(keychar); multi-tenant-key = tenant-id "@" system-id, with tenant-id =
 * (lcalpha / DIGIT) 0*240(keychar) and system-id = lcalpha 0*13(keychar). */
static bool key_ok(const char *k, size_t n) {
  const char *at = memchr(k, '@', n);
  if (!at) {
    if (n < 1 || n > 256 || !lcalpha(k[0])) return false;
    for (size_t i = 1; i < n; i++)
      if (!keychar(k[i])) return false;
    return true;
  }
  size_t tn = (size_t)(at - k), sn = n - tn - 1;
  if (tn < 1 || tn > 241 || sn < 1 || sn > 14 || !(lcalpha(k[0]) || digit(k[0])) || !lcalpha(at[1]))
    return false;
  for (size_t i = 1; i < tn; i++)
    if (!keychar(k[i])) return false;
  for (size_t i = 1; i < sn; i++)
    if (!keychar(at[1 + i])) return false;
  return true;
}

/* value = 0*255(chr) nblk-chr, chr = ' ' / nblk-chr */
static bool value_ok(const char *v, size_t n) {
  if (n < 1 || n > 256 || !nblk(v[n - 1])) return false;
  for (size_t i = 0; i + 1 < n; i++)
    if (v[i] != ' ' && !nblk(v[i])) return false;
  return true;
}

static bool ows(char c) { return c == ' ' || c == '\t'; }

struct slice tracestate_check(struct slice v) {
  struct slice none = {v.base, 0};
  size_t keep = 0; /* the end of the last whole member that fits in TRACESTATE_MAX */
  int members = 0;
  size_t i = 0;
  for (;;) {
    size_t end = i;
    while (end < v.len && v.base[end] != ',')
      end++;
    size_t a = i, b = end;
    while (a < b && ows(v.base[a]))
      a++;
    while (b > a && ows(v.base[b - 1]))
      b--;
    if (b > a) { /* a member (empty ones are allowed and skipped) */
      const char *eq = memchr(v.base + a, '=', b - a);
      if (!eq || !key_ok(v.base + a, (size_t)(eq - (v.base + a))) ||
          !value_ok(eq + 1, (size_t)(v.base + b - (eq + 1))) || ++members > 32)
        return none;
      if (b <= TRACESTATE_MAX) keep = b;
    }
    if (end >= v.len) break;
    i = end + 1;
  }
  return slice_make(v.base, v.len <= TRACESTATE_MAX ? v.len : keep);
}
