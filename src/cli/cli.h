/* Client commands (status, models, targets) that query an agent's control API. */
#ifndef IM_CLI_CLI_H
#define IM_CLI_CLI_H

/* cli_main runs client command `cmd` with its arguments (--agent URL, --json). Exit code: 0 ok,
 * 1 agent unreachable or answered an error, 2 bad usage. */
int cli_main(const char *cmd, int argc, char **argv);

#endif
