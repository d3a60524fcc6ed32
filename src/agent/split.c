/* A split model's host side: lease rpc workers through their agents, forward to them through the tunnel, run
 * llama-server over them (see split.h). */
#include "agent/split.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/child_proc.h"
#include "agent/mesh.h"
#include "agent/rpc_lease.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"
#include "tunnel/tunnel.h"

#define TICK_MS 200
#define SPLIT_MAX 16 /* workers one split uses at most */
#define PROBES_MAX                                                                                           \
  50 /* ticks a leased rpc-server has to accept a stream before the pick goes on without it */

/* One worker of the current pick: leased (call in flight), then probed until its rpc-server accepts a stream
 * (dial), then forwarded to while the llama-server runs (fw). */
struct lease {
  struct split *s;
  char name[64];
  uint8_t id[32];
  int port;                    /* the rpc-server's, once the worker's agent agreed; 0 before */
  bool ready;                  /* a stream to it opened */
  int probes;                  /* readiness probes made */
  struct rpc_lease_call *call; /* the lease call in flight */
  struct tunnel_dial *dial;    /* the readiness probe in flight */
  struct tunnel_forward *fw;
};

/* A release of a worker no longer used, in flight. */
struct release {
  struct split *s;
  struct rpc_lease_call *call;
};

struct split {
  uv_loop_t *loop;
  struct mesh *mesh;
  struct store *store;
  int tid;
  int want;
  uint64_t need_mb; /* free memory a worker needs: the model file's size over the workers wanted */
  char exec[1024];
  uv_timer_t timer;
  struct child_proc *proc; /* the llama-server, while running */
  bool restarting;         /* proc is being stopped: pick again once it is gone */
  int waiting_logged; /* 1 + what the last "waiting" line said (busy and small workers), 0 = none since */
  bool picked;        /* lease[] is a pick still settling (else: the llama-server's, or the last's) */
  struct lease lease[SPLIT_MAX];
  int nlease;
  struct release release[SPLIT_MAX];
  char shunned[64]; /* a worker whose stream failed: left out of the next pick when another one is there */
  void (*closed_cb)(void *);
  void *closed_arg;
  bool stopping;
  int parts; /* while stopping: the timer and the llama-server */
};

static void close_forwards(struct split *s) {
  for (int i = 0; i < s->nlease; i++) {
    if (s->lease[i].fw) tunnel_forward_close(s->lease[i].fw);
    s->lease[i].fw = NULL;
  }
}

/* cancel_calls abandons every lease, release and probe in flight. */
static void cancel_calls(struct split *s) {
  for (int i = 0; i < s->nlease; i++) {
    struct lease *l = &s->lease[i];
    if (l->call) rpc_lease_cancel(l->call);
    if (l->dial) tunnel_dial_cancel(l->dial);
    l->call = NULL, l->dial = NULL;
  }
  for (int i = 0; i < SPLIT_MAX; i++)
    if (s->release[i].call) rpc_lease_cancel(s->release[i].call), s->release[i].call = NULL;
}

static void part_done(struct split *s);

static void proc_stopped_cb(void *arg) {
  struct split *s = arg;
  s->proc = NULL;
  s->restarting = false;
  if (s->stopping) part_done(s);
}

/* build_argv writes exec with {rpc} replaced by rpc into line and splits it on blanks into argv. */
static int build_argv(const char *exec, const char *rpc, char *line, size_t cap,
                      char *argv[CHILD_PROC_ARGS + 1]) {
  const char *at = strstr(exec, "{rpc}");
  int n = snprintf(line, cap, "%.*s%s%s", (int)(at - exec), exec, rpc, at + 5);
  if (n < 0 || (size_t)n >= cap) return -EINVAL;
  int argc = 0;
  for (char *p = line; *p && argc < CHILD_PROC_ARGS;) {
    while (*p == ' ' || *p == '\t' || *p == '\n')
      *p++ = '\0';
    if (!*p) break;
    argv[argc++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n')
      p++;
  }
  argv[argc] = NULL;
  return argc > 0 ? 0 : -EINVAL;
}

/* model_mb is the size of the file after -m or --model in exec, in MiB rounded up (0 when there is none). */
static uint64_t model_mb(const char *exec) {
  char line[1024], *argv[CHILD_PROC_ARGS + 1];
  struct stat st;
  if (build_argv(exec, "", line, sizeof line, argv) != 0) return 0;
  for (int i = 0; argv[i] && argv[i + 1]; i++)
    if ((strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) && stat(argv[i + 1], &st) == 0)
      return ((uint64_t)st.st_size + (1u << 20) - 1) >> 20;
  return 0;
}

static void lost_cb(void *arg, int err);

/* start_server runs the llama-server over the workers whose rpc-servers are ready; the others are dropped. */
static void start_server(struct split *s) {
  char rpc[SPLIT_MAX * 24] = "", line[2048], err[256], *argv[CHILD_PROC_ARGS + 1];
  char names[SPLIT_MAX * 66] = "";
  size_t off = 0, noff = 0;
  int k = 0;
  for (int i = 0; i < s->nlease; i++) {
    struct lease l = s->lease[i];
    if (!l.ready) continue;
    if (tunnel_forward_start(&l.fw, mesh_tunnel(s->mesh), "127.0.0.1", 0, l.name, l.port, err, sizeof err) !=
        0) {
      log_warn("split: cannot forward to a worker", "worker=%s err=\"%s\"", l.name, err);
      continue;
    }
    s->lease[k] = l;
    tunnel_forward_on_lost(l.fw, lost_cb, &s->lease[k]);
    k++;
    off += (size_t)snprintf(rpc + off, sizeof rpc - off, "%s127.0.0.1:%d", off ? "," : "",
                            tunnel_forward_port(l.fw));
    noff += (size_t)snprintf(names + noff, sizeof names - noff, "%s%s", noff ? "," : "", l.name);
  }
  s->nlease = k;
  if (!k) return;
  if (build_argv(s->exec, rpc, line, sizeof line, argv) != 0) {
    log_error("split: the command is too long with its workers", "rpc=%s", rpc);
    close_forwards(s);
    return;
  }
  log_info("split: starting llama-server over rpc workers", "target=%s workers=%s rpc=%s",
           s->store->targets[s->tid].name, names, rpc);
  s->proc = child_proc_start(s->loop, "llama-server (split)", argv);
  s->waiting_logged = 0;
}

/* restart takes the target down and stops the llama-server; the next tick picks workers again. */
static void restart(struct split *s, const char *worker, const char *why) {
  char reason[160];
  snprintf(reason, sizeof reason, "rpc worker %s %s", worker, why);
  log_warn("split: a worker is gone: restarting without it", "target=%s worker=%s why=\"%s\"",
           s->store->targets[s->tid].name, worker, why);
  store_mark_down(s->store, s->tid, reason);
  s->restarting = true;
  close_forwards(s);
  child_proc_stop_within(s->proc, 0, proc_stopped_cb, s); /* its layers are gone: it cannot serve */
}

/* A stream to a chosen worker failed: its rpc-server or its node went away (membership may take seconds to
 * agree). An rpc-server never ends a connection of a running llama-server itself, so a stream the worker's
 * side ended first (-EPIPE) means its rpc-server exited (the worker restarts it): the llama-server's layers
 * there are gone even though nothing asked it anything yet. The target is down now, and the next pick leaves
 * that worker out if it can. */
static void lost_cb(void *arg, int err) {
  struct lease *l = arg;
  struct split *s = l->s;
  if (!s->proc || s->restarting || s->stopping) return;
  str_copy(s->shunned, sizeof s->shunned, l->name);
  restart(s, l->name,
          err == -EPIPE ? "ended the stream (its rpc-server exited)"
          : err         ? "refused the stream"
                        : "cut the stream");
}

static void release_cb(void *arg, int status, int port, const char *msg) {
  struct release *r = arg;
  r->call = NULL;
}

/* release_unused gives back the workers of the last pick that the new pick w[0, n) leaves out. */
static void release_unused(struct split *s, const struct mesh_rpc_worker *w, int n) {
  for (int i = 0; i < s->nlease; i++) {
    bool kept = false;
    for (int k = 0; k < n && !kept; k++)
      kept = strcmp(w[k].name, s->lease[i].name) == 0;
    if (kept || !s->lease[i].port) continue;
    for (int r = 0; r < SPLIT_MAX; r++) {
      if (s->release[r].call) continue;
      s->release[r].s = s;
      s->release[r].call =
          rpc_lease_send(s->loop, s->mesh, s->lease[i].name, "release", release_cb, &s->release[r]);
      if (s->release[r].call) log_info("split: releasing a worker", "worker=%s", s->lease[i].name);
      break;
    }
  }
}

static void lease_cb(void *arg, int status, int port, const char *msg) {
  struct lease *l = arg;
  l->call = NULL;
  if (status == 200 && port > 0) {
    l->port = port;
    return;
  }
  log_warn("split: a worker did not lend its rpc-server", "worker=%s status=%d msg=\"%s\"", l->name, status,
           msg);
  str_copy(l->s->shunned, sizeof l->s->shunned, l->name);
}

static void probe_cb(void *arg, int status, uv_os_sock_t fd) {
  struct lease *l = arg;
  l->dial = NULL;
  if (status != 0) return; /* not listening yet: the next tick probes again */
  close(fd);
  l->ready = true;
}

/* pick chooses up to want workers among w[0, nw) (most free memory first): free or held by this node, with
 * the memory the model's share needs, the shunned one left out while another is there; it releases the last
 * pick's others and asks the chosen ones' agents to lend their rpc-servers. */
static void pick(struct split *s, struct mesh_rpc_worker *w, int nw) {
  const char *self = mesh_node_name(s->mesh);
  int k = 0, busy = 0, small = 0;
  for (int i = 0; i < nw; i++) {
    if (w[i].holder[0] && strcmp(w[i].holder, self) != 0)
      busy++;
    else if (w[i].mem_mb < s->need_mb)
      small++;
    else
      w[k++] = w[i];
  }
  if (s->shunned[0] && k > 1) {
    int j = 0;
    for (int i = 0; i < k; i++)
      if (strcmp(w[i].name, s->shunned) != 0) w[j++] = w[i];
    k = j;
  }
  s->shunned[0] = '\0';
  if (k > s->want) k = s->want;
  release_unused(s, w, k);
  s->nlease = 0;
  if (k == 0) {
    int said = 1 + busy * SPLIT_MAX + small;
    if (s->waiting_logged != said)
      log_info("split: waiting for rpc workers (members started with --rpc-server)",
               "target=%s held_by_other_hosts=%d too_little_memory=%d need_mb=%llu",
               s->store->targets[s->tid].name, busy, small, (unsigned long long)s->need_mb);
    s->waiting_logged = said;
    return;
  }
  for (int i = 0; i < k; i++) {
    struct lease *l = &s->lease[s->nlease];
    bool is_self;
    *l = (struct lease){.s = s};
    str_copy(l->name, sizeof l->name, w[i].name);
    if (!mesh_find_node(s->mesh, l->name, &is_self, l->id)) continue;
    l->call = rpc_lease_send(s->loop, s->mesh, l->name, "lease", lease_cb, l);
    if (l->call) s->nlease++;
  }
  s->picked = s->nlease > 0;
}

/* settle advances the leases of a pick: probes the leased rpc-servers until they accept a stream, and starts
 * the llama-server once every lease has settled (some may have been refused). */
static void settle(struct split *s) {
  bool pending = false, any = false;
  for (int i = 0; i < s->nlease; i++) {
    struct lease *l = &s->lease[i];
    if (l->call || l->dial) {
      pending = true;
    } else if (l->port && !l->ready && l->probes++ < PROBES_MAX) {
      l->dial = tunnel_dial(mesh_tunnel(s->mesh), l->id, l->port, probe_cb, l);
      pending = true;
    } else if (l->port && !l->ready) {
      log_warn("split: a leased rpc-server never accepted a stream", "worker=%s port=%d", l->name, l->port);
      str_copy(s->shunned, sizeof s->shunned, l->name);
    }
    any |= l->ready;
  }
  if (pending) return;
  s->picked = false;
  if (any) start_server(s);
}

static void tick_cb(uv_timer_t *t) {
  struct split *s = t->data;
  struct mesh_rpc_worker w[SPLIT_MAX];
  if (s->restarting) return;
  int nw = mesh_rpc_workers(s->mesh, w, SPLIT_MAX);
  if (s->proc) {
    for (int i = 0; i < s->nlease; i++) {
      bool there = false;
      for (int k = 0; k < nw && !there; k++)
        there = strcmp(w[k].name, s->lease[i].name) == 0;
      if (there) continue;
      restart(s, s->lease[i].name, "left the mesh");
      return;
    }
    return;
  }
  if (s->picked)
    settle(s);
  else
    pick(s, w, nw);
}

int split_start(struct split **out, uv_loop_t *loop, struct mesh *mesh, struct store *store, int nlocal,
                const struct config_cluster *cc, char *err, size_t errlen) {
  int tid = -1;
  for (int i = 0; i < nlocal && tid < 0; i++)
    if (strcmp(store->targets[i].name, cc->split_target) == 0) tid = i;
  if (tid < 0 || !strstr(cc->split_exec, "{rpc}") || cc->split_workers < 0 || cc->split_workers > SPLIT_MAX) {
    snprintf(err, errlen,
             "split model: needs --target %s=URL (a runtime of this node), --split-exec with {rpc} "
             "where the workers' addresses go, and --split-workers 1-%d",
             cc->split_target, SPLIT_MAX);
    return -EINVAL;
  }
  struct split *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->mesh = mesh;
  s->store = store;
  s->tid = tid;
  s->want = cc->split_workers ? cc->split_workers : 1;
  str_copy(s->exec, sizeof s->exec, cc->split_exec);
  uint64_t mb = model_mb(s->exec);
  s->need_mb = (mb + (uint64_t)s->want - 1) / (uint64_t)s->want;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, tick_cb, 0, TICK_MS);
  *out = s;
  return 0;
}

static void part_done(struct split *s) {
  if (--s->parts > 0) return;
  void (*cb)(void *) = s->closed_cb;
  void *arg = s->closed_arg;
  free(s);
  if (cb) cb(arg);
}

static void timer_closed_cb(uv_handle_t *h) { part_done(h->data); }

void split_stop(struct split *s, void (*closed_cb)(void *arg), void *arg) {
  s->closed_cb = closed_cb;
  s->closed_arg = arg;
  s->stopping = true;
  s->parts = 1 + (s->proc != NULL); /* a restart's stop already under way ends in proc_stopped_cb too */
  cancel_calls(s);
  close_forwards(s);
  uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
  if (s->proc && !s->restarting) child_proc_stop(s->proc, proc_stopped_cb, s);
}
