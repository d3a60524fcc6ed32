/* The agent-to-agent tunnel: an encrypted, mutually authenticated byte stream to a loopback port of another
 * mesh member ("open a byte stream to node X, port P on its loopback").
 *
 * Design (DESIGN §10 terms). Each stream is one TCP connection to the member's gossip port (the tunnel shares
 * that listener: a gossip frame's first byte is always 0, a tunnel hello starts with "IMTUN001", so gossip
 * hands such connections over, cluster/gossip.h gossip_set_stream_handler; no new port to configure or open,
 * and the address is the one membership already authenticates). A handshake (tunnel_wire.h) proves both ends
 * hold the cluster key (a hello without it is dropped after one HMAC), binds each end's ed25519 node identity
 * to fresh X25519 keys, pins the server to the member id the client asked for and checks the client is a
 * member the server knows; then each direction is a crypto_secretstream. The server relays the stream to one
 * port on its own loopback, and only to a port on its allow-list (tunnel_allow: the agent's HTTP port, and
 * ports other subsystems register), never to an arbitrary one.
 *
 * Relay: reads are at most TUNX_FRAME_MAX bytes; when a write leaves a side's write queue above
 * TUNNEL_QUEUE_HIGH the other side stops being read until it drained to TUNNEL_QUEUE_LOW (so each stream
 * holds a bounded amount of memory and a slow reader slows the writer, both ways). An end of one direction is
 * sent as a sealed final frame and becomes a half-close on the other side; a stream whose TCP connection ends
 * without one was cut and is closed at once. The handshake (one X25519, one signature and one verification
 * per side: about 0.5 ms for both, bench/results/transport.md) runs on the loop; callers keep streams open
 * (HTTP keep-alive pools) so it is paid per connection, not per request.
 *
 * Ownership: struct tunnel is made by tunnel_new and freed by tunnel_close's callback; the identity and
 * keyring are borrowed and must outlive it. Everything runs on the loop thread. */
#ifndef IM_TUNNEL_TUNNEL_H
#define IM_TUNNEL_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/identity.h"
#include "cluster/keyring.h"
#include "core/buf.h"

#define TUNNEL_QUEUE_HIGH (1u << 20) /* bytes queued toward one side before the other side is paused */
#define TUNNEL_QUEUE_LOW (256u << 10)
#define TUNNEL_ALLOW_MAX 32

struct tunnel_config {
  const struct identity *id; /* this node's identity (borrowed) */
  struct keyring *kr;        /* the cluster keyring (borrowed; a reload is seen by later handshakes) */
  /* resolve writes the tunnel address (host:port: its gossip address) of the alive member pk to addr
   * (capacity cap): 0, or -ENOENT when pk is no member this node knows alive. Servers ask it about a
   * client's identity too: only members may open streams. */
  int (*resolve)(void *arg, const uint8_t pk[IDENTITY_PK_LEN], char *addr, size_t cap);
  /* lookup writes the identity of the alive member named node (its name, or a prefix of its id in hex of 6
   * characters or more) to pk: 0, or -ENOENT. Forwarders name their member this way. */
  int (*lookup)(void *arg, const char *node, uint8_t pk[IDENTITY_PK_LEN]);
  void *arg;
  int max_streams_per_peer;      /* streams one member may hold open to this node (0: 256) */
  int max_streams;               /* streams in all, both directions (0: 4096) */
  uint32_t handshake_timeout_ms; /* 0: 5000 */
};

struct tunnel_counters {
  uint64_t dials, dial_failed, accepted;
  uint64_t refused_key;      /* handshakes that failed the cluster-key MAC (another cluster) */
  uint64_t refused_identity; /* a peer not the member asked for, a bad signature, or not a member */
  uint64_t refused_port;     /* a port not on the allow-list */
  uint64_t refused_busy;     /* over max_streams_per_peer or max_streams */
  uint64_t truncated;        /* streams cut without their final frame, or with a frame that failed to open */
  uint64_t bytes_in, bytes_out; /* plaintext bytes relayed from and to peers */
  uint64_t pauses;              /* times a relay direction was paused for backpressure */
  int open;                     /* streams open now (handshaking or relaying) */
};

struct tunnel;

/* tunnel_new makes a tunnel on loop with cfg (copied). 0 and *out, or -EINVAL (no identity, keyring,
 * resolve or lookup). */
int tunnel_new(struct tunnel **out, uv_loop_t *loop, const struct tunnel_config *cfg);

/* tunnel_allow puts port on the allow-list: a stream asking for it is relayed to host:port (host: where that
 * service listens on this node; "0.0.0.0" / "::" become loopback). 0, -EEXIST (already allowed), -ENOSPC
 * (TUNNEL_ALLOW_MAX entries), -EINVAL. tunnel_disallow removes it (streams already open stay). */
int tunnel_allow(struct tunnel *t, const char *host, int port);
/* tunnel_allow_to is tunnel_allow relaying streams that ask for port to host:to_port instead (an agent with
 * TLS on its listener serves tunnel hops from a plaintext listener of its own on loopback). */
int tunnel_allow_to(struct tunnel *t, int port, const char *host, int to_port);
void tunnel_disallow(struct tunnel *t, int port);

/* tunnel_accept_fd takes over a connected TCP socket fd (ownership passes, it is closed on any error) whose
 * first len bytes, pre (copied), were already read: a client's hello. */
void tunnel_accept_fd(struct tunnel *t, uv_os_sock_t fd, const uint8_t *pre, size_t len);

/* tunnel_dial opens a stream to port on the member pk. cb runs once on the loop, never inside tunnel_dial:
 * status 0 and fd, one end of a socketpair (owned by the callee: wrap it with uv_pipe_open) carrying the
 * stream's plaintext; or a negative errno and fd -1: -ENOENT (no such member alive), -ECONNREFUSED (the
 * server refused the port or nothing listens there), -EACCES (the server answered under another cluster's
 * key), -ECONNRESET (it closed without answering: it does not hold our key, or is not a tunnel), -EPERM (the
 * peer is not who membership says, or does not know us), -EBUSY (too many streams), -ETIMEDOUT, or a
 * connect error.
 * Returns a handle for tunnel_dial_cancel, valid until cb runs. */
struct tunnel_dial;
typedef void (*tunnel_dial_cb)(void *arg, int status, uv_os_sock_t fd);
struct tunnel_dial *tunnel_dial(struct tunnel *t, const uint8_t pk[IDENTITY_PK_LEN], int port,
                                tunnel_dial_cb cb, void *arg);
/* tunnel_dial_cancel abandons a dial whose callback has not run: it never runs. */
void tunnel_dial_cancel(struct tunnel_dial *d);

/* A local forwarder: listens on host:port (a loopback address: anyone reaching it would use this node's
 * identity; port 0: any free port, see tunnel_forward_port) and turns every
 * accepted connection into a stream to the member named node (cfg.lookup, asked at each connection, so the
 * member may join later or restart), port rport: e.g. llama-server --rpc 127.0.0.1:L reaching an rpc-server
 * on another node. A connection whose stream cannot open is closed. 0 and *out (owned by t until
 * tunnel_forward_close), or a negative code with a message in err. */
#define TUNNEL_NODE_MAX 64
struct tunnel_forward;
int tunnel_forward_start(struct tunnel_forward **out, struct tunnel *t, const char *host, int port,
                         const char *node, int rport, char *err, size_t errlen);
int tunnel_forward_port(const struct tunnel_forward *f);
/* tunnel_forward_on_lost: cb(arg, err) runs whenever one of f's streams fails (it could not open: err, e.g.
 * -ENOENT or -ECONNREFUSED; or the member's side was cut without a clean end: err 0) or the member's side
 * ended it first, cleanly, while the local connection still sent (err -EPIPE: the service there closed the
 * connection; normal for some protocols, but a llama.cpp rpc-server never does it while it runs), until f is
 * closed: the sign that the member (or its service) went away, before membership says so. */
typedef void (*tunnel_forward_lost_cb)(void *arg, int err);
void tunnel_forward_on_lost(struct tunnel_forward *f, tunnel_forward_lost_cb cb, void *arg);
/* tunnel_forward_close stops listening and frees f (streams it opened stay until they end). */
void tunnel_forward_close(struct tunnel_forward *f);

const struct tunnel_counters *tunnel_counters(const struct tunnel *t);
/* tunnel_metrics appends the counters in Prometheus text (infermesh_tunnel_*). */
void tunnel_metrics(const struct tunnel *t, struct buf *out);

/* tunnel_close ends every stream and forwarder; closed_cb(arg) runs once nothing of t is left on the loop,
 * and t is freed after it. */
void tunnel_close(struct tunnel *t, void (*closed_cb)(void *arg), void *arg);

#endif
