#!/usr/bin/env bash
# bench/grpc.sh: ScoreTargets decisions per second, latency and CPU per decision at 16, 64 and 256 targets,
# next to a gRPC health check in the same run (bench/grpc_bench.py has the method); writes
# bench/results/grpc.md. Needs a release build (make build) and python3-grpcio, python3-grpc-tools.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export INFERMESH_BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
[[ -x $INFERMESH_BIN ]] || { echo "bench: $INFERMESH_BIN not built (run make build)" >&2; exit 1; }
exec /usr/bin/python3 "$ROOT/bench/grpc_bench.py"
