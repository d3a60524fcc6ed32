/* Control-plane CLI commands (raft, policy, pin, unpin, tenant): clients of the agent's /v1/cluster/ API. */
#ifndef IM_CLI_CONTROL_CMDS_H
#define IM_CLI_CONTROL_CMDS_H

/* control_cmd_main runs `infermesh CMD ARGS...` for CMD in raft|policy|pin|unpin|tenant. Returns the exit
 * code: 0 ok, 1 the agent refused or could not be reached, 2 bad usage. */
int control_cmd_main(const char *cmd, int argc, char **argv);

#endif
