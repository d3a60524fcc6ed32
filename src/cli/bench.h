/* `infermesh bench`: open-loop replay of a Mooncake-format trace against a running mesh (DESIGN §5, §12). */
#ifndef IM_CLI_BENCH_H
#define IM_CLI_BENCH_H

/* bench_main runs `infermesh bench ARGS` (argv after the command name). Exit status: 0 the replay ran
 * (errors, if any, are in the report), 1 the trace could not be read or nothing could be sent, 2 bad usage.
 */
int bench_main(int argc, char **argv);

#endif
