#!/usr/bin/env bash
# bench/tunnel.sh: what encrypted agent-to-agent hops cost next to the plaintext hops they replace, in one run.
#
# One simulated engine in zero-latency mode (sim-engine --speed 0) behind three paths:
#   one-agent   client -> agent A (the engine is its own target): no hop, the baseline
#   plain       client -> gateway G -> agent A over plaintext TCP (--insecure-hops on both) -> engine
#   tunnel      client -> gateway G -> agent A through the tunnel (the default) -> engine
# Each path with two agents is its own cluster (own key, own identities). Measured, for non-streaming and
# streaming (SSE) chat completions: latency at concurrency 1, closed loop (bench/latency.c, one keep-alive
# connection); and requests/s at CONNS connections (wrk) with the CPU both agents used per request.
# Repetitions are interleaved (rep -> test -> path, order rotated); the report shows medians. The crypto alone
# (handshake, seal + open per frame) is bench/tunnel_bench.c, run at the end.
# Writes its section of bench/results/transport.md (between the tunnel markers; other sections are kept), or
# $BENCH_OUT. Every process it starts is stopped on exit.
#
# Knobs: INFERMESH_BIN, BENCH_OUT, REPS (3), LAT_N (2000), WRK_SECS (4), CONNS (32), MAX_TOKENS (16),
# KEEP_TMP (1 = keep the temp dir).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/transport.md}
REPS=${REPS:-3}
LAT_N=${LAT_N:-2000}
WRK_SECS=${WRK_SECS:-4}
CONNS=${CONNS:-32}
MAX_TOKENS=${MAX_TOKENS:-16}
MODEL=meta-llama/Llama-3.1-8B-Instruct

for tool in wrk curl cc awk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (run make build)" >&2; exit 1; }

source "$ROOT/bench/lib.sh"
bench_setup tunnel-bench
WAIT_FOR_SECS=15

bench_build_latency
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT/src" -o "$TMP/tunnel_bench" "$ROOT/bench/tunnel_bench.c" \
    "$ROOT/src/tunnel/tunnel_wire.c" "$ROOT/src/cluster/keyring.c" "$ROOT/src/cluster/datadir.c" \
    "$ROOT/src/core/slice.c" "$ROOT/src/core/alloc.c" "$ROOT/src/core/log.c" -lsodium

start engine "$BIN" sim-engine --port 0 --speed 0 --log-level warn
wait_for "sim-engine" grep -q '^listening on http://127.0.0.1:' "$TMP/engine.out"
ENGINE_PORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine.out")

AGENT=(agent --scrape-interval-ms 200 --drain-timeout-ms 1000 --log-level warn)
pick_port PORT_one_agent
start one-agent "$BIN" "${AGENT[@]}" --listen "127.0.0.1:$PORT_one_agent" --target "http://127.0.0.1:$ENGINE_PORT" \
    --data-dir "$TMP/d-one"
for mode in plain tunnel; do
    flags=()
    [[ $mode == plain ]] && flags=(--insecure-hops)
    "$BIN" init --data-dir "$TMP/d-$mode-a" >/dev/null
    mkdir -m 700 "$TMP/d-$mode-g"
    cp -p "$TMP/d-$mode-a/cluster.key" "$TMP/d-$mode-a/cluster.id" "$TMP/d-$mode-g/"
    pick_port api_a; pick_port gos_a; pick_port api_g; pick_port gos_g
    start "$mode-a" "$BIN" "${AGENT[@]}" "${flags[@]}" --name "$mode-a" --listen "127.0.0.1:$api_a" \
        --target "http://127.0.0.1:$ENGINE_PORT" --data-dir "$TMP/d-$mode-a" --gossip "127.0.0.1:$gos_a"
    start "$mode-g" "$BIN" "${AGENT[@]}" "${flags[@]}" --name "$mode-g" --listen "127.0.0.1:$api_g" \
        --data-dir "$TMP/d-$mode-g" --gossip "127.0.0.1:$gos_g" --join "127.0.0.1:$gos_a"
    printf -v "PORT_$mode" '%s' "$api_g"
done
SUBJECTS=(one-agent plain tunnel)
port_of() { local v="PORT_${1//-/_}"; echo "${!v}"; }
pids_of() { case $1 in one-agent) echo "$PID_one_agent" ;; *) local a="PID_$1_a" g="PID_$1_g"; echo "${!a} ${!g}" ;; esac; }

BODY_NS="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS}"
BODY_ST="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
for s in "${SUBJECTS[@]}"; do
    wait_for "$s" "$LAT" --port "$(port_of "$s")" --body "$BODY_NS" --n 3 --warmup 0
done
for kind in ns st; do
    body=$BODY_NS; [[ $kind == st ]] && body=$BODY_ST
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' "$body" \
        >"$TMP/wrk-$kind.lua"
done
log "ready: one-agent :$PORT_one_agent, plain :$PORT_plain, tunnel :$PORT_tunnel"

RES=$TMP/results.tsv
: >"$RES"
HZ=$(getconf CLK_TCK)
run_wrk() { # run_wrk REP TEST SUBJECT KIND
    local pids t0 t1 p0 p1 out rps reqs errs
    pids=$(pids_of "$3")
    t0=$(date +%s.%N); p0=$(cpu_ticks $pids)
    out=$(wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" -s "$TMP/wrk-$4.lua" "http://127.0.0.1:$(port_of "$3")/v1/chat/completions")
    t1=$(date +%s.%N); p1=$(cpu_ticks $pids)
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
    errs=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    record "$1" "$2" "$3" "rps=$rps errors=${errs:-0} cpu_us_per_req=$(calc "($p1 - $p0) / $HZ * 1e6 / $reqs" 1) cores=$(calc "($p1 - $p0) / $HZ / ($t1 - $t0)" 2)"
}
TESTS=(lat_ns lat_st tput_ns tput_st)
run_test() {
    case $2 in
        lat_ns) record "$1" "$2" "$3" "$("$LAT" --port "$(port_of "$3")" --body "$BODY_NS" --n "$LAT_N" --warmup 200)" ;;
        lat_st) record "$1" "$2" "$3" "$("$LAT" --port "$(port_of "$3")" --body "$BODY_ST" --stream --n "$LAT_N" --warmup 200)" ;;
        tput_ns) run_wrk "$1" "$2" "$3" ns ;;
        tput_st) run_wrk "$1" "$2" "$3" st ;;
    esac
}

log "warm-up"
for s in "${SUBJECTS[@]}"; do
    "$LAT" --port "$(port_of "$s")" --body "$BODY_NS" --n 300 --warmup 0 >/dev/null
    wrk -t1 -c"$CONNS" -d1s -s "$TMP/wrk-ns.lua" "http://127.0.0.1:$(port_of "$s")/v1/chat/completions" >/dev/null
done
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
NS=${#SUBJECTS[@]}
for ((rep = 1; rep <= REPS; rep++)); do
    order=()
    for ((k = 0; k < NS; k++)); do order+=("${SUBJECTS[$(((k + rep - 1) % NS))]}"); done
    log "rep $rep/$REPS (order: ${order[*]})"
    for test in "${TESTS[@]}"; do for s in "${order[@]}"; do run_test "$rep" "$test" "$s"; done; done
done
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "bench: process $p died during the run" >&2; exit 1; }; done
# the tunnel path really went through the tunnel, and the plain one did not
tunnel_accepted() { # tunnel_accepted MODE: streams agent MODE-a accepted
    local api
    api=$(grep -o -- '--name '"$1"'-a --listen 127.0.0.1:[0-9]*' <<<"${COMMANDS[*]}" | sed 's/.*://')
    curl -s "http://127.0.0.1:$api/metrics" | awk '$1 == "infermesh_tunnel_accepted_total" { print $2 }'
}
ACC_TUNNEL=$(tunnel_accepted tunnel); ACC_PLAIN=$(tunnel_accepted plain)

errors=$(awk -F'\t' '$4 == "errors" { x += $5 } END { print x + 0 }' "$RES")

SECTION=$TMP/section.md
{
    echo "<!-- tunnel:begin (written by bench/tunnel.sh) -->"
    echo "## Encrypted agent-to-agent hops (the tunnel) vs the plaintext hops they replace"
    echo
    echo "Produced by \`bench/tunnel.sh\` at $START_TS, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "REPS=$REPS (medians), LAT_N=$LAT_N, CONNS=$CONNS, WRK_SECS=$WRK_SECS, max_tokens $MAX_TOKENS; machine: $(nproc) vCPU"
    echo "($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load average at the end $(cut -d' ' -f1 /proc/loadavg)."
    echo "Paths: *one-agent* = client → agent → engine (no hop); *plain* = client → gateway → agent over plaintext"
    echo "TCP (\`--insecure-hops\`); *tunnel* = the same through the encrypted tunnel (the default). CPU per request"
    echo "is both agents' user + system time over the wrk run divided by the requests served. Streams the tunnel"
    echo "agent accepted: ${ACC_TUNNEL:-0} (plain: ${ACC_PLAIN:-0}); errors over the run: $errors."
    echo
    echo "| | one-agent | plain hop | tunnel hop | tunnel − plain | tunnel / plain |"
    echo "|---|---:|---:|---:|---:|---:|"
    for kind in ns st; do
        label="non-streaming"; [[ $kind == st ]] && label="streaming"
        for k in p50_us p99_us; do
            o=$(med "lat_$kind" one-agent "$k"); p=$(med "lat_$kind" plain "$k"); t=$(med "lat_$kind" tunnel "$k")
            echo "| $label latency ${k%_us}, concurrency 1 | $(calc "$o") µs | $(calc "$p") µs | $(calc "$t") µs | $(calc "$t - $p") µs | $(ratio "$t" "$p") |"
        done
        o=$(med "tput_$kind" one-agent rps); p=$(med "tput_$kind" plain rps); t=$(med "tput_$kind" tunnel rps)
        echo "| $label requests/s, $CONNS connections | $(calc "$o" 0) | $(calc "$p" 0) | $(calc "$t" 0) | $(calc "$t - $p" 0) | $(ratio "$t" "$p") |"
        o=$(med "tput_$kind" one-agent cpu_us_per_req); p=$(med "tput_$kind" plain cpu_us_per_req); t=$(med "tput_$kind" tunnel cpu_us_per_req)
        echo "| $label CPU per request (all agents on the path) | $(calc "$o") µs | $(calc "$p") µs | $(calc "$t") µs | $(calc "$t - $p") µs | $(ratio "$t" "$p") |"
    done
    echo
    echo "The crypto alone (\`bench/tunnel_bench.c\`, one thread, no I/O; run right after the above):"
    echo
    echo "| | |"
    echo "|---|---:|"
    "$TMP/tunnel_bench"
    echo
    echo "Commands:"
    echo '```'
    for c in "${COMMANDS[@]}"; do echo "${c//$TMP/\$TMP}"; done
    echo '```'
    echo "<!-- tunnel:end -->"
} >"$SECTION"

if [[ -f $BENCH_OUT ]] && grep -q '<!-- tunnel:begin' "$BENCH_OUT"; then
    awk -v sec="$SECTION" '/<!-- tunnel:begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
        /<!-- tunnel:end -->/ { skip = 0; next } !skip { print }' "$BENCH_OUT" >"$TMP/out.md"
    cp "$TMP/out.md" "$BENCH_OUT"
else
    [[ -f $BENCH_OUT ]] || printf '# Transport benchmarks\n\nSections are written by the scripts named in them.\n\n' >"$BENCH_OUT"
    cat "$SECTION" >>"$BENCH_OUT"
fi
log "wrote $BENCH_OUT"
cat "$SECTION"
