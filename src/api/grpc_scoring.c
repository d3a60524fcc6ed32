/* infermesh.v1.Scoring: the router's ranking, admission and outcome bookkeeping for gateways (route/rank.h)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "api/grpc_services.h"
#include "infermesh/v1/scoring.pb-c.h"
#include "route/rank.h"
#include "trace/tracer.h"

#define HASH_BLOCK 16  /* tokens per hashed prompt block, as the router hashes its own prompts */
#define MAX_BLOCKS 512 /* = PROXY_MAX_BLOCKS */
#define DEFAULT_MAX_TOKENS 256

/* The policy's view of a request from its prompt text or block hashes; hashes must have MAX_BLOCKS room. */
static const char *policy_req_of(struct policy_req *pr, const char *model, const char *prompt,
                                 const uint64_t *given, size_t ngiven, uint32_t block_size,
                                 uint32_t prompt_tokens, uint32_t max_tokens, uint64_t *hashes) {
  if (prompt[0] && ngiven) return "give the prompt or its block_hashes, not both";
  if (ngiven > MAX_BLOCKS) return "at most 512 block_hashes";
  size_t plen = strlen(prompt);
  int n = 0;
  if (prompt[0]) {
    n = policy_prompt_hashes(model, prompt, plen, HASH_BLOCK, hashes, MAX_BLOCKS);
    block_size = HASH_BLOCK;
  } else {
    if (ngiven) memcpy(hashes, given, ngiven * sizeof *hashes);
    n = (int)ngiven;
    if (!block_size) block_size = HASH_BLOCK;
  }
  if (block_size > 1u << 20) return "block_size is too large";
  if (!prompt_tokens) prompt_tokens = prompt[0] ? (uint32_t)(plen / 4 + 1) : (uint32_t)n * block_size;
  *pr = (struct policy_req){
      .model = model,
      .prompt_tokens = (int)(prompt_tokens > 1u << 30 ? 1u << 30 : prompt_tokens),
      .max_tokens = (int)(max_tokens ? (max_tokens > 1u << 30 ? 1u << 30 : max_tokens) : DEFAULT_MAX_TOKENS),
      .block_hashes = hashes,
      .nblocks = n < 0 ? 0 : n,
      .block_size = (int)block_size,
      .tenant = -1};
  return NULL;
}

/* Answers of ScoreTargets kept on the stack (max_results up to this). */
#define SCORE_FEW 8

/* The call's server span, when the router traces and the call's trace is sampled: the decision's candidates,
 * the policy's choice and the lowest scores (bounded), under the caller's traceparent when it sent one. */
static void trace_score(struct router *r, struct grpc_call *call, uint64_t t0, const char *model,
                        const char *policy, const struct router_ranked *ranked, int n, int code) {
  struct trace_req tr;
  struct http_req *req = grpc_call_req(call);
  tracer_begin(r->tracer, &tr, http_req_header(req, "traceparent"), http_req_header(req, "tracestate"), t0);
  struct span *s = tr.sampled ? tracer_span(r->tracer) : NULL;
  if (!s) return;
  span_init(s, "infermesh.v1.Scoring/ScoreTargets", SPAN_KIND_SERVER, tr.trace_id, tr.span_id,
            tr.has_parent ? tr.parent_id : NULL, tracer_unix_ns(r->tracer, t0));
  s->end_ns = tracer_unix_ns(r->tracer, clock_mono_ns());
  span_str(s, "rpc.system", "grpc");
  span_str(s, "rpc.service", "infermesh.v1.Scoring");
  span_str(s, "rpc.method", "ScoreTargets");
  span_int(s, "rpc.grpc.status_code", code);
  span_str(s, "gen_ai.request.model", model);
  span_str(s, "infermesh.route.policy", policy);
  span_int(s, "infermesh.route.ranked", n);
  if (n > 0) span_str(s, "infermesh.route.chosen", r->store->targets[ranked[0].id].name);
  char top[SPAN_STR_MAX] = "";
  size_t len = 0;
  for (int i = 0; i < n && i < 3 && len < sizeof top; i++)
    len += (size_t)snprintf(top + len, sizeof top - len, "%s%s=%.3f", i ? " " : "",
                            r->store->targets[ranked[i].id].name, ranked[i].score);
  span_str(s, "infermesh.route.top", top);
  if (code != GRPC_OK) span_error(s, code == GRPC_NOT_FOUND ? "no target serves this model" : "failed");
  tracer_emit(r->tracer);
}

void grpc_score_targets(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__ScoreTargetsRequest *q = (const void *)in;
  const struct grpc_env *env = grpc_call_env(call);
  struct router *r = env->router;
  if (!q->model[0]) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "model is required");
    return;
  }
  uint64_t hashes[MAX_BLOCKS];
  struct policy_req pr;
  const char *err = policy_req_of(&pr, q->model, q->prompt, q->block_hashes, q->n_block_hashes, q->block_size,
                                  q->prompt_tokens, q->max_tokens, hashes);
  if (err) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, err);
    return;
  }
  int cap = r->store->cap;
  const char *policy;
  int max = q->max_results && q->max_results < (uint32_t)cap ? (int)q->max_results : cap;
  /* A few answers (an endpoint picker asks for one) live on the stack: such a call allocates nothing here. */
  struct router_ranked few[SCORE_FEW];
  Infermesh__V1__ScoredTarget few_st[SCORE_FEW], *few_stp[SCORE_FEW];
  bool heap = max > SCORE_FEW;
  struct router_ranked *ranked = heap ? xmalloc((size_t)max * sizeof *ranked) : few;
  uint64_t t0 = clock_mono_ns();
  int n = router_rank(r, slice_cstr(q->model), &pr, t0, ranked, max, &policy);
  Infermesh__V1__ScoredTarget *st = heap ? xmalloc((size_t)max * sizeof *st) : few_st;
  Infermesh__V1__ScoredTarget **stp = heap ? xmalloc((size_t)max * sizeof *stp) : few_stp;
  for (int i = 0; i < n; i++) {
    const struct target *t = &r->store->targets[ranked[i].id];
    infermesh__v1__scored_target__init(&st[i]);
    st[i].target = (char *)t->name;
    st[i].node = (char *)t->node;
    st[i].score = ranked[i].score;
    st[i].estimated_ttft_s = ranked[i].est_ttft_s;
    st[i].reason = (char *)ranked[i].reason;
    st[i].chosen = ranked[i].chosen;
    stp[i] = &st[i];
  }
  Infermesh__V1__ScoreTargetsResponse resp = INFERMESH__V1__SCORE_TARGETS_RESPONSE__INIT;
  resp.n_targets = (size_t)n;
  resp.targets = stp;
  resp.policy = (char *)policy;
  resp.slo_class = q->slo_class;
  if (!resp.slo_class) {
    const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, slice_cstr(q->model));
    resp.slo_class = cp && cp->slo[0] == 'l' ? INFERMESH__V1__SLO_CLASS__SLO_CLASS_LATENCY
                                             : INFERMESH__V1__SLO_CLASS__SLO_CLASS_THROUGHPUT;
  }
  bool unknown = n == 0 && !store_model_known(r->store, slice_cstr(q->model)) && store_all_reported(r->store);
  if (r->tracer) trace_score(r, call, t0, q->model, policy, ranked, n, unknown ? GRPC_NOT_FOUND : GRPC_OK);
  if (unknown)
    grpc_finish(call, GRPC_NOT_FOUND, "no target serves this model");
  else
    grpc_reply(call, &resp.base); /* packs the message before it returns */
  if (heap) {
    free(stp);
    free(st);
    free(ranked);
  }
}

/* The tenant's index in the router's admission, by name; "" is the default tenant when none is configured. */
static int tenant_index(const struct router *r, const char *name) {
  if (r->opts.ntenants == 0) return name[0] ? -1 : 0;
  for (int i = 0; i < r->opts.ntenants; i++)
    if (strcmp(r->opts.tenants[i].name, name) == 0) return i;
  return -1;
}

void grpc_admit(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__AdmitRequest *q = (const void *)in;
  struct router *r = grpc_call_env(call)->router;
  if (!q->model[0] || q->token_estimate == 0) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "model and a token_estimate > 0 are required");
    return;
  }
  int tenant = tenant_index(r, q->tenant);
  if (tenant < 0) {
    grpc_finish(call, GRPC_NOT_FOUND,
                r->opts.ntenants ? "no such tenant" : "this agent has no tenants: leave tenant empty");
    return;
  }
  const char *reason;
  uint64_t retry_ns;
  enum router_admit v =
      router_admit(r, tenant, slice_cstr(q->model), q->token_estimate, clock_mono_ns(), &reason, &retry_ns);
  Infermesh__V1__AdmitResponse resp = INFERMESH__V1__ADMIT_RESPONSE__INIT;
  resp.decision = v == ROUTER_ADMIT   ? INFERMESH__V1__ADMIT_DECISION__ADMIT_DECISION_ADMIT
                  : v == ROUTER_QUEUE ? INFERMESH__V1__ADMIT_DECISION__ADMIT_DECISION_QUEUE
                                      : INFERMESH__V1__ADMIT_DECISION__ADMIT_DECISION_REJECT;
  resp.reason = (char *)reason;
  resp.retry_after_s = retry_ns == UINT64_MAX ? 0 : (double)retry_ns / 1e9;
  grpc_reply(call, &resp.base);
}

void grpc_report_outcome(struct grpc_call *call, const ProtobufCMessage *in) {
  const Infermesh__V1__ReportOutcomeRequest *q = (const void *)in;
  struct router *r = grpc_call_env(call)->router;
  if (!q->target[0] || !q->model[0]) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "target and model are required");
    return;
  }
  if (q->ttft_s < 0 || q->ttft_s > 86400 || q->ttft_s != q->ttft_s) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, "ttft_s must be between 0 and 86400 seconds");
    return;
  }
  int id = -1;
  for (int i = 0; i < r->store->ntargets && id < 0; i++)
    if (!r->store->targets[i].gone && strcmp(r->store->targets[i].name, q->target) == 0) id = i;
  if (id < 0) {
    grpc_finish(call, GRPC_NOT_FOUND, "no such target (ListTargets names them)");
    return;
  }
  uint64_t hashes[MAX_BLOCKS];
  struct policy_req pr;
  const char *err = policy_req_of(&pr, q->model, q->prompt, q->block_hashes, q->n_block_hashes, q->block_size,
                                  q->prompt_tokens, q->output_tokens, hashes);
  if (err) {
    grpc_finish(call, GRPC_INVALID_ARGUMENT, err);
    return;
  }
  enum router_outcome_status st =
      q->status == INFERMESH__V1__OUTCOME_STATUS__OUTCOME_STATUS_ERROR       ? ROUTER_OUTCOME_ERROR
      : q->status == INFERMESH__V1__OUTCOME_STATUS__OUTCOME_STATUS_CANCELLED ? ROUTER_OUTCOME_CANCELLED
                                                                             : ROUTER_OUTCOME_OK;
  router_outcome(r, id, &pr, q->ttft_s, (int)(q->output_tokens > 1u << 30 ? 1u << 30 : q->output_tokens), st,
                 q->streamed, clock_mono_ns());
  Infermesh__V1__ReportOutcomeResponse resp = INFERMESH__V1__REPORT_OUTCOME_RESPONSE__INIT;
  grpc_reply(call, &resp.base);
}
