/* Membership commands (members, leave, drain, undrain) that ask an agent's control API. */
#ifndef IM_CLI_MEMBERS_H
#define IM_CLI_MEMBERS_H

/* members_main runs `infermesh members|leave|drain|undrain` (cmd) with its arguments. Exit code: 0 ok,
 * 1 agent unreachable or answered an error, 2 bad usage. */
int members_main(const char *cmd, int argc, char **argv);

/* events_main runs `infermesh events`: prints the agent's event stream as it arrives. Exit code: 0 the stream
 * ended or Ctrl-C, 1 agent unreachable or refused, 2 bad usage. */
int events_main(int argc, char **argv);

#endif
