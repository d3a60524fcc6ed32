/* `infermesh dev`: a one-node mesh (agent + simulated engines) for trying infermesh out. */
#ifndef IM_AGENT_DEV_H
#define IM_AGENT_DEV_H

/* dev_main runs until SIGINT/SIGTERM, then drains the agent and stops every child; no process is left
 * behind. argv0 is used to find our own binary when /proc is unavailable. Returns the exit code. */
int dev_main(int argc, char **argv, const char *argv0);

#endif
