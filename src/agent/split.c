/* A split model's host side: pick rpc workers, forward to them through the tunnel, run llama-server over them
 * (see split.h). */
#include "agent/split.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/child_proc.h"
#include "agent/mesh.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"
#include "tunnel/tunnel.h"

#define TICK_MS 200
#define SPLIT_MAX 16 /* workers one split uses at most */

struct split {
  uv_loop_t *loop;
  struct mesh *mesh;
  struct store *store;
  int tid;
  int want;
  char exec[1024];
  uv_timer_t timer;
  struct child_proc *proc; /* the llama-server, while running */
  bool restarting;         /* proc is being stopped: pick again once it is gone */
  bool waiting_logged;
  struct chosen {
    struct split *s;
    char name[64];
    struct tunnel_forward *fw;
  } chosen[SPLIT_MAX];
  int nchosen;
  char shunned[64]; /* a worker whose stream failed: left out of the next pick when another one is there */
  void (*closed_cb)(void *);
  void *closed_arg;
  bool stopping;
  int parts; /* while stopping: the timer and the llama-server */
};

static void close_forwards(struct split *s) {
  for (int i = 0; i < s->nchosen; i++)
    tunnel_forward_close(s->chosen[i].fw);
  s->nchosen = 0;
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

static void lost_cb(void *arg, int err);

static void start_server(struct split *s, const struct mesh_rpc_worker *w, int nw) {
  char rpc[SPLIT_MAX * 24] = "", line[2048], err[256], *argv[CHILD_PROC_ARGS + 1];
  size_t off = 0;
  for (int i = 0; i < nw && s->nchosen < s->want; i++) {
    struct tunnel_forward *fw;
    if (tunnel_forward_start(&fw, mesh_tunnel(s->mesh), "127.0.0.1", 0, w[i].name, w[i].port, err,
                             sizeof err) != 0) {
      log_warn("split: cannot forward to a worker", "worker=%s err=\"%s\"", w[i].name, err);
      continue;
    }
    struct chosen *ch = &s->chosen[s->nchosen++];
    ch->s = s;
    str_copy(ch->name, sizeof ch->name, w[i].name);
    ch->fw = fw;
    tunnel_forward_on_lost(fw, lost_cb, ch);
    off += (size_t)snprintf(rpc + off, sizeof rpc - off, "%s127.0.0.1:%d", off ? "," : "",
                            tunnel_forward_port(fw));
  }
  if (!s->nchosen) return;
  if (build_argv(s->exec, rpc, line, sizeof line, argv) != 0) {
    log_error("split: the command is too long with its workers", "rpc=%s", rpc);
    close_forwards(s);
    return;
  }
  char names[SPLIT_MAX * 66] = "";
  for (int i = 0, o = 0; i < s->nchosen; i++)
    o += snprintf(names + o, sizeof names - (size_t)o, "%s%s", i ? "," : "", s->chosen[i].name);
  log_info("split: starting llama-server over rpc workers", "target=%s workers=%s rpc=%s",
           s->store->targets[s->tid].name, names, rpc);
  s->proc = child_proc_start(s->loop, "llama-server (split)", argv);
  s->waiting_logged = false;
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
  child_proc_stop(s->proc, proc_stopped_cb, s);
}

/* A stream to a chosen worker failed: its rpc-server or its node went away (membership may take seconds to
 * agree): the target is down now, and the next pick leaves that worker out if it can. */
static void lost_cb(void *arg, int err) {
  struct chosen *ch = arg;
  struct split *s = ch->s;
  if (!s->proc || s->restarting || s->stopping) return;
  str_copy(s->shunned, sizeof s->shunned, ch->name);
  restart(s, ch->name, err ? "refused the stream" : "cut the stream");
}

static void tick_cb(uv_timer_t *t) {
  struct split *s = t->data;
  struct mesh_rpc_worker w[SPLIT_MAX];
  if (s->restarting) return;
  int nw = mesh_rpc_workers(s->mesh, w, SPLIT_MAX);
  if (s->proc) {
    for (int i = 0; i < s->nchosen; i++) {
      bool there = false;
      for (int k = 0; k < nw && !there; k++)
        there = strcmp(w[k].name, s->chosen[i].name) == 0;
      if (there) continue;
      restart(s, s->chosen[i].name, "left the mesh");
      return;
    }
    return;
  }
  if (s->shunned[0] && nw > 1) { /* leave the shunned worker out while another one is there */
    int k = 0;
    for (int i = 0; i < nw; i++)
      if (strcmp(w[i].name, s->shunned) != 0) w[k++] = w[i];
    nw = k;
  }
  s->shunned[0] = '\0';
  if (nw == 0) {
    if (!s->waiting_logged)
      log_info("split: waiting for rpc workers (members started with --rpc-server)", "target=%s",
               s->store->targets[s->tid].name);
    s->waiting_logged = true;
    return;
  }
  start_server(s, w, nw);
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
  close_forwards(s);
  uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
  if (s->proc && !s->restarting) child_proc_stop(s->proc, proc_stopped_cb, s);
}
