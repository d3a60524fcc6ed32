/* The time-to-first-byte deadline of an upstream attempt (DESIGN §4.7), from what was observed of the target:
 * pure, no I/O. */
#ifndef IM_ROUTE_DEADLINE_H
#define IM_ROUTE_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/slice.h"
#include "state/store.h"

/* The deadline is DEADLINE_FACTOR times the estimate, within [floor, ceiling]. */
#define DEADLINE_FACTOR 4.0
/* Own time-to-first-byte samples a target needs before they count. */
#define DEADLINE_MIN_SAMPLES 5

/* deadline_estimate returns target t's expected time (seconds) until the first byte the client would see of
 * a request, or a negative value when nothing is known of t:
 *  - stream: the larger of the runtime's TTFT p95 (scraped window rates; 2 x p50 when only that is reported)
 *    and this router's own p95 of the time to the first SSE data frame there;
 *  - not stream (nothing reaches the client before the whole response): TTFT p95 + max_tokens x inter-token
 *    p95, or this router's own p95 of whole-response times there when larger; unknown without max_tokens or
 *    without the runtime's TTFT and ITL (a response may then take any time);
 * times (1 + queue ahead / running), the queue ahead being the waiting requests reported plus those this
 * router sent since that report: a queue that grew since the window was observed stretches the estimate. */
double deadline_estimate(const struct target *t, bool stream, int64_t max_tokens);

/* deadline_first_byte_ms is how long an attempt on target id of store s may go without a first byte before it
 * is given up and retried elsewhere: DEADLINE_FACTOR x deadline_estimate clamped to [floor_ms, ceil_ms]. When
 * the target has no estimate, the largest estimate among the other targets that serve model stands in for it;
 * when none has one, ceil_ms. floor_ms > ceil_ms reads as ceil_ms. */
uint32_t deadline_first_byte_ms(const struct store *s, int id, struct slice model, bool stream,
                                int64_t max_tokens, uint32_t floor_ms, uint32_t ceil_ms);

#endif
