#!/usr/bin/env bash
# bench/gossip.sh: gossip membership (SWIM + Lifeguard) at N = 8, 32 and 64 agents.
#
# Every agent is a real `infermesh agent` process (a pure gateway: no runtime) in its own network namespace,
# all on one Linux bridge in a namespace of its own (tests/netns/netns.py; nothing touches the root namespace).
# Default SWIM settings. Measured per N by bench/gossip_bench.py:
#   join propagation   a new agent joins through a random member; from its `msg="mesh on"` log timestamp to the
#                      last member's `member joined` timestamp (p50/p99 over repetitions)
#   failure detection  SIGKILL of a random member; from the kill to every member's `member dead` timestamp
#   traffic            infermesh_gossip_bytes_total{dir=in|out} deltas per node over a steady window
#   false positives    `member dead` about live nodes, always, and under 10% packet loss for LOSS_S seconds
#                      (nftables; delay would need sch_netem, which this kernel may lack: the report says)
# and compared with memberlist's LAN defaults for the same N.
# Writes bench/results/gossip.md (or $BENCH_OUT); raw samples (JSON) and agent logs stay in the temp dir when
# KEEP_TMP=1. Needs root.
#
# Knobs (environment): INFERMESH_BIN (build/infermesh), BENCH_OUT, SIZES (8,32,64), REPS (10), REPS_64 (6),
# LOSS_SIZES (32,64), LOSS_S (180), LOSS_S_64 (90: the lossy period at N=64), LOSS_PCT (10), TRAFFIC_S (10),
# KEEP_TMP (1 = keep the agents' logs).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/gossip.md}
SIZES=${SIZES:-8,32,64}
REPS=${REPS:-10}
REPS_64=${REPS_64:-6}
LOSS_SIZES=${LOSS_SIZES:-32,64}
LOSS_S=${LOSS_S:-180}
LOSS_S_64=${LOSS_S_64:-90}
LOSS_PCT=${LOSS_PCT:-10}
TRAFFIC_S=${TRAFFIC_S:-10}
PY=${PY:-/usr/bin/python3}

[[ $(id -u) == 0 ]] || { echo "bench: gossip.sh needs root (network namespaces, veth, nftables)" >&2; exit 1; }
for tool in ip nft; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (run make build)" >&2; exit 1; }
# The report quotes SWIM's defaults from src/cluster/swim.c: a binary older than the sources may not match them.
STALE=$(find "$ROOT/src" -newer "$BIN" -name '*.[ch]' 2>/dev/null | head -3 | sed "s|$ROOT/||" | tr '\n' ' ')
[[ -z $STALE ]] || echo "bench: warning: $BIN is older than $STALE(rebuild it)" >&2

TMP=$(mktemp -d /tmp/infermesh-gossip-bench.XXXXXX)
PYPID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The Python driver deletes its namespaces and kills its agents on exit (also on SIGINT/SIGTERM).
    if [[ -n $PYPID ]] && kill -0 "$PYPID" 2>/dev/null; then
        kill -TERM "$PYPID" 2>/dev/null || true
        wait "$PYPID" 2>/dev/null || true
    fi
    if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then echo "bench: logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
CMD=("$PY" "$ROOT/bench/gossip_bench.py" --bin "$BIN" --sizes "$SIZES" --reps "$REPS" --reps-64 "$REPS_64"
     --loss-sizes "$LOSS_SIZES" --loss-s "$LOSS_S" --loss-s-64 "$LOSS_S_64" --loss-pct "$LOSS_PCT" --traffic-s "$TRAFFIC_S"
     --logdir "$TMP/logs" --out "$TMP/results.md")
set +e
"${CMD[@]}" &
PYPID=$!
wait "$PYPID"
BRC=$?
PYPID=""
set -e
[[ -f $TMP/results.md ]] || { echo "bench: the driver wrote no results (exit $BRC)" >&2; exit 1; }
ELAPSED=$(($(date +%s) - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

netem=$("$PY" -c "import sys; sys.path.insert(0, '$ROOT/tests/netns'); import netns; print('yes' if netns.netem_available() else 'no')")
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
defaults=$("$BIN" agent --help 2>&1 | grep -E -- '--(probe-interval-ms|probe-timeout-ms|gossip-interval-ms|suspicion-mult|indirect-checks|gossip-nodes) ' | sed -E 's/ +\[yaml.*//; s/^ +//' || true)

{
    echo "# Gossip membership benchmark: join propagation, failure detection, false positives, traffic"
    echo
    echo "Produced by \`bench/gossip.sh\` (driver: \`bench/gossip_bench.py\`, network: \`tests/netns/netns.py\`)."
    echo "Every number below comes from one run, $START, which took $ELAPSED s."
    echo
    echo "## Machine and setup"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| date | $START |"
    echo "| machine | $(nproc) vCPU ($cpu), $mem RAM, kernel $(uname -r) |"
    echo "| sharing | **every agent runs on the same $(nproc) cores** (and the driver polls them) |"
    echo "| load average (1/5/15 min) | $LOAD_BEFORE before, $LOAD_AFTER after (includes work on this machine that is not ours) |"
    echo "| infermesh | $("$BIN" version 2>/dev/null || echo '?'), commit $commit$dirty, binary \`${BIN#$ROOT/}\` |"
    echo "| topology | one network namespace per agent (10.213.0.x/24, veth) on one Linux bridge in its own namespace; gossip UDP+TCP on :7946, HTTP on :8080 |"
    echo "| loss | nftables \`numgen random mod 1000 < $(awk -v p="$LOSS_PCT" 'BEGIN { print int(p * 10) }') drop\` on each host's ingress (UDP and TCP), so each packet is lost with p = $LOSS_PCT% |"
    echo "| delay | sch_netem in this kernel: $netem$([[ $netem == no ]] && echo ' — **no delay was applied** (netem missing; no user-space substitute)') |"
    echo "| SWIM settings | the agent's defaults (no --probe-*/--suspicion-*/--gossip-* flags) |"
    [[ -z $STALE ]] || echo "| **warning** | the binary is older than $STALE: the defaults quoted below (read from the source) may not be the ones it ran with |"
    echo
    echo "The agent's SWIM flags (\`infermesh agent --help\`):"
    echo
    echo '```'
    echo "$defaults"
    echo '```'
    echo
    echo "Command: \`sudo bench/gossip.sh\` with SIZES=$SIZES REPS=$REPS REPS_64=$REPS_64 LOSS_SIZES=$LOSS_SIZES LOSS_S=$LOSS_S LOSS_S_64=$LOSS_S_64 LOSS_PCT=$LOSS_PCT TRAFFIC_S=$TRAFFIC_S."
    echo "Per N: N-1 agents join through agent 0; then each repetition adds one agent (through a random member; the"
    echo "cluster is then N) and SIGKILLs a random member. Join time: newcomer's \`mesh on\` log timestamp → last"
    echo "member's \`member joined\` timestamp. Detection: the kill → each member's \`member dead\` timestamp; \"dead"
    echo "everywhere\" is the last member's. p99 is nearest-rank, so with ≤ 10 repetitions it is the slowest one."
    echo "Bytes/s: \`infermesh_gossip_bytes_total\` deltas per node over TRAFFIC_S at N-1 members, no loss."
    echo
    echo "## Results"
    echo
    cat "$TMP/results.md"
    if [[ $BRC != 0 ]]; then
        echo "**The driver exited with status $BRC** (timeouts or sanitizer reports listed above)."
        echo
    fi
} >"$BENCH_OUT"
echo "bench: wrote $BENCH_OUT"
exit "$BRC"
