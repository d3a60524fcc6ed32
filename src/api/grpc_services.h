/* The agent's gRPC services: infermesh.v1.Scoring (grpc_scoring.c), infermesh.v1.Control (grpc_control.c) and
 * grpc.health.v1.Health (grpc_health.c), and their method table for grpc/grpc_server. Each handler follows
 * grpc_handler_fn's contract: in is the decoded request message of the method's type; it ends the call. */
#ifndef IM_API_GRPC_SERVICES_H
#define IM_API_GRPC_SERVICES_H

#include "grpc/grpc_server.h"

/* grpc_services is the method table (grpc_nservices entries; static). */
extern const struct grpc_method grpc_services[];
extern const size_t grpc_nservices;

/* infermesh.v1.Scoring (proto/infermesh/v1/scoring.proto) */
void grpc_score_targets(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_admit(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_report_outcome(struct grpc_call *call, const ProtobufCMessage *in);

/* infermesh.v1.Control (proto/infermesh/v1/control.proto) */
void grpc_list_nodes(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_list_models(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_list_targets(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_get_policy(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_list_policies(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_set_policy(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_delete_policy(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_pin_model(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_unpin_model(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_drain_node(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_undrain_node(struct grpc_call *call, const ProtobufCMessage *in);
void grpc_subscribe_events(struct grpc_call *call, const ProtobufCMessage *in);

/* grpc.health.v1.Health (proto/grpc/health/v1/health.proto) */
void grpc_health_check(struct grpc_call *call, const ProtobufCMessage *in);

#endif
