/* The proxy's I/O, as raft_io is raft's: upstream exchanges, the clock, one timer per request. The router
 * holds one (upstream_real: net/http_client's pools and the libuv loop); tests/unit/test_proxy.c installs a
 * fake that answers by hand in virtual time, so retries, hedges, deadlines and the breaker are unit-tested.
 */
#ifndef IM_ROUTE_UPSTREAM_H
#define IM_ROUTE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/slice.h"
#include "net/http_client.h"
#include "net/http_common.h"

/* Why an upstream attempt failed. One decision point in proxy.c (leg_failed) acts on it: retry elsewhere,
 * hand over to the other copy, end a started stream in-band, or answer the client (give_up). */
enum fail_kind {
  FAIL_NONE = 0,
  FAIL_CONNECT,     /* refused, reset, closed before the answer was complete */
  FAIL_TIMEOUT,     /* the upstream went silent for upstream_timeout_ms */
  FAIL_FIRST_BYTE,  /* nothing for the client within the first-byte deadline (route/deadline.h) */
  FAIL_TARGET_DOWN, /* its target went down (scraper, runtime exit, its node) while it waited */
  FAIL_UPSTREAM_5XX,
  FAIL_TOO_BIG, /* a buffered response over max_response_bytes */
};

/* upstream_fail_name names kind as metrics and traces show it ("connect", "timeout", ...; FAIL_NONE: ""). */
const char *upstream_fail_name(enum fail_kind kind);

/* What an exchange tells its caller, on the loop thread. head and body return 0 to go on, nonzero to stop it:
 * error follows (FAIL_CONNECT, UV_ECANCELED). Exactly one of end and error ends it, unless it is cancelled
 * (then nothing follows). */
struct upstream_cbs {
  int (*head)(void *arg, int status, const struct http_header *h, int n);
  int (*body)(void *arg, const char *data, size_t len); /* decoded body bytes, borrowed for the call */
  void (*end)(void *arg);                               /* the response is complete */
  /* it failed: kind is FAIL_TIMEOUT (silent for its timeout) or FAIL_CONNECT; err the libuv error */
  void (*error)(void *arg, enum fail_kind kind, int err);
  /* optional: the request is sent again on a fresh connection; returns the head to send this time */
  struct slice (*resend)(void *arg);
};

/* One exchange: memory the caller owns (in its request), valid from send until end, error or cancel. */
struct upstream_exchange {
  const struct upstream_cbs *cbs;
  void *arg;
  void *impl; /* the implementation's handle */
};

/* A one-shot timer, embedded in its owner. cb and data are the owner's; the rest belongs to the I/O. */
struct upstream_timer {
  void (*cb)(struct upstream_timer *t);
  void *data;
  uv_timer_t uv;   /* the real I/O's */
  bool init;       /* the real I/O initialized uv: it must be closed (timer_close) */
  uint64_t due_ns; /* a virtual clock's: when it fires; 0 = not armed */
  void (*closed)(struct upstream_timer *t);
};

struct upstream_ops {
  /* send starts an exchange with target id: head (request line and headers, with the blank line) and body
   * parts are borrowed until it ends; timeout_ms bounds each wait for the upstream. x->cbs and x->arg are set
   * by the caller. */
  void (*send)(void *ctx, struct upstream_exchange *x, int id, struct slice head, const struct slice *body,
               int nbody, uint32_t timeout_ms);
  void (*pause)(void *ctx, struct upstream_exchange *x);  /* stop reading the response (backpressure) */
  void (*resume)(void *ctx, struct upstream_exchange *x); /* read again */
  /* cancel aborts it: the upstream sees the connection close; no callback follows */
  void (*cancel)(void *ctx, struct upstream_exchange *x);
  uint64_t (*now)(void *ctx);                                            /* monotonic ns */
  void (*timer_start)(void *ctx, struct upstream_timer *t, uint64_t ms); /* (re)arm: t->cb(t) in ms */
  void (*timer_stop)(void *ctx, struct upstream_timer *t);
  /* timer_close stops t for good; closed(t) runs once its memory may be freed (now or on a later turn) */
  void (*timer_close)(void *ctx, struct upstream_timer *t, void (*closed)(struct upstream_timer *t));
};

struct upstream {
  const struct upstream_ops *ops;
  void *ctx;
};

/* The real I/O's state: target id's exchanges go through pools[id], timers run on loop (both borrowed). */
struct upstream_real {
  uv_loop_t *loop;
  struct http_pool *pools;
};

/* upstream_real_init fills rr and returns the I/O over libuv that uses it: exchanges through rr's pools (the
 * caller keeps them alive while exchanges run), time from clock_mono_ns, uv_timer_t timers. rr is borrowed
 * and must outlive the returned I/O. */
struct upstream upstream_real_init(struct upstream_real *rr, uv_loop_t *loop, struct http_pool *pools);

#endif
