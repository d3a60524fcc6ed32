/* The control plane's HTTP endpoints: /v1/cluster/{raft,state,_propose} and get/put/delete/list of each FSM
 * kind (policies, pins, drains, tenants, prices), over the interface api/control_port.h. */
#ifndef IM_API_CONTROL_API_H
#define IM_API_CONTROL_API_H

#include <stdbool.h>
#include <stddef.h>

#include "api/control_port.h"
#include "net/http_req.h"

/* api_control_handle answers req when it is a control-plane endpoint and returns true (409 when ctl has no
 * control plane or the agent no mesh); otherwise false without touching req. ctl is borrowed and must stay
 * valid while requests it parked wait. */
bool api_control_handle(const struct api_control *ctl, struct http_req *req);

/* api_authorize_admin tells whether req may change this node: it carries `Authorization: Bearer ADMIN_TOKEN`
 * (the agent's --admin-token), or, when hop_what is not NULL and req has an x-infermesh-hop header, another
 * agent of this cluster forwarded it signed with the cluster key for hop_what, this node and the request's
 * method, path and body (control_hop_target, route/hop.h). Otherwise it answers req (403 no admin token
 * configured or a bad signature, 401 a missing or wrong token; 503 when ctl->ctx is NULL: closing) and
 * returns false. Nothing is kept. */
bool api_authorize_admin(const struct api_control *ctl, struct http_req *req, const char *hop_what);

/* control_hop_target writes the hop target of a signed agent-to-agent control request into out (cap): WHAT:
 * a hash of body (the signature also covers the receiving node, method, request target and body). */
void control_hop_target(const char *what, const void *body, size_t len, char *out, size_t cap);

#endif
