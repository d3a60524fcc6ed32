/* The environment of a process the agent or `infermesh dev` starts. */
#ifndef IM_AGENT_CHILD_ENV_H
#define IM_AGENT_CHILD_ENV_H

/* child_env returns a NULL-terminated copy of our environment without INFERMESH_PARENT_PID (which names
 * *our* parent), plus INFERMESH_PARENT_PID=parent_pid when parent_pid > 0 (see follow_parent in main.c).
 * The array and the one string it adds are owned by the caller: free with child_env_free. The other
 * strings are borrowed from environ. */
char **child_env(int parent_pid);
void child_env_free(char **env);

#endif
