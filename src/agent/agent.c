/* The agent: wires config, store, scraper, router and admin endpoints; drains on SIGTERM. */
#include "agent/agent.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/api_ports.h"
#include "api/cluster_api.h"
#include "api/control_api.h"
#include "agent/control.h"
#include "api/events.h"
#include "agent/gpu_poll.h"
#include "agent/ingress_tls.h"
#include "agent/kv_state.h"
#include "agent/mesh.h"
#include "agent/budget_sync.h"
#include "agent/meter.h"
#include "api/model_api.h"
#include "agent/scraper.h"
#include "agent/supervisor.h"
#include "api/budgets.h"
#include "api/grpc_services.h"
#include "api/rpc_api.h"
#include "api/history.h"
#include "api/reply.h"
#include "api/ledger_api.h"
#include "api/routes.h"
#include "api/status.h"
#include "api/ui.h"
#include "core/alloc.h"
#include "grpc/grpc_server.h"
#include "core/clock.h"
#include "core/log.h"
#include "cluster/datadir.h"
#include "ledger/db.h"
#include "ledger/outbox.h"
#include "ledger/writer.h"
#include "route/router.h"
#include "route/tenants.h"
#include "trace/tracer.h"

#define GPU_POLL_MS 5000

struct agent {
  uv_loop_t *loop;
  const struct agent_config *cfg;
  struct store store;
  struct http_pool *pools;
  struct scraper scraper;
  struct supervisor *sup; /* NULL when no runtime has exec */
  struct gpu_poll gpu;
  char exe[1024];
  struct router router;
  struct http_server server;
  struct http_server hops; /* with TLS on server: plaintext on loopback, for tunnel hops only; else unused */
  bool hops_on;
  struct ingress_tls tls; /* the listener's certificate, its reloads, client certificates */
  struct grpc_server grpc; /* gRPC calls on the same listener (grpc/grpc_server.h) */
  struct mesh *mesh; /* NULL when the agent runs alone (no cluster key) */
  struct kv_state *kv; /* KV-cache events and shared cache state; NULL once closed */
  struct cluster_api capi;
  struct model_api mapi; /* load/unload of models and LoRA adapters */
  struct control *ctl; /* the control plane (Raft server or read replica); NULL when closed */
  /* api/'s interfaces over mesh and ctl (agent/api_ports.c); their ctx is NULL when those are closed */
  struct api_mesh mesh_port;
  struct api_control ctl_port;
  struct ledger_writer *ledger; /* usage records; NULL when metering is off or once closed */
  struct ledger_outbox *outbox; /* forwards them to PostgreSQL (ledger.postgres); NULL when none */
  struct ledger_api lapi;
  struct meter meter; /* the router's meter: prices, and records to the ledger */
  struct spend_book *spend;  /* tenants' spend, here and as the mesh reports it (budgets) */
  struct budget_sync bsync;  /* spreads it over the mesh (when there is one) */
  bool bsync_on;
  struct tracer *tracer; /* OpenTelemetry export (tracing.endpoint); NULL when off */
  struct history *hist; /* the dashboard's last 15 minutes, sampled every second */
  uv_timer_t hist_timer;
  char api_addr[96]; /* how other nodes reach this listener */
  bool leave_done, close_mesh_pending;
  bool stopping;  /* agent_stop ran */
  int stop_left;  /* the parts not closed yet (the one closing now included) */
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t drain_timer;
  uv_prepare_t log_flusher; /* writes the turn's buffered log lines before the loop blocks */
  uint64_t start_ns;
  char listen[96];
  bool draining;
  bool drain_timed_out; /* the drain timer fired: runtimes are being stopped, then the loop */
  int exit_code;
};

/* verdict decides whether req's credentials reach route rt (api/routes.h): HTTP requests and gRPC calls. A
 * mapped client certificate stands for its tenant's or the admin's credential first (agent/ingress_tls.h). */
static enum api_verdict verdict(void *arg, const struct api_route *rt, struct http_req *req) {
  struct agent *a = arg;
  ingress_tls_credential(&a->tls, rt, req, a->router.opts.ntenants);
  if (rt->need == API_OPEN || rt->need == API_TENANT) return API_ALLOW;
  struct slice auth = http_req_header(req, "authorization");
  struct api_creds c = {.admin_token = a->cfg->cluster.admin_token,
                        .read_token = a->cfg->cluster.read_token,
                        .keys_required = a->router.opts.ntenants > 0};
  if (auth.len && c.keys_required) c.tenant_key = tenants_lookup(a->router.opts.tenants, a->router.opts.ntenants, auth) >= 0;
  return api_authorize(rt, &c, auth, http_req_header(req, "x-infermesh-hop").len > 0);
}

/* authorize answers req and returns false when its credentials do not reach route rt (api/routes.h). */
static bool authorize(struct agent *a, const struct api_route *rt, struct http_req *req) {
  enum api_verdict v = verdict(a, rt, req);
  if (v == API_ALLOW) return true;
  const char *code;
  const char *msg = api_verdict_message(v, rt, &code);
  static const struct http_header challenge = {SLICE_LIT("WWW-Authenticate"), SLICE_LIT("Bearer")};
  a->router.metrics.unauthorized++;
  api_reply_error_headers(req, v == API_UNAUTH ? 401 : 403, msg, code, &challenge, v == API_UNAUTH);
  log_info("refused an API call", "method=%s path=\"%.*s\" status=%d", http_method_name(req->method),
           (int)(req->path.len > 200 ? 200 : req->path.len), req->path.base, v == API_UNAUTH ? 401 : 403);
  return false;
}

static void metrics(struct agent *a, struct http_req *req, uint64_t now) {
  struct buf b = {0};
  router_metrics(&a->router, &b);
  buf_printf(&b,
             "# HELP infermesh_http_active_requests Requests of the agent's HTTP API being answered now (this "
             "one included): inference, control-plane reads waiting for an index, event streams.\n"
             "# TYPE infermesh_http_active_requests gauge\ninfermesh_http_active_requests %d\n",
             a->server.nactive);
  http_server_metrics(&a->server, &b);
  grpc_metrics(&a->grpc, &b);
  events_metrics(&b);
  status_targets_metrics(&b, &a->store, &a->router.score, now);
  if (a->mesh) mesh_metrics(a->mesh, &b);
  if (a->kv) kv_state_metrics(a->kv, &b);
  if (a->tracer) tracer_metrics(a->tracer, &b);
  if (a->ledger) {
    struct ledger_writer_stats ls;
    ledger_writer_stats(a->ledger, &ls);
    buf_printf(&b,
               "# HELP infermesh_ledger_records_total Usage records committed to the ledger's journal.\n"
               "# TYPE infermesh_ledger_records_total counter\ninfermesh_ledger_records_total %llu\n"
               "# HELP infermesh_ledger_commits_total Journal writes (each appends a group of records).\n"
               "# TYPE infermesh_ledger_commits_total counter\ninfermesh_ledger_commits_total %llu\n"
               "# HELP infermesh_ledger_commit_failures_total Ledger commits that failed (records kept, retried).\n"
               "# TYPE infermesh_ledger_commit_failures_total counter\ninfermesh_ledger_commit_failures_total %llu\n"
               "# HELP infermesh_ledger_dropped_total Records dropped: the queue was full while commits failed.\n"
               "# TYPE infermesh_ledger_dropped_total counter\ninfermesh_ledger_dropped_total %llu\n"
               "# HELP infermesh_ledger_queued Records waiting for the writer.\n"
               "# TYPE infermesh_ledger_queued gauge\ninfermesh_ledger_queued %llu\n",
               (unsigned long long)ls.committed, (unsigned long long)ls.batches, (unsigned long long)ls.failures,
               (unsigned long long)ls.dropped, (unsigned long long)ls.queued);
  }
  if (a->outbox) {
    struct ledger_outbox_stats os;
    ledger_outbox_stats(a->outbox, &os);
    buf_printf(&b,
               "# HELP infermesh_ledger_outbox_forwarded_total Usage records PostgreSQL acknowledged.\n"
               "# TYPE infermesh_ledger_outbox_forwarded_total counter\ninfermesh_ledger_outbox_forwarded_total %llu\n"
               "# HELP infermesh_ledger_outbox_failures_total Failed connections or transactions to PostgreSQL.\n"
               "# TYPE infermesh_ledger_outbox_failures_total counter\ninfermesh_ledger_outbox_failures_total %llu\n"
               "# HELP infermesh_ledger_outbox_connected 1 while the outbox holds a PostgreSQL connection.\n"
               "# TYPE infermesh_ledger_outbox_connected gauge\ninfermesh_ledger_outbox_connected %d\n",
               (unsigned long long)os.forwarded, (unsigned long long)os.failures, os.connected ? 1 : 0);
  }
  http_resp_send(req, 200, "text/plain; version=0.0.4", b.base, b.len, NULL, 0);
  buf_free(&b);
}

static void readyz(struct agent *a, struct http_req *req) {
  int healthy = 0;
  for (int i = 0; i < a->store.ntargets; i++) healthy += a->store.targets[i].healthy;
  if (a->draining)
    http_resp_send(req, 503, "text/plain", "draining\n", 9, NULL, 0);
  else if (healthy == 0)
    http_resp_send(req, 503, "text/plain", "no healthy target\n", 18, NULL, 0);
  else
    http_resp_send(req, 200, "text/plain", "ready\n", 6, NULL, 0);
}

static void status(struct agent *a, struct http_req *req, uint64_t now) {
  struct buf b = {0}, gpus = {0};
  uint64_t total = 0;
  for (int i = 0; i < a->router.metrics.nseries; i++) total += a->router.metrics.series[i].count;
  gpu_poll_json(&a->gpu, &gpus);
  struct status_info info = {.node_name = a->cfg->node_name,
                             .version = INFERMESH_VERSION,
                             .listen = a->listen,
                             .uptime_s = (double)(now - a->start_ns) / 1e9,
                             .inflight = a->router.inflight,
                             .requests_total = total,
                             .gpus_json = gpus.base};
  status_json(&b, &info, &a->store);
  buf_free(&gpus);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void targets(struct agent *a, struct http_req *req, uint64_t now) {
  struct buf b = {0};
  struct status_proc *procs = xcalloc((size_t)a->store.ntargets + 1, sizeof *procs); /* state NULL: no exec */
  for (int i = 0; i < a->store.ntargets; i++) {
    supervisor_proc_info(a->sup, i, now, &procs[i]);
    procs[i].breaker = breaker_state_name(a->router.breakers[i].state);
  }
  status_targets_json(&b, &a->store, &a->router.score, now, procs);
  free(procs);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

/* GET /v1/cluster/history[?since=MS]: the samples newer than MS (all without it). */
static void history_view(struct agent *a, struct http_req *req) {
  struct buf b = {0};
  uint64_t since = 0;
  char v[32];
  int qrc = http_query_get(req->query, "since", v, sizeof v);
  if ((qrc != 0 && qrc != -ENOENT) || (qrc == 0 && slice_to_u64(slice_cstr(v), &since) != 0)) {
    api_reply_error(req, 400, "since must be a time in ms since the epoch (end_ms of a previous answer)",
                    "invalid_value");
    return;
  }
  history_json(a->hist, &a->store, (int64_t)since, &b);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void hist_timer_cb(uv_timer_t *t) {
  struct agent *a = t->data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  history_sample(a->hist, &a->store, &a->router.metrics, a->router.inflight, now_ms);
}

/* scoped_tenant is the tenant a request of an API_SCOPED route is limited to: its key's tenant when it holds a
 * tenant's key (not the admin or read token) on a listener that requires keys; NULL = everything. */
static const char *scoped_tenant(struct agent *a, struct http_req *req) {
  if (a->router.opts.ntenants == 0) return NULL;
  struct slice auth = http_req_header(req, "authorization");
  int t = tenants_lookup(a->router.opts.tenants, a->router.opts.ntenants, auth);
  return t >= 0 ? a->router.opts.tenants[t].name : NULL;
}

/* handle dispatches req through the route table (api/routes.c): credentials first, then the route's handler. */
static void handle(struct http_req *req, void *arg) {
  struct agent *a = arg;
  if (grpc_is_call(req)) {
    grpc_handle(&a->grpc, req);
    return;
  }
  bool known;
  const struct api_route *rt = api_route_find(req->method, req->path, &known);
  if (!rt) {
    if (known) {
      char allow[64];
      api_route_allowed(req->path, allow, sizeof allow);
      struct http_header h = {SLICE_LIT("Allow"), slice_cstr(allow)};
      char msg[96];
      snprintf(msg, sizeof msg, "method not allowed here: use %s", allow);
      api_reply_error_headers(req, 405, msg, "method_not_allowed", &h, 1);
    } else {
      api_reply_error(req, 404, "unknown endpoint; see /v1/models, /v1/chat/completions, /v1/completions, /metrics",
                      "not_found");
    }
    return;
  }
  if (!authorize(a, rt, req)) return;
  uint64_t now = clock_mono_ns();
  bool served = true;
  switch (rt->op) {
  case API_OP_HEALTHZ:
    http_resp_send(req, 200, "text/plain", "ok\n", 3, NULL, 0);
    break;
  case API_OP_READYZ:
    readyz(a, req);
    break;
  case API_OP_METRICS:
    metrics(a, req, now);
    break;
  case API_OP_STATUS:
    status(a, req, now);
    break;
  case API_OP_TARGETS:
    targets(a, req, now);
    break;
  case API_OP_MODELS:
  case API_OP_INFERENCE:
    served = router_handle(&a->router, req);
    break;
  case API_OP_EVENTS:
    served = events_handle(req);
    break;
  case API_OP_MODEL_CTL:
    served = model_api_handle(&a->mapi, req);
    break;
  case API_OP_RAFT:
  case API_OP_CTL_READ:
  case API_OP_CTL_WRITE:
  case API_OP_CTL_STATE:
  case API_OP_PROPOSE:
    served = api_control_handle(&a->ctl_port, req); /* answers 409 when the agent has no control plane */
    break;
  case API_OP_MEMBERS:
  case API_OP_LEAVE:
  case API_OP_DRAIN:
    served = cluster_api_handle(&a->capi, req);
    break;
  case API_OP_RPC:
    served = rpc_api_handle(&a->ctl_port, &a->mesh_port, req);
    break;
  case API_OP_LEDGER:
    served = ledger_api_handle(&a->lapi, req, scoped_tenant(a, req));
    break;
  case API_OP_BUDGETS: {
    struct buf b = {0};
    budgets_json(a->router.opts.tenants, a->router.opts.ntenants, scoped_tenant(a, req), a->spend, clock_wall_s(),
                 &b);
    api_reply_json(req, 200, &b);
    buf_free(&b);
    break;
  }
  case API_OP_HISTORY:
    history_view(a, req);
    break;
  case API_OP_UI:
    ui_handle(req);
    break;
  case API_OP_GRPC:
    api_reply_error(req, 415, "a gRPC method: call it with content-type application/grpc over HTTP/2",
                    "unsupported_media_type");
    break;
  }
  assert(served); /* the table and the handlers' own path checks agree */
  if (!served) api_reply_error(req, 500, "no handler for this route", "internal_error");
}

/* Does CUDA_VISIBLE_DEVICES-style entry e (an index, or a UUID with or without "GPU-") name GPU g? */
static bool gpu_named(const struct gpu_info *g, const char *e, size_t n) {
  uint64_t idx;
  if (slice_to_u64(slice_make(e, n), &idx) == 0) return idx == g->index;
  size_t ul = strlen(g->uuid);
  if (n == ul && strncmp(e, g->uuid, n) == 0) return true;
  return ul > 4 && strncmp(g->uuid, "GPU-", 4) == 0 && n == ul - 4 && strncmp(e, g->uuid + 4, n) == 0;
}

/* After each GPU poll: a target whose GPUs (its `gpus:` setting, or the node's only GPU) include a degraded
 * one ranks lower until the GPU recovers. */
static void gpus_updated_cb(void *arg) {
  struct agent *a = arg;
  for (int i = 0; i < a->cfg->nruntimes && i < a->store.ntargets; i++) {
    const char *spec = a->cfg->runtimes[i].gpus;
    struct target *t = &a->store.targets[i];
    bool degraded = false;
    if (spec[0]) {
      for (const char *e = spec; *e;) {
        size_t n = strcspn(e, ",");
        while (n && *e == ' ') e++, n--;
        for (int j = 0; j < a->gpu.ngpus; j++)
          if (gpu_named(&a->gpu.gpus[j], e, n) && a->gpu.gpus[j].health == GPU_HEALTH_DEGRADED) degraded = true;
        e += n;
        if (*e == ',') e++;
      }
    } else if (a->gpu.ngpus == 1) {
      degraded = a->gpu.gpus[0].health == GPU_HEALTH_DEGRADED;
    }
    if (degraded != t->gpu_degraded)
      log_warn(degraded ? "target GPU degraded: ranking it lower" : "target GPU healthy again", "target=%s gpus=\"%s\"",
               t->name, spec[0] ? spec : "the node's only GPU");
    store_set_degraded(&a->store, i, degraded);
  }
}

static void seed_one(void *arg, const char *tenant, const struct spend_figures *f) {
  spend_book_seed(arg, tenant, f, clock_wall_s());
}

/* seed_spend reads back this node's spend of the current day and month and of all time from its ledger, so a
 * restart forgets none of it (once, at start: the loop serves nothing yet). */
static int seed_spend(struct agent *a, char *err, size_t errlen) {
  struct ledger_db *db;
  int64_t now = clock_wall_s();
  int rc = ledger_db_open(&db, a->lapi.path, err, errlen);
  if (rc != 0) return rc;
  rc = ledger_db_spend(db, period_start(PERIOD_DAY, now), period_start(PERIOD_MONTH, now), seed_one, a->spend, err,
                       errlen);
  ledger_db_close(db);
  return rc;
}

/* start_ledger opens DATA_DIR/ledger.db and its writer when metering is on. 0 or a negative code with err. */
static int start_ledger(struct agent *a, char *err, size_t errlen) {
  const struct agent_config *cfg = a->cfg;
  char dir[512];
  a->lapi = (struct ledger_api){.loop = a->loop, .enabled = cfg->ledger_enabled};
  str_copy(a->lapi.pg, sizeof a->lapi.pg, cfg->ledger_postgres);
  a->spend = spend_book_new();
  a->meter = (struct meter){.cfg = cfg, .router = &a->router, .mesh = a->mesh, .spend = a->spend};
  meter_bind(&a->meter); /* costs are reported even with metering off */
  if (a->mesh) {
    budget_sync_start(&a->bsync, a->loop, a->spend, a->mesh);
    a->bsync_on = true;
  }
  if (!cfg->ledger_enabled) return 0;
  if (cfg->cluster.data_dir[0])
    str_copy(dir, sizeof dir, cfg->cluster.data_dir);
  else if (datadir_default(dir, sizeof dir) != 0) {
    snprintf(err, errlen, "no data dir for the ledger: pass --data-dir DIR");
    return -EINVAL;
  }
  int rc = datadir_ensure(dir, err, errlen);
  if (rc == 0 && (rc = datadir_path(a->lapi.path, sizeof a->lapi.path, dir, LEDGER_DB_FILE)) != 0)
    snprintf(err, errlen, "data dir path too long: %s", dir);
  if (rc == 0) rc = ledger_writer_start(&a->ledger, a->loop, a->lapi.path, err, errlen);
  if (rc == 0) rc = seed_spend(a, err, errlen);
  a->meter.writer = a->lapi.writer = a->ledger;
  if (rc == 0 && cfg->ledger_postgres[0]) {
    char node[96];
    if (a->mesh) /* the node's identity: stable across renames and restarts */
      sodium_bin2hex(node, sizeof node, mesh_node_id(a->mesh), 32);
    else
      str_copy(node, sizeof node, cfg->node_name);
    rc = ledger_outbox_start(&a->outbox, a->lapi.path, cfg->ledger_postgres, node, err, errlen);
  }
  return rc;
}

static void log_flush_cb(uv_prepare_t *h) { log_flush(); }

/* start_tracer starts OpenTelemetry export to tracing.endpoint and makes the router trace its requests. */
static int start_tracer(struct agent *a, char *err, size_t errlen) {
  const struct agent_config *cfg = a->cfg;
  struct tracer_opts to = {.endpoint = cfg->trace_endpoint,
                           .sample_ratio = cfg->trace_sample_ratio,
                           .service_name = cfg->trace_service_name,
                           .instance_id = cfg->node_name,
                           .version = INFERMESH_VERSION};
  a->tracer = xmalloc(sizeof *a->tracer);
  int rc = tracer_init(a->tracer, a->loop, &to, err, errlen);
  if (rc == 0 && (rc = router_set_tracer(&a->router, a->tracer)) != 0)
    snprintf(err, errlen, "tracing: no room for another request observer");
  if (rc == 0)
    log_info("tracing", "endpoint=%s sample_ratio=%g service=%s", cfg->trace_endpoint, cfg->trace_sample_ratio,
             cfg->trace_service_name);
  return rc;
}

/* ---- stopping: the parts in reverse start order ---- */

/* The long-lived parts agent_run starts, in start order. agent_stop closes them in reverse, one at a time: each
 * closer ends by calling stop_next (directly, or as the callback of the part's own X_close(x, cb, arg)). A new
 * part (one that must flush, say) is one closer and one row. */
static void stop_next(void *arg);

static void close_events(struct agent *a) {
  events_close();
  stop_next(a);
}

static void close_gpu(struct agent *a) { gpu_poll_close(&a->gpu, stop_next, a); }

/* The scraper stops before the runtimes so that it cannot mark a runtime being stopped healthy again. */
static void close_scraper(struct agent *a) { scraper_close(&a->scraper, stop_next, a); }

static void sup_closed_cb(void *arg) {
  struct agent *a = arg;
  a->sup = NULL;
  stop_next(a);
}

/* Runtimes get SIGTERM once their requests are done (at most the drain timeout; none after it), then SIGKILL. */
static void close_supervisor(struct agent *a) {
  supervisor_stop(a->sup, a->drain_timed_out ? 0 : a->cfg->drain_timeout_ms, sup_closed_cb, a);
}

/* After the writer's last commit: the outbox forwards what it can (PostgreSQL up) and stops. */
static void ledger_closed_cb(void *arg) {
  struct agent *a = arg;
  if (a->outbox) ledger_outbox_stop(a->outbox); /* blocks for at most one pass, at exit */
  a->outbox = NULL;
  stop_next(a);
}

static void close_ledger(struct agent *a) {
  if (a->bsync_on) budget_sync_close(&a->bsync, NULL, NULL); /* before the mesh it reports through */
  a->bsync_on = false;
  a->meter.writer = a->lapi.writer = NULL;
  struct ledger_writer *w = a->ledger;
  a->ledger = NULL;
  if (w) ledger_writer_close(w, ledger_closed_cb, a); /* commits what is queued, then ends */
  else ledger_closed_cb(a);
}

/* After the requests: their last spans go out (bounded by EXPORTER_FLUSH_MS). */
static void close_tracer(struct agent *a) {
  if (a->tracer) tracer_close(a->tracer, stop_next, a);
  else stop_next(a);
}

static void ctl_closed_cb(void *arg) {
  struct agent *a = arg;
  a->ctl = NULL;
  a->ctl_port.ctx = NULL;
  stop_next(a);
}

/* Before the mesh: Raft uses its keyring. */
static void close_control(struct agent *a) {
  if (a->ctl) control_close(a->ctl, ctl_closed_cb, a);
  else stop_next(a);
}

static void mesh_closed_cb(void *arg) {
  struct agent *a = arg;
  a->mesh = NULL;
  a->mesh_port.ctx = NULL;
  stop_next(a);
}

/* The mesh closes once the leave has spread (leave_done_cb goes on then); after a drain timeout the process
 * exits without waiting for it. */
static void close_mesh(struct agent *a) {
  if (!a->mesh || (a->drain_timed_out && !a->leave_done)) stop_next(a);
  else if (a->leave_done) mesh_close(a->mesh, mesh_closed_cb, a);
  else a->close_mesh_pending = true;
}

static void close_pools(struct agent *a) {
  /* The local targets: the runtimes, then their bench copies (add_bench_targets), ids 0.. in that order. */
  for (int i = 0; i < a->cfg->nruntimes + a->cfg->bench_targets; i++) http_pool_close(&a->pools[i]);
  stop_next(a);
}

static void (*const parts[])(struct agent *a) = {close_pools,   close_tracer, close_mesh,
                                                  close_control, close_ledger, close_supervisor,
                                                  close_scraper, close_gpu,    close_events};
#define NPARTS ((int)(sizeof parts / sizeof parts[0]))

static void closed_cb(uv_handle_t *h) { (void)h; }

/* After a drain timeout ended every request: a moment for those last bytes to reach the clients. */
#define DRAIN_FLUSH_MS 200
static void drain_flushed_cb(uv_timer_t *t) {
  struct agent *a = t->data;
  uv_stop(a->loop);
}

static void stop_next(void *arg) {
  struct agent *a = arg;
  assert(a->stop_left > 0);
  if (--a->stop_left > 0) {
    parts[a->stop_left - 1](a);
    return;
  }
  if (a->drain_timed_out) { /* requests may still hold connections: the loop is stopped, not run dry */
    uv_timer_start(&a->drain_timer, drain_flushed_cb, DRAIN_FLUSH_MS, 0);
    return;
  }
  uv_close((uv_handle_t *)&a->sigterm, closed_cb);
  uv_close((uv_handle_t *)&a->sigint, closed_cb);
  uv_close((uv_handle_t *)&a->sighup, closed_cb);
  uv_close((uv_handle_t *)&a->drain_timer, closed_cb);
  uv_close((uv_handle_t *)&a->log_flusher, closed_cb);
  uv_close((uv_handle_t *)&a->hist_timer, closed_cb);
}

/* agent_stop closes the parts in reverse start order (once), then the agent's own handles: the loop ends. */
static void agent_stop(struct agent *a) {
  if (a->stopping) return;
  a->stopping = true;
  a->stop_left = NPARTS + 1; /* stop_next closes parts[stop_left - 1] after each decrement: 0 = all closed */
  stop_next(a);
}

static void drained_cb(struct http_server *srv) {
  struct agent *a = srv->arg;
  log_info("drained", "in_flight=%d", a->router.inflight);
  if (a->drain_timed_out) return; /* the stop is under way already */
  uv_timer_stop(&a->drain_timer);
  agent_stop(a);
}

static void drain_timeout_cb(uv_timer_t *t) {
  struct agent *a = t->data;
  log_warn("drain timeout: exiting with requests still in flight", "in_flight=%d timeout_ms=%u", a->router.inflight,
           a->cfg->drain_timeout_ms);
  a->exit_code = 1;
  a->drain_timed_out = true;
  router_shutdown(&a->router); /* open streams end with an error event and their chunked end, not mid-chunk */
  agent_stop(a);               /* the runtimes get no grace now: SIGTERM, then SIGKILL */
}

static void leave_done_cb(void *arg) {
  struct agent *a = arg;
  a->leave_done = true;
  log_info("left the mesh", "node=%s", a->cfg->node_name);
  if (a->close_mesh_pending) mesh_close(a->mesh, mesh_closed_cb, a);
}

/* Graceful exit: leave the mesh (others stop routing here at once), finish what is in flight, stop. */
static void begin_exit(struct agent *a, const char *why) {
  a->draining = true;
  log_info("draining", "reason=%s in_flight=%d", why, a->router.inflight);
  if (a->mesh) mesh_set_kv(a->mesh, NULL); /* routing keeps the cache view it has */
  kv_state_close(a->kv);
  a->kv = NULL;
  if (a->mesh) mesh_leave(a->mesh, leave_done_cb, a);
  uv_timer_start(&a->drain_timer, drain_timeout_cb, a->cfg->drain_timeout_ms, 0);
  events_stop(); /* event streams never end by themselves: the drain must not wait on them */
  ingress_tls_stop(&a->tls);
  if (a->hops_on) http_server_drain(&a->hops, NULL);
  http_server_drain(&a->server, drained_cb);
}

static void leave_request_cb(void *arg) {
  struct agent *a = arg;
  if (!a->draining) begin_exit(a, "leave");
}

static void sighup_cb(uv_signal_t *s, int signum) {
  struct agent *a = s->data;
  if (a->mesh) mesh_reload_keyring(a->mesh);
  ingress_tls_reload(&a->tls);
}

static void signal_cb(uv_signal_t *s, int signum) {
  struct agent *a = s->data;
  if (a->draining) {
    log_warn("second signal: exiting now", "signal=%d in_flight=%d", signum, a->router.inflight);
    a->exit_code = 1;
    supervisor_kill_now(a->sup);
    uv_stop(a->loop);
    return;
  }
  begin_exit(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void agent_free(struct agent *a) {
  if (a->tracer) tracer_free(a->tracer);
  free(a->tracer);
  spend_book_free(a->spend);
  history_free(a->hist);
  free(a->hist);
  router_free(&a->router);
  store_free(&a->store);
  free(a->pools);
  free(a->loop);
  free(a);
}

/* Run the loop until nothing is left on it after an early failure, so every handle is closed. */
static void close_all_cb(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void abandon(struct agent *a) {
  http_server_set_tls(&a->server, NULL);
  if (a->mesh) mesh_set_kv(a->mesh, NULL);
  kv_state_close(a->kv);
  a->kv = NULL;
  uv_walk(a->loop, close_all_cb, NULL);
  uv_run(a->loop, UV_RUN_DEFAULT);
  uv_loop_close(a->loop);
  agent_free(a);
}

/* add_bench_targets registers cfg->bench_targets more local targets (benchmarks only, --bench-targets), the
 * k-th a copy of runtime k mod nruntimes under the name NAME~bK: one agent then ranks many real targets served
 * by a few engines. 0, or -1 when the store is full or a pool cannot start (said on stderr). */
static int add_bench_targets(struct agent *a, const struct agent_config *cfg) {
  for (int k = 0; k < cfg->bench_targets; k++) {
    const struct config_runtime *rt = &cfg->runtimes[k % cfg->nruntimes];
    char name[96];
    snprintf(name, sizeof name, "%s~b%d", rt->name[0] ? rt->name : "rt", k);
    int id = store_add_target(&a->store, name, rt->url, rt->kind);
    if (id < 0 || http_pool_init(&a->pools[id], a->loop, a->store.targets[id].host, a->store.targets[id].port) != 0) {
      fprintf(stderr, "infermesh agent: cannot add bench target %s\n", name);
      return -1;
    }
  }
  return 0;
}

int agent_run(const struct agent_config *cfg, void (*ready_cb)(void *arg, int port), void *arg) {
  struct agent *a = xcalloc(1, sizeof *a);
  int rc;
  a->cfg = cfg;
  a->loop = xmalloc(sizeof *a->loop);
  uv_loop_init(a->loop);
  a->start_ns = clock_mono_ns();
  signal(SIGPIPE, SIG_IGN);
  /* DESIGN §10: every connection is a descriptor; the soft limit (often 1024) is raised to the hard one, and
   * the listener keeps limits.fd_reserve of them free to answer 503 and log. */
  uint64_t nofile = http_raise_nofile();
  /* Request bodies come and go in buffers of up to limits.max_body: keep them in mmap'd chunks given back to
   * the kernel on free. glibc would otherwise raise its mmap threshold after the first such free and serve
   * the next ones from the heap, where up to twice that much stays resident after the requests end. */
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  store_init(&a->store, cfg->max_targets);
  a->hist = xmalloc(sizeof *a->hist);
  history_init(a->hist, a->store.cap);
  a->pools = xcalloc((size_t)a->store.cap, sizeof *a->pools); /* remote targets get theirs as they appear */
  int ids[CONFIG_MAX_RUNTIMES];
  for (int i = 0; i < cfg->nruntimes; i++) {
    const struct config_runtime *rt = &cfg->runtimes[i];
    int id = store_add_target(&a->store, rt->name[0] ? rt->name : NULL, rt->url, rt->kind);
    ids[i] = id;
    if (id >= 0) {
      str_copy(a->store.targets[id].alias, sizeof a->store.targets[id].alias, rt->alias);
      str_copy(a->store.targets[id].api_key, sizeof a->store.targets[id].api_key, rt->api_key);
    }
    if (id < 0 || http_pool_init(&a->pools[id], a->loop, a->store.targets[id].host, a->store.targets[id].port) != 0) {
      fprintf(stderr, "infermesh agent: bad runtime URL '%s': use http://IP:PORT or http://localhost:PORT\n", rt->url);
      abandon(a);
      return 2;
    }
  }
  if (add_bench_targets(a, cfg) != 0) {
    abandon(a);
    return 2;
  }
  struct router_opts ro;
  router_opts_default(&ro);
  ro.max_attempts = cfg->max_attempts;
  ro.upstream_timeout_ms = cfg->upstream_timeout_ms;
  ro.first_byte_timeout_ms = cfg->first_byte_timeout_ms;
  ro.first_byte_timeout_max_ms = cfg->first_byte_timeout_max_ms;
  ro.breaker.failures = cfg->breaker_failures;
  ro.breaker.backoff_ms = cfg->breaker_backoff_ms;
  ro.breaker.backoff_max_ms = cfg->breaker_backoff_ms * 30;
  str_copy(ro.node_name, sizeof ro.node_name, cfg->node_name);
  str_copy(ro.zone, sizeof ro.zone, cfg->cluster.zone);
  ro.adm = cfg->adm;
  ro.tenants = cfg->tenants;
  ro.ntenants = cfg->ntenants;
  ro.hedge_delay_ms = cfg->hedge_delay_ms;
  ro.hedge_min_samples = cfg->hedge_min_samples;
  ro.hedge_max_fraction = cfg->hedge_max_fraction;
  str_copy(ro.policy, sizeof ro.policy, cfg->routing_policy);
  ro.aliases = cfg->aliases;
  ro.naliases = cfg->naliases;
  /* DESIGN §10: a listener other machines can reach must authenticate its clients. */
  const char *lh = cfg->listen_host;
  bool loopback = strncmp(lh, "127.", 4) == 0 || strcmp(lh, "::1") == 0 || strcmp(lh, "localhost") == 0;
  if (!loopback && cfg->ntenants == 0 && !cfg->insecure_no_auth) {
    fprintf(stderr, "infermesh agent: listening on %s (beyond loopback) needs API keys: configure tenants "
                    "(tenants: in the config file, or --tenant name=NAME,key=KEY), or pass --insecure-no-auth\n", lh);
    abandon(a);
    return 2;
  }
  if (!loopback && cfg->ntenants == 0)
    log_warn("listening beyond loopback without API keys (--insecure-no-auth)", "listen=%s", lh);
  router_init(&a->router, a->loop, &a->store, a->pools, &ro);
  http_server_init(&a->server, a->loop, &cfg->limits, handle, a);
  char err[512];
  if (cfg->trace_endpoint[0] && (rc = start_tracer(a, err, sizeof err)) != 0) {
    fprintf(stderr, "infermesh agent: %s\n", err);
    abandon(a);
    return 2;
  }
  if ((rc = ingress_tls_start(&a->tls, a->loop, cfg, &a->server, err, sizeof err)) != 0) {
    log_error("cannot start TLS", "err=\"%s\"", err);
    fprintf(stderr, "infermesh agent: %s\n", err);
    abandon(a);
    return 2;
  }
  a->grpc.env = (struct grpc_env){.methods = grpc_services,
                                  .nmethods = grpc_nservices,
                                  .loop = a->loop,
                                  .router = &a->router,
                                  .store = &a->store,
                                  .ctl = &a->ctl_port,
                                  .mesh = &a->mesh_port,
                                  .draining = &a->draining,
                                  .node_name = cfg->node_name,
                                  .verdict = verdict,
                                  .http_handle = handle,
                                  .arg = a};
  if ((rc = http_server_listen(&a->server, cfg->listen_host, cfg->listen_port)) != 0) {
    log_error("cannot start the listener", "err=\"%s\"", a->server.errmsg);
    fprintf(stderr, "infermesh agent: %s\n", a->server.errmsg);
    abandon(a);
    return 1;
  }
  snprintf(a->listen, sizeof a->listen, "%s:%d", cfg->listen_host, http_server_port(&a->server));
  /* A TLS listener refuses the plaintext HTTP the tunnel relays: tunnel hops get a loopback listener of their
   * own (the tunnel already encrypted and authenticated them; its hop signatures still bind each call). */
  if (cfg->tls.cert[0]) {
    http_server_init(&a->hops, a->loop, &cfg->limits, handle, a);
    if ((rc = http_server_listen(&a->hops, "127.0.0.1", 0)) != 0) {
      log_error("cannot start the tunnel hops' listener", "err=\"%s\"", a->hops.errmsg);
      fprintf(stderr, "infermesh agent: %s\n", a->hops.errmsg);
      abandon(a);
      return 1;
    }
    a->hops_on = true;
  }
  /* Other nodes dial the listener at its address, or at the gossip advertise host when it listens on all. */
  bool wildcard = strcmp(cfg->listen_host, "0.0.0.0") == 0 || strcmp(cfg->listen_host, "::") == 0;
  if (wildcard && cfg->cluster.advertise[0]) {
    char host[64];
    str_copy(host, sizeof host, cfg->cluster.advertise);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    snprintf(a->api_addr, sizeof a->api_addr, "%s:%d", host, http_server_port(&a->server));
  } else {
    str_copy(a->api_addr, sizeof a->api_addr, a->listen);
  }
  struct mesh_env menv = {.loop = a->loop,
                          .cfg = cfg,
                          .store = &a->store,
                          .router = &a->router,
                          .pools = a->pools,
                          .nlocal = cfg->nruntimes,
                          .api_addr = a->api_addr,
                          .hop_port = a->hops_on ? http_server_port(&a->hops) : 0,
                          .gpu = &a->gpu};
  if ((rc = mesh_start(&a->mesh, &menv, err, sizeof err)) != 0) {
    log_error("cannot join the mesh", "err=\"%s\"", err);
    fprintf(stderr, "infermesh agent: %s\n", err);
    abandon(a);
    return rc == -EINVAL || rc == -ENOENT ? 2 : 1;
  }
  struct kv_state_env kenv = {.loop = a->loop, .cfg = cfg, .store = &a->store, .router = &a->router,
                               .nlocal = cfg->nruntimes};
  if ((rc = kv_state_start(&a->kv, &kenv, err, sizeof err)) != 0) {
    fprintf(stderr, "infermesh agent: %s\n", err);
    abandon(a);
    return 2;
  }
  if (a->mesh) mesh_set_kv(a->mesh, a->kv);
  if (a->mesh) {
    a->router.kr = mesh_keyring(a->mesh);
    a->router.node_id = mesh_node_id(a->mesh); /* hops are signed for the node that receives them */
    a->router.dialer = mesh_hop_dialer(a->mesh); /* and travel through the tunnel */
  }
  a->mesh_port = api_mesh_of(a->mesh);
  a->capi = (struct cluster_api){
      .loop = a->loop, .mesh = a->mesh_port, .router = &a->router, .leave_cb = leave_request_cb, .arg = a};
  struct control_env cenv = {.loop = a->loop, .cfg = cfg, .mesh = a->mesh, .router = &a->router};
  if ((rc = control_start(&a->ctl, &cenv, err, sizeof err)) != 0) {
    log_error("cannot start the control plane", "err=\"%s\"", err);
    fprintf(stderr, "infermesh agent: %s\n", err);
    abandon(a);
    return 2;
  }
  a->ctl_port = api_control_of(a->ctl, a->mesh, cfg);
  if ((rc = start_ledger(a, err, sizeof err)) != 0) {
    log_error("cannot open the ledger", "err=\"%s\"", err);
    fprintf(stderr, "infermesh agent: %s (pass --ledger false to run without metering)\n", err);
    abandon(a);
    return 1;
  }
  a->mapi = (struct model_api){a->loop, &a->store, &a->router, &a->mesh_port, &a->ctl_port, cfg->node_name};
  size_t exelen = sizeof a->exe;
  if (uv_exepath(a->exe, &exelen) != 0) str_copy(a->exe, sizeof a->exe, "/proc/self/exe");
  a->sup = supervisor_start(a->loop, &a->store, cfg, ids, a->exe); /* before scraping: it waits on health */
  const char **murls = xcalloc((size_t)a->store.cap, sizeof *murls);
  for (int i = 0; i < cfg->nruntimes; i++)
    if (ids[i] >= 0) murls[ids[i]] = cfg->runtimes[i].metrics_url;
  scraper_start(&a->scraper, a->loop, &a->store, a->pools, cfg->scrape_interval_ms, murls);
  free(murls);
  /* The agent is the one layer that reads the environment: it hands NVML's settings down. */
  gpu_poll_start(&a->gpu, a->loop, GPU_POLL_MS, getenv("INFERMESH_NVML_LIB"), getenv("CUDA_VISIBLE_DEVICES"));
  a->gpu.updated_cb = gpus_updated_cb;
  a->gpu.updated_arg = a;
  events_start(a->loop);
  events_limits(cfg->events_max_streams, cfg->events_max_per_client);
  uv_timer_init(a->loop, &a->hist_timer);
  a->hist_timer.data = a;
  uv_timer_start(&a->hist_timer, hist_timer_cb, 1000, 1000);
  uv_signal_init(a->loop, &a->sigterm);
  uv_signal_init(a->loop, &a->sigint);
  uv_signal_init(a->loop, &a->sighup);
  a->sighup.data = a;
  uv_signal_start(&a->sighup, sighup_cb, SIGHUP);
  uv_timer_init(a->loop, &a->drain_timer);
  a->sigterm.data = a->sigint.data = a->drain_timer.data = a;
  uv_signal_start(&a->sigterm, signal_cb, SIGTERM);
  uv_signal_start(&a->sigint, signal_cb, SIGINT);
  uv_prepare_init(a->loop, &a->log_flusher);
  uv_prepare_start(&a->log_flusher, log_flush_cb);
  log_buffer_lines(true);
  log_info("agent listening", "node=%s listen=%s tls=%s targets=%d tenants=%d max_fds=%llu version=%s",
           cfg->node_name, a->listen,
           cfg->tls.cert[0] ? "on" : loopback ? "off" : "off warning=\"plaintext beyond loopback: set tls.cert and tls.key\"",
           a->store.ntargets, cfg->ntenants, (unsigned long long)nofile, INFERMESH_VERSION);
  if (ready_cb) ready_cb(arg, http_server_port(&a->server));
  uv_run(a->loop, UV_RUN_DEFAULT);
  log_buffer_lines(false); /* flushes */
  int code = a->exit_code;
  log_info("agent stopped", "exit=%d", code);
  if (code == 0) {
    uv_loop_close(a->loop);
    agent_free(a);
  }
  /* After a drain timeout or a second signal the process exits with requests in flight: their memory
   * goes with it. */
  return code;
}

int agent_main(int argc, char **argv) {
  static struct agent_config cfg;
  char err[512];
  config_defaults(&cfg);
  int rc = config_load_args(&cfg, argc, argv, err, sizeof err);
  if (rc == 1) return 0;
  if (rc != 0) {
    fprintf(stderr, "infermesh agent: %s\n", err);
    return 2;
  }
  log_setup((enum log_level)log_level_parse(cfg.log_level), "agent");
  if (cfg.nruntimes == 0) log_warn("no runtime configured: every request will get 503", "hint=\"pass --target URL\"");
  return agent_run(&cfg, NULL, NULL);
}
