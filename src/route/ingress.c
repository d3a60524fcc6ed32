/* OpenAI ingress: validate and scan the request, answer errors in OpenAI's format, hand off to the proxy. */
#include <http_parser.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/proxy.h"
#include "route/router.h"

void router_opts_default(struct router_opts *o) {
  o->max_attempts = 3;
  o->upstream_timeout_ms = 300000;
  o->max_response_bytes = 16 * 1024 * 1024;
  str_copy(o->node_name, sizeof o->node_name, "local");
}

void router_init(struct router *r, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                 const struct router_opts *opts) {
  memset(r, 0, sizeof *r);
  r->loop = loop;
  r->store = store;
  r->pools = pools;
  if (opts)
    r->opts = *opts;
  else
    router_opts_default(&r->opts);
  score_params_default(&r->score);
  rng_seed(&r->rng, clock_mono_ns());
  route_metrics_init(&r->metrics);
}

void router_free(struct router *r) { (void)r; }

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
 * all down still exists, requests for it get 503 rather than 404). */
static void list_models(struct router *r, struct http_req *req) {
  struct buf out = {0};
  const char *seen[STORE_MAX_TARGETS * STORE_MAX_MODELS];
  int nseen = 0;
  buf_puts(&out, "{\"object\":\"list\",\"data\":[");
  for (int i = 0; i < r->store->ntargets; i++) {
    const struct target *t = &r->store->targets[i];
    for (int j = 0; j < t->nmodels; j++) {
      bool dup = false;
      for (int k = 0; k < nseen && !dup; k++) dup = strcmp(seen[k], t->models[j]) == 0;
      if (dup) continue;
      seen[nseen++] = t->models[j];
      if (nseen > 1) buf_puts(&out, ",");
      buf_puts(&out, "{\"id\":");
      buf_json_str(&out, slice_cstr(t->models[j]));
      buf_puts(&out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"infermesh\"}");
    }
  }
  buf_puts(&out, "]}");
  http_resp_send(req, 200, "application/json", out.base, out.len, NULL, 0);
  buf_free(&out);
}

bool router_handle(struct router *r, struct http_req *req) {
  bool chat = slice_eqz(req->path, "/v1/chat/completions");
  bool completions = slice_eqz(req->path, "/v1/completions");
  if (slice_eqz(req->path, "/v1/models")) {
    if (req->method != HTTP_GET)
      router_error(r, req, 405, "invalid_request_error", NULL, "use GET for /v1/models", NULL, 0);
    else
      list_models(r, req);
    return true;
  }
  if (!chat && !completions) return false;
  if (req->method != HTTP_POST) {
    router_error(r, req, 405, "invalid_request_error", NULL, "use POST for this endpoint", NULL, 0);
    return true;
  }
  proxy_start(r, req, chat);
  return true;
}
