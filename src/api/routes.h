/* The agent's HTTP API as data: every endpoint with its methods, the credential it needs and the handler
 * that serves it. The authorization matrix in the README is rendered from this table (api_routes_markdown).
 */
#ifndef IM_API_ROUTES_H
#define IM_API_ROUTES_H

#include <stdbool.h>

#include "core/buf.h"
#include "core/slice.h"

/* What a request must carry. */
enum api_need {
  API_OPEN,   /* nothing: liveness and readiness probes */
  API_TENANT, /* a tenant's API key when the listener requires keys (tenants configured); else nothing.
               * The router checks it: it needs the tenant for admission anyway. */
  API_VIEW,   /* the admin or the read token when the listener requires keys; else nothing */
  API_SCOPED, /* as API_VIEW, and a tenant's key too, for what concerns that tenant only (its handler scopes) */
  API_ADMIN,  /* the admin token, always (loopback is not authorization); refused when none is configured */
  API_AGENT,  /* only another agent of this cluster: a valid x-infermesh-hop signature */
};

/* Which handler serves a route. The agent maps each to its code (agent.c). */
enum api_op {
  API_OP_HEALTHZ,
  API_OP_READYZ,
  API_OP_MODELS,
  API_OP_INFERENCE,
  API_OP_METRICS,
  API_OP_STATUS,
  API_OP_TARGETS,
  API_OP_MEMBERS,
  API_OP_EVENTS,
  API_OP_RAFT,
  API_OP_CTL_READ,
  API_OP_CTL_WRITE,
  API_OP_LEAVE,
  API_OP_DRAIN,
  API_OP_MODEL_CTL,
  API_OP_CTL_STATE,
  API_OP_PROPOSE,
  API_OP_LEDGER,
  API_OP_BUDGETS,
  API_OP_HISTORY,
  API_OP_UI,
  API_OP_RPC,  /* a split host's lease of this node's rpc-server (api/rpc_api.h) */
  API_OP_GRPC, /* a gRPC method (api/grpc_services.c): served to content-type application/grpc over HTTP/2 */
};

/* Method bits of a route. API_GET also admits HEAD. */
enum { API_GET = 1, API_POST = 2, API_PUT = 4, API_DELETE = 8 };

struct api_route {
  unsigned methods;
  /* Path segments separated by '/': a literal, "*" (one non-empty segment), or "{kind}" (a control-plane
   * kind, plural: policies, pins, drains, tenants, prices). A pattern that ends in a double star matches its
   * prefix alone, or followed by a slash and anything non-empty (names may contain slashes). */
  const char *pattern;
  enum api_need need;
  bool hop; /* besides need: a request signed by another agent (x-infermesh-hop) is let through to the
             * handler, which verifies the signature for exactly this call */
  enum api_op op;
  const char *what; /* one line for the matrix */
};

/* api_route_find returns the route of (method, path), or NULL. *path_known (may be NULL) tells whether some
 * route has this path under another method (the caller answers 405 rather than 404). method is an
 * enum http_method_id (net/http_req.h). The table is static: the pointer stays valid. */
const struct api_route *api_route_find(int method, struct slice path, bool *path_known);

/* api_route_allowed writes the methods of the routes matching path, as an Allow header value ("GET, HEAD").
 */
void api_route_allowed(struct slice path, char *out, size_t cap);

/* The credentials a request carries, as seen by api_authorize. */
struct api_creds {
  const char *admin_token; /* the agent's --admin-token; "" or NULL = none configured */
  const char *read_token;  /* the agent's --read-token; "" or NULL = none configured */
  bool keys_required;      /* the listener requires tenant keys (tenants are configured) */
  bool tenant_key;         /* the Authorization header holds a valid tenant key */
};

/* The verdict for one request. */
enum api_verdict {
  API_ALLOW,       /* serve it */
  API_UNAUTH,      /* 401: no credential, or not one this route accepts and no valid one at all */
  API_FORBIDDEN,   /* 403: a valid credential of a kind this route does not accept */
  API_NO_ADMIN,    /* 403: the route needs the admin token and none is configured on this agent */
  API_AGENTS_ONLY, /* 403: only another agent may call this */
};

/* api_authorize decides whether a request carrying `authorization` (the Authorization header value, may be
 * empty) and, when has_hop, an x-infermesh-hop header may reach route r's handler. Token comparisons are in
 * constant time. A signed hop is only let through where r->hop or r->need == API_AGENT: the handler then
 * verifies the signature. Pure. */
enum api_verdict api_authorize(const struct api_route *r, const struct api_creds *c,
                               struct slice authorization, bool has_hop);

/* api_verdict_message is the error message and OpenAI-style code of a refusal (static strings). */
const char *api_verdict_message(enum api_verdict v, const struct api_route *r, const char **code);

/* api_routes_markdown appends the authorization matrix (a Markdown table: endpoint x credential) to out. */
void api_routes_markdown(struct buf *out);

#endif
