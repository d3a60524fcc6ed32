/* JSON views of the node for the control API and the CLI: /v1/cluster/status and /v1/cluster/targets. */
#ifndef IM_API_STATUS_H
#define IM_API_STATUS_H

#include <stdint.h>

#include "core/buf.h"
#include "state/score.h"
#include "state/store.h"

struct status_info {
  const char *node_name;
  const char *version;
  const char *listen;
  double uptime_s;
  int inflight;
  uint64_t requests_total;
  const char *gpus_json; /* a JSON object describing the node's GPUs, or NULL */
};

/* status_json appends {"node","version","listen","uptime_s","inflight","requests_total","targets":{"total",
 * "healthy"},"models":[...],"gpus":{...}} describing the node ("gpus" only when info->gpus_json is set). */
void status_json(struct buf *out, const struct status_info *info, const struct store *s);
/* status_targets_json appends {"targets":[...]} with each target's state, signals, reservations, signal
 * age and current score (lower is better). */
void status_targets_json(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns);
/* status_targets_metrics appends per-target gauges (infermesh_target_*) in the Prometheus text format. */
void status_targets_metrics(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns);

#endif
