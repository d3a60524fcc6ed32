/* The proxy state machine of one request: admit → pick → send → (retry, hedge) → relay → record. */
#include "route/proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/proxy_int.h"

#define INJECT_STREAM_OPTIONS "\"stream_options\":{\"include_usage\":true},"

static void timer_closed_cb(uv_handle_t *h) { free(h->data); }

static void proxy_free(struct proxy *p) {
  for (int i = 0; i < 2; i++) {
    buf_free(&p->legs[i].head);
    buf_free(&p->legs[i].body);
    sse_parser_free(&p->legs[i].sse);
  }
  buf_free(&p->out);
  if (p->timer_init) {
    uv_close((uv_handle_t *)&p->timer, timer_closed_cb); /* frees p */
    return;
  }
  free(p);
}

void proxy_timer(struct proxy *p, int use, uint64_t ms, uv_timer_cb cb) {
  if (!p->timer_init) {
    uv_timer_init(p->r->loop, &p->timer);
    p->timer.data = p;
    p->timer_init = true;
  }
  p->timer_use = use;
  uv_timer_start(&p->timer, cb, ms, 0);
}

#define POLICY_BLOCK 16 /* tokens per hashed prompt block: vLLM's default KV block */

/* The routing policy's view of target t (state/policy.h). */
static void policy_target_of(const struct target *t, uint64_t now, struct policy_target *pt) {
  memset(pt, 0, sizeof *pt);
  pt->id = t->id;
  pt->waiting = t->load.waiting;
  pt->running = t->load.running;
  pt->kv_usage = t->load.kv_usage;
  pt->num_gpu_blocks = t->load.num_gpu_blocks;
  pt->block_size = (int)t->load.block_size;
  pt->prefix_hit_rate = t->load.prefix_queries > 0 ? t->load.prefix_hits / t->load.prefix_queries : 0;
  pt->signal_age_ns = !t->updated_ns ? UINT64_MAX : now > t->updated_ns ? now - t->updated_ns : 0;
  pt->inflight = t->inflight;
  pt->routed_since_report = t->routed_since_report;
  pt->network_s = t->remote ? 0.001 : 0; /* one more hop, through the other node's agent */
  pt->degraded = t->gpu_degraded;
}

/* The request as the policy sees it: prompt blocks hashed from the raw messages/prompt bytes (equal prefixes
 * give equal hashes, which is all the router's own prefix index needs), once per request. */
static const struct policy_req *policy_request(struct proxy *p) {
  if (!p->hashed) {
    int n = policy_prompt_hashes(p->model, p->oai.prompt.base, p->oai.prompt.len, POLICY_BLOCK, p->hashes,
                                 PROXY_MAX_BLOCKS);
    p->preq = (struct policy_req){p->model, (int)p->prompt_est, (int)(p->kv_need - p->prompt_est), p->hashes,
                                  n < 0 ? 0 : n, POLICY_BLOCK, p->tenant};
    p->hashed = true;
  }
  return &p->preq;
}

void proxy_leg_release(struct leg *l) {
  struct router *r = l->p->r;
  if (l->ticketed) {
    struct proxy *p = l->p;
    uint64_t now = clock_mono_ns();
    if (p->t_first && p->winner == l) policy_on_first_token(l->pol, &l->ticket, p->t_first);
    int out = p->winner == l && p->usage.present ? (int)p->usage.completion_tokens : 0;
    policy_on_done(l->pol, &l->ticket, now, out);
    l->ticketed = false;
  }
  if (!l->reserved) return;
  store_release(r->store, l->target);
  if (l->kv_tokens) store_kv_release(r->store, l->target, l->kv_tokens, l->kv_seq);
  l->reserved = false;
  l->kv_tokens = 0;
}

/* Everything ends here: metrics, reservation release, log line, response end; then queued requests may go. */
static void finish(struct proxy *p, int status) {
  struct router *r = p->r;
  uint64_t now = clock_mono_ns();
  const char *tname = p->target >= 0 ? r->store->targets[p->target].name : "";
  for (int i = 0; i < 2; i++) {
    if (p->legs[i].up) { /* only on paths that end the request with a copy still running */
      hc_cancel(p->legs[i].up);
      p->legs[i].up = NULL;
    }
    proxy_leg_release(&p->legs[i]);
  }
  if (p->timer_init) uv_timer_stop(&p->timer);
  proxy_admit_end(p);
  r->inflight--;
  route_metrics_count(&r->metrics, p->model, status, tname);
  if (status < 400) {
    hist_observe(&r->metrics.latency, (double)(now - p->t0) / 1e9);
    if (p->t_first) hist_observe(&r->metrics.ttft, (double)(p->t_first - p->t0) / 1e9);
  }
  if (p->usage.present) {
    if (p->usage.prompt_tokens > 0) r->metrics.prompt_tokens += (uint64_t)p->usage.prompt_tokens;
    if (p->usage.completion_tokens > 0) r->metrics.completion_tokens += (uint64_t)p->usage.completion_tokens;
  }
  log_info("request", "id=%s model=\"%s\" target=%s status=%d stream=%d attempts=%d hedged=%d ms=%.1f ttft_ms=%.1f "
                      "prompt_tokens=%lld completion_tokens=%lld",
           p->request_id, p->model, tname[0] ? tname : "-", status, p->oai.stream, p->attempts, p->hedged,
           (double)(now - p->t0) / 1e6, p->t_first ? (double)(p->t_first - p->t0) / 1e6 : 0.0,
           (long long)(p->usage.present ? p->usage.prompt_tokens : -1),
           (long long)(p->usage.present ? p->usage.completion_tokens : -1));
  p->req->abort_cb = NULL;
  p->req->drain_cb = NULL;
  if (p->prev) p->prev->next = p->next;
  else r->active = p->next;
  if (p->next) p->next->prev = p->prev;
  http_resp_end(p->req);
  proxy_free(p);
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
  struct http_header h[7];
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
  http_resp_start(p->req, status, h, nh, len);
  p->client_started = true;
}

static struct leg *other_leg(struct leg *l) { return l == &l->p->legs[0] ? &l->p->legs[1] : &l->p->legs[0]; }

/* Could another leg still answer first (a copy in flight, or one about to be sent)? */
static bool race_open(struct proxy *p, struct leg *l) {
  return other_leg(l)->up != NULL || (p->timer_use == PT_HEDGE && !p->hedged);
}

/* Leg l sent the first byte: its answer goes to the client; the other copy (if any) is cancelled. */
static void commit(struct proxy *p, struct leg *l) {
  struct router *r = p->r;
  p->winner = l;
  p->target = l->target;
  if (p->timer_use == PT_HEDGE) {
    uv_timer_stop(&p->timer);
    p->timer_use = PT_NONE;
  }
  if (l->status == 200)
    store_ttfb_observe(r->store, l->target, l->streaming ? STORE_TTFB_STREAM : STORE_TTFB_FULL,
                       (double)(clock_mono_ns() - l->t_sent) / 1e9);
  struct leg *o = other_leg(l);
  if (o->up) proxy_hedge_lost(p, o);
  if (l->hedge) r->metrics.hedges_won++;
}

/* ---- upstream callbacks (arg: the leg) ---- */

static int up_head(void *arg, int status, const struct http_header *h, int n) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  l->status = status;
  struct slice ct = http_find_header(h, n, "content-type");
  str_copy(l->content_type, sizeof l->content_type, "");
  if (ct.len && ct.len < sizeof l->content_type) memcpy(l->content_type, ct.base, ct.len), l->content_type[ct.len] = 0;
  l->streaming = status == 200 && p->oai.stream && slice_starts(ct, "text/event-stream");
  buf_reset(&l->body);
  /* A complete answer that is not a stream (or an error that is no failure) wins at its head. */
  if (!p->winner && !l->streaming && (status < 500 || status == 501)) commit(p, l);
  return 0;
}

static int relay_frame(void *arg, struct slice frame, struct slice data) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  if (!p->winner) {
    if (data.len == 0 && race_open(p, l)) return 0; /* no data yet: not a first byte, nothing to relay */
    commit(p, l);
  }
  if (data.len && data.base[0] == '{') {
    if (jscan_is_usage_only_chunk(data.base, data.len)) {
      jscan_usage(data.base, data.len, &p->usage);
      if (p->strip_usage) return 0;
    } else {
      if (!p->t_first) p->t_first = clock_mono_ns();
      /* llama.cpp puts usage in its last chunk beside the choices instead of in a chunk of its own (some
       * runtimes send "usage":null in every chunk: only an object is worth a scan) */
      struct oai_usage u;
      if (proxy_has_usage_object(data) && jscan_usage(data.base, data.len, &u) == 0 && u.present)
        p->usage = u;
    }
  }
  /* The name the client asked for, back (a single-line data field: data lies inside frame). */
  if (proxy_renames(p, l) && data.len && data.base[0] == '{' && data.base >= frame.base &&
      data.base + data.len <= frame.base + frame.len) {
    buf_append(&p->out, frame.base, (size_t)(data.base - frame.base));
    proxy_client_json(p, data, &p->out);
    buf_append(&p->out, data.base + data.len, (size_t)(frame.base + frame.len - (data.base + data.len)));
    return 0;
  }
  buf_append_slice(&p->out, frame);
  return 0;
}

static void drain_cb(struct http_req *req) {
  struct proxy *p = req->data;
  if (p->paused && p->winner && p->winner->up) {
    p->paused = false;
    hc_resume(p->winner->up);
  }
}

static int up_body(void *arg, const char *data, size_t len) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  if (!l->streaming) {
    if (l->body.len + len > p->r->opts.max_response_bytes) {
      l->too_big = true;
      return 1; /* up_done follows with UV_ECANCELED */
    }
    buf_append(&l->body, data, len);
    return 0;
  }
  /* Every frame that arrived in this read goes out in one write: none waits for a later byte. */
  buf_reset(&p->out);
  int rc = sse_feed(&l->sse, data, len, relay_frame, l);
  if (p->out.len) {
    if (!p->client_started) client_start(p, 200, -1);
    http_resp_write(p->req, p->out.base, p->out.len);
  }
  if (rc != 0) return rc;
  if (!p->paused && p->winner == l && http_resp_queued(p->req) > HTTP_WRITE_HIGH_WATER) {
    p->paused = true;
    hc_pause(l->up);
  }
  return 0;
}

static bool retryable(struct proxy *p) { return !p->client_started && p->attempts < p->r->opts.max_attempts; }

static void up_done(void *arg, int err) {
  struct leg *l = arg;
  struct proxy *p = l->p;
  struct router *r = p->r;
  struct target *t = &r->store->targets[l->target];
  l->up = NULL;
  if (err == 0 && l->status >= 500 && l->status != 501) {
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s answered %d", t->name, l->status);
    err = -1;
  }
  if (l->too_big) {
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s sent a response larger than %zu bytes", t->name,
             r->opts.max_response_bytes);
    fail(p, 502, "upstream_error", p->last_err_msg, 0);
    return;
  }
  if (err != 0) {
    r->metrics.upstream_errors++;
    if (err != -1) {
      snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s: %s", t->name, uv_strerror(err));
      /* Connection-level failures mark the target down until its next good health check. */
      if (err == UV_ECONNREFUSED || err == UV_ECONNRESET || err == UV_EOF || err == UV_EPIPE)
        store_mark_down(r->store, l->target, p->last_err_msg);
    }
    log_warn("upstream attempt failed", "id=%s target=%s attempt=%d hedge=%d err=\"%s\"", p->request_id, t->name,
             p->attempts, l->hedge, p->last_err_msg);
    proxy_leg_release(l);
    if (other_leg(l)->up) return; /* the other copy is still running: it carries the request now */
    if (p->winner == l && !p->client_started) p->winner = NULL;
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
      finish(p, 502);
      return;
    }
    if (l->status >= 500 && l->body.len) {
      p->winner = l;
      p->target = l->target;
      client_start(p, l->status, (int64_t)l->body.len);
      http_resp_write(p->req, l->body.base, l->body.len);
      finish(p, l->status);
      return;
    }
    fail(p, err == UV_ETIMEDOUT ? 504 : 502, "upstream_error", p->last_err_msg, 0);
    return;
  }
  if (!p->winner) commit(p, l); /* a stream that ended without a data frame */
  if (l->streaming) {
    if (!p->client_started) client_start(p, 200, -1);
    if (!p->t_first) p->t_first = clock_mono_ns();
    finish(p, 200);
    return;
  }
  /* Buffered response (non-streaming, or an error/JSON answer to a stream request). */
  if (l->status == 200) jscan_usage(l->body.base, l->body.len, &p->usage);
  p->t_first = clock_mono_ns();
  if (l->status == 200 && proxy_renames(p, l)) { /* the name the client asked for, back */
    buf_reset(&p->out);
    proxy_client_json(p, buf_slice(&l->body), &p->out);
    buf_reset(&l->body);
    buf_append_slice(&l->body, buf_slice(&p->out));
  }
  client_start(p, l->status, (int64_t)l->body.len);
  http_resp_write(p->req, l->body.base, l->body.len);
  finish(p, l->status);
}

static struct slice up_resend(void *arg);
static const struct hc_callbacks up_cbs = {
    .on_head = up_head,
    .on_body = up_body,
    .on_done = up_done,
    .on_resend = up_resend,
};

static void client_abort_cb(struct http_req *req) {
  struct proxy *p = req->data;
  p->r->metrics.client_aborts++;
  finish(p, 499); /* cancels what is in flight (the engine sees the connection close and stops) */
}

/* Build the upstream head for target t; the body goes by reference. */
static void build_head(struct proxy *p, struct buf *h, const struct target *t, size_t body_len) {
  struct http_pool *pool = &p->r->pools[t->id];
  struct slice tp = http_req_header(p->req, "traceparent");
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
  /* Pass these through only when they cannot split the head (no CR/LF). */
  if (tp.len && tp.len < 128 && !memchr(tp.base, '\r', tp.len) && !memchr(tp.base, '\n', tp.len)) {
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
    char hop[HOP_HEADER_MAX];
    router_hop_sign(p->r->kr, HOP_INFER, (int64_t)time(NULL), rng_next(&p->r->rng), p->request_id, t->remote_name,
                    hop, sizeof hop);
    buf_puts(h, "x-infermesh-hop: ");
    buf_puts(h, hop);
    buf_puts(h, "\r\nx-infermesh-hop-target: ");
    buf_puts(h, t->remote_name);
    buf_append(h, "\r\n", 2);
  }
  buf_puts(h, "\r\n");
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
  if (t->remote) build_head(l->p, &l->head, t, body_len(l));
  return buf_slice(&l->head);
}

void proxy_leg_send(struct proxy *p, struct leg *l, int id, bool hedge) {
  struct router *r = p->r;
  l->p = p;
  l->target = id;
  l->hedge = hedge;
  l->status = 0;
  l->streaming = l->too_big = false;
  p->tried[id / 64] |= 1ull << (id % 64);
  if (!hedge) {
    p->target = id;
    p->attempts++;
  }
  store_reserve(r->store, id);
  l->reserved = true;
  struct policy_target pt;
  uint64_t now = clock_mono_ns();
  policy_target_of(&r->store->targets[id], now, &pt);
  l->pol = router_policy_for(r, p->oai.model);
  policy_on_route(l->pol, policy_request(p), &pt, now, &l->ticket);
  l->ticketed = true;
  l->kv_tokens = p->kv_need;
  l->kv_seq = store_kv_reserve(r->store, id, l->kv_tokens);
  build_head(p, &l->head, &r->store->targets[id], proxy_leg_body(p, l, &r->store->targets[id]));
  sse_parser_free(&l->sse);
  memset(&l->sse, 0, sizeof l->sse);
  l->t_sent = clock_mono_ns();
  l->up = hc_request(&r->pools[id], buf_slice(&l->head), l->parts, l->nparts, &up_cbs, l,
                     r->opts.upstream_timeout_ms);
}

int proxy_candidates(struct proxy *p, int *ids) {
  struct router *r = p->r;
  int n = store_candidates(r->store, p->oai.model, p->tried, ids, STORE_MAX_TARGETS);
  return route_ctl_filter(&r->ctl, r->store, p->oai.model, ids, n);
}

void proxy_attempt(struct proxy *p) {
  struct router *r = p->r;
  int ids[STORE_MAX_TARGETS];
  int n = proxy_candidates(p, ids);
  if (n == 0 && p->attempts == 0 && proxy_fallback(p, true)) { /* the policy names a model that has targets */
    proxy_fallback_body(p);
    n = proxy_candidates(p, ids);
  }
  if (n == 0) {
    if (p->attempts == 0)
      fail(p, 503, "service_unavailable", "no healthy target serves this model right now; retry shortly", 1);
    else
      fail(p, 502, "upstream_error", p->last_err_msg, 1);
    return;
  }
  n = proxy_admit_filter(p, ids, n); /* admission: a target whose KV budget cannot fit it is no candidate */
  if (p->attempts == 0 && !http_req_header(p->req, "x-infermesh-slo").len) {
    /* The control plane's policy for the model sets the class of requests that do not name one. */
    const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
    if (cp && cp->slo[0]) p->slo_latency = cp->slo[0] == 'l';
  }
  uint64_t now = clock_mono_ns();
  int id = -1;
  for (int i = 0; i < n && p->hop_target[0]; i++)
    if (strcmp(r->store->targets[ids[i]].name, p->hop_target) == 0) id = ids[i];
  if (id < 0) {
    struct policy_target c[STORE_MAX_TARGETS];
    for (int i = 0; i < n; i++) policy_target_of(&r->store->targets[ids[i]], now, &c[i]);
    id = ids[policy_pick(router_policy_for(r, p->oai.model), policy_request(p), c, n, now)];
  }
  proxy_leg_send(p, p->legs[0].up ? &p->legs[1] : &p->legs[0], id, false);
  proxy_hedge_arm(p); /* hedging: a latency-class request gets a copy elsewhere if this one is slow */
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
  /* Zeroed up to the prompt-hash scratch (4 KiB, written before it is read): a memset less per request. */
  struct proxy *p = xmalloc(sizeof *p);
  memset(p, 0, offsetof(struct proxy, hashes));
  char err[256];
  p->r = r;
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
  req->data = p;
  req->abort_cb = client_abort_cb;
  req->drain_cb = drain_cb;
  struct slice hop = http_req_header(req, "x-infermesh-hop");
  if (hop.len) {
    struct slice ht = http_req_header(req, "x-infermesh-hop-target");
    int hrc = router_hop_verify(r->kr, &r->hop_seen, HOP_INFER, (int64_t)time(NULL), hop,
                                slice_cstr(p->request_id), ht);
    if (hrc == -EBUSY) {
      fail(p, 503, "server_overloaded", "too many forwarded requests to remember: try again shortly", 1);
      return;
    }
    if (hrc != 0) {
      r->hops_refused++;
      fail(p, 403, "permission_denied",
           hrc == -ETIMEDOUT   ? "forwarded request outside the allowed clock skew: check the nodes' clocks"
           : hrc == -EALREADY ? "forwarded request already accepted once (a replayed signature)"
                              : "forwarded request not signed with this cluster's key",
           0);
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
  if (p->local_only)
    proxy_attempt(p); /* the sending node admitted it */
  else
    proxy_admit(p);
}

void router_target_lost(struct router *r, int id) {
  policy_forget_target(r->policy, id);
  for (int i = 0; i < 8 && r->strategies[i]; i++) policy_forget_target(r->strategies[i], id);
  struct proxy *p = r->active;
  while (p) {
    struct proxy *next = p->next;
    for (int i = 0; i < 2; i++) {
      struct leg *l = &p->legs[i];
      if (l->target == id && l->up) {
        hc_cancel(l->up);
        l->up = NULL;
        up_done(l, UV_ECONNRESET); /* may free p; the copies of one request never share a target */
        break;
      }
    }
    p = next;
  }
}
