/* The ledger's CLI: infermesh ledger usage|contributions|settle|payouts. */
#ifndef IM_CLI_LEDGER_CMDS_H
#define IM_CLI_LEDGER_CMDS_H

/* ledger_cmd_main runs `infermesh ledger ARGS`. Exit code: 0 ok, 1 agent unreachable or answered an error,
 * 2 bad usage. */
int ledger_cmd_main(int argc, char **argv);

#endif
