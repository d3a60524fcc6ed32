/* The proxy's real I/O (route/upstream.h): exchanges over net/http_client, uv timers, the monotonic clock. */
#include "route/upstream.h"

#include "core/clock.h"

const char *upstream_fail_name(enum fail_kind kind) {
  static const char *const names[] = {
      "", "connect", "timeout", "first_byte_deadline", "target_down", "upstream_5xx", "too_big"};
  return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "";
}

/* net/http_client's callbacks, with the exchange as their argument: its end or failure becomes end or error
 * with a failure kind here, the one place a libuv error is classified. */
static int hc_head(void *arg, int status, const struct http_header *h, int n) {
  struct upstream_exchange *x = arg;
  return x->cbs->head(x->arg, status, h, n);
}

static int hc_body(void *arg, const char *data, size_t len) {
  struct upstream_exchange *x = arg;
  return x->cbs->body(x->arg, data, len);
}

static void hc_done(void *arg, int err) {
  struct upstream_exchange *x = arg;
  x->impl = NULL;
  if (err == 0)
    x->cbs->end(x->arg);
  else
    x->cbs->error(x->arg, err == UV_ETIMEDOUT ? FAIL_TIMEOUT : FAIL_CONNECT, err);
}

static struct slice hc_resend(void *arg) {
  struct upstream_exchange *x = arg;
  return x->cbs->resend(x->arg);
}

static const struct hc_callbacks hc_cbs = {
    .on_head = hc_head, .on_body = hc_body, .on_done = hc_done, .on_resend = hc_resend};
static const struct hc_callbacks hc_cbs_same_head = {
    .on_head = hc_head, .on_body = hc_body, .on_done = hc_done};

static void real_send(void *ctx, struct upstream_exchange *x, int id, struct slice head,
                      const struct slice *body, int nbody, uint32_t timeout_ms) {
  struct upstream_real *r = ctx;
  x->impl = hc_request(&r->pools[id], head, body, nbody, x->cbs->resend ? &hc_cbs : &hc_cbs_same_head, x,
                       timeout_ms);
}

static void real_pause(void *ctx, struct upstream_exchange *x) { hc_pause(x->impl); }
static void real_resume(void *ctx, struct upstream_exchange *x) { hc_resume(x->impl); }

static void real_cancel(void *ctx, struct upstream_exchange *x) {
  hc_cancel(x->impl);
  x->impl = NULL;
}

static uint64_t real_now(void *ctx) { return clock_mono_ns(); }

static void uv_timer_fired(uv_timer_t *h) {
  struct upstream_timer *t = h->data;
  t->cb(t);
}

static void real_timer_start(void *ctx, struct upstream_timer *t, uint64_t ms) {
  struct upstream_real *r = ctx;
  if (!t->init) {
    uv_timer_init(r->loop, &t->uv);
    t->uv.data = t;
    t->init = true;
  }
  uv_timer_start(&t->uv, uv_timer_fired, ms, 0);
}

static void real_timer_stop(void *ctx, struct upstream_timer *t) {
  if (t->init) uv_timer_stop(&t->uv);
}

static void uv_timer_closed(uv_handle_t *h) {
  struct upstream_timer *t = h->data;
  t->closed(t);
}

static void real_timer_close(void *ctx, struct upstream_timer *t, void (*closed)(struct upstream_timer *t)) {
  if (!t->init) {
    closed(t);
    return;
  }
  t->closed = closed;
  uv_close((uv_handle_t *)&t->uv, uv_timer_closed);
}

static const struct upstream_ops real_ops = {
    .send = real_send,
    .pause = real_pause,
    .resume = real_resume,
    .cancel = real_cancel,
    .now = real_now,
    .timer_start = real_timer_start,
    .timer_stop = real_timer_stop,
    .timer_close = real_timer_close,
};

struct upstream upstream_real_init(struct upstream_real *rr, uv_loop_t *loop, struct http_pool *pools) {
  *rr = (struct upstream_real){.loop = loop, .pools = pools};
  return (struct upstream){.ops = &real_ops, .ctx = rr};
}
