/* Internal subrequests: a request made inside the agent to one of its own HTTP handlers, answered into
 * callbacks instead of a connection (as h2o's and nginx's subrequests). The gRPC control service uses them so
 * that a gRPC write takes exactly the HTTP API's path: route table, authorization, Raft proposal, forwarding */
#ifndef IM_NET_HTTP_SUBREQ_H
#define IM_NET_HTTP_SUBREQ_H

#include "net/http_req.h"

struct http_subreq_cbs {
  /* data, if set, receives the response body as it is written (a stream); otherwise the body is collected and
   * given to done. */
  void (*data)(void *arg, const char *p, size_t n);
  /* done is called once when the handler ends the response (also after http_subreq_abort), with the status
   * (0 when the handler never started one) and the collected body (empty with data set). The subrequest is
   * freed right after it returns. */
  void (*done)(void *arg, int status, struct slice body);
};

/* http_subreq_new makes a request METHOD PATH (a path with an optional ?query; copied) with BODY (copied),
 * carrying parent's Authorization header, for the caller to hand to a handler. Its peer, queued bytes and
 * dead peer timeout are the parent's while http_subreq_detach was not called. Owned by the subrequest
 * machinery: valid until cbs->done returns. */
struct http_req *http_subreq_new(struct http_req *parent, int method, const char *path, struct slice body,
                                 const struct http_subreq_cbs *cbs, void *arg);

/* http_subreq_abort aborts sub as a client going away would (its handler's abort_cb, which ends it): done
 * still runs, at once or when the handler ends it. */
void http_subreq_abort(struct http_req *sub);

/* http_subreq_detach forgets sub's parent (which is ending): peer and queued answer as for a gone client. */
void http_subreq_detach(struct http_req *sub);

#endif
