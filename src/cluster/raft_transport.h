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
 * disconnected and counted. */
#ifndef IM_CLUSTER_RAFT_TRANSPORT_H
#define IM_CLUSTER_RAFT_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>

#include "cluster/keyring.h"

struct rt_counters {
  uint64_t accepted, connected, refused_auth, failed, frames_in, frames_out;
};

/* rt_init prepares t (caller-owned; it must outlive the close callback) on loop with keyring kr (borrowed, kept
 * alive by the caller until the transport is closed). Returns 0 or RAFT_NOMEM. Free with rt_free once
 * raft_uv_close has run and the transport's close callback has fired. */
int rt_init(struct raft_uv_transport *t, uv_loop_t *loop, struct keyring *kr);
void rt_free(struct raft_uv_transport *t);
const struct rt_counters *rt_counters(const struct raft_uv_transport *t);

#endif
