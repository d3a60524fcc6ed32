/* gRPC over HTTP/2, the wire details (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): status
 * codes, the 5-byte length-prefixed message framing, grpc-timeout, grpc-message's percent-encoding. Pure. */
#ifndef IM_GRPC_GRPC_FRAME_H
#define IM_GRPC_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* Status codes (grpc/status.h). */
enum grpc_code {
  GRPC_OK = 0,
  GRPC_CANCELLED = 1,
  GRPC_UNKNOWN = 2,
  GRPC_INVALID_ARGUMENT = 3,
  GRPC_DEADLINE_EXCEEDED = 4,
  GRPC_NOT_FOUND = 5,
  GRPC_ALREADY_EXISTS = 6,
  GRPC_PERMISSION_DENIED = 7,
  GRPC_RESOURCE_EXHAUSTED = 8,
  GRPC_FAILED_PRECONDITION = 9,
  GRPC_ABORTED = 10,
  GRPC_OUT_OF_RANGE = 11,
  GRPC_UNIMPLEMENTED = 12,
  GRPC_INTERNAL = 13,
  GRPC_UNAVAILABLE = 14,
  GRPC_DATA_LOSS = 15,
  GRPC_UNAUTHENTICATED = 16,
};

#define GRPC_HEADER_LEN 5
/* Largest request message accepted (the agent's body limit applies first). */
#define GRPC_MAX_MESSAGE (4u << 20)

/* grpc_frame_one reads a request body that must hold exactly one message (unary and server-streaming calls):
 * on GRPC_OK, *msg points into body at the message bytes. Otherwise the code to answer and a static message
 * in *err: INVALID_ARGUMENT for a truncated frame, trailing bytes or no message, UNIMPLEMENTED for a
 * compressed one (no grpc-encoding is accepted), RESOURCE_EXHAUSTED over GRPC_MAX_MESSAGE. */
int grpc_frame_one(struct slice body, struct slice *msg, const char **err);

/* grpc_frame_header writes the prefix of an uncompressed message of len bytes. */
void grpc_frame_header(uint8_t out[GRPC_HEADER_LEN], uint32_t len);

/* grpc_timeout_parse reads a grpc-timeout value (1 to 8 digits and a unit H, M, S, m, u or n) into
 * nanoseconds (saturating). 0, or -EINVAL when malformed. */
int grpc_timeout_parse(struct slice v, uint64_t *ns);

/* grpc_percent_encode writes msg with grpc-message's percent-encoding (bytes outside 0x20..0x7e and '%' as
 * %XX) into out (cap > 0; NUL-terminated, truncated at a whole escape). Returns the length written. */
size_t grpc_percent_encode(const char *msg, char *out, size_t cap);

/* grpc_code_of_http maps an HTTP status of the agent's API to the gRPC code a client should see (as gRPC's
 * HTTP-to-gRPC mapping, refined for the API's answers: 400 INVALID_ARGUMENT, 409 FAILED_PRECONDITION). */
int grpc_code_of_http(int status);

#endif
