/* The rpc-server capacity this node offers: free memory, leases, the supervised rpc-server (see
 * rpc_worker.h).
 */
#include "agent/rpc_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/child_proc.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"

struct rpc_worker {
  uv_loop_t *loop;
  char bin[512];
  int port;
  uint64_t mem_mb;               /* announced */
  char holder[64];               /* the host holding it, "" = free */
  uint8_t holder_id[RPC_ID_LEN]; /* its node id */
  struct child_proc *proc;       /* the rpc-server, while held */
  uv_timer_t timer;              /* re-reads the free memory */
  int parts;                     /* what is still on the loop: the timer, and rpc-servers being stopped */
  bool stopping;
  void (*closed_cb)(void *);
  void *closed_arg;
};

/* MemAvailable from /proc/meminfo, in MiB (0 when unreadable). A procfs read does not block on a disk. */
static uint64_t mem_available_mb(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[128];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb / 1024;
}

bool rpc_worker_mem_moved(uint64_t announced_mb, uint64_t now_mb) {
  uint64_t diff = announced_mb > now_mb ? announced_mb - now_mb : now_mb - announced_mb;
  uint64_t step = announced_mb * RPC_MEM_STEP_PCT / 100;
  return diff >= (step > RPC_MEM_STEP_MB ? step : RPC_MEM_STEP_MB);
}

static void mem_cb(uv_timer_t *t) {
  struct rpc_worker *w = t->data;
  uint64_t now = mem_available_mb();
  if (!rpc_worker_mem_moved(w->mem_mb, now)) return;
  log_info("rpc worker: free memory changed", "from_mb=%llu to_mb=%llu", (unsigned long long)w->mem_mb,
           (unsigned long long)now);
  w->mem_mb = now;
}

int rpc_worker_start(struct rpc_worker **out, uv_loop_t *loop, const char *bin, int port, char *err,
                     size_t errlen) {
  if (!bin[0] || access(bin, X_OK) != 0 || port <= 0 || port > 65535) {
    snprintf(err, errlen, "rpc worker: '%s' is not an executable rpc-server, or port %d is not 1-65535", bin,
             port);
    return -EINVAL;
  }
  struct rpc_worker *w = xcalloc(1, sizeof *w);
  w->loop = loop;
  str_copy(w->bin, sizeof w->bin, bin);
  w->port = port;
  w->mem_mb = mem_available_mb();
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->parts = 1;
  uv_timer_start(&w->timer, mem_cb, RPC_MEM_MS, RPC_MEM_MS);
  log_info("rpc worker: offering an rpc-server to split hosts", "port=%d mem_mb=%llu", port,
           (unsigned long long)w->mem_mb);
  *out = w;
  return 0;
}

static void part_done(struct rpc_worker *w) {
  if (--w->parts > 0 || !w->stopping) return;
  void (*cb)(void *) = w->closed_cb;
  void *arg = w->closed_arg;
  free(w);
  if (cb) cb(arg);
}

static void proc_closed_cb(void *arg) { part_done(arg); }

int rpc_worker_lease(struct rpc_worker *w, const char *host, const uint8_t *id, char *holder, size_t cap) {
  if (w->holder[0] && (strcmp(w->holder, host) != 0 || memcmp(w->holder_id, id, RPC_ID_LEN) != 0)) {
    str_copy(holder, cap, w->holder);
    return -EBUSY;
  }
  if (!w->holder[0]) log_info("rpc worker: leased", "host=%s port=%d", host, w->port);
  str_copy(w->holder, sizeof w->holder, host);
  memcpy(w->holder_id, id, RPC_ID_LEN);
  if (!w->proc) {
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", w->port);
    char *argv[] = {w->bin, "-H", "127.0.0.1", "-p", pstr, NULL};
    w->proc = child_proc_start(w->loop, "rpc-server", argv);
  }
  return 0;
}

int rpc_worker_release(struct rpc_worker *w, const char *host, const uint8_t *id, const char *why) {
  if (!w->holder[0] || strcmp(w->holder, host) != 0 || (id && memcmp(w->holder_id, id, RPC_ID_LEN) != 0))
    return -ENOENT;
  log_info("rpc worker: released; stopping the rpc-server", "host=%s why=\"%s\"", host, why);
  w->holder[0] = '\0';
  if (w->proc) {
    w->parts++;
    child_proc_stop(w->proc, proc_closed_cb, w);
    w->proc = NULL;
  }
  return 0;
}

const char *rpc_worker_holder(const struct rpc_worker *w) { return w->holder; }

const uint8_t *rpc_worker_holder_id(const struct rpc_worker *w) { return w->holder_id; }

uint64_t rpc_worker_mem_mb(const struct rpc_worker *w) { return w->mem_mb; }

bool rpc_worker_running(const struct rpc_worker *w) { return w->proc && child_proc_running(w->proc, NULL); }

int rpc_worker_port(const struct rpc_worker *w) { return w->port; }

static void timer_closed_cb(uv_handle_t *h) { part_done(h->data); }

void rpc_worker_stop(struct rpc_worker *w, void (*closed_cb)(void *arg), void *arg) {
  w->closed_cb = closed_cb;
  w->closed_arg = arg;
  w->stopping = true;
  if (w->holder[0]) rpc_worker_release(w, w->holder, NULL, "the agent stops");
  uv_close((uv_handle_t *)&w->timer, timer_closed_cb);
}
