/* The agent's gRPC method table: every method of infermesh.v1.Scoring, infermesh.v1.Control and
 * grpc.health.v1.Health with its request message and handler (credentials: api/routes.c). */
#include "api/grpc_services.h"

#include "grpc/health/v1/health.pb-c.h"
#include "infermesh/v1/control.pb-c.h"
#include "infermesh/v1/scoring.pb-c.h"

#define SCORING "/infermesh.v1.Scoring/"
#define CONTROL "/infermesh.v1.Control/"
const struct grpc_method grpc_services[] = {
    {SCORING "ScoreTargets", &infermesh__v1__score_targets_request__descriptor, grpc_score_targets},
    {SCORING "Admit", &infermesh__v1__admit_request__descriptor, grpc_admit},
    {SCORING "ReportOutcome", &infermesh__v1__report_outcome_request__descriptor, grpc_report_outcome},
    {CONTROL "ListNodes", &infermesh__v1__list_nodes_request__descriptor, grpc_list_nodes},
    {CONTROL "ListModels", &infermesh__v1__list_models_request__descriptor, grpc_list_models},
    {CONTROL "ListTargets", &infermesh__v1__list_targets_request__descriptor, grpc_list_targets},
    {CONTROL "GetPolicy", &infermesh__v1__get_policy_request__descriptor, grpc_get_policy},
    {CONTROL "SetPolicy", &infermesh__v1__set_policy_request__descriptor, grpc_set_policy},
    {CONTROL "ListPolicies", &infermesh__v1__list_policies_request__descriptor, grpc_list_policies},
    {CONTROL "DeletePolicy", &infermesh__v1__delete_policy_request__descriptor, grpc_delete_policy},
    {CONTROL "PinModel", &infermesh__v1__pin_model_request__descriptor, grpc_pin_model},
    {CONTROL "UnpinModel", &infermesh__v1__unpin_model_request__descriptor, grpc_unpin_model},
    {CONTROL "DrainNode", &infermesh__v1__drain_node_request__descriptor, grpc_drain_node},
    {CONTROL "UndrainNode", &infermesh__v1__drain_node_request__descriptor, grpc_undrain_node},
    {CONTROL "SubscribeEvents", &infermesh__v1__subscribe_events_request__descriptor, grpc_subscribe_events},
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor, grpc_health_check},
};
const size_t grpc_nservices = sizeof grpc_services / sizeof grpc_services[0];
