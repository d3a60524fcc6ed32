/* Prometheus text format (0.0.4) parser: one pass over the buffer, slices into it, no allocation. */
#include "adapter/prom.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

struct parser {
  const char *line_start; /* for the column in error messages */
  int line;               /* 1-based */
  struct prom_error *err;
};

static int fail(struct parser *ps, const char *at, int code, const char *what) {
  if (ps->err) {
    ps->err->line = ps->line;
    snprintf(ps->err->msg, sizeof ps->err->msg, "%s (col %zu)", what, (size_t)(at - ps->line_start) + 1);
  }
  return code;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static const char *skip_blanks(const char *p, const char *e) {
  while (p < e && is_blank(*p))
    p++;
  return p;
}

static const char *skip_token(const char *p, const char *e) {
  while (p < e && !is_blank(*p))
    p++;
  return p;
}

static bool is_alpha_(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* scan_name returns the end of the name starting at p: [a-zA-Z_(:)][a-zA-Z0-9_(:)]*, colons only in metric
 * names. Returns p when there is no name there. */
static const char *scan_name(const char *p, const char *e, bool colon) {
  if (p >= e || !(is_alpha_(*p) || (colon && *p == ':'))) return p;
  do
    p++;
  while (p < e && (is_alpha_(*p) || is_digit(*p) || (colon && *p == ':')));
  return p;
}

/* parse_value accepts what strtod accepts (NaN, Inf, +Inf, -Inf, exponents), with no leading white space
 * or other odd characters, and rejects overflow; underflow to a subnormal or zero is fine. */
static int parse_value(const char *s, size_t n, double *out) {
  char tmp[64];
  char *end;
  if (n == 0 || n >= sizeof tmp) return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '_' || !(is_alpha_(c) || is_digit(c) || c == '.' || c == '+' || c == '-')) return -EINVAL;
  }
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  errno = 0;
  double v = strtod(tmp, &end);
  if (end != tmp + n) return -EINVAL;
  if (errno == ERANGE && fabs(v) > 1.0) return -EINVAL;
  *out = v;
  return 0;
}

/* parse_ts reads an optionally signed decimal int64. */
static int parse_ts(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  if (n && (s[0] == '-' || s[0] == '+')) neg = s[0] == '-', i = 1;
  if (i == n) return -EINVAL;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned)((unsigned char)s[i] - '0');
    if (d > 9) return -EINVAL;
    if (v > (limit - d) / 10) return -EINVAL;
    v = v * 10 + d;
  }
  if (neg)
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  else
    *out = (int64_t)v;
  return 0;
}

static bool known_type(struct slice t) {
  static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped",
                                      /* OpenMetrics words, tolerated */
                                      "unknown", "info", "stateset", "gaugehistogram"};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (slice_eqz(t, types[i])) return true;
  return false;
}

/* parse_comment handles a line whose first non-blank is '#' at p. Only TYPE lines are checked. */
static int parse_comment(struct parser *ps, const char *p, const char *e) {
  p = skip_blanks(p + 1, e);
  const char *kw = p;
  p = skip_token(p, e);
  if (!slice_eqz(slice_make(kw, (size_t)(p - kw)), "TYPE")) return 0;
  p = skip_blanks(p, e);
  const char *name = p, *name_end = scan_name(p, e, true);
  if (name_end == name) return fail(ps, p, IM_EPARSE, "TYPE line: expected a metric name");
  if (name_end < e && !is_blank(*name_end))
    return fail(ps, name_end, IM_EPARSE, "TYPE line: invalid character in metric name");
  p = skip_blanks(name_end, e);
  const char *type = p;
  p = skip_token(p, e);
  if (p == type) return fail(ps, p, IM_EPARSE, "TYPE line: missing type");
  if (!known_type(slice_make(type, (size_t)(p - type))))
    return fail(ps, type, IM_EPARSE, "TYPE line: unknown metric type");
  p = skip_blanks(p, e);
  if (p != e) return fail(ps, p, IM_EPARSE, "TYPE line: unexpected text after the type");
  return 0;
}

/* parse_labels reads `{ name="value", ... [,] }` starting at the '{' at *pp; advances *pp past the '}'. */
static int parse_labels(struct parser *ps, const char **pp, const char *e, struct prom_label *labels,
                        int *nlabels) {
  const char *p = *pp + 1;
  int n = 0;
  for (;;) {
    p = skip_blanks(p, e);
    if (p >= e) return fail(ps, p, IM_EPARSE, "unterminated label set");
    if (*p == '}') {
      p++;
      break;
    }
    const char *name = p, *name_end = scan_name(p, e, false);
    if (name_end == name) return fail(ps, p, IM_EPARSE, "expected a label name");
    p = skip_blanks(name_end, e);
    if (p >= e || *p != '=') return fail(ps, p, IM_EPARSE, "expected '=' after the label name");
    p = skip_blanks(p + 1, e);
    if (p >= e || *p != '"') return fail(ps, p, IM_EPARSE, "expected '\"' to open the label value");
    const char *val = ++p;
    while (p < e && *p != '"') {
      if (*p != '\\') {
        p++;
        continue;
      }
      if (e - p < 2) {
        p = e;
        break;
      }
      if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
        return fail(ps, p, IM_EPARSE, "invalid escape in label value (only \\\\, \\\" and \\n)");
      p += 2;
    }
    if (p >= e) return fail(ps, val - 1, IM_EPARSE, "unterminated label value");
    struct slice lname = slice_make(name, (size_t)(name_end - name));
    for (int i = 0; i < n; i++)
      if (slice_eq(labels[i].name, lname)) return fail(ps, name, IM_EPARSE, "duplicate label name");
    if (n == PROM_MAX_LABELS) return fail(ps, name, IM_ETOOBIG, "too many labels");
    labels[n].name = lname;
    labels[n].value = slice_make(val, (size_t)(p - val));
    n++;
    p = skip_blanks(p + 1, e);
    if (p < e && *p == ',') {
      p++;
      continue;
    }
    if (p < e && *p == '}') {
      p++;
      break;
    }
    return fail(ps, p, IM_EPARSE, "expected ',' or '}' after a label");
  }
  *pp = p;
  *nlabels = n;
  return 0;
}

/* parse_sample handles `name[{labels}] value [timestamp]` in [p, e), p at the first non-blank. */
static int parse_sample(struct parser *ps, const char *p, const char *e, struct prom_label *labels,
                        prom_sample_cb cb, void *arg) {
  struct prom_sample s = {.labels = labels};
  const char *name_end = scan_name(p, e, true);
  if (name_end == p) return fail(ps, p, IM_EPARSE, "expected a metric name");
  if (name_end < e && !is_blank(*name_end) && *name_end != '{')
    return fail(ps, name_end, IM_EPARSE, "invalid character in metric name");
  s.name = slice_make(p, (size_t)(name_end - p));
  p = skip_blanks(name_end, e);
  if (p < e && *p == '{') {
    int rc = parse_labels(ps, &p, e, labels, &s.nlabels);
    if (rc) return rc;
    p = skip_blanks(p, e);
  }
  if (p >= e) return fail(ps, p, IM_EPARSE, "missing value");
  const char *val = p;
  p = skip_token(p, e);
  if (parse_value(val, (size_t)(p - val), &s.value) < 0) return fail(ps, val, IM_EPARSE, "invalid value");
  p = skip_blanks(p, e);
  if (p < e) {
    const char *ts = p;
    p = skip_token(p, e);
    if (parse_ts(ts, (size_t)(p - ts), &s.ts_ms) < 0)
      return fail(ps, ts, IM_EPARSE, "invalid timestamp (integer milliseconds)");
    s.has_ts = true;
    p = skip_blanks(p, e);
    if (p < e) return fail(ps, p, IM_EPARSE, "unexpected text after the timestamp");
  }
  return cb(&s, arg);
}

int prom_parse(const char *text, size_t len, prom_sample_cb cb, void *arg, struct prom_error *err) {
  struct prom_label labels[PROM_MAX_LABELS];
  struct parser ps = {.err = err};
  if (err) {
    err->line = 0;
    err->msg[0] = '\0';
  }
  if (!cb || (!text && len)) return -EINVAL;
  if (len == 0) return 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    if (ps.line < INT_MAX) ps.line++;
    ps.line_start = p;
    if (e > p && e[-1] == '\r') e--;
    const char *q = skip_blanks(p, e);
    if (q < e) {
      int rc = *q == '#' ? parse_comment(&ps, q, e) : parse_sample(&ps, q, e, labels, cb, arg);
      if (rc) return rc;
    }
    p = nl ? nl + 1 : end;
  }
  return 0;
}

bool prom_label_get(const struct prom_sample *s, const char *name, struct slice *value) {
  for (int i = 0; i < s->nlabels; i++) {
    if (slice_eqz(s->labels[i].name, name)) {
      *value = s->labels[i].value;
      return true;
    }
  }
  return false;
}

size_t prom_label_unescape(struct slice raw, char *dst, size_t cap) {
  size_t o = 0;
  if (cap == 0) return 0;
  for (size_t i = 0; i < raw.len && o + 1 < cap; i++) {
    char c = raw.base[i];
    if (c == '\\' && i + 1 < raw.len) {
      char next = raw.base[i + 1];
      if (next == '\\' || next == '"') {
        c = next;
        i++;
      } else if (next == 'n') {
        c = '\n';
        i++;
      }
    }
    dst[o++] = c;
  }
  dst[o] = '\0';
  return o;
}
