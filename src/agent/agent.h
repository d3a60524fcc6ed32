/* One node: HTTP listener, router, scraper and the admin endpoints, on one libuv loop. */
#ifndef IM_AGENT_AGENT_H
#define IM_AGENT_AGENT_H

#include "agent/config.h"

#define INFERMESH_VERSION "0.1.0"

/* agent_main runs `infermesh agent` with its arguments (after the subcommand) until SIGTERM/SIGINT and
 * the drain that follows. Returns the process exit code: 0 clean, 1 runtime failure, 2 bad usage. */
int agent_main(int argc, char **argv);

/* agent_run runs an agent with a ready configuration (used by agent_main and `infermesh dev`).
 * ready_cb, if set, is called once the listener is up. Returns the exit code. */
int agent_run(const struct agent_config *cfg, void (*ready_cb)(void *arg, int port), void *arg);

#endif
