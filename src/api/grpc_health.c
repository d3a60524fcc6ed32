/* grpc.health.v1.Health/Check: SERVING unless the agent drains. */
#include <string.h>

#include "api/grpc_services.h"
#include "grpc/health/v1/health.pb-c.h"

void grpc_health_check(struct grpc_call *call, const ProtobufCMessage *in) {
  const Grpc__Health__V1__HealthCheckRequest *q = (const void *)in;
  static const char *const services[] = {"", "infermesh.v1.Scoring", "infermesh.v1.Control",
                                         "grpc.health.v1.Health"};
  bool known = false;
  for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
    known |= strcmp(q->service, services[i]) == 0;
  if (!known) {
    grpc_finish(call, GRPC_NOT_FOUND, "unknown service");
    return;
  }
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = *grpc_call_env(call)->draining
                    ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  grpc_reply(call, &resp.base);
}
