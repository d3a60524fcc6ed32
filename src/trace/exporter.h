/* The OTLP/HTTP exporter: finished spans wait in a bounded ring and go to the collector in batches, as
 * protobuf (POST {endpoint}/v1/traces, application/x-protobuf), one POST in flight at a time, on the event
 * loop through net/http_client. Nothing blocks and nothing waits for the collector: a full ring drops the new
 * span, a failed POST drops its batch, both counted. */
#ifndef IM_TRACE_EXPORTER_H
#define IM_TRACE_EXPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "net/http_client.h"
#include "trace/otlp.h"
#include "trace/span.h"

#define EXPORTER_QUEUE 2048       /* spans the ring holds */
#define EXPORTER_BATCH 512        /* spans per POST at most; a full batch goes at once */
#define EXPORTER_INTERVAL_MS 1000 /* a partial batch waits at most this long */
#define EXPORTER_TIMEOUT_MS 5000  /* a POST's wait for each collector byte */
#define EXPORTER_FLUSH_MS 2000    /* what closing waits for the last spans to go out, at most */

struct exporter_stats {
  uint64_t exported;        /* spans the collector acknowledged (2xx) */
  uint64_t dropped;         /* spans lost: the ring was full, or their POST failed */
  uint64_t posts, failures; /* POSTs sent, and those that failed (connection, timeout, non-2xx) */
  uint64_t queued;          /* spans in the ring now */
};

struct trace_exporter {
  uv_loop_t *loop;
  struct http_pool pool;
  char path[256]; /* {endpoint's path}/v1/traces */
  struct otlp_resource res;
  char service[64], instance[64], version[32]; /* res's strings */
  struct span *ring;                           /* owned: EXPORTER_QUEUE spans */
  size_t first, count;
  struct buf head, body; /* the POST in flight */
  struct hc_req *req;    /* NULL when none is in flight */
  size_t req_spans;
  int req_status;
  bool backoff; /* the last POST failed: the next waits for the timer */
  bool failing; /* ... and none succeeded since (the failure is logged once) */
  uv_timer_t timer, close_timer;
  bool closing;
  void (*closed_cb)(void *arg);
  void *closed_arg;
  int handles; /* timers not closed yet, while closing */
  struct exporter_stats st;
};

/* trace_endpoint_parse checks an OTLP/HTTP endpoint URL http://HOST:PORT[/PATH] (HOST an IPv4 or [IPv6]
 * literal or localhost) and writes its host (cap hostcap), port and the traces path (PATH without a trailing
 * '/', then "/v1/traces"; cap pathcap). 0, or -EINVAL with err naming the problem. */
int trace_endpoint_parse(const char *url, char *host, size_t hostcap, int *port, char *path, size_t pathcap,
                         char *err, size_t errlen);

/* trace_exporter_init prepares x on loop for endpoint (see trace_endpoint_parse) with the resource's strings
 * (copied; NULL or "" leaves one out) and starts its timer. 0, or -EINVAL with err. Close it with
 * trace_exporter_close. */
int trace_exporter_init(struct trace_exporter *x, uv_loop_t *loop, const char *endpoint, const char *service,
                        const char *instance, const char *version, char *err, size_t errlen);

/* trace_exporter_slot returns the ring's next free span, for the caller to fill in place and queue with
 * trace_exporter_commit before anything else uses x; NULL when the ring is full or closing (the span is
 * counted as dropped: the caller builds nothing). trace_exporter_commit schedules a POST on a later loop turn
 * when a batch is full. Neither blocks nor allocates. */
struct span *trace_exporter_slot(struct trace_exporter *x);
void trace_exporter_commit(struct trace_exporter *x);

/* trace_exporter_stats fills st. */
void trace_exporter_stats(const struct trace_exporter *x, struct exporter_stats *st);

/* trace_exporter_free releases x's memory (the ring, the POST's buffers) once its handles are closed: after
 * trace_exporter_close's callback (nothing is left then), or when the loop's handles were closed without it.
 */
void trace_exporter_free(struct trace_exporter *x);

/* trace_exporter_close sends what is queued (waiting up to EXPORTER_FLUSH_MS for the collector), then
 * cancels what is left, closes its handles and calls cb(arg) once, on a later loop turn; x's memory may be
 * freed then. */
void trace_exporter_close(struct trace_exporter *x, void (*cb)(void *arg), void *arg);

#endif
