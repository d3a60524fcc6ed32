#!/usr/bin/env bash
# bench/split.sh: a model split with llama.cpp RPC, with its RPC bytes through the agent-to-agent tunnel, next
# to the same split over direct loopback TCP and to one llama-server alone, in one run.
#
# The tiny random-weight model of ../shared/runtimes/llama.cpp (4 layers; its text is noise) on one thread:
#   one-process  llama-server alone
#   rpc-direct   llama-server --rpc 127.0.0.1:P -> rpc-server on P (loopback TCP, plaintext)
#   rpc-tunnel   llama-server --rpc 127.0.0.1:L -> host agent's forwarder L -> tunnel -> worker agent ->
#                rpc-server (run by hand on the worker, allowed with --tunnel-allow; the host forwards:
#                --tunnel-forward)
# Measured per path (chat completions of MAX_TOKENS tokens straight to its llama-server, one at a time, with
# curl: llama-server closes its connections after a stream, which bench/latency.c does not take): the whole
# request (curl's time_total), and as llama.cpp reports them the prompt's processing (timings.prompt_ms: the
# time to the first token, less HTTP) and generation tokens/s (timings.predicted_per_second). Repetitions
# interleaved; medians. Writes bench/results/split.md (or $BENCH_OUT). Stops every process it started on exit.
#
# Knobs: INFERMESH_BIN, LLAMA_DIR, BENCH_OUT, REPS (3), N (40), MAX_TOKENS (32), KEEP_TMP.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
LLAMA_DIR=${LLAMA_DIR:-$ROOT/../shared/runtimes/llama.cpp}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/split.md}
REPS=${REPS:-3}
N=${N:-40}
MAX_TOKENS=${MAX_TOKENS:-32}
SERVER=$LLAMA_DIR/bin/llama-server RPC=$LLAMA_DIR/bin/rpc-server GGUF=$LLAMA_DIR/models/tiny-llama.gguf
for f in "$SERVER" "$RPC" "$GGUF" "$BIN"; do [[ -e $f ]] || { echo "bench: $f missing" >&2; exit 1; }; done

source "$ROOT/bench/lib.sh"
bench_setup split-bench
WAIT_FOR_SECS=60
bench_build_latency
port() { "$LAT" --free-port; }
LLAMA=(-m "$GGUF" --host 127.0.0.1 -c 1024 -np 1 -t 1)

P_one=$(port); start one "$SERVER" "${LLAMA[@]}" --port "$P_one"
RPC_DIRECT=$(port); start rpc-direct "$RPC" -H 127.0.0.1 -p "$RPC_DIRECT"
wait_for "rpc-server" bash -c "exec 3<>/dev/tcp/127.0.0.1/$RPC_DIRECT"
P_direct=$(port); start direct "$SERVER" "${LLAMA[@]}" --port "$P_direct" -ngl 99 --rpc "127.0.0.1:$RPC_DIRECT"

"$BIN" init --data-dir "$TMP/d-worker" >/dev/null
mkdir -m 700 "$TMP/d-host"; cp -p "$TMP/d-worker/cluster.key" "$TMP/d-worker/cluster.id" "$TMP/d-host/"
RPC_WORKER=$(port); GW=$(port); GH=$(port); FWD=$(port)
start rpc-worker "$RPC" -H 127.0.0.1 -p "$RPC_WORKER"
start worker "$BIN" agent --name worker --listen "127.0.0.1:$(port)" --data-dir "$TMP/d-worker" \
    --gossip "127.0.0.1:$GW" --tunnel-allow "$RPC_WORKER" --log-level warn
start host "$BIN" agent --name host --listen "127.0.0.1:$(port)" --data-dir "$TMP/d-host" --gossip "127.0.0.1:$GH" \
    --join "127.0.0.1:$GW" --tunnel-forward "$FWD=worker:$RPC_WORKER" --log-level warn
wait_for "worker rpc-server" bash -c "exec 3<>/dev/tcp/127.0.0.1/$RPC_WORKER"
P_tunnel=$(port)
for _ in 1 2 3 4 5; do # the host learns of the worker within a second or so: retry the load until it can
    start tunnel "$SERVER" "${LLAMA[@]}" --port "$P_tunnel" -ngl 99 --rpc "127.0.0.1:$FWD"
    wait_for "llama-server over the tunnel" curl -sf "http://127.0.0.1:$P_tunnel/health" && break
done

SUBJECTS=(one-process rpc-direct rpc-tunnel)
port_of() { case $1 in one-process) echo "$P_one" ;; rpc-direct) echo "$P_direct" ;; rpc-tunnel) echo "$P_tunnel" ;; esac; }
for s in "${SUBJECTS[@]}"; do wait_for "$s" curl -sf "http://127.0.0.1:$(port_of "$s")/health"; done
log "ready: one-process :$P_one, rpc-direct :$P_direct, rpc-tunnel :$P_tunnel"

BODY="{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me about the mesh.\"}],\"max_tokens\":$MAX_TOKENS}"
RES=$TMP/results.tsv; : >"$RES"
NS=${#SUBJECTS[@]}
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((rep = 1; rep <= REPS; rep++)); do
    order=(); for ((k = 0; k < NS; k++)); do order+=("${SUBJECTS[$(((k + rep - 1) % NS))]}"); done
    log "rep $rep/$REPS (order: ${order[*]})"
    for s in "${order[@]}"; do
        for ((i = 0; i < N; i++)); do
            out=$(curl -sf -w '\ntime_total=%{time_total}\n' "http://127.0.0.1:$(port_of "$s")/v1/chat/completions" -d "$BODY")
            awk -v rep="$rep" -v s="$s" '
                match($0, /"prompt_ms":[0-9.e+-]+/) { printf "%s\t%s\tprompt_ms\t%s\n", rep, s, substr($0, RSTART + 12, RLENGTH - 12) }
                match($0, /"predicted_per_second":[0-9.e+-]+/) { printf "%s\t%s\ttps\t%s\n", rep, s, substr($0, RSTART + 23, RLENGTH - 23) }
                /^time_total=/ { sub(/time_total=/, ""); printf "%s\t%s\ttotal_ms\t%s\n", rep, s, $0 * 1000 }' <<<"$out" >>"$RES"
        done
    done
done
TUNNEL_BYTES=$(curl -s "http://127.0.0.1:$(grep -o -- '--name worker --listen 127.0.0.1:[0-9]*' <<<"${COMMANDS[*]}" | sed 's/.*://')/metrics" |
    awk '$1 == "infermesh_tunnel_bytes_total{dir=\"in\"}" { print $2 }')
q() { # q SUBJECT KEY QUANTILE -> that quantile over every request of every rep
    awk -F'\t' -v s="$1" -v k="$2" '$2 == s && $3 == k { print $4 }' "$RES" | sort -g |
        awk -v f="$3" '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(f * NR + 0.999); if (i < 1) i = 1; print v[i] }'
}
{
    echo "# A model split with llama.cpp RPC: through the tunnel, over direct TCP, and unsplit"
    echo
    echo "Produced by \`bench/split.sh\` at $START_TS, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "REPS=$REPS, N=$N requests per path and rep (quantiles over all of them), max_tokens $MAX_TOKENS; machine: $(nproc) vCPU,"
    echo "load average at the end $(cut -d' ' -f1 /proc/loadavg). Model: the tiny random-weight test model (4 layers, 9 MB), one"
    echo "thread, every layer in the rpc-server for the split paths. Bytes the worker's tunnel carried in: ${TUNNEL_BYTES:-?}."
    echo
    echo "| | one process | split, direct TCP | split, tunnel | tunnel / direct |"
    echo "|---|---:|---:|---:|---:|"
    row() { # row LABEL KEY QUANTILE UNIT DIGITS
        local o d t
        o=$(q one-process "$2" "$3"); d=$(q rpc-direct "$2" "$3"); t=$(q rpc-tunnel "$2" "$3")
        echo "| $1 | $(calc "$o" "$5")$4 | $(calc "$d" "$5")$4 | $(calc "$t" "$5")$4 | $(calc "$t / $d" 2)× |"
    }
    row "whole request p50" total_ms 0.5 " ms" 2
    row "whole request p99" total_ms 0.99 " ms" 2
    row "prompt processing (≈ time to first token) p50" prompt_ms 0.5 " ms" 2
    row "generation tokens/s p50" tps 0.5 "" 0
    echo
    echo "Commands:"
    echo '```'
    for c in "${COMMANDS[@]}"; do echo "${c//$TMP/\$TMP}"; done
    echo '```'
} >"$BENCH_OUT"
log "wrote $BENCH_OUT"
cat "$BENCH_OUT"
