/* Client commands (status, models, targets) that query an agent's control API. */
#ifndef IM_CLI_CLI_H
#define IM_CLI_CLI_H

#include <stddef.h>

/* cli_main runs client command `cmd` with its arguments (--agent URL, --json). Exit code: 0 ok,
 * 1 agent unreachable or answered an error, 2 bad usage. */
int cli_main(const char *cmd, int argc, char **argv);

/* cli_token_env is the credential client commands send when no --token is given: INFERMESH_ADMIN_TOKEN, else
 * INFERMESH_READ_TOKEN (reads only), else NULL. Borrowed from the environment. */
const char *cli_token_env(void);

/* cli_auth_header writes "Authorization: Bearer TOKEN\r\n" into out, or "" when token is NULL or empty (or
 * would not fit, or holds a CR or LF). */
void cli_auth_header(const char *token, char *out, size_t cap);

#endif
