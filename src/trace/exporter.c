/* Batching spans to an OTLP/HTTP collector: ring → protobuf batch → one POST at a time. */
#include "trace/exporter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

int trace_endpoint_parse(const char *url, char *host, size_t hostcap, int *port, char *path, size_t pathcap,
                         char *err, size_t errlen) {
  if (strncmp(url, "https://", 8) == 0) {
    snprintf(err, errlen,
             "OTLP endpoint '%s': https is not supported; use http://HOST:PORT (a local collector)", url);
    return -EINVAL;
  }
  if (strncmp(url, "http://", 7) != 0) {
    snprintf(err, errlen, "OTLP endpoint '%s' is not http://HOST:PORT[/PATH]", url);
    return -EINVAL;
  }
  const char *h = url + 7, *hend, *colon;
  if (*h == '[') {
    hend = strchr(h, ']');
    if (!hend) goto bad;
    colon = hend + 1;
    h++;
  } else {
    colon = h + strcspn(h, ":/");
    hend = colon;
  }
  if (*colon != ':' || hend == h || (size_t)(hend - h) >= hostcap) goto bad;
  memcpy(host, h, (size_t)(hend - h));
  host[hend - h] = '\0';
  char *end;
  long pt = strtol(colon + 1, &end, 10);
  if (end == colon + 1 || pt <= 0 || pt > 65535 || (*end && *end != '/')) goto bad;
  *port = (int)pt;
  size_t plen = strlen(end);
  while (plen && end[plen - 1] == '/')
    plen--;
  if (plen + sizeof "/v1/traces" > pathcap) goto bad;
  for (size_t i = 0; i < plen; i++)
    if (end[i] <= 0x20 || end[i] >= 0x7f) goto bad;
  memcpy(path, end, plen);
  memcpy(path + plen, "/v1/traces", sizeof "/v1/traces");
  struct http_pool probe;
  if (http_pool_init(&probe, NULL, host, *port) != 0) {
    snprintf(err, errlen, "OTLP endpoint '%s': the host must be an IP address or localhost", url);
    return -EINVAL;
  }
  return 0;
bad:
  snprintf(err, errlen, "OTLP endpoint '%s' is not http://HOST:PORT[/PATH]", url);
  return -EINVAL;
}

static void tick_cb(uv_timer_t *t);

int trace_exporter_init(struct trace_exporter *x, uv_loop_t *loop, const char *endpoint, const char *service,
                        const char *instance, const char *version, char *err, size_t errlen) {
  char host[128];
  int port;
  memset(x, 0, sizeof *x);
  if (trace_endpoint_parse(endpoint, host, sizeof host, &port, x->path, sizeof x->path, err, errlen) != 0)
    return -EINVAL;
  if (http_pool_init(&x->pool, loop, host, port) != 0) {
    snprintf(err, errlen, "OTLP endpoint '%s': bad address", endpoint);
    return -EINVAL;
  }
  x->pool.max_idle = 1;
  x->loop = loop;
  str_copy(x->service, sizeof x->service, service ? service : "");
  str_copy(x->instance, sizeof x->instance, instance ? instance : "");
  str_copy(x->version, sizeof x->version, version ? version : "");
  x->res =
      (struct otlp_resource){.service_name = x->service, .instance_id = x->instance, .version = x->version};
  x->ring = xmalloc(EXPORTER_QUEUE * sizeof *x->ring);
  uv_timer_init(loop, &x->timer);
  uv_timer_init(loop, &x->close_timer);
  x->timer.data = x->close_timer.data = x;
  uv_timer_start(&x->timer, tick_cb, EXPORTER_INTERVAL_MS, EXPORTER_INTERVAL_MS);
  uv_unref((uv_handle_t *)&x->timer);
  return 0;
}

static void finish_close(struct trace_exporter *x);

static int post_head_cb(void *arg, int status, const struct http_header *h, int n) {
  struct trace_exporter *x = arg;
  x->req_status = status;
  return 0;
}

/* The body is an ExportTraceServiceResponse (its partial_success is not read): only the status counts. */
static int post_body_cb(void *arg, const char *data, size_t len) { return 0; }

static void post_done_cb(void *arg, int err) {
  struct trace_exporter *x = arg;
  x->req = NULL;
  if (err == 0 && x->req_status >= 200 && x->req_status < 300) {
    x->st.exported += x->req_spans;
    x->backoff = x->failing = false;
  } else {
    x->st.failures++;
    x->st.dropped += x->req_spans;
    if (!x->failing) /* once per outage, not per batch */
      log_warn("trace export failed: spans dropped", "spans=%zu status=%d err=\"%s\"", x->req_spans,
               x->req_status, err ? uv_strerror(err) : "collector refused the batch");
    x->backoff = x->failing = true;
  }
  x->req_spans = 0;
  buf_reset(&x->body);
  if (x->closing) {
    if (x->count && !x->backoff) {
      uv_timer_start(&x->timer, tick_cb, 0, 0); /* the rest, a batch at a time */
      return;
    }
    finish_close(x);
    return;
  }
  if (x->count >= EXPORTER_BATCH && !x->backoff) uv_timer_start(&x->timer, tick_cb, 0, EXPORTER_INTERVAL_MS);
}

static const struct hc_callbacks post_cbs = {
    .on_head = post_head_cb, .on_body = post_body_cb, .on_done = post_done_cb};

/* POST up to a batch of the oldest spans (they leave the ring: the body holds them now). */
static void post(struct trace_exporter *x) {
  size_t n = x->count < EXPORTER_BATCH ? x->count : EXPORTER_BATCH;
  buf_reset(&x->body);
  otlp_encode_traces(&x->body, &x->res, x->ring, EXPORTER_QUEUE, x->first, n);
  x->first = (x->first + n) % EXPORTER_QUEUE;
  x->count -= n;
  buf_reset(&x->head);
  buf_printf(
      &x->head,
      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
      x->path, x->pool.authority, x->body.len);
  struct slice body = buf_slice(&x->body);
  x->req_spans = n;
  x->req_status = 0;
  x->st.posts++;
  x->req = hc_request(&x->pool, buf_slice(&x->head), &body, 1, &post_cbs, x, EXPORTER_TIMEOUT_MS);
}

static void tick_cb(uv_timer_t *t) {
  struct trace_exporter *x = t->data;
  x->backoff = false; /* a new interval: try the collector again */
  if (!x->req && x->count) post(x);
}

struct span *trace_exporter_slot(struct trace_exporter *x) {
  if (x->count == EXPORTER_QUEUE || x->closing) {
    x->st.dropped++;
    return NULL;
  }
  return &x->ring[(x->first + x->count) % EXPORTER_QUEUE];
}

void trace_exporter_commit(struct trace_exporter *x) {
  x->count++;
  /* a full batch goes on the next turn (a one-shot, then the interval again), not inside the request's end */
  if (x->count == EXPORTER_BATCH && !x->req && !x->backoff)
    uv_timer_start(&x->timer, tick_cb, 0, EXPORTER_INTERVAL_MS);
}

void trace_exporter_stats(const struct trace_exporter *x, struct exporter_stats *st) {
  *st = x->st;
  st->queued = x->count;
}

void trace_exporter_free(struct trace_exporter *x) {
  buf_free(&x->head);
  buf_free(&x->body);
  free(x->ring);
  x->ring = NULL;
}

static void handle_closed_cb(uv_handle_t *h) {
  struct trace_exporter *x = h->data;
  if (--x->handles == 0) x->closed_cb(x->closed_arg);
}

/* Cancel what is in flight, drop what is left, close the handles. */
static void finish_close(struct trace_exporter *x) {
  if (x->handles) return; /* already finishing */
  if (x->req) {
    hc_cancel(x->req);
    x->req = NULL;
    x->st.dropped += x->req_spans;
  }
  x->st.dropped += x->count;
  x->count = 0;
  http_pool_close(&x->pool);
  trace_exporter_free(x);
  x->handles = 2;
  uv_close((uv_handle_t *)&x->timer, handle_closed_cb);
  uv_close((uv_handle_t *)&x->close_timer, handle_closed_cb);
}

static void flush_timeout_cb(uv_timer_t *t) { finish_close(t->data); }

void trace_exporter_close(struct trace_exporter *x, void (*cb)(void *arg), void *arg) {
  x->closing = true;
  x->closed_cb = cb;
  x->closed_arg = arg;
  uv_timer_stop(&x->timer);
  if (!x->req && x->count) post(x); /* a collector that failed before gets one more try */
  if (!x->req) {
    finish_close(x);
    return;
  }
  uv_timer_start(&x->close_timer, flush_timeout_cb, EXPORTER_FLUSH_MS, 0);
}
