/* infermesh: subcommand dispatch. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/dev.h"
#include "agent/supervisor.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/cluster_cmds.h"
#include "cli/control_cmds.h"
#include "cli/probe.h"
#include "cli/gpus.h"
#include "cli/ledger_cmds.h"
#include "cli/members.h"
#include "cli/model_cmds.h"
#include "cli/simulate.h"
#include "cli/tls_client.h"
#include "sim/server.h"

static void usage(FILE *f) {
  fprintf(f, "infermesh %s: one OpenAI-compatible endpoint over many inference runtimes\n\n"
             "usage: infermesh COMMAND [options]   (infermesh COMMAND --help for its options)\n\n"
             "node:\n"
             "  agent         run the node daemon\n"
             "  dev           one-node mesh with simulated engines, for trying it out\n"
             "  sim-engine    run a simulated vLLM-like engine (OpenAI API, vLLM metrics)\n"
             "  simulate      compare routing policies in a discrete-event simulation (traces, generators)\n"
             "  probe         read one runtime (vLLM, SGLang, TGI, llama.cpp, Triton, Ollama) and print its state\n"
             "  gpus          local NVIDIA GPUs via NVML (or --dcgm URL)\n"
             "cluster:\n"
             "  init          create a new cluster: cluster key and id, node identity, in the data dir\n"
             "  invite        print an invite token that lets a new node join (--seed, --ttl)\n"
             "  keyring       list, install, use, remove or generate cluster keys (rotation)\n"
             "client (--agent URL, --json, --token TOKEN: the admin or read token when the agent has tenants;\n"
             "        --ca FILE or INFERMESH_CA: the CA of an https:// agent's certificate):\n"
             "  status        what the node looks like now\n"
             "  models        models served and how many healthy targets serve each\n"
             "  targets       per-target state, load and routing score\n"
             "  members       members of the mesh (--all: with dead and departed ones)\n"
             "  leave         the agent leaves the mesh, finishes in-flight work and exits\n"
             "  drain NODE    NODE finishes in-flight work and gets no new requests (undrain NODE: undo); needs\n"
             "                the admin token, and is durable where the mesh has a control plane\n"
             "  events        live stream of membership, drain, target health and config changes (--since N)\n"
             "  bench         replay a trace against the mesh, open loop (--trace FILE): TTFT, goodput, cache hits\n"
             "control plane (Raft; writes need --token ADMIN_TOKEN):\n"
             "  raft status   leader, term, voters, applied index\n"
             "  policy        set|get|list|delete routing policies per model\n"
             "  pin | unpin   allow a model only on some nodes or zones\n"
             "  tenant        add|list|limits|revoke tenants and their API keys\n"
             "  price         set|get|list|delete a model's price per million tokens (prompt, cached, completion)\n"
             "  provider      set|get|list|delete a provider's share of what its nodes serve (0..1, default 1)\n"
             "  model         load|unload a model or LoRA adapter on a target (runtimes that allow it)\n"
             "metering:\n"
             "  ledger        usage|contributions|settle|payouts: who used what, who served it, payout batches\n"
             "  version       print the version\n\n"
             "exit codes: 0 ok, 1 runtime failure (agent unreachable, port in use...), 2 bad usage\n",
          INFERMESH_VERSION);
}

/* A child of `infermesh dev` dies with its parent, even when the parent is SIGKILLed. */
static void follow_parent(void) {
  const char *pp = getenv("INFERMESH_PARENT_PID");
  if (!pp) return;
  long want = strtol(pp, NULL, 10);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if ((long)getppid() != want) _exit(1); /* the parent died before prctl took effect */
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "_exec-child") == 0) return exec_child_main(argc - 2, argv + 2);
  follow_parent();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  /* Client commands reach the agent over HTTPS with --ca FILE (or INFERMESH_CA): taken here for all of them. */
  static const char *const clients[] = {"status", "models", "targets", "members", "leave", "drain", "undrain",
                                        "events", "raft", "policy", "pin", "unpin", "tenant", "price", "model",
                                        "ledger"};
  for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
    if (strcmp(cmd, clients[i]) == 0 && (argc = 2 + cli_take_ca(argc - 2, argv + 2)) < 2) {
      fprintf(stderr, "infermesh %s: --ca needs a file (PEM CA certificates)\n", cmd);
      return 2;
    }
  if (strcmp(cmd, "agent") == 0) return agent_main(argc - 2, argv + 2);
  if (strcmp(cmd, "sim-engine") == 0) return sim_server_main(argc - 2, argv + 2);
  if (strcmp(cmd, "simulate") == 0) return simulate_main(argc - 2, argv + 2);
  if (strcmp(cmd, "dev") == 0) return dev_main(argc - 2, argv + 2, argv[0]);
  if (strcmp(cmd, "status") == 0 || strcmp(cmd, "models") == 0 || strcmp(cmd, "targets") == 0)
    return cli_main(cmd, argc - 2, argv + 2);
  if (strcmp(cmd, "gpus") == 0) return gpus_main(argc - 2, argv + 2);
  if (strcmp(cmd, "init") == 0) return init_main(argc - 2, argv + 2);
  if (strcmp(cmd, "invite") == 0) return invite_main(argc - 2, argv + 2);
  if (strcmp(cmd, "keyring") == 0) return keyring_main(argc - 2, argv + 2);
  if (strcmp(cmd, "members") == 0 || strcmp(cmd, "leave") == 0 || strcmp(cmd, "drain") == 0 ||
      strcmp(cmd, "undrain") == 0)
    return members_main(cmd, argc - 2, argv + 2);
  if (strcmp(cmd, "events") == 0) return events_main(argc - 2, argv + 2);
  if (strcmp(cmd, "probe") == 0) return probe_main(argc - 2, argv + 2);
  if (strcmp(cmd, "bench") == 0) return bench_main(argc - 2, argv + 2);
  if (strcmp(cmd, "raft") == 0 || strcmp(cmd, "policy") == 0 || strcmp(cmd, "pin") == 0 ||
      strcmp(cmd, "unpin") == 0 || strcmp(cmd, "tenant") == 0 || strcmp(cmd, "price") == 0 ||
      strcmp(cmd, "provider") == 0)
    return control_cmd_main(cmd, argc - 2, argv + 2);
  if (strcmp(cmd, "model") == 0) return model_cmd_main(argc - 2, argv + 2);
  if (strcmp(cmd, "ledger") == 0) return ledger_cmd_main(argc - 2, argv + 2);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("infermesh %s\n", INFERMESH_VERSION);
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "infermesh: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
