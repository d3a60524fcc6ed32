/* The agent's route table: endpoint, methods, credential, handler; and the authorization decision. */
#include "api/routes.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cluster/fsm.h"
#include "net/http_req.h"

static const struct api_route routes[] = {
    {API_GET, "/healthz", API_OPEN, false, API_OP_HEALTHZ, "liveness"},
    {API_GET, "/readyz", API_OPEN, false, API_OP_READYZ, "readiness (a healthy target, not draining)"},
    {API_GET, "/ui/", API_OPEN, false, API_OP_UI, "the dashboard (its data calls send a token)"},
    {API_GET, "/ui/**", API_OPEN, false, API_OP_UI, "the dashboard's files (/ui redirects to /ui/)"},
    {API_GET, "/", API_OPEN, false, API_OP_UI, "redirects to the dashboard (so does /dashboard)"},
    {API_GET, "/dashboard", API_OPEN, false, API_OP_UI, "redirects to the dashboard"},
    {API_GET, "/v1/models", API_TENANT, false, API_OP_MODELS,
     "models served (a tenant sees the ones it may use)"},
    {API_GET, "/v1/models/**", API_TENANT, false, API_OP_MODELS,
     "one model (OpenAI's model object; 404 when no target serves it)"},
    {API_POST, "/v1/chat/completions", API_TENANT, true, API_OP_INFERENCE, "inference"},
    {API_POST, "/v1/completions", API_TENANT, true, API_OP_INFERENCE, "inference"},
    {API_POST, "/v1/embeddings", API_TENANT, true, API_OP_INFERENCE, "inference (embeddings)"},
    {API_GET, "/metrics", API_VIEW, false, API_OP_METRICS, "Prometheus metrics"},
    {API_GET, "/v1/cluster/status", API_VIEW, false, API_OP_STATUS, "this node"},
    {API_GET, "/v1/cluster/targets", API_VIEW, false, API_OP_TARGETS, "targets and their signals"},
    {API_GET, "/v1/cluster/members", API_VIEW, false, API_OP_MEMBERS, "membership"},
    {API_GET, "/v1/cluster/events", API_VIEW, false, API_OP_EVENTS, "live event stream (SSE)"},
    {API_GET, "/v1/cluster/raft", API_VIEW, false, API_OP_RAFT, "control-plane status"},
    {API_GET, "/v1/cluster/history", API_VIEW, false, API_OP_HISTORY,
     "the last 15 minutes, per second: targets and traffic (?since=MS)"},
    {API_GET, "/v1/cluster/{kind}/**", API_VIEW, false, API_OP_CTL_READ,
     "policies, pins, drains, tenants, prices, providers"},
    {API_PUT | API_POST | API_DELETE, "/v1/cluster/{kind}/**", API_ADMIN, false, API_OP_CTL_WRITE,
     "change policies, pins, drains, tenants, prices, providers"},
    {API_POST, "/v1/cluster/leave", API_ADMIN, false, API_OP_LEAVE, "this agent leaves the mesh and exits"},
    {API_POST, "/v1/cluster/nodes/*/drain", API_ADMIN, true, API_OP_DRAIN, "drain a node (forwarded to it)"},
    {API_POST, "/v1/cluster/nodes/*/undrain", API_ADMIN, true, API_OP_DRAIN,
     "undrain a node (forwarded to it)"},
    {API_POST, "/v1/cluster/targets/*/load", API_ADMIN, true, API_OP_MODEL_CTL,
     "load a model or LoRA adapter"},
    {API_POST, "/v1/cluster/targets/*/unload", API_ADMIN, true, API_OP_MODEL_CTL,
     "unload a model or adapter"},
    {API_POST, "/v1/cluster/rpc/lease", API_AGENT, false, API_OP_RPC,
     "start this node's rpc-server for a split host (its agent)"},
    {API_POST, "/v1/cluster/rpc/release", API_AGENT, false, API_OP_RPC, "a split host gives the rpc-server back"},
    {API_GET, "/v1/ledger/usage", API_SCOPED, false, API_OP_LEDGER, "usage and cost (a tenant: its own)"},
    {API_GET, "/v1/ledger/budgets", API_SCOPED, false, API_OP_BUDGETS,
     "budgets, mesh-wide spend and reset times (a tenant: its own)"},
    {API_GET, "/v1/ledger/contributions", API_VIEW, false, API_OP_LEDGER, "what each provider earned and was paid"},
    {API_GET, "/v1/ledger/payouts/**", API_VIEW, false, API_OP_LEDGER, "payout batches (?format=csv)"},
    {API_POST, "/v1/ledger/settle", API_ADMIN, false, API_OP_LEDGER, "pay unpaid contributions (?min_amount=X)"},
    {API_GET, "/v1/cluster/state", API_AGENT, false, API_OP_CTL_STATE, "control-plane state for a replica"},
    {API_POST, "/v1/cluster/_propose", API_AGENT, false, API_OP_PROPOSE, "a write forwarded to the leader"},
    /* gRPC (HTTP/2, content-type application/grpc; proto/): each method's credential, as its HTTP
       counterpart's */
    {API_POST, "/grpc.health.v1.Health/Check", API_OPEN, false, API_OP_GRPC, "gRPC health check"},
    {API_POST, "/infermesh.v1.Scoring/ScoreTargets", API_VIEW, false, API_OP_GRPC, "gRPC: rank targets"},
    {API_POST, "/infermesh.v1.Scoring/Admit", API_VIEW, false, API_OP_GRPC, "gRPC: admission for a tenant"},
    {API_POST, "/infermesh.v1.Scoring/ReportOutcome", API_ADMIN, false, API_OP_GRPC,
     "gRPC: a gateway's request outcome, fed to routing"},
    {API_POST, "/infermesh.v1.Control/ListNodes", API_VIEW, false, API_OP_GRPC, "gRPC: membership"},
    {API_POST, "/infermesh.v1.Control/ListModels", API_VIEW, false, API_OP_GRPC,
     "gRPC: models and their targets"},
    {API_POST, "/infermesh.v1.Control/ListTargets", API_VIEW, false, API_OP_GRPC,
     "gRPC: targets and signals"},
    {API_POST, "/infermesh.v1.Control/GetPolicy", API_VIEW, false, API_OP_GRPC, "gRPC: one policy"},
    {API_POST, "/infermesh.v1.Control/ListPolicies", API_VIEW, false, API_OP_GRPC, "gRPC: policies"},
    {API_POST, "/infermesh.v1.Control/SetPolicy", API_ADMIN, false, API_OP_GRPC, "gRPC: change a policy"},
    {API_POST, "/infermesh.v1.Control/DeletePolicy", API_ADMIN, false, API_OP_GRPC, "gRPC: remove a policy"},
    {API_POST, "/infermesh.v1.Control/PinModel", API_ADMIN, false, API_OP_GRPC, "gRPC: pin a model"},
    {API_POST, "/infermesh.v1.Control/UnpinModel", API_ADMIN, false, API_OP_GRPC, "gRPC: unpin a model"},
    {API_POST, "/infermesh.v1.Control/DrainNode", API_ADMIN, false, API_OP_GRPC, "gRPC: drain a node"},
    {API_POST, "/infermesh.v1.Control/UndrainNode", API_ADMIN, false, API_OP_GRPC, "gRPC: undrain a node"},
    {API_POST, "/infermesh.v1.Control/SubscribeEvents", API_VIEW, false, API_OP_GRPC,
     "gRPC: live event stream"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static unsigned method_bit(int method) {
  switch (method) {
  case HTTP_M_GET:
  case HTTP_M_HEAD: return API_GET;
  case HTTP_M_POST: return API_POST;
  case HTTP_M_PUT: return API_PUT;
  case HTTP_M_DELETE: return API_DELETE;
  default: return 0;
  }
}

/* Does one path segment seg match pattern segment pat? */
static bool segment_matches(const char *pat, size_t pn, struct slice seg) {
  if (pn == 1 && pat[0] == '*') return seg.len > 0;
  if (pn == 6 && memcmp(pat, "{kind}", 6) == 0) {
    enum fsm_kind k;
    return fsm_kind_parse(seg.base, seg.len, &k) == 0 && seg.len > strlen(fsm_kind_name(k)); /* the plural */
  }
  return seg.len == pn && memcmp(seg.base, pat, pn) == 0;
}

static bool path_matches(const char *pattern, struct slice path) {
  const char *p = pattern;
  size_t i = 0;
  while (*p) {
    if (strcmp(p, "/**") == 0) return i == path.len || (path.base[i] == '/' && i + 1 < path.len);
    if (*p != '/' || i >= path.len || path.base[i] != '/') return false;
    p++, i++;
    size_t pn = strcspn(p, "/");
    const char *end = memchr(path.base + i, '/', path.len - i);
    size_t sn = end ? (size_t)(end - (path.base + i)) : path.len - i;
    if (!segment_matches(p, pn, slice_make(path.base + i, sn))) return false;
    p += pn, i += sn;
  }
  return i == path.len;
}

const struct api_route *api_route_find(int method, struct slice path, bool *path_known) {
  unsigned bit = method_bit(method);
  bool known = false;
  for (size_t i = 0; i < NROUTES; i++) {
    if (!path_matches(routes[i].pattern, path)) continue;
    known = true;
    if (routes[i].methods & bit) {
      if (path_known) *path_known = true;
      return &routes[i];
    }
  }
  if (path_known) *path_known = known;
  return NULL;
}

void api_route_allowed(struct slice path, char *out, size_t cap) {
  unsigned m = 0;
  for (size_t i = 0; i < NROUTES; i++)
    if (path_matches(routes[i].pattern, path)) m |= routes[i].methods;
  snprintf(out, cap, "%s%s%s%s", m & API_GET ? "GET, HEAD, " : "", m & API_POST ? "POST, " : "",
           m & API_PUT ? "PUT, " : "", m & API_DELETE ? "DELETE, " : "");
  size_t n = strlen(out);
  if (n >= 2) out[n - 2] = '\0';
}

/* Is authorization "Bearer TOKEN" for this token (scheme case-insensitive, constant time in the token)? */
static bool bearer_is(struct slice authorization, const char *token) {
  if (!token || !token[0]) return false;
  size_t tl = strlen(token);
  if (authorization.len != 7 + tl || strncasecmp(authorization.base, "Bearer ", 7) != 0) return false;
  return sodium_memcmp(authorization.base + 7, token, tl) == 0;
}

enum api_verdict api_authorize(const struct api_route *r, const struct api_creds *c,
                               struct slice authorization, bool has_hop) {
  bool admin = bearer_is(authorization, c->admin_token);
  bool reader = bearer_is(authorization, c->read_token);
  bool any = admin || reader || c->tenant_key;
  switch (r->need) {
  case API_OPEN:
  case API_TENANT: return API_ALLOW;
  case API_VIEW:
    if (!c->keys_required || admin || reader) return API_ALLOW;
    return any ? API_FORBIDDEN : API_UNAUTH;
  case API_SCOPED:
    return !c->keys_required || any ? API_ALLOW : API_UNAUTH;
  case API_ADMIN:
    if (r->hop && has_hop) return API_ALLOW;
    if (!c->admin_token || !c->admin_token[0]) return API_NO_ADMIN;
    if (admin) return API_ALLOW;
    return any ? API_FORBIDDEN : API_UNAUTH;
  case API_AGENT: return has_hop ? API_ALLOW : API_AGENTS_ONLY;
  }
  return API_FORBIDDEN;
}

const char *api_verdict_message(enum api_verdict v, const struct api_route *r, const char **code) {
  switch (v) {
  case API_UNAUTH:
    *code = "invalid_api_key";
    return r->need == API_ADMIN
               ? "this changes the mesh: it needs `Authorization: Bearer ADMIN_TOKEN` (the agent's "
                 "--admin-token; the CLI sends --token or INFERMESH_ADMIN_TOKEN)"
               : "cluster views need `Authorization: Bearer TOKEN` with the agent's admin or read "
                 "token (--admin-token, --read-token) on a listener that requires API keys";
  case API_FORBIDDEN:
    *code = "permission_denied";
    return r->need == API_ADMIN
               ? "this changes the mesh: only the admin token may do it"
               : "a tenant's API key cannot read the cluster's views: use the admin or read token";
  case API_NO_ADMIN:
    *code = "permission_denied";
    return "changes to the mesh are disabled on this agent: start it with --admin-token (or "
           "INFERMESH_ADMIN_TOKEN)";
  case API_AGENTS_ONLY:
    *code = "permission_denied";
    return "only agents of this cluster may call this (signed with its key)";
  case API_ALLOW: break;
  }
  *code = NULL;
  return "";
}

/* One matrix cell: may a request with this credential reach the handler? */
static const char *cell(const struct api_route *r, int cred) {
  enum { NONE, TENANT, READ, ADMIN, HOP };
  switch (r->need) {
  case API_OPEN: return cred == HOP ? "—" : "yes";
  case API_TENANT: return cred == TENANT ? "yes" : cred == HOP ? (r->hop ? "yes" : "—") : "no tenants¹";
  case API_VIEW: return cred == READ || cred == ADMIN ? "yes" : cred == HOP ? "—" : "no tenants¹";
  case API_SCOPED:
    return cred == READ || cred == ADMIN ? "yes" : cred == TENANT ? "its own³" : cred == HOP ? "—" : "no tenants¹";
  case API_ADMIN: return cred == ADMIN ? "yes" : cred == HOP && r->hop ? "yes²" : "no";
  case API_AGENT: return cred == HOP ? "yes" : "no";
  }
  return "?";
}

void api_routes_markdown(struct buf *out) {
  buf_puts(
      out,
      "| endpoint | methods | what | no credential | tenant key | read token | admin token | agent hop |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < NROUTES; i++) {
    const struct api_route *r = &routes[i];
    char m[48];
    snprintf(m, sizeof m, "%s%s%s%s", r->methods & API_GET ? "GET " : "",
             r->methods & API_POST ? "POST " : "", r->methods & API_PUT ? "PUT " : "",
             r->methods & API_DELETE ? "DELETE " : "");
    m[strlen(m) - 1] = '\0';
    buf_printf(out, "| `%s` | %s | %s |", r->pattern, m, r->what);
    for (int c = 0; c < 5; c++)
      buf_printf(out, " %s |", cell(r, c));
    buf_puts(out, "\n");
  }
  buf_puts(out,
           "\n¹ only while the listener requires no API keys (no tenants configured); with tenants: 401 "
           "without a credential, 403 with a credential of the wrong kind.\n"
           "² the forwarding agent checked the admin token itself before it signed the call; the signature "
           "is bound to that call and accepted once.\n"
           "³ a tenant's key reads that tenant's records only.\n");
}
