/* The node's event stream: membership, drain, target health and configuration changes, kept in a ring of
 * recent events and pushed to subscribers of GET /v1/cluster/events as Server-Sent Events. */
#ifndef IM_API_EVENTS_H
#define IM_API_EVENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/http_server.h"

/* One per process (the agent's loop): publishers call the events_* functions from anywhere on the loop
 * thread without holding a pointer; before events_start and after events_stop they are no-ops. */
#define EVENTS_RING 256
#define EVENTS_KEEPALIVE_MS 15000
/* A subscriber with more than this many bytes queued and unwritten is dropped (a slow reader). */
#define EVENTS_MAX_QUEUED (512 * 1024)

/* events_start starts the keepalive timer on loop (which must outlive events_close). */
void events_start(uv_loop_t *loop);
/* events_stop ends every subscriber's response and refuses new ones (503): the agent calls it when it
 * starts draining, so that http_server_drain does not wait on the streams. Idempotent. */
void events_stop(void);
/* events_limits sets the caps on open streams: max_total in all (beyond: 503), max_per_client per client IP
 * address (beyond: 429); 0 = no cap. Defaults 64 and 8. */
void events_limits(int max_total, int max_per_client);
/* events_metrics appends Prometheus text: open streams and refusals by reason. */
void events_metrics(struct buf *out);

/* events_close stops and closes the timer (after events_stop); frees the ring. */
void events_close(void);

/* events_handle serves GET /v1/cluster/events[?since=N]; false when req is for another path. The stream is
 * `id: SEQ`, `event: KIND`, `data: {...,"ts":UNIX_MS}` per event, and `: keepalive` comments. */
bool events_handle(struct http_req *req);

/* Publishers. Strings are borrowed for the call. */
void events_member(const char *name, const char *id_short, const char *state, uint64_t incarnation);
void events_drain(const char *node, bool draining);
void events_target(const char *name, const char *node, bool healthy, const char *reason);
void events_config(const char *kind, const char *name, const char *op, uint64_t index);

/* events_seq is the sequence number of the last published event (0 when none). */
uint64_t events_seq(void);

#endif
