/* Agent configuration: a YAML file, then command-line flags, then INFERMESH_* environment variables. */
#ifndef IM_AGENT_CONFIG_H
#define IM_AGENT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "net/http_server.h"

#define CONFIG_MAX_RUNTIMES 64

struct config_runtime {
  char kind[16];
  char url[160];
  char name[64];
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
  int max_attempts;
  struct http_limits limits;
};

/* config_defaults: listen 127.0.0.1:8080, scrape every 500 ms, drain 30 s, upstream timeout 300 s,
 * 3 attempts, the HTTP server's default limits. */
void config_defaults(struct agent_config *c);
/* config_load_args applies, in order, the YAML file named by --config (if any), the flags in argv, and the
 * INFERMESH_* environment. Returns 0, 1 when --help was printed, or -EINVAL with errmsg naming the bad input. */
int config_load_args(struct agent_config *c, int argc, char **argv, char *errmsg, size_t errlen);
/* config_usage prints the agent's --help text to f. */
void config_usage(FILE *f);

#endif
