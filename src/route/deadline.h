/* The time-to-first-byte deadline of an upstream attempt (DESIGN §4.7), from what was observed of the target:
 * pure, no I/O. */
#ifndef IM_ROUTE_DEADLINE_H
#define IM_ROUTE_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/slice.h"
#include "state/store.h"

/* The deadline is DEADLINE_FACTOR times the estimate. */
#define DEADLINE_FACTOR 4.0
/* Own time-to-first-byte samples a target needs before they count. */
#define DEADLINE_MIN_SAMPLES 5

/* deadline_ttft returns target t's expected time to first token (seconds) for a new request, or a negative
 * value when nothing is known of t: the larger of the runtime's TTFT p95 (scraped window rates; 2 x p50 when
 * only that is reported) and this router's own p95 of the time to the first SSE data frame there (when
 * neither is known: its p95 of whole non-streaming responses there, an upper bound), times (1 + queue ahead /
 * running), the queue ahead being the waiting requests reported plus those this router sent since that report
 * (a queue that grew since the window was observed stretches the estimate). */
double deadline_ttft(const struct target *t);

/* deadline_first_byte_ms is how long an attempt on target id of store s may go without sending the client a
 * first byte before it is given up and retried elsewhere, in ms (at least 1).
 *  - stream: DEADLINE_FACTOR x deadline_ttft clamped to [floor_ms, ceil_ms];
 *  - not stream (nothing reaches the client before the whole response): that, plus DEADLINE_FACTOR x
 *    max_tokens x the runtime's inter-token p95 (not capped: a long generation is no hang), at least
 *    DEADLINE_FACTOR x this router's own p95 of whole responses there. When max_tokens is not given or no
 *    inter-token latency is known, the response may take any time: the TTFT part alone, with *on_progress
 *    set: past it, the caller gives the attempt up only when the target shows no progress
 *    (deadline_progressing), else waits as long again.
 * A target with nothing known borrows the largest estimate among the other targets that serve model; when
 * none has a TTFT estimate, the TTFT part is ceil_ms. floor_ms > ceil_ms reads as ceil_ms. */
uint32_t deadline_first_byte_ms(const struct store *s, int id, struct slice model, bool stream,
                                int64_t max_tokens, uint32_t floor_ms, uint32_t ceil_ms, bool *on_progress);

/* deadline_progressing tells whether target t shows signs of work since since_ns: a load report taken after
 * it, with tokens generated in its window. A runtime that accepted requests and generates nothing is not, and
 * neither is one that stopped answering its scrapes (frozen). */
bool deadline_progressing(const struct target *t, uint64_t since_ns);

#endif
