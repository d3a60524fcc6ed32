/* Local forwarders: a loopback listener whose every connection becomes a tunnel stream (see tunnel.h). */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/slice.h"
#include "tunnel/tunnel_int.h"

static void accept_cb(uv_stream_t *server, int status) {
  struct tunnel_forward *f = server->data;
  struct tunnel *t = f->t;
  if (status != 0 || t->closing) return;
  struct tconn *c = tun_conn_new(t, true);
  uv_tcp_init(t->loop, &c->local.tcp);
  c->local.tcp.data = c;
  c->local_init = true;
  c->handles++;
  c->port = (uint16_t)f->rport;
  c->fw = f;
  if (uv_accept(server, (uv_stream_t *)&c->local.tcp) != 0) {
    tun_fail_later(c, -ECONNABORTED);
    return;
  }
  if (t->cfg.lookup(t->cfg.arg, f->node, c->peer_pk) != 0) {
    log_warn("tunnel forwarder: no such member alive", "node=%s", f->node);
    t->n.dials++;
    tun_fail_later(c, -ENOENT);
    return;
  }
  uv_tcp_nodelay(&c->local.tcp, 1);
  tun_dial_start(c); /* the local connection is read once the stream is open */
}

int tunnel_forward_start(struct tunnel_forward **out, struct tunnel *t, const char *host, int port,
                         const char *node, int rport, char *err, size_t errlen) {
  char addr[96];
  struct sockaddr_storage sa;
  snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port == 0 ? 1 : port);
  if (rport <= 0 || rport > 65535 || port < 0 || port > 65535 || tun_parse_addr(addr, &sa) != 0 || !node[0] ||
      strlen(node) >= TUNNEL_NODE_MAX) {
    snprintf(err, errlen, "tunnel forwarder: bad address %s:%d, node \"%s\" or port %d", host, port, node,
             rport);
    return -EINVAL;
  }
  bool loopback = sa.ss_family == AF_INET ? (ntohl(((struct sockaddr_in *)&sa)->sin_addr.s_addr) >> 24) == 127
                                          : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&sa)->sin6_addr);
  if (!loopback) { /* whoever reached it would reach the member's port with this node's identity */
    snprintf(err, errlen, "tunnel forwarder: %s is not a loopback address (127.0.0.0/8 or ::1)", host);
    return -EINVAL;
  }
  if (sa.ss_family == AF_INET)
    ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
  struct tunnel_forward *f = calloc(1, sizeof *f);
  if (!f) abort();
  f->t = t;
  str_copy(f->node, sizeof f->node, node);
  f->rport = rport;
  uv_tcp_init(t->loop, &f->listener);
  f->listener.data = f;
  f->next = t->forwards;
  t->forwards = f;
  int rc = uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&f->listener, 128, accept_cb);
  if (rc != 0) {
    snprintf(err, errlen, "tunnel forwarder: cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
    tunnel_forward_close(f);
    return rc;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &blen);
  f->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                             : ((struct sockaddr_in6 *)&bound)->sin6_port);
  *out = f;
  return 0;
}

int tunnel_forward_port(const struct tunnel_forward *f) { return f->port; }

static void listener_closed_cb(uv_handle_t *h) {
  struct tunnel_forward *f = h->data;
  struct tunnel *t = f->t;
  for (struct tunnel_forward **pp = &t->forwards; *pp; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      break;
    }
  free(f);
  tun_maybe_closed(t);
}

void tunnel_forward_close(struct tunnel_forward *f) {
  for (struct tconn *c = f->t->conns; c; c = c->next)
    if (c->fw == f) c->fw = NULL; /* its streams go on; their failures no longer concern f's owner */
  f->lost_cb = NULL;
  if (!uv_is_closing((uv_handle_t *)&f->listener)) uv_close((uv_handle_t *)&f->listener, listener_closed_cb);
}

void tunnel_forward_on_lost(struct tunnel_forward *f, tunnel_forward_lost_cb cb, void *arg) {
  f->lost_cb = cb;
  f->lost_arg = arg;
}

void tun_forward_lost(struct tunnel_forward *f, int err) {
  if (f->lost_cb) f->lost_cb(f->lost_arg, err);
}

void tun_forwards_close(struct tunnel *t) {
  for (struct tunnel_forward *f = t->forwards; f; f = f->next)
    tunnel_forward_close(f);
}
