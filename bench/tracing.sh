#!/usr/bin/env bash
# bench/tracing.sh: what OpenTelemetry tracing costs on the request path, side by side in one run.
#
# Three agents in front of one zero-latency sim-engine (--speed 0), all --log-level warn --ledger false:
#   off       no OTLP endpoint (tracing off: one branch per request)
#   ratio0    --otlp-endpoint, --trace-sample 0: ids made and traceparent sent upstream, no span recorded
#   ratio1    --otlp-endpoint, --trace-sample 1: every request's spans (server, admission, route, attempt)
#             encoded as OTLP protobuf and POSTed to a collector
# The collector is a stdlib Python HTTP server on 127.0.0.1 that reads each POST and answers 200 (its CPU is
# not counted). wrk -t1 -c$CONNS for $WRK_SECS s on each agent, interleaved $REPS times (order rotated);
# CPU = utime+stime of the agent process over the run and the second after it (the exporter's last batch) /
# requests completed. Medians, and ratios to off. The same comparison in instructions (steady on a shared
# machine): BASE_BIN=build/infermesh FLAGS="--otlp-endpoint URL" bench/proxy_instructions.sh.
# Writes bench/results/tracing.md (or $BENCH_OUT). Every process it starts is stopped on exit.
# Knobs: INFERMESH_BIN (build/infermesh), REPS (3), WRK_SECS (4), CONNS (64).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/tracing.md}
REPS=${REPS:-3}
WRK_SECS=${WRK_SECS:-4}
CONNS=${CONNS:-64}
MODEL=meta-llama/Llama-3.1-8B-Instruct
[[ -x $BIN ]] || { echo "bench: $BIN not built (make build)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench: wrk not found (run scripts/bootstrap)" >&2; exit 1; }
source "$ROOT/bench/lib.sh"
bench_setup tracing-bench

start engine "$BIN" sim-engine --port 0 --speed 0 --log-level warn
wait_for "sim-engine" grep -q '^listening' "$TMP/engine.out"
EPORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine.out")

pick_port CPORT
cat >"$TMP/collector.py" <<'COLLECTOR'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
COLLECTOR
start collector python3 "$TMP/collector.py" "$CPORT"

VARIANTS=(off ratio0 ratio1)
declare -A PORT PID
for v in "${VARIANTS[@]}"; do
    pick_port "PORT[$v]"
    flags=()
    [[ $v == ratio0 ]] && flags=(--otlp-endpoint "http://127.0.0.1:$CPORT" --trace-sample 0)
    [[ $v == ratio1 ]] && flags=(--otlp-endpoint "http://127.0.0.1:$CPORT" --trace-sample 1)
    start "agent-$v" "$BIN" agent --listen "127.0.0.1:${PORT[$v]}" --target "http://127.0.0.1:$EPORT" \
        --data-dir "$TMP/d-$v" --log-level warn --ledger false --scrape-interval-ms 200 "${flags[@]}"
    PID[$v]=${PIDS[-1]}
    wait_for "agent $v" curl -sf "http://127.0.0.1:${PORT[$v]}/readyz"
done
cat >"$TMP/wrk.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"$MODEL","messages":[{"role":"user","content":"Hello, mesh!"}],"max_tokens":16}'
EOF
metric() { curl -sf "http://127.0.0.1:${PORT[$1]}/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
declare -A US RPS
for rep in $(seq "$REPS"); do
    k=$(((rep - 1) % 3))
    order=("${VARIANTS[@]:$k}" "${VARIANTS[@]:0:$k}")
    for v in "${order[@]}"; do
        t0=$(cpu_ticks "${PID[$v]}")
        out=$(wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" -s "$TMP/wrk.lua" "http://127.0.0.1:${PORT[$v]}/v1/chat/completions")
        sleep 1.2 # the exporter's last partial batch of the run goes out (its interval is 1 s)
        t1=$(cpu_ticks "${PID[$v]}")
        n=$(awk '/requests in/ {print $1}' <<<"$out")
        us=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
        US[$v]+="$us "
        RPS[$v]+="$(awk -v n="$n" -v s="$WRK_SECS" 'BEGIN {printf "%.0f", n / s}') "
        log "rep $rep $v: $n requests, $us us CPU per request"
    done
done
declare -A MED
for v in "${VARIANTS[@]}"; do MED[$v]=$(median <<<"${US[$v]}"); done
EXPORTED=$(metric ratio1 infermesh_trace_spans_exported_total)
DROPPED=$(metric ratio1 infermesh_trace_spans_dropped_total)
POSTS=$(metric ratio1 infermesh_trace_exports_total)
{
    echo "# Tracing benchmark"
    echo
    echo "\`bench/tracing.sh\` ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); REPS=$REPS, wrk -t1 -c$CONNS -d${WRK_SECS}s, zero-latency"
    echo "sim-engine, non-streaming chat completions, agents at --log-level warn --ledger false)."
    echo
    echo "| agent | CPU per request (median) | / off | requests/s (per rep) |"
    echo "|---|---|---|---|"
    echo "| tracing off | ${MED[off]} µs | 1.00× | ${RPS[off]}|"
    echo "| tracing on, sample ratio 0 (ids and traceparent only) | ${MED[ratio0]} µs | $(ratio "${MED[ratio0]}" "${MED[off]}") | ${RPS[ratio0]}|"
    echo "| tracing on, sample ratio 1 (4 spans a request exported) | ${MED[ratio1]} µs | $(ratio "${MED[ratio1]}" "${MED[off]}") | ${RPS[ratio1]}|"
    echo
    echo "Ratio 1: $EXPORTED spans exported in $POSTS POSTs, $DROPPED dropped (a full queue or a failed POST; a dropped"
    echo "span is not encoded, so it costs less than an exported one)."
    echo "Per-rep CPU (µs/request): off: ${US[off]}; ratio 0: ${US[ratio0]}; ratio 1: ${US[ratio1]}."
} >"$BENCH_OUT"
cat "$BENCH_OUT"
