/* Exact money: amounts in nano-units of a currency, to and from decimal text. */
#include "core/amount.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void amount_format(int64_t nano, char *out, size_t cap) {
  bool neg = nano < 0;
  uint64_t v = neg ? (uint64_t)(-(nano + 1)) + 1 : (uint64_t)nano;
  uint64_t whole = v / (uint64_t)AMOUNT_NANO, frac = v % (uint64_t)AMOUNT_NANO;
  char f[16] = "";
  if (frac) {
    snprintf(f, sizeof f, ".%09llu", (unsigned long long)frac);
    for (size_t n = strlen(f); n > 1 && f[n - 1] == '0'; n--)
      f[n - 1] = '\0';
  }
  snprintf(out, cap, "%s%llu%s", neg ? "-" : "", (unsigned long long)whole, f);
}

int amount_parse(const char *s, int64_t *nano) {
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
  *nano = (int64_t)(whole * (uint64_t)AMOUNT_NANO + frac);
  return 0;
}
