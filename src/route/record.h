/* The request record: what one request did, filled once when it ends (proxy_record), and who gets it: the
 * observers (metrics, the log line, the trace's server span), called in order when the request ends, and the meter (the
 * agent's ledger), which may hold a complete answer until the record is durable. The router knows nothing of
 * prices or storage: the meter does. */
#ifndef IM_ROUTE_RECORD_H
#define IM_ROUTE_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/period.h"
#include "route/jscan.h"

struct trace_req;

/* Strings are borrowed for the duration of the call they are passed to; "" when there is none. */
struct request_record {
  const char *request_id, *model, *tenant;
  const char *path;               /* the endpoint asked for: "/v1/chat/completions", ... (static) */
  const struct trace_req *trace;  /* its trace (trace/tracer.h); NULL when tracing is off */
  const char *target;       /* the target that answered (or last tried) */
  const char *serving_node; /* the node of that target ("" = this one) */
  int status;               /* what the client saw (499: it left) */
  const char *outcome;      /* for the log: ok, client_gone, client_error, upstream_limited, timeout,
                             * upstream_error, stream_error (a 200 whose stream failed), unavailable */
  bool stream, hedged;
  bool reached_runtime; /* an attempt was sent to a runtime: what it consumed is owed */
  bool forwarded;       /* another agent sent it here (signed hop): that agent keeps the record */
  int attempts;
  bool usage;                                              /* the runtime reported usage */
  int64_t prompt_tokens, cached_tokens, completion_tokens; /* -1 unknown */
  double ttft_ms;                                          /* < 0: no first token */
  double duration_ms;
  int64_t cost_nano; /* as reported to the client (router_meter.cost); 0 without a price */
  char currency[8];  /* "" without a price */
};

/* An observer of finished requests: on_record(arg, rec) once per request when it ends, on the loop thread.
 * rec and its strings are borrowed for the call. */
struct request_observer {
  void (*on_record)(void *arg, const struct request_record *rec);
  void *arg;
};

/* The meter: all optional (NULL functions are skipped). Called on the loop thread. */
struct router_meter {
  /* cost tells what usage u of model costs: true with *nano and currency (3 letters + NUL) set when the model
   * has a price; false otherwise. */
  bool (*cost)(void *arg, const char *model, const struct oai_usage *u, int64_t *nano, char currency[8]);
  /* record keeps rec. When it keeps it durably it returns true and later calls done(done_arg, status) once,
   * on the loop (status 0: durable; < 0: it failed and the record is retried): the router holds the end of a
   * complete answer until then, so a client never sees a complete answer that has no record. false: nothing
   * to wait for (done is never called). */
  bool (*record)(void *arg, const struct request_record *rec, void (*done)(void *done_arg, int status),
                 void *done_arg);
  /* spent is what tenant spent in the period p holding now_s, mesh-wide as this node knows it (nano-units):
   * the input of a tenant's budget. */
  int64_t (*spent)(void *arg, const char *tenant, enum period p, int64_t now_s);
  void *arg;
};

#endif
