/* The proxy's decisions in virtual time: a real router and HTTP server on 127.0.0.1, a real client socket,
 * and a fake upstream I/O (route/upstream.h) whose exchanges the test answers by hand and whose clock and
 * timers move only when the test advances them. Retries, final statuses, the first-byte deadline, hedging and
 * the circuit breaker, each checked through what the client receives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "net/http_server.h"
#include "route/router.h"
#include "route/upstream.h"
#include "state/store.h"

#define MS 1000000ull
#define MODEL "m"

/* ---- the fake I/O ---- */

enum { EX_LIVE, EX_DONE, EX_CANCELLED };

struct sent {
  struct upstream_exchange *x;
  int target;
  int state;
  bool paused;
};

#define MAX_SENT 32
#define MAX_TIMERS 16

struct fake {
  uint64_t offset; /* virtual time: the real clock plus what the test advanced (server start times compare) */
  struct sent sent[MAX_SENT];
  int nsent;
  struct upstream_timer *timers[MAX_TIMERS];
  int ntimers;
  /* defer_close: timer_close keeps its callback for the test to run (as libuv runs it on a later turn) */
  bool defer_close;
  struct upstream_timer *closing;
  void (*closed)(struct upstream_timer *t);
};

static struct fake fk;

static uint64_t fake_now(void *ctx) { return clock_mono_ns() + fk.offset; }

static void fake_send(void *ctx, struct upstream_exchange *x, int id, struct slice head,
                      const struct slice *body, int nbody, uint32_t timeout_ms) {
  assert_true(fk.nsent < MAX_SENT);
  assert_true(head.len > 0 && nbody >= 1);
  x->impl = &fk.sent[fk.nsent];
  fk.sent[fk.nsent++] = (struct sent){.x = x, .target = id, .state = EX_LIVE};
}

static struct sent *live(struct upstream_exchange *x) {
  struct sent *s = x->impl;
  assert_non_null(s);
  assert_int_equal(s->state, EX_LIVE);
  return s;
}

static void fake_pause(void *ctx, struct upstream_exchange *x) { live(x)->paused = true; }
static void fake_resume(void *ctx, struct upstream_exchange *x) { live(x)->paused = false; }

static void fake_cancel(void *ctx, struct upstream_exchange *x) {
  live(x)->state = EX_CANCELLED;
  x->impl = NULL;
}

static void fake_timer_start(void *ctx, struct upstream_timer *t, uint64_t ms) {
  t->due_ns = fake_now(NULL) + ms * MS;
  for (int i = 0; i < fk.ntimers; i++)
    if (fk.timers[i] == t) return;
  assert_true(fk.ntimers < MAX_TIMERS);
  fk.timers[fk.ntimers++] = t;
}

static void fake_timer_stop(void *ctx, struct upstream_timer *t) { t->due_ns = 0; }

static void fake_timer_close(void *ctx, struct upstream_timer *t, void (*closed)(struct upstream_timer *t)) {
  for (int i = 0; i < fk.ntimers; i++)
    if (fk.timers[i] == t) fk.timers[i] = fk.timers[--fk.ntimers];
  if (fk.defer_close) {
    assert_null(fk.closing);
    fk.closing = t;
    fk.closed = closed;
    return;
  }
  closed(t);
}

static const struct upstream_ops fake_ops = {
    .send = fake_send,
    .pause = fake_pause,
    .resume = fake_resume,
    .cancel = fake_cancel,
    .now = fake_now,
    .timer_start = fake_timer_start,
    .timer_stop = fake_timer_stop,
    .timer_close = fake_timer_close,
};

/* advance moves virtual time by ms, firing the timers that fall due on the way, in order. */
static void advance(uint64_t ms) {
  uint64_t end = fake_now(NULL) + ms * MS;
  for (;;) {
    struct upstream_timer *next = NULL;
    for (int i = 0; i < fk.ntimers; i++)
      if (fk.timers[i]->due_ns && fk.timers[i]->due_ns <= end &&
          (!next || fk.timers[i]->due_ns < next->due_ns))
        next = fk.timers[i];
    if (!next) break;
    uint64_t now = fake_now(NULL);
    if (next->due_ns > now) fk.offset += next->due_ns - now;
    next->due_ns = 0;
    next->cb(next);
  }
  uint64_t now = fake_now(NULL);
  if (end > now) fk.offset += end - now;
}

/* ---- answers from the fake upstream ---- */

static struct upstream_exchange *ex(int i) {
  assert_true(i < fk.nsent);
  assert_int_equal(fk.sent[i].state, EX_LIVE);
  return fk.sent[i].x;
}

static const char OK_BODY[] =
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}";

/* answer sends exchange i a complete response: head, body, end. */
static void answer(int i, int status, const char *body) {
  struct upstream_exchange *x = ex(i);
  struct http_header h[2] = {{SLICE_LIT("Content-Type"), SLICE_LIT("application/json")},
                             {SLICE_LIT("Retry-After"), SLICE_LIT("7")}};
  fk.sent[i].state = EX_DONE; /* the callbacks may end the request and reuse the exchange */
  x->impl = NULL;
  assert_int_equal(x->cbs->head(x->arg, status, h, status == 503 ? 2 : 1), 0);
  assert_int_equal(x->cbs->body(x->arg, body, strlen(body)), 0);
  x->cbs->end(x->arg);
}

/* fail_ex ends exchange i with a transport failure. */
static void fail_ex(int i, enum fail_kind kind, int err) {
  struct upstream_exchange *x = ex(i);
  fk.sent[i].state = EX_DONE;
  x->impl = NULL;
  x->cbs->error(x->arg, kind, err);
}

/* ---- the router, its server and a client ---- */

#define WORLD_TARGETS 64 /* the store's capacity: pools are indexed by target id */

struct world {
  uv_loop_t loop;
  struct store store;
  struct http_pool pools[WORLD_TARGETS];
  struct router r;
  struct http_server srv;
  int port;
  int ntargets;
};

static struct world *w;

static void handler(struct http_req *req, void *arg) {
  if (!router_handle(arg, req)) http_resp_send(req, 404, "text/plain", "no\n", 3, NULL, 0);
}

/* world_up starts a router over ntargets healthy targets serving MODEL, with the fake I/O. */
static void world_up(int ntargets, void (*tune)(struct router_opts *o)) {
  memset(&fk, 0, sizeof fk);
  w = calloc(1, sizeof *w);
  uv_loop_init(&w->loop);
  store_init(&w->store, WORLD_TARGETS);
  const char *models[] = {MODEL};
  for (int i = 0; i < ntargets; i++) {
    char name[16], url[64];
    snprintf(name, sizeof name, "t%d", i);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", 9 + i);
    int id = store_add_target(&w->store, name, url, "vllm");
    assert_int_equal(id, i);
    store_set_models(&w->store, id, models, 1);
    struct target_load l = {.kv_usage = -1,
                            .prompt_tps = -1,
                            .gen_tps = -1,
                            .ttft_p50 = -1,
                            .ttft_p95 = -1,
                            .itl_p50 = -1,
                            .itl_p95 = -1};
    store_report(&w->store, id, &l, clock_mono_ns());
    assert_int_equal(http_pool_init(&w->pools[id], &w->loop, "127.0.0.1", 9 + i), 0);
  }
  w->ntargets = ntargets;
  struct router_opts o = {0};
  router_opts_default(&o);
  o.max_attempts = 2;
  o.first_byte_timeout_ms = o.first_byte_timeout_max_ms = 1000; /* nothing is known of the targets */
  o.hedge_max_fraction = 0;
  if (tune) tune(&o);
  router_init(&w->r, &w->loop, &w->store, w->pools, &o);
  w->r.io = (struct upstream){.ops = &fake_ops, .ctx = &fk};
  struct http_limits lim;
  http_limits_default(&lim);
  http_server_init(&w->srv, &w->loop, &lim, handler, &w->r);
  assert_int_equal(http_server_listen(&w->srv, "127.0.0.1", 0), 0);
  w->port = http_server_port(&w->srv);
}

static void drained(struct http_server *s) {}

static void world_down(void) {
  assert_int_equal(w->r.inflight, 0);
  http_server_drain(&w->srv, drained);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  router_free(&w->r);
  for (int i = 0; i < w->ntargets; i++)
    http_pool_close(&w->pools[i]);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&w->loop), 0);
  store_free(&w->store);
  free(w);
}

/* request_body connects, sends a chat completion with body (extra: more header lines) and runs the loop until
 * the router has sent it upstream or answered. Returns the client's socket. */
static int request_body(const char *extra, const char *body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  char msg[1024];
  int n = snprintf(msg, sizeof msg,
                   "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Connection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
                   extra ? extra : "", strlen(body), body);
  assert_int_equal(write(fd, msg, (size_t)n), n);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  int before = fk.nsent;
  for (int i = 0; i < 1000 && fk.nsent == before && w->r.inflight == 0; i++)
    uv_run(&w->loop, UV_RUN_NOWAIT);
  for (int i = 0; i < 1000 && fk.nsent == before && w->r.inflight > 0; i++)
    uv_run(&w->loop, UV_RUN_NOWAIT);
  return fd;
}

static int request(const char *extra) {
  return request_body(extra,
                      "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}");
}

/* response runs the loop until the server closed fd's connection (the request asked for it) and returns what
 * the client received (caller frees), with the status in *status. */
static char *response(int fd, int *status) {
  struct buf b = {0};
  for (int i = 0; i < 100000; i++) {
    uv_run(&w->loop, UV_RUN_NOWAIT);
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n == 0) break;
    if (n > 0)
      buf_append(&b, tmp, (size_t)n);
    else
      assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
  }
  close(fd);
  buf_append(&b, "", 1);
  assert_true(b.len > 12);
  *status = (int)strtol(b.base + 9, NULL, 10);
  return b.base;
}

static int live_on(int target) {
  for (int i = fk.nsent - 1; i >= 0; i--)
    if (fk.sent[i].target == target && fk.sent[i].state == EX_LIVE) return i;
  return -1;
}

/* ---- tests ---- */

/* A 503 from the first target is retried on the other, whose 200 the client gets; the breaker counted it. */
static void test_retry_after_5xx(void **state) {
  world_up(2, NULL);
  int fd = request(NULL);
  assert_int_equal(fk.nsent, 1);
  int first = fk.sent[0].target;
  answer(0, 503, "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}");
  assert_int_equal(fk.nsent, 2);
  assert_int_not_equal(fk.sent[1].target, first);
  answer(1, 200, OK_BODY);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  char want[64];
  snprintf(want, sizeof want, "x-infermesh-target: t%d", fk.sent[1].target);
  assert_non_null(strstr(resp, want));
  assert_non_null(strstr(resp, "\"completion_tokens\":1"));
  assert_int_equal(w->r.breakers[first].failures, 1);
  assert_int_equal(w->r.breakers[fk.sent[1].target].failures, 0);
  assert_int_equal(w->r.metrics.retries, 1);
  free(resp);
  world_down();
}

/* What an observer saw of the last request (router_observe). */
static struct {
  int n, status, attempts;
  char outcome[32], target[16];
} seen;

static void observe(void *arg, const struct request_record *rec) {
  seen.n++;
  seen.status = rec->status;
  seen.attempts = rec->attempts;
  snprintf(seen.outcome, sizeof seen.outcome, "%s", rec->outcome);
  snprintf(seen.target, sizeof seen.target, "%s", rec->target);
}

/* With every attempt failed, the last failure decides: a 5xx is passed on with the upstream's message and
 * Retry-After; a timeout is a 504. */
static void test_final_status_is_the_last_failure(void **state) {
  world_up(2, NULL);
  memset(&seen, 0, sizeof seen);
  assert_int_equal(router_observe(&w->r, &(struct request_observer){.on_record = observe}), 0);
  int fd = request(NULL);
  fail_ex(0, FAIL_CONNECT, UV_EHOSTUNREACH);
  answer(1, 503, "{\"error\":{\"message\":\"no KV space\",\"type\":\"server_error\"}}");
  assert_int_equal(fk.nsent, 2); /* max_attempts 2: no third */
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 503);
  assert_non_null(strstr(resp, "Retry-After: 7"));
  assert_non_null(strstr(resp, "answered 503: no KV space"));
  assert_non_null(strstr(resp, "\"type\":\"server_error\""));
  free(resp);
  assert_int_equal(seen.n, 1); /* the observer got the record: what the client saw, and why */
  assert_int_equal(seen.status, 503);
  assert_int_equal(seen.attempts, 2);
  assert_string_equal(seen.outcome, "upstream_error");

  fd = request(NULL);
  assert_int_equal(fk.nsent, 3);
  fail_ex(2, FAIL_CONNECT, UV_EHOSTUNREACH);
  fail_ex(3, FAIL_TIMEOUT, UV_ETIMEDOUT);
  resp = response(fd, &st);
  assert_int_equal(st, 504);
  assert_non_null(strstr(resp, "upstream_timeout"));
  free(resp);
  assert_int_equal(seen.n, 2);
  assert_string_equal(seen.outcome, "timeout");
  assert_int_equal(w->r.nobservers, 4); /* after the policy's, the metrics' and the log line's */
  world_down();
}

/* What an observer that keeps records (a ledger) and watches attempts saw. */
static struct {
  int nattempts, winners, tokens, nkept;
  void (*done)(void *, int);
  void *done_arg;
} kept;

static bool keep(void *arg, const struct request_record *rec, void (*done)(void *, int), void *done_arg) {
  kept.nkept++;
  kept.done = done;
  kept.done_arg = done_arg;
  return done != NULL;
}

static void attempt(void *arg, const struct attempt_record *a) {
  kept.nattempts++;
  kept.winners += a->winner;
  kept.tokens += a->completion_tokens;
}

/* One registration gets every attempt (the failed one and the winner, with its tokens) and the request's
 * record, and a keeper holds the complete answer until it says the record is durable. */
static void test_observer_sees_attempts_and_holds_the_answer(void **state) {
  world_up(2, NULL);
  memset(&seen, 0, sizeof seen);
  memset(&kept, 0, sizeof kept);
  assert_int_equal(
      router_observe(&w->r,
                     &(struct request_observer){.on_record = observe, .keep = keep, .on_attempt = attempt}),
      0);
  int fd = request(NULL);
  fail_ex(0, FAIL_CONNECT, UV_EHOSTUNREACH);
  answer(1, 200, OK_BODY);
  assert_int_equal(kept.nattempts, 1); /* the failed one; the winner's ends with the request */
  assert_int_equal(seen.n, 1);         /* the record, before the answer's end */
  assert_int_equal(seen.status, 200);
  assert_int_equal(kept.nkept, 1);
  assert_non_null(kept.done);
  char tmp[256];
  for (int i = 0; i < 100; i++)
    uv_run(&w->loop, UV_RUN_NOWAIT);
  assert_int_equal(read(fd, tmp, sizeof tmp), -1); /* held: nothing went to the client */
  kept.done(kept.done_arg, 0);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(resp, "\"completion_tokens\":1"));
  free(resp);
  assert_int_equal(kept.nattempts, 2);
  assert_int_equal(kept.winners, 1);
  assert_int_equal(kept.tokens, 1);
  assert_int_equal(seen.n, 1); /* once */
  world_down();
}

/* A target that sends nothing is given up at its first-byte deadline (1 s here), not before, and the request
 * goes to the other target. */
static void test_first_byte_deadline_moves_the_request(void **state) {
  world_up(2, NULL);
  int fd = request(NULL);
  int first = fk.sent[0].target;
  advance(900);
  assert_int_equal(fk.nsent, 1);
  assert_int_equal(fk.sent[0].state, EX_LIVE);
  advance(200);
  assert_int_equal(fk.sent[0].state, EX_CANCELLED);
  assert_int_equal(fk.nsent, 2);
  assert_int_not_equal(fk.sent[1].target, first);
  assert_int_equal(w->r.metrics.failures[FAIL_FIRST_BYTE], 1);
  answer(1, 200, OK_BODY);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  free(resp);

  /* Both silent: the client gets a 504 naming the deadline. */
  fd = request(NULL);
  advance(1100);
  advance(1100);
  resp = response(fd, &st);
  assert_int_equal(st, 504);
  assert_non_null(strstr(resp, "first-byte deadline (1000 ms)"));
  assert_int_equal(fk.sent[2].state, EX_CANCELLED);
  assert_int_equal(fk.sent[3].state, EX_CANCELLED);
  free(resp);
  world_down();
}

static void hedging(struct router_opts *o) {
  o->hedge_max_fraction = 1.0; /* every request earns a hedge */
  o->hedge_delay_ms = 100;
  o->first_byte_timeout_ms = o->first_byte_timeout_max_ms = 10000;
}

/* A latency-class request gets a copy on the other target after the hedge delay; the copy answers first and
 * wins, the primary is cancelled. */
static void test_hedge_copy_wins(void **state) {
  world_up(2, hedging);
  int fd = request("x-infermesh-slo: latency\r\n");
  assert_int_equal(fk.nsent, 1);
  advance(99);
  assert_int_equal(fk.nsent, 1);
  advance(2);
  assert_int_equal(fk.nsent, 2);
  assert_int_not_equal(fk.sent[1].target, fk.sent[0].target);
  answer(1, 200, OK_BODY);
  assert_int_equal(fk.sent[0].state, EX_CANCELLED);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(resp, "x-infermesh-hedged: true"));
  assert_int_equal(w->r.metrics.hedges_sent, 1);
  assert_int_equal(w->r.metrics.hedges_won, 1);
  assert_int_equal(w->r.metrics.hedges_cancelled, 1);
  free(resp);

  /* A throughput-class request is never hedged. */
  fd = request(NULL);
  advance(500);
  assert_int_equal(fk.nsent, 3);
  answer(2, 200, OK_BODY);
  resp = response(fd, &st);
  assert_int_equal(st, 200);
  assert_null(strstr(resp, "x-infermesh-hedged"));
  free(resp);
  world_down();
}

/* The client of a hedged request resets its connection while both copies are out: both are cancelled at once,
 * and the request (whose pool holds the proxy's state) is released only when its timer has closed, as the
 * real I/O closes it on a later loop turn: nothing of it is used after its memory goes (ASan). */
static void test_client_leaves_hedged_request(void **state) {
  world_up(2, hedging);
  fk.defer_close = true;
  int fd = request("x-infermesh-slo: latency\r\n");
  advance(101);
  assert_int_equal(fk.nsent, 2);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(fd); /* a reset */
  for (int i = 0; i < 100000 && w->r.inflight > 0; i++)
    uv_run(&w->loop, UV_RUN_NOWAIT);
  assert_int_equal(w->r.inflight, 0);
  assert_int_equal(fk.sent[0].state, EX_CANCELLED);
  assert_int_equal(fk.sent[1].state, EX_CANCELLED);
  assert_int_equal(w->r.metrics.client_aborts, 1);
  assert_int_equal(w->srv.nactive, 1); /* not released: its timer is still closing */
  assert_non_null(fk.closing);
  fk.defer_close = false;
  struct upstream_timer *t = fk.closing;
  fk.closing = NULL;
  fk.closed(t);
  assert_int_equal(w->srv.nactive, 0);
  world_down();
}

static void breaker_one(struct router_opts *o) {
  o->breaker.failures = 1;
  o->breaker.backoff_ms = 1000;
}

/* One failure opens a target's breaker: the next request avoids it; after the backoff it gets one probe,
 * whose success closes it. */
static void test_breaker_opens_then_probes(void **state) {
  world_up(2, breaker_one);
  int fd = request(NULL);
  int bad = fk.sent[0].target, good = 1 - bad;
  fail_ex(0, FAIL_TIMEOUT, UV_ETIMEDOUT);
  answer(1, 200, OK_BODY);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  free(resp);
  assert_int_equal(w->r.breakers[bad].state, BREAKER_OPEN);
  for (int i = 0; i < 3; i++) { /* open: every request goes to the other target */
    fd = request(NULL);
    assert_int_equal(fk.sent[fk.nsent - 1].target, good);
    answer(fk.nsent - 1, 200, OK_BODY);
    resp = response(fd, &st);
    assert_int_equal(st, 200);
    free(resp);
  }
  advance(1000);
  store_mark_down(&w->store, good, "test: only the probe's target is left");
  fd = request(NULL);
  int probe = live_on(bad);
  assert_true(probe >= 0);
  assert_int_equal(w->r.breakers[bad].state, BREAKER_HALF_OPEN);
  answer(probe, 200, OK_BODY);
  resp = response(fd, &st);
  assert_int_equal(st, 200);
  free(resp);
  assert_int_equal(w->r.breakers[bad].state, BREAKER_CLOSED);
  world_down();
}

/* A buffered response over max_response_bytes fails without a retry (another target would send as much). */
static void small_responses(struct router_opts *o) { o->max_response_bytes = 64; }

static void test_too_big_is_not_retried(void **state) {
  world_up(2, small_responses);
  int fd = request(NULL);
  struct upstream_exchange *x = ex(0);
  struct http_header h = {SLICE_LIT("Content-Type"), SLICE_LIT("application/json")};
  assert_int_equal(x->cbs->head(x->arg, 200, &h, 1), 0);
  assert_int_not_equal(x->cbs->body(x->arg, OK_BODY, strlen(OK_BODY)), 0); /* stop: too big */
  fk.sent[0].state = EX_DONE;
  x->cbs->error(x->arg, FAIL_CONNECT, UV_ECANCELED); /* what the real client follows a stop with */
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 502);
  assert_non_null(strstr(resp, "larger than 64 bytes"));
  assert_int_equal(fk.nsent, 1);
  free(resp);
  world_down();
}

static const char STREAM_REQ[] =
    "{\"model\":\"" MODEL "\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";

static void stream_head(struct upstream_exchange *x) {
  struct http_header h = {SLICE_LIT("Content-Type"), SLICE_LIT("text/event-stream")};
  assert_int_equal(x->cbs->head(x->arg, 200, &h, 1), 0);
}

/* A stream is relayed frame by frame; its [DONE] goes out at the end; the usage chunk the client did not ask
 * for (the proxy asked for it) is dropped. */
static void test_stream_relayed(void **state) {
  world_up(2, NULL);
  int fd = request_body(NULL, STREAM_REQ);
  struct upstream_exchange *x = ex(0);
  fk.sent[0].state = EX_DONE;
  stream_head(x);
  const char *frames = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
                       "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n"
                       "data: [DONE]\n\n";
  assert_int_equal(x->cbs->body(x->arg, frames, strlen(frames)), 0);
  x->cbs->end(x->arg);
  int st;
  char *resp = response(fd, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(resp, "Transfer-Encoding: chunked"));
  assert_non_null(strstr(resp, "\"content\":\"hi\""));
  assert_null(strstr(resp, "\"usage\""));
  assert_non_null(strstr(resp, "data: [DONE]"));
  free(resp);

  /* A stream that ends before any data frame is still a (empty) 200 stream, committed at its end. */
  fd = request_body(NULL, STREAM_REQ);
  x = ex(1);
  fk.sent[1].state = EX_DONE;
  stream_head(x);
  x->cbs->end(x->arg);
  resp = response(fd, &st);
  assert_int_equal(st, 200);
  free(resp);
  world_down();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_after_5xx),
      cmocka_unit_test(test_final_status_is_the_last_failure),
      cmocka_unit_test(test_observer_sees_attempts_and_holds_the_answer),
      cmocka_unit_test(test_first_byte_deadline_moves_the_request),
      cmocka_unit_test(test_hedge_copy_wins),
      cmocka_unit_test(test_client_leaves_hedged_request),
      cmocka_unit_test(test_breaker_opens_then_probes),
      cmocka_unit_test(test_too_big_is_not_retried),
      cmocka_unit_test(test_stream_relayed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
