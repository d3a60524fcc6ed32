/* Raft's network transport, authenticated and encrypted with the cluster key (internal to cluster/raft.c).
 *
 * libraft's uv I/O asks a struct raft_uv_transport for streams to and from other servers. This one dials and
 * accepts TCP, runs a handshake that proves both ends hold a key of the cluster keyring, then hands raft one end
 * of a socketpair and relays the other end over the TCP connection, each frame sealed with
 * crypto_secretstream (XChaCha20-Poly1305, one stream per direction, so frames cannot be forged, replayed,
 * reordered or dropped unnoticed).
 *
 * Handshake (K = a key both hold; Ka = crypto_kdf(K, 3, "im-raft1"), Ke = crypto_kdf(K, 4, "im-raft2")):
 *   C -> S  "IMRAFT01" | nc[32]
 *   S -> C  ns[32] | HMAC(Ka, "S" nc ns)[32] | secretstream header s->c [24]
 *   C -> S  HMAC(Ka, "C" nc ns hdr_c id addr)[32] | hdr_c[24] | raft id (u64 BE) | addrlen (u8) | addr
 * HMAC is HMAC-SHA512-256; the server uses its primary key, the client finds which of its keys the server
 * used. Session keys: BLAKE2b(key Ke, "s2c" nc ns) and BLAKE2b(key Ke, "c2s" nc ns). Frames after the
 * handshake: [u32 BE length][secretstream ciphertext of at most 64 KiB]. A peer that fails any step is
 * disconnected and counted.
 *
 * Backpressure: the relay never buffers without bound. When a relay write leaves the TCP connection's write
 * queue over RT_QUEUE_HIGH, the transport stops reading raft's socketpair until the queue drained to
 * RT_QUEUE_LOW (raft's own writes then wait in the kernel and in its stream); the other direction likewise
 * (the socketpair's queue over the mark stops reading TCP, so the peer's kernel buffers fill and it slows).
 *
 * Addresses are IPv4:PORT (or localhost:PORT) and [IPv6]:PORT. */
#ifndef IM_CLUSTER_RAFT_TRANSPORT_H
#define IM_CLUSTER_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cluster/keyring.h"

#define RT_QUEUE_HIGH (4u << 20) /* bytes queued for one relay direction before its source is paused */
#define RT_QUEUE_LOW (2u << 20)  /* ... and resumed */

struct rt_counters {
  uint64_t accepted, connected, refused_auth, failed, frames_in, frames_out;
  uint64_t relay_pauses;    /* times a relay direction stopped reading for backpressure */
  uint64_t relay_queue_max; /* the largest write queue (bytes) a relay write left behind */
};

/* rt_init prepares t (caller-owned; it must outlive the close callback) on loop with keyring kr (borrowed, kept
 * alive by the caller until the transport is closed). Returns 0 or RAFT_NOMEM. Free with rt_free once
 * raft_uv_close has run and the transport's close callback has fired. */
int rt_init(struct raft_uv_transport *t, uv_loop_t *loop, struct keyring *kr);
void rt_free(struct raft_uv_transport *t);
const struct rt_counters *rt_counters(const struct raft_uv_transport *t);

/* The handshake and framing parsers, pure (no I/O, no allocation), as the transport uses them; exported for
 * the fuzz target. Every one reads only in[0, len). */
#define RTX_NONCE_LEN 32
#define RTX_HELLO_LEN (8 + RTX_NONCE_LEN)
#define RTX_REPLY_LEN (RTX_NONCE_LEN + crypto_auth_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define RTX_FINISH_MIN (crypto_auth_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES + 8 + 1)
#define RTX_ADDR_MAX 255
#define RTX_FRAME_MAX 65536

/* rtx_parse_hello (server): 0 and the client nonce in nc when in starts with a hello; -EAGAIN when len is too
 * short to tell; -EPROTO for a wrong magic. The hello is RTX_HELLO_LEN bytes. */
int rtx_parse_hello(const uint8_t *in, size_t len, uint8_t nc[RTX_NONCE_LEN]);

/* rtx_check_server_reply (client, nonce nc): finds the key of kr the server's tag was made with, copies the
 * server nonce to ns and starts rx (the s->c stream). Returns the key index, -EAGAIN (too short), -EACCES (no
 * key matches) or -EBADMSG (bad stream header). The reply is RTX_REPLY_LEN bytes. */
int rtx_check_server_reply(const struct keyring *kr, const uint8_t nc[RTX_NONCE_LEN], const uint8_t *in, size_t len,
                           uint8_t ns[RTX_NONCE_LEN], crypto_secretstream_xchacha20poly1305_state *rx);

/* rtx_finish_len (server): the length of the client's finish message starting at in, or 0 when len is too
 * short to tell. */
size_t rtx_finish_len(const uint8_t *in, size_t len);

/* rtx_check_client_finish (server, key index key of kr, nonces nc and ns): verifies the finish message
 * in[0, len) (len = rtx_finish_len), starts rx (the c->s stream) and returns the peer's raft id and address
 * (NUL-terminated). 0, -EAGAIN (len short of the message), -EACCES (bad tag or stream header). */
int rtx_check_client_finish(const struct keyring *kr, int key, const uint8_t nc[RTX_NONCE_LEN],
                            const uint8_t ns[RTX_NONCE_LEN], const uint8_t *in, size_t len,
                            crypto_secretstream_xchacha20poly1305_state *rx, raft_id *peer_id,
                            char peer_addr[RTX_ADDR_MAX + 1]);

/* rtx_parse_addr parses "IPv4:PORT", "localhost:PORT" or "[IPv6]:PORT" (port 1-65535) into sa: 0 or
 * RAFT_INVALID (an IPv6 address needs its brackets). */
int rtx_parse_addr(const char *address, struct sockaddr_storage *sa);

/* rtx_frame_next: the ciphertext length of the frame at in ([u32 BE length][ciphertext]) in *clen. 1: the
 * whole frame (4 + *clen bytes) is in in; 0: more bytes needed; -EPROTO: the length is out of range. */
int rtx_frame_next(const uint8_t *in, size_t len, uint32_t *clen);

#endif
