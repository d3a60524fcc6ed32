/* Time sources. */
#include "core/clock.h"

#include <time.h>

uint64_t clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t clock_wall_s(void) { return (int64_t)time(NULL); }
