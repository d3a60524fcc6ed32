/* Costs and amounts: prices per million tokens to exact nano-unit sums, and back to text. */
#include "ledger/record.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int64_t ledger_cost_nano(const struct ledger_price *p, int64_t prompt_tokens, int64_t cached_tokens,
                         int64_t completion_tokens) {
  if (!p) return 0;
  if (cached_tokens < 0) cached_tokens = 0;
  if (cached_tokens > prompt_tokens) cached_tokens = prompt_tokens;
  double cached_price = p->cached_per_mtok >= 0 ? p->cached_per_mtok : p->prompt_per_mtok;
  /* price per 1e6 tokens, in nano-units per token: price * 1e9 / 1e6 = price * 1000 */
  double nano = ((double)(prompt_tokens - cached_tokens) * p->prompt_per_mtok +
                 (double)cached_tokens * cached_price + (double)completion_tokens * p->completion_per_mtok) *
                1000.0;
  if (!(nano > 0)) return 0;
  if (nano > 9e18) return INT64_MAX;
  return llround(nano);
}

void ledger_format_amount(int64_t nano, char *out, size_t cap) {
  bool neg = nano < 0;
  uint64_t v = neg ? (uint64_t)(-(nano + 1)) + 1 : (uint64_t)nano;
  uint64_t whole = v / (uint64_t)LEDGER_NANO, frac = v % (uint64_t)LEDGER_NANO;
  char f[16] = "";
  if (frac) {
    snprintf(f, sizeof f, ".%09llu", (unsigned long long)frac);
    for (size_t n = strlen(f); n > 1 && f[n - 1] == '0'; n--)
      f[n - 1] = '\0';
  }
  snprintf(out, cap, "%s%llu%s", neg ? "-" : "", (unsigned long long)whole, f);
}

int ledger_parse_amount(const char *s, int64_t *nano) {
  if (!s || !*s) return -EINVAL;
  uint64_t whole = 0, frac = 0;
  int digits = 0, fd = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++, digits++) {
    whole = whole * 10 + (uint64_t)(*p - '0');
    if (whole > 9000000000ULL) return -EINVAL;
  }
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, fd++) {
      if (fd == 9) return -EINVAL;
      frac = frac * 10 + (uint64_t)(*p - '0');
    }
    if (fd == 0) return -EINVAL;
  }
  if (*p || digits == 0) return -EINVAL;
  for (int i = fd; i < 9; i++)
    frac *= 10;
  *nano = (int64_t)(whole * (uint64_t)LEDGER_NANO + frac);
  return 0;
}
