/* libFuzzer target for the gRPC request path before a handler (grpc/grpc_frame.c and protobuf-c's decoders of
 * every request message the agent accepts): the first byte picks the message type, the rest is a request
 * body. A body the framing accepts names a message inside it; a message protobuf-c decodes packs again to the
 * same length or less (unknown fields aside, nothing grows). The body is also read as a grpc-timeout value
 * and percent-encoded as a grpc-message: the encoding is printable ASCII and never overflows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc_frame.h"
#include "grpc/health/v1/health.pb-c.h"
#include "infermesh/v1/control.pb-c.h"
#include "infermesh/v1/scoring.pb-c.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const ProtobufCMessageDescriptor *const types[] = {
      &infermesh__v1__score_targets_request__descriptor,
      &infermesh__v1__admit_request__descriptor,
      &infermesh__v1__report_outcome_request__descriptor,
      &infermesh__v1__list_nodes_request__descriptor,
      &infermesh__v1__get_policy_request__descriptor,
      &infermesh__v1__set_policy_request__descriptor,
      &infermesh__v1__pin_model_request__descriptor,
      &infermesh__v1__drain_node_request__descriptor,
      &infermesh__v1__subscribe_events_request__descriptor,
      &grpc__health__v1__health_check_request__descriptor,
  };
  if (size < 1) return 0;
  const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof types / sizeof types[0])];
  size_t n = size - 1;
  uint8_t *body = malloc(n ? n : 1); /* exact size: reads past it are caught */
  memcpy(body, data + 1, n);
  struct slice msg;
  const char *err = NULL;
  int code = grpc_frame_one(slice_make((const char *)body, n), &msg, &err);
  if (code == GRPC_OK) {
    CHECK(msg.base == (const char *)body + GRPC_HEADER_LEN && msg.len == n - GRPC_HEADER_LEN);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, msg.len, (const uint8_t *)msg.base);
    if (m) {
      size_t packed = protobuf_c_message_get_packed_size(m);
      uint8_t *out = malloc(packed ? packed : 1);
      CHECK(protobuf_c_message_pack(m, out) == packed);
      free(out);
      protobuf_c_message_free_unpacked(m, NULL);
    }
  } else {
    CHECK(err && err[0]);
    CHECK(code == GRPC_INVALID_ARGUMENT || code == GRPC_UNIMPLEMENTED || code == GRPC_RESOURCE_EXHAUSTED);
  }
  uint64_t ns;
  if (grpc_timeout_parse(slice_make((const char *)body, n), &ns) == 0) CHECK(n >= 2 && n <= 9);
  char *text = malloc(n + 1), enc[64];
  memcpy(text, body, n);
  text[n] = '\0';
  size_t el = grpc_percent_encode(text, enc, sizeof enc);
  CHECK(el < sizeof enc && enc[el] == '\0' && strlen(enc) == el);
  for (size_t i = 0; i < el; i++)
    CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e);
  free(text);
  free(body);
  return 0;
}
