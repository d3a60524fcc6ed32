/* The router: its state (init, tenants, metrics, free), the OpenAI ingress (validate, scan, answer errors in
 * OpenAI's format, hand off to the proxy) and routing strategies per model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/proxy.h"
#include "route/proxy_int.h"
#include "route/router.h"

void router_opts_default(struct router_opts *o) {
  o->max_attempts = 3;
  o->upstream_timeout_ms = 300000;
  o->first_byte_timeout_ms = 2000;
  o->first_byte_timeout_max_ms = 60000;
  breaker_opts_default(&o->breaker);
  o->max_response_bytes = 16 * 1024 * 1024;
  str_copy(o->node_name, sizeof o->node_name, "local");
  adm_opts_default(&o->adm);
  o->tenants = NULL;
  o->ntenants = 0;
  o->hedge_delay_ms = 500;
  o->hedge_min_samples = 20;
  o->hedge_max_fraction = 0.05;
}

static void report_cb(void *arg, int id) { proxy_admit_dispatch(arg); }
static void down_cb(void *arg, int id) { router_target_down(arg, id); }

/* The routing policy's feedback, as an observer of attempts: the first token the client got from a send and
 * its end, with the tokens the winner generated. */
static void policy_attempt_ended(void *arg, const struct attempt_record *a) {
  if (a->t_first_ns) policy_on_first_token(a->policy, a->ticket, a->t_first_ns);
  policy_on_done(a->policy, a->ticket, a->t_end_ns, a->completion_tokens);
}

void router_init(struct router *r, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                 const struct router_opts *opts) {
  memset(r, 0, sizeof *r);
  r->loop = loop;
  r->store = store;
  r->pools = pools;
  r->breakers = xcalloc((size_t)store->cap, sizeof *r->breakers);
  cand_sets_init(&r->cands, store->cap);
  r->cand_ids = xmalloc((size_t)store->cap * sizeof *r->cand_ids);
  r->cand_pt = xmalloc((size_t)store->cap * sizeof *r->cand_pt);
  r->io = upstream_real_init(&r->io_real, loop, pools);
  router_observe(r, &(struct request_observer){.on_attempt = policy_attempt_ended});
  router_observe(r, &(struct request_observer){.on_record = route_metrics_on_record, .arg = &r->metrics});
  router_observe(r, &(struct request_observer){.on_record = router_log_record});
  if (opts)
    r->opts = *opts;
  else
    router_opts_default(&r->opts);
  score_params_default(&r->score);
  rng_seed(&r->rng, clock_mono_ns());
  struct policy_config pc;
  policy_config_default(&pc);
  r->policy = policy_new(r->opts.policy[0] ? r->opts.policy : "ours", &pc, rng_next(&r->rng));
  if (!r->policy) r->policy = policy_new("ours", &pc, rng_next(&r->rng)); /* names are checked by the config */
  route_ctl_init(&r->ctl, r->opts.node_name, r->opts.zone);
  route_metrics_init(&r->metrics);
  /* Tenant i of the config is admission tenant i; without tenants, one default tenant without limits. */
  struct adm_limits lim[TENANTS_MAX];
  int nt = r->opts.ntenants > TENANTS_MAX ? TENANTS_MAX : r->opts.ntenants;
  r->opts.ntenants = nt;
  for (int i = 0; i < nt; i++) lim[i] = r->opts.tenants[i].lim;
  uint64_t now = clock_mono_ns();
  admission_init(&r->adm, &r->opts.adm, nt ? lim : NULL, nt ? nt : 1, now);
  adm_bucket_init(&r->hedge_credit, 0, 1, now);
  store->report_cb = report_cb;
  store->report_arg = r;
  store->down_cb = down_cb;
  store->down_arg = r;
}

int router_observe(struct router *r, const struct request_observer *o) {
  if (r->nobservers >= ROUTER_MAX_OBSERVERS) return -ENOSPC;
  r->observers[r->nobservers++] = *o;
  return 0;
}

int router_set_tracer(struct router *r, struct tracer *t) {
  int rc = router_observe(
      r, &(struct request_observer){.on_record = proxy_trace_on_record, .on_attempt = proxy_trace_on_attempt, .arg = t});
  if (rc == 0) r->tracer = t;
  return rc;
}

void router_log_record(void *arg, const struct request_record *rec) {
  log_info("request",
           "id=%s tenant=%s model=\"%s\" target=%s status=%d outcome=%s stream=%d attempts=%d hedged=%d ms=%.1f "
           "ttft_ms=%.1f prompt_tokens=%lld completion_tokens=%lld%s%s",
           rec->request_id, rec->tenant[0] ? rec->tenant : "-", rec->model, rec->target[0] ? rec->target : "-",
           rec->status, rec->outcome, rec->stream, rec->attempts, rec->hedged, rec->duration_ms,
           rec->ttft_ms >= 0 ? rec->ttft_ms : 0.0, (long long)rec->prompt_tokens, (long long)rec->completion_tokens,
           rec->trace ? " trace_id=" : "", rec->trace ? rec->trace->trace_hex : "");
}

void router_set_tenants(struct router *r, const struct tenant_conf *t, int n) {
  if (n > TENANTS_MAX) n = TENANTS_MAX;
  if (n < 0) n = 0;
  int map[TENANTS_MAX];
  struct adm_limits lim[TENANTS_MAX];
  int old_n = r->adm.ntenants;
  for (int i = 0; i < old_n; i++) {
    map[i] = -1;
    for (int j = 0; j < n && r->opts.ntenants; j++)
      if (strcmp(r->opts.tenants[i].name, t[j].name) == 0) map[i] = j;
  }
  if (n == 0 && r->opts.ntenants == 0) map[0] = 0; /* the default tenant stays */
  for (int j = 0; j < n; j++) lim[j] = t[j].lim;
  adm_set_tenants(&r->adm, n ? lim : NULL, n ? n : 1, map, clock_mono_ns());
  bool had_tenants = r->opts.ntenants > 0;
  for (struct proxy *p = r->active; p; p = p->next) {
    if (p->tenant >= 0 && p->tenant < old_n) p->tenant = map[p->tenant];
    /* Revoked: what is in flight finishes; what still waits does not get served on the old key. */
    if (had_tenants && n > 0 && p->tenant < 0 && p->queued && !p->local_only) proxy_admit_revoke(p);
  }
  r->opts.tenants = t;
  r->opts.ntenants = n;
}

void router_free(struct router *r) {
  if (r->store && r->store->report_arg == r) r->store->report_cb = NULL;
  if (r->store && r->store->down_arg == r) r->store->down_cb = NULL;
  if (r->policy) policy_free(r->policy);
  r->policy = NULL;
  for (int i = 0; i < 8; i++) {
    if (r->strategies[i]) policy_free(r->strategies[i]);
    r->strategies[i] = NULL;
  }
  admission_free(&r->adm);
  route_metrics_free(&r->metrics);
  route_ctl_free(&r->ctl);
  free(r->breakers);
  r->breakers = NULL;
  cand_sets_free(&r->cands);
  free(r->cand_ids);
  free(r->cand_pt);
  r->cand_ids = NULL;
  r->cand_pt = NULL;
  hop_seen_free(&r->hop_seen);
  buf_free(&r->head_scratch);
}

void router_metrics(const struct router *r, struct buf *out) {
  route_metrics_render(&r->metrics, out, r->inflight);
  buf_printf(out,
             "# HELP infermesh_hops_in_total Inference requests forwarded here by another agent and accepted.\n"
             "# TYPE infermesh_hops_in_total counter\ninfermesh_hops_in_total %llu\n"
             "# HELP infermesh_hops_refused_total Agent-to-agent calls (inference or control) refused: not signed with "
             "this cluster's key, for another purpose, outside the clock skew, or replayed.\n"
             "# TYPE infermesh_hops_refused_total counter\ninfermesh_hops_refused_total %llu\n",
             (unsigned long long)r->hops_in, (unsigned long long)r->hops_refused);
  buf_puts(out, "# HELP infermesh_target_breaker_state Circuit breaker of a target: 0 closed, 1 open (no "
                "requests until its backoff is over), 2 half-open (one probe request out).\n"
                "# TYPE infermesh_target_breaker_state gauge\n");
  for (int i = 0; i < r->store->ntargets; i++) {
    buf_puts(out, "infermesh_target_breaker_state{target=\"");
    buf_label_value(out, r->store->targets[i].name);
    buf_printf(out, "\"} %d\n", (int)r->breakers[i].state);
  }
  buf_puts(out, "# HELP infermesh_target_breaker_opens_total Times a target's circuit breaker opened.\n"
                "# TYPE infermesh_target_breaker_opens_total counter\n");
  for (int i = 0; i < r->store->ntargets; i++) {
    buf_puts(out, "infermesh_target_breaker_opens_total{target=\"");
    buf_label_value(out, r->store->targets[i].name);
    buf_printf(out, "\"} %llu\n", (unsigned long long)r->breakers[i].opens);
  }
  if (!r->opts.ntenants) return;
  buf_puts(out, "# HELP infermesh_tenant_admitted_total Requests of a tenant within its limits.\n"
                "# TYPE infermesh_tenant_admitted_total counter\n");
  for (int i = 0; i < r->adm.ntenants; i++) {
    buf_puts(out, "infermesh_tenant_admitted_total{tenant=\"");
    buf_label_value(out, r->opts.tenants[i].name);
    buf_printf(out, "\"} %llu\n", (unsigned long long)r->adm.tenants[i].admitted);
  }
  buf_puts(out, "# HELP infermesh_tenant_shed_total Requests of a tenant refused, by reason.\n"
                "# TYPE infermesh_tenant_shed_total counter\n");
  for (int i = 0; i < r->adm.ntenants; i++)
    for (int k = 1; k < ADM_NSHED; k++) {
      buf_puts(out, "infermesh_tenant_shed_total{tenant=\"");
      buf_label_value(out, r->opts.tenants[i].name);
      buf_printf(out, "\",reason=\"%s\"} %llu\n", adm_shed_name(k), (unsigned long long)r->adm.tenants[i].shed[k]);
    }
}

void router_error(struct router *r, struct http_req *req, int status, const char *type, const char *code,
                  const char *message, const char *model, int retry_after_s) {
  struct buf body = {0};
  char ra[16];
  struct http_header h[2];
  int nh = 0;
  http_error_json(&body, message, type, code);
  if (retry_after_s > 0) {
    snprintf(ra, sizeof ra, "%d", retry_after_s);
    h[nh++] = (struct http_header){SLICE_LIT("Retry-After"), slice_cstr(ra)};
  }
  http_resp_send(req, status, "application/json", body.base, body.len, h, nh);
  buf_free(&body);
  route_metrics_count(&r->metrics, model ? model : "", status, "");
}

/* GET /v1/models: the union of the models the targets serve (healthy or not: a model whose targets are
 * all down still exists, requests for it get 503 rather than 404), less those tenant (may be NULL) may not use. */
static void list_models(struct router *r, struct http_req *req, const struct tenant_conf *tenant) {
  struct buf out = {0};
  const char **seen = xmalloc((size_t)(r->store->ntargets + 1) * STORE_MAX_MODELS * sizeof *seen);
  int nseen = 0;
  buf_puts(&out, "{\"object\":\"list\",\"data\":[");
  for (int i = 0; i < r->store->ntargets; i++) {
    const struct target *t = &r->store->targets[i];
    for (int j = 0; j < t->nmodels; j++) {
      bool dup = false;
      for (int k = 0; k < nseen && !dup; k++) dup = strcmp(seen[k], t->models[j]) == 0;
      if (dup || (tenant && !tenant_model_allowed(tenant, slice_cstr(t->models[j])))) continue;
      seen[nseen++] = t->models[j];
      if (nseen > 1) buf_puts(&out, ",");
      buf_puts(&out, "{\"id\":");
      buf_json_str(&out, slice_cstr(t->models[j]));
      buf_puts(&out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"infermesh\"}");
    }
  }
  for (int i = 0; i < r->opts.naliases; i++) {
    const struct model_alias *a = &r->opts.aliases[i];
    if (!store_model_known(r->store, slice_cstr(a->model)) ||
        (tenant && !tenant_model_allowed(tenant, slice_cstr(a->model))))
      continue;
    if (nseen++) buf_puts(&out, ",");
    buf_puts(&out, "{\"id\":");
    buf_json_str(&out, slice_cstr(a->name));
    buf_puts(&out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"infermesh\"}");
  }
  buf_puts(&out, "]}");
  http_resp_send(req, 200, "application/json", out.base, out.len, NULL, 0);
  buf_free(&out);
  free(seen);
}

/* Percent-decode src into out (cap bytes, NUL-terminated): false when it does not fit or is malformed. */
static bool path_decode(struct slice src, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < src.len; i++) {
    char c = src.base[i];
    if (c == '%') {
      unsigned v;
      char hex[3] = {0};
      if (i + 2 >= src.len) return false;
      hex[0] = src.base[i + 1], hex[1] = src.base[i + 2];
      if (sscanf(hex, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", hex[0]) ||
          !strchr("0123456789abcdefABCDEF", hex[1]) || v == 0)
        return false;
      c = (char)v;
      i += 2;
    }
    if (n + 1 >= cap) return false;
    out[n++] = c;
  }
  out[n] = '\0';
  return n > 0;
}

/* GET /v1/models/{id}: OpenAI's model object for a model some target lists (that tenant may use), else 404 in
 * OpenAI's error format. The id is the rest of the path, slashes included (model ids often have one). */
static void get_model(struct router *r, struct http_req *req, const struct tenant_conf *tenant) {
  char id[256];
  struct slice rest = slice_make(req->path.base + 11, req->path.len - 11);
  bool ok = path_decode(rest, id, sizeof id);
  const char *m = ok ? model_alias_find(r->opts.aliases, r->opts.naliases, slice_cstr(id)) : NULL;
  struct slice model = slice_cstr(m ? m : id);
  bool known = ok && store_model_known(r->store, model) && (!tenant || tenant_model_allowed(tenant, model));
  struct buf out = {0};
  if (!known) {
    char msg[320];
    snprintf(msg, sizeof msg,
             "The model '%.200s' does not exist or no target serves it; GET /v1/models lists them",
             ok ? id : "(malformed)");
    http_error_json(&out, msg, "invalid_request_error", "model_not_found");
    http_resp_send(req, 404, "application/json", out.base, out.len, NULL, 0);
    route_metrics_count(&r->metrics, "", 404, "");
  } else {
    buf_puts(&out, "{\"id\":");
    buf_json_str(&out, slice_cstr(id));
    buf_puts(&out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"infermesh\"}");
    http_resp_send(req, 200, "application/json", out.base, out.len, NULL, 0);
  }
  buf_free(&out);
}

void router_target_lost(struct router *r, int id) {
  policy_forget_target(r->policy, id);
  for (int i = 0; i < 8 && r->strategies[i]; i++) policy_forget_target(r->strategies[i], id);
  r->breakers[id] = (struct breaker){0}; /* the slot may serve another target later */
  proxy_target_lost(r, id);
}

void router_target_down(struct router *r, int id) {
  if (!r->self_down) proxy_target_down(r, id);
}

void router_shutdown(struct router *r) { proxy_shutdown_all(r); }

bool router_handle(struct router *r, struct http_req *req) {
  bool chat = slice_eqz(req->path, "/v1/chat/completions");
  bool completions = slice_eqz(req->path, "/v1/completions") || slice_eqz(req->path, "/v1/embeddings");
  bool one_model = slice_starts(req->path, "/v1/models/") && req->path.len > 11;
  if (slice_eqz(req->path, "/v1/models") || one_model) {
    int tn = r->opts.ntenants ? tenants_lookup(r->opts.tenants, r->opts.ntenants, http_req_header(req, "authorization"))
                              : -1;
    if (r->opts.ntenants && tn < 0) {
      struct buf body = {0};
      struct http_header h = {SLICE_LIT("WWW-Authenticate"), SLICE_LIT("Bearer")};
      r->metrics.unauthorized++;
      http_error_json(&body, "Missing or incorrect API key. Pass it as 'Authorization: Bearer KEY'.",
                      "invalid_request_error", "invalid_api_key");
      http_resp_send(req, 401, "application/json", body.base, body.len, &h, 1);
      buf_free(&body);
      route_metrics_count(&r->metrics, "", 401, "");
    } else if (req->method != HTTP_M_GET)
      router_error(r, req, 405, "invalid_request_error", NULL, "use GET for /v1/models", NULL, 0);
    else if (one_model)
      get_model(r, req, tn >= 0 ? &r->opts.tenants[tn] : NULL);
    else
      list_models(r, req, tn >= 0 ? &r->opts.tenants[tn] : NULL);
    return true;
  }
  if (!chat && !completions) return false;
  if (req->method != HTTP_M_POST) {
    router_error(r, req, 405, "invalid_request_error", NULL, "use POST for this endpoint", NULL, 0);
    return true;
  }
  proxy_start(r, req, chat);
  return true;
}

struct policy *router_policy_for(struct router *r, struct slice model) {
  const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, model);
  if (!cp || !cp->strategy[0] || strcmp(cp->strategy, policy_name(r->policy)) == 0) return r->policy;
  for (int i = 0; i < 8; i++) {
    if (!r->strategies[i]) {
      struct policy_config pc;
      policy_config_default(&pc);
      r->strategies[i] = policy_new(cp->strategy, &pc, rng_next(&r->rng));
      if (!r->strategies[i]) return r->policy; /* a name this build does not know: the default routes */
      log_info("routing strategy from the control plane", "model=\"%s\" strategy=%s", cp->model, cp->strategy);
    }
    if (strcmp(policy_name(r->strategies[i]), cp->strategy) == 0) return r->strategies[i];
  }
  return r->policy;
}

/* hint tells every policy instance of r what a cache report (DECISION false) or a peer's routing decision
 * (true) says target id holds. */
static void hint(struct router *r, int id, const uint64_t *hashes, int n, bool decision) {
  const struct target *t = &r->store->targets[id];
  if (n <= 0) return;
  struct policy_target pt = {.id = id, .num_gpu_blocks = t->load.num_gpu_blocks, .block_size = (int)t->load.block_size};
  struct policy_req req = {.model = t->nmodels ? t->models[0] : NULL,
                           .prompt_tokens = n * ROUTER_BLOCK_TOKENS,
                           .block_hashes = hashes,
                           .nblocks = n,
                           .block_size = ROUTER_BLOCK_TOKENS,
                           .tenant = -1};
  uint64_t now = proxy_now(r); /* the clock the picks see: a peer decision is compared with report ages */
  void (*tell)(struct policy *, const struct policy_req *, const struct policy_target *, uint64_t) =
      decision ? policy_on_peer_decision : policy_on_peer_route;
  tell(r->policy, &req, &pt, now);
  for (int i = 0; i < 8 && r->strategies[i]; i++) tell(r->strategies[i], &req, &pt, now);
}

void router_cache_hint(struct router *r, int id, const uint64_t *hashes, int n) { hint(r, id, hashes, n, false); }

void router_peer_decision(struct router *r, int id, const uint64_t *hashes, int n) { hint(r, id, hashes, n, true); }
