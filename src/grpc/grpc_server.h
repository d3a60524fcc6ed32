/* gRPC on the agent's HTTP/2 listener: requests with content-type application/grpc are calls, dispatched by
 * their path (/package.Service/Method) through one table (grpc_server.c) that names each method's request
 * message, handler and credential. Credentials are those of the HTTP API's route table (api/routes.h),
 * checked by the agent's own authorization on the `authorization` metadata: a refusal is UNAUTHENTICATED or
 * PERMISSION_DENIED. grpc-timeout sets a deadline (DEADLINE_EXCEEDED), a client's RST_STREAM cancels the
 * call, and server-streaming methods send messages until they finish. Compressed messages get UNIMPLEMENTED.
 * Everything runs on the agent's loop. */
#ifndef IM_GRPC_GRPC_SERVER_H
#define IM_GRPC_GRPC_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <uv.h>

#include "api/control_port.h"
#include "api/mesh_port.h"
#include "api/routes.h"
#include "core/buf.h"
#include "grpc/grpc_frame.h"
#include "net/http_req.h"

struct control;
struct grpc_call;
struct mesh;
struct router;
struct store;

/* A method's handler gets the decoded request (owned by the call, freed with it) and must end the call with
 * grpc_reply or grpc_finish, now or later (then it sets grpc_call_on_cancel if it holds anything). */
typedef void (*grpc_handler_fn)(struct grpc_call *call, const ProtobufCMessage *in);

/* One method: its path, request type and handler. Its credential is the route table's row for POST path
 * (api/routes.c): a method without one answers UNIMPLEMENTED. */
struct grpc_method {
  const char *path; /* "/package.Service/Method" */
  const ProtobufCMessageDescriptor *in;
  grpc_handler_fn fn;
};

/* What the services use of the agent (borrowed; the agent outlives every call). ctl and mesh point at the
 * agent's interfaces (api/control_port.h, api/mesh_port.h), whose ctx become NULL when those close. */
struct grpc_env {
  const struct grpc_method *methods; /* the method table (static) */
  size_t nmethods;
  uv_loop_t *loop;
  struct router *router;
  struct store *store;
  const struct api_control *ctl;
  const struct api_mesh *mesh;
  const bool *draining;
  const char *node_name;
  /* verdict decides a call's credential as the agent decides an HTTP request's (the request's authorization
   * header against route rt); pure. */
  enum api_verdict (*verdict)(void *arg, const struct api_route *rt, struct http_req *req);
  /* http_handle is the agent's HTTP handler: subrequests (net/http_subreq.h) go through it. */
  void (*http_handle)(struct http_req *req, void *arg);
  void *arg;
};

struct grpc_server {
  struct grpc_env env;
  uint64_t calls, refused; /* calls dispatched to a handler; calls answered with an error before one */
};

/* grpc_is_call tells whether req is a gRPC call (content-type application/grpc or application/grpc+proto). */
bool grpc_is_call(const struct http_req *req);

/* grpc_handle answers req, a gRPC call: over HTTP/1.x with 505 (gRPC needs HTTP/2 and its trailers), else
 * through the method table. */
void grpc_handle(struct grpc_server *g, struct http_req *req);

/* grpc_metrics appends the Prometheus families of g's counters to out. */
void grpc_metrics(const struct grpc_server *g, struct buf *out);

/* ---- for the services (api/grpc_scoring.c, api/grpc_control.c, api/grpc_health.c) ---- */

/* grpc_call_env is the server's environment; grpc_call_req the HTTP/2 request (its headers, its pool). */
const struct grpc_env *grpc_call_env(const struct grpc_call *call);
struct http_req *grpc_call_req(struct grpc_call *call);

/* grpc_send sends one response message (server streaming; the first sends the response headers). False when
 * the call is over (finished, cancelled or past its deadline): stop producing. */
bool grpc_send(struct grpc_call *call, const ProtobufCMessage *msg);
/* grpc_send_headers sends the response headers now (a stream whose first message may take long), unless the
 * call is over or they were sent. */
void grpc_send_headers(struct grpc_call *call);
/* grpc_reply is grpc_send of msg then grpc_finish OK (a unary answer). */
void grpc_reply(struct grpc_call *call, const ProtobufCMessage *msg);
/* grpc_finish ends the call with status code and message (may be NULL; percent-encoded into grpc-message)
 * and frees it unless a held operation remains (see grpc_call_on_cancel). Idempotent. */
void grpc_finish(struct grpc_call *call, int code, const char *msg);
/* grpc_call_on_cancel sets cb, called once if the call ends (client cancel, deadline) while the handler still
 * holds an operation; cb must let go of it: the call is then freed once grpc_call_release is called. */
void grpc_call_on_cancel(struct grpc_call *call, void (*cb)(struct grpc_call *call, void *arg), void *arg);
/* grpc_call_hold marks an operation in progress (the call is kept until grpc_call_release). */
void grpc_call_hold(struct grpc_call *call);
void grpc_call_release(struct grpc_call *call);
/* grpc_call_over: the call was finished, cancelled or expired. */
bool grpc_call_over(const struct grpc_call *call);

#endif
