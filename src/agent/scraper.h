/* Polls each target's runtime (health, /metrics, /v1/models) and feeds the state store. */
#ifndef IM_AGENT_SCRAPER_H
#define IM_AGENT_SCRAPER_H

#include <stdbool.h>
#include <uv.h>

#include "net/http_client.h"
#include "state/store.h"

struct scrape_target;

/* The scraper borrows store and pools (pools[i] serves store target i) for its whole life. */
struct scraper {
  uv_loop_t *loop;
  struct store *store;
  struct http_pool *pools;
  uint32_t interval_ms;
  struct scrape_target *targets; /* one per store target */
  int ntargets;
  uv_timer_t timer;
  bool stopping;
  int busy; /* exchanges in flight */
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

/* scraper_start begins polling every interval_ms (the first poll is immediate). metrics_urls (may be NULL;
 * borrowed for the call) gives, per store target id, "http://HOST:PORT" where that runtime serves /metrics
 * when it is not its API address (NULL or "": the API address; a Triton target whose API port answers 404
 * for /metrics is read on port 8002, Triton's default metrics port). */
void scraper_start(struct scraper *s, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                   uint32_t interval_ms, const char *const *metrics_urls);
/* scraper_close cancels exchanges in flight and calls cb(arg) once nothing of the scraper is left on the loop
 * (s may be freed then). */
void scraper_close(struct scraper *s, void (*cb)(void *arg), void *arg);

#endif
