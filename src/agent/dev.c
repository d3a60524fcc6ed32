/* `infermesh dev`: supervise simulated engines and one agent per node (--nodes N: a local mesh) as child
 * processes on this machine. */
#include "agent/dev.h"

#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/child_env.h"
#include "cluster/keyring.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "net/http_client.h"

#define MAX_ENGINES 32
#define MAX_NODES 16
#define STOP_GRACE_MS 10000

struct child {
  struct dev *d;
  uv_process_t proc;
  uv_pipe_t out;
  bool running, is_agent, out_open;
  int node; /* which node it belongs to */
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
  int nengines, port; /* engines per node; API port of node 0 (node i: port + i) */
  int nnodes, gossip_port;
  char host[64], speed[32], profile[256], extra_log[8];
  char tmpdir[256]; /* data dirs of a --nodes mesh, removed on exit */
  char admin_token[128]; /* the agents' admin token (INFERMESH_ADMIN_TOKEN, else made here) */
  struct child engines[MAX_ENGINES];
  struct child agents[MAX_NODES];
  uv_signal_t sigint, sigterm;
  uv_timer_t poll_timer, kill_timer;
  struct http_pool pool;
  struct hc_req *poll;
  char poll_head[256];
  int poll_status;
  bool stopping, ready, members_phase;
  bool node_left[MAX_NODES]; /* its agent left the mesh (exit 0): its engines stop, the others keep serving */
  struct buf poll_body;
  char members_head[256];
  int exit_code;
};

static void start_engine(struct child *c);
static void start_agent(struct dev *d, int node);
static void stop_all(struct dev *d, int code);

static void usage(FILE *f) {
  fprintf(f, "usage: infermesh dev [--nodes N] [--engines E] [--port P] [--gossip-port G] [--host H] [--speed X]\n"
             "                     [--profile NAME]\n\n"
             "Runs a local mesh for trying infermesh, as supervised child processes on H (127.0.0.1):\n"
             "  one node (default): E simulated engines (3) and an agent listening on H:P (8080);\n"
             "  --nodes N (2-%d): N agents on ports P..P+N-1 with E engines each (1), gossiping on G..G+N-1\n"
             "  (7946), sharing a fresh cluster key in a temporary data dir; every agent routes to every engine.\n"
             "Engines that crash are restarted. `infermesh leave` on one node stops that node (its agent and\n"
             "engines) only. Ctrl-C (or SIGTERM) drains the agents and stops everything.\n",
          MAX_NODES);
}

static void closed_cb(uv_handle_t *h) { (void)h; }

static bool all_exited(struct dev *d) {
  for (int i = 0; i < d->nnodes; i++)
    if (d->agents[i].running) return false;
  for (int i = 0; i < d->nengines * d->nnodes; i++)
    if (d->engines[i].running) return false;
  return true;
}

static void finish_if_done(struct dev *d) {
  if (!d->stopping || !all_exited(d)) return;
  uv_timer_stop(&d->kill_timer);
  uv_stop(d->loop);
}

/* With every node gone by `leave`, dev has nothing left to run: it stops (exit 0). */
static void finish_if_left(struct dev *d) {
  for (int i = 0; i < d->nnodes; i++)
    if (!d->node_left[i]) return;
  stop_all(d, 0);
}

/* A node's agent left the mesh and exited cleanly (`infermesh leave`): only that node stops. Its engines get
 * SIGTERM and are not restarted; the other nodes keep serving. */
static void node_left(struct dev *d, int node) {
  d->node_left[node] = true;
  log_info("node left the mesh: stopping its engines, the other nodes keep serving", "node=%d", node);
  for (int i = node * d->nengines; i < (node + 1) * d->nengines; i++) {
    uv_timer_stop(&d->engines[i].restart_timer);
    if (d->engines[i].running) uv_process_kill(&d->engines[i].proc, SIGTERM);
  }
  finish_if_left(d);
}

static void restart_cb(uv_timer_t *t) {
  struct child *c = t->data;
  if (!c->d->stopping && !c->d->node_left[c->node]) start_engine(c);
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
  if (c->is_agent && d->nnodes > 1 && status == 0 && sig == 0) {
    node_left(d, c->node);
    return;
  }
  if (c->is_agent) {
    log_error("agent exited; stopping the mesh", "node=%d status=%lld signal=%d", c->node, (long long)status, sig);
    stop_all(d, 1);
    return;
  }
  if (d->node_left[c->node]) return; /* stopped with its node */
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

static bool engines_ready(struct dev *d, int node) {
  for (int i = node * d->nengines; i < (node + 1) * d->nengines; i++)
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
  if (c->port && engines_ready(c->d, c->node) && !c->d->agents[c->node].running && !c->d->agents[c->node].is_agent)
    start_agent(c->d, c->node);
}

static int spawn(struct dev *d, struct child *c, char **args) {
  uv_process_options_t po = {0};
  uv_stdio_container_t stdio[3];
  char **env = child_env((int)uv_os_getpid());
  /* dev sets these with flags; the environment would override them (INFERMESH_* wins over flags). */
  static const char *const owned[] = {"INFERMESH_DATA_DIR=", "INFERMESH_GOSSIP=", "INFERMESH_JOIN=",
                                      "INFERMESH_NAME=", "INFERMESH_LISTEN=", "INFERMESH_TARGETS=",
                                      "INFERMESH_ADVERTISE="};
  if (c->is_agent && d->nnodes > 1) {
    int k = 0;
    for (int i = 0; env[i]; i++) {
      bool drop = false;
      for (size_t j = 0; j < sizeof owned / sizeof owned[0] && !drop; j++)
        drop = strncmp(env[i], owned[j], strlen(owned[j])) == 0;
      if (!drop) env[k++] = env[i];
    }
    env[k] = NULL;
  }
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

/* kv_endpoint is where engine i publishes its KV-cache events (a local socket: nothing to pick or collide). */
static void kv_endpoint(char *out, size_t cap, int i) {
  snprintf(out, cap, "ipc:///tmp/infermesh-dev-%d-engine-%d.kv", (int)uv_os_getpid(), i);
}

static void start_engine(struct child *c) {
  struct dev *d = c->d;
  char port[16], kv[128];
  snprintf(port, sizeof port, "%d", c->port); /* 0 first; the same port on restarts */
  kv_endpoint(kv, sizeof kv, (int)(c - d->engines));
  char *args[16] = {(char *)d->exe, "sim-engine", "--host", d->host, "--port", port, "--speed", d->speed,
                    "--kv-events", kv};
  int n = 10;
  if (d->profile[0]) args[n++] = "--profile", args[n++] = d->profile;
  args[n] = NULL;
  if (spawn(d, c, args) != 0) stop_all(d, 1);
}

static void start_agent(struct dev *d, int node) {
  static char urls[MAX_ENGINES][256], listen[MAX_NODES][96], name[MAX_NODES][32], dir[MAX_NODES][300],
      gossip[MAX_NODES][96], seed[96];
  char *args[20 + 2 * MAX_ENGINES] = {(char *)d->exe, "agent", "--listen", listen[node], "--name", name[node],
                                      "--scrape-interval-ms", "200"};
  int n = 8;
  snprintf(listen[node], sizeof listen[0], "%s:%d", d->host, d->port + node);
  snprintf(name[node], sizeof name[0], d->nnodes > 1 ? "node-%d" : "dev", node);
  for (int i = node * d->nengines; i < (node + 1) * d->nengines; i++) {
    char kv[128];
    kv_endpoint(kv, sizeof kv, i);
    snprintf(urls[i], sizeof urls[i], "engine-%d=http://%s:%d#kv_events=%s", i, d->host, d->engines[i].port, kv);
    args[n++] = "--target";
    args[n++] = urls[i];
  }
  /* dev is for trying things out: on a reachable address it runs without API keys, and says so. */
  if (strncmp(d->host, "127.", 4) != 0) args[n++] = "--insecure-no-auth";
  if (d->nnodes > 1) {
    snprintf(dir[node], sizeof dir[0], "%s/node-%d", d->tmpdir, node);
    snprintf(gossip[node], sizeof gossip[0], "%s:%d", d->host, d->gossip_port + node);
    snprintf(seed, sizeof seed, "%s:%d", d->host, d->gossip_port);
    args[n++] = "--data-dir", args[n++] = dir[node];
    args[n++] = "--gossip", args[n++] = gossip[node];
    if (node > 0) args[n++] = "--join", args[n++] = seed;
  }
  args[n] = NULL;
  struct child *c = &d->agents[node];
  c->is_agent = true;
  c->d = d;
  c->node = node;
  if (spawn(d, c, args) != 0) stop_all(d, 1);
}

/* --nodes: one cluster key, copied into every node's data dir (as `infermesh init` + sharing it would). */
static int make_data_dirs(struct dev *d) {
  char err[512], dir[300];
  struct keyring kr;
  snprintf(d->tmpdir, sizeof d->tmpdir, "%s/infermesh-dev-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(d->tmpdir)) {
    fprintf(stderr, "infermesh dev: cannot create a temporary data dir in %s\n", d->tmpdir);
    d->tmpdir[0] = '\0';
    return -1;
  }
  for (int i = 0; i < d->nnodes; i++) {
    snprintf(dir, sizeof dir, "%s/node-%d", d->tmpdir, i);
    int rc = i == 0 ? keyring_create(dir, err, sizeof err) : keyring_save(&kr, dir, err, sizeof err);
    if (rc == 0 && i == 0) rc = keyring_load(&kr, dir, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "infermesh dev: %s\n", err);
      return -1;
    }
  }
  return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) { return remove(path); }

static void remove_data_dirs(struct dev *d) {
  if (d->tmpdir[0]) nftw(d->tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Changes to the mesh (drain, leave, policies) need an admin token even on loopback: dev makes one for its
 * agents (they inherit INFERMESH_ADMIN_TOKEN) unless the environment already holds one, and prints it. */
static void admin_token(struct dev *d) {
  const char *t = getenv("INFERMESH_ADMIN_TOKEN");
  if (t && *t) {
    str_copy(d->admin_token, sizeof d->admin_token, t);
    return;
  }
  uint8_t r[16];
  char hex[33];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  snprintf(d->admin_token, sizeof d->admin_token, "dev-%s", hex);
  setenv("INFERMESH_ADMIN_TOKEN", d->admin_token, 1);
}

static void banner(struct dev *d) {
  const char *model = d->engines[0].model[0] ? d->engines[0].model : "MODEL";
  if (d->nnodes > 1)
    printf("\ninfermesh dev: %d-node mesh ready (every node routes to every engine)\n"
           "  nodes      http://%s:%d/v1 ... http://%s:%d/v1, gossip on %d-%d, data in %s\n"
           "  members    infermesh members --agent http://%s:%d\n",
           d->nnodes, d->host, d->port, d->host, d->port + d->nnodes - 1, d->gossip_port,
           d->gossip_port + d->nnodes - 1, d->tmpdir, d->host, d->port);
  printf("%s"
         "  endpoint   http://%s:%d/v1   (OpenAI-compatible; any API key)\n"
         "  engines    %d simulated per node, model %s\n"
         "  try        curl -s http://%s:%d/v1/chat/completions -H 'Content-Type: application/json' \\\n"
         "               -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n"
         "             infermesh targets --agent http://%s:%d\n"
         "  admin      export INFERMESH_ADMIN_TOKEN=%s   (drain, leave, policies: changes need it)\n"
         "  dashboard  http://%s:%d/ui/   (type the admin token into the page to make changes)\n"
         "  Ctrl-C stops everything.\n\n",
         d->nnodes > 1 ? "" : "\ninfermesh dev: mesh ready\n", d->host, d->port, d->nengines, model, d->host, d->port,
         model, d->host, d->port, d->admin_token, d->host, d->port);
  fflush(stdout);
}

static int poll_head_cb(void *arg, int status, const struct http_header *h, int n) {
  ((struct dev *)arg)->poll_status = status;
  return 0;
}

/* With --nodes, ready means node 0 sees every node alive. */
static int poll_body_cb(void *arg, const char *data, size_t len) {
  struct dev *d = arg;
  if (d->poll_body.len + len < 1 << 20) buf_append(&d->poll_body, data, len);
  return 0;
}

static bool all_members_alive(struct dev *d) {
  json_t *j = json_loadb(d->poll_body.base ? d->poll_body.base : "", d->poll_body.len, 0, NULL);
  size_t i;
  json_t *m;
  int alive = 0;
  json_array_foreach(json_object_get(j, "members"), i, m) {
    alive += json_is_string(json_object_get(m, "state")) &&
             strcmp(json_string_value(json_object_get(m, "state")), "alive") == 0;
  }
  json_decref(j);
  return alive >= d->nnodes;
}

static void poll_done_cb(void *arg, int err) {
  struct dev *d = arg;
  d->poll = NULL;
  if (err == 0 && d->poll_status == 200 && d->nnodes > 1 && !d->members_phase) {
    d->members_phase = true; /* node 0 is ready: now wait for the mesh */
    return;
  }
  if (err == 0 && d->nnodes > 1 && d->members_phase && !all_members_alive(d)) return;
  if (err == 0 && d->poll_status == 200 && !d->ready && !d->stopping) {
    d->ready = true;
    uv_timer_stop(&d->poll_timer);
    banner(d);
  }
}

static const struct hc_callbacks poll_cbs = {
    .on_head = poll_head_cb,
    .on_body = poll_body_cb,
    .on_done = poll_done_cb,
};

static void poll_cb(uv_timer_t *t) {
  struct dev *d = t->data;
  if (!d->agents[0].running || d->poll || d->ready) return;
  d->poll_status = 0;
  buf_reset(&d->poll_body);
  d->poll = hc_request(&d->pool, slice_cstr(d->members_phase ? d->members_head : d->poll_head), NULL, 0, &poll_cbs,
                       d, 1000);
}

static void kill_cb(uv_timer_t *t) {
  struct dev *d = t->data;
  log_warn("children did not stop in time: SIGKILL", "grace_ms=%d", STOP_GRACE_MS);
  for (int i = 0; i < d->nnodes; i++)
    if (d->agents[i].running) uv_process_kill(&d->agents[i].proc, SIGKILL);
  for (int i = 0; i < d->nengines * d->nnodes; i++)
    if (d->engines[i].running) uv_process_kill(&d->engines[i].proc, SIGKILL);
}

/* Stop: the agent drains first (SIGTERM), engines follow once it has exited or the grace ends. */
static void stop_all(struct dev *d, int code) {
  if (d->stopping) return;
  d->stopping = true;
  d->exit_code = code;
  uv_timer_stop(&d->poll_timer);
  if (d->poll) hc_cancel(d->poll), d->poll = NULL;
  for (int i = 0; i < d->nengines * d->nnodes; i++) uv_timer_stop(&d->engines[i].restart_timer);
  for (int i = 0; i < d->nnodes; i++)
    if (d->agents[i].running) uv_process_kill(&d->agents[i].proc, SIGTERM);
  for (int i = 0; i < d->nengines * d->nnodes; i++)
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
  d->nengines = 0; /* 3 for one node, 1 per node with --nodes */
  d->nnodes = 1;
  d->gossip_port = 7946;
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
    else if (strcmp(a, "--nodes") == 0 && *end == '\0' && n >= 1 && n <= MAX_NODES) d->nnodes = (int)n;
    else if (strcmp(a, "--gossip-port") == 0 && *end == '\0' && n >= 1 && n <= 65535) d->gossip_port = (int)n;
    else if (strcmp(a, "--port") == 0 && *end == '\0' && n >= 1 && n <= 65535) d->port = (int)n;
    else if (strcmp(a, "--host") == 0) str_copy(d->host, sizeof d->host, v);
    else if (strcmp(a, "--speed") == 0) str_copy(d->speed, sizeof d->speed, v);
    else if (strcmp(a, "--profile") == 0) str_copy(d->profile, sizeof d->profile, v);
    else {
      fprintf(stderr, "infermesh dev: bad option %s %s (see --help)\n", a, v);
      return 2;
    }
  }
  if (!d->nengines) d->nengines = d->nnodes > 1 ? 1 : 3;
  if (d->nengines * d->nnodes > MAX_ENGINES) {
    fprintf(stderr, "infermesh dev: at most %d engines in all (--nodes x --engines)\n", MAX_ENGINES);
    return 2;
  }
  if (d->port + d->nnodes - 1 > 65535 || d->gossip_port + d->nnodes - 1 > 65535) {
    fprintf(stderr, "infermesh dev: --port/--gossip-port too high for %d nodes\n", d->nnodes);
    return 2;
  }
  log_setup(LOG_INFO, "dev");
  admin_token(d);
  if (d->nnodes > 1 && make_data_dirs(d) != 0) {
    remove_data_dirs(d);
    return 1;
  }
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
  buf_reset(&head);
  buf_printf(&head, "GET /v1/cluster/members HTTP/1.1\r\nHost: %s\r\n\r\n", d->pool.authority);
  str_copy(d->members_head, sizeof d->members_head, head.base);
  buf_free(&head);
  uv_signal_init(d->loop, &d->sigint);
  uv_signal_init(d->loop, &d->sigterm);
  d->sigint.data = d->sigterm.data = d;
  uv_signal_start(&d->sigint, signal_cb, SIGINT);
  uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
  uv_timer_init(d->loop, &d->poll_timer);
  uv_timer_init(d->loop, &d->kill_timer);
  d->poll_timer.data = d->kill_timer.data = d;
  for (int i = 0; i < d->nengines * d->nnodes; i++) {
    struct child *c = &d->engines[i];
    c->d = d;
    c->node = i / d->nengines;
    c->backoff_ms = 500;
    uv_timer_init(d->loop, &c->restart_timer);
    c->restart_timer.data = c;
    start_engine(c);
    if (d->stopping) break;
  }
  uv_timer_start(&d->poll_timer, poll_cb, 100, 100);
  uv_run(d->loop, UV_RUN_DEFAULT);
  remove_data_dirs(d);
  buf_free(&d->poll_body);
  return d->exit_code;
}
