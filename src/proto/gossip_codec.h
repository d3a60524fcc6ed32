/* Wire codec for gossip messages: struct gossip_* (proto/gossip_msg.h) <-> protobuf (proto/gossip.proto).
 *
 * Encoding checks the struct against its own bounds (counts in range, strings NUL-terminated inside their
 * arrays, known enum values, finite doubles), so whatever encodes also decodes, to an equal struct.
 * Decoding trusts nothing: every bound of the C structs is checked, and on any rejection the output is zeroed
 * and nothing stays allocated. Unknown fields are ignored (see the evolution rules in gossip.proto).
 *
 * Errors: -EINVAL (malformed input, or an encoder input outside its bounds), -ENOSPC (does not fit in cap).
 */
#ifndef IM_PROTO_GOSSIP_CODEC_H
#define IM_PROTO_GOSSIP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "proto/gossip_msg.h"

/* Bytes a Packet adds around its Swim body: version (tag + 1-byte varint) + body tag + 2-byte length (a Swim
 * within GOSSIP_MAX_UPDATES updates is always < 16384 bytes). So for any encodable SWIM message m:
 *   gossip_encode_packet(m) <= GOSSIP_MSG_BASE_BOUND + sum(gossip_update_size_bound(u)) +
 * GOSSIP_PACKET_FRAMING and a message built to fit GOSSIP_PACKET_MAX by that sum always encodes into a
 * GOSSIP_PACKET_MAX buffer. */
#define GOSSIP_PACKET_FRAMING 5

/* Largest input gossip_decode_packet accepts: a UDP datagram's payload can't be larger. */
#define GOSSIP_PACKET_INPUT_MAX 65535
/* Largest input gossip_decode_pushpull accepts (equal to the TCP frame cap, cluster/gossip_tcp.h). */
#define GOSSIP_PUSHPULL_INPUT_MAX (1u << 20)

/* gossip_swim_size_bound is the bound above for m: what SWIM may count on when it fills a datagram. */
static inline size_t gossip_swim_size_bound(const struct gossip_msg *m) {
  size_t n = GOSSIP_MSG_BASE_BOUND + GOSSIP_PACKET_FRAMING;
  for (int i = 0; i < m->nupdates && i < GOSSIP_MAX_UPDATES; i++)
    n += gossip_update_size_bound(&m->updates[i]);
  return n;
}

/* gossip_encode_packet writes p (borrowed, unchanged) as one Packet of version GOSSIP_WIRE_VERSION into out
 * (cap bytes, owned by the caller). Returns the number of bytes written, -ENOSPC when the encoding is longer
 * than cap (nothing useful is in out then), or -EINVAL when p is outside its bounds: unknown kind or enum,
 * a count below 0 or above its array, meta_len > GOSSIP_META_MAX, a string not NUL-terminated inside its
 * array, a non-finite double in a load report. Allocates nothing. */
int gossip_encode_packet(const struct gossip_packet *p, uint8_t *out, size_t cap);

/* gossip_decode_packet parses in[0..len) (borrowed) into *p (caller-owned; fully overwritten). Returns 0, or
 * -EINVAL with *p zeroed: malformed protobuf, version other than GOSSIP_WIRE_VERSION, no known body, an id
 * not exactly GOSSIP_ID_LEN bytes, a string that would not fit its array with its NUL or contains a NUL,
 * more updates/targets/models/digest entries than the arrays hold, a delta id not GOSSIP_SHORT_ID bytes or
 * values not whole targets (GOSSIP_DELTA_STRIDE each, at most GOSSIP_LOAD_TARGETS), an unknown enum value,
 * meta over GOSSIP_META_MAX, a non-finite double, or len > GOSSIP_PACKET_INPUT_MAX. No allocation survives the call; the usual datagram
 * decodes without calling malloc. */
int gossip_decode_packet(const uint8_t *in, size_t len, struct gossip_packet *p);

/* gossip_encode_meta writes m (borrowed) as a NodeMeta into out (cap bytes; GOSSIP_META_MAX to fit
 * gossip_update.meta). Returns bytes written, -ENOSPC, or -EINVAL (m outside its bounds, as above). */
int gossip_encode_meta(const struct gossip_meta *m, uint8_t *out, size_t cap);

/* gossip_decode_meta parses in[0..len) into *m (caller-owned; fully overwritten). 0, or -EINVAL with *m
 * zeroed (the same checks as gossip_decode_packet; len > GOSSIP_META_MAX is rejected too). An empty input is
 * a valid, all-default meta. */
int gossip_decode_meta(const uint8_t *in, size_t len, struct gossip_meta *m);

/* gossip_encode_pushpull encodes pp (borrowed; pp->members may be NULL when nmembers is 0) as a PushPull of
 * version GOSSIP_WIRE_VERSION into a new buffer: *out (caller frees with free()) and *outlen. Returns 0, or
 * -EINVAL (nmembers outside 0..GOSSIP_PUSHPULL_MAX or a member outside its bounds) with *out NULL and
 * *outlen 0. The result is at most ~505 KB, below GOSSIP_PUSHPULL_INPUT_MAX. Aborts when out of memory. */
int gossip_encode_pushpull(const struct gossip_pushpull *pp, uint8_t **out, size_t *outlen);

/* gossip_decode_pushpull parses in[0..len) into *pp (caller-owned; fully overwritten, so free a previous
 * result first). On 0, pp->members is a malloc'd array of pp->nmembers (NULL when 0) that the caller releases
 * with gossip_pushpull_free. -EINVAL with *pp zeroed and nothing allocated: the checks of
 * gossip_decode_packet, more than GOSSIP_PUSHPULL_MAX members (counted before anything is allocated), or
 * len > GOSSIP_PUSHPULL_INPUT_MAX. */
int gossip_decode_pushpull(const uint8_t *in, size_t len, struct gossip_pushpull *pp);

/* gossip_pushpull_free frees pp->members (from gossip_decode_pushpull) and zeroes the count; pp itself is
 * the caller's. Safe on a zeroed or already freed pp. */
void gossip_pushpull_free(struct gossip_pushpull *pp);

#endif
