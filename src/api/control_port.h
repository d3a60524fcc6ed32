/* What the API handlers need of the agent's control plane (agent/control.c), as an interface defined here and
 * filled by the agent (agent/api_ports.c), so api/ depends on no agent/ header (DESIGN §2). */
#ifndef IM_API_CONTROL_PORT_H
#define IM_API_CONTROL_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/fsm.h"
#include "cluster/keyring.h"
#include "cluster/raft.h"
#include "net/http_req.h"

struct api_control;

/* A read parked until the FSM index reaches min_index or its timeout, and how to answer it then. */
struct api_wait {
  uint64_t min_index;
  enum fsm_kind kind;
  char key[FSM_NAME_MAX]; /* "" = the whole kind */
  /* respond answers req (and so ends it); timed_out: the wait ended without the index being reached. */
  void (*respond)(const struct api_control *ctl, struct http_req *req, const struct api_wait *w,
                  bool timed_out);
};

/* The control plane as the handlers see it. ctx NULL: there is none (the agent is closing, or has no control
 * plane); the functions are then not called. Everything runs on the loop thread; strings and the keyring are
 * borrowed from the agent and outlive the handlers. */
struct api_control {
  void *ctx;
  bool mesh;               /* the agent is in a mesh (has a cluster key): else the endpoints answer 409 */
  const char *node_name;   /* this node */
  const char *admin_token; /* the agent's --admin-token; "" when none */
  const struct keyring *keyring; /* the cluster's; NULL without a mesh */
  const uint8_t *node_id;        /* this node's public key (32 bytes); NULL without a mesh */
  /* fsm is the state the routers enforce (never NULL; read-only; it changes between loop turns). */
  const struct fsm *(*fsm)(const void *ctx);
  /* enforced_index is the FSM index this node's router last followed. */
  uint64_t (*enforced_index)(const void *ctx);
  /* raft is this node's Raft server, NULL when it is a read replica; raft_address its address. */
  struct craft *(*raft)(const void *ctx);
  const char *(*raft_address)(const void *ctx);
  /* propose sends command cmd (copied) to the leader (hops: how far it was forwarded already); cb runs once
   * (craft_apply_cb codes). */
  void (*propose)(void *ctx, const void *cmd, size_t len, int hops, craft_apply_cb cb, void *arg);
  /* verify_hop checks that req was signed with the cluster key for what, this node and req, once: 0, -EBUSY
   * (too many signatures to remember), -EPROTO (an older header version) or -EACCES. */
  int (*verify_hop)(void *ctx, struct http_req *req, const char *what);
  /* wait parks req until the FSM index reaches w->min_index or timeout_ms pass, then calls w->respond (w is
   * copied) with ctl; a client that leaves ends the wait. */
  void (*wait)(void *ctx, const struct api_control *ctl, struct http_req *req, uint32_t timeout_ms,
               const struct api_wait *w);
};

#endif
