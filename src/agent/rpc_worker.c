/* A supervised llama.cpp rpc-server offered to the mesh (see rpc_worker.h). */
#include "agent/rpc_worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/child_env.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slice.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define STABLE_MS 60000 /* up this long: the next exit starts the backoff over */
#define STOP_GRACE_MS 2000

struct rpc_worker {
  uv_loop_t *loop;
  char bin[1024], exe[1024];
  int port;
  uv_process_t proc;
  uv_timer_t timer; /* restart backoff, or the stop grace */
  bool running, proc_open, stopping;
  uint32_t backoff_ms;
  uint64_t started_ns, mem_mb;
  int handles;
  void (*closed_cb)(void *);
  void *closed_arg;
};

static void spawn(struct rpc_worker *w);

/* MemAvailable from /proc/meminfo, in MiB (0 when unreadable). */
static uint64_t mem_available_mb(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[128];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb / 1024;
}

/* Handles: the timer always, the process from its spawn until its close completed; w goes with the last. */
static void handle_closed_cb(uv_handle_t *h) {
  struct rpc_worker *w = h->data;
  if (h == (uv_handle_t *)&w->proc) w->proc_open = false;
  if (--w->handles > 0) return;
  void (*cb)(void *) = w->closed_cb;
  void *arg = w->closed_arg;
  free(w);
  if (cb) cb(arg);
}

static void restart_cb(uv_timer_t *t) {
  struct rpc_worker *w = t->data;
  if (w->stopping) { /* the stop grace ran out: the group goes */
    if (w->running) kill(-w->proc.pid, SIGKILL);
    return;
  }
  if (w->proc_open) { /* the last process's handle is still closing */
    uv_timer_start(&w->timer, restart_cb, 50, 0);
    return;
  }
  spawn(w);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct rpc_worker *w = p->data;
  w->running = false;
  kill(-p->pid, SIGKILL); /* leftovers of the group would hold the port */
  uv_close((uv_handle_t *)p, handle_closed_cb);
  if (w->stopping) {
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, handle_closed_cb);
    return;
  }
  if (clock_mono_ns() - w->started_ns > (uint64_t)STABLE_MS * 1000000u) w->backoff_ms = BACKOFF_MIN_MS;
  log_warn("rpc-server exited; restarting", "port=%d status=%lld signal=%d restart_in_ms=%u", w->port,
           (long long)status, sig, w->backoff_ms);
  uv_timer_start(&w->timer, restart_cb, w->backoff_ms, 0);
  w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void spawn(struct rpc_worker *w) {
  char ppid[32], port[16];
  snprintf(ppid, sizeof ppid, "%d", (int)uv_os_getpid());
  snprintf(port, sizeof port, "%d", w->port);
  char *args[] = {w->exe, "_exec-child", ppid, "--", w->bin, "-H", "127.0.0.1", "-p", port, NULL};
  char **env = child_env(0);
  uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t po = {.file = w->exe, .args = args, .env = env, .stdio = stdio, .stdio_count = 3,
                             .exit_cb = exit_cb, .flags = UV_PROCESS_DETACHED};
  w->proc.data = w;
  w->started_ns = clock_mono_ns();
  int rc = uv_spawn(w->loop, &w->proc, &po);
  child_env_free(env);
  w->proc_open = true;
  w->handles++;
  if (rc != 0) {
    log_error("cannot start rpc-server", "bin=%s err=\"%s\"", w->bin, uv_strerror(rc));
    uv_close((uv_handle_t *)&w->proc, handle_closed_cb);
    uv_timer_start(&w->timer, restart_cb, BACKOFF_MAX_MS, 0);
    return;
  }
  w->running = true;
  w->mem_mb = mem_available_mb();
  log_info("rpc-server started", "pid=%d listen=127.0.0.1:%d mem_available_mb=%llu", w->proc.pid, w->port,
           (unsigned long long)w->mem_mb);
}

int rpc_worker_start(struct rpc_worker **out, uv_loop_t *loop, const char *bin, int port, char *err, size_t errlen) {
  if (!bin[0] || access(bin, X_OK) != 0 || port <= 0 || port > 65535) {
    snprintf(err, errlen, "rpc worker: '%s' is not an executable rpc-server, or port %d is not 1-65535", bin, port);
    return -EINVAL;
  }
  struct rpc_worker *w = xcalloc(1, sizeof *w);
  w->loop = loop;
  str_copy(w->bin, sizeof w->bin, bin);
  size_t n = sizeof w->exe;
  if (uv_exepath(w->exe, &n) != 0) str_copy(w->exe, sizeof w->exe, "/proc/self/exe");
  w->port = port;
  w->backoff_ms = BACKOFF_MIN_MS;
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->handles = 1;
  spawn(w);
  *out = w;
  return 0;
}

bool rpc_worker_up(const struct rpc_worker *w, uint64_t *mem_mb) {
  *mem_mb = w->mem_mb;
  return w->running;
}

int rpc_worker_port(const struct rpc_worker *w) { return w->port; }

void rpc_worker_stop(struct rpc_worker *w, void (*closed_cb)(void *arg), void *arg) {
  w->stopping = true;
  w->closed_cb = closed_cb;
  w->closed_arg = arg;
  uv_timer_stop(&w->timer);
  if (!w->running) {
    uv_close((uv_handle_t *)&w->timer, handle_closed_cb);
    return;
  }
  kill(-w->proc.pid, SIGTERM);
  uv_timer_start(&w->timer, restart_cb, STOP_GRACE_MS, 0);
}
