/* `infermesh simulate`: the discrete-event routing simulator from the command line. */
#ifndef IM_CLI_SIMULATE_H
#define IM_CLI_SIMULATE_H

/* simulate_main runs `infermesh simulate ARGV...` (ARGV excludes the subcommand): every policy asked for at
 * every load, printed as a table or JSON on stdout. Returns the exit code: 0 ok, 1 the workload could not be
 * read or simulated, 2 bad usage. */
int simulate_main(int argc, char **argv);

#endif
