/* Proxying one OpenAI request to a target: body forwarded by reference, retries, SSE relay, usage capture. */
#ifndef IM_ROUTE_PROXY_H
#define IM_ROUTE_PROXY_H

#include <stdbool.h>

#include "net/http_server.h"

struct router;

/* proxy_start scans req's body, answers errors itself (400/404/503 in OpenAI's format), else picks a
 * target and forwards. It always ends req eventually (http_resp_end), also when the client goes away. */
void proxy_start(struct router *r, struct http_req *req, bool chat);

/* proxy_target_lost cancels every upstream exchange of r's requests on target id: requests that sent nothing to
 * their client yet retry elsewhere, started streams end with an in-band error (router_target_lost). */
void proxy_target_lost(struct router *r, int id);
/* proxy_target_down moves r's requests on target id that sent nothing to their client yet elsewhere; started
 * streams go on (router_target_down). */
void proxy_target_down(struct router *r, int id);
/* proxy_shutdown_all ends every request of r at once (router_shutdown). */
void proxy_shutdown_all(struct router *r);

/* router_error answers an OpenAI-format error and counts it. model may be NULL; retry_after_s > 0 adds
 * Retry-After. Ends req. */
void router_error(struct router *r, struct http_req *req, int status, const char *type, const char *code,
                  const char *message, const char *model, int retry_after_s);

#endif
