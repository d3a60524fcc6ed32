/* Per-target circuit breaker (DESIGN §4.7): pure state, no I/O; the proxy feeds it outcomes and asks it
 * whether a target may get a request. */
#ifndef IM_ROUTE_BREAKER_H
#define IM_ROUTE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

struct breaker_opts {
  int failures;            /* consecutive failures that open a closed breaker (0: never opens) */
  uint32_t backoff_ms;     /* the first open period; each failed probe doubles it ... */
  uint32_t backoff_max_ms; /* ... up to this */
};

/* breaker_opts_default: 5 failures, 1 s backoff doubling up to 30 s. */
void breaker_opts_default(struct breaker_opts *o);

/* One target's breaker. Zeroed = closed with no history. */
struct breaker {
  enum breaker_state state;
  int failures;        /* consecutive, since the last success */
  uint32_t backoff_ms; /* the current (last used) open period; 0 before the first open */
  uint64_t open_until; /* monotonic ns: while open, no request before this */
  bool probe_out;      /* half-open: the one probe request is in flight */
  uint64_t opens;      /* times it opened (metric) */
};

/* breaker_available tells whether a new request may go to the target now: closed, or open with its backoff
 * over and no probe out yet (breaker_on_send then makes that request the probe). */
bool breaker_available(const struct breaker *b, const struct breaker_opts *o, uint64_t now_ns);
/* breaker_on_send records a request sent to the target: when the backoff is over it becomes the one probe
 * (half-open) and the target takes no other request until the probe's outcome. */
void breaker_on_send(struct breaker *b, uint64_t now_ns);
/* breaker_success: an attempt there got an answer that is no failure (closes the breaker). */
void breaker_success(struct breaker *b);
/* breaker_failure: an attempt there failed (connect, timeout, 5xx): counts toward opening; a failed probe
 * opens it again for twice the previous backoff (capped). */
void breaker_failure(struct breaker *b, const struct breaker_opts *o, uint64_t now_ns);
/* breaker_cancelled: an attempt there ended without a verdict (client gone, lost a hedge race): a probe's
 * slot is given back, so the next request probes. */
void breaker_cancelled(struct breaker *b);
/* breaker_state_name: "closed", "open" or "half_open". */
const char *breaker_state_name(enum breaker_state s);

#endif
