/* The proxy state machine of one request: pick → send → (retry) → relay → record. */
#include "route/proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/sse.h"
#include "route/jscan.h"
#include "route/router.h"

#define INJECT_STREAM_OPTIONS "\"stream_options\":{\"include_usage\":true},"

struct proxy {
  struct router *r;
  struct proxy *prev, *next; /* r->active */
  bool local_only;           /* forwarded by another node's agent: only this node's own targets */
  char hop_target[64];       /* the target it asked for (a hint) */
  struct http_req *req;
  struct oai_req oai;
  bool chat;
  char model[256];
  char request_id[48];
  int target;    /* chosen target id, -1 none */
  bool reserved; /* target's reservation is held */
  bool too_big;  /* the response exceeded max_response_bytes */
  int attempts;
  uint64_t tried[STORE_MAX_TARGETS / 64];
  struct hc_req *up;
  struct buf head;        /* upstream request head */
  struct slice parts[3];  /* upstream body: the client's bytes by reference, plus what we insert */
  int nparts;
  bool strip_usage;       /* we asked for usage the client did not: drop the usage-only chunk */
  /* response */
  int status;
  char content_type[96];
  struct buf body;        /* buffered non-streaming response (or upstream error body) */
  struct sse_parser sse;
  struct buf out;         /* frames of one upstream read, sent to the client in one write */
  bool streaming;         /* relaying an SSE stream to the client */
  bool client_started;    /* bytes went to the client: no more retries */
  bool paused;
  uint64_t t0, t_first;
  struct oai_usage usage;
  int last_err;
  char last_err_msg[128];
};

static void attempt(struct proxy *p);

static void proxy_free(struct proxy *p) {
  buf_free(&p->head);
  buf_free(&p->body);
  buf_free(&p->out);
  sse_parser_free(&p->sse);
  free(p);
}

/* Everything ends here: metrics, reservation release, log line, response end. */
static void finish(struct proxy *p, int status) {
  struct router *r = p->r;
  uint64_t now = clock_mono_ns();
  const char *tname = p->target >= 0 ? r->store->targets[p->target].name : "";
  if (p->reserved) store_release(r->store, p->target);
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
  log_info("request", "id=%s model=\"%s\" target=%s status=%d stream=%d attempts=%d ms=%.1f ttft_ms=%.1f "
                      "prompt_tokens=%lld completion_tokens=%lld",
           p->request_id, p->model, tname[0] ? tname : "-", status, p->oai.stream, p->attempts,
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
}

static void fail(struct proxy *p, int status, const char *type, const char *message, int retry_after) {
  struct buf body = {0};
  char ra[16];
  char tgt[64] = "";
  struct http_header h[4];
  int nh = 0;
  http_error_json(&body, message, type, NULL);
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
  http_resp_start(p->req, status, h, nh, (int64_t)body.len);
  http_resp_write(p->req, body.base, body.len);
  buf_free(&body);
  finish(p, status);
}

/* Start the client's response with our headers (once). */
static void client_start(struct proxy *p, int status, int64_t len) {
  struct http_header h[6];
  int nh = 0;
  const char *tname = p->r->store->targets[p->target].name;
  h[nh++] = (struct http_header){SLICE_LIT("Content-Type"),
                                 slice_cstr(p->content_type[0] ? p->content_type : "application/json")};
  if (p->streaming) h[nh++] = (struct http_header){SLICE_LIT("Cache-Control"), SLICE_LIT("no-cache")};
  h[nh++] = (struct http_header){SLICE_LIT("x-request-id"), slice_cstr(p->request_id)};
  const struct target *t = &p->r->store->targets[p->target];
  h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-target"), slice_cstr(tname)};
  h[nh++] = (struct http_header){SLICE_LIT("x-infermesh-node"), slice_cstr(t->remote ? t->node : p->r->opts.node_name)};
  http_resp_start(p->req, status, h, nh, len);
  p->client_started = true;
}

/* ---- upstream callbacks ---- */

static int up_head(void *arg, int status, const struct http_header *h, int n) {
  struct proxy *p = arg;
  p->status = status;
  struct slice ct = http_find_header(h, n, "content-type");
  str_copy(p->content_type, sizeof p->content_type, "");
  if (ct.len && ct.len < sizeof p->content_type) memcpy(p->content_type, ct.base, ct.len), p->content_type[ct.len] = 0;
  p->streaming = status == 200 && p->oai.stream && slice_starts(ct, "text/event-stream");
  buf_reset(&p->body);
  return 0;
}

static int relay_frame(void *arg, struct slice frame, struct slice data) {
  struct proxy *p = arg;
  if (data.len && data.base[0] == '{') {
    if (jscan_is_usage_only_chunk(data.base, data.len)) {
      jscan_usage(data.base, data.len, &p->usage);
      if (p->strip_usage) return 0;
    } else if (!p->t_first) {
      p->t_first = clock_mono_ns();
    }
  }
  buf_append_slice(&p->out, frame);
  return 0;
}

static void drain_cb(struct http_req *req) {
  struct proxy *p = req->data;
  if (p->paused && p->up) {
    p->paused = false;
    hc_resume(p->up);
  }
}

static int up_body(void *arg, const char *data, size_t len) {
  struct proxy *p = arg;
  if (!p->streaming) {
    if (p->body.len + len > p->r->opts.max_response_bytes) {
      p->too_big = true;
      return 1; /* up_done follows with UV_ECANCELED */
    }
    buf_append(&p->body, data, len);
    return 0;
  }
  /* Every frame that arrived in this read goes out in one write: none waits for a later byte. */
  buf_reset(&p->out);
  int rc = sse_feed(&p->sse, data, len, relay_frame, p);
  if (p->out.len) {
    if (!p->client_started) client_start(p, 200, -1);
    http_resp_write(p->req, p->out.base, p->out.len);
  }
  if (rc != 0) return rc;
  if (!p->paused && http_resp_queued(p->req) > HTTP_WRITE_HIGH_WATER) {
    p->paused = true;
    hc_pause(p->up);
  }
  return 0;
}

static bool retryable(struct proxy *p) { return !p->client_started && p->attempts < p->r->opts.max_attempts; }

static void up_done(void *arg, int err) {
  struct proxy *p = arg;
  struct router *r = p->r;
  struct target *t = &r->store->targets[p->target];
  p->up = NULL;
  if (err == 0 && p->status >= 500 && p->status != 501) {
    snprintf(p->last_err_msg, sizeof p->last_err_msg, "target %s answered %d", t->name, p->status);
    err = -1;
  }
  if (p->too_big) {
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
        store_mark_down(r->store, p->target, p->last_err_msg);
    }
    log_warn("upstream attempt failed", "id=%s target=%s attempt=%d err=\"%s\"", p->request_id, t->name,
             p->attempts, p->last_err_msg);
    if (retryable(p)) {
      r->metrics.retries++;
      store_release(r->store, p->target);
      p->reserved = false;
      attempt(p);
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
    if (p->status >= 500 && p->body.len) {
      client_start(p, p->status, (int64_t)p->body.len);
      http_resp_write(p->req, p->body.base, p->body.len);
      finish(p, p->status);
      return;
    }
    fail(p, err == UV_ETIMEDOUT ? 504 : 502, "upstream_error", p->last_err_msg, 0);
    return;
  }
  if (p->streaming) {
    if (!p->client_started) client_start(p, 200, -1);
    if (!p->t_first) p->t_first = clock_mono_ns();
    finish(p, 200);
    return;
  }
  /* Buffered response (non-streaming, or an error/JSON answer to a stream request). */
  if (p->status == 200) jscan_usage(p->body.base, p->body.len, &p->usage);
  p->t_first = clock_mono_ns();
  client_start(p, p->status, (int64_t)p->body.len);
  http_resp_write(p->req, p->body.base, p->body.len);
  finish(p, p->status);
}

static const struct hc_callbacks up_cbs = {up_head, up_body, up_done};

static void client_abort_cb(struct http_req *req) {
  struct proxy *p = req->data;
  p->r->metrics.client_aborts++;
  if (p->up) {
    hc_cancel(p->up); /* closes the upstream connection: the engine stops generating */
    p->up = NULL;
  }
  finish(p, 499);
}

/* Build the upstream head for target t; the body goes by reference. */
static void build_head(struct proxy *p, const struct target *t, size_t body_len) {
  struct http_pool *pool = &p->r->pools[t->id];
  struct slice tp = http_req_header(p->req, "traceparent");
  struct slice auth = http_req_header(p->req, "authorization");
  struct buf *h = &p->head;
  buf_reset(h);
  buf_puts(h, p->chat ? "POST /v1/chat/completions HTTP/1.1\r\nHost: " : "POST /v1/completions HTTP/1.1\r\nHost: ");
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
    char hop[128];
    router_hop_sign(p->r->kr, (int64_t)time(NULL), p->request_id, t->remote_name, hop, sizeof hop);
    buf_puts(h, "x-infermesh-hop: ");
    buf_puts(h, hop);
    buf_puts(h, "\r\nx-infermesh-hop-target: ");
    buf_puts(h, t->remote_name);
    buf_append(h, "\r\n", 2);
  }
  buf_puts(&p->head, "\r\n");
}

static void attempt(struct proxy *p) {
  struct router *r = p->r;
  int ids[STORE_MAX_TARGETS];
  int n = store_candidates(r->store, p->oai.model, p->tried, ids, STORE_MAX_TARGETS);
  if (n == 0) {
    if (p->attempts == 0)
      fail(p, 503, "service_unavailable", "no healthy target serves this model right now; retry shortly", 1);
    else
      fail(p, 502, "upstream_error", p->last_err_msg, 1);
    return;
  }
  uint64_t now = clock_mono_ns();
  int id = -1;
  for (int i = 0; i < n && p->hop_target[0]; i++)
    if (strcmp(r->store->targets[ids[i]].name, p->hop_target) == 0) id = ids[i];
  if (id < 0) id = score_pick(r->store, ids, n, &r->score, now, &r->rng);
  p->target = id;
  p->tried[id / 64] |= 1ull << (id % 64);
  p->attempts++;
  p->status = 0;
  store_reserve(r->store, id);
  p->reserved = true;
  size_t body_len = 0;
  for (int i = 0; i < p->nparts; i++) body_len += p->parts[i].len;
  build_head(p, &r->store->targets[id], body_len);
  sse_parser_free(&p->sse);
  memset(&p->sse, 0, sizeof p->sse);
  p->up = hc_request(&r->pools[id], buf_slice(&p->head), p->parts, p->nparts, &up_cbs, p, r->opts.upstream_timeout_ms);
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
  struct proxy *p = xcalloc(1, sizeof *p);
  char err[256];
  p->r = r;
  p->req = req;
  p->chat = chat;
  p->target = -1;
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
    int hrc = router_hop_verify(r->kr, (int64_t)time(NULL), hop, slice_cstr(p->request_id), ht);
    if (hrc != 0) {
      r->hops_refused++;
      fail(p, 403, "permission_denied",
           hrc == -ETIMEDOUT ? "forwarded request outside the allowed clock skew: check the nodes' clocks"
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
  size_t ml = p->oai.model.len < sizeof p->model ? p->oai.model.len : sizeof p->model - 1;
  memcpy(p->model, p->oai.model.base, ml);
  p->model[ml] = '\0';
  /* oai.model may point into oai.model_buf; keep it valid by pointing at our copy. */
  p->oai.model = slice_make(p->model, ml);
  plan_body(p);
  attempt(p);
}

void router_target_lost(struct router *r, int id) {
  struct proxy *p = r->active;
  while (p) {
    struct proxy *next = p->next;
    if (p->target == id && p->up) {
      hc_cancel(p->up);
      p->up = NULL;
      up_done(p, UV_ECONNRESET); /* may free p and others' order is kept: next was read first */
    }
    p = next;
  }
}
