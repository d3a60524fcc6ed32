/* `infermesh dev`: supervise N simulated engines and one agent as child processes on this machine. */
#include "agent/dev.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/child_env.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "net/http_client.h"

#define MAX_ENGINES 32
#define STOP_GRACE_MS 10000

struct child {
  struct dev *d;
  uv_process_t proc;
  uv_pipe_t out;
  bool running, is_agent, out_open;
  int port;
  char model[128];
  struct buf line;
  int restarts;
  uint32_t backoff_ms;
  uv_timer_t restart_timer;
};

struct dev {
  uv_loop_t *loop;
  const char *exe;
  int nengines, port;
  char host[64], speed[32], profile[256], extra_log[8];
  struct child engines[MAX_ENGINES];
  struct child agent;
  uv_signal_t sigint, sigterm;
  uv_timer_t poll_timer, kill_timer;
  struct http_pool pool;
  struct hc_req *poll;
  char poll_head[256];
  int poll_status;
  bool stopping, ready, agent_started;
  int exit_code;
};

static void start_engine(struct child *c);
static void start_agent(struct dev *d);
static void stop_all(struct dev *d, int code);

static void usage(FILE *f) {
  fprintf(f, "usage: infermesh dev [--engines N] [--port P] [--host H] [--speed X] [--profile NAME]\n\n"
             "Runs a one-node mesh for trying infermesh: N simulated engines (3) and an agent on H:P\n"
             "(P is a fixed port, 1-65535) "
             "(127.0.0.1:8080), as supervised child processes. Engines that crash are restarted.\n"
             "Ctrl-C (or SIGTERM) drains the agent and stops everything.\n");
}

static void closed_cb(uv_handle_t *h) { (void)h; }

static bool all_exited(struct dev *d) {
  if (d->agent.running) return false;
  for (int i = 0; i < d->nengines; i++)
    if (d->engines[i].running) return false;
  return true;
}

static void finish_if_done(struct dev *d) {
  if (!d->stopping || !all_exited(d)) return;
  uv_timer_stop(&d->kill_timer);
  uv_stop(d->loop);
}

static void restart_cb(uv_timer_t *t) {
  struct child *c = t->data;
  if (!c->d->stopping) start_engine(c);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig) {
  struct child *c = p->data;
  struct dev *d = c->d;
  c->running = false;
  uv_close((uv_handle_t *)p, closed_cb);
  if (d->stopping) {
    finish_if_done(d);
    return;
  }
  if (c->is_agent) {
    log_error("agent exited; stopping the mesh", "status=%lld signal=%d", (long long)status, sig);
    stop_all(d, 1);
    return;
  }
  c->restarts++;
  log_warn("engine exited; restarting", "port=%d status=%lld signal=%d restart_in_ms=%u", c->port, (long long)status,
           sig, c->backoff_ms);
  uv_timer_start(&c->restart_timer, restart_cb, c->backoff_ms, 0);
  c->backoff_ms = c->backoff_ms < 16000 ? c->backoff_ms * 2 : 30000;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[4096];
  *b = uv_buf_init(buf, sizeof buf);
}

static bool engines_ready(struct dev *d) {
  for (int i = 0; i < d->nengines; i++)
    if (!d->engines[i].port) return false;
  return true;
}

/* The engine's first stdout line is "listening on http://HOST:PORT model=ID". */
static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct child *c = st->data;
  if (n < 0) {
    uv_close((uv_handle_t *)st, closed_cb);
    c->out_open = false;
    return;
  }
  if (c->port) return;
  buf_append(&c->line, b->base, (size_t)n);
  char *nl = memchr(c->line.base, '\n', c->line.len);
  if (!nl) return;
  *nl = '\0';
  const char *p = strstr(c->line.base, "http://");
  const char *colon = p ? strrchr(p + 7, ':') : NULL;
  const char *m = strstr(c->line.base, " model=");
  if (colon) c->port = (int)strtol(colon + 1, NULL, 10);
  if (m) str_copy(c->model, sizeof c->model, m + 7);
  buf_free(&c->line);
  if (c->port && engines_ready(c->d) && !c->d->agent_started) start_agent(c->d);
}

static int spawn(struct dev *d, struct child *c, char **args) {
  uv_process_options_t po = {0};
  uv_stdio_container_t stdio[3];
  char **env = child_env((int)uv_os_getpid());
  uv_pipe_init(d->loop, &c->out, 0);
  c->out.data = c;
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = c->is_agent ? UV_INHERIT_FD : (UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.fd = 1;
  if (!c->is_agent) stdio[1].data.stream = (uv_stream_t *)&c->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  po.file = d->exe;
  po.args = args;
  po.env = env;
  po.stdio = stdio;
  po.stdio_count = 3;
  po.exit_cb = exit_cb;
  c->proc.data = c;
  int rc = uv_spawn(d->loop, &c->proc, &po);
  child_env_free(env);
  if (rc != 0) {
    uv_close((uv_handle_t *)&c->out, closed_cb);
    fprintf(stderr, "infermesh dev: cannot start %s: %s\n", d->exe, uv_strerror(rc));
    return rc;
  }
  c->running = true;
  if (!c->is_agent) {
    c->out_open = true;
    uv_read_start((uv_stream_t *)&c->out, alloc_cb, read_cb);
  } else {
    uv_close((uv_handle_t *)&c->out, closed_cb);
  }
  return 0;
}

static void start_engine(struct child *c) {
  struct dev *d = c->d;
  char port[16];
  snprintf(port, sizeof port, "%d", c->port); /* 0 first; the same port on restarts */
  char *args[16] = {(char *)d->exe, "sim-engine", "--host", d->host, "--port", port, "--speed", d->speed};
  int n = 8;
  if (d->profile[0]) args[n++] = "--profile", args[n++] = d->profile;
  args[n] = NULL;
  if (spawn(d, c, args) != 0) stop_all(d, 1);
}

static void start_agent(struct dev *d) {
  static char urls[MAX_ENGINES][96], listen[96];
  char *args[8 + 2 * MAX_ENGINES] = {(char *)d->exe, "agent", "--listen", listen, "--name", "dev", "--scrape-interval-ms", "200"};
  int n = 8;
  snprintf(listen, sizeof listen, "%s:%d", d->host, d->port);
  for (int i = 0; i < d->nengines; i++) {
    snprintf(urls[i], sizeof urls[i], "engine-%d=http://%s:%d", i, d->host, d->engines[i].port);
    args[n++] = "--target";
    args[n++] = urls[i];
  }
  args[n] = NULL;
  d->agent_started = true;
  d->agent.is_agent = true;
  d->agent.d = d;
  if (spawn(d, &d->agent, args) != 0) stop_all(d, 1);
}

static void banner(struct dev *d) {
  const char *model = d->engines[0].model[0] ? d->engines[0].model : "MODEL";
  printf("\ninfermesh dev: mesh ready\n"
         "  endpoint   http://%s:%d/v1   (OpenAI-compatible; any API key)\n"
         "  engines    %d simulated, model %s\n"
         "  try        curl -s http://%s:%d/v1/chat/completions -H 'Content-Type: application/json' \\\n"
         "               -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n"
         "             infermesh targets --agent http://%s:%d\n"
         "  Ctrl-C stops everything.\n\n",
         d->host, d->port, d->nengines, model, d->host, d->port, model, d->host, d->port);
  fflush(stdout);
}

static int poll_head_cb(void *arg, int status, const struct http_header *h, int n) {
  ((struct dev *)arg)->poll_status = status;
  return 0;
}

static void poll_done_cb(void *arg, int err) {
  struct dev *d = arg;
  d->poll = NULL;
  if (err == 0 && d->poll_status == 200 && !d->ready && !d->stopping) {
    d->ready = true;
    uv_timer_stop(&d->poll_timer);
    banner(d);
  }
}

static const struct hc_callbacks poll_cbs = {poll_head_cb, NULL, poll_done_cb};

static void poll_cb(uv_timer_t *t) {
  struct dev *d = t->data;
  if (!d->agent.running || d->poll || d->ready) return;
  d->poll_status = 0;
  d->poll = hc_request(&d->pool, slice_cstr(d->poll_head), NULL, 0, &poll_cbs, d, 1000);
}

static void kill_cb(uv_timer_t *t) {
  struct dev *d = t->data;
  log_warn("children did not stop in time: SIGKILL", "grace_ms=%d", STOP_GRACE_MS);
  if (d->agent.running) uv_process_kill(&d->agent.proc, SIGKILL);
  for (int i = 0; i < d->nengines; i++)
    if (d->engines[i].running) uv_process_kill(&d->engines[i].proc, SIGKILL);
}

/* Stop: the agent drains first (SIGTERM), engines follow once it has exited or the grace ends. */
static void stop_all(struct dev *d, int code) {
  if (d->stopping) return;
  d->stopping = true;
  d->exit_code = code;
  uv_timer_stop(&d->poll_timer);
  if (d->poll) hc_cancel(d->poll), d->poll = NULL;
  for (int i = 0; i < d->nengines; i++) uv_timer_stop(&d->engines[i].restart_timer);
  if (d->agent.running) uv_process_kill(&d->agent.proc, SIGTERM);
  for (int i = 0; i < d->nengines; i++)
    if (d->engines[i].running) uv_process_kill(&d->engines[i].proc, SIGTERM);
  uv_timer_start(&d->kill_timer, kill_cb, STOP_GRACE_MS, 0);
  finish_if_done(d);
}

static void signal_cb(uv_signal_t *s, int signum) {
  struct dev *d = s->data;
  if (d->stopping) return;
  fprintf(stderr, "\ninfermesh dev: stopping (draining the agent)...\n");
  stop_all(d, 0);
}

int dev_main(int argc, char **argv, const char *argv0) {
  static struct dev dv;
  struct dev *d = &dv;
  char exe[1024];
  size_t exelen = sizeof exe;
  memset(d, 0, sizeof *d);
  d->nengines = 3;
  d->port = 8080;
  str_copy(d->host, sizeof d->host, "127.0.0.1");
  str_copy(d->speed, sizeof d->speed, "1");
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "infermesh dev: %s needs a value (see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    char *end;
    long n = strtol(v, &end, 10);
    if (strcmp(a, "--engines") == 0 && *end == '\0' && n >= 1 && n <= MAX_ENGINES) d->nengines = (int)n;
    else if (strcmp(a, "--port") == 0 && *end == '\0' && n >= 1 && n <= 65535) d->port = (int)n;
    else if (strcmp(a, "--host") == 0) str_copy(d->host, sizeof d->host, v);
    else if (strcmp(a, "--speed") == 0) str_copy(d->speed, sizeof d->speed, v);
    else if (strcmp(a, "--profile") == 0) str_copy(d->profile, sizeof d->profile, v);
    else {
      fprintf(stderr, "infermesh dev: bad option %s %s (see --help)\n", a, v);
      return 2;
    }
  }
  log_setup(LOG_INFO, "dev");
  d->exe = uv_exepath(exe, &exelen) == 0 ? exe : argv0;
  d->loop = uv_default_loop();
  signal(SIGPIPE, SIG_IGN);
  if (http_pool_init(&d->pool, d->loop, d->host, d->port) != 0) {
    fprintf(stderr, "infermesh dev: --host must be an IP address\n");
    return 2;
  }
  struct buf head = {0};
  buf_printf(&head, "GET /readyz HTTP/1.1\r\nHost: %s\r\n\r\n", d->pool.authority);
  str_copy(d->poll_head, sizeof d->poll_head, head.base);
  buf_free(&head);
  uv_signal_init(d->loop, &d->sigint);
  uv_signal_init(d->loop, &d->sigterm);
  d->sigint.data = d->sigterm.data = d;
  uv_signal_start(&d->sigint, signal_cb, SIGINT);
  uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
  uv_timer_init(d->loop, &d->poll_timer);
  uv_timer_init(d->loop, &d->kill_timer);
  d->poll_timer.data = d->kill_timer.data = d;
  for (int i = 0; i < d->nengines; i++) {
    struct child *c = &d->engines[i];
    c->d = d;
    c->backoff_ms = 500;
    uv_timer_init(d->loop, &c->restart_timer);
    c->restart_timer.data = c;
    start_engine(c);
    if (d->stopping) break;
  }
  uv_timer_start(&d->poll_timer, poll_cb, 100, 100);
  uv_run(d->loop, UV_RUN_DEFAULT);
  return d->exit_code;
}
