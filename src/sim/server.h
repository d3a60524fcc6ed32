/* `infermesh sim-engine`: an OpenAI-compatible server driven by the simulated engine model in real time. */
#ifndef IM_SIM_SERVER_H
#define IM_SIM_SERVER_H

/* sim_server_main parses the sim-engine flags (after the subcommand) and serves until SIGTERM/SIGINT.
 * Returns the exit code: 0 clean, 1 runtime failure (port in use...), 2 bad usage. */
int sim_server_main(int argc, char **argv);

#endif
