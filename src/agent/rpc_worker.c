/* A supervised llama.cpp rpc-server offered to the mesh (see rpc_worker.h). */
#include "agent/rpc_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/child_proc.h"
#include "core/alloc.h"

struct rpc_worker {
  struct child_proc *proc;
  int port;
  uint64_t mem_mb;
  void (*closed_cb)(void *);
  void *closed_arg;
};

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

int rpc_worker_start(struct rpc_worker **out, uv_loop_t *loop, const char *bin, int port, char *err,
                     size_t errlen) {
  if (!bin[0] || access(bin, X_OK) != 0 || port <= 0 || port > 65535) {
    snprintf(err, errlen, "rpc worker: '%s' is not an executable rpc-server, or port %d is not 1-65535", bin,
             port);
    return -EINVAL;
  }
  struct rpc_worker *w = xcalloc(1, sizeof *w);
  char pstr[16];
  snprintf(pstr, sizeof pstr, "%d", port);
  char *argv[] = {(char *)bin, "-H", "127.0.0.1", "-p", pstr, NULL};
  w->port = port;
  w->mem_mb = mem_available_mb();
  w->proc = child_proc_start(loop, "rpc-server", argv);
  *out = w;
  return 0;
}

bool rpc_worker_up(const struct rpc_worker *w, uint64_t *mem_mb) {
  *mem_mb = w->mem_mb;
  return child_proc_running(w->proc, NULL);
}

int rpc_worker_port(const struct rpc_worker *w) { return w->port; }

static void proc_closed_cb(void *arg) {
  struct rpc_worker *w = arg;
  void (*cb)(void *) = w->closed_cb;
  void *cbarg = w->closed_arg;
  free(w);
  if (cb) cb(cbarg);
}

void rpc_worker_stop(struct rpc_worker *w, void (*closed_cb)(void *arg), void *arg) {
  w->closed_cb = closed_cb;
  w->closed_arg = arg;
  child_proc_stop(w->proc, proc_closed_cb, w);
}
