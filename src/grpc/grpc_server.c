/* gRPC calls on HTTP/2 streams: dispatch through the method table, authorization, deadlines, cancellation and
 * the response (headers, length-prefixed messages, grpc-status trailers). */
#include "grpc/grpc_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

struct grpc_call {
  struct grpc_server *g;
  struct http_req *req; /* NULL once its response ended */
  ProtobufCMessage *in;
  uint64_t deadline_ns; /* monotonic; 0 = none */
  uv_timer_t timer;
  bool timer_on;   /* the deadline timer was initialized (closing it frees the call) */
  bool finished;   /* grpc_finish ran, or the client cancelled */
  bool dispatched; /* the handler is running or ran */
  int holds;
  void (*cancel_cb)(struct grpc_call *call, void *arg);
  void *cancel_arg;
};

bool grpc_is_call(const struct http_req *req) {
  struct slice ct = http_req_header(req, "content-type");
  return ct.len >= 16 && strncasecmp(ct.base, "application/grpc", 16) == 0 &&
         (ct.len == 16 || ct.base[16] == '+' || ct.base[16] == ';');
}

void grpc_metrics(const struct grpc_server *g, struct buf *out) {
  buf_printf(
      out,
      "# HELP infermesh_grpc_calls_total gRPC calls dispatched to a method's handler.\n"
      "# TYPE infermesh_grpc_calls_total counter\ninfermesh_grpc_calls_total %llu\n"
      "# HELP infermesh_grpc_refused_total gRPC calls answered with an error before any handler (unknown "
      "method, credentials, malformed or compressed message, deadline already passed).\n"
      "# TYPE infermesh_grpc_refused_total counter\ninfermesh_grpc_refused_total %llu\n",
      (unsigned long long)g->calls, (unsigned long long)g->refused);
}

const struct grpc_env *grpc_call_env(const struct grpc_call *call) { return &call->g->env; }
struct http_req *grpc_call_req(struct grpc_call *call) {
  return call->req;
}
bool grpc_call_over(const struct grpc_call *call) { return call->finished; }

static const struct http_header resp_headers[] = {{{"content-type", 12}, {"application/grpc", 16}}};

static void start_response(struct http_req *req) {
  if (!req->resp_started) http_resp_start(req, 200, resp_headers, 1, -1);
}

static void call_free(struct grpc_call *call) {
  if (call->in) protobuf_c_message_free_unpacked(call->in, NULL);
  free(call);
}

static void timer_closed_cb(uv_handle_t *h) { call_free(h->data); }

/* The call goes once it is finished and nothing holds it. */
static void call_maybe_free(struct grpc_call *call) {
  if (!call->finished || call->holds > 0) return;
  if (call->timer_on)
    uv_close((uv_handle_t *)&call->timer, timer_closed_cb);
  else
    call_free(call);
}

/* The call is over before its handler ended it (cancel, deadline): tell the handler to let go. */
static void call_cancelled(struct grpc_call *call) {
  if (call->timer_on) uv_timer_stop(&call->timer);
  if (call->cancel_cb) {
    void (*cb)(struct grpc_call *, void *) = call->cancel_cb;
    call->cancel_cb = NULL;
    cb(call, call->cancel_arg);
  }
}

static void end_http(struct grpc_call *call, int code, const char *msg) {
  struct http_req *req = call->req;
  call->req = NULL;
  req->abort_cb = NULL;
  req->data = NULL;
  if (req->aborted) {
    http_resp_end(req);
    return;
  }
  start_response(req);
  char status[8], enc[512];
  snprintf(status, sizeof status, "%d", code);
  struct http_header tr[2] = {{SLICE_LIT("grpc-status"), slice_cstr(status)}};
  int n = 1;
  if (msg && msg[0]) {
    grpc_percent_encode(msg, enc, sizeof enc);
    tr[n++] = (struct http_header){SLICE_LIT("grpc-message"), slice_cstr(enc)};
  }
  http_resp_end_trailers(req, tr, n);
}

void grpc_finish(struct grpc_call *call, int code, const char *msg) {
  if (call->finished) return;
  call->finished = true;
  if (code != GRPC_OK) call->g->refused += !call->dispatched;
  call->holds++; /* the handler's cancel callback may release its own hold */
  end_http(call, code, msg);
  call_cancelled(call);
  grpc_call_release(call);
}

bool grpc_send(struct grpc_call *call, const ProtobufCMessage *msg) {
  if (call->finished) return false;
  size_t len = protobuf_c_message_get_packed_size(msg);
  uint8_t stackbuf[4096];
  uint8_t *p = len + GRPC_HEADER_LEN <= sizeof stackbuf ? stackbuf : xmalloc(len + GRPC_HEADER_LEN);
  grpc_frame_header(p, (uint32_t)len);
  protobuf_c_message_pack(msg, p + GRPC_HEADER_LEN);
  start_response(call->req);
  http_resp_write(call->req, p, len + GRPC_HEADER_LEN);
  if (p != stackbuf) free(p);
  return true;
}

void grpc_send_headers(struct grpc_call *call) {
  if (call->finished || call->req->resp_started) return;
  start_response(call->req);
  http_resp_flush(call->req);
}

void grpc_reply(struct grpc_call *call, const ProtobufCMessage *msg) {
  if (grpc_send(call, msg)) grpc_finish(call, GRPC_OK, NULL);
}

void grpc_call_on_cancel(struct grpc_call *call, void (*cb)(struct grpc_call *call, void *arg), void *arg) {
  call->cancel_cb = cb;
  call->cancel_arg = arg;
}

void grpc_call_hold(struct grpc_call *call) { call->holds++; }

void grpc_call_release(struct grpc_call *call) {
  call->holds--;
  call_maybe_free(call);
}

/* The client reset the stream (a cancel) or went away. */
static void abort_cb(struct http_req *req) {
  struct grpc_call *call = req->data;
  call->finished = true;
  call->holds++;
  end_http(call, GRPC_CANCELLED, NULL);
  call_cancelled(call);
  grpc_call_release(call);
}

static void deadline_cb(uv_timer_t *t) {
  grpc_finish(t->data, GRPC_DEADLINE_EXCEEDED, "the call's deadline (grpc-timeout) passed");
}

static const struct grpc_method *method_find(const struct grpc_env *env, struct slice path) {
  for (size_t i = 0; i < env->nmethods; i++)
    if (slice_eqz(path, env->methods[i].path)) return &env->methods[i];
  return NULL;
}

/* An answer before any handler: a response with no message, its status in the trailers. */
static void refuse(struct grpc_server *g, struct http_req *req, int code, const char *msg) {
  struct grpc_call *call = xcalloc(1, sizeof *call);
  call->g = g;
  call->req = req;
  grpc_finish(call, code, msg);
}

void grpc_handle(struct grpc_server *g, struct http_req *req) {
  if (req->version != 20 || !http_req_has_trailers(req)) {
    struct buf b = {0};
    http_error_json(&b,
                    "gRPC needs HTTP/2 (prior knowledge h2c, or ALPN h2 over TLS): its status travels in "
                    "trailers",
                    "invalid_request_error", "http_version_not_supported");
    http_resp_send(req, 505, "application/json", b.base, b.len, NULL, 0);
    buf_free(&b);
    return;
  }
  const struct grpc_method *m = method_find(&g->env, req->path);
  const struct api_route *rt = m ? api_route_find(HTTP_M_POST, req->path, NULL) : NULL;
  if (!m || !rt || req->method != HTTP_M_POST) {
    char msg[200];
    snprintf(msg, sizeof msg, "unknown method %.*s", (int)(req->path.len > 120 ? 120 : req->path.len),
             req->path.base);
    refuse(g, req, GRPC_UNIMPLEMENTED, msg);
    return;
  }
  enum api_verdict v = g->env.verdict(g->env.arg, rt, req);
  if (v != API_ALLOW) {
    const char *code;
    log_info("refused a gRPC call", "method=%s verdict=%d", m->path, (int)v);
    refuse(g, req, v == API_UNAUTH ? GRPC_UNAUTHENTICATED : GRPC_PERMISSION_DENIED,
           api_verdict_message(v, rt, &code));
    return;
  }
  struct slice enc = http_req_header(req, "grpc-encoding");
  if (enc.len && !slice_eqz(enc, "identity")) {
    refuse(g, req, GRPC_UNIMPLEMENTED, "compressed messages are not supported: send them uncompressed");
    return;
  }
  uint64_t timeout_ns = 0;
  struct slice to = http_req_header(req, "grpc-timeout");
  if (to.len && grpc_timeout_parse(to, &timeout_ns) != 0) {
    refuse(g, req, GRPC_INVALID_ARGUMENT, "malformed grpc-timeout");
    return;
  }
  uint64_t now = clock_mono_ns();
  if (to.len && (timeout_ns == 0 || now - req->start_ns >= timeout_ns)) {
    refuse(g, req, GRPC_DEADLINE_EXCEEDED, "the call's deadline (grpc-timeout) passed before it was served");
    return;
  }
  struct slice msg;
  const char *err;
  int code = grpc_frame_one(req->body, &msg, &err);
  if (code != GRPC_OK) {
    refuse(g, req, code, err);
    return;
  }
  ProtobufCMessage *in = protobuf_c_message_unpack(m->in, NULL, msg.len, (const uint8_t *)msg.base);
  if (!in) {
    char emsg[160];
    snprintf(emsg, sizeof emsg, "the request is not a valid %s message", m->in->name);
    refuse(g, req, GRPC_INVALID_ARGUMENT, emsg);
    return;
  }
  struct grpc_call *call = xcalloc(1, sizeof *call);
  call->g = g;
  call->req = req;
  call->in = in;
  call->dispatched = true;
  g->calls++;
  req->data = call;
  req->abort_cb = abort_cb;
  if (to.len) call->deadline_ns = req->start_ns + timeout_ns;
  grpc_call_hold(call); /* the handler may finish it at once: keep it until we checked */
  m->fn(call, in);
  if (!call->finished && call->deadline_ns) {
    uv_timer_init(g->env.loop, &call->timer);
    call->timer.data = call;
    call->timer_on = true;
    uint64_t left = call->deadline_ns > now ? call->deadline_ns - now : 0;
    uv_timer_start(&call->timer, deadline_cb, (left + 999999) / 1000000, 0);
  }
  grpc_call_release(call);
}
