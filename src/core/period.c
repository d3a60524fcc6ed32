/* Budget periods in UTC (see period.h). Civil dates from days since the epoch by Howard Hinnant's algorithm,
 * so no time zone or libc state is involved. */
#include "core/period.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static const char *const names[PERIOD_COUNT] = {
    [PERIOD_MONTH] = "month", [PERIOD_DAY] = "day", [PERIOD_TOTAL] = "total"};

int period_parse(const char *s, enum period *out) {
  for (int i = 0; i < PERIOD_COUNT; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (enum period)i;
      return 0;
    }
  return -EINVAL;
}

const char *period_name(enum period p) { return (unsigned)p < PERIOD_COUNT ? names[p] : "?"; }

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* days_from_civil: days since 1970-01-01 of y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* civil_from_days: the year and month of day z since the epoch. */
static void civil_from_days(int64_t z, int64_t *y, int64_t *m) {
  z += 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yoe + era * 400 + (*m <= 2);
}

int64_t period_start(enum period p, int64_t now_s) {
  int64_t day = floor_div(now_s, 86400);
  if (p == PERIOD_DAY) return day * 86400;
  if (p == PERIOD_MONTH) {
    int64_t y, m;
    civil_from_days(day, &y, &m);
    return days_from_civil(y, m, 1) * 86400;
  }
  return 0;
}

int64_t period_end(enum period p, int64_t now_s) {
  int64_t day = floor_div(now_s, 86400);
  if (p == PERIOD_DAY) return (day + 1) * 86400;
  if (p == PERIOD_MONTH) {
    int64_t y, m;
    civil_from_days(day, &y, &m);
    return days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
  }
  return INT64_MAX;
}

void period_format_utc(int64_t s, char *out, size_t cap) {
  time_t t = (time_t)s;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
