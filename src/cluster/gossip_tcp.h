/* Gossip over TCP (internal to cluster/gossip.c): push-pull anti-entropy and invite joins.
 *
 * Every exchange is one request frame and one reply frame on a fresh connection:
 *   frame = u32 big-endian length of (type + payload) | u8 type | payload
 *   PUSHPULL (1): keyring-sealed encoded struct gossip_pushpull, answered with the receiver's own table
 *   JOIN_REQ (2): an invite join request (cluster/invite.h), answered with JOIN_OK or JOIN_DENY
 *   JOIN_OK  (3): the keyring sealed under the invite's join secret
 *   JOIN_DENY(4): a short reason in text */
#ifndef IM_CLUSTER_GOSSIP_TCP_H
#define IM_CLUSTER_GOSSIP_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/gossip.h"

#define GOSSIP_FRAME_MAX (1u << 20)
enum { FRAME_PUSHPULL = 1, FRAME_JOIN_REQ = 2, FRAME_JOIN_OK = 3, FRAME_JOIN_DENY = 4 };

struct gossip_tcp;

/* gossip_tcp_new serves exchanges for swim with keyring kr (both borrowed), counting into counters.
 * changed_cb(arg) runs after a merge changed SWIM's state (re-arm its timer); closed_cb(arg) once
 * gossip_tcp_close has finished every connection. */
struct gossip_tcp *gossip_tcp_new(uv_loop_t *loop, struct swim *swim, struct keyring *kr,
                                  struct gossip_counters *counters, uint32_t timeout_ms, void (*changed_cb)(void *),
                                  void (*closed_cb)(void *), void *arg);
/* gossip_tcp_set_stream_handler: an incoming connection whose first byte cannot start a frame (every frame
 * starts with 0: its length is at most GOSSIP_FRAME_MAX) goes to cb, which takes over fd (a duplicate; the
 * gossip side closes its own) and the bytes already read, pre[0, len) (borrowed for the call). NULL: such
 * connections are closed as malformed. */
void gossip_tcp_set_stream_handler(struct gossip_tcp *x, gossip_stream_cb cb, void *arg);
/* gossip_tcp_accept takes one pending connection from server. */
void gossip_tcp_accept(struct gossip_tcp *x, uv_stream_t *server);
/* gossip_tcp_push_pull exchanges tables with the node at addr (skipped when one is already in flight there,
 * or too many are). */
void gossip_tcp_push_pull(struct gossip_tcp *x, const char *addr, bool join);
/* gossip_tcp_outgoing counts the push-pulls this node has in flight. */
int gossip_tcp_outgoing(const struct gossip_tcp *x);
/* gossip_tcp_close closes every connection; closed_cb follows. */
void gossip_tcp_close(struct gossip_tcp *x);

/* gossip_parse_addr parses "ip:port", "[ip6]:port" or "localhost:port". 0 or -EINVAL. */
int gossip_parse_addr(const char *s, struct sockaddr_storage *out);

#endif
