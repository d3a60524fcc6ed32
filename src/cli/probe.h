/* `infermesh probe`: fetch one runtime's endpoints and print its normalized state (debugs the adapters). */
#ifndef IM_CLI_PROBE_H
#define IM_CLI_PROBE_H

/* probe_main runs `infermesh probe [--runtime KIND] URL [--json] [--interval-ms N] [--timeout-ms N]` with
 * argv holding the arguments after "probe". Without --runtime it detects the kind first. Blocking; prints to
 * stdout, errors to stderr. Exit code: 0 ok, 1 unreachable / not that kind / nothing recognized, 2 bad usage.
 */
int probe_main(int argc, char **argv);

#endif
