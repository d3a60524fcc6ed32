/* JSON views of the node for the control API and the CLI: /v1/cluster/status and /v1/cluster/targets. */
#ifndef IM_API_STATUS_H
#define IM_API_STATUS_H

#include <stdbool.h>
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

/* A target's supervised process (runtimes configured with exec; agent/supervisor.c fills it). A plain value. */
struct status_proc {
  /* NULL: the target is not supervised. Else a static string: "starting" (spawned, waiting to become healthy),
   * "running" (healthy since this start), "stopping" (being stopped: SIGTERM sent, or about to be on
   * shutdown), "backoff" (exited; restarts after a delay), "crash_loop" (the same in a crash loop, at the
   * longest delay), "stopped" (stopped by the agent's shutdown) */
  const char *state;
  double since_s;        /* seconds in this state */
  int pid;               /* the process group leader (the _exec-child helper); 0 when none runs */
  int restarts;          /* starts after the first */
  bool crash_loop;       /* in a crash loop (also while a retry is starting) */
  bool exited;           /* it has exited at least once; then the last exit: */
  long long exit_status; /* exit status (0 when a signal ended it) */
  int exit_signal;       /* the signal that ended it, 0 when none */
  double exit_ago_s;     /* seconds since that exit */
  double health_elapsed_s, health_timeout_s; /* while starting: waited so far and the limit; else 0 */
  double restart_in_s;   /* backoff or crash_loop: seconds until the next start; else 0 */
  /* The router's circuit breaker for the target (a static string: "closed", "open", "half_open"; NULL: not
   * shown), listed beside the target's state, supervised or not. */
  const char *breaker;
};

/* status_json appends {"node","version","listen","uptime_s","inflight","requests_total","targets":{"total",
 * "healthy"},"models":[...],"gpus":{...}} describing the node ("gpus" only when info->gpus_json is set). */
void status_json(struct buf *out, const struct status_info *info, const struct store *s);
/* status_targets_json appends {"targets":[...]} with each target's state, signals, reservations, signal
 * age and current score (lower is better), and "process": the supervised process's state (see status_proc:
 * {"state","since_s","pid","restarts","crash_loop","last_exit":{"code","signal","ago_s"}|null,
 * "health_wait":{"elapsed_s","timeout_s"}|null,"restart_in_s"|null}), or null when it has none. procs is
 * NULL or holds s->ntargets entries indexed by target id (borrowed; an entry with state NULL: none). */
void status_targets_json(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns,
                         const struct status_proc *procs);
/* status_targets_metrics appends per-target gauges (infermesh_target_*) in the Prometheus text format. */
void status_targets_metrics(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns);

#endif
