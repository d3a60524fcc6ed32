#!/usr/bin/env bash
# bench/raft.sh: infermesh's Raft control plane (3 servers) vs a 3-member etcd cluster, side by side on 127.0.0.1.
#
# Starts both clusters at once (infermesh: `infermesh init` + 3 `infermesh agent --server --bootstrap-expect 3`
# sharing the cluster key; etcd: 3 members with --initial-cluster on 127.0.0.1 ports), data dirs in a temp dir,
# and measures with bench/raft_bench.py:
#   write latency  p50/p99 on the leader with 1 write in flight (SEQ_WRITES sequential) and CONC in flight
#                  (CONC keep-alive client threads x CONC_WRITES each); LAT_ROUNDS rounds, median reported.
#                  infermesh: PUT /v1/cluster/policies/{model} (Bearer admin token, JSON body);
#                  etcd:      POST /v3/kv/put (grpc-gateway, base64 key/value).
#   failover       SIGKILL of the leader until a write is acknowledged through a survivor; FAIL_REPS reps,
#                  the killed member restarted between them; median reported. Also for etcd run with
#                  infermesh's timers (election 300 ms / heartbeat 30 ms) unless ETCD_MATCHED=0.
# Writes bench/results/raft.md (or $BENCH_OUT). Every process is killed on exit, failure included (the Python
# driver kills its process groups; this script kills the driver). KEEP_TMP=1 keeps logs and raw JSON.
#
# Knobs (environment): INFERMESH_BIN (build/infermesh), ETCD_BIN (etcd), BENCH_OUT, SEQ_WRITES (500), CONC (64),
# CONC_WRITES (25), LAT_ROUNDS (3), FAIL_REPS (5), STAGGER_MS (20), ETCD_MATCHED (1), KEEP_TMP.
# Build first: cmake -S . -B build && cmake --build build -j2. Takes about 1-2 minutes.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
ETCD_BIN=${ETCD_BIN:-etcd}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/raft.md}
PY=${PY:-python3}
export INFERMESH_BIN=$BIN ETCD_BIN

[[ -x $BIN ]] || { echo "bench: $BIN not built (cmake -S . -B build && cmake --build build -j2)" >&2; exit 1; }
command -v "$ETCD_BIN" >/dev/null 2>&1 || { echo "bench: etcd not found (run scripts/bootstrap)" >&2; exit 1; }
STALE=$(find "$ROOT/src" -newer "$BIN" -name '*.[ch]' 2>/dev/null | head -3 | sed "s|$ROOT/||" | tr '\n' ' ')
[[ -z $STALE ]] || echo "bench: warning: $BIN is older than $STALE(rebuild it)" >&2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/infermesh-raft-bench.XXXXXX")
PYPID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $PYPID ]] && kill -0 "$PYPID" 2>/dev/null; then
        kill -TERM "$PYPID" 2>/dev/null || true
        wait "$PYPID" 2>/dev/null || true
    fi
    if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then echo "bench: logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

echo "bench: temp dir $TMP" >&2
BENCH_TMP=$TMP "$PY" "$ROOT/bench/raft_bench.py" >"$TMP/results.json" &
PYPID=$!
wait "$PYPID"
PYPID=""

CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
export META_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
export META_MACHINE="$(nproc) shared vCPUs ($CPU), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
export META_GIT="git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff-index --quiet HEAD -- src 2>/dev/null || echo ', src/ has uncommitted changes')"
META_BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$(dirname "$BIN")/CMakeCache.txt" 2>/dev/null || true)"
export META_BUILD_TYPE="${META_BUILD_TYPE:-RelWithDebInfo (the CMakeLists default)}"
export META_LIBRAFT="$(pkg-config --modversion raft 2>/dev/null || echo '?')"
export META_ETCD_GO="$("$ETCD_BIN" --version | sed -n 's/^Go Version: //p')"
export META_TMP_FS="$(df -T "$TMP" | awk 'NR==2 {print $2 " on " $1}')"
export META_CMD="bash bench/raft.sh"
mkdir -p "$(dirname "$BENCH_OUT")"
"$PY" "$ROOT/bench/raft_bench.py" render "$TMP/results.json" >"$BENCH_OUT.tmp"
mv "$BENCH_OUT.tmp" "$BENCH_OUT"
echo "bench: wrote $BENCH_OUT" >&2
