/* Cluster secret commands that work on the local data dir: init, invite, keyring. */
#ifndef IM_CLI_CLUSTER_CMDS_H
#define IM_CLI_CLUSTER_CMDS_H

/* Each takes the arguments after its command name (argv is borrowed) and returns the exit code:
 * 0 ok, 1 failure (a message on stderr names the problem and the fix), 2 bad usage. */

/* init_main runs `infermesh init [--data-dir DIR] [--name NAME]`: creates the data dir, a new cluster key and
 * id, and the node identity; refuses when the data dir already holds a cluster key. */
int init_main(int argc, char **argv);

/* invite_main runs `infermesh invite [--data-dir DIR] [--seed HOST:PORT]... [--ttl DURATION] [--json]`:
 * prints an invite token for the cluster of the data dir. */
int invite_main(int argc, char **argv);

/* keyring_main runs `infermesh keyring list|install KEY|use KEY|remove KEY|generate [--data-dir DIR]`. */
int keyring_main(int argc, char **argv);

#endif
