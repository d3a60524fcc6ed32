#!/usr/bin/env bash
# bench/routing_live.sh: the live counterpart of `infermesh simulate`: replay a slice of the Mooncake trace with
# `infermesh bench` against `infermesh dev` (simulated engines at real speed), one fresh mesh per row (cold
# caches), and print one markdown table row per run. With NODES=1, ENGINES engines behind one agent; with NODES=N,
# `dev --nodes N` (ENGINES engines per node, every agent routing to every engine) and, for each count k in INGRESS,
# the requests spread over the first k agents in turn (`bench --agent` repeated) at the same rate: the mesh with
# every node taking requests against one ingress. Per-run JSON (bench --json) and every agent's /metrics after
# the run go to $OUT_DIR. Every process it starts is stopped on exit.
#
# Knobs (environment): INFERMESH_BIN (build/infermesh), TRACE (../shared/traces/mooncake_synthetic_trace.jsonl),
# NODES (1), ENGINES (4 with one node, else 1 per node), INGRESS ("1" with one node, else "1 NODES"), SPEED (1),
# LIMIT (300), SCALES ("1 0.7 0.55"), SLO_MS (2000), PORT (18480; agents on PORT..PORT+NODES-1), GOSSIP_PORT
# (18580), OUT_DIR (a temp dir), EXTRA (more bench flags).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
TRACE=${TRACE:-$ROOT/../shared/traces/mooncake_synthetic_trace.jsonl}
NODES=${NODES:-1}
if ((NODES > 1)); then ENGINES=${ENGINES:-1}; INGRESS=${INGRESS:-"1 $NODES"}; else ENGINES=${ENGINES:-4}; INGRESS=1; fi
SPEED=${SPEED:-1}
LIMIT=${LIMIT:-300}
SCALES=${SCALES:-"1 0.7 0.55"}
SLO_MS=${SLO_MS:-2000}
PORT=${PORT:-18480}
GOSSIP_PORT=${GOSSIP_PORT:-18580}
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

echo "| time scale | ingress nodes | offered req/s | TTFT p50 / p90 / p99 (ms) | e2e p50 / p99 (s) | throughput req/s | output tok/s |" \
     "goodput req/s (TTFT <= ${SLO_MS} ms) | SLO met | prefix-cache hits | queued in agents | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
DEV=(dev --engines "$ENGINES" --speed "$SPEED" --port "$PORT")
((NODES > 1)) && DEV+=(--nodes "$NODES" --gossip-port "$GOSSIP_PORT")
for scale in $SCALES; do
  for k in $INGRESS; do
    run="$scale-$k"
    "$BIN" "${DEV[@]}" >"$OUT_DIR/dev-$run.log" 2>&1 &
    DEV_PID=$!
    agents=()
    for ((i = 0; i < NODES; i++)); do
        for _ in $(seq 300); do
            curl -sf "http://127.0.0.1:$((PORT + i))/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
        ((i < k)) && agents+=(--agent "http://127.0.0.1:$((PORT + i))")
    done
    # every agent sees every engine before the replay starts
    for _ in $(seq 300); do
        n=$(curl -sf "http://127.0.0.1:$PORT/v1/cluster/targets" 2>/dev/null |
            python3 -c 'import json,sys; print(sum(t.get("healthy", False) for t in json.load(sys.stdin)["targets"]))' 2>/dev/null || echo 0)
        ((n >= NODES * ENGINES)) && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    "$BIN" bench --trace "$TRACE" "${agents[@]}" --limit "$LIMIT" --time-scale "$scale" \
        --slo-ttft-ms "$SLO_MS" --json $EXTRA >"$OUT_DIR/bench-$run.json"
    for ((i = 0; i < NODES; i++)); do curl -sf "http://127.0.0.1:$((PORT + i))/metrics" || true; done >"$OUT_DIR/metrics-$run.txt"
    stop_dev
    python3 - "$OUT_DIR/bench-$run.json" "$OUT_DIR/metrics-$run.txt" "$scale" "$k" <<'EOF'
import json, re, sys
b = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read()
q = re.findall(r"^infermesh_admission_queued_total (\S+)", m, re.M)
errs = ", ".join(f"{k}: {v}" for k, v in b["errors"].items()) or "0"
print(f"| {sys.argv[3]} | {sys.argv[4]} | {b['offered_rps']:.2f} | {b['ttft_p50']*1e3:.0f} / {b['ttft_p90']*1e3:.0f} / "
      f"{b['ttft_p99']*1e3:.0f} | {b['e2e_p50']:.2f} / {b['e2e_p99']:.2f} | {b['throughput_rps']:.2f} | "
      f"{b['output_tps']:.0f} | {b['goodput_rps']:.2f} | {b['slo_attainment']*100:.1f}% | "
      f"{b['prefix_hit_rate']*100:.1f}% | {int(sum(map(float, q))) if q else '?'} | {errs} |")
EOF
  done
done
echo
echo "per-run JSON and agent metrics: $OUT_DIR"
