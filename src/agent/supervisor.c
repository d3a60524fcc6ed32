/* Runtime supervisor: spawn under the _exec-child helper, capture output, wait for health, restart, stop. */
#include "agent/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/child_env.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rng.h"

#define HEALTH_POLL_MS 200
#define WAIT_POLL_MS 100
#define PIPE_LINGER_MS 1000
#define ABANDON_MS 5000
#define MAX_EXITS SUP_CRASH_LOOP_MAX
#define LINE_MAX_BYTES 4096

struct supervisor;

/* What a runtime's process is doing (struct status_proc in api/status.h has the words). */
enum sup_state { ST_STARTING, ST_RUNNING, ST_STOPPING, ST_BACKOFF, ST_CRASH_LOOP, ST_STOPPED };
static const char *const state_names[] = {"starting", "running", "stopping", "backoff", "crash_loop", "stopped"};

struct sup_rt {
  struct supervisor *s;
  int id; /* store target id */
  const char *name;
  const char *cmd; /* as configured, borrowed from the config */
  char **argv;     /* the command (direct) or {"/bin/sh", "-c", cmd} */
  bool shell;
  uv_process_t proc;
  bool proc_open, running, healthy, health_timed_out, crash_loop;
  int pid;
  int npipes; /* output pipes of the current or previous incarnation still open */
  struct outpipe *pipes[2];
  uv_timer_t health_timer, restart_timer, kill_timer;
  uint64_t start_ns;
  uint32_t next_progress_s;
  uint64_t exits[MAX_EXITS]; /* monotonic ns of recent exits, ring */
  int nexit;
  int restarts;
  enum sup_state state;
  uint64_t state_ns;   /* when it entered state */
  uint64_t restart_ns; /* when the restart timer fires (backoff, crash loop) */
  bool exited;         /* the last exit: */
  long long exit_status;
  int exit_signal;
  uint64_t exit_ns;
};

struct outpipe {
  uv_pipe_t pipe;
  struct sup_rt *rt;
  const char *stream;
  char line[LINE_MAX_BYTES];
  size_t len;
  int slot;
};

struct supervisor {
  uv_loop_t *loop;
  struct store *store;
  const struct agent_config *cfg;
  const char *exe;
  struct sup_rt *rts;
  int nrts;
  struct rng rng;
  int live; /* open handles */
  uv_timer_t wait_timer;
  bool stopping, signalled, closing;
  uint64_t stop_ns;
  uint32_t wait_ms;
  void (*stopped_cb)(void *arg);
  void *stopped_arg;
};

static void start_rt(struct sup_rt *rt);
static void check_done(struct supervisor *s);

static void set_state(struct sup_rt *rt, enum sup_state st) {
  if (rt->state == st && rt->state_ns) return;
  rt->state = st;
  rt->state_ns = clock_mono_ns();
}

/* ---- command line ---- */

static bool needs_shell(const char *cmd) {
  if (strpbrk(cmd, "|&;<>()$`\\\"'*?[]#~{}!\n")) return true;
  /* FOO=bar cmd: an environment assignment only a shell understands */
  size_t first = strcspn(cmd + strspn(cmd, " \t"), " \t");
  const char *w = cmd + strspn(cmd, " \t");
  return memchr(w, '=', first) != NULL;
}

static char **split_argv(const char *cmd, bool *shell) {
  char **argv;
  if ((*shell = needs_shell(cmd))) {
    argv = xcalloc(4, sizeof *argv);
    argv[0] = xstrdup("/bin/sh");
    argv[1] = xstrdup("-c");
    argv[2] = xstrdup(cmd);
    return argv;
  }
  size_t n = 0, cap = 8;
  argv = xcalloc(cap, sizeof *argv);
  for (const char *p = cmd;;) {
    p += strspn(p, " \t");
    if (!*p) break;
    size_t l = strcspn(p, " \t");
    if (n + 2 > cap) argv = xrealloc(argv, (cap *= 2) * sizeof *argv);
    argv[n] = xmalloc(l + 1);
    memcpy(argv[n], p, l);
    argv[n][l] = '\0';
    n++;
    p += l;
  }
  argv[n] = NULL;
  return argv;
}

static void free_argv(char **argv) {
  for (char **a = argv; a && *a; a++)
    free(*a);
  free(argv);
}

/* ---- handle accounting ---- */

static void handle_closed_cb(uv_handle_t *h) {
  struct supervisor *s = h->data;
  s->live--;
  check_done(s);
}

static void close_handle(struct supervisor *s, uv_handle_t *h) {
  h->data = s;
  uv_close(h, handle_closed_cb);
}

/* ---- output capture ---- */

static void emit_line(struct outpipe *op) {
  char esc[LINE_MAX_BYTES * 4 + 1];
  size_t o = 0;
  for (size_t i = 0; i < op->len; i++) {
    unsigned char c = (unsigned char)op->line[i];
    if (c == '\r') continue;
    if (c == '"' || c == '\\') {
      esc[o++] = '\\';
      esc[o++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      o += (size_t)snprintf(esc + o, sizeof esc - o, "\\x%02x", c);
    } else {
      esc[o++] = (char)c;
    }
  }
  esc[o] = '\0';
  op->len = 0;
  log_info("runtime output", "runtime=%s stream=%s line=\"%s\"", op->rt->name, op->stream, esc);
}

static void pipe_closed_cb(uv_handle_t *h) {
  struct outpipe *op = h->data;
  struct sup_rt *rt = op->rt;
  struct supervisor *s = rt->s;
  if (op->len) emit_line(op);
  if (rt->pipes[op->slot] == op) rt->pipes[op->slot] = NULL;
  rt->npipes--;
  free(op);
  s->live--;
  check_done(s);
}

static void close_pipe(struct outpipe *op) {
  if (!uv_is_closing((uv_handle_t *)&op->pipe)) uv_close((uv_handle_t *)&op->pipe, pipe_closed_cb);
}

static void out_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[16384];
  (void)h, (void)suggested;
  *b = uv_buf_init(buf, sizeof buf);
}

static void out_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct outpipe *op = st->data;
  if (n < 0) {
    close_pipe(op);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char c = b->base[i];
    if (c == '\n') {
      emit_line(op);
      continue;
    }
    if (op->len == sizeof op->line) emit_line(op); /* an overlong line goes out in pieces */
    op->line[op->len++] = c;
  }
}

static struct outpipe *new_pipe(struct sup_rt *rt, int slot) {
  struct outpipe *op = xcalloc(1, sizeof *op);
  op->rt = rt;
  op->slot = slot;
  op->stream = slot == 0 ? "stdout" : "stderr";
  uv_pipe_init(rt->s->loop, &op->pipe, 0);
  op->pipe.data = op;
  rt->s->live++;
  rt->npipes++;
  rt->pipes[slot] = op;
  return op;
}

/* ---- restart policy ---- */

static int recent_exits(struct sup_rt *rt, uint64_t now) {
  uint64_t window = (uint64_t)rt->s->cfg->sup.crash_loop_window_ms * 1000000ull;
  int n = 0;
  for (int i = 0; i < rt->nexit && i < MAX_EXITS; i++)
    if (now - rt->exits[i] <= window) n++;
  return n;
}

static uint32_t backoff_for(struct sup_rt *rt, int recent) {
  const struct config_supervisor *c = &rt->s->cfg->sup;
  uint64_t d = c->backoff_ms;
  for (int i = 1; i < recent && d < c->backoff_max_ms; i++)
    d *= 2;
  if (d > c->backoff_max_ms || recent >= c->crash_loop_restarts) d = c->backoff_max_ms;
  double j = 0.8 + 0.4 * rng_unit(&rt->s->rng); /* jitter: restarts of many runtimes do not line up */
  return (uint32_t)((double)d * j);
}

/* ---- process lifecycle ---- */

/* SIGKILL goes to the whole group (a shell's children, a runtime's workers); other signals go to the helper,
 * which forwards them to the group once. */
static void kill_group(struct sup_rt *rt, int sig) {
  if (rt->pid <= 0) return;
  if (sig != SIGKILL) {
    if (rt->running) uv_kill(rt->pid, sig);
  } else if (uv_kill(-rt->pid, sig) != 0 && rt->running) {
    uv_kill(rt->pid, sig);
  }
}

static void close_pipes(struct sup_rt *rt);

static void linger_cb(uv_timer_t *t) { close_pipes(t->data); }

static void proc_closed_cb(uv_handle_t *h) {
  struct sup_rt *rt = h->data;
  rt->proc_open = false;
  rt->s->live--;
  check_done(rt->s);
}

static void restart_cb(uv_timer_t *t) {
  struct sup_rt *rt = t->data;
  if (rt->s->stopping) return;
  if (rt->proc_open) { /* the previous handle is still closing */
    uv_timer_start(&rt->restart_timer, restart_cb, 10, 0);
    return;
  }
  rt->restarts++;
  start_rt(rt);
}

static void exited(struct sup_rt *rt, int64_t status, int sig) {
  struct supervisor *s = rt->s;
  uint64_t now = clock_mono_ns();
  char why[128];
  uv_timer_stop(&rt->health_timer);
  uv_timer_stop(&rt->kill_timer);
  rt->running = false;
  kill_group(rt, SIGKILL); /* leftovers of the group must not hold the port or the GPU */
  rt->healthy = false;
  rt->exited = true;
  rt->exit_status = (long long)status;
  rt->exit_signal = sig;
  rt->exit_ns = now;
  snprintf(why, sizeof why, "runtime process exited (status %lld, signal %d)", (long long)status, sig);
  store_mark_down(s->store, rt->id, why);
  if (s->stopping) {
    log_info("runtime stopped", "runtime=%s pid=%d status=%lld signal=%d", rt->name, rt->pid,
             (long long)status, sig);
    rt->pid = 0;
    set_state(rt, ST_STOPPED);
    rt->kill_timer.data = rt;
    uv_timer_start(&rt->kill_timer, linger_cb, PIPE_LINGER_MS, 0);
    check_done(s);
    return;
  }
  rt->pid = 0;
  rt->exits[rt->nexit++ % MAX_EXITS] = now;
  int recent = recent_exits(rt, now);
  uint32_t delay = backoff_for(rt, recent);
  if (recent >= s->cfg->sup.crash_loop_restarts) {
    if (!rt->crash_loop)
      log_error("runtime crash loop: it stays down; retrying at the longest backoff",
                "runtime=%s exits=%d window_ms=%u status=%lld signal=%d restart_in_ms=%u", rt->name, recent,
                s->cfg->sup.crash_loop_window_ms, (long long)status, sig, delay);
    else
      log_warn("runtime still crash-looping", "runtime=%s exits=%d status=%lld signal=%d restart_in_ms=%u",
               rt->name, recent, (long long)status, sig, delay);
    rt->crash_loop = true;
  } else {
    log_warn("runtime exited; restarting",
             "runtime=%s status=%lld signal=%d recent_exits=%d restart_in_ms=%u", rt->name, (long long)status,
             sig, recent, delay);
  }
  set_state(rt, rt->crash_loop ? ST_CRASH_LOOP : ST_BACKOFF);
  rt->restart_ns = now + (uint64_t)delay * 1000000ull;
  uv_timer_start(&rt->restart_timer, restart_cb, delay, 0);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct sup_rt *rt = p->data;
  uv_close((uv_handle_t *)p, proc_closed_cb);
  exited(rt, status, sig);
}

static void close_pipes(struct sup_rt *rt) {
  for (int i = 0; i < 2; i++)
    if (rt->pipes[i]) close_pipe(rt->pipes[i]);
}

/* A process that survives SIGKILL (stuck in the kernel, e.g. on a wedged GPU driver) must not hang the
 * agent's exit: on stop, stop watching it. */
static void abandon_cb(uv_timer_t *t) {
  struct sup_rt *rt = t->data;
  if (!rt->running || !rt->s->stopping) return;
  log_error("runtime did not die after SIGKILL: no longer waiting for it", "runtime=%s pid=%d waited_ms=%d",
            rt->name, rt->pid, ABANDON_MS);
  rt->running = false;
  rt->pid = 0;
  set_state(rt, ST_STOPPED);
  uv_close((uv_handle_t *)&rt->proc, proc_closed_cb);
  close_pipes(rt);
  check_done(rt->s);
}

static void grace_cb(uv_timer_t *t) {
  struct sup_rt *rt = t->data;
  if (!rt->running) return;
  log_warn("runtime did not stop in time: SIGKILL", "runtime=%s pid=%d grace_ms=%u", rt->name, rt->pid,
           rt->s->cfg->sup.stop_grace_ms);
  kill_group(rt, SIGKILL);
  uv_timer_start(&rt->kill_timer, abandon_cb, ABANDON_MS, 0);
}

/* SIGTERM to the group, SIGKILL after the grace period. */
static void terminate(struct sup_rt *rt) {
  if (!rt->running) return;
  set_state(rt, ST_STOPPING);
  kill_group(rt, SIGTERM);
  rt->kill_timer.data = rt;
  uv_timer_start(&rt->kill_timer, grace_cb, rt->s->cfg->sup.stop_grace_ms, 0);
}

static void health_cb(uv_timer_t *t) {
  struct sup_rt *rt = t->data;
  struct supervisor *s = rt->s;
  uint64_t waited_ms = (clock_mono_ns() - rt->start_ns) / 1000000ull;
  if (!rt->running || s->stopping) {
    uv_timer_stop(t);
    return;
  }
  if (s->store->targets[rt->id].healthy) {
    rt->healthy = true;
    set_state(rt, ST_RUNNING);
    uv_timer_stop(t);
    log_info("runtime healthy", "runtime=%s pid=%d after_ms=%llu restarts=%d", rt->name, rt->pid,
             (unsigned long long)waited_ms, rt->restarts);
    if (rt->crash_loop) log_info("runtime left its crash loop", "runtime=%s", rt->name);
    rt->crash_loop = false;
    return;
  }
  if (waited_ms >= s->cfg->sup.health_timeout_ms) {
    uv_timer_stop(t);
    log_error("runtime did not become healthy in time: stopping it",
              "runtime=%s pid=%d timeout_ms=%u last_error=\"%s\"", rt->name, rt->pid,
              s->cfg->sup.health_timeout_ms, s->store->targets[rt->id].last_error);
    rt->health_timed_out = true;
    terminate(rt);
    return;
  }
  if (waited_ms / 1000 >= rt->next_progress_s) {
    char msg[160];
    snprintf(msg, sizeof msg, "waiting for runtime %s: %llu s", rt->name,
             (unsigned long long)(waited_ms / 1000));
    log_emit(LOG_INFO, msg, "runtime=%s pid=%d waited_s=%llu timeout_s=%u", rt->name, rt->pid,
             (unsigned long long)(waited_ms / 1000), s->cfg->sup.health_timeout_ms / 1000);
    rt->next_progress_s = rt->next_progress_s < 5 ? 5 : rt->next_progress_s + 5;
  }
}

static void start_rt(struct sup_rt *rt) {
  struct supervisor *s = rt->s;
  char ppid[32];
  size_t n = 0;
  while (rt->argv[n])
    n++;
  char **args = xcalloc(n + 5, sizeof *args);
  snprintf(ppid, sizeof ppid, "%d", (int)uv_os_getpid());
  args[0] = (char *)s->exe;
  args[1] = "_exec-child";
  args[2] = ppid;
  args[3] = "--";
  memcpy(args + 4, rt->argv, n * sizeof *args);
  char **env = child_env(0); /* the helper gets the agent's pid in argv */
  for (int i = 0; i < 2; i++)
    if (rt->pipes[i]) close_pipe(rt->pipes[i]); /* a previous incarnation's grandchild may hold them */
  struct outpipe *out = new_pipe(rt, 0), *err = new_pipe(rt, 1);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&out->pipe;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&err->pipe;
  uv_process_options_t po = {0};
  po.file = s->exe;
  po.args = args;
  po.env = env;
  po.stdio = stdio;
  po.stdio_count = 3;
  po.exit_cb = exit_cb;
  po.flags = UV_PROCESS_DETACHED; /* setsid: its own session and process group */
  rt->proc.data = rt;
  rt->health_timed_out = false;
  rt->healthy = false;
  rt->start_ns = clock_mono_ns();
  rt->next_progress_s = 1;
  set_state(rt, ST_STARTING);
  int rc = uv_spawn(s->loop, &rt->proc, &po);
  rt->proc_open = true;
  s->live++;
  free(args);
  child_env_free(env);
  if (rc != 0) {
    log_error("cannot start runtime", "runtime=%s exe=%s err=\"%s\"", rt->name, s->exe, uv_strerror(rc));
    uv_close((uv_handle_t *)&rt->proc, proc_closed_cb);
    close_pipe(out);
    close_pipe(err);
    exited(rt, 127, 0);
    return;
  }
  rt->running = true;
  rt->pid = rt->proc.pid;
  uv_read_start((uv_stream_t *)&out->pipe, out_alloc_cb, out_read_cb);
  uv_read_start((uv_stream_t *)&err->pipe, out_alloc_cb, out_read_cb);
  char cmd_esc[2100];
  size_t o = 0;
  for (const char *c = rt->cmd; *c && o + 3 < sizeof cmd_esc; c++) {
    if (*c == '"' || *c == '\\') cmd_esc[o++] = '\\';
    cmd_esc[o++] = *c == '\n' ? ' ' : *c;
  }
  cmd_esc[o] = '\0';
  log_info("runtime started", "runtime=%s pid=%d mode=%s url=%s exec=\"%s\"", rt->name, rt->pid,
           rt->shell ? "shell" : "direct", s->store->targets[rt->id].url, cmd_esc);
  uv_timer_start(&rt->health_timer, health_cb, HEALTH_POLL_MS, HEALTH_POLL_MS);
}

struct supervisor *supervisor_start(uv_loop_t *loop, struct store *store, const struct agent_config *cfg,
                                    const int *ids, const char *exe) {
  int n = 0;
  for (int i = 0; i < cfg->nruntimes; i++)
    n += cfg->runtimes[i].exec[0] != '\0';
  if (n == 0) return NULL;
  struct supervisor *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->store = store;
  s->cfg = cfg;
  s->exe = exe;
  s->rts = xcalloc((size_t)n, sizeof *s->rts);
  rng_seed(&s->rng, clock_mono_ns() ^ (uint64_t)uv_os_getpid());
  uv_timer_init(loop, &s->wait_timer);
  s->wait_timer.data = s;
  s->live++;
  for (int i = 0; i < cfg->nruntimes; i++) {
    if (!cfg->runtimes[i].exec[0]) continue;
    struct sup_rt *rt = &s->rts[s->nrts++];
    rt->s = s;
    rt->id = ids[i];
    rt->name = store->targets[ids[i]].name;
    rt->cmd = cfg->runtimes[i].exec;
    rt->argv = split_argv(cfg->runtimes[i].exec, &rt->shell);
    uv_timer_init(loop, &rt->health_timer);
    uv_timer_init(loop, &rt->restart_timer);
    uv_timer_init(loop, &rt->kill_timer);
    rt->health_timer.data = rt->restart_timer.data = rt->kill_timer.data = rt;
    s->live += 3;
  }
  for (int i = 0; i < s->nrts; i++)
    start_rt(&s->rts[i]);
  return s;
}

/* ---- stopping ---- */

static void check_done(struct supervisor *s) {
  if (!s->stopping || !s->signalled) return;
  if (!s->closing) {
    for (int i = 0; i < s->nrts; i++)
      if (s->rts[i].running || s->rts[i].npipes > 0) return;
    s->closing = true;
    for (int i = 0; i < s->nrts; i++) {
      struct sup_rt *rt = &s->rts[i];
      close_handle(s, (uv_handle_t *)&rt->health_timer);
      close_handle(s, (uv_handle_t *)&rt->restart_timer);
      close_handle(s, (uv_handle_t *)&rt->kill_timer);
    }
    close_handle(s, (uv_handle_t *)&s->wait_timer);
    return;
  }
  if (s->live > 0) return;
  void (*cb)(void *) = s->stopped_cb;
  void *arg = s->stopped_arg;
  for (int i = 0; i < s->nrts; i++)
    free_argv(s->rts[i].argv);
  free(s->rts);
  free(s);
  cb(arg);
}

static void signal_all(struct supervisor *s) {
  s->signalled = true;
  uv_timer_stop(&s->wait_timer);
  for (int i = 0; i < s->nrts; i++) {
    struct sup_rt *rt = &s->rts[i];
    if (rt->running)
      log_info("stopping runtime", "runtime=%s pid=%d signal=SIGTERM grace_ms=%u", rt->name, rt->pid,
               s->cfg->sup.stop_grace_ms);
    if (rt->running)
      terminate(rt);
    else
      close_pipes(rt); /* output of an earlier run, held open by something that left the group */
  }
  check_done(s);
}

static void wait_cb(uv_timer_t *t) {
  struct supervisor *s = t->data;
  int inflight = 0;
  for (int i = 0; i < s->nrts; i++)
    inflight += s->store->targets[s->rts[i].id].inflight;
  if (inflight == 0) {
    signal_all(s);
  } else if ((clock_mono_ns() - s->stop_ns) / 1000000ull >= s->wait_ms) {
    log_warn("stopping runtimes with requests still in flight", "in_flight=%d wait_ms=%u", inflight,
             s->wait_ms);
    signal_all(s);
  }
}

void supervisor_stop(struct supervisor *s, uint32_t wait_ms, void (*cb)(void *arg), void *arg) {
  if (!s) {
    cb(arg);
    return;
  }
  if (s->stopping) return;
  s->stopping = true;
  s->stopped_cb = cb;
  s->stopped_arg = arg;
  s->stop_ns = clock_mono_ns();
  s->wait_ms = wait_ms;
  for (int i = 0; i < s->nrts; i++) {
    struct sup_rt *rt = &s->rts[i];
    uv_timer_stop(&rt->restart_timer);
    uv_timer_stop(&rt->health_timer);
    set_state(rt, rt->running ? ST_STOPPING : ST_STOPPED);
    store_mark_down(s->store, rt->id, "runtime is being stopped"); /* no new request is routed to it */
  }
  wait_cb(&s->wait_timer);
  if (!s->signalled) uv_timer_start(&s->wait_timer, wait_cb, WAIT_POLL_MS, WAIT_POLL_MS);
}

bool supervisor_proc_info(const struct supervisor *s, int target_id, uint64_t now_ns, struct status_proc *out) {
  if (!s) return false;
  for (int i = 0; i < s->nrts; i++) {
    const struct sup_rt *rt = &s->rts[i];
    if (rt->id != target_id) continue;
    memset(out, 0, sizeof *out);
    out->state = state_names[rt->state];
    out->since_s = now_ns > rt->state_ns ? (double)(now_ns - rt->state_ns) / 1e9 : 0;
    out->pid = rt->running ? rt->pid : 0;
    out->restarts = rt->restarts;
    out->crash_loop = rt->crash_loop;
    if ((out->exited = rt->exited)) {
      out->exit_status = rt->exit_status;
      out->exit_signal = rt->exit_signal;
      out->exit_ago_s = now_ns > rt->exit_ns ? (double)(now_ns - rt->exit_ns) / 1e9 : 0;
    }
    if (rt->state == ST_STARTING) {
      out->health_elapsed_s = now_ns > rt->start_ns ? (double)(now_ns - rt->start_ns) / 1e9 : 0;
      out->health_timeout_s = s->cfg->sup.health_timeout_ms / 1e3;
    }
    if ((rt->state == ST_BACKOFF || rt->state == ST_CRASH_LOOP) && rt->restart_ns > now_ns)
      out->restart_in_s = (double)(rt->restart_ns - now_ns) / 1e9;
    return true;
  }
  return false;
}

void supervisor_kill_now(struct supervisor *s) {
  if (!s) return;
  for (int i = 0; i < s->nrts; i++)
    if (s->rts[i].running) kill_group(&s->rts[i], SIGKILL);
}
