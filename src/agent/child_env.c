/* The environment of a child process: ours, with INFERMESH_PARENT_PID replaced. */
#include "agent/child_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define PARENT_VAR "INFERMESH_PARENT_PID="

char **child_env(int parent_pid) {
  extern char **environ;
  size_t n = 0, k = 0;
  for (char **e = environ; *e; e++) n++;
  /* slot 0 holds our own string (or NULL) so that child_env_free finds it; the caller gets env + 1 */
  char **env = xcalloc(n + 3, sizeof *env);
  if (parent_pid > 0) {
    env[0] = xmalloc(sizeof PARENT_VAR + 16);
    snprintf(env[0], sizeof PARENT_VAR + 16, "%s%d", PARENT_VAR, parent_pid);
  }
  for (char **e = environ; *e; e++)
    if (strncmp(*e, PARENT_VAR, sizeof PARENT_VAR - 1) != 0) env[1 + k++] = *e;
  if (env[0]) env[1 + k++] = env[0];
  env[1 + k] = NULL;
  return env + 1;
}

void child_env_free(char **env) {
  if (!env) return;
  free(env[-1]);
  free(env - 1);
}
