/* Mooncake trace reader (one JSON object a line; shared/traces/README.md).
 *
 * A line {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [h0, h1, ...]} becomes one
 * request at timestamp ms whose prompt is the spans (WL_ID_TRACE | h_j, 512 tokens) in order. The last id
 * covers what is left of input_length (a partial block); surplus ids beyond input_length are dropped, and
 * input beyond the ids' 512 * count tokens is unique content. output_length 0 is served as 1 token (a
 * runtime always samples one). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "sim/workload.h"

#define MAX_LINE_IDS (1 << 20)

static int bad(char *err, size_t errlen, long lineno, const char *why) {
  if (err && errlen) snprintf(err, errlen, "line %ld: %s", lineno, why);
  return -EINVAL;
}

static int get_count(json_t *o, const char *key, long long min, long long *out) {
  json_t *v = json_object_get(o, key);
  if (!v) return -ENOENT;
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d) || fabs(d) > 9e15) return -EINVAL;
    *out = (long long)d;
  } else {
    return -EINVAL;
  }
  return *out >= min ? 0 : -EINVAL;
}

int trace_parse_line(struct workload *w, const char *line, size_t len, long lineno, char *err, size_t errlen) {
  size_t i = 0;
  while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
    i++;
  if (i == len) return 0; /* blank */
  json_error_t jerr;
  json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!o) {
    if (err && errlen) snprintf(err, errlen, "line %ld: invalid JSON: %s (column %d)", lineno, jerr.text, jerr.column);
    return IM_EPARSE;
  }
  int rc = 0;
  char why[160];
  long long ts = 0, in = 0, out = 0;
  json_t *ids = NULL;
  if (!json_is_object(o)) {
    rc = bad(err, errlen, lineno, "expected a JSON object");
    goto done;
  }
  const char *keys[3] = {"timestamp", "input_length", "output_length"};
  long long *vals[3] = {&ts, &in, &out};
  long long mins[3] = {0, 1, 0};
  for (int k = 0; k < 3; k++) {
    int g = get_count(o, keys[k], mins[k], vals[k]);
    if (g == -ENOENT) {
      snprintf(why, sizeof why, "missing \"%s\"", keys[k]);
      rc = bad(err, errlen, lineno, why);
      goto done;
    }
    if (g != 0 || *vals[k] > (k == 0 ? 1000000000000ll : 100000000ll)) {
      snprintf(why, sizeof why, "\"%s\" must be an integer >= %lld", keys[k], mins[k]);
      rc = bad(err, errlen, lineno, why);
      goto done;
    }
  }
  ids = json_object_get(o, "hash_ids");
  if (!ids) {
    rc = bad(err, errlen, lineno, "missing \"hash_ids\"");
    goto done;
  }
  if (!json_is_array(ids) || json_array_size(ids) > MAX_LINE_IDS) {
    rc = bad(err, errlen, lineno, "\"hash_ids\" must be an array of non-negative integers");
    goto done;
  }
  size_t nids = json_array_size(ids);
  size_t need = (size_t)((in + TRACE_BLOCK_TOKENS - 1) / TRACE_BLOCK_TOKENS);
  size_t nsp = nids < need ? nids : need;
  struct wl_span *sp = xmalloc((nsp + 1) * sizeof *sp);
  long long left = in;
  for (size_t j = 0; j < nids; j++) {
    json_t *v = json_array_get(ids, j);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      free(sp);
      snprintf(why, sizeof why, "\"hash_ids\"[%zu] must be a non-negative integer", j);
      rc = bad(err, errlen, lineno, why);
      goto done;
    }
    if (j >= nsp) continue;
    int32_t tok = left < TRACE_BLOCK_TOKENS ? (int32_t)left : TRACE_BLOCK_TOKENS;
    sp[j] = (struct wl_span){.id = WL_ID_TRACE | (uint64_t)json_integer_value(v), .tokens = tok};
    left -= tok;
  }
  /* Input beyond the ids (if any) is padded with unique content by workload_add. */
  workload_add(w, (uint64_t)ts * 1000000ull, (int)in, out < 1 ? 1 : (int)out, 0, sp, (int)nsp);
  free(sp);
done:
  json_decref(o);
  return rc;
}

int trace_load(const char *path, size_t limit, struct workload *w, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    int e = errno;
    if (err && errlen) snprintf(err, errlen, "cannot open trace %s: %s", path, strerror(e));
    return -e;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long lineno = 0;
  size_t before = w->n;
  int rc = 0;
  while ((limit == 0 || w->n - before < limit) && (n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    rc = trace_parse_line(w, line, (size_t)n, lineno, err, errlen);
    if (rc) break;
  }
  free(line);
  fclose(f);
  if (rc == 0) workload_sort(w);
  return rc;
}
