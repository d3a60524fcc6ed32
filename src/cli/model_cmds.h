/* `infermesh model load|unload`: a client of the agent's model control API (api/model_api.h). */
#ifndef IM_CLI_MODEL_CMDS_H
#define IM_CLI_MODEL_CMDS_H

/* model_cmd_main runs `infermesh model ARGS...` (the arguments after "model"). Returns the exit code: 0 done,
 * 1 the agent or the runtime refused, or the agent could not be reached, 2 bad usage. */
int model_cmd_main(int argc, char **argv);

#endif
