/* Strict JSON validation plus jsmn tokenizing to pull routing facts out of OpenAI bodies without a DOM. */
#include "route/jscan.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

/* The only translation unit that includes jsmn (JSMN_STATIC gives every includer a private copy). */
#include <jsmn.h>

/* ---- strict validator ----------------------------------------------------------------------------------- */

static inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline size_t skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && is_ws(s[i])) i++;
  return i;
}

static inline bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

static inline bool is_special(unsigned char c) { return c == '"' || c == '\\' || c < 0x20; }

/* Bit 7 of each byte of the result is set where w (little-endian) holds '"', '\\' or a byte below 0x20, and
 * possibly above such a byte (borrows), never below the first one: so the lowest set bit marks the first
 * special byte exactly ("Bit Twiddling Hacks": haszero, hasless). */
static inline uint64_t special_mask(uint64_t w) {
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & high;
}

/* Index of the first special byte in s[i..n), or n. Plain text is most of a request body: 8 bytes a step. */
static inline size_t skip_plain(const char *s, size_t n, size_t i) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n - i >= 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    uint64_t m = special_mask(w);
    if (m) return i + ((size_t)__builtin_ctzll(m) >> 3);
    i += 8;
  }
#endif
  while (i < n && !is_special((unsigned char)s[i])) i++;
  return i;
}

/* s[*pos] is the opening quote; on success *pos is just past the closing quote, else at the bad byte. */
static int v_string(const char *s, size_t n, size_t *pos) {
  size_t i = *pos + 1;
  for (;;) {
    i = skip_plain(s, n, i);
    if (i >= n) break;
    unsigned char c = (unsigned char)s[i];
    if (c == '"') {
      *pos = i + 1;
      return 0;
    }
    if (c < 0x20) break;
    /* A backslash. */
    if (i + 1 >= n) break;
    switch (s[i + 1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': i += 2; break;
    case 'u':
      if (i + 6 > n || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5])) {
        *pos = i;
        return IM_EPARSE;
      }
      i += 6;
      break;
    default: *pos = i; return IM_EPARSE;
    }
  }
  *pos = i;
  return IM_EPARSE;
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int v_number(const char *s, size_t n, size_t *pos) {
  size_t i = *pos;
  if (i < n && s[i] == '-') i++;
  if (i >= n) goto bad;
  if (s[i] == '0') {
    i++;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && is_digit(s[i])) i++;
  } else {
    goto bad;
  }
  if (i < n && s[i] == '.') {
    i++;
    if (i >= n || !is_digit(s[i])) goto bad;
    while (i < n && is_digit(s[i])) i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n || !is_digit(s[i])) goto bad;
    while (i < n && is_digit(s[i])) i++;
  }
  *pos = i;
  return 0;
bad:
  *pos = i;
  return IM_EPARSE;
}

static int v_literal(const char *s, size_t n, size_t *pos, const char *lit, size_t litlen) {
  if (n - *pos < litlen || memcmp(s + *pos, lit, litlen) != 0) return IM_EPARSE;
  *pos += litlen;
  return 0;
}

/* One iterative pass: grammar, string contents, depth; counts the tokens jsmn will produce (every value and
 * every key is one token).
 * It also bounds jsmn's work: at each closing bracket jsmn walks up from the newest token to the innermost open
 * container, so a run of k closers costs it ~k*k/2 steps, and a body made of deep bracket runs costs
 * O(len * depth) (measured: 150 ms for 2 MB of 126-deep runs). The walk lengths are summed here (last - depth +
 * 1 per closer, in container levels) and more than JSCAN_CLOSE_WORK per input byte is refused as too deeply
 * nested; ordinary bodies stay orders of magnitude below it. */
#define JSCAN_CLOSE_WORK 8
static int validate(const char *s, size_t n, size_t *ntok, size_t *err_off) {
  char stack[JSCAN_MAX_DEPTH]; /* '{' or '[' per open container */
  size_t depth = 0, tokens = 0;
  size_t last = 0; /* depth at which the newest token was made */
  uint64_t work = 0, budget = (uint64_t)n * JSCAN_CLOSE_WORK + 65536; /* a few full-depth runs always pass */
  size_t pos = skip_ws(s, n, 0);
  int rc = IM_EPARSE;

value:
  if (pos >= n) goto fail;
  switch (s[pos]) {
  case '{':
  case '[':
    if (depth == JSCAN_MAX_DEPTH) {
      rc = IM_ETOOBIG;
      goto fail;
    }
    stack[depth++] = s[pos];
    tokens++;
    last = depth;
    pos = skip_ws(s, n, pos + 1);
    if (pos < n && s[pos] == (stack[depth - 1] == '{' ? '}' : ']')) goto close;
    if (stack[depth - 1] == '{') goto key;
    goto value;
  case '"':
    if (v_string(s, n, &pos)) goto fail;
    break;
  case 't':
    if (v_literal(s, n, &pos, "true", 4)) goto fail;
    break;
  case 'f':
    if (v_literal(s, n, &pos, "false", 5)) goto fail;
    break;
  case 'n':
    if (v_literal(s, n, &pos, "null", 4)) goto fail;
    break;
  default:
    if (s[pos] != '-' && !is_digit(s[pos])) goto fail;
    if (v_number(s, n, &pos)) goto fail;
    break;
  }
  tokens++;
  last = depth;
  goto after;

key:
  if (pos >= n || s[pos] != '"') goto fail;
  if (v_string(s, n, &pos)) goto fail;
  tokens++;
  last = depth;
  pos = skip_ws(s, n, pos);
  if (pos >= n || s[pos] != ':') goto fail;
  pos = skip_ws(s, n, pos + 1);
  goto value;

after:
  pos = skip_ws(s, n, pos);
  if (depth == 0) {
    if (pos != n) goto fail;
    if (ntok) *ntok = tokens;
    if (err_off) *err_off = 0;
    return 0;
  }
  if (pos >= n) goto fail;
  if (s[pos] == ',') {
    pos = skip_ws(s, n, pos + 1);
    if (stack[depth - 1] == '{') goto key;
    goto value;
  }
  if (s[pos] != (stack[depth - 1] == '{' ? '}' : ']')) goto fail;

close: /* s[pos] closes the innermost container */
  work += last - depth + 1;
  if (work > budget) {
    rc = IM_ETOOBIG;
    goto fail;
  }
  depth--;
  pos++;
  goto after;

fail:
  if (err_off) *err_off = pos;
  return rc;
}

int jscan_validate(const char *json, size_t len, size_t *err_off) {
  if (len > JSCAN_MAX_LEN) {
    if (err_off) *err_off = JSCAN_MAX_LEN;
    return IM_ETOOBIG;
  }
  return validate(json, len, NULL, err_off);
}

/* ---- token scratch and documents ------------------------------------------------------------------------ */

static _Thread_local jsmntok_t *tl_toks;
static _Thread_local size_t tl_cap;

void jscan_thread_free(void) {
  free(tl_toks);
  tl_toks = NULL;
  tl_cap = 0;
}

/* A validated, tokenized JSON object. t[0] is the root object; tokens are in document order. */
struct doc {
  const char *js;
  const jsmntok_t *t;
  int n;
  jsmntok_t *heap; /* non-NULL when t came from a one-off allocation */
};

/* doc_open returns this (positive) for valid JSON whose top-level value is not an object. Only objects reach
 * jsmn: strict jsmn cannot parse a bare top-level number or literal. */
#define DOC_NOT_OBJECT 1

static int doc_open(struct doc *d, const char *js, size_t len, size_t *err_off) {
  size_t count = 0;
  int rc;
  memset(d, 0, sizeof *d);
  if (len > JSCAN_MAX_LEN) {
    *err_off = JSCAN_MAX_LEN;
    return IM_ETOOBIG;
  }
  if ((rc = validate(js, len, &count, err_off)) != 0) return rc;
  if (js[skip_ws(js, len, 0)] != '{') return DOC_NOT_OBJECT;
  if (count > JSCAN_MAX_TOKENS) {
    *err_off = 0;
    return IM_ETOOBIG;
  }
  jsmntok_t *toks;
  if (count <= tl_cap) {
    toks = tl_toks;
  } else if (count <= JSCAN_KEEP_TOKENS) {
    size_t cap = tl_cap ? tl_cap : 256;
    while (cap < count) cap *= 2;
    free(tl_toks); /* contents are dead between calls: no need to realloc-copy */
    tl_toks = xmalloc(cap * sizeof *tl_toks);
    tl_cap = cap;
    toks = tl_toks;
  } else {
    toks = d->heap = xmalloc(count * sizeof *toks);
  }
  jsmn_parser p;
  jsmn_init(&p);
  int r = jsmn_parse(&p, js, len, toks, (unsigned)count);
  /* Strict jsmn parses everything the validator accepts (it accepts more) into exactly count tokens: anything
   * else is a bug in one of them, reported as a parse error rather than trusted. */
  if (r < 0 || (size_t)r != count || p.toknext != count || count == 0) {
    assert(!"jsmn disagrees with the validator");
    free(d->heap);
    d->heap = NULL;
    *err_off = 0;
    return IM_EPARSE;
  }
  d->js = js;
  d->t = toks;
  d->n = (int)count;
  return 0;
}

static void doc_close(struct doc *d) {
  free(d->heap);
  d->heap = NULL;
}

/* Index just past token v and everything nested in it. */
static int skip(const struct doc *d, int v) {
  int k = v + 1;
  if (d->t[v].type == JSMN_OBJECT || d->t[v].type == JSMN_ARRAY) {
    int end = d->t[v].end;
    while (k < d->n && d->t[k].start < end) k++;
  }
  return k;
}

/* Raw bytes of token i (string contents without quotes; primitives and containers as written). */
static inline struct slice tok_raw(const struct doc *d, int i) {
  return slice_make(d->js + d->t[i].start, (size_t)(d->t[i].end - d->t[i].start));
}

/* Raw JSON text of value i: strings include their quotes. */
static inline struct slice tok_span(const struct doc *d, int i) {
  if (d->t[i].type == JSMN_STRING)
    return slice_make(d->js + d->t[i].start - 1, (size_t)(d->t[i].end - d->t[i].start) + 2);
  return tok_raw(d, i);
}

static inline bool is_str(const struct doc *d, int i) { return d->t[i].type == JSMN_STRING; }
static inline bool is_null(const struct doc *d, int i) {
  return d->t[i].type == JSMN_PRIMITIVE && d->js[d->t[i].start] == 'n';
}
static inline bool is_bool(const struct doc *d, int i) {
  return d->t[i].type == JSMN_PRIMITIVE && (d->js[d->t[i].start] == 't' || d->js[d->t[i].start] == 'f');
}
static inline bool is_number(const struct doc *d, int i) {
  char c = d->js[d->t[i].start];
  return d->t[i].type == JSMN_PRIMITIVE && (c == '-' || is_digit(c));
}

/* ---- string decoding ------------------------------------------------------------------------------------ */

static unsigned hex4(const char *p) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    unsigned d = c <= '9' ? (unsigned)(c - '0') : c <= 'F' ? (unsigned)(c - 'A' + 10) : (unsigned)(c - 'a' + 10);
    v = v << 4 | d;
  }
  return v;
}

static size_t utf8_len(unsigned cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

/* Next code point of validated string contents raw[*i..n): consumes one escape or one raw byte (raw bytes are
 * passed through as is, so the result is byte-exact for valid UTF-8). *lone is set for an unpaired surrogate,
 * which becomes U+FFFD. Returns the code point, or with *byte set, a raw byte to copy. */
static unsigned next_cp(const char *raw, size_t n, size_t *i, bool *byte, bool *lone) {
  char c = raw[*i];
  *byte = false;
  if (c != '\\') {
    *byte = true;
    (*i)++;
    return (unsigned char)c;
  }
  char e = raw[*i + 1];
  *i += 2;
  switch (e) {
  case 'b': return '\b';
  case 'f': return '\f';
  case 'n': return '\n';
  case 'r': return '\r';
  case 't': return '\t';
  case 'u': break;
  default: return (unsigned char)e; /* " \ / */
  }
  unsigned cp = hex4(raw + *i);
  *i += 4;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (*i + 6 <= n && raw[*i] == '\\' && raw[*i + 1] == 'u') {
      unsigned lo = hex4(raw + *i + 2);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        *i += 6;
        return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
    }
    *lone = true;
    return 0xFFFD;
  }
  if (cp >= 0xDC00 && cp <= 0xDFFF) {
    *lone = true;
    return 0xFFFD;
  }
  return cp;
}

/* Decoded UTF-8 length of validated string contents. */
static size_t decoded_len(struct slice raw) {
  size_t i = 0, total = 0;
  bool byte, lone = false;
  while (i < raw.len) {
    const char *bs = memchr(raw.base + i, '\\', raw.len - i);
    if (!bs) return total + raw.len - i;
    total += (size_t)(bs - (raw.base + i));
    i = (size_t)(bs - raw.base);
    unsigned cp = next_cp(raw.base, raw.len, &i, &byte, &lone);
    total += utf8_len(cp);
  }
  return total;
}

/* Decodes validated string contents into out[0..cap). Returns the decoded length, or -1 when it does not fit. */
static long decode(struct slice raw, char *out, size_t cap, bool *lone) {
  size_t i = 0, o = 0;
  bool byte;
  while (i < raw.len) {
    unsigned cp = next_cp(raw.base, raw.len, &i, &byte, lone);
    size_t k = byte ? 1 : utf8_len(cp);
    if (o + k > cap) return -1;
    if (byte || k == 1) {
      out[o] = (char)cp;
    } else if (k == 2) {
      out[o] = (char)(0xC0 | cp >> 6);
      out[o + 1] = (char)(0x80 | (cp & 0x3F));
    } else if (k == 3) {
      out[o] = (char)(0xE0 | cp >> 12);
      out[o + 1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      out[o + 2] = (char)(0x80 | (cp & 0x3F));
    } else {
      out[o] = (char)(0xF0 | cp >> 18);
      out[o + 1] = (char)(0x80 | ((cp >> 12) & 0x3F));
      out[o + 2] = (char)(0x80 | ((cp >> 6) & 0x3F));
      out[o + 3] = (char)(0x80 | (cp & 0x3F));
    }
    o += k;
  }
  return (long)o;
}

/* Which of names[0..count) string token i equals after unescaping; -1 for none. Names are short ASCII. */
static int lookup(const struct doc *d, int i, const char *const *names, int count) {
  struct slice k = tok_raw(d, i);
  char buf[32];
  if (memchr(k.base, '\\', k.len)) {
    bool lone = false;
    long m = decode(k, buf, sizeof buf, &lone);
    if (m < 0) return -1;
    k = slice_make(buf, (size_t)m);
  }
  for (int j = 0; j < count; j++)
    if (slice_eqz(k, names[j])) return j;
  return -1;
}

static bool str_is(const struct doc *d, int i, const char *name) {
  return is_str(d, i) && lookup(d, i, &name, 1) == 0;
}

/* Finds the value of each of names[0..count) among the keys of object obj; vals[j] = value index or -1.
 * Returns the index of the first repeated name (as a key), or -1 when none repeats. */
static int object_keys(const struct doc *d, int obj, const char *const *names, int count, int *vals) {
  int dup = -1;
  for (int j = 0; j < count; j++) vals[j] = -1;
  int k = obj + 1;
  for (int c = 0; c < d->t[obj].size; c++) {
    int id = lookup(d, k, names, count);
    if (id >= 0) {
      if (vals[id] >= 0 && dup < 0) dup = id;
      vals[id] = k + 1;
    }
    k = skip(d, k + 1);
  }
  return dup;
}

/* Non-negative integer without fraction or exponent that fits int64. */
static int parse_count(const struct doc *d, int i, int64_t *out) {
  if (d->t[i].type != JSMN_PRIMITIVE) return -EINVAL;
  uint64_t v;
  if (slice_to_u64(tok_raw(d, i), &v) != 0 || v > INT64_MAX) return -EINVAL;
  *out = (int64_t)v;
  return 0;
}

/* ---- requests ------------------------------------------------------------------------------------------- */

static int fail(int rc, char *errmsg, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(int rc, char *errmsg, size_t errlen, const char *fmt, ...) {
  if (errmsg && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

enum { K_MODEL, K_STREAM, K_STREAM_OPTIONS, K_MESSAGES, K_PROMPT, K_MAX_TOKENS, K_MAX_COMPLETION_TOKENS, K_USER };
static const char *const req_keys[] = {"model",  "stream",     "stream_options",        "messages",
                                       "prompt", "max_tokens", "max_completion_tokens", "user"};
#define NREQ_KEYS ((int)(sizeof req_keys / sizeof req_keys[0]))

/* Text bytes of one message's content value: a string, or an array of parts where type "text" parts count. */
static size_t content_bytes(const struct doc *d, int v) {
  static const char *const part_keys[] = {"type", "text"};
  if (is_str(d, v)) return decoded_len(tok_raw(d, v));
  if (d->t[v].type != JSMN_ARRAY) return 0;
  size_t total = 0;
  int p = v + 1;
  for (int c = 0; c < d->t[v].size; c++) {
    if (d->t[p].type == JSMN_OBJECT) {
      int pv[2];
      object_keys(d, p, part_keys, 2, pv);
      if (pv[0] >= 0 && pv[1] >= 0 && str_is(d, pv[0], "text") && is_str(d, pv[1]))
        total += decoded_len(tok_raw(d, pv[1]));
    }
    p = skip(d, p);
  }
  return total;
}

static size_t messages_bytes(const struct doc *d, int arr) {
  static const char *const msg_keys[] = {"content"};
  size_t total = 0;
  int m = arr + 1;
  for (int c = 0; c < d->t[arr].size; c++) {
    if (d->t[m].type == JSMN_OBJECT) {
      int cv;
      object_keys(d, m, msg_keys, 1, &cv); /* a repeated content counts once, the last one, as upstream reads it */
      if (cv >= 0) total += content_bytes(d, cv);
    }
    m = skip(d, m);
  }
  return total;
}

static void prompt_bytes(const struct doc *d, int v, struct oai_req *out) {
  if (is_str(d, v)) {
    out->prompt_text_bytes += decoded_len(tok_raw(d, v));
    return;
  }
  int e = v + 1;
  for (int c = 0; c < d->t[v].size; c++) {
    if (is_str(d, e)) {
      out->prompt_text_bytes += decoded_len(tok_raw(d, e));
    } else if (is_number(d, e)) {
      out->prompt_token_ids++;
    } else if (d->t[e].type == JSMN_ARRAY) {
      int x = e + 1;
      for (int k = 0; k < d->t[e].size; k++) {
        if (is_number(d, x)) out->prompt_token_ids++;
        x = skip(d, x);
      }
    }
    e = skip(d, e);
  }
}

static int scan_model(const struct doc *d, int v, struct oai_req *out, char *errmsg, size_t errlen) {
  const size_t max = sizeof out->model_buf - 1;
  if (!is_str(d, v)) return fail(-EINVAL, errmsg, errlen, "'model' must be a non-empty string");
  struct slice raw = tok_raw(d, v);
  struct slice m = raw;
  if (memchr(raw.base, '\\', raw.len)) {
    bool lone = false;
    long k = decode(raw, out->model_buf, max, &lone);
    if (k < 0) return fail(-EINVAL, errmsg, errlen, "'model' is too long (at most %zu bytes)", max);
    if (lone) return fail(-EINVAL, errmsg, errlen, "'model' contains an unpaired UTF-16 surrogate escape");
    out->model_buf[k] = '\0';
    m = slice_make(out->model_buf, (size_t)k);
  } else if (raw.len > max) {
    return fail(-EINVAL, errmsg, errlen, "'model' is too long (at most %zu bytes)", max);
  }
  if (m.len == 0) return fail(-EINVAL, errmsg, errlen, "'model' must be a non-empty string");
  for (size_t i = 0; i < m.len; i++) {
    unsigned char c = (unsigned char)m.base[i];
    if (c < 0x20 || c == 0x7f) return fail(-EINVAL, errmsg, errlen, "'model' must not contain control characters");
  }
  out->model = m;
  out->model_raw = raw;
  return 0;
}

static int scan_stream_options(const struct doc *d, int v, struct oai_req *out, char *errmsg, size_t errlen) {
  static const char *const so_keys[] = {"include_usage"};
  if (is_null(d, v)) {
    out->stream_options_null = tok_span(d, v); /* "not given": the proxy may replace it in place */
    return 0;
  }
  if (d->t[v].type != JSMN_OBJECT) return fail(-EINVAL, errmsg, errlen, "'stream_options' must be an object or null");
  out->stream_options = tok_span(d, v);
  out->has_stream_options = true;
  int iu;
  if (object_keys(d, v, so_keys, 1, &iu) >= 0)
    return fail(IM_EDUPKEY, errmsg, errlen, "duplicate key 'stream_options.include_usage' in the request body");
  if (iu < 0) return 0;
  if (!is_bool(d, iu) && !is_null(d, iu))
    return fail(-EINVAL, errmsg, errlen, "'stream_options.include_usage' must be a boolean");
  /* null is OpenAI's default, false: reported as 0 with its span so the proxy rewrites it like false. */
  out->include_usage_val = tok_span(d, iu);
  out->include_usage = d->js[d->t[iu].start] == 't';
  return 0;
}

static int scan_request(const struct doc *d, struct oai_req *out, char *errmsg, size_t errlen) {
  int v[NREQ_KEYS];
  int rc;
  int dup = object_keys(d, 0, req_keys, NREQ_KEYS, v);
  if (dup >= 0) return fail(IM_EDUPKEY, errmsg, errlen, "duplicate key '%s' in the request body", req_keys[dup]);

  if (v[K_MODEL] < 0) return fail(-EINVAL, errmsg, errlen, "missing required parameter: 'model'");
  if ((rc = scan_model(d, v[K_MODEL], out, errmsg, errlen)) != 0) return rc;

  int msgs = v[K_MESSAGES], prompt = v[K_PROMPT];
  if (msgs >= 0 && !is_null(d, msgs) && d->t[msgs].type != JSMN_ARRAY)
    return fail(-EINVAL, errmsg, errlen, "'messages' must be an array");
  if (prompt >= 0 && !is_null(d, prompt) && !is_str(d, prompt) && d->t[prompt].type != JSMN_ARRAY)
    return fail(-EINVAL, errmsg, errlen, "'prompt' must be a string or an array");
  if (msgs >= 0 && !is_null(d, msgs)) {
    out->is_chat = true;
    out->prompt = tok_span(d, msgs);
    out->prompt_text_bytes = messages_bytes(d, msgs);
  } else if (prompt >= 0 && !is_null(d, prompt)) {
    out->prompt = tok_span(d, prompt);
    prompt_bytes(d, prompt, out);
  }

  int s = v[K_STREAM];
  if (s >= 0 && !is_null(d, s)) {
    if (!is_bool(d, s)) return fail(-EINVAL, errmsg, errlen, "'stream' must be a boolean");
    out->stream = d->js[d->t[s].start] == 't';
  }

  if (v[K_STREAM_OPTIONS] >= 0 && (rc = scan_stream_options(d, v[K_STREAM_OPTIONS], out, errmsg, errlen)) != 0)
    return rc;

  int64_t mt = -1, mct = -1;
  if (v[K_MAX_TOKENS] >= 0 && !is_null(d, v[K_MAX_TOKENS]) && parse_count(d, v[K_MAX_TOKENS], &mt) != 0)
    return fail(-EINVAL, errmsg, errlen, "'max_tokens' must be a non-negative integer");
  if (v[K_MAX_COMPLETION_TOKENS] >= 0 && !is_null(d, v[K_MAX_COMPLETION_TOKENS]) &&
      parse_count(d, v[K_MAX_COMPLETION_TOKENS], &mct) != 0)
    return fail(-EINVAL, errmsg, errlen, "'max_completion_tokens' must be a non-negative integer");
  out->max_tokens = mct >= 0 ? mct : mt;

  int u = v[K_USER];
  if (u >= 0 && !is_null(d, u)) {
    if (!is_str(d, u)) return fail(-EINVAL, errmsg, errlen, "'user' must be a string");
    out->user = tok_raw(d, u);
  }
  return 0;
}

int jscan_request(const char *body, size_t len, struct oai_req *out, char *errmsg, size_t errlen) {
  struct doc d;
  size_t off = 0;
  memset(out, 0, sizeof *out);
  out->include_usage = -1;
  out->max_tokens = -1;

  int rc = doc_open(&d, body, len, &off);
  if (rc == IM_ETOOBIG)
    return fail(rc, errmsg, errlen,
                "the request body is too large or too deeply nested (at most %d levels, %u values)",
                JSCAN_MAX_DEPTH, JSCAN_MAX_TOKENS);
  if (rc == DOC_NOT_OBJECT) return fail(IM_EPARSE, errmsg, errlen, "the request body must be a JSON object");
  if (rc != 0)
    return fail(rc, errmsg, errlen,
                "We could not parse the JSON body of your request: invalid JSON at byte %zu. The OpenAI API "
                "expects a JSON object as the request body.",
                off);
  rc = scan_request(&d, out, errmsg, errlen);
  doc_close(&d);
  return rc;
}

/* ---- responses ------------------------------------------------------------------------------------------ */

/* Walking a document validate() accepted, without tokens: a response's "usage" is found by skipping the
 * other top-level values, so only the small usage object is tokenized. */

/* s[i] is a string's opening quote: the index just past its closing quote. */
static size_t skip_str(const char *s, size_t n, size_t i) {
  for (i++; i < n;) {
    i = skip_plain(s, n, i);
    if (i >= n) break;
    if (s[i] == '"') return i + 1;
    i += s[i] == '\\' ? 2 : 1; /* an escape, or a byte skip_plain stops at (control bytes never pass validate) */
  }
  return n;
}

/* s[i] starts a value: the index just past it. */
static size_t skip_value(const char *s, size_t n, size_t i) {
  if (s[i] == '"') return skip_str(s, n, i);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < n) {
      char c = s[i];
      if (c == '"') {
        i = skip_str(s, n, i);
        continue;
      }
      if (c == '{' || c == '[') depth++;
      else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
      i++;
    }
    return n;
  }
  while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' &&
         s[i] != '\r')
    i++;
  return i;
}

/* top_value finds the top-level key `key` (matched after unescaping) of the validated object s[0..n) whose
 * '{' is at i: the number of times it occurs, and the span of its last value in *v. */
static int top_value(const char *s, size_t n, size_t i, const char *key, struct slice *v) {
  int found = 0;
  i = skip_ws(s, n, i + 1);
  while (i < n && s[i] == '"') {
    size_t kend = skip_str(s, n, i);
    struct slice k = slice_make(s + i + 1, kend - i - 2);
    char buf[32];
    if (memchr(k.base, '\\', k.len)) {
      bool lone = false;
      long m = decode(k, buf, sizeof buf, &lone);
      k = m < 0 ? slice_make(NULL, 0) : slice_make(buf, (size_t)m);
    }
    i = skip_ws(s, n, skip_ws(s, n, kend) + 1); /* past the ':' */
    size_t vend = skip_value(s, n, i);
    if (slice_eqz(k, key)) {
      found++;
      *v = slice_make(s + i, vend - i);
    }
    i = skip_ws(s, n, vend);
    if (i < n && s[i] == ',') i = skip_ws(s, n, i + 1);
  }
  return found;
}

/* scan_usage reads the usage object, d's token 0. */
static int scan_usage(const struct doc *d, struct oai_usage *u) {
  static const char *const usage_keys[] = {"prompt_tokens", "completion_tokens", "total_tokens",
                                           "prompt_tokens_details"};
  static const char *const details_keys[] = {"cached_tokens"};
  int64_t *counts[3] = {&u->prompt_tokens, &u->completion_tokens, &u->total_tokens};
  int us = 0, f[4], ct;

  if (object_keys(d, us, usage_keys, 4, f) >= 0) return IM_EDUPKEY;
  for (int j = 0; j < 3; j++)
    if (f[j] >= 0 && !is_null(d, f[j]) && parse_count(d, f[j], counts[j]) != 0) return -EINVAL;
  if (f[3] >= 0 && !is_null(d, f[3])) {
    if (d->t[f[3]].type != JSMN_OBJECT) return -EINVAL;
    if (object_keys(d, f[3], details_keys, 1, &ct) >= 0) return IM_EDUPKEY;
    if (ct >= 0 && !is_null(d, ct) && parse_count(d, ct, &u->cached_tokens) != 0) return -EINVAL;
  }
  u->present = true;
  return 0;
}

static void usage_reset(struct oai_usage *u) {
  u->prompt_tokens = u->completion_tokens = u->total_tokens = u->cached_tokens = -1;
  u->present = false;
}

int jscan_usage(const char *json, size_t len, struct oai_usage *u) {
  struct doc d;
  size_t off, ntok;
  struct slice v = {0};
  usage_reset(u);
  if (len > JSCAN_MAX_LEN) return IM_ETOOBIG;
  int rc = validate(json, len, &ntok, &off);
  if (rc != 0) return rc;
  size_t i = skip_ws(json, len, 0);
  if (json[i] != '{') return IM_EPARSE;
  if (ntok > JSCAN_MAX_TOKENS) return IM_ETOOBIG;
  int found = top_value(json, len, i, "usage", &v);
  if (found > 1) return IM_EDUPKEY;
  if (found == 0 || (v.len == 4 && memcmp(v.base, "null", 4) == 0)) return 0;
  if (v.base[0] != '{') return -EINVAL;
  rc = doc_open(&d, v.base, v.len, &off); /* the usage object alone: a few tokens */
  if (rc != 0) return rc;
  rc = scan_usage(&d, u);
  doc_close(&d);
  if (rc != 0) {
    usage_reset(u);
    return rc;
  }
  u->span = v;
  /* llama.cpp reports no cached_tokens; its timings.prompt_n counts the prompt tokens it computed */
  struct slice tv = {0};
  if (u->cached_tokens < 0 && u->prompt_tokens >= 0 && top_value(json, len, i, "timings", &tv) == 1 &&
      tv.base[0] == '{' && doc_open(&d, tv.base, tv.len, &off) == 0) {
    static const char *const tkeys[] = {"prompt_n"};
    int pn;
    int64_t n;
    if (object_keys(&d, 0, tkeys, 1, &pn) < 0 && pn >= 0 && parse_count(&d, pn, &n) == 0 &&
        n <= u->prompt_tokens)
      u->cached_tokens = u->prompt_tokens - n;
    doc_close(&d);
  }
  return 0;
}

int jscan_top_string(const char *json, size_t len, const char *key, struct slice *raw) {
  size_t off;
  struct slice v = {0};
  if (len > JSCAN_MAX_LEN || validate(json, len, NULL, &off) != 0) return IM_EPARSE;
  size_t i = skip_ws(json, len, 0);
  if (json[i] != '{') return IM_EPARSE;
  int found = top_value(json, len, i, key, &v);
  if (found != 1 || v.len < 2 || v.base[0] != '"') return -ENOENT;
  *raw = slice_make(v.base + 1, v.len - 2);
  return 0;
}

/* True when s[0..n) holds '[' followed by optional whitespace and ']': a necessary condition for an empty
 * choices array, cheap enough to run on every stream chunk before the full scan. */
static bool has_empty_array(const char *s, size_t n) {
  const char *p = s, *end = s + n;
  while ((p = memchr(p, '[', (size_t)(end - p))) != NULL) {
    size_t i = skip_ws(s, n, (size_t)(p - s) + 1);
    if (i < n && s[i] == ']') return true;
    p++;
  }
  return false;
}

bool jscan_is_usage_only_chunk(const char *json, size_t len) {
  static const char *const keys[] = {"choices", "usage"};
  struct doc d;
  size_t off;
  int v[2];
  if (!has_empty_array(json, len)) return false; /* content chunks: no tokenizing */
  if (doc_open(&d, json, len, &off) != 0) return false;
  bool yes = object_keys(&d, 0, keys, 2, v) < 0 && v[0] >= 0 && v[1] >= 0 &&
             d.t[v[0]].type == JSMN_ARRAY && d.t[v[0]].size == 0 && d.t[v[1]].type == JSMN_OBJECT;
  doc_close(&d);
  return yes;
}
