/* Internal to the control plane (control.c: lifecycle and proposals; control_api.c: HTTP endpoints). */
#ifndef IM_AGENT_CONTROL_INT_H
#define IM_AGENT_CONTROL_INT_H

#include <jansson.h>

#include "agent/config_watch.h"
#include "agent/control.h"
#include "api/control_api.h"
#include "api/control_port.h"
#include "cluster/raft.h"
#include "net/http_client.h"

#define CONTROL_MAX_WAITERS 4096 /* reads waiting for an index or long-polling the state, at once */

struct control;
struct fwd;

/* A request parked until the FSM index reaches w.min_index, or its timer fires (api/control_port.h wait). */
struct waiter {
  struct waiter *next;
  struct control *c;
  const struct api_control *ctl; /* what w.respond is called with */
  struct http_req *req;          /* NULL once the client went away */
  uv_timer_t timer;
  struct api_wait w;
};

struct control {
  struct control_env env;
  struct craft *raft; /* servers */
  struct fsm *fsm;    /* replicas: the copy fetched from a server */
  char raft_addr[96];
  uv_timer_t tick;
  bool tick_on, closing, poll_inflight;
  struct fwd *poll;
  uint64_t next_poll_ms;
  unsigned poll_rr;
  int waiting_logged;
  struct waiter *waiters;
  int nwaiters; /* at most CONTROL_MAX_WAITERS: more are answered at once, as if their wait had ended */
  int closing_parts;
  void (*closed_cb)(void *arg);
  void *closed_arg;
  /* Enforcement (control_enforce): the FSM index the router last saw, and the tenant tables handed to it —
   * two, alternating, because router_set_tenants reads the previous table while it installs the next. */
  uint64_t enforced_index; /* shown as "enforced_index" by GET /v1/cluster/raft: the state this router follows */
  struct tenant_conf tenants[2][TENANTS_MAX];
  int tenants_cur;
  uint64_t enforced_kind[FSM_NKINDS]; /* fsm_kind_changed of each kind when last handed to the router */
  bool enforced_once;
  struct config_watch watch; /* what the configuration events were last computed against */
  bool watch_primed;         /* false until the first look (which publishes nothing: it is the baseline) */
  bool own_drain_known;      /* enforce_own_drain has seen the FSM once */
  bool own_drain_durable;    /* the FSM held a drain of this node when last enforced */
};

uint64_t control_index(const struct control *c);
/* control_propose sends command cmd (copied) to the leader: applied here when this server leads, else
 * forwarded (hops so far: a forwarded proposal goes at most 3 hops). cb runs once (craft_apply_cb codes). */
void control_propose(struct control *c, const void *cmd, size_t len, int hops, craft_apply_cb cb, void *arg);
/* control_wait parks req until the index reaches w->min_index or timeout_ms (struct waiter; w is copied). */
void control_wait(struct control *c, const struct api_control *ctl, struct http_req *req, uint32_t timeout_ms,
                  const struct api_wait *w);
/* control_autopilot (control_autopilot.c), on a started Raft server, once per tick: the configuration follows
 * the servers gossip sees alive, sv[0, n) (borrowed for the call): adds and promotes them, and removes servers
 * that failed or left (see its file for the grace). Call from the tick timer, never from a craft callback. */
void control_autopilot(struct control *c, const struct mesh_server *sv, int n);
/* control_verify_hop checks that req was signed with the cluster key for `what`, this node and req (method,
 * request target, body), once: 0, -EBUSY (too many signatures to remember: answer 503), -EPROTO (an older
 * header version; refused, counted) or -EACCES (refused; counted). */
int control_verify_hop(struct control *c, struct http_req *req, const char *what);

#endif
