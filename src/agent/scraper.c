/* Runtime polling: GET /health, then /metrics (and /v1/models when unknown or every 10 s) per target. */
#include "agent/scraper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/vllm.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

#define MODELS_EVERY_NS (10ull * 1000000000ull)
#define SCRAPE_TIMEOUT_MS 2000

enum step { ST_IDLE, ST_HEALTH, ST_METRICS, ST_MODELS };

struct scrape_target {
  struct scraper *s;
  int id;
  enum step step;
  struct hc_req *req;
  struct buf head, body;
  int status;
  uint64_t models_ns;
  bool was_healthy;
};

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

static void down(struct scrape_target *st, const char *what) {
  struct target *t = &st->s->store->targets[st->id];
  if (st->was_healthy || t->updated_ns == 0)
    log_warn("target down", "target=%s url=%s reason=\"%s\"", t->name, t->url, what);
  st->was_healthy = false;
  store_mark_down(st->s->store, st->id, what);
}

static void on_done(void *arg, int err) {
  struct scrape_target *st = arg;
  struct scraper *s = st->s;
  struct target *t = &s->store->targets[st->id];
  char why[128];
  st->req = NULL;
  s->busy--;
  if (s->stopping) {
    st->step = ST_IDLE;
    if (s->busy == 0) scraper_stop(s, s->stopped_cb);
    return;
  }
  if (err != 0 || st->status != 200) {
    if (err)
      snprintf(why, sizeof why, "%s failed: %s", st->step == ST_HEALTH ? "/health" : "scrape", uv_strerror(err));
    else
      snprintf(why, sizeof why, "%s answered %d", st->step == ST_HEALTH    ? "/health"
                                                  : st->step == ST_METRICS ? "/metrics"
                                                                           : "/v1/models",
               st->status);
    down(st, why);
    st->step = ST_IDLE;
    return;
  }
  if (st->step == ST_METRICS) {
    struct runtime_metrics m;
    struct prom_error perr;
    if (vllm_parse_metrics(st->body.base, st->body.len, &m, &perr) != 0) {
      snprintf(why, sizeof why, "/metrics line %d: %s", perr.line, perr.msg);
      down(st, why);
      st->step = ST_IDLE;
      return;
    }
    if ((m.have & (RT_HAVE_WAITING | RT_HAVE_RUNNING)) != (RT_HAVE_WAITING | RT_HAVE_RUNNING)) {
      /* Without queue signals we cannot score it: an unknown load must not look idle. */
      down(st, "/metrics has no vllm:num_requests_waiting/running: is this a vLLM-compatible server?");
      st->step = ST_IDLE;
      return;
    }
    struct target_load load = {
        .waiting = m.waiting,
        .running = m.running,
        .kv_usage = (m.have & RT_HAVE_KV) ? m.kv_usage : -1,
        .block_size = m.block_size,
        .num_gpu_blocks = m.num_gpu_blocks,
        .prefix_queries = m.prefix_queries,
        .prefix_hits = m.prefix_hits,
        .ttft_sum = m.ttft_sum,
        .ttft_count = m.ttft_count,
    };
    if (t->nmodels > 0) {
      if (!st->was_healthy) log_info("target up", "target=%s url=%s", t->name, t->url);
      st->was_healthy = true;
      store_report(s->store, st->id, &load, clock_mono_ns());
    } else {
      t->load = load; /* healthy only once we know what it serves */
    }
  } else if (st->step == ST_MODELS) {
    char **ids = NULL;
    int n = 0;
    if (vllm_parse_models(st->body.base, st->body.len, &ids, &n) != 0 || n == 0) {
      down(st, n == 0 ? "/v1/models lists no model" : "/v1/models is not valid JSON");
      st->step = ST_IDLE;
      return;
    }
    store_set_models(s->store, st->id, (const char *const *)ids, n);
    vllm_models_free(ids, n);
    st->models_ns = clock_mono_ns();
  }
  next_step(st);
}

static const struct hc_callbacks cbs = {on_head, on_body, on_done};

static void get(struct scrape_target *st, const char *path) {
  struct scraper *s = st->s;
  buf_reset(&st->head);
  buf_printf(&st->head, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\nUser-Agent: infermesh-agent\r\n\r\n", path,
             s->pools[st->id].authority);
  s->busy++;
  st->req = hc_request(&s->pools[st->id], buf_slice(&st->head), NULL, 0, &cbs, st, SCRAPE_TIMEOUT_MS);
}

/* health → models (when unknown or old) → metrics → idle */
static void next_step(struct scrape_target *st) {
  struct target *t = &st->s->store->targets[st->id];
  switch (st->step) {
  case ST_IDLE:
    st->step = ST_HEALTH;
    get(st, "/health");
    return;
  case ST_HEALTH:
    if (t->nmodels == 0 || clock_mono_ns() - st->models_ns > MODELS_EVERY_NS) {
      st->step = ST_MODELS;
      get(st, "/v1/models");
      return;
    }
    /* fall through */
  case ST_MODELS:
    st->step = ST_METRICS;
    get(st, "/metrics");
    return;
  case ST_METRICS: st->step = ST_IDLE; return;
  }
}

static void tick_cb(uv_timer_t *t) {
  struct scraper *s = t->data;
  for (int i = 0; i < s->ntargets; i++)
    if (s->targets[i].step == ST_IDLE) next_step(&s->targets[i]);
}

void scraper_start(struct scraper *s, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                   uint32_t interval_ms) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->store = store;
  s->pools = pools;
  s->interval_ms = interval_ms;
  s->ntargets = store->ntargets;
  s->targets = xcalloc((size_t)s->ntargets + 1, sizeof *s->targets);
  for (int i = 0; i < s->ntargets; i++) {
    s->targets[i].s = s;
    s->targets[i].id = i;
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
  }
  free(s->targets);
  s->targets = NULL;
  if (s->stopped_cb) s->stopped_cb(s);
}

void scraper_stop(struct scraper *s, void (*cb)(struct scraper *s)) {
  if (!s->stopping) {
    s->stopping = true;
    s->stopped_cb = cb;
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
