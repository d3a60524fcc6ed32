#!/usr/bin/env bash
# bench/proxy_instructions.sh: instructions the agent executes per proxied request, two builds side by side in
# one run. Counted by valgrind's callgrind, so the figure does not move with the load of a shared machine (CPU
# time per request in bench/proxy.sh does, by tens of percent on 2 shared cores); it weighs every instruction
# alike, so it tells what a code change adds to the request path, not how fast a CPU runs it.
#
# For each binary: a zero-latency sim-engine, an agent under callgrind (--log-level warn, --ledger false, no
# scrapes after the first), 100 warm-up requests then N1 and, in a second run, N2 closed-loop requests on one
# keep-alive connection (bench/latency.c); per request = (total at N2 - total at N1) / (N2 - N1), which
# cancels start-up and shutdown. Non-streaming and streaming chat completions (16 tokens).
#
# Knobs (environment): BASE_BIN (the build to compare with; required), INFERMESH_BIN (default build/infermesh),
# N1 (500), N2 (2500), BENCH_OUT (bench/results/proxy_instructions.md), BASE_FLAGS and FLAGS (extra agent flags
# for the base and for this build: one binary with two settings, e.g. FLAGS="--otlp-endpoint URL").
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BASE=${BASE_BIN:?set BASE_BIN to the infermesh binary to compare with}
N1=${N1:-500}
N2=${N2:-2500}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/proxy_instructions.md}
MODEL=meta-llama/Llama-3.1-8B-Instruct
for tool in valgrind curl cc; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/infermesh-instr.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
cc -O2 -Wall -Wextra -o "$TMP/latency" "$ROOT/bench/latency.c"
LAT=$TMP/latency

# total BIN N BODY FLAGS: the instructions of one agent process (with extra FLAGS) that served N requests with BODY.
total() {
    local bin=$1 n=$2 body=$3 flags=$4 d eport aport ep ap
    d=$(mktemp -d "$TMP/run.XXXX")
    "$bin" sim-engine --port 0 --speed 0 --log-level warn >"$d/engine.out" 2>&1 &
    ep=$!; PIDS+=("$ep")
    for _ in $(seq 100); do grep -qs '^listening on' "$d/engine.out" && break; sleep 0.05; done
    eport=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$d/engine.out")
    aport=$("$LAT" --free-port)
    valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$bin" agent --listen "127.0.0.1:$aport" \
        --target "http://127.0.0.1:$eport" --scrape-interval-ms 600000 --log-level warn --ledger false \
        --data-dir "$d/data" $flags >"$d/agent.out" 2>&1 &
    ap=$!; PIDS+=("$ap")
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$aport/readyz" >/dev/null && break; sleep 0.1; done
    "$LAT" --port "$aport" --body "$body" --n "$n" --warmup 100 --rate 0 >/dev/null
    kill -TERM "$ap"; wait "$ap" 2>/dev/null || true
    kill -TERM "$ep"; wait "$ep" 2>/dev/null || true
    awk '/^(summary|totals):/ { print $2; exit }' "$d/cg.out"
}

per_request() { # per_request BIN BODY FLAGS
    local a b
    a=$(total "$1" "$N1" "$2" "$3")
    b=$(total "$1" "$N2" "$2" "$3")
    echo $(((b - a) / (N2 - N1)))
}

NS="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":16}"
ST="{\"model\":\"$MODEL\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":16}"
{
    echo "# Instructions per proxied request (callgrind)"
    echo
    echo "$(date -u +%Y-%m-%d), $(nproc) vCPU, $(uname -r); \`BASE_BIN=$BASE INFERMESH_BIN=$BIN N1=$N1 N2=$N2 BASE_FLAGS='${BASE_FLAGS:-}' FLAGS='${FLAGS:-}' bench/proxy_instructions.sh\`"
    echo
    echo "| request | base | this build | this / base |"
    echo "|---|---:|---:|---:|"
    for kind in non-streaming streaming; do
        body=$NS
        [[ $kind == streaming ]] && body=$ST
        b=$(per_request "$BASE" "$body" "${BASE_FLAGS:-}")
        t=$(per_request "$BIN" "$body" "${FLAGS:-}")
        echo "| $kind | $b | $t | $(awk "BEGIN { printf \"%.3f\", $t / $b }") |"
    done
} | tee "$BENCH_OUT"
