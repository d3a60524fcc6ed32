/* libFuzzer target for trace/trace_context.c, the W3C headers read from every request: the input, split at
 * its first NUL into a traceparent and a tracestate value, copied to exact-size allocations so a read past
 * them is caught. A traceparent that parses has lowercase hex, non-zero ids, and writes back as itself
 * (version 00, the sampled bit kept) and parses again to the same ids; a tracestate that is kept is a prefix
 * of the input, at most 512 bytes unless the whole input is, free of CR, LF and other control bytes but tab,
 * and checks again as itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_context.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool hex_lower(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static void traceparent(const char *tp, size_t n) {
  struct trace_ctx c, again;
  if (traceparent_parse(slice_make(tp, n), &c) != 0) return;
  CHECK(n >= TRACEPARENT_LEN);
  CHECK(hex_lower(tp, 2) && memcmp(tp, "ff", 2) != 0);
  CHECK(hex_lower(tp + 3, 32) && hex_lower(tp + 36, 16) && hex_lower(tp + 53, 2));
  CHECK(memcmp(tp, "00", 2) != 0 || n == TRACEPARENT_LEN);
  uint8_t zero[TRACE_ID_LEN] = {0};
  CHECK(memcmp(c.trace_id, zero, TRACE_ID_LEN) != 0 && memcmp(c.span_id, zero, SPAN_ID_LEN) != 0);
  char out[TRACEPARENT_LEN + 1];
  traceparent_format(&c, out);
  CHECK(strlen(out) == TRACEPARENT_LEN);
  CHECK(memcmp(out + 3, tp + 3, 50) == 0);                        /* ids as they came */
  CHECK(out[54] == ((c.flags & TRACE_FLAG_SAMPLED) ? '1' : '0')); /* the sampled bit only */
  CHECK(traceparent_parse(slice_cstr(out), &again) == 0);
  CHECK(memcmp(&again.trace_id, &c.trace_id, TRACE_ID_LEN) == 0 &&
        memcmp(again.span_id, c.span_id, SPAN_ID_LEN) == 0);
  CHECK((again.flags & TRACE_FLAG_SAMPLED) == (c.flags & TRACE_FLAG_SAMPLED));
}

static void tracestate(const char *ts, size_t n) {
  struct slice kept = tracestate_check(slice_make(ts, n));
  if (kept.len == 0) return;
  CHECK(kept.base == ts && kept.len <= n);
  CHECK(kept.len <= TRACESTATE_MAX || kept.len == n);
  CHECK(n <= TRACESTATE_MAX ? kept.len == n : kept.len <= TRACESTATE_MAX);
  for (size_t i = 0; i < kept.len; i++)
    CHECK((ts[i] >= 0x20 && ts[i] < 0x7f) || ts[i] == '\t');
  struct slice again = tracestate_check(kept);
  CHECK(again.base == kept.base && again.len == kept.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t n1 = nul ? (size_t)(nul - data) : size;
  size_t n2 = nul ? size - n1 - 1 : 0;
  char *tp = malloc(n1 ? n1 : 1), *ts = malloc(n2 ? n2 : 1);
  memcpy(tp, data, n1);
  if (n2) memcpy(ts, nul + 1, n2);
  traceparent(tp, n1);
  tracestate(ts, n2);
  free(tp);
  free(ts);
  return 0;
}
