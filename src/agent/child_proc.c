/* A supervised helper process: spawn under _exec-child, restart with backoff, stop (see child_proc.h). */
#include "agent/child_proc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/child_env.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slice.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define STABLE_MS 60000 /* up this long: the next exit starts the backoff over */
#define STOP_GRACE_MS 2000

struct child_proc {
  uv_loop_t *loop;
  char name[64], exe[1024];
  char *argv[CHILD_PROC_ARGS + 1]; /* owned copies */
  uv_process_t proc;
  uv_timer_t timer; /* the restart backoff, or the stop grace */
  bool running, proc_open, stopping;
  int pid;
  uint32_t backoff_ms;
  uint64_t started_ns;
  int handles; /* the timer always; the process from its spawn until its close completed */
  void (*closed_cb)(void *);
  void *closed_arg;
};

static void spawn(struct child_proc *p);

static void handle_closed_cb(uv_handle_t *h) {
  struct child_proc *p = h->data;
  if (h == (uv_handle_t *)&p->proc) p->proc_open = false;
  if (--p->handles > 0) return;
  void (*cb)(void *) = p->closed_cb;
  void *arg = p->closed_arg;
  for (int i = 0; p->argv[i]; i++)
    free(p->argv[i]);
  free(p);
  if (cb) cb(arg);
}

static void timer_cb(uv_timer_t *t) {
  struct child_proc *p = t->data;
  if (p->stopping) { /* the stop grace ran out: the group goes */
    if (p->running) kill(-p->pid, SIGKILL);
    return;
  }
  if (p->proc_open) { /* the last process's handle is still closing */
    uv_timer_start(&p->timer, timer_cb, 50, 0);
    return;
  }
  spawn(p);
}

static void exit_cb(uv_process_t *h, int64_t status, int sig) {
  struct child_proc *p = h->data;
  p->running = false;
  kill(-p->pid, SIGKILL); /* leftovers of the group would hold its port */
  uv_close((uv_handle_t *)h, handle_closed_cb);
  if (p->stopping) {
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, handle_closed_cb);
    return;
  }
  if (clock_mono_ns() - p->started_ns > (uint64_t)STABLE_MS * 1000000u) p->backoff_ms = BACKOFF_MIN_MS;
  log_warn("helper process exited; restarting", "name=%s status=%lld signal=%d restart_in_ms=%u", p->name,
           (long long)status, sig, p->backoff_ms);
  uv_timer_start(&p->timer, timer_cb, p->backoff_ms, 0);
  p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
}

static void spawn(struct child_proc *p) {
  char ppid[32];
  snprintf(ppid, sizeof ppid, "%d", (int)uv_os_getpid());
  char *args[CHILD_PROC_ARGS + 5] = {p->exe, "_exec-child", ppid, "--"};
  for (int i = 0; p->argv[i]; i++)
    args[4 + i] = p->argv[i];
  char **env = child_env(0);
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2}, {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t po = {.file = p->exe,
                             .args = args,
                             .env = env,
                             .stdio = stdio,
                             .stdio_count = 3,
                             .exit_cb = exit_cb,
                             .flags = UV_PROCESS_DETACHED};
  p->proc.data = p;
  p->started_ns = clock_mono_ns();
  int rc = uv_spawn(p->loop, &p->proc, &po);
  child_env_free(env);
  p->proc_open = true;
  p->handles++;
  if (rc != 0) {
    log_error("cannot start helper process", "name=%s exe=%s err=\"%s\"", p->name, p->argv[0],
              uv_strerror(rc));
    uv_close((uv_handle_t *)&p->proc, handle_closed_cb);
    uv_timer_start(&p->timer, timer_cb, BACKOFF_MAX_MS, 0);
    return;
  }
  p->running = true;
  p->pid = p->proc.pid;
  log_info("helper process started", "name=%s pid=%d exe=%s", p->name, p->pid, p->argv[0]);
}

struct child_proc *child_proc_start(uv_loop_t *loop, const char *name, char *const argv[]) {
  struct child_proc *p = xcalloc(1, sizeof *p);
  p->loop = loop;
  str_copy(p->name, sizeof p->name, name);
  for (int i = 0; argv[i] && i < CHILD_PROC_ARGS; i++) {
    size_t n = strlen(argv[i]) + 1;
    p->argv[i] = memcpy(xmalloc(n), argv[i], n);
  }
  size_t n = sizeof p->exe;
  if (uv_exepath(p->exe, &n) != 0) str_copy(p->exe, sizeof p->exe, "/proc/self/exe");
  p->backoff_ms = BACKOFF_MIN_MS;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  p->handles = 1;
  spawn(p);
  return p;
}

bool child_proc_running(const struct child_proc *p, int *pid) {
  if (pid) *pid = p->pid;
  return p->running;
}

void child_proc_stop(struct child_proc *p, void (*closed_cb)(void *arg), void *arg) {
  child_proc_stop_within(p, STOP_GRACE_MS, closed_cb, arg);
}

void child_proc_stop_within(struct child_proc *p, uint32_t grace_ms, void (*closed_cb)(void *arg),
                            void *arg) {
  p->stopping = true;
  p->closed_cb = closed_cb;
  p->closed_arg = arg;
  uv_timer_stop(&p->timer);
  if (!p->running) {
    uv_close((uv_handle_t *)&p->timer, handle_closed_cb);
    return;
  }
  kill(-p->pid, grace_ms ? SIGTERM : SIGKILL);
  uv_timer_start(&p->timer, timer_cb, grace_ms, 0);
}
