/* Runtime supervision: the agent starts, watches, restarts and stops the runtimes configured with `exec`.
 *
 * Each runtime runs in its own session and process group (uv_spawn UV_PROCESS_DETACHED), under the hidden
 * helper `infermesh _exec-child AGENT_PID -- ARGV...` (exec_child.c): the helper leads the group, forks the
 * command, forwards SIGTERM to the group, exits like the command, and when the agent dies (PR_SET_PDEATHSIG,
 * even on SIGKILL) SIGKILLs the whole group, grandchildren included. Stop = SIGTERM to the helper (so to the
 * group, once) -> grace -> SIGKILL to the group; after any exit the group is SIGKILLed (leftovers would hold
 * the port or the GPU). The command is split on blanks and run directly (mode=direct) unless it holds shell
 * metacharacters (quotes, $, |, ;, &, <, >, *, ..., or an env assignment as first word): then it runs as
 * `/bin/sh -c COMMAND` (mode=shell). Its stdout and
 * stderr become log lines (msg="runtime output" runtime=NAME stream=stdout|stderr line="..."). Health is the
 * scraper's verdict on the target (store healthy flag); while waiting the supervisor logs "waiting for
 * runtime NAME: N s" every few seconds and gives up after health_timeout_ms (the child is stopped and counts
 * as a crash). An exit restarts it after backoff_ms * 2^(recent exits - 1), capped at backoff_max_ms, with
 * +-20% jitter; crash_loop_restarts exits within crash_loop_window_ms is a crash loop (logged at error,
 * retried at the maximum backoff). Everything runs on the loop: exit callbacks and timers. */
#ifndef IM_AGENT_SUPERVISOR_H
#define IM_AGENT_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/config.h"
#include "api/status.h"
#include "state/store.h"

struct supervisor;

/* supervisor_start starts every runtime of cfg with a non-empty exec; ids[i] is the store target id of
 * cfg->runtimes[i]. exe is our own binary (for the helper). The supervisor borrows loop, store and cfg for
 * its whole life. Returns NULL when no runtime has exec. */
struct supervisor *supervisor_start(uv_loop_t *loop, struct store *store, const struct agent_config *cfg,
                                    const int *ids, const char *exe);
/* supervisor_stop: marks supervised targets down, waits (at most wait_ms) for their in-flight requests
 * (store inflight), SIGTERMs each child's process group, SIGKILLs it after stop_grace_ms (and stops waiting
 * for a process that survives SIGKILL 5 s later), then closes everything and calls cb(arg); the supervisor is
 * freed right after cb returns. s may be NULL (cb is then called at once). */
void supervisor_stop(struct supervisor *s, uint32_t wait_ms, void (*cb)(void *arg), void *arg);
/* supervisor_kill_now SIGKILLs every child's process group at once (the agent is exiting without a clean
 * stop). Safe with NULL. */
void supervisor_kill_now(struct supervisor *s);

/* supervisor_proc_info fills *out (api/status.h: state, pid, restarts, last exit, health wait, ...) for the
 * supervised runtime whose store target id is target_id, as of now_ns (clock_mono_ns). Returns false (out
 * untouched) when s is NULL or that target has no exec. Read-only; out->state is a static string. */
bool supervisor_proc_info(const struct supervisor *s, int target_id, uint64_t now_ns, struct status_proc *out);

/* exec_child_main runs `infermesh _exec-child PARENT_PID -- COMMAND [ARGS...]` (argv after the subcommand):
 * see above. Returns (or exits with) the command's status; 127 when it cannot start it. */
int exec_child_main(int argc, char **argv);

#endif
