/* The proxy state machine of one request: admit → pick → send → (retry, hedge) → relay → record. */
#include "route/proxy.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "route/deadline.h"
#include "route/proxy_int.h"
#include "route/rank.h"

_Static_assert(FAIL_TOO_BIG + 1 == RM_FAIL_KINDS, "route_metrics counts every failure kind");

#define INJECT_STREAM_OPTIONS "\"stream_options\":{\"include_usage\":true},"

/* The last step of a request: its timer is closed, nothing refers to p any more (the legs were cancelled or
 * ended, the meter's wait detached): the response ends, which releases req and its pool, and p with it. */
static void proxy_closed(struct upstream_timer *t) {
  struct proxy *p = t->data;
  http_resp_end(p->req);
}

/* proxy_release frees what p holds outside its request's pool, then closes its timer: proxy_closed releases
 * the request (p lives in its pool) once the timer's memory is no longer used (now or on a later turn). */
static void proxy_release(struct proxy *p) {
  for (int i = 0; i < 2; i++) {
    buf_free(&p->legs[i].body);
    sse_parser_free(&p->legs[i].sse);
  }
  buf_free(&p->out);
  p->r->io.ops->timer_close(p->r->io.ctx, &p->timer, proxy_closed);
}

uint64_t proxy_now(const struct router *r) { return r->io.ops->now(r->io.ctx); }

void proxy_timer(struct proxy *p, int use, uint64_t ms, void (*cb)(struct upstream_timer *t)) {
  p->timer.cb = cb;
  p->timer_use = use;
  p->r->io.ops->timer_start(p->r->io.ctx, &p->timer, ms);
}

void proxy_timer_stop(struct proxy *p) { p->r->io.ops->timer_stop(p->r->io.ctx, &p->timer); }

/* cancel stops l's exchange in flight (its connection closes: the runtime sees the abort). */
static void cancel(struct leg *l) {
  struct upstream *io = &l->p->r->io;
  io->ops->cancel(io->ctx, l->up);
  l->up = NULL;
}

#define POLICY_BLOCK ROUTER_BLOCK_TOKENS

/* The request as the policy sees it: prompt blocks hashed from the raw messages/prompt bytes (equal prefixes
 * give equal hashes, which is all the router's own prefix index needs), once per request. */
static const struct policy_req *policy_request(struct proxy *p) {
  if (!p->hashed) {
    size_t full = p->oai.prompt.len / (POLICY_BLOCK * 4); /* full blocks, as policy_prompt_hashes counts */
    int max = full < PROXY_MAX_BLOCKS ? (int)full : PROXY_MAX_BLOCKS;
    p->hashes = max ? pool_alloc(&p->req->pool, (size_t)max * sizeof *p->hashes) : NULL;
    int n = policy_prompt_hashes(p->model, p->oai.prompt.base, p->oai.prompt.len, POLICY_BLOCK, p->hashes, max);
    p->preq = (struct policy_req){.model = p->model,
                                  .prompt_tokens = (int)p->prompt_est,
                                  .max_tokens = (int)(p->kv_need - p->prompt_est),
                                  .block_hashes = p->hashes,
                                  .nblocks = n < 0 ? 0 : n,
                                  .block_size = POLICY_BLOCK,
                                  .tenant = p->tenant};
    p->hashed = true;
  }
  return &p->preq;
}

/* attempt_ended hands the attempt record of leg l to the router's observers (the policy's feedback first). */
static void attempt_ended(struct proxy *p, struct leg *l) {
  struct router *r = p->r;
  bool won = p->winner == l;
  struct attempt_record a = {
      .request_id = p->request_id,
      .model = p->model,
      .target_id = l->target,
      .target = r->store->targets[l->target].name,
      .hedge = l->hedge,
      .winner = won,
      .status = l->status,
      .t_sent_ns = l->t_sent,
      .t_first_ns = won ? p->t_first : 0,
      .t_end_ns = proxy_now(r),
      .completion_tokens = won && p->usage.present ? (int)p->usage.completion_tokens : 0,
      .attempt = l->attempt,
      .node = r->store->targets[l->target].remote ? r->store->targets[l->target].node : "",
      .failure = upstream_fail_name(l->fail),
      .error = l->fail != FAIL_NONE ? p->last_err_msg : "",
      .stream_error = won && p->stream_error,
      .lost_race = p->winner && !won,
      .trace = p->traced ? &p->tr : NULL,
      .span_id = l->span_id,
      .policy = l->pol,
      .ticket = &l->ticket,
  };
  for (int i = 0; i < r->nobservers; i++)
    if (r->observers[i].on_attempt) r->observers[i].on_attempt(r->observers[i].arg, &a);
}

void proxy_leg_release(struct leg *l) {
  struct router *r = l->p->r;
  if (l->ticketed) {
    attempt_ended(l->p, l);
    l->ticketed = false;
  }
  if (!l->reserved) return;
  store_release(r->store, l->target);
  if (l->kv_tokens) store_kv_release(r->store, l->target, l->kv_tokens, l->kv_seq);
  l->reserved = false;
  l->kv_tokens = 0;
}

/* What the client saw, for the log line: a status alone cannot tell a stream that failed after its 200. */
static const char *outcome(const struct proxy *p, int status) {
  if (p->stream_error) return "stream_error";
  if (status == 499) return "client_gone";
  if (status < 400) return "ok";
  if (status < 500) return status == 429 && p->attempts ? "upstream_limited" : "client_error";
  if (p->last_fail == FAIL_FIRST_BYTE || p->last_fail == FAIL_TIMEOUT) return "timeout";
  if (p->last_fail != FAIL_NONE) return "upstream_error";
  return "unavailable";
}

void proxy_record(const struct proxy *p, int status, struct request_record *rec) {
  const struct target *t = p->target >= 0 ? &p->r->store->targets[p->target] : NULL;
  *rec = (struct request_record){
      .request_id = p->request_id,
      .path = p->chat ? "/v1/chat/completions" : p->embeddings ? "/v1/embeddings" : "/v1/completions",
      .trace = p->traced ? &p->tr : NULL,
      .model = p->model,
      .tenant = proxy_admit_tenant_name(p),
      .target = t ? t->name : "",
      .serving_node = t && t->remote ? t->node : "",
      .status = status,
      .outcome = outcome(p, status),
      .stream = p->oai.stream == 1,
      .hedged = p->hedged,
      .reached_runtime = p->attempts > 0,
      .forwarded = p->local_only,
      .attempts = p->attempts,
      .usage = p->usage.present,
      .prompt_tokens = p->usage.present ? p->usage.prompt_tokens : -1,
      .cached_tokens = p->usage.present ? p->usage.cached_tokens : -1,
      .completion_tokens = p->usage.present ? p->usage.completion_tokens : -1,
      .ttft_ms = p->t_first ? (double)(p->t_first - p->t0) / 1e6 : -1,
      .duration_ms = (double)(proxy_now(p->r) - p->t0) / 1e6,
      .cost_nano = p->costed ? p->cost_nano : 0,
  };
  if (p->costed) str_copy(rec->currency, sizeof rec->currency, p->currency);
}

/* Everything ends here: reservations released (the attempts' records to the observers), the request's record to
 * them unless a complete answer gave it already (proxy_conclude), p released
 * (the response ends when its timer is closed); then queued requests may go. */
static void finish(struct proxy *p, int status) {
  struct router *r = p->r;
  assert(p->state != PS_DONE);
  p->state = PS_DONE;
  proxy_meter_detach(p);
  for (int i = 0; i < 2; i++) {
    if (p->legs[i].up) { /* only on paths that end the request with a copy still running */
      cancel(&p->legs[i]);
      breaker_cancelled(&r->breakers[p->legs[i].target]);
    }
    proxy_leg_release(&p->legs[i]);
  }
  proxy_timer_stop(p);
  if (p->admit_open) proxy_trace_admitted(p, status);
  proxy_admit_end(p);
  r->inflight--;
  proxy_conclude(p, status, NULL); /* when no complete answer waited for it: errors, aborts */
  p->req->abort_cb = NULL;
  p->req->drain_cb = NULL;
  if (p->prev) p->prev->next = p->next;
  else r->active = p->next;
  if (p->next) p->next->prev = p->prev;
  proxy_release(p); /* the response ends once p's timer is closed */
  proxy_admit_dispatch(r); /* a request ended: capacity freed */
}

void proxy_fail(struct proxy *p, int status, const char *type, const char *code, const char *message,
                int retry_after) {
  struct buf body = {0};
  char ra[16];
  char tgt[64] = "";
  struct http_header h[5];
  int nh = 0;
  http_error_json(&body, message, type, code);
  h[nh++] = (struct http_header){SLICE_LIT("Content-Type"), SLICE_LIT("application/json")};
  h[nh++] = (struct http_header){SLICE_LIT("x-request-id"), slice_cstr(p->request_id)};
  if (retry_after > 0) {
    snprintf(ra, sizeof ra, "%d", retry_after);
    h[nh++] = (struct http_header){SLICE_LIT("Retry-After"), slice_cstr(ra)};
  }
  if (p->target >= 0) {
    str_copy(tgt, sizeof tgt, p->r->store->targets[p->target].name);
    h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-target"), slice_cstr(tgt)};
  }
  if (status == 401) h[nh++] = (struct http_header){SLICE_LIT("WWW-Authenticate"), SLICE_LIT("Bearer")};
  http_resp_start(p->req, status, h, nh, (int64_t)body.len);
  http_resp_write(p->req, body.base, body.len);
  buf_free(&body);
  finish(p, status);
}

static void fail(struct proxy *p, int status, const char *type, const char *message, int retry_after) {
  proxy_fail(p, status, type, NULL, message, retry_after);
}

/* Start the client's response with our headers (once). */
static void client_start(struct proxy *p, int status, int64_t len) {
  struct http_header h[9];
  int nh = 0;
  const char *tname = p->r->store->targets[p->target].name;
  h[nh++] = (struct http_header){SLICE_LIT("Content-Type"),
                                 slice_cstr(p->winner && p->winner->content_type[0] ? p->winner->content_type
                                                                                    : "application/json")};
  if (p->winner && p->winner->streaming) h[nh++] = (struct http_header){SLICE_LIT("Cache-Control"), SLICE_LIT("no-cache")};
  h[nh++] = (struct http_header){SLICE_LIT("x-request-id"), slice_cstr(p->request_id)};
  const struct target *t = &p->r->store->targets[p->target];
  h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-target"), slice_cstr(tname)};
  h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-node"), slice_cstr(t->remote ? t->node : p->r->opts.node_name)};
  if (p->winner && p->winner->hedge) h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-hedged"), SLICE_LIT("true")};
  if (p->fallback_from[0]) h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-fallback-from"), slice_cstr(p->fallback_from)};
  if (p->costed && len >= 0) /* the number after ,"cost": */
    h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-cost"), slice_cstr(p->cost_text + 8)};
  if (p->winner && p->winner->retry_after[0])
    h[nh++] = (struct http_header){SLICE_LIT("Retry-After"), slice_cstr(p->winner->retry_after)};
  http_resp_start(p->req, status, h, nh, len);
  p->client_started = true;
}

static struct leg *other_leg(struct leg *l) { return l == &l->p->legs[0] ? &l->p->legs[1] : &l->p->legs[0]; }

/* Could another leg still answer first (a copy in flight, or one about to be sent)? */
static bool race_open(struct proxy *p, struct leg *l) {
  return other_leg(l)->up != NULL || (p->hedge_due && !p->hedged);
}

/* Leg l sent the first byte: its answer goes to the client; the other copy (if any) is cancelled. */
static void commit(struct proxy *p, struct leg *l) {
  struct router *r = p->r;
  assert(p->state == PS_SENT || p->state == PS_HEDGED);
  assert(!p->winner);
  p->state = PS_COMMITTED;
  p->winner = l;
  p->target = l->target;
  p->hedge_due = 0;
  if (l->status < 500 || l->status == 501) breaker_success(&r->breakers[l->target]); /* it answers */
  if (l->status == 200)
    store_ttfb_observe(r->store, l->target, l->streaming ? STORE_TTFB_STREAM : STORE_TTFB_FULL,
                       (double)(proxy_now(p->r) - l->t_sent) / 1e9);
  struct leg *o = other_leg(l);
  if (o->up) proxy_hedge_lost(p, o);
  if (l->hedge) r->metrics.hedges_won++;
  proxy_schedule(p); /* no deadline is left to watch */
}

/* ---- upstream callbacks (arg: the leg) ---- */

static int up_head(void *arg, int status, const struct http_header *h, int n) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  l->status = status;
  struct slice ct = http_find_header(h, n, "content-type");
  str_copy(l->content_type, sizeof l->content_type, "");
  if (ct.len && ct.len < sizeof l->content_type) memcpy(l->content_type, ct.base, ct.len), l->content_type[ct.len] = 0;
  struct slice ra = http_find_header(h, n, "retry-after");
  bool ra_ok = ra.len > 0 && ra.len < sizeof l->retry_after; /* seconds or an HTTP date: printable only */
  for (size_t i = 0; ra_ok && i < ra.len; i++) ra_ok = ra.base[i] >= 0x20 && ra.base[i] < 0x7f;
  l->retry_after[0] = '\0';
  if (ra_ok) memcpy(l->retry_after, ra.base, ra.len), l->retry_after[ra.len] = '\0';
  l->streaming = status == 200 && p->oai.stream && slice_starts(ct, "text/event-stream");
  buf_reset(&l->body);
  /* A complete answer that is not a stream (or an error that is no failure) wins at its head. */
  if (!p->winner && !l->streaming && (status < 500 || status == 501)) commit(p, l);
  return 0;
}

/* An SSE data payload that is an error object: ours and vLLM's ({"error":{...}}) or older vLLM's
 * ({"object":"error",...}); it is relayed as it is, and the request counts as a failed stream. */
static bool is_error_event(struct slice data) {
  size_t i = 1;
  while (i < data.len &&
         (data.base[i] == ' ' || data.base[i] == '\n' || data.base[i] == '\t' || data.base[i] == '\r'))
    i++;
  struct slice rest = slice_make(data.base + i, data.len - i);
  return slice_starts(rest, "\"error\"") || slice_starts(rest, "\"object\":\"error\"") ||
         slice_starts(rest, "\"object\": \"error\"");
}

/* Send the gathered slices of this read to the client (starting the response first). */
static void relay_flush(struct proxy *p) {
  if (!p->niov) return;
  if (!p->client_started) client_start(p, 200, -1);
  http_resp_writev(p->req, p->iov, (size_t)p->niov);
  p->niov = 0;
}

/* Relay a frame unchanged: by reference when it lies in the upstream read (a frame that follows the last one
 * extends its slice), else (the rest of a frame split over reads, held by the SSE parser) at once. */
static void relay_ref(struct proxy *p, struct slice frame) {
  bool in_feed = frame.base >= p->feed.base && frame.base + frame.len <= p->feed.base + p->feed.len;
  struct slice *last = p->niov ? &p->iov[p->niov - 1] : NULL;
  if (in_feed && last && last->base + last->len == frame.base) {
    last->len += frame.len;
    return;
  }
  if (!in_feed || p->niov == PROXY_RELAY_IOV) relay_flush(p);
  p->iov[p->niov++] = frame;
  if (!in_feed) relay_flush(p);
}

static int relay_frame(void *arg, struct slice frame, struct slice data) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  if (!p->winner) {
    if (data.len == 0 && race_open(p, l)) return 0; /* no data yet: not a first byte, nothing to relay */
    commit(p, l);
  }
  bool usage_chunk = false;
  if (data.len && data.base[0] == '{') {
    if (is_error_event(data)) {
      p->stream_error = true;
    } else if (jscan_is_usage_only_chunk(data.base, data.len)) {
      jscan_usage(data.base, data.len, &p->usage);
      proxy_meter_cost(p);
      if (p->strip_usage) return 0;
      usage_chunk = true;
    } else {
      if (!p->t_first) p->t_first = proxy_now(p->r);
      /* llama.cpp puts usage in its last chunk beside the choices instead of in a chunk of its own (some
       * runtimes send "usage":null in every chunk: only an object is worth a scan) */
      struct oai_usage u;
      if (proxy_has_usage_object(data) && jscan_usage(data.base, data.len, &u) == 0 && u.present) {
        p->usage = u;
        proxy_meter_cost(p);
        usage_chunk = true;
      }
    }
  } else if (slice_eqz(data, "[DONE]")) {
    p->done_held = true; /* sent once the record is durable (end_stream) */
    return 0;
  }
  /* The chunk with the usage gets its cost; every chunk gets back the name the client asked for. A
   * single-line data field: data lies inside frame. */
  bool renames = proxy_renames(p, l);
  bool costs = usage_chunk && p->costed;
  if ((renames || costs) && data.len && data.base[0] == '{' && data.base >= frame.base &&
      data.base + data.len <= frame.base + frame.len) {
    struct slice parts[3];
    int n = costs ? proxy_meter_split(p, data, parts) : (parts[0] = data, 1);
    relay_flush(p);
    buf_reset(&p->out);
    buf_append(&p->out, frame.base, (size_t)(data.base - frame.base));
    if (renames) {
      struct buf tmp = {0}; /* once per stream at most: the usage chunk */
      for (int i = 0; i < n && n > 1; i++) buf_append_slice(&tmp, parts[i]);
      proxy_client_json(p, n > 1 ? buf_slice(&tmp) : data, &p->out);
      buf_free(&tmp);
    } else {
      for (int i = 0; i < n; i++) buf_append_slice(&p->out, parts[i]);
    }
    buf_append(&p->out, data.base + data.len, (size_t)(frame.base + frame.len - (data.base + data.len)));
    p->iov[p->niov++] = buf_slice(&p->out);
    relay_flush(p);
    return 0;
  }
  relay_ref(p, frame);
  return 0;
}

static void drain_cb(struct http_req *req) {
  struct proxy *p = req->data;
  if (p->paused && p->winner && p->winner->up) {
    p->paused = false;
    p->r->io.ops->resume(p->r->io.ctx, p->winner->up);
  }
}

static int up_body(void *arg, const char *data, size_t len) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  if (!l->streaming) {
    if (l->body.len + len > p->r->opts.max_response_bytes) {
      l->too_big = true;
      return 1; /* up_error follows */
    }
    buf_append(&l->body, data, len);
    return 0;
  }
  /* Every frame that arrived in this read goes out in one write: none waits for a later byte. */
  p->feed = slice_make(data, len);
  int rc = sse_feed(&l->sse, data, len, relay_frame, l);
  relay_flush(p);
  p->feed = slice_make(NULL, 0);
  if (rc != 0) return rc;
  if (!p->paused && p->winner == l && http_resp_queued(p->req) > HTTP_WRITE_HIGH_WATER) {
    p->paused = true;
    p->r->io.ops->pause(p->r->io.ctx, l->up);
  }
  return 0;
}

static void end_stream(struct proxy *p);
static void answer_buffered(struct proxy *p);

static bool retryable(struct proxy *p) { return !p->client_started && p->attempts < p->r->opts.max_attempts; }

/* The upstream's own error detail from a 5xx body: OpenAI's {"error":{"message","type"}}, vLLM's
 * {"object":"error","message","type"}, or else the body's first line as text. */
static void upstream_detail(struct proxy *p, const struct leg *l, const struct target *t) {
  char msg[200] = "", type[64] = "";
  json_error_t je;
  json_t *root = l->body.len ? json_loadb(l->body.base, l->body.len, 0, &je) : NULL;
  json_t *obj = root ? json_object_get(root, "error") : NULL;
  if (!json_is_object(obj)) obj = root;
  if (json_is_object(obj)) {
    const char *m = json_string_value(json_object_get(obj, "message"));
    const char *ty = json_string_value(json_object_get(obj, "type"));
    if (m) str_copy(msg, sizeof msg, m);
    if (ty) str_copy(type, sizeof type, ty);
  } else if (!root && l->body.len) {
    size_t n = 0;
    while (n < l->body.len && n < sizeof msg - 1 && l->body.base[n] != '\n' && l->body.base[n] != '\r') n++;
    for (size_t i = 0; i < n; i++)
      msg[i] = l->body.base[i] >= 0x20 && l->body.base[i] < 0x7f ? l->body.base[i] : '?';
    msg[n] = '\0';
  }
  if (root) json_decref(root);
  if (msg[0])
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s answered %d: %s", t->name, l->status, msg);
  else
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s answered %d", t->name, l->status);
  str_copy(p->last_err_type, sizeof p->last_err_type, type);
}

/* No attempt is left: the last failure decides the answer (DESIGN §4.7). */
static void give_up(struct proxy *p) {
  switch (p->last_fail) {
  case FAIL_FIRST_BYTE:
  case FAIL_TIMEOUT:
    proxy_fail(p, 504, "upstream_error", "upstream_timeout", p->last_err_msg, 0);
    return;
  case FAIL_UPSTREAM_5XX: {
    int ra = 0;
    if (p->last_retry_after[0]) {
      char *end = NULL;
      long v = strtol(p->last_retry_after, &end, 10);
      ra = end && *end == '\0' && v > 0 && v < 86400 ? (int)v : 0;
    }
    const char *type = p->last_err_type[0] ? p->last_err_type : "upstream_error";
    proxy_fail(p, p->last_status, type, NULL, p->last_err_msg, ra);
    return;
  }
  default:
    proxy_fail(p, 502, "upstream_error", NULL, p->last_err_msg, 1);
    return;
  }
}

/* The one place an attempt's failure is decided on: record why, feed the breaker, then hand over to the other
 * copy, retry elsewhere, end a started stream in-band, or answer the client. l->up is NULL already. */
static void leg_failed(struct leg *l, enum fail_kind kind, int err) {
  struct proxy *p = l->p;
  struct router *r = p->r;
  struct target *t = &r->store->targets[l->target];
  r->metrics.upstream_errors++;
  r->metrics.failures[kind]++;
  p->last_fail = kind;
  l->fail = kind;
  p->last_err_type[0] = p->last_retry_after[0] = '\0';
  switch (kind) {
  case FAIL_UPSTREAM_5XX:
    p->last_status = l->status;
    str_copy(p->last_retry_after, sizeof p->last_retry_after, l->retry_after);
    upstream_detail(p, l, t);
    break;
  case FAIL_FIRST_BYTE:
    snprintf(p->last_err_msg, sizeof p->last_err_msg,
             "target %s sent nothing within its first-byte deadline (%u ms)%s", t->name, l->fb_ms,
             l->fb_on_progress ? " and generates no tokens" : "");
    break;
  case FAIL_TARGET_DOWN:
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s went down: %s", t->name,
             t->last_error[0] ? t->last_error : "unhealthy");
    break;
  case FAIL_TOO_BIG:
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s sent a response larger than %zu bytes", t->name,
             r->opts.max_response_bytes);
    break;
  default:
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s: %s", t->name, uv_strerror(err));
    /* Connection-level failures mark the target down until its next good health check. */
    if (kind == FAIL_CONNECT &&
        (err == UV_ECONNREFUSED || err == UV_ECONNRESET || err == UV_EOF || err == UV_EPIPE)) {
      r->self_down = true; /* one failed connection: the requests on its other connections stay */
      store_mark_down(r->store, l->target, p->last_err_msg);
      r->self_down = false;
    }
    break;
  }
  if (kind != FAIL_TOO_BIG) breaker_failure(&r->breakers[l->target], &r->opts.breaker, proxy_now(p->r));
  log_warn("upstream attempt failed", "id=%s target=%s attempt=%d hedge=%d err=\"%s\"", p->request_id,
           t->name, p->attempts, l->hedge, p->last_err_msg);
  proxy_leg_release(l);
  if (kind == FAIL_TOO_BIG) { /* another target would send as much: no retry */
    proxy_fail(p, 502, "upstream_error", NULL, p->last_err_msg, 0);
    return;
  }
  if (other_leg(l)->up) { /* the other copy is still running: it carries the request now */
    proxy_schedule(p);
    return;
  }
  if (p->winner == l && !p->client_started) { /* committed at its head, failed before a byte went out */
    p->winner = NULL;
    p->state = p->hedged ? PS_HEDGED : PS_SENT;
  }
  if (retryable(p)) {
    r->metrics.retries++;
    proxy_attempt(p);
    return;
  }
  if (p->client_started) {
    /* Mid-stream failure: tell the client in-band, then end the stream. */
    struct buf ev = {0};
    buf_puts(&ev, "data: ");
    http_error_json(&ev, p->last_err_msg, "upstream_error", NULL);
    buf_puts(&ev, "\n\n");
    http_resp_write(p->req, ev.base, ev.len);
    buf_free(&ev);
    p->stream_error = true;
    finish(p, 502);
    return;
  }
  give_up(p);
}

static void up_error(void *arg, enum fail_kind kind, int err) {
  struct leg *l = arg;
  l->up = NULL;
  leg_failed(l, l->too_big ? FAIL_TOO_BIG : kind, err);
}

static void up_end(void *arg) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  l->up = NULL;
  if (l->status >= 500 && l->status != 501) {
    leg_failed(l, FAIL_UPSTREAM_5XX, 0);
    return;
  }
  if (!p->winner) commit(p, l); /* a stream that ended without a data frame */
  if (l->streaming) {
    if (!p->client_started) client_start(p, 200, -1);
    if (!p->t_first) p->t_first = proxy_now(p->r);
    if (p->stream_error) { /* an error event relayed from upstream: a failed stream */
      if (p->done_held) http_resp_write(p->req, "data: [DONE]\n\n", 14);
      finish(p, 502);
    } else if (!proxy_conclude(p, 200, end_stream)) {
      end_stream(p);
    }
    return;
  }
  /* Buffered response (non-streaming, or an error/JSON answer to a stream request). */
  if (l->status == 200 && proxy_renames(p, l)) { /* the name the client asked for, back */
    buf_reset(&p->out);
    proxy_client_json(p, buf_slice(&l->body), &p->out);
    buf_reset(&l->body);
    buf_append_slice(&l->body, buf_slice(&p->out));
  }
  if (l->status == 200) { /* after the rename: the usage span points into the body sent */
    jscan_usage(l->body.base, l->body.len, &p->usage);
    proxy_meter_cost(p);
  }
  p->t_first = proxy_now(p->r);
  if (!proxy_conclude(p, l->status, answer_buffered)) answer_buffered(p);
}

/* The end of a complete stream, once its record is durable: the held [DONE], then the chunked end. */
static void end_stream(struct proxy *p) {
  if (p->done_held) http_resp_write(p->req, "data: [DONE]\n\n", 14);
  finish(p, 200);
}

/* A buffered answer, once its record is durable: the body, with usage.cost when the model has a price. */
static void answer_buffered(struct proxy *p) {
  struct leg *l = p->winner;
  struct slice parts[3];
  int n = proxy_meter_split(p, buf_slice(&l->body), parts);
  size_t len = 0;
  for (int i = 0; i < n; i++) len += parts[i].len;
  client_start(p, l->status, (int64_t)len);
  for (int i = 0; i < n; i++) http_resp_write(p->req, parts[i].base, parts[i].len);
  finish(p, l->status);
}

static struct slice up_resend(void *arg);
static const struct upstream_cbs up_cbs = {
    .head = up_head,
    .body = up_body,
    .end = up_end,
    .error = up_error,
    .resend = up_resend,
};

static void client_abort_cb(struct http_req *req) {
  struct proxy *p = req->data;
  p->r->metrics.client_aborts++;
  finish(p, 499); /* cancels what is in flight (the engine sees the connection close and stops) */
}

/* Build the upstream head of leg l to target t (in the router's scratch buffer, then copied into p's request
 * pool, where it stays while an exchange may send it); the body goes by reference. */
static struct slice build_head(struct proxy *p, const struct leg *l, const struct target *t, size_t body_len) {
  struct buf *h = &p->r->head_scratch;
  struct http_pool *pool = &p->r->pools[t->id];
  char key[272];
  struct slice auth = proxy_upstream_auth(p, t, key, sizeof key);
  buf_reset(h);
  buf_puts(h, p->chat         ? "POST /v1/chat/completions HTTP/1.1\r\nHost: "
              : p->embeddings ? "POST /v1/embeddings HTTP/1.1\r\nHost: "
                              : "POST /v1/completions HTTP/1.1\r\nHost: ");
  buf_puts(h, pool->authority);
  buf_puts(h, "\r\nContent-Type: application/json\r\nContent-Length: ");
  buf_append_u64(h, body_len);
  buf_puts(h, p->oai.stream ? "\r\nAccept: text/event-stream\r\nx-request-id: " : "\r\nAccept: application/json\r\nx-request-id: ");
  buf_puts(h, p->request_id);
  buf_append(h, "\r\n", 2);
  /* Traced: this attempt's span is the parent upstream. Else the client's traceparent goes through, only when
   * it cannot split the head (no CR/LF). */
  struct slice tp = p->traced ? slice_make(NULL, 0) : http_req_header(p->req, "traceparent");
  if (p->traced)
    proxy_trace_headers(p, l, h);
  else if (tp.len && tp.len < 128 && !memchr(tp.base, '\r', tp.len) && !memchr(tp.base, '\n', tp.len)) {
    buf_puts(h, "traceparent: ");
    buf_append_slice(h, tp);
    buf_append(h, "\r\n", 2);
  }
  if (auth.len && auth.len < 1024 && !memchr(auth.base, '\r', auth.len) && !memchr(auth.base, '\n', auth.len)) {
    buf_puts(h, "Authorization: ");
    buf_append_slice(h, auth);
    buf_append(h, "\r\n", 2);
  }
  if (t->remote && p->r->kr) {
    /* Signed for that node and these bytes: the request line's target and the body parts as sent. */
    char hop[HOP_HEADER_MAX];
    struct hop_bind hb = {.request_id = slice_cstr(p->request_id), .target = slice_cstr(t->remote_name),
                          .node = t->node_id};
    struct slice path = p->chat ? SLICE_LIT("/v1/chat/completions") : SLICE_LIT("/v1/completions");
    hop_digest("POST", path, p->parts, p->nparts, hb.digest);
    hop_sign(p->r->kr, HOP_INFER, (int64_t)time(NULL), rng_next(&p->r->rng), &hb, hop, sizeof hop);
    buf_puts(h, "x-infermesh-hop: ");
    buf_puts(h, hop);
    buf_puts(h, "\r\nx-infermesh-hop-target: ");
    buf_puts(h, t->remote_name);
    buf_append(h, "\r\n", 2);
  }
  buf_puts(h, "\r\n");
  char *copy = pool_alloc(&p->req->pool, h->len);
  memcpy(copy, h->base, h->len);
  return slice_make(copy, h->len);
}

static size_t body_len(const struct leg *l) {
  size_t n = 0;
  for (int i = 0; i < l->nparts; i++)
    n += l->parts[i].len;
  return n;
}

/* The client sends the head again on a fresh connection: another agent may have accepted the first copy's
 * single-use signature already, so a forwarded request gets a new one. */
static struct slice up_resend(void *arg) {
  struct leg *l = arg;
  const struct target *t = &l->p->r->store->targets[l->target];
  if (t->remote) l->head = build_head(l->p, l, t, body_len(l));
  return l->head;
}

void proxy_leg_send(struct proxy *p, struct leg *l, int id, bool hedge) {
  struct router *r = p->r;
  assert(!l->up && !p->winner && !p->client_started);
  assert(hedge ? p->state == PS_SENT : p->state <= PS_HEDGED);
  if (hedge || p->state != PS_HEDGED) p->state = hedge ? PS_HEDGED : PS_SENT;
  l->p = p;
  l->target = id;
  l->hedge = hedge;
  l->status = 0;
  l->streaming = l->too_big = false;
  l->fail = FAIL_NONE;
  p->tried[id / 64] |= 1ull << (id % 64);
  if (!hedge) {
    p->target = id;
    p->attempts++;
  }
  l->attempt = p->attempts;
  store_reserve(r->store, id);
  l->reserved = true;
  struct policy_target pt;
  uint64_t now = proxy_now(p->r);
  cand_record(&r->store->targets[id], &pt);
  l->pol = router_policy_for(r, p->oai.model);
  policy_on_route(l->pol, policy_request(p), &pt, now, &l->ticket);
  l->ticketed = true;
  if (r->routed_cb) r->routed_cb(r->routed_arg, id, p->preq.block_hashes, p->preq.nblocks, p->local_only);
  l->kv_tokens = p->kv_need;
  l->kv_seq = store_kv_reserve(r->store, id, l->kv_tokens);
  if (p->traced) proxy_trace_leg_start(p, l);
  l->head = build_head(p, l, &r->store->targets[id], proxy_leg_body(p, l, &r->store->targets[id]));
  sse_parser_free(&l->sse);
  memset(&l->sse, 0, sizeof l->sse);
  l->t_sent = proxy_now(p->r);
  breaker_on_send(&r->breakers[id], l->t_sent);
  l->fb_ms = deadline_first_byte_ms(r->store, id, p->oai.model, p->oai.stream == 1, p->oai.max_tokens,
                                    r->opts.first_byte_timeout_ms, r->opts.first_byte_timeout_max_ms,
                                    &l->fb_on_progress);
  l->fb_deadline = l->fb_ms ? l->t_sent + (uint64_t)l->fb_ms * 1000000u : 0;
  l->fb_checked = l->t_sent;
  l->x = (struct upstream_exchange){.cbs = &up_cbs, .arg = l};
  l->up = &l->x;
  r->io.ops->send(r->io.ctx, l->up, id, l->head, l->parts, l->nparts, r->opts.upstream_timeout_ms);
  proxy_schedule(p);
}

int proxy_candidates(struct proxy *p, struct router_cands *c) {
  return router_candidates(p->r, p->oai.model, p->tried, proxy_now(p->r), c);
}

int proxy_pick(struct proxy *p, const struct router_cands *c, uint64_t now) {
  struct router *r = p->r;
  assert(c->n >= 1);
  int id = c->ids[policy_pick(router_policy_for(r, p->oai.model), policy_request(p), c->pt, c->n, now)];
  if (p->traced && p->tr.sampled) proxy_trace_route(p, c->ids, c->n, id, now);
  return id;
}

void proxy_attempt(struct proxy *p) {
  struct router *r = p->r;
  struct router_cands c;
  int n = proxy_candidates(p, &c);
  if (n == 0 && p->attempts == 0 && proxy_fallback(p, true)) { /* the policy names a model that has targets */
    proxy_fallback_body(p);
    n = proxy_candidates(p, &c);
  }
  if (n == 0) {
    if (p->attempts == 0)
      fail(p, 503, "service_unavailable", "no healthy target serves this model right now; retry shortly", 1);
    else
      give_up(p); /* no other target: the last attempt's failure is the answer */
    return;
  }
  n = proxy_admit_filter(p, &c); /* admission: a target whose KV budget cannot fit it is no candidate */
  if (p->attempts == 0 && !http_req_header(p->req, "x-infermesh-slo").len) {
    /* The control plane's policy for the model sets the class of requests that do not name one. */
    const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
    if (cp && cp->slo[0]) p->slo_latency = cp->slo[0] == 'l';
  }
  uint64_t now = proxy_now(p->r);
  int id = -1;
  for (int i = 0; i < n && p->hop_target[0]; i++)
    if (strcmp(r->store->targets[c.ids[i]].name, p->hop_target) == 0) id = c.ids[i];
  if (id < 0) id = proxy_pick(p, &c, now);
  proxy_leg_send(p, p->legs[0].up ? &p->legs[1] : &p->legs[0], id, false);
  proxy_hedge_arm(p); /* hedging: a latency-class request gets a copy elsewhere if this one is slow */
  proxy_schedule(p);
}

/* Arrange the upstream body so a streaming request always reports usage (DESIGN §4.6), without copying
 * the client's bytes: the parts reference the client body around what we insert or replace. */
static void plan_body(struct proxy *p) {
  struct slice b = p->req->body;
  p->parts[0] = b;
  p->nparts = 1;
  if (!p->oai.stream || p->oai.include_usage == 1) return;
  p->strip_usage = true;
  if (p->oai.stream_options_null.len) {
    size_t off = (size_t)(p->oai.stream_options_null.base - b.base);
    p->parts[0] = slice_make(b.base, off);
    p->parts[1] = SLICE_LIT("{\"include_usage\":true}");
    p->parts[2] = slice_make(b.base + off + 4, b.len - off - 4);
    p->nparts = 3;
  } else if (!p->oai.has_stream_options) {
    const char *brace = memchr(b.base, '{', b.len); /* jscan guarantees an object */
    size_t off = (size_t)(brace - b.base) + 1;
    p->parts[0] = slice_make(b.base, off);
    p->parts[1] = SLICE_LIT(INJECT_STREAM_OPTIONS);
    p->parts[2] = slice_make(b.base + off, b.len - off);
    p->nparts = 3;
  } else if (p->oai.include_usage == 0) {
    size_t off = (size_t)(p->oai.include_usage_val.base - b.base);
    p->parts[0] = slice_make(b.base, off);
    p->parts[1] = SLICE_LIT("true");
    p->parts[2] = slice_make(b.base + off + p->oai.include_usage_val.len, b.len - off - p->oai.include_usage_val.len);
    p->nparts = 3;
  } else {
    struct slice so = p->oai.stream_options;
    size_t off = (size_t)(so.base - b.base) + 1;
    bool empty = true;
    for (size_t i = 1; i < so.len - 1 && empty; i++) empty = so.base[i] == ' ' || so.base[i] == '\n' || so.base[i] == '\t' || so.base[i] == '\r';
    p->parts[0] = slice_make(b.base, off);
    p->parts[1] = empty ? SLICE_LIT("\"include_usage\":true") : SLICE_LIT("\"include_usage\":true,");
    p->parts[2] = slice_make(b.base + off, b.len - off);
    p->nparts = 3;
  }
}

static void make_request_id(struct proxy *p) {
  struct slice in = http_req_header(p->req, "x-request-id");
  bool ok = in.len > 0 && in.len < sizeof p->request_id;
  for (size_t i = 0; ok && i < in.len; i++) ok = in.base[i] > 0x20 && in.base[i] < 0x7f;
  if (ok) {
    memcpy(p->request_id, in.base, in.len);
    p->request_id[in.len] = '\0';
  } else {
    snprintf(p->request_id, sizeof p->request_id, "req-%016llx", (unsigned long long)rng_next(&p->r->rng));
  }
}

void proxy_start(struct router *r, struct http_req *req, bool chat) {
  /* In req's pool: p lives as long as its request, which proxy_closed releases last. */
  struct proxy *p = pool_alloc(&req->pool, sizeof *p);
  memset(p, 0, sizeof *p);
  char err[256];
  p->r = r;
  p->timer.data = p;
  size_t words = (size_t)store_bitmap_words(r->store);
  p->tried = pool_alloc(&req->pool, words * sizeof *p->tried);
  memset(p->tried, 0, words * sizeof *p->tried);
  p->req = req;
  p->chat = chat;
  p->embeddings = slice_eqz(req->path, "/v1/embeddings");
  p->target = -1;
  p->legs[0].p = p->legs[1].p = p;
  p->legs[0].target = p->legs[1].target = -1;
  p->t0 = req->start_ns;
  r->inflight++;
  p->next = r->active;
  if (r->active) r->active->prev = p;
  r->active = p;
  make_request_id(p);
  if (r->tracer) proxy_trace_begin(p);
  req->data = p;
  req->abort_cb = client_abort_cb;
  req->drain_cb = drain_cb;
  struct slice hop = http_req_header(req, "x-infermesh-hop");
  if (hop.len) {
    struct slice ht = http_req_header(req, "x-infermesh-hop-target");
    /* The body is complete here (http_server dispatches after the whole message): bound by the signature. */
    struct hop_bind hb = {.request_id = slice_cstr(p->request_id), .target = ht, .node = r->node_id};
    hop_digest(http_method_name(req->method), req->url, &req->body, 1, hb.digest);
    int hrc = hop_verify(r->kr, &r->hop_seen, HOP_INFER, (int64_t)time(NULL), hop, &hb);
    if (hrc == -EBUSY) {
      fail(p, 503, "server_overloaded", "too many forwarded requests to remember: try again shortly", 1);
      return;
    }
    if (hrc != 0) {
      r->hops_refused++;
      fail(p, 403, "permission_denied", hop_refusal(hrc), 0);
      return;
    }
    r->hops_in++;
    p->local_only = true;
    if (ht.len < sizeof p->hop_target) memcpy(p->hop_target, ht.base, ht.len), p->hop_target[ht.len] = '\0';
    /* Never forward again: only this node's own targets are candidates. */
    for (int i = 0; i < r->store->ntargets; i++)
      if (r->store->targets[i].remote) p->tried[i / 64] |= 1ull << (i % 64);
  } else if (!proxy_admit_auth(p)) {
    return; /* 401 / 400 answered */
  }
  /* Any Content-Type is accepted (curl -d sends a form type): the body itself must be JSON. */
  int rc = jscan_request(req->body.base, req->body.len, &p->oai, err, sizeof err);
  if (rc != 0) {
    fail(p, 400, "invalid_request_error", err, 0);
    return;
  }
  if (chat != p->oai.is_chat) {
    fail(p, 400, "invalid_request_error",
         chat ? "missing required parameter: 'messages'" : "missing required parameter: 'prompt'", 0);
    return;
  }
  proxy_alias(p); /* one of this agent's aliases: routed (and allowed to tenants) as the model it names */
  if (!p->local_only && r->opts.ntenants && !tenant_model_allowed(&r->opts.tenants[p->tenant], p->oai.model)) {
    char msg[320];
    snprintf(msg, sizeof msg, "Tenant %s is not allowed to use the model '%.*s'; GET /v1/models lists yours",
             r->opts.tenants[p->tenant].name, (int)(p->oai.model.len > 200 ? 200 : p->oai.model.len),
             p->oai.model.base);
    r->metrics.forbidden++;
    fail(p, 403, "permission_error", msg, 0);
    return;
  }
  if (!store_model_known(r->store, p->oai.model)) proxy_fallback(p, false); /* an alias for a served model */
  if (!store_model_known(r->store, p->oai.model) && !store_all_reported(r->store)) {
    /* Some target has not said what it serves yet (starting, loading a model, down): the model may
     * well exist, so this is "try again", not "no such model". */
    fail(p, 503, "service_unavailable",
         r->store->ntargets ? "no target has reported this model yet (runtimes starting or down); retry shortly"
                            : "this agent has no runtime configured (pass --target URL)",
         2);
    return;
  }
  if (!store_model_known(r->store, p->oai.model)) {
    char msg[320];
    snprintf(msg, sizeof msg, "The model '%.*s' does not exist or no target serves it; GET /v1/models lists them",
             (int)(p->oai.model.len > 200 ? 200 : p->oai.model.len), p->oai.model.base);
    struct buf body = {0};
    http_error_json(&body, msg, "invalid_request_error", "model_not_found");
    struct http_header h[2] = {{SLICE_LIT("Content-Type"), SLICE_LIT("application/json")},
                               {SLICE_LIT("x-request-id"), slice_cstr(p->request_id)}};
    http_resp_start(req, 404, h, 2, (int64_t)body.len);
    http_resp_write(req, body.base, body.len);
    buf_free(&body);
    finish(p, 404);
    return;
  }
  if (!p->fallback_from[0] && !p->aliased) {
    size_t ml = p->oai.model.len < sizeof p->model ? p->oai.model.len : sizeof p->model - 1;
    memcpy(p->model, p->oai.model.base, ml);
    p->model[ml] = '\0';
    /* oai.model may point into oai.model_buf; keep it valid by pointing at our copy. */
    p->oai.model = slice_make(p->model, ml);
  }
  plan_body(p);
  if (p->fallback_from[0] || p->aliased) proxy_fallback_body(p);
  proxy_admit_estimate(p);
  if (p->local_only) {
    proxy_attempt(p); /* the sending node admitted it */
    return;
  }
  if (p->traced) proxy_trace_admit_begin(p);
  proxy_admit(p);
}

/* Move requests off target id: each leg in flight there (all, or only those that sent nothing to their
 * client) fails as kind. A failure may end requests or start queued ones, so the scan starts over after
 * each. */
static void move_off(struct router *r, int id, bool only_unanswered, enum fail_kind kind) {
  for (;;) {
    struct leg *hit = NULL;
    for (struct proxy *p = r->active; p && !hit; p = p->next)
      for (int i = 0; i < 2 && !hit; i++) {
        struct leg *l = &p->legs[i];
        if (l->up && l->target == id && !(only_unanswered && p->winner == l)) hit = l;
      }
    if (!hit) return;
    cancel(hit);
    leg_failed(hit, kind, UV_ECONNRESET); /* may free its request; the copies of one never share a target */
  }
}

void proxy_target_lost(struct router *r, int id) { move_off(r, id, false, FAIL_CONNECT); }

void proxy_target_down(struct router *r, int id) { move_off(r, id, true, FAIL_TARGET_DOWN); }

/* Past the first-byte deadline with nothing for the client: give the attempt up, unless the deadline holds
 * only while the target shows no progress (a non-streaming response of unknown length) and it does. */
static void leg_deadline(struct leg *l) {
  struct router *r = l->p->r;
  uint64_t now = proxy_now(r);
  if (l->fb_on_progress && deadline_progressing(&r->store->targets[l->target], l->fb_checked)) {
    l->fb_checked = now;
    l->fb_deadline = now + (uint64_t)l->fb_ms * 1000000u;
    proxy_schedule(l->p);
    return;
  }
  cancel(l);
  leg_failed(l, FAIL_FIRST_BYTE, UV_ETIMEDOUT);
}

static void legs_timer_cb(struct upstream_timer *tm) {
  struct proxy *p = tm->data;
  p->timer_use = PT_NONE;
  uint64_t now = proxy_now(p->r) + 1000000u; /* the loop's clock is coarser (ms): due within 1 ms is due */
  if (p->hedge_due && p->hedge_due <= now) proxy_hedge_fire(p); /* sends, or lets the hedge go */
  for (int i = 0; i < 2; i++) {
    struct leg *l = &p->legs[i];
    if (l->up && p->winner != l && l->fb_deadline && l->fb_deadline <= now) {
      leg_deadline(l); /* may end p; any other due leg gets its turn from the rescheduled timer */
      return;
    }
  }
  proxy_schedule(p);
}

void proxy_schedule(struct proxy *p) {
  if (p->timer_use == PT_QUEUE) return;
  uint64_t due = p->hedge_due && !p->hedged ? p->hedge_due : 0;
  for (int i = 0; i < 2; i++) {
    const struct leg *l = &p->legs[i];
    if (l->up && p->winner != l && l->fb_deadline && (!due || l->fb_deadline < due)) due = l->fb_deadline;
  }
  if (!due) {
    if (p->timer_use == PT_LEGS) proxy_timer_stop(p);
    p->timer_use = PT_NONE;
    return;
  }
  uint64_t now = proxy_now(p->r);
  uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
  proxy_timer(p, PT_LEGS, ms, legs_timer_cb);
}

/* Open streams get an error event and the end of their chunked body; requests not answered yet a 503. */
void proxy_shutdown_all(struct router *r) {
  while (r->active) {
    struct proxy *p = r->active; /* every branch below ends it: it leaves the list */
    if (p->client_started) {
      struct buf ev = {0};
      buf_puts(&ev, "data: ");
      http_error_json(&ev, "the serving node is shutting down (drain timeout); retry the request",
                      "server_shutting_down", NULL);
      buf_puts(&ev, "\n\n");
      http_resp_write(p->req, ev.base, ev.len);
      buf_free(&ev);
      p->stream_error = true;
      finish(p, 503);
    } else {
      fail(p, 503, "server_shutting_down", "the node is shutting down (drain timeout); retry the request", 1);
    }
  }
}
