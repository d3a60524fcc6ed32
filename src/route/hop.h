/* Agent-to-agent hop signatures (x-infermesh-hop): signing and checking with the cluster keyring. */
#ifndef IM_ROUTE_HOP_H
#define IM_ROUTE_HOP_H

#include <stdint.h>

#include "cluster/identity.h"
#include "cluster/keyring.h"
#include "core/slice.h"
#include "route/hop_seen.h"

/* A request forwarded to another node's agent (DESIGN §1, §10) carries
 *   x-infermesh-hop = "v3.<unix seconds>.<nonce>.<hex tag>"
 * the tag a keyring MAC (keyring_auth_tag) over
 *   "v3.<purpose>.<ts>.<nonce>.<length of request id>:<request id>.<receiver>.<digest>.<target>"
 * where nonce is 16 hex digits (every signature distinct), receiver the 64 hex digits of the receiving node's
 * id (its public key, as membership knows it), digest the 64 hex digits of hop_digest of the request
 * as sent (method, request target, body), and target is x-infermesh-hop-target (the target's name on that
 * node, or what a control request is about). purpose says what the signature is for (HOP_INFER: an inference
 * request; HOP_CTL: an agent-to-agent control call), so a signature made for one cannot be presented as the
 * other. So a captured header is good for one request, to one node, with one body: the receiving agent
 * accepts it within HOP_MAX_SKEW_S of its own clock, once (a replay is refused), and routes an inference hop
 * to its own targets only. Headers of older versions (v1, v2: not bound to the receiver and body) are
 * refused. */
#define HOP_MAX_SKEW_S 60
#define HOP_INFER "infer"
#define HOP_CTL "ctl"
#define HOP_HEADER_MAX 106 /* "v3." ts(<=20) "." nonce(16) "." tag(64) + NUL */
#define HOP_NODE_LEN 32
#define HOP_DIGEST_LEN 32

/* What a signature binds besides purpose, time and nonce. Slices and node are borrowed for the call. */
struct hop_bind {
  struct slice request_id;        /* x-request-id */
  struct slice target;            /* x-infermesh-hop-target */
  const uint8_t *node;            /* HOP_NODE_LEN bytes: the receiving node's id; NULL: nothing verifies */
  uint8_t digest[HOP_DIGEST_LEN]; /* hop_digest of the request */
};

/* hop_digest writes the BLAKE2b-256 of "<method> <request target>\n" followed by the body (the nbody
 * parts of body, in order; body may be NULL when nbody is 0) into out: the request as it goes on the wire
 * (request target = path and query exactly as in the request line), and as the receiver parsed it. */
void hop_digest(const char *method, struct slice request_target, const struct slice *body, int nbody,
                       uint8_t out[HOP_DIGEST_LEN]);

/* hop_sign writes the header value for purpose and b into out (>= HOP_HEADER_MAX bytes); nonce must
 * differ between the signatures one agent makes within 2 * HOP_MAX_SKEW_S (rng_next). A request id and
 * target too long to sign together (over ~580 bytes; callers stay far below), no b->node or a smaller out
 * give an empty value: callers send nothing then (an empty header would read as "not forwarded"). */
void hop_sign(const struct keyring *kr, const char *purpose, int64_t now_s, uint64_t nonce,
                     const struct hop_bind *b, char *out, size_t cap);

/* hop_verify checks a header value made for purpose and b (b->node: this node's id; b->digest: of the
 * request as received) and remembers it in seen: 0, or -EACCES (bad tag: another key, purpose, request,
 * receiver or body; no keyring or node), -EPROTO (an older header version), -ETIMEDOUT (clock skew),
 * -EALREADY (accepted before: a replay), -EBUSY (seen is full: answer 503). */
int hop_verify(const struct keyring *kr, struct hop_seen *seen, const char *purpose, int64_t now_s,
                      struct slice hop, const struct hop_bind *b);

/* The cluster key proves only that some agent of the cluster signed a hop. A control call that acts for the
 * node sending it (a split host leasing or releasing a worker's rpc-server: api/rpc_api.c) carries, besides
 * x-infermesh-hop, the sender's own signature:
 *   x-infermesh-hop-node = the 128 hex digits of an ed25519 signature with the sender's node key
 *                          (cluster/identity.h) over "node." followed by the text the hop tag covers
 * (so the same purpose, time, nonce, request id, receiver, digest and target), which the receiver checks
 * against the public id membership gives the member the body names. Checked after hop_verify accepted the
 * header (fresh, once), the node signature is as single-use as the hop it goes with. */
#define HOP_NODE_SIG_MAX 129 /* 128 hex digits + NUL */

/* hop_sign_node writes the x-infermesh-hop-node value for the header value hop (made by hop_sign with the
 * same purpose and b) into out (>= HOP_NODE_SIG_MAX bytes), signed with id's secret key (borrowed for the
 * call). A hop value that does not parse, no b->node or a smaller out give an empty value. */
void hop_sign_node(const struct identity *id, const char *purpose, struct slice hop, const struct hop_bind *b,
                   char *out, size_t cap);

/* hop_verify_node checks sig, an x-infermesh-hop-node value, for the header value hop and b against the
 * sender's public key pk (IDENTITY_PK_LEN bytes): 0, or -EACCES (missing, malformed, or signed by another
 * key or for another request). It does not check the hop itself: call hop_verify first. */
int hop_verify_node(const uint8_t *pk, const char *purpose, struct slice hop, const struct hop_bind *b,
                    struct slice sig);

/* hop_refusal is the message for a 403 answering a refusal rc of hop_verify (static). */
const char *hop_refusal(int rc);

#endif
