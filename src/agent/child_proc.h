/* A helper process the agent keeps running (rpc-server workers, a split model's llama-server): started under
 * the _exec-child helper (agent/supervisor.h: its own process group, SIGKILLed with its whole group when the
 * agent dies), restarted after an exit with a backoff of 500 ms doubling to 30 s (back to 500 ms after a
 * minute up), stopped with SIGTERM to its group and SIGKILL after 2 s. Its output goes to the agent's stderr.
 * Unlike a runtime's supervisor it knows nothing of health: its owner watches what it serves.
 * Everything runs on the loop. */
#ifndef IM_AGENT_CHILD_PROC_H
#define IM_AGENT_CHILD_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define CHILD_PROC_ARGS 64

struct child_proc;

/* child_proc_start starts argv (NULL-terminated, at most CHILD_PROC_ARGS entries; copied) named name in logs.
 * Returns the process (owned by the caller until child_proc_stop). */
struct child_proc *child_proc_start(uv_loop_t *loop, const char *name, char *const argv[]);
/* child_proc_running: the process is up now (not between an exit and its restart); *pid is the helper's. */
bool child_proc_running(const struct child_proc *p, int *pid);
/* child_proc_stop ends the process and its restarts; closed_cb(arg) (may be NULL) runs once nothing of p is
 * left on the loop, and p is freed then. */
void child_proc_stop(struct child_proc *p, void (*closed_cb)(void *arg), void *arg);
/* child_proc_stop_within is child_proc_stop with grace_ms instead of 2 s between SIGTERM and SIGKILL; 0 sends
 * SIGKILL at once (a process that can no longer serve: nothing to finish). */
void child_proc_stop_within(struct child_proc *p, uint32_t grace_ms, void (*closed_cb)(void *arg), void *arg);

#endif
