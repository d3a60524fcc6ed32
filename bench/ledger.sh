#!/usr/bin/env bash
# bench/ledger.sh: what metering costs on the request path, how fast the ledger's writer commits, and how fast
# the PostgreSQL outbox catches up after an outage — side by side, in one run.
#
#   CPU per request: two agents in front of one zero-latency sim-engine (--speed 0), one with --ledger false,
#     one with the ledger on and a price (cost computed, usage.cost inserted, a record committed per request);
#     wrk -t1 -c$CONNS for $WRK_SECS s on each, interleaved $REPS times; CPU = utime+stime of the agent process
#     (all its threads: the writer's included) over the run / requests completed. Medians.
#   writer: bench/ledger_bench.c, records/s through the writer thread (group commit), $REPS runs, median.
#   outbox: an agent with --ledger-postgres serves $OUTBOX_N requests while PostgreSQL is stopped; then
#     PostgreSQL starts and we time until every record is there (records/s of the catch-up).
# Writes bench/results/ledger.md (or $BENCH_OUT). Every process it starts is stopped on exit.
# Knobs: INFERMESH_BIN (build/infermesh), REPS (5), WRK_SECS (4), CONNS (64), OUTBOX_N (20000).
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/ledger.md}
REPS=${REPS:-5}
WRK_SECS=${WRK_SECS:-4}
CONNS=${CONNS:-64}
OUTBOX_N=${OUTBOX_N:-20000}
PG_BIN=/usr/lib/postgresql/15/bin
MODEL=meta-llama/Llama-3.1-8B-Instruct
[[ -x $BIN ]] || { echo "bench: $BIN not built (make build)" >&2; exit 1; }
source "$ROOT/bench/lib.sh"
bench_setup ledger-bench
chmod 755 "$TMP"
PG_UP=0
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
bench_at_exit() { [[ $PG_UP == 1 ]] && as_pg "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -m fast stop >/dev/null 2>&1 || true; }
wait_http() { wait_for "$1" curl -sf "$1"; }

start engine "$BIN" sim-engine --port 0 --speed 0 --log-level warn
wait_for "sim-engine" grep -q '^listening' "$TMP/engine.out"
EPORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine.out")

declare -A PORT PID
for v in off on; do
    pick_port "PORT[$v]"
    flags=(--ledger false)
    [[ $v == on ]] && flags=(--price "model=$MODEL,prompt=0.5,completion=1.5")
    start "agent-$v" "$BIN" agent --listen "127.0.0.1:${PORT[$v]}" --target "http://127.0.0.1:$EPORT" --data-dir "$TMP/d-$v" \
        --log-level warn --scrape-interval-ms 200 "${flags[@]}"
    PID[$v]=${PIDS[-1]}
    wait_http "http://127.0.0.1:${PORT[$v]}/readyz"
done
cat >"$TMP/wrk.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"$MODEL","messages":[{"role":"user","content":"Hello, mesh!"}],"max_tokens":16}'
EOF
declare -A US
for rep in $(seq "$REPS"); do
    for v in off on; do
        t0=$(cpu_ticks "${PID[$v]}")
        out=$(wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" -s "$TMP/wrk.lua" "http://127.0.0.1:${PORT[$v]}/v1/chat/completions")
        t1=$(cpu_ticks "${PID[$v]}")
        n=$(awk '/requests in/ {print $1}' <<<"$out")
        us=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
        US[$v]+="$us "
        echo "rep $rep $v: $n requests, $us us CPU per request" >&2
        if [[ $v == on ]]; then # the same run once SQLite holds its records: the deferred fill counted too
            curl -sf -m 120 "http://127.0.0.1:${PORT[$v]}/v1/ledger/usage" >/dev/null
            t2=$(cpu_ticks "${PID[$v]}")
            us=$(awk -v a="$t0" -v b="$t2" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
            US[filled]+="$us "
            echo "rep $rep on, SQLite filled: $us us CPU per request" >&2
        fi
    done
done
OFF=$(median <<<"${US[off]}")
ON=$(median <<<"${US[on]}")
FILLED=$(median <<<"${US[filled]}")
RATIO=$(awk -v a="$OFF" -v b="$ON" 'BEGIN {printf "%.3f", b / a}')
RATIO_FILLED=$(awk -v a="$OFF" -v b="$FILLED" 'BEGIN {printf "%.3f", b / a}')
curl -sf -m 120 "http://127.0.0.1:${PORT[on]}/v1/ledger/usage" >/dev/null
RECORDS=$(python3 -c "import sqlite3; print(sqlite3.connect('$TMP/d-on/ledger.db').execute('select count(*) from usage').fetchone()[0])")

cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT/src" -I/usr/include/postgresql -o "$TMP/ledger_bench" "$ROOT/bench/ledger_bench.c" \
    "$ROOT"/src/ledger/*.c "$ROOT"/src/core/{alloc,buf,slice,log,clock,amount,period}.c -lsqlite3 -luv -lpq -lm -lxxhash
W=""
F=""
for rep in $(seq "$REPS"); do
    line=$("$TMP/ledger_bench" "$TMP" 300000)
    r=$(awk '{print $6}' <<<"$line")
    f=$(sed -n 's/.*SQLite filled in [0-9.]* s: \([0-9]*\) records.*/\1/p' <<<"$line")
    echo "writer rep $rep: $r records/s to the journal, $f records/s into SQLite" >&2
    W+="$r "
    F+="$f "
done
WRITER=$(median <<<"$W")
FILL=$(median <<<"$F")

OUTBOX="not measured (PostgreSQL 15 not installed)"
if [[ -x $PG_BIN/initdb ]]; then
    mkdir -p "$TMP/pg"
    [[ $(id -u) == 0 ]] && chown postgres "$TMP/pg"
    pick_port PGPORT
    as_pg "$PG_BIN/initdb" -D "$TMP/pg/data" -A trust -U infermesh --no-sync >/dev/null
    pick_port APORT
    start agent-pg "$BIN" agent --listen "127.0.0.1:$APORT" --target "http://127.0.0.1:$EPORT" --data-dir "$TMP/d-pg" \
        --log-level warn --ledger-postgres "postgresql://infermesh@127.0.0.1:$PGPORT/postgres"
    wait_http "http://127.0.0.1:$APORT/readyz"
    python3 - "$APORT" "$OUTBOX_N" "$MODEL" <<'EOF'
import http.client, json, sys
port, n, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
for i in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    c.getresponse().read()
EOF
    as_pg "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -w -l "$TMP/pg/log" \
        -o "-p $PGPORT -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null
    PG_UP=1
    t0=$(date +%s.%N)
    while :; do
        c=$(psql -h 127.0.0.1 -p "$PGPORT" -U infermesh -d postgres -Atc "select count(*) from infermesh_usage" 2>/dev/null || echo 0)
        [[ $c -ge $OUTBOX_N ]] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    OUTBOX=$(awk -v a="$t0" -v b="$t1" -v n="$OUTBOX_N" 'BEGIN {printf "%d records in %.2f s after PostgreSQL came back: %.0f records/s (includes the outbox noticing, within its 5 s backoff)", n, b - a, n / (b - a)}')
fi

{
    echo "# Ledger benchmark"
    echo
    echo "\`bench/ledger.sh\` ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); REPS=$REPS, wrk -t1 -c$CONNS -d${WRK_SECS}s)."
    echo
    echo "| what | result | goal |"
    echo "|---|---|---|"
    echo "| agent CPU per request, ledger off | $OFF µs | |"
    echo "| agent CPU per request, ledger on (priced, in the journal) during the run | $ON µs | |"
    echo "| on / off | ${RATIO}x | ≤ 1.05x |"
    echo "| ledger on, counting the later move of those records into SQLite | $FILLED µs (${RATIO_FILLED}x) | |"
    echo "| writer, records/s into the journal (group commit) | $WRITER | ≥ 50,000 |"
    echo "| filling SQLite from the journal, records/s (WAL, synchronous=NORMAL) | $FILL | |"
    echo "| outbox catch-up into PostgreSQL | $OUTBOX | |"
    echo
    echo "Per-rep CPU (µs/request): off: ${US[off]}; on: ${US[on]}; on, SQLite filled: ${US[filled]}. Records in the ledger after the run: $RECORDS."
    echo "Writer runs (records/s): $W"
} >"$BENCH_OUT"
cat "$BENCH_OUT"
