/* The router: OpenAI ingress, target choice, proxying with retries and SSE relay (DESIGN §4). */
#ifndef IM_ROUTE_ROUTER_H
#define IM_ROUTE_ROUTER_H

#include <stdint.h>
#include <uv.h>

#include "core/rng.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "route/route_metrics.h"
#include "state/score.h"
#include "state/store.h"

struct router_opts {
  int max_attempts;             /* tries per request, first included (retries before the first byte) */
  uint32_t upstream_timeout_ms; /* longest wait for any upstream byte */
  size_t max_response_bytes;    /* cap on a buffered non-streaming response */
  char node_name[64];           /* x-infermesh-node */
};

/* router_opts_default: 3 attempts, 300 s upstream timeout, 16 MiB responses, node name "local". */
void router_opts_default(struct router_opts *o);

/* The router borrows store and pools (pools[i] is the connection pool of store target i); the agent
 * owns them and keeps them alive while requests are in flight (router->inflight > 0). */
struct router {
  uv_loop_t *loop;
  struct store *store;
  struct http_pool *pools;
  struct router_opts opts;
  struct score_params score;
  struct rng rng;
  struct route_metrics metrics;
  int inflight;
};

/* router_init prepares r; nothing to free except via router_free. */
void router_init(struct router *r, uv_loop_t *loop, struct store *store, struct http_pool *pools,
                 const struct router_opts *opts);
void router_free(struct router *r);

/* router_handle serves an OpenAI API request (POST /v1/chat/completions, /v1/completions, GET /v1/models).
 * Returns false, without touching req, when the path is not one of them. */
bool router_handle(struct router *r, struct http_req *req);

#endif
