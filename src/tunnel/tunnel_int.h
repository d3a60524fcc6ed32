/* Internals shared by the tunnel's files (tunnel.c: streams and relay; tunnel_forward.c: local forwarders).
 */
#ifndef IM_TUNNEL_TUNNEL_INT_H
#define IM_TUNNEL_TUNNEL_INT_H

#include "tunnel/tunnel.h"
#include "tunnel/tunnel_wire.h"

enum tstate {
  ST_NEW,
  ST_REPLY,    /* client: hello sent, waiting for the reply */
  ST_STATUS,   /* client: finish sent, waiting for the status frame */
  ST_HELLO,    /* server: waiting for the hello */
  ST_FINISH,   /* server: reply sent, waiting for the finish */
  ST_LOCAL,    /* server: connecting to the allowed loopback port */
  ST_REFUSING, /* server: a refusal's status frame is being written */
  ST_RELAY,
  ST_CLOSING,
};

struct tun_allow {
  int port;
  struct sockaddr_storage sa; /* where that service listens here */
};

/* One stream: the encrypted TCP connection (net) and the plaintext side (local: the allowed service's
 * connection on a server; a socketpair end for a dial; the accepted connection of a forwarder). Freed when
 * its last handle closed. */
struct tconn {
  struct tunnel *t;
  struct tconn *prev, *next;
  bool outbound;
  enum tstate st;
  uv_tcp_t net;
  uv_timer_t timer; /* handshake timeout; also reports an early dial error asynchronously */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } local;
  bool local_init; /* local is initialized (closed with the others) */
  int handles;
  uv_connect_t creq, lreq;
  uv_shutdown_t sh_net, sh_local;
  int err; /* a dial error waiting for the timer to report it */
  struct buf in;
  struct tunx_session s;
  uint8_t peer_pk[IDENTITY_PK_LEN];
  uint16_t port;
  bool counted;              /* server: counts toward its peer's streams */
  bool relayed;              /* the handshake completed */
  bool lost;                 /* the peer's side ended without its final frame, or a frame failed to open */
  struct tunnel_forward *fw; /* the forwarder that made it, while that forwarder is open */
  bool local_paused, net_paused, local_eof, net_eof;
  int ended;         /* directions whose half-close completed */
  tunnel_dial_cb cb; /* a dial's callback until it ran */
  void *cb_arg;
};

struct tunnel_forward {
  struct tunnel *t;
  struct tunnel_forward *next;
  uv_tcp_t listener;
  char node[TUNNEL_NODE_MAX];
  int rport, port;
  tunnel_forward_lost_cb lost_cb;
  void *lost_arg;
};

struct tunnel {
  uv_loop_t *loop;
  struct tunnel_config cfg;
  struct tconn *conns;
  struct tunnel_forward *forwards; /* open ones, and closing ones until their listener closed */
  struct tun_allow allow[TUNNEL_ALLOW_MAX];
  int nallow;
  bool closing;
  void (*closed_cb)(void *);
  void *closed_arg;
  struct tunnel_counters n;
};

/* tun_conn_new makes a stream of t (on its list, handshake timer running). */
struct tconn *tun_conn_new(struct tunnel *t, bool outbound);
/* tun_dial_start connects outbound c (peer_pk and port set; local, if any, initialized) to its member. */
void tun_dial_start(struct tconn *c);
/* tun_fail_later closes c from its timer with err (a dial's callback learns it then, never inside the call
 * that made c). */
void tun_fail_later(struct tconn *c, int err);
/* tun_allowed is the allow-list entry for port, or NULL. */
const struct tun_allow *tun_allowed(const struct tunnel *t, int port);
/* tun_parse_addr parses "IPv4:PORT", "localhost:PORT" or "[IPv6]:PORT": 0 or -EINVAL. */
int tun_parse_addr(const char *s, struct sockaddr_storage *sa);
/* tun_forwards_close closes every forwarder (tunnel_close); tun_maybe_closed frees a closing t once nothing
 * is left. */
void tun_forwards_close(struct tunnel *t);
/* tun_forward_lost tells f's owner that one of its streams failed (err, or 0 when the peer's side was cut) or
 * that the peer's side ended it first (-EPIPE). */
void tun_forward_lost(struct tunnel_forward *f, int err);
void tun_maybe_closed(struct tunnel *t);

#endif
