/* Internals of the per-request proxy, shared by proxy.c (the state machine), proxy_admit.c (admission:
 * tenant, limits, queue) and proxy_hedge.c (hedging). Not for use outside src/route. */
#ifndef IM_ROUTE_PROXY_INT_H
#define IM_ROUTE_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "net/sse.h"
#include "route/jscan.h"
#include "route/rank.h"
#include "route/router.h"
#include "route/upstream.h"
#include "trace/tracer.h"

/* Where a request stands. Transitions (asserted): NEW -> QUEUED (admission waits) -> SENT (an attempt is out;
 * a retry stays SENT) -> HEDGED (a copy is out too) -> COMMITTED (a leg's first byte goes to the client) -> DONE
 * (finish ran: the record went to the observers). NEW, QUEUED, SENT and HEDGED may go straight to DONE. */
enum proxy_state { PS_NEW, PS_QUEUED, PS_SENT, PS_HEDGED, PS_COMMITTED, PS_DONE };

/* One upstream exchange of a request. A request has at most two at once: the primary and, for a hedged
 * latency-class request, the copy; whichever sends its first byte first is committed (p->winner), the other
 * is cancelled. */
struct leg {
  struct proxy *p;
  struct upstream_exchange *up; /* &x while in flight, else NULL */
  struct upstream_exchange x;
  int target;        /* -1 before the first send */
  bool reserved;     /* store_reserve (and kv_tokens of store_kv_reserve) held on target */
  int64_t kv_tokens;
  uint32_t kv_seq;
  bool hedge;     /* this leg is the hedged copy */
  bool streaming; /* its response is an SSE stream being relayed */
  bool too_big;   /* its buffered response exceeded max_response_bytes */
  int status;
  char content_type[96];
  char retry_after[16];   /* the upstream's Retry-After header ("" when none or unusable) */
  uint64_t fb_deadline;   /* monotonic ns: nothing for the client by then is a FAIL_FIRST_BYTE; 0 = none */
  uint32_t fb_ms;         /* that deadline, relative to t_sent (for messages) */
  bool fb_on_progress;    /* past it, give up only when the target shows no progress (deadline.h) ... */
  uint64_t fb_checked;    /* ... since this time (t_sent, then the last check) */
  struct slice head; /* upstream request head, in the request's pool */
  struct buf body; /* buffered non-streaming response (or upstream error body) */
  struct sse_parser sse;
  uint64_t t_sent;
  struct policy_ticket ticket; /* the routing policy's record of this send */
  struct policy *pol;          /* the policy instance that holds the ticket */
  bool ticketed;
  /* The body sent on this leg: the request's parts, with the model renamed to what this target's runtime
   * calls it when the target has an alias (proxy_upstream.c); model_json holds that name, JSON-escaped. */
  struct slice parts[7];
  int nparts;
  char model_json[520];
  bool renamed; /* the model went upstream under another name (its target's runtime's) */
  enum fail_kind fail;          /* why this send failed (leg_failed); FAIL_NONE while it has not */
  int attempt;                  /* p->attempts when it was sent (a hedge: the attempt it copies) */
  uint8_t span_id[SPAN_ID_LEN]; /* its attempt span, the parent the upstream sees (traced requests) */
};

/* What the per-request timer is counting down: the queue deadline, or the earliest of the hedge delay and the
 * legs' first-byte deadlines (proxy_schedule). */
enum { PT_NONE, PT_QUEUE, PT_LEGS };

#define PROXY_MAX_BLOCKS 512 /* prompt blocks the policy sees: 512 x 16 tokens x 4 bytes = 32 KiB of prompt */

/* Slices of one upstream read gathered for one vectored write (contiguous frames make one). */
#define PROXY_RELAY_IOV 16

/* One request through the proxy. It lives in its request's pool (req->pool), as do its upstream heads, tried
 * bitmap and prompt hashes: the proxy ends the response (which releases req and the pool) only as its very last
 * step, once its legs are cancelled or done, the meter's wait detached and its timer closed (proxy_closed). */
struct proxy {
  struct router *r;
  enum proxy_state state;
  struct proxy *prev, *next; /* r->active */
  bool local_only;           /* forwarded by another node's agent: only this node's own targets */
  char hop_target[64];       /* the target it asked for (a hint) */
  struct http_req *req;
  struct oai_req oai;
  bool chat;
  bool embeddings;         /* POST /v1/embeddings (chat is false) */
  char model[256];         /* the model it is routed as (a fallback of the one asked for, after a switch) */
  char fallback_from[256]; /* the model asked for, when the policy's fallback serves it; "" otherwise */
  bool aliased;            /* it asked for an alias of this agent: model is what that alias stands for */
  char request_id[48];
  int target;   /* target named in responses: the committed leg's, else the latest tried; -1 */
  int attempts; /* sends of the primary (hedged copies not counted) */
  uint64_t *tried; /* a bitmap of store_bitmap_words words, in the request's pool */
  struct leg legs[2];
  struct leg *winner;    /* the leg whose bytes go to the client, NULL before its first byte */
  struct slice parts[5]; /* upstream body: the client's bytes by reference, plus what we insert or replace */
  int nparts;
  bool strip_usage;    /* we asked for usage the client did not: drop the usage-only chunk */
  struct buf out;      /* a rewritten frame (model name, cost), or a renamed buffered body */
  struct slice feed;   /* the upstream read being relayed */
  struct slice iov[PROXY_RELAY_IOV]; /* its frames, by reference, sent to the client in one write */
  int niov;
  bool client_started; /* bytes went to the client: no more retries or hedges */
  bool paused;
  uint64_t t0, t_first;
  struct oai_usage usage;
  /* the last failed attempt: what give_up answers when no attempt is left */
  enum fail_kind last_fail;
  int last_status;           /* its HTTP status (FAIL_UPSTREAM_5XX) */
  char last_err_msg[256];    /* its message: the upstream's own for a 5xx that carried one */
  char last_err_type[64];    /* the upstream's error type, "" when it gave none */
  char last_retry_after[16]; /* the upstream's Retry-After, "" when none */
  bool stream_error;         /* a relayed stream carried an error event (the client saw a failed stream) */
  /* admission */
  int tenant;          /* index into r->adm's tenants */
  bool admitted;       /* adm_limit passed: adm_done when it ends */
  bool queued;         /* waiting in r->adm's queue */
  bool shed_no_target; /* queued, and its model lost every target: answer 503 from the timer */
  bool revoked;        /* queued, and its tenant was removed: answer 401 from the timer */
  int prio;
  bool slo_latency;
  int64_t prompt_est; /* prompt tokens, estimated from the body (4 bytes a token) */
  int64_t kv_need;    /* prompt_est + max_tokens (or the default) */
  uint64_t t_enqueued, deadline_ns;
  /* the timer: the queue deadline while queued, then the hedge delay and first-byte deadlines */
  struct upstream_timer timer; /* through r->io */
  int timer_use;
  bool hedge_armed, hedged;
  uint64_t hedge_due; /* monotonic ns the hedge goes at; 0 = none pending */
  /* metering (proxy_meter.c) */
  bool costed;                   /* the model has a price: cost_nano and currency are what usage cost */
  bool recorded;                 /* its record went to the observers (once) */
  bool done_held;                /* a stream's "data: [DONE]" frame, held until the record is durable */
  int64_t cost_nano;
  char currency[8];
  char cost_text[48];            /* ,"cost":X as inserted into the usage object */
  struct proxy_meter_wait *wait; /* observers keep the record; their commit ends p */
  /* the routing policy's view of the request: prompt block hashes, computed on the first pick */
  struct policy_req preq;
  bool hashed;
  uint64_t *hashes; /* the prompt's full blocks' hashes (at most PROXY_MAX_BLOCKS), in the request's pool; NULL: none */
  /* tracing (proxy_trace.c), when the router has a tracer */
  bool traced;      /* tr is set: the request takes part in its trace (spans only when tr.sampled) */
  bool admit_open;  /* its admission span started and has not been emitted */
  uint64_t t_admit; /* when admission began (monotonic ns) */
  struct trace_req tr;
};

/* proxy.c */
/* proxy_candidates sets *c to the untried healthy targets serving p's model that the control plane's drains
 * and pins allow, with the routing policy's records (router_candidates: borrowed from the router until its next
 * call); returns c->n. */
int proxy_candidates(struct proxy *p, struct router_cands *c);
/* attempt sends the primary to the best untried candidate (or answers 503/502 when none is left). */
void proxy_attempt(struct proxy *p);
/* proxy_leg_send sends p's request to target id on leg l (reserving there). */
void proxy_leg_send(struct proxy *p, struct leg *l, int id, bool hedge);
/* proxy_fail answers an OpenAI-format error (code may be NULL; retry_after > 0 adds Retry-After) and ends p.
 */
void proxy_fail(struct proxy *p, int status, const char *type, const char *code, const char *message,
                int retry_after);
/* proxy_timer (re)starts p's timer for use (PT_QUEUE/PT_LEGS): cb(&p->timer) in ms, through r->io. */
void proxy_timer(struct proxy *p, int use, uint64_t ms, void (*cb)(struct upstream_timer *t));
/* proxy_timer_stop stops p's timer (it may be started again). */
void proxy_timer_stop(struct proxy *p);
/* proxy_now is the router's clock (r->io: monotonic ns, virtual in tests). */
uint64_t proxy_now(const struct router *r);
/* proxy_pick ranks candidates c (c->n >= 1) with the routing policy of p's model and returns the chosen id: the
 * one ranking path of first sends, retries and hedges. */
int proxy_pick(struct proxy *p, const struct router_cands *c, uint64_t now);
/* proxy_schedule (re)starts p's timer for the earliest of p->hedge_due and the first-byte deadlines of its
 * legs in flight that are not committed; stops it when none is left. Not while p is queued. */
void proxy_schedule(struct proxy *p);
/* proxy_leg_release gives back l's reservations on its target. */
void proxy_leg_release(struct leg *l);

/* proxy_admit.c */
/* proxy_admit_auth finds the tenant (401 when tenants are configured and the key is missing or unknown) and
 * reads the x-infermesh-priority / x-infermesh-slo headers (400 when malformed). False when p was answered.
 */
bool proxy_admit_auth(struct proxy *p);
/* proxy_admit_estimate sets p's prompt_est and kv_need from the scanned body. */
void proxy_admit_estimate(struct proxy *p);
/* proxy_admit (after proxy_admit_estimate) applies the tenant's limits (429), then sends p, or queues it
 * while every candidate is saturated (429 when the queue is full; 503 at its deadline). */
void proxy_admit(struct proxy *p);
/* proxy_admit_filter drops from c the targets whose KV budget cannot fit p (they are no candidates); when that
 * leaves none (a retry after the others failed) c is kept. Returns the new c->n. */
int proxy_admit_filter(struct proxy *p, struct router_cands *c);
/* proxy_admit_end releases p's admission state (queue entry, tenant slot); called once by finish. */
void proxy_admit_end(struct proxy *p);
/* proxy_admit_dispatch offers queued requests to targets that have room (after a completion or a report). */
void proxy_admit_dispatch(struct router *r);

/* proxy_fallback.c */
/* proxy_fallback switches p, once, to the first of its model's policy fallbacks that is known (serves_now:
 * has a candidate now) and that p's tenant may use: p->model becomes it, p->fallback_from the model asked
 * for. True when it switched. Before plan_body; proxy_fallback_body then rewrites the body's model. */
bool proxy_fallback(struct proxy *p, bool serves_now);
/* proxy_fallback_body replaces the model string in p's upstream body parts by p->model (a fallback name:
 * JSON-safe by fsm_key_valid), without copying the client's bytes. After plan_body. */
void proxy_fallback_body(struct proxy *p);
/* proxy_alias switches p to the model its model is an alias of (router opts.aliases), before plan_body:
 * p->model becomes it and aliased is set (proxy_fallback_body then rewrites the body). True when it did. */
bool proxy_alias(struct proxy *p);
/* proxy_admit_revoke: p waits in the queue and its tenant (its API key) was just removed; it is answered 401
 * from its timer, never dispatched. */
void proxy_admit_revoke(struct proxy *p);
/* proxy_model_queued counts the requests of p's model waiting in the admission queue. */
int proxy_model_queued(const struct proxy *p);

/* proxy_meter.c */
/* proxy_meter_cost prices p->usage with the router's meter: sets costed, cost_nano, currency, cost_text. */
void proxy_meter_cost(struct proxy *p);
/* proxy_meter_split writes json (a response body or a stream chunk that holds p->usage.span) into parts as
 * pieces with p->cost_text inserted at the end of the usage object; returns how many (1: json unchanged,
 * when p is not costed or the span is not inside json). The pieces borrow json and p. */
int proxy_meter_split(struct proxy *p, struct slice json, struct slice parts[3]);
/* proxy_record fills rec with what p did, status being what the client sees (strings borrowed from p). */
void proxy_record(const struct proxy *p, int status, struct request_record *rec);
/* proxy_conclude hands p's record (status: what the client sees) to the router's observers, once (later calls
 * return false). With then != NULL and an observer that keeps it durably, returns true: then(p) runs when
 * every such observer is done (or failed), and the caller must not end p before; finish() before that cancels
 * the wait. Otherwise false. */
bool proxy_conclude(struct proxy *p, int status, void (*then)(struct proxy *p));
/* proxy_meter_detach forgets a pending wait (p ends first: the commit's callback will find nothing). */
void proxy_meter_detach(struct proxy *p);
/* proxy_admit_tenant_name is p's tenant's name, "" without tenants. */
const char *proxy_admit_tenant_name(const struct proxy *p);
/* proxy_upstream.c */
/* proxy_leg_body sets l's body parts for target t: p's parts, with the model replaced by t's upstream name
 * when p asks for t's alias. Returns the body's length. */
size_t proxy_leg_body(struct proxy *p, struct leg *l, const struct target *t);
/* proxy_upstream_auth is the Authorization value to send to t (borrowed from t or p's request; empty: none):
 * t's API key when it has one, else the client's own header when no tenants are configured (a tenant's key is
 * for this mesh, not for the runtime). */
struct slice proxy_upstream_auth(struct proxy *p, const struct target *t, char *buf, size_t cap);
/* proxy_renames: did p's model go to l's runtime under another name than the client's (an alias)? Then
 * proxy_client_json appends json (a response body or a stream chunk's data) to out with its top-level "model"
 * set back to the name the client asked for; otherwise, or when json has no such string, unchanged. */
/* proxy_has_usage_object: does json hold the bytes "usage" then ':' and '{' (a cheap test before a scan)? */
bool proxy_has_usage_object(struct slice json);
bool proxy_renames(const struct proxy *p, const struct leg *l);
void proxy_client_json(const struct proxy *p, struct slice json, struct buf *out);

/* proxy_trace.c: the request's spans (only called when p->traced; spans only emitted when p->tr.sampled) */
/* proxy_trace_begin sets p's trace context from its traceparent and tracestate headers (r->tracer is set). */
void proxy_trace_begin(struct proxy *p);
/* proxy_trace_admit_begin opens p's admission span; proxy_trace_admitted emits it: p is sent (status 0), or
 * was answered status before it was sent (refused or failed while admitted or queued). */
void proxy_trace_admit_begin(struct proxy *p);
void proxy_trace_admitted(struct proxy *p, int status);
/* proxy_trace_route emits the routing decision's span: candidates ids[0..n), the policy's choice chosen, from
 * t_start to now (monotonic ns); the lowest scores as bounded attributes. */
void proxy_trace_route(struct proxy *p, const int *ids, int n, int chosen, uint64_t t_start);
/* proxy_trace_leg_start gives l's attempt its span id (the parent its upstream sees), after ending the
 * admission span when it is p's first send. */
void proxy_trace_leg_start(struct proxy *p, struct leg *l);
/* proxy_trace_headers appends l's traceparent (l's span as the parent) and p's tracestate header lines to h. */
void proxy_trace_headers(const struct proxy *p, const struct leg *l, struct buf *h);
/* proxy_trace_on_record and proxy_trace_on_attempt are the observers (route/record.h) that emit a traced
 * request's server span and each of its attempts' client spans (target, node, status, failure kind, or why
 * it was cancelled); arg is the router's tracer. */
void proxy_trace_on_record(void *arg, const struct request_record *rec);
void proxy_trace_on_attempt(void *arg, const struct attempt_record *a);

/* proxy_hedge.c */
/* proxy_hedge_arm starts the hedge delay for a latency-class request whose primary was just sent (sets
 * p->hedge_due; the caller runs proxy_schedule). */
void proxy_hedge_arm(struct proxy *p);
/* proxy_hedge_fire sends the hedged copy when the race is still open (p->hedge_due passed). */
void proxy_hedge_fire(struct proxy *p);
/* proxy_hedge_lost cancels leg l, which lost the race to p's winner, and meters it. */
void proxy_hedge_lost(struct proxy *p, struct leg *l);

#endif
