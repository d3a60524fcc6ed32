/* Runtime polling: each round fetches the endpoints the target's adapter names and feeds the state store. */
#include "agent/scraper.h"
#include "api/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/adapter.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

#define SCRAPE_TIMEOUT_MS 2000

/* One target's scrape round: the adapter's endpoints in order, merged into one runtime_state. */
struct scrape_target {
  struct scraper *s;
  int id;
  enum runtime_kind kind;
  const struct rt_endpoint *eps;
  int neps;
  int step; /* index of the endpoint in flight; -1 idle */
  struct hc_req *req;
  struct buf head, body;
  int status;
  bool was_healthy;
  int misses; /* failed rounds in a row while healthy (see down) */
  char last_reason[160]; /* logged once per change, not on every poll (a runtime may load for minutes) */
  struct runtime_state st;
  /* /metrics from another address than the API's (metrics_url, or Triton's port 8002 found by trying it). */
  struct http_pool mpool;
  bool mpool_on, triton_8002_tried;
  int metrics_status; /* this round's /metrics: HTTP status, or a negative UV error */
  /* Window rates: the state RATE_WINDOW_NS ago or more (base) and the one that becomes base next (mid). */
  struct runtime_state base, mid;
  uint64_t base_ns, mid_ns; /* 0: none yet */
};

#define RATE_WINDOW_NS (10 * 1000000000ull)
#define TRITON_METRICS_PORT 8002 /* tritonserver --metrics-port default */

/* metrics_at points st's /metrics reads at host:port. */
static int metrics_at(struct scrape_target *st, const char *host, int port) {
  if (http_pool_init(&st->mpool, st->s->loop, host, port) != 0) return -EINVAL;
  st->mpool_on = true;
  return 0;
}

static void next_step(struct scrape_target *st);

static int on_head(void *arg, int status, const struct http_header *h, int n) {
  struct scrape_target *st = arg;
  st->status = status;
  buf_reset(&st->body);
  return 0;
}

static int on_body(void *arg, const char *data, size_t len) {
  struct scrape_target *st = arg;
  if (st->body.len + len > 8 * 1024 * 1024) return 1;
  buf_append(&st->body, data, len);
  return 0;
}

/* A healthy target is marked down after SCRAPE_MISSES failed rounds in a row (one slow /metrics on a busy
 * runtime must not take it out of routing; its load report just ages), or at once when the runtime says so
 * (an unhealthy answer from its health endpoint) or is gone (connection refused). */
#define SCRAPE_MISSES 2

static void down(struct scrape_target *st, const char *what, bool at_once) {
  struct target *t = &st->s->store->targets[st->id];
  if (st->was_healthy && !at_once && ++st->misses < SCRAPE_MISSES) {
    log_info("scrape failed; the target stays up until the next round", "target=%s reason=\"%s\"", t->name, what);
    st->step = -1;
    return;
  }
  st->misses = 0;
  if (st->was_healthy || strcmp(st->last_reason, what) != 0)
    log_warn("target down", "target=%s url=%s kind=%s reason=\"%s\"", t->name, t->url, runtime_kind_name(st->kind),
             what);
  if (st->was_healthy) events_target(t->name, t->node, false, what);
  st->was_healthy = false;
  str_copy(st->last_reason, sizeof st->last_reason, what);
  store_mark_down(st->s->store, st->id, what);
  st->step = -1;
}

/* The names target t lists for what its runtime reported: the first under t's alias, when it has one. */
static void listed_names(struct target *t, const struct runtime_state *rs, const char **names) {
  for (int i = 0; i < rs->nmodels; i++)
    names[i] = rs->models[i];
  if (t->alias[0] && rs->nmodels > 0) {
    str_copy(t->upstream_model, sizeof t->upstream_model, rs->models[0]);
    names[0] = t->alias;
  }
}

static bool same_models(const struct target *t, const char *const *names, int n) {
  if (t->nmodels != n) return false;
  for (int i = 0; i < n; i++)
    if (strcmp(t->models[i], names[i]) != 0) return false;
  return true;
}

/* window_rates fills the load's window rates from st->st and a state read 10 to 20 s before (or, early on,
 * whatever is older than half a second), and rolls the reference states forward. */
static void window_rates(struct scrape_target *st, uint64_t now, struct target_load *load) {
  struct runtime_rates rr = {0};
  const struct runtime_state *ref = st->base_ns ? &st->base : st->mid_ns ? &st->mid : NULL;
  uint64_t ref_ns = st->base_ns ? st->base_ns : st->mid_ns;
  if (ref && now > ref_ns + 500000000ull)
    runtime_rates(ref, &st->st, (double)(now - ref_ns) / 1e9, &rr);
  else
    runtime_rates(NULL, &st->st, 1, &rr); /* gauges only */
  load->prompt_tps = rr.have & RR_PROMPT_TPS ? rr.prompt_tps : -1;
  load->gen_tps = rr.have & RR_GEN_TPS ? rr.gen_tps : -1;
  load->ttft_p50 = rr.have & RR_TTFT ? rr.ttft_p50 : -1;
  load->ttft_p95 = rr.have & RR_TTFT ? rr.ttft_p95 : -1;
  load->itl_p50 = rr.have & RR_ITL ? rr.itl_p50 : -1;
  load->itl_p95 = rr.have & RR_ITL ? rr.itl_p95 : -1;
  if (rr.have & RR_RESET) st->base_ns = st->mid_ns = 0; /* the runtime restarted: start the window over */
  if (!st->mid_ns) {
    st->mid = st->st;
    st->mid_ns = now;
  } else if (now - st->mid_ns >= RATE_WINDOW_NS) {
    st->base = st->mid;
    st->base_ns = st->mid_ns;
    st->mid = st->st;
    st->mid_ns = now;
  }
}

/* The round completed: publish what it read. */
static void apply(struct scrape_target *st) {
  struct scraper *s = st->s;
  struct target *t = &s->store->targets[st->id];
  const struct runtime_state *rs = &st->st;
  if (st->kind != RT_KIND_OLLAMA && !(rs->have & (RS_WAITING | RS_RUNNING))) {
    /* Without queue signals we cannot score it: an unknown load must not look idle. */
    char why[sizeof st->last_reason]; /* kept short: targets keep 127 bytes of it */
    const char *at = st->mpool_on ? st->mpool.authority : s->pools[st->id].authority;
    const char *hint = st->kind == RT_KIND_TRITON ? " (Triton: set metrics_url)" : "";
    if (st->metrics_status < 0)
      snprintf(why, sizeof why, "no queue signal: GET /metrics at %s failed: %s%s", at,
               uv_strerror(st->metrics_status), hint);
    else if (st->metrics_status == 404)
      snprintf(why, sizeof why, "no queue signal: no /metrics at %s%s", at, hint);
    else if (st->metrics_status == 401 || st->metrics_status == 403)
      snprintf(why, sizeof why, "no queue signal: /metrics at %s answered %d: set the runtime's api_key", at,
               st->metrics_status);
    else
      snprintf(why, sizeof why, "no queue signal (waiting/running) in /metrics: is the runtime kind right?");
    down(st, why, false);
    return;
  }
  if ((rs->have & RS_MODELS) && rs->nmodels > 0) {
    const char *names[RS_MAX_NAMES];
    listed_names(t, rs, names);
    if (!same_models(t, names, rs->nmodels)) store_set_models(s->store, st->id, names, rs->nmodels);
  }
  if (t->nmodels == 0) {
    down(st, "the runtime lists no model yet", false);
    return;
  }
  struct target_load load = {
      .waiting = rs->waiting,
      .running = rs->running,
      .kv_usage = (rs->have & RS_KV_USAGE) ? rs->kv_usage : -1,
      /* A capacity known in tokens only (SGLang without page_size, TGI, llama.cpp slots) is kept as 1-token
       * blocks, as load reports from other nodes are (mesh.c). */
      .block_size = rs->block_size > 0 ? rs->block_size : rs->kv_capacity_tokens > 0 ? 1 : 0,
      .num_gpu_blocks = rs->block_size > 0 ? rs->kv_capacity_tokens / rs->block_size : rs->kv_capacity_tokens,
      .prefix_queries = rs->prefix_queries,
      .prefix_hits = rs->prefix_hits,
      .ttft_sum = rs->ttft.sum,
      .ttft_count = rs->ttft.count,
  };
  if (!st->was_healthy) {
    log_info("target up", "target=%s url=%s kind=%s", t->name, t->url, runtime_kind_name(st->kind));
    events_target(t->name, t->node, true, "");
  }
  st->was_healthy = true;
  st->misses = 0;
  st->last_reason[0] = '\0';
  uint64_t now = clock_mono_ns();
  window_rates(st, now, &load);
  store_report(s->store, st->id, &load, now);
  st->step = -1;
}

static void on_done(void *arg, int err) {
  struct scrape_target *st = arg;
  struct scraper *s = st->s;
  const struct rt_endpoint *ep = &st->eps[st->step];
  char why[160];
  st->req = NULL;
  s->busy--;
  if (s->stopping) {
    st->step = -1;
    if (s->busy == 0) scraper_close(s, s->closed_cb, s->closed_arg);
    return;
  }
  int rc = err ? err : runtime_parse(st->kind, ep->id, st->status, st->body.base, st->body.len, &st->st);
  if (ep->id == RT_EP_METRICS) st->metrics_status = err ? err : st->status;
  /* A health endpoint that answers, and answers "not healthy", means down even where the endpoint is
   * optional: optional only forgives its absence (404). */
  bool unhealthy = ep->id == RT_EP_HEALTH && !err && st->status != 404 && (st->status < 200 || st->status > 299);
  if (unhealthy) rc = -EPROTO;
  /* Triton answers 404 for /metrics on its API port: they are on its metrics port, 8002 unless configured. */
  if (ep->id == RT_EP_METRICS && st->kind == RT_KIND_TRITON && !err && st->status == 404 && !st->mpool_on &&
      !st->triton_8002_tried) {
    const struct target *t = &s->store->targets[st->id];
    st->triton_8002_tried = true;
    if (metrics_at(st, t->host, TRITON_METRICS_PORT) == 0) {
      log_info("Triton metrics are not on its API port: reading them from its metrics port", "target=%s metrics=%s",
               t->name, st->mpool.authority);
      st->step--; /* the same endpoint again, at the new address */
      next_step(st);
      return;
    }
  }
  if (rc != 0 && (!ep->optional || unhealthy)) {
    if (err)
      snprintf(why, sizeof why, "%s %s failed: %s", ep->method, ep->path, uv_strerror(err));
    else if (st->status < 200 || st->status > 299)
      snprintf(why, sizeof why, "%s answered %d%s", ep->path, st->status,
               st->st.loading ? " (loading the model)" : "");
    else
      snprintf(why, sizeof why, "%s: %s", ep->path, rc == -ENOENT ? "not this runtime kind" : "malformed response");
    down(st, why, unhealthy || err == UV_ECONNREFUSED);
    return;
  }
  next_step(st);
}

static const struct hc_callbacks cbs = {.on_head = on_head, .on_body = on_body, .on_done = on_done};

/* Fetch the next endpoint of the round, or publish the round when all were read. */
static void next_step(struct scrape_target *st) {
  struct scraper *s = st->s;
  if (++st->step >= st->neps) {
    apply(st);
    return;
  }
  const struct rt_endpoint *ep = &st->eps[st->step];
  struct http_pool *pool = ep->id == RT_EP_METRICS && st->mpool_on ? &st->mpool : &s->pools[st->id];
  size_t blen = ep->body ? strlen(ep->body) : 0;
  buf_reset(&st->head);
  buf_printf(&st->head, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\nUser-Agent: infermesh-agent\r\n", ep->method,
             ep->path, pool->authority);
  const char *key = s->store->targets[st->id].api_key;
  if (key[0]) buf_printf(&st->head, "Authorization: Bearer %s\r\n", key); /* checked: no CR/LF (config.c) */
  if (ep->body) buf_printf(&st->head, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
  buf_puts(&st->head, "\r\n");
  struct slice body = slice_make(ep->body, blen);
  s->busy++;
  st->req = hc_request(pool, buf_slice(&st->head), &body, ep->body ? 1 : 0, &cbs, st, SCRAPE_TIMEOUT_MS);
}

static void start_round(struct scrape_target *st) {
  runtime_state_init(&st->st);
  st->metrics_status = 0;
  st->step = -1;
  next_step(st);
}

static void tick_cb(uv_timer_t *t) {
  struct scraper *s = t->data;
  for (int i = 0; i < s->ntargets; i++)
    if (s->targets[i].step < 0 && s->targets[i].neps > 0) start_round(&s->targets[i]);
}

void scraper_start(struct scraper *s, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                   uint32_t interval_ms, const char *const *metrics_urls) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->store = store;
  s->pools = pools;
  s->interval_ms = interval_ms;
  s->ntargets = store->ntargets;
  s->targets = xcalloc((size_t)s->ntargets + 1, sizeof *s->targets);
  for (int i = 0; i < s->ntargets; i++) {
    struct scrape_target *st = &s->targets[i];
    st->s = s;
    st->id = i;
    st->step = -1;
    if (runtime_kind_parse(store->targets[i].kind, &st->kind) == 0) st->neps = runtime_endpoints(st->kind, &st->eps);
    if (st->neps == 0) store_mark_down(store, i, "unknown runtime kind");
    char host[96];
    int port;
    if (metrics_urls && metrics_urls[i] && metrics_urls[i][0] &&
        store_parse_url(metrics_urls[i], host, sizeof host, &port) == 0)
      metrics_at(st, host, port);
  }
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, tick_cb, 0, interval_ms);
}

static void timer_closed_cb(uv_handle_t *h) {
  struct scraper *s = h->data;
  for (int i = 0; i < s->ntargets; i++) {
    buf_free(&s->targets[i].head);
    buf_free(&s->targets[i].body);
    if (s->targets[i].mpool_on) http_pool_close(&s->targets[i].mpool); /* its requests were cancelled */
  }
  free(s->targets);
  s->targets = NULL;
  if (s->closed_cb) s->closed_cb(s->closed_arg);
}

void scraper_close(struct scraper *s, void (*cb)(void *arg), void *arg) {
  if (!s->stopping) {
    s->stopping = true;
    s->closed_cb = cb;
    s->closed_arg = arg;
    for (int i = 0; i < s->ntargets; i++) {
      if (s->targets[i].req) {
        hc_cancel(s->targets[i].req);
        s->targets[i].req = NULL;
        s->busy--;
      }
    }
  }
  if (s->busy == 0 && !uv_is_closing((uv_handle_t *)&s->timer)) uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
}
