/* The replay loop of `infermesh bench`: one libuv loop, one keep-alive pool per agent, requests sent at
 * their scheduled times whatever is still in flight (open loop), streamed responses parsed frame by frame. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "cli/bench_int.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "net/http_client.h"
#include "net/sse.h"
#include "route/jscan.h"

/* ---- prompt text ---- */

/* splitmix64: a good 64-bit mix for word generation from (span id, salt). */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Tokens [0, ntok) of span id: 4-byte words "xyz " (the simulated engine counts 4 bytes a token). */
static void span_text(uint64_t id, uint64_t salt, int ntok, struct buf *out) {
  uint64_t s = id ^ (salt * 0xd1b54a32d192ed03ull);
  buf_reserve(out, (size_t)ntok * 4);
  char *p = out->base + out->len;
  uint64_t bits = 0;
  int left = 0;
  for (int i = 0; i < ntok; i++) {
    if (left < 3) {
      bits = mix(&s);
      left = 12; /* 5 bits per letter, 60 bits used */
    }
    for (int k = 0; k < 3; k++, left--, bits >>= 5)
      p[4 * i + k] = (char)('a' + (bits & 31) % 26);
    p[4 * i + 3] = ' ';
  }
  out->len += (size_t)ntok * 4;
  out->base[out->len] = '\0';
}

void bench_text(const struct workload *w, const struct wl_req *r, uint64_t salt, struct buf *out) {
  int left = r->prompt_tokens;
  for (uint32_t i = 0; i < r->nspans && left > 0; i++) {
    const struct wl_span *sp = &w->spans[r->span0 + i];
    int n = sp->tokens < left ? sp->tokens : left;
    span_text(sp->id, salt, n, out);
    left -= n;
  }
}

/* ---- the run ---- */

struct flight;

struct run {
  const struct bench_opts *o;
  const struct workload *w;
  struct bench_req *out;
  uv_loop_t loop;
  uv_timer_t timer;
  uv_signal_t sigint;
  struct http_pool pools[BENCH_MAX_AGENTS]; /* one per --agent; request i uses pools[i % npools] */
  int npools;
  uint64_t t0; /* uv_hrtime at the start */
  size_t next; /* next request to send */
  size_t end;  /* requests [0, end) may be sent (--duration) */
  size_t sent;
  int inflight;
  struct flight *flights; /* concurrency_cap of them */
  struct flight *free_list;
  bool stopping, interrupted;
  /* GET /v1/models when no --model was given */
  char model[256];
  struct buf mbody;
  int mstatus;
  int merr;
  char *err;
  size_t errlen;
};

struct flight {
  struct run *run;
  struct flight *next_free;
  size_t idx;
  struct hc_req *up;
  struct buf head, body;
  struct buf errbody;
  struct sse_parser sse;
  bool streaming, got_done;
};

static uint64_t now_ns(const struct run *r) { return uv_hrtime() - r->t0; }

static void maybe_done(struct run *r);
static void pump(struct run *r);

static int on_head(void *arg, int status, const struct http_header *h, int n) {
  struct flight *f = arg;
  struct bench_req *q = &f->run->out[f->idx];
  q->status = status;
  f->streaming = status == 200 && slice_starts(http_find_header(h, n, "content-type"), "text/event-stream");
  return 0;
}

static int on_frame(void *arg, struct slice frame, struct slice data) {
  struct flight *f = arg;
  struct bench_req *q = &f->run->out[f->idx];
  if (slice_eqz(data, "[DONE]")) {
    f->got_done = true;
    return 0;
  }
  if (!data.len || data.base[0] != '{') return 0;
  if (slice_starts(data, "{\"error\"")) {
    q->stream_error = true;
    return 0;
  }
  if (jscan_is_usage_only_chunk(data.base, data.len)) {
    struct oai_usage u;
    if (jscan_usage(data.base, data.len, &u) == 0 && u.present) {
      q->prompt_tokens = u.prompt_tokens;
      q->completion_tokens = u.completion_tokens;
      q->cached_tokens = u.cached_tokens;
    }
    return 0;
  }
  if (!q->t_first) q->t_first = now_ns(f->run);
  q->chunks++;
  return 0;
}

static int on_body(void *arg, const char *data, size_t len) {
  struct flight *f = arg;
  if (f->streaming) return sse_feed(&f->sse, data, len, on_frame, f) == 0 ? 0 : 1;
  if (f->errbody.len < 4096) buf_append(&f->errbody, data, len < 4096 ? len : 4096);
  return 0;
}

static void on_done(void *arg, int err) {
  struct flight *f = arg;
  struct run *r = f->run;
  struct bench_req *q = &r->out[f->idx];
  f->up = NULL;
  q->t_end = now_ns(r);
  if (err) q->err = err;
  q->ok = err == 0 && q->status == 200 && f->got_done && !q->stream_error && q->t_first;
  if (err && q->status == 200) q->stream_error = true; /* cut short after the head */
  sse_parser_free(&f->sse);
  buf_reset(&f->errbody);
  f->next_free = r->free_list;
  r->free_list = f;
  r->inflight--;
  pump(r);
  maybe_done(r);
}

static const struct hc_callbacks cbs = {.on_head = on_head, .on_body = on_body, .on_done = on_done};

static void send_one(struct run *r, size_t i) {
  const struct bench_opts *o = r->o;
  struct flight *f = r->free_list;
  r->free_list = f->next_free;
  const struct wl_req *wr = &r->w->reqs[i];
  f->idx = i;
  f->streaming = f->got_done = false;
  memset(&f->sse, 0, sizeof f->sse);
  struct buf *b = &f->body;
  buf_reset(b);
  buf_puts(b, "{\"model\":");
  buf_json_str(b, slice_cstr(r->model));
  buf_puts(b, o->chat ? ",\"messages\":[{\"role\":\"user\",\"content\":\"" : ",\"prompt\":\"");
  bench_text(r->w, wr, o->salt, b);
  buf_puts(b, o->chat ? "\"}]" : "\"");
  buf_printf(
      b,
      ",\"max_tokens\":%d,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true}",
      wr->output_tokens);
  struct http_pool *pool = &r->pools[i % (size_t)r->npools];
  struct buf *h = &f->head;
  buf_reset(h);
  buf_printf(h,
             "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
             "Content-Length: %zu\r\n",
             o->chat ? "/v1/chat/completions" : "/v1/completions", pool->authority, b->len);
  if (o->api_key[0]) buf_printf(h, "Authorization: Bearer %s\r\n", o->api_key);
  if (o->slo_class[0]) buf_printf(h, "x-infermesh-slo: %s\r\n", o->slo_class);
  buf_puts(h, "\r\n");
  struct bench_req *q = &r->out[i];
  q->status = 0;
  q->t_send = now_ns(r);
  struct slice body = buf_slice(b);
  r->inflight++;
  r->sent++;
  f->up = hc_request(pool, buf_slice(h), &body, 1, &cbs, f, (uint32_t)(o->timeout_s * 1000));
}

static void timer_cb(uv_timer_t *t);

/* Send every request that is due (and fits under the cap), then sleep until the next one is. */
static void pump(struct run *r) {
  if (r->stopping) return;
  uint64_t now = now_ns(r);
  while (r->next < r->end && r->out[r->next].t_sched <= now && r->free_list)
    send_one(r, r->next++);
  if (r->next < r->end && r->free_list) {
    uint64_t wait_ms = (r->out[r->next].t_sched - now + 999999) / 1000000;
    uv_timer_start(&r->timer, timer_cb, wait_ms, 0);
  }
}

static void timer_cb(uv_timer_t *t) { pump(t->data); }

static void close_cb(uv_handle_t *h) { (void)h; }

static void maybe_done(struct run *r) {
  if (r->inflight > 0 || (r->next < r->end && !r->stopping)) return;
  if (!uv_is_closing((uv_handle_t *)&r->timer)) {
    uv_close((uv_handle_t *)&r->timer, close_cb);
    uv_close((uv_handle_t *)&r->sigint, close_cb);
    for (int i = 0; i < r->npools; i++) /* idle keep-alive connections would keep the loop running */
      http_pool_close(&r->pools[i]);
  }
}

static void sigint_cb(uv_signal_t *s, int signum) {
  struct run *r = s->data;
  if (r->stopping) return;
  r->stopping = r->interrupted = true;
  uv_timer_stop(&r->timer);
  for (int i = 0; i < r->o->concurrency_cap; i++) {
    struct flight *f = &r->flights[i];
    if (!f->up) continue;
    hc_cancel(f->up);
    f->up = NULL;
    struct bench_req *q = &r->out[f->idx];
    q->t_end = now_ns(r);
    q->err = UV_ECANCELED;
    r->inflight--;
  }
  maybe_done(r);
}

/* ---- GET /v1/models, when the model was not given ---- */

static int m_head(void *arg, int status, const struct http_header *h, int n) {
  ((struct run *)arg)->mstatus = status;
  return 0;
}

static int m_body(void *arg, const char *data, size_t len) {
  struct run *r = arg;
  if (r->mbody.len + len > (1 << 20)) return 1;
  buf_append(&r->mbody, data, len);
  return 0;
}

static void m_done(void *arg, int err) {
  struct run *r = arg;
  r->merr = err;
  if (err == 0 && r->mstatus == 200) {
    json_t *root = json_loadb(r->mbody.base ? r->mbody.base : "", r->mbody.len, 0, NULL);
    json_t *id = json_object_get(json_array_get(json_object_get(root, "data"), 0), "id");
    if (json_is_string(id)) str_copy(r->model, sizeof r->model, json_string_value(id));
    json_decref(root);
  }
  uv_stop(&r->loop); /* the connection may stay open in the pool */
}

static const struct hc_callbacks mcbs = {.on_head = m_head, .on_body = m_body, .on_done = m_done};

static int find_model(struct run *r) {
  char head[256];
  const char *auth = r->o->api_key;
  int n =
      snprintf(head, sizeof head, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n", r->pools[0].authority,
               auth[0] ? "Authorization: Bearer " : "", auth[0] ? auth : "", auth[0] ? "\r\n" : "");
  if (n < 0 || (size_t)n >= sizeof head) {
    snprintf(r->err, r->errlen, "--api-key is too long");
    return -1;
  }
  hc_request(&r->pools[0], slice_make(head, (size_t)n), NULL, 0, &mcbs, r, 10000);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  buf_free(&r->mbody);
  if (r->merr) {
    snprintf(r->err, r->errlen, "cannot reach the agent at %s: %s (is it running? pass --agent URL)",
             r->o->agents[0].url, uv_strerror(r->merr));
    return -1;
  }
  if (!r->model[0]) {
    snprintf(r->err, r->errlen, "GET %s/v1/models answered %d without a model; pass --model",
             r->o->agents[0].url, r->mstatus);
    return -1;
  }
  return 0;
}

/* Each stream holds a socket: let the process have as many as the hard limit allows. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int bench_run(const struct bench_opts *o, const struct workload *w, struct bench_req *out, size_t *sent_out,
              bool *interrupted, char *err, size_t errlen) {
  struct run *r = xcalloc(1, sizeof *r);
  int rc = 0;
  r->o = o;
  r->w = w;
  r->out = out;
  r->err = err;
  r->errlen = errlen;
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  uv_loop_init(&r->loop);
  for (; r->npools < o->nagents; r->npools++) {
    const struct bench_agent *ag = &o->agents[r->npools];
    if (http_pool_init(&r->pools[r->npools], &r->loop, ag->host, ag->port) != 0) {
      snprintf(err, errlen, "bad agent address %s", ag->url);
      rc = -1;
      goto out;
    }
    r->pools[r->npools].max_idle = o->concurrency_cap;
  }
  str_copy(r->model, sizeof r->model, o->model);
  if (!r->model[0] && find_model(r) != 0) {
    rc = -1;
    goto out;
  }
  r->flights = xcalloc((size_t)o->concurrency_cap, sizeof *r->flights);
  for (int i = o->concurrency_cap - 1; i >= 0; i--) {
    r->flights[i].run = r;
    r->flights[i].next_free = r->free_list;
    r->free_list = &r->flights[i];
  }
  uint64_t first = w->n ? w->reqs[0].t_ns : 0;
  r->end = w->n;
  for (size_t i = 0; i < w->n; i++) {
    out[i] = (struct bench_req){.t_sched = w->reqs[i].t_ns - first,
                                .status = -1,
                                .prompt_tokens = -1,
                                .completion_tokens = -1,
                                .cached_tokens = -1};
    if (o->duration_s > 0 && (double)out[i].t_sched / 1e9 > o->duration_s && r->end == w->n) r->end = i;
  }
  uv_timer_init(&r->loop, &r->timer);
  r->timer.data = r;
  uv_signal_init(&r->loop, &r->sigint);
  r->sigint.data = r;
  uv_signal_start(&r->sigint, sigint_cb, SIGINT);
  r->t0 = uv_hrtime();
  pump(r);
  maybe_done(r);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  *sent_out = r->sent;
  *interrupted = r->interrupted;
  for (int i = 0; i < o->concurrency_cap; i++) {
    buf_free(&r->flights[i].head);
    buf_free(&r->flights[i].body);
    buf_free(&r->flights[i].errbody);
    sse_parser_free(&r->flights[i].sse);
  }
out:
  for (int i = 0; i < r->npools; i++)
    http_pool_close(&r->pools[i]);
  uv_run(&r->loop, UV_RUN_DEFAULT); /* let closing connections finish */
  uv_loop_close(&r->loop);
  free(r->flights);
  free(r);
  return rc;
}
