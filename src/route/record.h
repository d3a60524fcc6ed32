/* The request record: what one request did, filled once when its outcome is decided (proxy_record), and the
 * attempt record: what one upstream attempt did, when it ends. Both go to one list of observers, registered
 * with router_observe (route/router.h): the routing policy's feedback, the metrics, the log line and the agent's
 * ledger (which may hold a complete answer until the record is durable); with tracing, the server span's.
 * The router knows nothing of prices or storage: the meter and the ledger's observer do. */
#ifndef IM_ROUTE_RECORD_H
#define IM_ROUTE_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/period.h"
#include "route/jscan.h"
#include "state/policy.h"

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

/* One upstream attempt of a request (a send to one target: the first, a retry, or a hedged copy), when it ends:
 * answered, failed, lost its hedge race, or cancelled with its request. Strings are borrowed for the call. */
struct attempt_record {
  const char *request_id, *model;
  int target_id;         /* the store's target id */
  const char *target;    /* its name */
  bool hedge;            /* the hedged copy */
  bool winner;           /* its bytes went (or were going) to the client */
  int status;            /* the upstream's HTTP status; 0 when none came */
  uint64_t t_sent_ns;    /* monotonic, on the router's clock (upstream.h) */
  uint64_t t_first_ns;   /* the first token the client got from it; 0 when none */
  uint64_t t_end_ns;     /* when it ended */
  int completion_tokens; /* the winner's, when the runtime reported usage; else 0 */
  int attempt;           /* the request's attempt it was sent as (a hedged copy: the attempt it copies) */
  const char *node;      /* its target's node ("" for this node's own targets) */
  const char *failure;   /* why it failed (upstream_fail_name: "connect", "timeout", ...); "" when it did not */
  const char *error;     /* that failure's message; "" when none */
  bool stream_error;     /* it won and its stream carried an error event */
  bool lost_race;        /* another attempt of its request won (the hedge race) */
  const struct trace_req *trace; /* its request's trace (trace/tracer.h); NULL when tracing is off */
  const uint8_t *span_id;        /* with a trace: its span's id, the parent its upstream saw in traceparent */
  /* The routing policy's record of this send, for the policy's own observer (router.c): it is only valid
   * during the call. */
  struct policy *policy;
  struct policy_ticket *ticket;
};

/* An observer of requests: every function is optional; they run on the loop thread, in registration order,
 * with the record and its strings borrowed for the call.
 *  - on_record(arg, rec): once per request, when its outcome is decided: before the end of a complete answer
 *    goes to the client (with its usage and cost), or when the request fails or its client leaves.
 *  - keep(arg, rec, done, done_arg): like on_record, for an observer that keeps records durably (the ledger).
 *    With done != NULL it may return true and later call done(done_arg, status) once, on the loop (status 0:
 *    durable; < 0: it failed and the observer retries): the end of a complete answer waits for every such
 *    observer, so a client never sees a complete answer that has no record. false (and always when done is
 *    NULL): nothing to wait for, done is never called.
 *  - on_attempt(arg, a): once per upstream attempt, when it ends (struct attempt_record). */
struct request_observer {
  void (*on_record)(void *arg, const struct request_record *rec);
  bool (*keep)(void *arg, const struct request_record *rec, void (*done)(void *done_arg, int status),
               void *done_arg);
  void (*on_attempt)(void *arg, const struct attempt_record *a);
  void *arg;
};

/* The meter: prices and budgets, all optional (NULL functions are skipped). Called on the loop thread. Records go
 * to observers (struct request_observer). */
struct router_meter {
  /* cost tells what usage u of model costs: true with *nano and currency (3 letters + NUL) set when the model
   * has a price; false otherwise. */
  bool (*cost)(void *arg, const char *model, const struct oai_usage *u, int64_t *nano, char currency[8]);
  /* spent is what tenant spent in the period p holding now_s, mesh-wide as this node knows it (nano-units):
   * the input of a tenant's budget. */
  int64_t (*spent)(void *arg, const char *tenant, enum period p, int64_t now_s);
  void *arg;
};

#endif
