/* The node's event stream: a ring of recent events and the SSE subscribers they are pushed to. */
#include "api/events.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

struct event {
  uint64_t seq;
  char kind[16];
  char *data; /* one-line JSON object (owned) */
};

struct sub {
  struct http_req *req;
  struct sub *next;
  char peer[64]; /* the client's IP address, for the per-client cap */
};

static struct {
  bool started, stopped;
  uv_timer_t timer;
  struct event ring[EVENTS_RING];
  uint64_t seq;
  struct sub *subs;
  int nsubs;
  int max_total, max_per_client; /* caps on open streams (events_limits) */
  uint64_t refused_total, refused_client;
  uint64_t warned_ms; /* loop time of the last refusal logged */
} ev = {.max_total = 64, .max_per_client = 8};

void events_limits(int max_total, int max_per_client) {
  ev.max_total = max_total;
  ev.max_per_client = max_per_client;
}

void events_metrics(struct buf *out) {
  buf_printf(
      out,
      "# HELP infermesh_event_streams Open /v1/cluster/events streams.\n"
      "# TYPE infermesh_event_streams gauge\ninfermesh_event_streams %d\n"
      "# HELP infermesh_event_streams_refused_total Event streams refused: over the total cap (503) or the "
      "per-client cap (429).\n# TYPE infermesh_event_streams_refused_total counter\n"
      "infermesh_event_streams_refused_total{reason=\"total\"} %llu\n"
      "infermesh_event_streams_refused_total{reason=\"per_client\"} %llu\n",
      ev.nsubs, (unsigned long long)ev.refused_total, (unsigned long long)ev.refused_client);
}

uint64_t events_seq(void) { return ev.seq; }

static void frame(struct buf *b, const struct event *e) {
  buf_printf(b, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)e->seq, e->kind, e->data);
}

static void sub_end(struct sub *s) {
  struct sub **pp = &ev.subs;
  while (*pp && *pp != s)
    pp = &(*pp)->next;
  if (*pp) *pp = s->next;
  ev.nsubs--;
  s->req->abort_cb = NULL;
  s->req->data = NULL;
  /* The stream ends the connection too: a request the client pipelined behind it must not run from here
   * (inside a broadcast, i.e. a scraper or membership callback). */
  s->req->keep_alive = false;
  http_resp_end(s->req);
  free(s);
}

/* Write bytes to every subscriber; one whose backlog exceeds the limit is dropped. */
static void broadcast(const char *data, size_t len) {
  struct sub *s = ev.subs;
  while (s) {
    struct sub *next = s->next;
    if (http_resp_queued(s->req) + len > EVENTS_MAX_QUEUED) {
      log_warn("event subscriber too slow: dropped", "queued=%zu", http_resp_queued(s->req));
      sub_end(s);
    } else {
      http_resp_write(s->req, data, len);
    }
    s = next;
  }
}

/* publish takes the fields of the JSON object (without braces) and adds "ts". */
static void publish(const char *kind, struct buf *fields) {
  if (!ev.started || ev.stopped) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  buf_printf(fields, ",\"ts\":%lld}", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  struct event *e = &ev.ring[ev.seq % EVENTS_RING];
  free(e->data);
  e->seq = ++ev.seq;
  str_copy(e->kind, sizeof e->kind, kind);
  e->data = xmalloc(fields->len + 1);
  memcpy(e->data, fields->base, fields->len);
  e->data[fields->len] = '\0';
  struct buf b = {0};
  frame(&b, e);
  broadcast(b.base, b.len);
  buf_free(&b);
}

static void str_field(struct buf *b, const char *name, const char *v) {
  buf_printf(b, "%s\"%s\":", b->len ? "," : "{", name);
  buf_json_str(b, slice_cstr(v ? v : ""));
}

void events_member(const char *name, const char *id_short, const char *state, uint64_t incarnation) {
  struct buf b = {0};
  str_field(&b, "name", name);
  str_field(&b, "id_short", id_short);
  str_field(&b, "state", state);
  buf_printf(&b, ",\"incarnation\":%llu", (unsigned long long)incarnation);
  publish("member", &b);
  buf_free(&b);
}

void events_drain(const char *node, bool draining) {
  struct buf b = {0};
  str_field(&b, "node", node);
  buf_printf(&b, ",\"draining\":%s", draining ? "true" : "false");
  publish("drain", &b);
  buf_free(&b);
}

void events_target(const char *name, const char *node, bool healthy, const char *reason) {
  struct buf b = {0};
  str_field(&b, "name", name);
  str_field(&b, "node", node);
  buf_printf(&b, ",\"healthy\":%s", healthy ? "true" : "false");
  str_field(&b, "reason", reason);
  publish("target", &b);
  buf_free(&b);
}

void events_config(const char *kind, const char *name, const char *op, uint64_t index) {
  struct buf b = {0};
  str_field(&b, "kind", kind);
  str_field(&b, "name", name);
  str_field(&b, "op", op);
  buf_printf(&b, ",\"index\":%llu", (unsigned long long)index);
  publish("config", &b);
  buf_free(&b);
}

static void keepalive_cb(uv_timer_t *t) {
  (void)t;
  broadcast(": keepalive\n\n", 13);
}

void events_start(uv_loop_t *loop) {
  if (ev.started) return;
  uv_timer_init(loop, &ev.timer);
  uv_timer_start(&ev.timer, keepalive_cb, EVENTS_KEEPALIVE_MS, EVENTS_KEEPALIVE_MS);
  ev.started = true;
  ev.stopped = false;
}

void events_stop(void) {
  if (!ev.started || ev.stopped) return;
  ev.stopped = true;
  uv_timer_stop(&ev.timer);
  while (ev.subs)
    sub_end(ev.subs);
}

static void timer_closed_cb(uv_handle_t *h) { (void)h; }

void events_close(void) {
  if (!ev.started) return;
  events_stop();
  uv_close((uv_handle_t *)&ev.timer, timer_closed_cb);
  for (int i = 0; i < EVENTS_RING; i++) {
    free(ev.ring[i].data);
    ev.ring[i].data = NULL;
  }
  ev.started = false;
}

static void abort_cb(struct http_req *req) {
  struct sub *s = req->data;
  if (s) sub_end(s);
}

/* since reads since=DIGITS from the query string into *out; false when absent or malformed. */
static bool since(struct slice q, uint64_t *out) {
  const char *p = q.base, *end = q.base + q.len;
  while (p && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    uint64_t v;
    if ((size_t)(stop - p) > 6 && memcmp(p, "since=", 6) == 0 &&
        slice_to_u64(slice_make(p + 6, (size_t)(stop - p - 6)), &v) == 0)
      return *out = v, true;
    p = amp ? amp + 1 : NULL;
  }
  return false;
}

/* Streams never end by themselves, so each holds a connection and a descriptor for as long as the client
 * likes: cap them in all (503) and per client address (429). True when req was answered with the refusal. */
static bool refuse_over_cap(struct http_req *req, const char *peer) {
  int status = 0;
  const char *msg = NULL;
  if (ev.max_total > 0 && ev.nsubs >= ev.max_total) {
    status = 503, msg = "too many event streams are open on this agent; retry later";
    ev.refused_total++;
  } else if (ev.max_per_client > 0) {
    int mine = 0;
    for (struct sub *s = ev.subs; s; s = s->next)
      mine += strcmp(s->peer, peer) == 0;
    if (mine >= ev.max_per_client) {
      status = 429, msg = "too many event streams are open from this address; close one first";
      ev.refused_client++;
    }
  }
  if (!status) return false;
  uint64_t now = uv_now(ev.timer.loop);
  if (ev.warned_ms == 0 || now - ev.warned_ms >= 10000) { /* at most one line per 10 s */
    ev.warned_ms = now;
    log_warn("event stream refused", "status=%d peer=%s streams=%d refused=%llu", status, peer, ev.nsubs,
             (unsigned long long)(ev.refused_total + ev.refused_client));
  }
  struct buf b = {0};
  http_error_json(&b, msg, status == 429 ? "rate_limit_error" : "server_error", NULL);
  struct http_header h[] = {{SLICE_LIT("Retry-After"), SLICE_LIT("5")}};
  http_resp_send(req, status, "application/json", b.base, b.len, h, 1);
  buf_free(&b);
  return true;
}

bool events_handle(struct http_req *req) {
  if (!slice_eqz(req->path, "/v1/cluster/events")) return false;
  if (req->method != HTTP_M_GET) {
    static const char msg[] = "{\"error\":{\"message\":\"use GET for /v1/cluster/events\"}}";
    http_resp_send(req, 405, "application/json", msg, sizeof msg - 1, NULL, 0);
    return true;
  }
  if (!ev.started || ev.stopped) {
    http_resp_send(req, 503, "text/plain", "draining\n", 9, NULL, 0);
    return true;
  }
  char peer[64];
  http_req_peer(req, peer, sizeof peer);
  if (refuse_over_cap(req, peer)) return true;
  static const struct http_header hdrs[] = {{{"Content-Type", 12}, {"text/event-stream", 17}},
                                            {{"Cache-Control", 13}, {"no-cache", 8}}};
  http_resp_start(req, 200, hdrs, 2, -1);
  uint64_t after = 0;
  bool replay = since(req->query, &after);
  struct buf b = {0};
  uint64_t first = ev.seq > EVENTS_RING ? ev.seq - EVENTS_RING + 1 : 1; /* oldest still in the ring */
  for (uint64_t s = after + 1 > first ? after + 1 : first; replay && s <= ev.seq; s++)
    frame(&b, &ev.ring[(s - 1) % EVENTS_RING]);
  if (b.len)
    http_resp_write(req, b.base, b.len);
  else
    http_resp_flush(req);
  buf_free(&b);
  struct sub *s = xcalloc(1, sizeof *s);
  s->req = req;
  str_copy(s->peer, sizeof s->peer, peer);
  s->next = ev.subs;
  ev.subs = s;
  ev.nsubs++;
  req->data = s;
  req->abort_cb = abort_cb;
  req->eof_aborts = true; /* a client that closes frees its slot under the caps at once */
  /* One that vanishes (no FIN, no reset) stops acknowledging the keepalives: reap it after two of them. */
  http_req_dead_peer_timeout(req, 2 * EVENTS_KEEPALIVE_MS);
  return true;
}
