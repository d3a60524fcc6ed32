/* Agent configuration: one key table serves the YAML file, the flags and the environment. */
#include "agent/config.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "adapter/adapter.h"
#include "agent/config_prices.h"
#include "agent/config_tenants.h"
#include "agent/config_tls.h"
#include "core/log.h"
#include "core/slice.h"
#include "state/policy.h"
#include "state/store.h"
#include "trace/exporter.h"

enum ktype {
  K_STR, K_U32, K_INT, K_SIZE, K_LISTEN, K_RUNTIME, K_JOIN, K_LABEL, K_DBL, K_BOOL, K_TENANT, K_ALIAS, K_PRICE,
  K_TLSMAP
};

struct key {
  const char *path; /* YAML path, dotted */
  const char *flag; /* --flag */
  const char *env;  /* INFERMESH_... */
  enum ktype type;
  size_t off, size;
  const char *help;
};

#define F(field) offsetof(struct agent_config, field), sizeof(((struct agent_config *)0)->field)

static const struct key keys[] = {
    {"node.name", "--name", "INFERMESH_NAME", K_STR, F(node_name), "node name shown in headers and logs"},
    {"listen", "--listen", "INFERMESH_LISTEN", K_LISTEN, 0, 0, "HOST:PORT of the HTTP listener (127.0.0.1:8080)"},
    {"log_level", "--log-level", "INFERMESH_LOG_LEVEL", K_STR, F(log_level), "debug|info|warn|error (info)"},
    {"node.roles", "--roles", "INFERMESH_ROLES", K_STR, F(cluster.roles),
     "comma-separated roles: gpu, gateway, server (gateway, plus gpu when runtimes are configured)"},
    {"node.zone", "--zone", "INFERMESH_ZONE", K_STR, F(cluster.zone), "zone name shown to other nodes"},
    {"node.provider", "--provider", "INFERMESH_PROVIDER", K_STR, F(provider),
     "who is paid for what this node's runtimes serve (default: the node's name)"},
    {"ledger.enabled", "--ledger", "INFERMESH_LEDGER", K_BOOL, F(ledger_enabled),
     "keep a usage record of every request in DATA_DIR/ledger.db (true)"},
    {"ledger.postgres", "--ledger-postgres", "INFERMESH_LEDGER_POSTGRES", K_STR, F(ledger_postgres),
     "also forward every record to this PostgreSQL (postgresql://USER@HOST:PORT/DB or key=value pairs), "
     "exactly once, through an outbox: while it is down the records wait in the ledger"},
    {"prices", "--price", "INFERMESH_PRICES", K_PRICE, 0, 0,
     "model=M,prompt=X,completion=Y[,cached=Z][,currency=USD]: a model's price per million tokens, for an agent "
     "without a control plane (repeatable; ';'-separated in the environment)"},
    {"node.labels", "--label", "INFERMESH_LABELS", K_LABEL, F(cluster.labels), "KEY=VALUE label (repeatable)"},
    {"data_dir", "--data-dir", "INFERMESH_DATA_DIR", K_STR, F(cluster.data_dir),
     "node identity and cluster key (/var/lib/infermesh as root, else ~/.local/share/infermesh)"},
    {"cluster.gossip", "--gossip", "INFERMESH_GOSSIP", K_STR, F(cluster.gossip),
     "HOST:PORT for gossip, UDP and TCP (127.0.0.1:7946); only with a cluster key"},
    {"cluster.advertise", "--advertise", "INFERMESH_ADVERTISE", K_STR, F(cluster.advertise),
     "HOST:PORT other nodes use to reach the gossip port (default: the --gossip address)"},
    {"cluster.join", "--join", "INFERMESH_JOIN", K_JOIN, 0, 0,
     "invite token (infermesh invite) or seed HOST:PORT to join (repeatable)"},
    {"cluster.probe_interval_ms", "--probe-interval-ms", "INFERMESH_PROBE_INTERVAL_MS", K_U32,
     F(cluster.probe_interval_ms), "SWIM: one failure probe per interval (250)"},
    {"cluster.probe_timeout_ms", "--probe-timeout-ms", "INFERMESH_PROBE_TIMEOUT_MS", K_U32,
     F(cluster.probe_timeout_ms), "SWIM: direct probe deadline before indirect probes"},
    {"cluster.gossip_interval_ms", "--gossip-interval-ms", "INFERMESH_GOSSIP_INTERVAL_MS", K_U32,
     F(cluster.gossip_interval_ms), "SWIM: how often pending updates are gossiped"},
    {"cluster.suspicion_mult", "--suspicion-mult", "INFERMESH_SUSPICION_MULT", K_INT, F(cluster.suspicion_mult),
     "SWIM: suspicion timeout = MULT x log10(N) x probe interval, at least"},
    {"cluster.indirect_checks", "--indirect-checks", "INFERMESH_INDIRECT_CHECKS", K_INT, F(cluster.indirect_checks),
     "SWIM: helpers asked to probe a node that missed a direct probe"},
    {"cluster.gossip_nodes", "--gossip-nodes", "INFERMESH_GOSSIP_NODES", K_INT, F(cluster.gossip_nodes),
     "SWIM: members each gossip round goes to"},
    {"cluster.server", "--server", "INFERMESH_SERVER", K_BOOL, F(cluster.server),
     "run a Raft server of the control plane (voter; `--server` alone means true)"},
    {"cluster.bootstrap_expect", "--bootstrap-expect", "INFERMESH_BOOTSTRAP_EXPECT", K_INT,
     F(cluster.bootstrap_expect), "servers: form the first cluster once this many servers are alive (e.g. 3)"},
    {"cluster.raft", "--raft", "INFERMESH_RAFT", K_STR, F(cluster.raft),
     "servers: HOST:PORT for Raft traffic (default: gossip host, gossip port + 1)"},
    {"cluster.admin_token", "--admin-token", "INFERMESH_ADMIN_TOKEN", K_STR, F(cluster.admin_token),
     "changes to the mesh (control-plane writes, drain, leave, model load) need `Authorization: Bearer TOKEN`; "
     "with tenants configured it also reads the cluster views"},
    {"cluster.read_token", "--read-token", "INFERMESH_READ_TOKEN", K_STR, F(cluster.read_token),
     "with tenants configured, reads the cluster views and /metrics (`Authorization: Bearer TOKEN`) and changes "
     "nothing: for Prometheus and dashboards"},
    {"cluster.insecure_hops", "--insecure-hops", "INFERMESH_INSECURE_HOPS", K_BOOL, F(cluster.insecure_hops),
     "send requests and control calls to other agents as plaintext HTTP instead of through the encrypted tunnel "
     "(benchmarks, or a mesh with agents older than the tunnel); never across an untrusted network"},
    {"cluster.tunnel_allow", "--tunnel-allow", "INFERMESH_TUNNEL_ALLOW", K_STR, F(cluster.tunnel_allow),
     "loopback ports of this node other members may reach through the tunnel besides its API (e.g. an "
     "rpc-server's: 50052,50053)"},
    {"cluster.tunnel_forward", "--tunnel-forward", "INFERMESH_TUNNEL_FORWARD", K_STR, F(cluster.tunnel_forward),
     "local forwarders through the tunnel: [HOST:]PORT=NODE:PORT,... (connections to 127.0.0.1:PORT reach "
     "port PORT on member NODE's loopback, which that node must allow)"},
    {"cluster.rpc_server", "--rpc-server", "INFERMESH_RPC_SERVER", K_STR, F(cluster.rpc_server),
     "offer this node's memory for split models (role rpc, labels rpc=PORT and rpc_mem_mb): when a split host's "
     "agent leases it, run this llama.cpp rpc-server binary on 127.0.0.1 under supervision, reachable by that "
     "host through the tunnel only, until the host releases it or leaves the mesh"},
    {"cluster.rpc_port", "--rpc-port", "INFERMESH_RPC_PORT", K_INT, F(cluster.rpc_port),
     "the rpc-server's loopback port (50052)"},
    {"cluster.split_target", "--split-target", "INFERMESH_SPLIT_TARGET", K_STR, F(cluster.split_target),
     "a split model: the runtime (--target NAME=URL) whose llama-server this agent starts with --split-exec over "
     "other members' rpc-servers"},
    {"cluster.split_workers", "--split-workers", "INFERMESH_SPLIT_WORKERS", K_INT, F(cluster.split_workers),
     "a split model: how many rpc workers (members started with --rpc-server) to lease (1)"},
    {"cluster.split_exec", "--split-exec", "INFERMESH_SPLIT_EXEC", K_STR, F(cluster.split_exec),
     "a split model: the llama-server command; {rpc} becomes the workers' forwarded addresses, e.g. "
     "'llama-server -m M.gguf --port 8102 -ngl 99 --rpc {rpc}'"},
    {"insecure_no_auth", "--insecure-no-auth", "INFERMESH_INSECURE_NO_AUTH", K_BOOL, F(insecure_no_auth),
     "serve a listener beyond loopback without API keys (tenants); never in production"},
    {"tls.cert", "--tls-cert", "INFERMESH_TLS_CERT", K_STR, F(tls.cert),
     "PEM certificate (then its chain) of the HTTPS listener; with tls.key the listener speaks only TLS 1.2+, "
     "reloaded on SIGHUP"},
    {"tls.key", "--tls-key", "INFERMESH_TLS_KEY", K_STR, F(tls.key), "PEM private key of tls.cert"},
    {"tls.client_ca", "--tls-client-ca", "INFERMESH_TLS_CLIENT_CA", K_STR, F(tls.client_ca),
     "PEM CA certificates: clients may present a certificate they signed (one that does not verify is refused)"},
    {"tls.client_map", "--tls-client-map", "INFERMESH_TLS_CLIENT_MAP", K_TLSMAP, 0, 0,
     "CN=ROLE: a verified client certificate with this subject CN acts as ROLE's credential, admin (the admin "
     "token) or a tenant's name (its key) (repeatable; env: comma-separated; YAML: client_map: {CN: ROLE})"},
    {"routing.policy", "--routing-policy", "INFERMESH_ROUTING_POLICY", K_STR, F(routing_policy),
     "how targets are chosen: ours (prefix- and load-aware, the default), round-robin, least-request, "
     "power-of-two, sglang, llm-d"},
    {"runtimes", "--target", "INFERMESH_TARGETS", K_RUNTIME, 0, 0,
     "[NAME=]URL[#kind=KIND][&alias=NAME][&api_key=KEY][&kv_events=EP] of a runtime, e.g. http://127.0.0.1:8000 or "
     "sg=http://127.0.0.1:30000#kind=sglang; KIND: vllm (the default), sglang, tgi, llamacpp, triton, "
     "ollama; alias: the name clients use for its model (the runtime still gets its own); api_key: sent to "
     "it as `Authorization: Bearer KEY`; kv_events: its KV-cache event publisher, tcp://HOST:PORT "
     "(repeatable; env: comma-separated)"},
    {"aliases", "--alias", "INFERMESH_ALIASES", K_ALIAS, 0, 0,
     "NAME=MODEL: clients may ask for MODEL (a model a target serves, or a runtime's alias) as NAME; listed "
     "in /v1/models (repeatable; env: comma-separated; YAML: aliases: {NAME: MODEL})"},
    {"scrape_interval_ms", "--scrape-interval-ms", "INFERMESH_SCRAPE_INTERVAL_MS", K_U32, F(scrape_interval_ms),
     "how often runtimes' /metrics are read (500)"},
    {"drain_timeout_ms", "--drain-timeout-ms", "INFERMESH_DRAIN_TIMEOUT_MS", K_U32, F(drain_timeout_ms),
     "on SIGTERM, longest wait for in-flight requests (30000)"},
    {"upstream_timeout_ms", "--upstream-timeout-ms", "INFERMESH_UPSTREAM_TIMEOUT_MS", K_U32,
     F(upstream_timeout_ms), "longest silence from a runtime before the attempt fails (300000)"},
    {"max_attempts", "--max-attempts", "INFERMESH_MAX_ATTEMPTS", K_INT, F(max_attempts),
     "tries per request on distinct targets before the first byte (3)"},
    {"max_targets", "--max-targets", "INFERMESH_MAX_TARGETS", K_INT, F(max_targets),
     "routing targets (runtimes of this node and of the mesh's other nodes) this node can route to (1024)"},
    {"bench_targets", "--bench-targets", "INFERMESH_BENCH_TARGETS", K_INT, F(bench_targets),
     "BENCHMARKS ONLY: N more local targets, each a copy of a configured runtime (round robin, named "
     "NAME~bN), so that one agent ranks many real targets served by few engines (0)"},
    {"first_byte_timeout_ms", "--first-byte-timeout-ms", "INFERMESH_FIRST_BYTE_TIMEOUT_MS", K_U32,
     F(first_byte_timeout_ms),
     "least time an attempt may go without a first byte for the client before it is retried elsewhere; the "
     "deadline is 4x the target's observed p95 time to first token (2000)"},
    {"first_byte_timeout_max_ms", "--first-byte-timeout-max-ms", "INFERMESH_FIRST_BYTE_TIMEOUT_MAX_MS", K_U32,
     F(first_byte_timeout_max_ms),
     "most time an attempt may go without a first byte (a non-streaming response counts whole), and the "
     "deadline while nothing is known of the target (60000)"},
    {"breaker.failures", "--breaker-failures", "INFERMESH_BREAKER_FAILURES", K_INT, F(breaker_failures),
     "consecutive failed attempts that take a target out of routing for a backoff; 0 = no breaker (5)"},
    {"breaker.backoff_ms", "--breaker-backoff-ms", "INFERMESH_BREAKER_BACKOFF_MS", K_U32,
     F(breaker_backoff_ms),
     "first breaker backoff, doubled after each failed probe up to 30x (1000)"},
    {"limits.max_body_bytes", "--max-body-bytes", "INFERMESH_MAX_BODY_BYTES", K_SIZE, F(limits.max_body),
     "largest request body (8388608)"},
    {"limits.max_header_bytes", "--max-header-bytes", "INFERMESH_MAX_HEADER_BYTES", K_SIZE,
     F(limits.max_header_bytes), "largest request head (16384)"},
    {"limits.header_timeout_ms", "--header-timeout-ms", "INFERMESH_HEADER_TIMEOUT_MS", K_U32,
     F(limits.header_timeout_ms), "time allowed to send the request head (10000)"},
    {"limits.body_timeout_ms", "--body-timeout-ms", "INFERMESH_BODY_TIMEOUT_MS", K_U32, F(limits.body_timeout_ms),
     "time allowed to send the request body (30000)"},
    {"limits.idle_timeout_ms", "--idle-timeout-ms", "INFERMESH_IDLE_TIMEOUT_MS", K_U32, F(limits.idle_timeout_ms),
     "idle keep-alive connections close after this (60000)"},
    {"limits.max_buffered_body_bytes", "--max-buffered-body-bytes", "INFERMESH_MAX_BUFFERED_BODY_BYTES",
     K_SIZE, F(limits.max_buffered_bodies),
     "request bodies over 64 KiB held at once, all connections together; beyond: 503 + Retry-After; "
     "0 = no bound (67108864)"},
    {"limits.fd_reserve", "--fd-reserve", "INFERMESH_FD_RESERVE", K_INT, F(limits.fd_reserve),
     "descriptors kept free below RLIMIT_NOFILE: a connection accepted within them gets 503 (64)"},
    {"limits.max_event_streams", "--max-event-streams", "INFERMESH_MAX_EVENT_STREAMS", K_INT,
     F(events_max_streams), "open /v1/cluster/events streams, all clients together; beyond: 503 (64)"},
    {"limits.max_event_streams_per_client", "--max-event-streams-per-client",
     "INFERMESH_MAX_EVENT_STREAMS_PER_CLIENT", K_INT, F(events_max_per_client),
     "open /v1/cluster/events streams per client IP address; beyond: 429 (8)"},
    {"supervisor.health_timeout_ms", "--runtime-health-timeout-ms", "INFERMESH_RUNTIME_HEALTH_TIMEOUT_MS", K_U32,
     F(sup.health_timeout_ms), "runtimes with exec: longest wait to become healthy after a start (600000)"},
    {"supervisor.stop_grace_ms", "--runtime-stop-grace-ms", "INFERMESH_RUNTIME_STOP_GRACE_MS", K_U32,
     F(sup.stop_grace_ms), "runtimes with exec: SIGTERM to SIGKILL on stop (10000)"},
    {"supervisor.backoff_ms", "--runtime-backoff-ms", "INFERMESH_RUNTIME_BACKOFF_MS", K_U32, F(sup.backoff_ms),
     "runtimes with exec: first restart delay after a crash, doubled per recent crash (1000)"},
    {"supervisor.backoff_max_ms", "--runtime-backoff-max-ms", "INFERMESH_RUNTIME_BACKOFF_MAX_MS", K_U32,
     F(sup.backoff_max_ms), "runtimes with exec: longest restart delay (30000)"},
    {"supervisor.crash_loop_restarts", "--runtime-crash-loop-restarts", "INFERMESH_RUNTIME_CRASH_LOOP_RESTARTS",
     K_INT, F(sup.crash_loop_restarts), "runtimes with exec: exits within the window that make a crash loop (5)"},
    {"supervisor.crash_loop_window_ms", "--runtime-crash-loop-window-ms", "INFERMESH_RUNTIME_CRASH_LOOP_WINDOW_MS",
     K_U32, F(sup.crash_loop_window_ms), "runtimes with exec: the crash-loop window (300000)"},
    {"tenants", "--tenant", "INFERMESH_TENANTS", K_TENANT, 0, 0,
     "tenant name=N,key=K[,weight=W,priority=high|normal|low,requests_per_s=R,tokens_per_min=T,max_concurrent=C,"
     "slo=latency|throughput] (repeatable; env: ';'-separated); with tenants every request needs its key"},
    {"admission.queue_max", "--queue-max", "INFERMESH_QUEUE_MAX", K_INT, F(adm.queue_max),
     "requests that may wait while every target is saturated; beyond: 429 (1024)"},
    {"admission.queue_timeout_ms", "--queue-timeout-ms", "INFERMESH_QUEUE_TIMEOUT_MS", K_U32, F(adm.queue_timeout_ms),
     "longest wait in that queue; then 503 (30000)"},
    {"admission.max_waiting", "--max-waiting", "INFERMESH_MAX_WAITING", K_INT, F(adm.max_waiting),
     "a target with this many waiting requests is saturated (queue in the agent); 0 = only the KV budget counts (0)"},
    {"admission.kv_budget", "--kv-budget", "INFERMESH_KV_BUDGET", K_BOOL, F(adm.kv_budget),
     "reserve prompt + max_tokens against each target's free KV cache: true|false (true)"},
    {"admission.default_max_tokens", "--default-max-tokens", "INFERMESH_DEFAULT_MAX_TOKENS", K_INT,
     F(adm.default_max_tokens), "KV reserved for the output of a request without max_tokens (256)"},
    {"hedging.delay_ms", "--hedge-delay-ms", "INFERMESH_HEDGE_DELAY_MS", K_U32, F(hedge_delay_ms),
     "latency-class requests: hedge delay until a target has enough samples for its p95 TTFT (500)"},
    {"hedging.min_samples", "--hedge-min-samples", "INFERMESH_HEDGE_MIN_SAMPLES", K_INT, F(hedge_min_samples),
     "first-byte samples of a target before its p95 sets the hedge delay (20)"},
    {"tracing.endpoint", "--otlp-endpoint", "INFERMESH_OTLP_ENDPOINT", K_STR, F(trace_endpoint),
     "export OpenTelemetry traces to this OTLP/HTTP collector, http://HOST:PORT[/PATH] (POST PATH/v1/traces, "
     "protobuf); also OTEL_EXPORTER_OTLP_ENDPOINT. Unset: tracing is off"},
    {"tracing.sample_ratio", "--trace-sample", "INFERMESH_TRACE_SAMPLE", K_DBL, F(trace_sample_ratio),
     "share of new traces recorded, 0..1 (1; also OTEL_TRACES_SAMPLER_ARG); a request whose traceparent is "
     "sampled is always recorded"},
    {"tracing.service_name", "--trace-service-name", "INFERMESH_TRACE_SERVICE_NAME", K_STR, F(trace_service_name),
     "service.name of the spans (infermesh; also OTEL_SERVICE_NAME)"},
    {"hedging.max_fraction", "--hedge-max-fraction", "INFERMESH_HEDGE_MAX_FRACTION", K_DBL, F(hedge_max_fraction),
     "hedged copies as a share of all requests, 0..1; 0 = never hedge (0.05)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

void config_defaults(struct agent_config *c) {
  memset(c, 0, sizeof *c);
  str_copy(c->node_name, sizeof c->node_name, "local");
  str_copy(c->listen_host, sizeof c->listen_host, "127.0.0.1");
  c->listen_port = 8080;
  str_copy(c->log_level, sizeof c->log_level, "info");
  c->ledger_enabled = true;
  c->scrape_interval_ms = 500;
  c->drain_timeout_ms = 30000;
  c->upstream_timeout_ms = 300000;
  c->max_attempts = 3;
  c->max_targets = STORE_DEFAULT_MAX_TARGETS;
  c->first_byte_timeout_ms = 2000;
  c->first_byte_timeout_max_ms = 60000;
  c->breaker_failures = 5;
  c->breaker_backoff_ms = 1000;
  http_limits_default(&c->limits);
  c->events_max_streams = 64;
  c->events_max_per_client = 8;
  c->sup.health_timeout_ms = 600000;
  c->sup.stop_grace_ms = 10000;
  c->sup.backoff_ms = 1000;
  c->sup.backoff_max_ms = 30000;
  c->sup.crash_loop_restarts = 5;
  c->sup.crash_loop_window_ms = 300000;
  str_copy(c->cluster.gossip, sizeof c->cluster.gossip, "127.0.0.1:7946");
  adm_opts_default(&c->adm);
  c->hedge_delay_ms = 500;
  c->hedge_min_samples = 20;
  c->hedge_max_fraction = 0.05;
  c->trace_sample_ratio = -1;
}

/* Tracing's settings: OpenTelemetry's standard variables where nothing of ours set them, then checked. */
static int tracing_check(struct agent_config *c, char *err, size_t errlen) {
  const char *e = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  if (!c->trace_endpoint[0] && e && *e) str_copy(c->trace_endpoint, sizeof c->trace_endpoint, e);
  e = getenv("OTEL_SERVICE_NAME");
  if (!c->trace_service_name[0]) str_copy(c->trace_service_name, sizeof c->trace_service_name, e && *e ? e : "infermesh");
  e = getenv("OTEL_TRACES_SAMPLER_ARG");
  if (c->trace_sample_ratio < 0 && e && *e) {
    char *end;
    errno = 0;
    double d = strtod(e, &end);
    if (*end || errno || !isfinite(d) || d < 0 || d > 1) {
      snprintf(err, errlen, "OTEL_TRACES_SAMPLER_ARG: '%s' is not a number from 0 to 1", e);
      return -EINVAL;
    }
    c->trace_sample_ratio = d;
  }
  if (c->trace_sample_ratio < 0) c->trace_sample_ratio = 1;
  char host[128], path[256];
  int port;
  return c->trace_endpoint[0]
             ? trace_endpoint_parse(c->trace_endpoint, host, sizeof host, &port, path, sizeof path, err, errlen)
             : 0;
}

/* A list setting from a later source replaces the earlier one, like runtimes. */
static int add_join(struct agent_config *c, int source, const char *v, char *err, size_t errlen) {
  struct config_cluster *cl = &c->cluster;
  if (source > cl->join_source) {
    cl->njoin = 0;
    cl->join_source = source;
  }
  if (cl->njoin == CONFIG_MAX_JOIN || strlen(v) >= sizeof cl->join[0]) {
    snprintf(err, errlen, "--join: at most %d entries of at most %zu characters", CONFIG_MAX_JOIN,
             sizeof cl->join[0] - 1);
    return -EINVAL;
  }
  str_copy(cl->join[cl->njoin++], sizeof cl->join[0], v);
  return 0;
}

/* NAME=MODEL from source (1 file, 2 flags, 3 environment): a later source replaces the list. */
static bool name_char_ok(char ch) {
  return (unsigned char)ch > 0x20 && ch != 0x7f && ch != '"' && ch != '\\';
}

static int add_alias(struct agent_config *c, int source, const char *name, size_t nlen, const char *model,
                     char *err, size_t errlen) {
  if (c->aliases_source != source) c->naliases = 0, c->aliases_source = source;
  bool ok = nlen > 0 && nlen < sizeof c->aliases[0].name && model[0] &&
            strlen(model) < sizeof c->aliases[0].model;
  for (size_t i = 0; ok && i < nlen; i++) ok = name_char_ok(name[i]);
  for (const char *q = model; ok && *q; q++) ok = name_char_ok(*q);
  if (!ok) {
    snprintf(err, errlen, "alias '%.*s=%s' must be NAME=MODEL (no spaces, quotes or backslashes)", (int)nlen,
             name, model);
    return -EINVAL;
  }
  if (c->naliases >= MODEL_ALIASES_MAX) {
    snprintf(err, errlen, "too many aliases (at most %d)", MODEL_ALIASES_MAX);
    return -EINVAL;
  }
  struct model_alias *a = &c->aliases[c->naliases++];
  snprintf(a->name, sizeof a->name, "%.*s", (int)nlen, name);
  str_copy(a->model, sizeof a->model, model);
  return 0;
}

static int add_label(struct agent_config *c, const char *v, char *err, size_t errlen) {
  char *l = c->cluster.labels;
  size_t n = strlen(l);
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || strchr(v, ',') || n + strlen(v) + 2 > sizeof c->cluster.labels) {
    snprintf(err, errlen, "label '%s' must look like KEY=VALUE (no commas; %zu characters in all)", v,
             sizeof c->cluster.labels - 1);
    return -EINVAL;
  }
  snprintf(l + n, sizeof c->cluster.labels - n, "%s%s", n ? "," : "", v);
  return 0;
}

void config_usage(FILE *f) {
  fprintf(f, "usage: infermesh agent [--config FILE] [flags]\n\n"
             "Runs the node daemon: the OpenAI-compatible endpoint, routing to the runtimes given with --target.\n"
             "Precedence: the YAML file, then flags, then INFERMESH_* environment variables.\n"
             "In YAML, runtimes: [{kind: vllm, url: http://127.0.0.1:8001, name: N, exec: \"COMMAND\"}]; with exec\n"
             "the agent starts the runtime itself, restarts it when it dies and stops it on shutdown.\n\nflags:\n"
             "  %-24s %s\n",
          "--config FILE", "YAML configuration file");
  for (size_t i = 0; i < NKEYS; i++) fprintf(f, "  %-24s %s  [yaml: %s, env: %s]\n", keys[i].flag, keys[i].help, keys[i].path, keys[i].env);
}

static int parse_listen(struct agent_config *c, const char *v, char *err, size_t errlen) {
  const char *colon = strrchr(v, ':');
  char *end;
  if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->listen_host) goto bad;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) goto bad;
  const char *h = v;
  size_t hl = (size_t)(colon - v);
  if (h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
  memcpy(c->listen_host, h, hl);
  c->listen_host[hl] = '\0';
  c->listen_port = (int)port;
  return 0;
bad:
  snprintf(err, errlen, "listen address '%s' is not HOST:PORT (e.g. 127.0.0.1:8080)", v);
  return -EINVAL;
}

/* known_kinds writes "vllm, sglang, ..." (every kind runtime_kind_parse accepts, by its canonical name). */
static void known_kinds(char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (int i = 0; i < RT_KIND_COUNT && n < cap; i++) {
    int w = snprintf(out + n, cap - n, "%s%s", i ? ", " : "", runtime_kind_name((enum runtime_kind)i));
    if (w < 0) break;
    n += (size_t)w;
  }
}

static int add_runtime(struct agent_config *c, int source, const char *kind, const char *url, const char *name,
                       const char *exec, char *err, size_t errlen) {
  if (source > c->runtimes_source) {
    c->nruntimes = 0; /* runtimes from a higher-precedence source replace, not extend, the list */
    c->runtimes_source = source;
  }
  if (c->nruntimes == CONFIG_MAX_RUNTIMES) {
    snprintf(err, errlen, "too many runtimes (at most %d)", CONFIG_MAX_RUNTIMES);
    return -EINVAL;
  }
  if (strncmp(url, "http://", 7) != 0 || strlen(url) >= sizeof c->runtimes[0].url) {
    snprintf(err, errlen, "runtime URL '%s' must look like http://HOST:PORT", url);
    return -EINVAL;
  }
  enum runtime_kind k;
  if (runtime_kind_parse(kind, &k) != 0) {
    char known[128];
    known_kinds(known, sizeof known);
    snprintf(err, errlen, "runtime kind '%s' is unknown (known: %s)", kind, known);
    return -EINVAL;
  }
  if (exec && strlen(exec) >= sizeof c->runtimes[0].exec) {
    snprintf(err, errlen, "runtime exec command is too long (at most %zu characters)",
             sizeof c->runtimes[0].exec - 1);
    return -EINVAL;
  }
  struct config_runtime *r = &c->runtimes[c->nruntimes++];
  str_copy(r->kind, sizeof r->kind, runtime_kind_name(k)); /* canonical: "SGLang" -> "sglang" */
  str_copy(r->url, sizeof r->url, url);
  str_copy(r->name, sizeof r->name, name ? name : "");
  str_copy(r->exec, sizeof r->exec, exec ? exec : "");
  return 0;
}

/* Alias and API key of the runtime added last. */
static int runtime_extras(struct agent_config *c, const char *alias, const char *api_key, char *err,
                          size_t errlen) {
  struct config_runtime *r = &c->runtimes[c->nruntimes - 1];
  if (strlen(alias) >= sizeof r->alias || strlen(api_key) >= sizeof r->api_key) {
    snprintf(err, errlen, "runtime alias or api_key too long (at most %zu and %zu characters)",
             sizeof r->alias - 1, sizeof r->api_key - 1);
    return -EINVAL;
  }
  for (const char *q = alias; *q; q++)
    if (!name_char_ok(*q)) {
      snprintf(err, errlen, "runtime alias '%s': no spaces, quotes, backslashes or control characters",
               alias);
      return -EINVAL;
    }
  for (const char *q = api_key; *q; q++)
    if ((unsigned char)*q < 0x21 || *q == 0x7f) {
      snprintf(err, errlen, "runtime api_key: no spaces or control characters");
      return -EINVAL;
    }
  str_copy(r->alias, sizeof r->alias, alias);
  str_copy(r->api_key, sizeof r->api_key, api_key);
  return 0;
}

/* KV-cache event endpoint of the runtime added last: the agent connects, so no wildcard. */
static int runtime_kv_events(struct agent_config *c, const char *v, char *err, size_t errlen) {
  struct config_runtime *r = &c->runtimes[c->nruntimes - 1];
  bool ok = (strncmp(v, "tcp://", 6) == 0 && strchr(v + 6, ':') && !strchr(v, '*')) ||
            (strncmp(v, "ipc://", 6) == 0 && v[6]);
  if (!ok || strlen(v) >= sizeof r->kv_events) {
    snprintf(err, errlen,
             "runtime kv_events '%s' must be tcp://HOST:PORT or ipc://PATH (the runtime's --kv-events-config "
             "endpoint, as this agent dials it)",
             v);
    return -EINVAL;
  }
  str_copy(r->kv_events, sizeof r->kv_events, v);
  return 0;
}

static int set_key(struct agent_config *c, const struct key *k, const char *v, int source, const char *src,
                   char *err, size_t errlen) {
  char *base = (char *)c + k->off;
  char *end;
  switch (k->type) {
  case K_STR:
    if (strlen(v) >= k->size) {
      snprintf(err, errlen, "%s: value too long (at most %zu characters)", src, k->size - 1);
      return -EINVAL;
    }
    str_copy(base, k->size, v);
    return 0;
  case K_LISTEN: return parse_listen(c, v, err, errlen);
  case K_BOOL:
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
      *(bool *)base = v[0] == 't';
      return 0;
    }
    snprintf(err, errlen, "%s: '%s' is not true or false", src, v);
    return -EINVAL;
  case K_DBL: {
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end || errno || !isfinite(d) || d < 0 || d > 1) {
      snprintf(err, errlen, "%s: '%s' is not a number from 0 to 1", src, v);
      return -EINVAL;
    }
    *(double *)base = d;
    return 0;
  }
  case K_TENANT: {
    /* One spec per flag, ';'-separated in the environment. v is argv or environ memory: it is parsed from a
     * copy and then wiped, so the keys do not linger in this process (or show in ps). */
    char tmp[4096];
    if (strlen(v) >= sizeof tmp) {
      snprintf(err, errlen, "%s: value too long (at most %zu characters)", src, sizeof tmp - 1);
      return -EINVAL;
    }
    str_copy(tmp, sizeof tmp, v);
    sodium_memzero((char *)v, strlen(v));
    int rc = 0;
    for (char *sp = tmp, *next; sp && *sp && !rc; sp = next) {
      next = source == 3 ? strchr(sp, ';') : NULL;
      if (next) *next++ = '\0';
      rc = config_tenant_add(c, source, sp, err, errlen);
    }
    sodium_memzero(tmp, sizeof tmp);
    return rc;
  }
  case K_PRICE: {
    char tmp[4096];
    if (strlen(v) >= sizeof tmp) {
      snprintf(err, errlen, "%s: value too long (at most %zu characters)", src, sizeof tmp - 1);
      return -EINVAL;
    }
    str_copy(tmp, sizeof tmp, v);
    int rc = 0;
    for (char *sp = tmp, *next; sp && *sp && !rc; sp = next) {
      next = source == 3 ? strchr(sp, ';') : NULL;
      if (next) *next++ = '\0';
      rc = config_price_add(c, source, sp, err, errlen);
    }
    return rc;
  }
  case K_ALIAS: {
    char tmp[4096];
    str_copy(tmp, sizeof tmp, v);
    for (char *s = tmp, *next; s && *s; s = next) {
      next = source == 3 ? strchr(s, ',') : NULL;
      if (next) *next++ = '\0';
      const char *eq = strchr(s, '=');
      int rc = eq ? add_alias(c, source, s, (size_t)(eq - s), eq + 1, err, errlen) : -EINVAL;
      if (!eq) snprintf(err, errlen, "%s: '%s' must be NAME=MODEL", src, s);
      if (rc) return rc;
    }
    return 0;
  }
  case K_TLSMAP: {
    char tmp[4096];
    str_copy(tmp, sizeof tmp, v);
    for (char *s = tmp, *next; s && *s; s = next) {
      next = source == 3 ? strchr(s, ',') : NULL;
      if (next) *next++ = '\0';
      int rc = config_tls_map_add(c, source, s, src, err, errlen);
      if (rc) return rc;
    }
    return 0;
  }
  case K_LABEL: {
    char tmp[256];
    str_copy(tmp, sizeof tmp, v);
    for (char *s = tmp, *next; s && *s; s = next) {
      next = strchr(s, ',');
      if (next) *next++ = '\0';
      int rc = add_label(c, s, err, errlen);
      if (rc) return rc;
    }
    return 0;
  }
  case K_JOIN: {
    char tmp[4096];
    if (source != 3) return add_join(c, source, v, err, errlen);
    str_copy(tmp, sizeof tmp, v);
    for (char *s = tmp, *next; s && *s; s = next) {
      next = strchr(s, ',');
      if (next) *next++ = '\0';
      int rc = add_join(c, source, s, err, errlen);
      if (rc) return rc;
    }
    return 0;
  }
  case K_RUNTIME: {
    /* comma-separated list in the environment; one URL per flag */
    char tmp[4096];
    str_copy(tmp, sizeof tmp, v);
    for (char *s = tmp, *next; s && *s; s = next) {
      next = strchr(s, ',');
      if (next) *next++ = '\0';
      /* [NAME=]URL[#OPT=V&OPT=V...]: NAME=URL names the target (a bare URL is named host:port); options:
       * kind=KIND says which runtime it is (vllm when absent), alias=NAME the name clients use for its model,
       * api_key=KEY what the runtime wants in `Authorization: Bearer`. A base URL has no fragment: '#' is
       * free. */
      const char *kind = "vllm", *name = NULL, *alias = "", *api_key = "", *kv = "";
      char *hash = strchr(s, '#');
      if (hash) {
        *hash = '\0';
        for (char *o = hash + 1, *onext; o; o = onext) {
          onext = strchr(o, '&');
          if (onext) *onext++ = '\0';
          if (strncmp(o, "kind=", 5) == 0 && o[5])
            kind = o + 5;
          else if (strncmp(o, "alias=", 6) == 0 && o[6])
            alias = o + 6;
          else if (strncmp(o, "api_key=", 8) == 0 && o[8])
            api_key = o + 8;
          else if (strncmp(o, "kv_events=", 10) == 0 && o[10])
            kv = o + 10;
          else {
            char known[128];
            known_kinds(known, sizeof known);
            snprintf(err, errlen,
                     "%s: '#%s' after the URL must be #kind=KIND[&alias=NAME][&api_key=KEY][&kv_events=EP], KIND one "
                     "of: %s",
                     src, o, known);
            return -EINVAL;
          }
        }
      }
      char *eq = strchr(s, '='), *scheme = strstr(s, "://");
      if (eq && scheme && eq < scheme) *eq = '\0', name = s, s = eq + 1;
      int rc = add_runtime(c, source, kind, s, name, NULL, err, errlen);
      if (!rc) rc = runtime_extras(c, alias, api_key, err, errlen);
      if (!rc && kv[0]) rc = runtime_kv_events(c, kv, err, errlen);
      if (rc) { /* name the flag (or variable) */
        char msg[256];
        str_copy(msg, sizeof msg, err);
        snprintf(err, errlen, "%s: %s", src, msg);
        return rc;
      }
    }
    return 0;
  }
  default: break;
  }
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (*v == '\0' || *end || errno || n < 0 || (k->type != K_SIZE && n > INT32_MAX)) {
    snprintf(err, errlen, "%s: '%s' is not a non-negative integer", src, v);
    return -EINVAL;
  }
  if (k->type == K_U32)
    *(uint32_t *)base = (uint32_t)n;
  else if (k->type == K_INT)
    *(int *)base = (int)n;
  else
    *(size_t *)base = (size_t)n;
  return 0;
}

static const struct key *find_path(const char *path) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].path, path) == 0) return &keys[i];
  return NULL;
}

/* ---- YAML ---- */

static int yaml_runtimes(struct agent_config *c, yaml_document_t *d, yaml_node_t *seq, const char *file, char *err,
                         size_t errlen) {
  if (seq->type != YAML_SEQUENCE_NODE) {
    snprintf(err, errlen, "%s: 'runtimes' must be a list", file);
    return -EINVAL;
  }
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *m = yaml_document_get_node(d, *it);
    const char *kind = "vllm", *url = NULL, *name = NULL, *exec = NULL, *alias = "", *api_key = "", *kv = "";
    char gpus[256] = "", murl[160] = "";
    if (!m || m->type != YAML_MAPPING_NODE) {
      snprintf(err, errlen, "%s: each runtime must be a mapping like {kind: vllm, url: http://...}", file);
      return -EINVAL;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
      if (k->type != YAML_SCALAR_NODE) continue;
      const char *ks = (const char *)k->data.scalar.value;
      if (strcmp(ks, "gpus") == 0) {
        /* a list ([0, 1]) or a CUDA_VISIBLE_DEVICES-style string ("0,1") */
        gpus[0] = '\0';
        if (v->type == YAML_SCALAR_NODE) {
          str_copy(gpus, sizeof gpus, (const char *)v->data.scalar.value);
        } else if (v->type == YAML_SEQUENCE_NODE) {
          for (yaml_node_item_t *gi = v->data.sequence.items.start; gi < v->data.sequence.items.top; gi++) {
            yaml_node_t *e = yaml_document_get_node(d, *gi);
            if (!e || e->type != YAML_SCALAR_NODE) break;
            size_t n = strlen(gpus);
            snprintf(gpus + n, sizeof gpus - n, "%s%s", n ? "," : "", (const char *)e->data.scalar.value);
          }
        }
        continue;
      }
      if (v->type != YAML_SCALAR_NODE) {
        snprintf(err, errlen, "%s: runtime key '%s' must be a single value", file, ks);
        return -EINVAL;
      }
      const char *vs = (const char *)v->data.scalar.value;
      if (strcmp(ks, "kind") == 0)
        kind = vs;
      else if (strcmp(ks, "url") == 0)
        url = vs;
      else if (strcmp(ks, "name") == 0)
        name = vs;
      else if (strcmp(ks, "exec") == 0)
        exec = vs;
      else if (strcmp(ks, "alias") == 0)
        alias = vs;
      else if (strcmp(ks, "api_key") == 0)
        api_key = vs;
      else if (strcmp(ks, "kv_events") == 0)
        kv = vs;
      else if (strcmp(ks, "metrics_url") == 0) {
        /* http://HOST:PORT, or that with the /metrics path, which is the only one read */
        char host[96];
        int port;
        size_t n = strlen(vs), sfx = strlen("/metrics");
        str_copy(murl, sizeof murl, vs);
        if (n > sfx && n < sizeof murl && strcmp(murl + n - sfx, "/metrics") == 0) murl[n - sfx] = '\0';
        if (n >= sizeof murl || store_parse_url(murl, host, sizeof host, &port) != 0) {
          snprintf(err, errlen, "%s: metrics_url '%s' must be http://HOST:PORT (the runtime's /metrics there)", file,
                   vs);
          return -EINVAL;
        }
      } else {
        snprintf(err, errlen,
                 "%s: unknown runtime key '%s' (known: kind, url, name, exec, gpus, metrics_url, alias, "
                 "api_key, kv_events)",
                 file, ks);
        return -EINVAL;
      }
    }
    if (!url) {
      snprintf(err, errlen, "%s: a runtime has no 'url'", file);
      return -EINVAL;
    }
    int rc = add_runtime(c, 1, kind, url, name, exec, err, errlen);
    if (!rc) rc = runtime_extras(c, alias, api_key, err, errlen);
    if (!rc && kv[0]) rc = runtime_kv_events(c, kv, err, errlen);
    if (rc) return rc;
    str_copy(c->runtimes[c->nruntimes - 1].gpus, sizeof c->runtimes[0].gpus, gpus);
    str_copy(c->runtimes[c->nruntimes - 1].metrics_url, sizeof c->runtimes[0].metrics_url, murl);
  }
  return 0;
}

static int yaml_walk(struct agent_config *c, yaml_document_t *d, yaml_node_t *n, const char *prefix,
                     const char *file, char *err, size_t errlen) {
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
    char path[128];
    if (k->type != YAML_SCALAR_NODE) continue;
    snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", (const char *)k->data.scalar.value);
    int rc;
    if (strcmp(path, "runtimes") == 0) {
      rc = yaml_runtimes(c, d, v, file, err, errlen);
    } else if (strcmp(path, "tenants") == 0) {
      rc = config_tenants_yaml(c, d, v, file, err, errlen);
    } else if (strcmp(path, "tls.client_map") == 0) {
      rc = config_tls_map_yaml(c, d, v, file, err, errlen);
    } else if (strcmp(path, "prices") == 0) {
      rc = config_prices_yaml(c, d, v, file, err, errlen);
    } else if ((strcmp(path, "cluster.join") == 0 || strcmp(path, "node.roles") == 0) &&
               v->type == YAML_SEQUENCE_NODE) {
      rc = 0;
      for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && !rc; it++) {
        yaml_node_t *e = yaml_document_get_node(d, *it);
        if (!e || e->type != YAML_SCALAR_NODE) {
          snprintf(err, errlen, "%s: '%s' must be a list of values", file, path);
          return -EINVAL;
        }
        const char *ev = (const char *)e->data.scalar.value;
        if (path[0] == 'c') {
          rc = add_join(c, 1, ev, err, errlen);
        } else {
          size_t rl = strlen(c->cluster.roles);
          if (rl + strlen(ev) + 2 > sizeof c->cluster.roles) {
            snprintf(err, errlen, "%s: too many roles", file);
            return -EINVAL;
          }
          snprintf(c->cluster.roles + rl, sizeof c->cluster.roles - rl, "%s%s", rl ? "," : "", ev);
        }
      }
    } else if (strcmp(path, "aliases") == 0 && v->type == YAML_MAPPING_NODE) {
      rc = 0;
      for (yaml_node_pair_t *ap = v->data.mapping.pairs.start; ap < v->data.mapping.pairs.top && !rc; ap++) {
        yaml_node_t *ak = yaml_document_get_node(d, ap->key), *av = yaml_document_get_node(d, ap->value);
        if (ak->type != YAML_SCALAR_NODE || av->type != YAML_SCALAR_NODE) {
          snprintf(err, errlen, "%s: aliases must map names to models", file);
          return -EINVAL;
        }
        const char *an = (const char *)ak->data.scalar.value;
        rc = add_alias(c, 1, an, strlen(an), (const char *)av->data.scalar.value, err, errlen);
      }
    } else if (strcmp(path, "node.labels") == 0 && v->type == YAML_MAPPING_NODE) {
      rc = 0;
      for (yaml_node_pair_t *lp = v->data.mapping.pairs.start; lp < v->data.mapping.pairs.top && !rc; lp++) {
        yaml_node_t *lk = yaml_document_get_node(d, lp->key), *lv = yaml_document_get_node(d, lp->value);
        char kv[160];
        if (lk->type != YAML_SCALAR_NODE || lv->type != YAML_SCALAR_NODE) {
          snprintf(err, errlen, "%s: node.labels must map names to values", file);
          return -EINVAL;
        }
        snprintf(kv, sizeof kv, "%s=%s", (const char *)lk->data.scalar.value, (const char *)lv->data.scalar.value);
        rc = add_label(c, kv, err, errlen);
      }
    } else if (v->type == YAML_MAPPING_NODE) {
      rc = yaml_walk(c, d, v, path, file, err, errlen);
    } else if (v->type == YAML_SCALAR_NODE) {
      const struct key *key = find_path(path);
      if (!key) {
        snprintf(err, errlen, "%s: unknown setting '%s' (see infermesh agent --help)", file, path);
        return -EINVAL;
      }
      char src[160];
      snprintf(src, sizeof src, "%s: %s", file, path);
      rc = set_key(c, key, (const char *)v->data.scalar.value, 1, src, err, errlen);
    } else {
      snprintf(err, errlen, "%s: '%s' must be a value, not a list", file, path);
      rc = -EINVAL;
    }
    if (rc) return rc;
  }
  return 0;
}

static int load_yaml(struct agent_config *c, const char *file, char *err, size_t errlen) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open config file %s: %s", file, strerror(errno));
    return -EINVAL;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, errlen, "%s:%zu: %s", file, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "invalid YAML");
    rc = -EINVAL;
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
      rc = yaml_walk(c, &doc, root, "", file, err, errlen);
    else if (root) {
      snprintf(err, errlen, "%s: the top level must be a mapping of settings", file);
      rc = -EINVAL;
    }
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

int config_load_args(struct agent_config *c, int argc, char **argv, char *err, size_t errlen) {
  int rc;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      config_usage(stdout);
      return 1;
    }
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) {
        snprintf(err, errlen, "--config needs a file name");
        return -EINVAL;
      }
      if ((rc = load_yaml(c, argv[i + 1], err, errlen))) return rc;
    }
  }
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    if (strcmp(a, "--config") == 0) {
      i++;
      continue;
    }
    const struct key *k = NULL;
    const char *eq = strchr(a, '=');
    size_t alen = eq ? (size_t)(eq - a) : strlen(a);
    for (size_t j = 0; j < NKEYS && !k; j++)
      if (strlen(keys[j].flag) == alen && strncmp(keys[j].flag, a, alen) == 0) k = &keys[j];
    if (!k) {
      snprintf(err, errlen, "unknown flag '%s' (see infermesh agent --help)", a);
      return -EINVAL;
    }
    if (eq)
      val = eq + 1;
    else if (k->type == K_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
      val = "true"; /* a bare boolean flag */
    else if (i + 1 < argc)
      val = argv[++i];
    else {
      snprintf(err, errlen, "%s needs a value", k->flag);
      return -EINVAL;
    }
    if ((rc = set_key(c, k, val, 2, k->flag, err, errlen))) return rc;
  }
  for (size_t j = 0; j < NKEYS; j++) {
    const char *v = getenv(keys[j].env);
    if (v && *v && (rc = set_key(c, &keys[j], v, 3, keys[j].env, err, errlen))) return rc;
  }
  /* Runtimes this agent starts must not inherit the tenants' keys (the value itself was wiped). */
  if (getenv("INFERMESH_TENANTS")) unsetenv("INFERMESH_TENANTS");
  if (c->routing_policy[0]) {
    const char *names[16];
    int n = policy_names(names, 16);
    bool ok = false;
    for (int i = 0; i < n && !ok; i++) ok = strcmp(names[i], c->routing_policy) == 0;
    if (!ok) {
      snprintf(err, errlen, "routing policy '%s' is unknown (ours, round-robin, least-request, power-of-two, "
                            "sglang, llm-d)", c->routing_policy);
      return -EINVAL;
    }
  }
  if ((rc = config_tls_check(c, err, errlen))) return rc;
  if ((rc = tracing_check(c, err, errlen))) return rc;
  if (log_level_parse(c->log_level) < 0) {
    snprintf(err, errlen, "log level '%s' is not one of debug, info, warn, error", c->log_level);
    return -EINVAL;
  }
  if (c->max_attempts < 1) c->max_attempts = 1;
  if (c->max_targets < c->nruntimes || c->max_targets > 1000000) {
    snprintf(err, errlen, "max_targets %d must be at least the %d runtimes and at most 1000000", c->max_targets,
             c->nruntimes);
    return -EINVAL;
  }
  if (c->bench_targets < 0 || (c->bench_targets > 0 && c->nruntimes == 0) ||
      c->bench_targets > c->max_targets - c->nruntimes) {
    snprintf(err, errlen, "bench_targets %d needs a runtime to copy and room in max_targets %d beside the %d runtimes",
             c->bench_targets, c->max_targets, c->nruntimes);
    return -EINVAL;
  }
  if (c->max_targets < 1) c->max_targets = 1;
  if (c->scrape_interval_ms < 10) c->scrape_interval_ms = 10;
  if (c->sup.health_timeout_ms == 0) {
    snprintf(err, errlen, "runtime health timeout 0: a runtime would be stopped before it could answer (the "
                          "default is 600000 ms)");
    return -EINVAL;
  }
  if (c->sup.backoff_ms < 10) c->sup.backoff_ms = 10;
  if (c->sup.backoff_ms > SUP_BACKOFF_MAX_MS) c->sup.backoff_ms = SUP_BACKOFF_MAX_MS;
  if (c->sup.backoff_max_ms < c->sup.backoff_ms) c->sup.backoff_max_ms = c->sup.backoff_ms;
  if (c->sup.backoff_max_ms > SUP_BACKOFF_MAX_MS) c->sup.backoff_max_ms = SUP_BACKOFF_MAX_MS;
  if (c->sup.crash_loop_restarts < 1) c->sup.crash_loop_restarts = 1;
  if (c->sup.crash_loop_restarts > SUP_CRASH_LOOP_MAX) c->sup.crash_loop_restarts = SUP_CRASH_LOOP_MAX;
  return 0;
}
