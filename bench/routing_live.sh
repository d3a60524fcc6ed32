#!/usr/bin/env bash
# bench/routing_live.sh: the live counterpart of `infermesh simulate`: replay a slice of the Mooncake trace with
# `infermesh bench` against `infermesh dev` (ENGINES simulated engines at real speed behind one agent), one fresh
# mesh per time scale (cold caches), and print one markdown table row per run. Per-run JSON (bench --json) and
# the agent's /metrics after the run go to $OUT_DIR. Every process it starts is stopped on exit.
#
# Knobs (environment): INFERMESH_BIN (build/infermesh), TRACE (../shared/traces/mooncake_synthetic_trace.jsonl),
# ENGINES (4), SPEED (1), LIMIT (300), SCALES ("1 0.7 0.55"), SLO_MS (2000), PORT (18480), OUT_DIR (a temp dir),
# EXTRA (more bench flags).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
TRACE=${TRACE:-$ROOT/../shared/traces/mooncake_synthetic_trace.jsonl}
ENGINES=${ENGINES:-4}
SPEED=${SPEED:-1}
LIMIT=${LIMIT:-300}
SCALES=${SCALES:-"1 0.7 0.55"}
SLO_MS=${SLO_MS:-2000}
PORT=${PORT:-18480}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/routing-live.XXXXXX)}
EXTRA=${EXTRA:-}
mkdir -p "$OUT_DIR"

DEV_PID=
stop_dev() {
    if [[ -n $DEV_PID ]] && kill -0 "$DEV_PID" 2>/dev/null; then
        kill -TERM "$DEV_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DEV_PID" 2>/dev/null || true
        wait "$DEV_PID" 2>/dev/null || true
    fi
    DEV_PID=
}
trap stop_dev EXIT

echo "| time scale | offered req/s | TTFT p50 / p90 / p99 (ms) | e2e p50 / p99 (s) | throughput req/s | output tok/s |" \
     "goodput req/s (TTFT <= ${SLO_MS} ms) | SLO met | prefix-cache hits | queued in agent | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for scale in $SCALES; do
    "$BIN" dev --engines "$ENGINES" --speed "$SPEED" --port "$PORT" >"$OUT_DIR/dev-$scale.log" 2>&1 &
    DEV_PID=$!
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    "$BIN" bench --trace "$TRACE" --agent "http://127.0.0.1:$PORT" --limit "$LIMIT" --time-scale "$scale" \
        --slo-ttft-ms "$SLO_MS" --json $EXTRA >"$OUT_DIR/bench-$scale.json"
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT_DIR/metrics-$scale.txt" || true
    stop_dev
    python3 - "$OUT_DIR/bench-$scale.json" "$OUT_DIR/metrics-$scale.txt" "$scale" <<'EOF'
import json, re, sys
b = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read()
q = re.search(r"^infermesh_admission_queued_total (\S+)", m, re.M)
errs = ", ".join(f"{k}: {v}" for k, v in b["errors"].items()) or "0"
print(f"| {sys.argv[3]} | {b['offered_rps']:.2f} | {b['ttft_p50']*1e3:.0f} / {b['ttft_p90']*1e3:.0f} / "
      f"{b['ttft_p99']*1e3:.0f} | {b['e2e_p50']:.2f} / {b['e2e_p99']:.2f} | {b['throughput_rps']:.2f} | "
      f"{b['output_tps']:.0f} | {b['goodput_rps']:.2f} | {b['slo_attainment']*100:.1f}% | "
      f"{b['prefix_hit_rate']*100:.1f}% | {int(float(q.group(1))) if q else '?'} | {errs} |")
EOF
done
echo
echo "per-run JSON and agent metrics: $OUT_DIR"
