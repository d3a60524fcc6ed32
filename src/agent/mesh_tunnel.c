/* The mesh's use of the tunnel: serving, dialing, allowed ports, forwarders, rpc worker, split
 * (mesh_tunnel.h). */
#include "agent/mesh_tunnel.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent/mesh.h"
#include "agent/rpc_worker.h"
#include "agent/split.h"
#include "cluster/swim.h"
#include "core/log.h"
#include "core/slice.h"

/* next_item takes the text up to the next ',' off rest into item: false at the end. */
static bool next_item(struct slice *rest, struct slice *item) {
  if (!rest->len) return false;
  const char *comma = memchr(rest->base, ',', rest->len);
  size_t n = comma ? (size_t)(comma - rest->base) : rest->len;
  *item = slice_make(rest->base, n);
  *rest = comma ? slice_make(comma + 1, rest->len - n - 1) : slice_make(rest->base + n, 0);
  return true;
}

static int parse_port(struct slice s, int *port) {
  uint64_t v;
  if (slice_to_u64(slice_trim(s), &v) != 0 || v == 0 || v > 65535) return -EINVAL;
  *port = (int)v;
  return 0;
}

/* One "[HOST:]PORT=NODE:PORT" entry. */
static int start_forward(struct tunnel *t, struct slice e, char *err, size_t errlen) {
  char entry[256], host[64] = "127.0.0.1";
  int lport, rport;
  e = slice_trim(e);
  if (e.len >= sizeof entry) goto bad;
  memcpy(entry, e.base, e.len);
  entry[e.len] = '\0';
  char *eq = strchr(entry, '='), *rc = strrchr(entry, ':');
  if (!eq || !rc || rc < eq) goto bad;
  *eq = '\0', *rc = '\0';
  char *lc = strrchr(entry, ':');
  if (lc) {
    *lc = '\0';
    if (str_copy(host, sizeof host, entry) >= sizeof host) goto bad;
  }
  if (parse_port(slice_cstr(lc ? lc + 1 : entry), &lport) != 0 ||
      parse_port(slice_cstr(rc + 1), &rport) != 0 || !eq[1])
    goto bad;
  struct tunnel_forward *f;
  int r = tunnel_forward_start(&f, t, host, lport, eq + 1, rport, err, errlen);
  if (r == 0) log_info("tunnel forwarder on", "listen=%s:%d node=%s port=%d", host, lport, eq + 1, rport);
  return r;
bad:
  snprintf(err, errlen, "tunnel forward '%.*s' is not [HOST:]PORT=NODE:PORT", (int)e.len, e.base);
  return -EINVAL;
}

/* configure allows the ports listed in allow ("PORT,PORT,...") on t, relayed to 127.0.0.1, and starts the
 * forwarders listed in forward ("[HOST:]PORT=NODE:PORT,..."; HOST defaults to 127.0.0.1). */
static int configure(struct tunnel *t, const char *allow, const char *forward, char *err, size_t errlen) {
  struct slice rest = slice_cstr(allow), item;
  while (next_item(&rest, &item)) {
    int port, rc;
    if (slice_trim(item).len == 0) continue;
    if (parse_port(item, &port) != 0 || ((rc = tunnel_allow(t, "127.0.0.1", port)) != 0 && rc != -EEXIST)) {
      snprintf(err, errlen, "tunnel allow: '%.*s' is not a port this node can allow (1-65535, at most %d)",
               (int)item.len, item.base, TUNNEL_ALLOW_MAX);
      return -EINVAL;
    }
  }
  rest = slice_cstr(forward);
  while (next_item(&rest, &item)) {
    if (slice_trim(item).len == 0) continue;
    int rc = start_forward(t, item, err, errlen);
    if (rc != 0) return rc;
  }
  return 0;
}

/* ---- the mesh's tunnel ---- */

/* A member's tunnel address is its gossip address (the tunnel shares the gossip port); only alive or suspect
 * members have one. */
static int tunnel_resolve(void *arg, const uint8_t pk[IDENTITY_PK_LEN], char *addr, size_t cap) {
  struct mesh_tunnel *mt = arg;
  const struct swim_member *sm = swim_find(gossip_swim(mt->gossip), pk);
  if (!sm || (sm->u.state != GOSSIP_ALIVE && sm->u.state != GOSSIP_SUSPECT) || memcmp(pk, mt->self, 32) == 0)
    return -ENOENT;
  str_copy(addr, cap, sm->u.addr);
  return 0;
}

static int tunnel_lookup(void *arg, const char *node, uint8_t pk[IDENTITY_PK_LEN]) {
  struct mesh_tunnel *mt = arg;
  bool self;
  if (!mesh_find_node(mt->mesh, node, &self, pk) || self) return -ENOENT;
  return 0;
}

static void *tunnel_dial_fn(void *arg, const uint8_t *node, int port, http_dial_cb cb, void *cbarg) {
  return tunnel_dial(arg, node, port, cb, cbarg);
}

static void tunnel_cancel_fn(void *handle) { tunnel_dial_cancel(handle); }

static void tunnel_stream_cb(void *arg, uv_os_sock_t fd, const uint8_t *pre, size_t len) {
  tunnel_accept_fd(arg, fd, pre, len);
}

int mesh_tunnel_start(struct mesh_tunnel *mt, const struct mesh_tunnel_env *e, char *err, size_t errlen) {
  const struct agent_config *cfg = e->cfg;
  const char *colon = strrchr(e->api_addr, ':');
  mt->gossip = e->gossip;
  mt->self = e->id->pk;
  mt->mesh = e->mesh;
  struct tunnel_config tc = {
      .id = e->id, .kr = e->kr, .resolve = tunnel_resolve, .lookup = tunnel_lookup, .arg = mt};
  int rc = tunnel_new(&mt->tunnel, e->loop, &tc);
  int api_port = colon ? (int)strtol(colon + 1, NULL, 10) : 0;
  if (rc == 0)
    rc = e->hop_port > 0 ? tunnel_allow_to(mt->tunnel, api_port, "127.0.0.1", e->hop_port)
                         : tunnel_allow(mt->tunnel, cfg->listen_host, api_port);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the agent-to-agent tunnel for listener %s (err %d)", e->api_addr, rc);
    return rc;
  }
  if ((rc = configure(mt->tunnel, cfg->cluster.tunnel_allow, cfg->cluster.tunnel_forward, err, errlen)) != 0)
    return rc;
  if (cfg->cluster.rpc_server[0]) {
    int port = cfg->cluster.rpc_port ? cfg->cluster.rpc_port : 50052;
    if ((rc = tunnel_allow(mt->tunnel, "127.0.0.1", port)) != 0 && rc != -EEXIST) {
      snprintf(err, errlen, "cannot offer rpc-server port %d through the tunnel (err %d)", port, rc);
      return rc;
    }
    if ((rc = rpc_worker_start(&mt->rpc, e->loop, cfg->cluster.rpc_server, port, err, errlen)) != 0)
      return rc;
  }
  if (cfg->cluster.split_target[0] &&
      (rc = split_start(&mt->split, e->loop, e->mesh, e->store, e->nlocal, &cfg->cluster, err, errlen)) != 0)
    return rc;
  mt->dialer = (struct http_dialer){.dial = tunnel_dial_fn, .cancel = tunnel_cancel_fn, .arg = mt->tunnel};
  gossip_set_stream_handler(mt->gossip, tunnel_stream_cb, mt->tunnel);
  return 0;
}

int mesh_tunnel_parts(const struct mesh_tunnel *mt) {
  return (mt->tunnel != NULL) + (mt->rpc != NULL) + (mt->split != NULL);
}

void mesh_tunnel_close(struct mesh_tunnel *mt, void (*part_cb)(void *arg), void *arg) {
  if (mt->split) split_stop(mt->split, part_cb, arg);
  if (mt->rpc) rpc_worker_stop(mt->rpc, part_cb, arg);
  if (mt->tunnel) tunnel_close(mt->tunnel, part_cb, arg);
  mt->split = NULL, mt->rpc = NULL, mt->tunnel = NULL;
}
