/* Agent configuration: a YAML file, then command-line flags, then INFERMESH_* environment variables. */
#ifndef IM_AGENT_CONFIG_H
#define IM_AGENT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "net/http_server.h"
#include "route/admission.h"
#include "ledger/record.h"
#include "route/alias.h"
#include "route/tenants.h"

#define CONFIG_MAX_RUNTIMES 64

struct config_runtime {
  char kind[16];
  char url[160];
  char name[64];
  char exec[1024]; /* command that starts this runtime under supervision; "" = not supervised */
  char gpus[256];  /* GPUs it runs on, as CUDA_VISIBLE_DEVICES lists them (indices or UUIDs); "" = unknown */
  char metrics_url[160]; /* http://HOST:PORT serving its /metrics when not the API's (Triton: 8002); "" = url */
  char alias[128];   /* the name clients use for its model ("" = the name the runtime reports); the runtime
                        still gets its own name in requests */
  char api_key[256]; /* sent upstream (requests and scrapes) as `Authorization: Bearer KEY`; "" = none */
  char kv_events[160]; /* ZMQ endpoint of its KV-cache event publisher (vLLM/SGLang --kv-events-config),
                          tcp://HOST:PORT or ipc://PATH, which the agent connects to; "" = none */
};

/* Supervision of runtimes that have `exec` (agent/supervisor.h). config_finish keeps crash_loop_restarts at
 * most SUP_CRASH_LOOP_MAX (the exits a runtime remembers) and backoff_max_ms at most SUP_BACKOFF_MAX_MS. */
#define SUP_CRASH_LOOP_MAX 64
#define SUP_BACKOFF_MAX_MS 3600000u
struct config_supervisor {
  uint32_t health_timeout_ms;   /* longest wait for a started runtime to become healthy (600000) */
  uint32_t stop_grace_ms;       /* SIGTERM -> SIGKILL on stop (10000) */
  uint32_t backoff_ms;          /* first restart delay (1000); doubles per recent crash */
  uint32_t backoff_max_ms;      /* restart delay cap (30000) */
  int crash_loop_restarts;      /* this many exits within the window is a crash loop (5) */
  uint32_t crash_loop_window_ms; /* (300000) */
};

/* Mesh membership (cluster/gossip.h). Clustering is on when the data dir holds a cluster key (infermesh init,
 * or an invite given with --join); otherwise the agent runs alone. */
#define CONFIG_MAX_JOIN 8
struct config_cluster {
  char data_dir[512];      /* "" = the default (cluster/datadir.h) */
  char gossip[96];         /* HOST:PORT for gossip, UDP and TCP (127.0.0.1:7946) */
  char advertise[64];      /* HOST:PORT others use to reach our gossip port ("" = the bind address) */
  char join[CONFIG_MAX_JOIN][1024]; /* invite tokens or seed HOST:PORTs */
  int njoin;
  int join_source;
  char roles[64];          /* comma-separated: gpu, gateway, server ("" = gateway, plus gpu with runtimes) */
  char zone[32];
  char labels[256];        /* k=v,k=v */
  uint32_t probe_interval_ms, probe_timeout_ms, gossip_interval_ms; /* 0 = SWIM's defaults */
  int suspicion_mult, indirect_checks, gossip_nodes;               /* 0 = SWIM's defaults */
  /* Control plane (agent/control.h) */
  bool server;             /* a Raft voter (or spare, beyond 5) */
  int bootstrap_expect;    /* servers: form the first cluster once this many servers are alive in gossip */
  char raft[96];           /* HOST:PORT for Raft ("" = the gossip host, gossip port + 1) */
  char admin_token[128];   /* changes to the mesh need `Authorization: Bearer TOKEN` ("" = refused) */
  char read_token[128];    /* with tenants: reads the cluster views ("" = only the admin token does) */
  bool insecure_hops;      /* agent-to-agent HTTP in plaintext TCP instead of the tunnel (tunnel/tunnel.h) */
  char tunnel_allow[256];  /* more loopback ports members may open tunnel streams to: "PORT,PORT" */
  char tunnel_forward[512]; /* forwarders: "[HOST:]PORT=NODE:PORT,..." (agent/mesh_tunnel.h) */
  char rpc_server[512];    /* an llama.cpp rpc-server binary this node offers to split hosts (agent/rpc_worker.h) */
  int rpc_port;            /* its loopback port (0 = 50052) */
  /* A split model (agent/split.h): the local runtime named split_target is a llama-server this agent starts
   * with split_exec, "{rpc}" replaced by forwarders to up to split_workers members that offer rpc-servers. */
  char split_target[64];
  int split_workers;
  char split_exec[1024];
};

#define CONFIG_MAX_PRICES 64

/* TLS on the HTTP listener (net/tls.h, agent/ingress_tls.h): YAML `tls: {cert, key, client_ca, client_map:
 * {CN: ROLE}}`, flags --tls-cert, --tls-key, --tls-client-ca, --tls-client-map CN=ROLE (repeatable; the
 * environment's INFERMESH_TLS_CLIENT_MAP is comma-separated). A verified client certificate whose subject CN is
 * mapped acts as the credential of its ROLE: admin (the admin token) or a tenant's name (that tenant's key). */
#define CONFIG_TLS_MAP_MAX 64
struct config_tls_map {
  char cn[128];
  char role[64];
};
struct config_tls {
  char cert[512], key[512], client_ca[512]; /* PEM files; "" = TLS off / no client certificates */
  struct config_tls_map map[CONFIG_TLS_MAP_MAX];
  int nmap;
  int map_source;
};

struct agent_config {
  char node_name[64];
  char listen_host[64];
  int listen_port;
  char log_level[8];
  struct config_runtime runtimes[CONFIG_MAX_RUNTIMES];
  int nruntimes;
  int runtimes_source; /* 0 none, 1 file, 2 flags, 3 environment: a later source replaces the list */
  uint32_t scrape_interval_ms;
  uint32_t drain_timeout_ms;
  uint32_t upstream_timeout_ms;
  uint32_t first_byte_timeout_ms, first_byte_timeout_max_ms; /* route/deadline.h */
  int breaker_failures;                                      /* route/breaker.h */
  uint32_t breaker_backoff_ms;
  int max_attempts;
  int max_targets; /* routing targets this node can hold, its own and other nodes' (state/store.h) */
  int bench_targets; /* benchmarks only: extra local targets copying the runtimes (agent.c add_bench_targets) */
  struct http_limits limits;
  int events_max_streams;    /* open /v1/cluster/events streams in all (64) */
  int events_max_per_client; /* ... per client IP address (8) */
  struct config_supervisor sup;
  struct config_cluster cluster;
  char routing_policy[32];
  bool insecure_no_auth; /* allow a listener beyond loopback without API keys (DESIGN §10) */ /* state/policy.h name: ours (default), round-robin, least-request, ... */
  /* Admission and hedging (route/admission.h, route/router.h). */
  struct adm_opts adm;
  uint32_t hedge_delay_ms;
  int hedge_min_samples;
  double hedge_max_fraction;
  /* Tenants: YAML `tenants: [{name, key, weight, priority, requests_per_s, tokens_per_min, max_concurrent,
   * slo}]`, or --tenant / INFERMESH_TENANTS specs "name=N,key=K,..." (the environment: ';'-separated). Only
   * key hashes are kept; a later source replaces the list, like runtimes. */
  struct tenant_conf tenants[TENANTS_MAX];
  int ntenants;
  int tenants_source;
  /* Metering (src/ledger/): usage records in DATA_DIR/ledger.db unless ledger_enabled is false; the node's
   * provider (who is paid for what its runtimes serve; "" = the node's name); prices for an agent without a
   * control plane (YAML `prices: [{model, prompt, completion, cached, currency}]`, or --price specs
   * "model=M,prompt=X,completion=Y"; the control plane's prices win where both name a model). */
  bool ledger_enabled;
  char ledger_postgres[1024]; /* libpq connection string or URI of the cluster-wide ledger ("" = none) */
  char provider[64];
  struct ledger_price_conf prices[CONFIG_MAX_PRICES];
  int nprices;
  int prices_source;
  /* Aliases: YAML `aliases: {NAME: MODEL}`, --alias NAME=MODEL (repeatable), INFERMESH_ALIASES
   * (comma-separated); a later source replaces the list. */
  struct model_alias aliases[MODEL_ALIASES_MAX];
  int naliases;
  int aliases_source;
  struct config_tls tls;
  /* Tracing (src/trace/): OTLP/HTTP collector base URL ("" = tracing off; else OTEL_EXPORTER_OTLP_ENDPOINT),
   * the share of new traces sampled (< 0 until set: then OTEL_TRACES_SAMPLER_ARG, else 1), and the service
   * name spans carry ("" until set: then OTEL_SERVICE_NAME, else "infermesh"). */
  char trace_endpoint[256];
  double trace_sample_ratio;
  char trace_service_name[64];
};

/* config_defaults: listen 127.0.0.1:8080, scrape every 500 ms, drain 30 s, upstream timeout 300 s,
 * 3 attempts, the HTTP server's default limits, the supervisor defaults above, adm_opts_default, hedging after
 * 500 ms until 20 samples, at most 5% of requests, no tenants. */
void config_defaults(struct agent_config *c);
/* config_load_args applies, in order, the YAML file named by --config (if any), the flags in argv, and the
 * INFERMESH_* environment. Returns 0, 1 when --help was printed, or -EINVAL with errmsg naming the bad input. */
int config_load_args(struct agent_config *c, int argc, char **argv, char *errmsg, size_t errlen);
/* config_tenant_add adds a tenant from a flag/environment spec (source 2 flag, 3 environment; see tenants.h,
 * tenant_conf_parse: spec's key characters are wiped). config_tenants_yaml is the YAML form (config_tenants.c).
 * 0 or -EINVAL with errmsg. */
int config_tenant_add(struct agent_config *c, int source, char *spec, char *errmsg, size_t errlen);

/* config_usage prints the agent's --help text to f. */
void config_usage(FILE *f);

#endif
