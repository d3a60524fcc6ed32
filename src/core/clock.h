/* Time sources: monotonic nanoseconds for intervals, wall-clock seconds for records. */
#ifndef IM_CORE_CLOCK_H
#define IM_CORE_CLOCK_H

#include <stdint.h>

/* clock_mono_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t clock_mono_ns(void);
/* clock_wall_s returns seconds since the Unix epoch. */
int64_t clock_wall_s(void);

#endif
