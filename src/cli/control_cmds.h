/* Control-plane CLI commands (raft, policy, pin, unpin, tenant): clients of the agent's /v1/cluster/ API. */
#ifndef IM_CLI_CONTROL_CMDS_H
#define IM_CLI_CONTROL_CMDS_H

/* control_cmd_main runs `infermesh CMD ARGS...` for CMD in raft|policy|pin|unpin|tenant. Returns the exit
 * code: 0 ok, 1 the agent refused or could not be reached, 2 bad usage. */
int control_cmd_main(const char *cmd, int argc, char **argv);

struct buf;

/* Helpers shared with other clients of the agent's API (cli/model_cmds.c). */
/* control_cmds_print_body prints an answer to stdout: indented when it is JSON, else as is. */
void control_cmds_print_body(const struct buf *body);
/* control_cmds_fail_status prints the agent's error (its OpenAI error message when there is one) with the
 * HTTP status to stderr and returns 1, the exit code. */
int control_cmds_fail_status(int status, const struct buf *body);

#endif
