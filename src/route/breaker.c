/* Per-target circuit breaker: closed -> (N failures) -> open -> (backoff over) -> half-open probe ->
 * closed on success, open again for a doubled backoff on failure. */
#include "route/breaker.h"

void breaker_opts_default(struct breaker_opts *o) {
  o->failures = 5;
  o->backoff_ms = 1000;
  o->backoff_max_ms = 30000;
}

bool breaker_available(const struct breaker *b, const struct breaker_opts *o, uint64_t now_ns) {
  if (o->failures <= 0) return true;
  switch (b->state) {
  case BREAKER_CLOSED: return true;
  case BREAKER_OPEN: return now_ns >= b->open_until;
  case BREAKER_HALF_OPEN: return !b->probe_out;
  }
  return true;
}

void breaker_on_send(struct breaker *b, uint64_t now_ns) {
  if (b->state == BREAKER_CLOSED) return;
  if (b->state == BREAKER_OPEN && now_ns < b->open_until) return; /* sent anyway (no other target) */
  b->state = BREAKER_HALF_OPEN;
  b->probe_out = true;
}

void breaker_success(struct breaker *b) {
  b->state = BREAKER_CLOSED;
  b->failures = 0;
  b->backoff_ms = 0;
  b->probe_out = false;
}

static void open_for(struct breaker *b, uint32_t ms, uint64_t now_ns) {
  b->state = BREAKER_OPEN;
  b->backoff_ms = ms;
  b->open_until = now_ns + (uint64_t)ms * 1000000u;
  b->probe_out = false;
  b->opens++;
}

void breaker_failure(struct breaker *b, const struct breaker_opts *o, uint64_t now_ns) {
  if (o->failures <= 0) return;
  b->failures++;
  switch (b->state) {
  case BREAKER_CLOSED:
    if (b->failures >= o->failures) open_for(b, o->backoff_ms, now_ns);
    break;
  case BREAKER_HALF_OPEN: {
    uint64_t ms = b->backoff_ms ? (uint64_t)b->backoff_ms * 2 : o->backoff_ms;
    open_for(b, ms > o->backoff_max_ms ? o->backoff_max_ms : (uint32_t)ms, now_ns);
    break;
  }
  case BREAKER_OPEN: break; /* a request that was already in flight when it opened: no new verdict */
  }
}

void breaker_cancelled(struct breaker *b) {
  if (b->state == BREAKER_HALF_OPEN) b->probe_out = false;
}

const char *breaker_state_name(enum breaker_state s) {
  return s == BREAKER_OPEN ? "open" : s == BREAKER_HALF_OPEN ? "half_open" : "closed";
}
