/* Budget periods: a UTC calendar month or day, or all time; their names and bounds. Pure. */
#ifndef IM_CORE_PERIOD_H
#define IM_CORE_PERIOD_H

#include <stddef.h>
#include <stdint.h>

enum period { PERIOD_MONTH, PERIOD_DAY, PERIOD_TOTAL };
#define PERIOD_COUNT 3

/* period_parse reads "month", "day" or "total" (whole string) into *out: 0 or -EINVAL. */
int period_parse(const char *s, enum period *out);
/* period_name is the inverse ("?" for a value out of range). Static storage. */
const char *period_name(enum period p);

/* period_start is the unix second at which the period holding now_s began: 00:00 UTC of its day, of the first
 * of its month, or 0 for total. period_end is when it ends (the next period's start): INT64_MAX for total. */
int64_t period_start(enum period p, int64_t now_s);
int64_t period_end(enum period p, int64_t now_s);

/* period_format_utc writes unix second s as ISO 8601 UTC ("2026-12-08T00:00:00Z") into out (cap >= 21). */
void period_format_utc(int64_t s, char *out, size_t cap);

#endif
