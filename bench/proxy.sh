#!/usr/bin/env bash
# bench/proxy.sh: what infermesh adds on the request path, side by side with nginx and HAProxy, in one run.
#
# One simulated engine in zero-latency mode (sim-engine --speed 0) serves every path:
#   direct            client -> engine
#   infermesh         client -> infermesh agent (per-request log line at info, written to a file) -> engine
#   infermesh-warn    the same with --log-level warn (no per-request log line)
#   nginx             client -> nginx (1 worker, keep-alive upstream, proxy_buffering off) -> engine
#   haproxy           client -> HAProxy (nbthread 1, http-reuse always, http-no-delay) -> engine
# (configs: bench/nginx.conf.in, bench/haproxy.cfg.in; a second, paced engine checks frame-by-frame relaying)
# Measured, for non-streaming and streaming (SSE) chat completions:
#   latency at concurrency 1 (bench/latency.c, one keep-alive connection): open loop at LAT_RATE req/s,
#   closed loop (back to back), and closed loop with client, proxy and engine pinned to one CPU (steadiest);
#   "added" = path minus direct;
#   max requests/s at CONNS connections (wrk, keep-alive), with the CPU each process used.
# Repetitions are interleaved (rep -> test -> path, path order rotated every rep); the report shows medians.
# Writes bench/results/proxy.md (or $BENCH_OUT). Every process it starts is stopped on exit, even on failure.
#
# Knobs (environment): INFERMESH_BIN, BENCH_OUT, REPS (5), LAT_N (1500), LAT_CLOSED_N (3000), LAT_RATE (500),
# WRK_SECS (4), WRK_THREADS (1), CONNS (64), MAX_TOKENS (16), KEEP_TMP (1 = keep the temp dir),
# AGENT_FLAGS (extra flags for the infermesh agents, e.g. "--ledger false" to leave metering out).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/proxy.md}
REPS=${REPS:-5}
LAT_N=${LAT_N:-1500}
LAT_CLOSED_N=${LAT_CLOSED_N:-3000}
LAT_RATE=${LAT_RATE:-500}
WRK_SECS=${WRK_SECS:-4}
WRK_THREADS=${WRK_THREADS:-1}
CONNS=${CONNS:-64}
MAX_TOKENS=${MAX_TOKENS:-16}
MODEL=meta-llama/Llama-3.1-8B-Instruct

for tool in nginx haproxy wrk curl cc awk taskset; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (run make build)" >&2; exit 1; }

source "$ROOT/bench/lib.sh"
bench_setup bench

# ---------------------------------------------------------------- build the client, start every process
bench_build_latency

BUSY_BEFORE=$(machine_busy) # load from anything else running here

start engine "$BIN" sim-engine --port 0 --speed 0 --log-level warn
wait_for "sim-engine" grep -q '^listening on http://127.0.0.1:' "$TMP/engine.out"
ENGINE_PORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine.out")
log "sim-engine on :$ENGINE_PORT"

# a paced engine (real model timing) behind a second listener of every proxy: checks that streams are relayed
# frame by frame (the zero-latency engine writes a whole stream in one burst, which cannot show buffering)
start engine-paced "$BIN" sim-engine --port 0 --speed 1 --log-level warn
wait_for "paced sim-engine" grep -q '^listening on http://127.0.0.1:' "$TMP/engine-paced.out"
PACED_ENGINE_PORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine-paced.out")

PORT_direct=$ENGINE_PORT
PACED_direct=$PACED_ENGINE_PORT
pick_port PORT_infermesh
start infermesh "$BIN" agent --listen "127.0.0.1:$PORT_infermesh" --target "http://127.0.0.1:$ENGINE_PORT" \
    --scrape-interval-ms 200 --drain-timeout-ms 1000 --log-level info --data-dir "$TMP/d-infermesh" ${AGENT_FLAGS:-}
pick_port PORT_infermesh_warn
start infermesh-warn "$BIN" agent --listen "127.0.0.1:$PORT_infermesh_warn" --target "http://127.0.0.1:$ENGINE_PORT" \
    --scrape-interval-ms 200 --drain-timeout-ms 1000 --log-level warn --data-dir "$TMP/d-infermesh-warn" ${AGENT_FLAGS:-}
pick_port PACED_infermesh
start infermesh-paced "$BIN" agent --listen "127.0.0.1:$PACED_infermesh" --target "http://127.0.0.1:$PACED_ENGINE_PORT" \
    --drain-timeout-ms 1000 --log-level warn --data-dir "$TMP/d-infermesh-paced" ${AGENT_FLAGS:-}

render() { # render TEMPLATE PORT PACED_PORT > file
    sed -e "s|@PREFIX@|$TMP|g" -e "s|@PORT@|$2|g" -e "s|@ENGINE_PORT@|$ENGINE_PORT|g" \
        -e "s|@PACED_PORT@|$3|g" -e "s|@PACED_ENGINE_PORT@|$PACED_ENGINE_PORT|g" "$1"
}
pick_port PORT_nginx
pick_port PACED_nginx
render "$ROOT/bench/nginx.conf.in" "$PORT_nginx" "$PACED_nginx" >"$TMP/nginx.conf"
start nginx nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" -g 'daemon off;'
pick_port PORT_haproxy
pick_port PACED_haproxy
render "$ROOT/bench/haproxy.cfg.in" "$PORT_haproxy" "$PACED_haproxy" >"$TMP/haproxy.cfg"
start haproxy haproxy -db -f "$TMP/haproxy.cfg"

SUBJECTS=(direct infermesh infermesh-warn nginx haproxy)
port_of() { local v="PORT_${1//-/_}"; echo "${!v}"; }
pids_of() { # every process serving a path (nginx: master and workers)
    case $1 in
        direct) echo "$PID_engine" ;;
        nginx) echo "$PID_nginx $(pgrep -P "$PID_nginx" | tr '\n' ' ')" ;;
        *) local v="PID_${1//-/_}"; echo "${!v}" ;;
    esac
}

wait_for "infermesh" curl -sf "http://127.0.0.1:$PORT_infermesh/readyz"
wait_for "infermesh-warn" curl -sf "http://127.0.0.1:$PORT_infermesh_warn/readyz"
wait_for "infermesh-paced" curl -sf "http://127.0.0.1:$PACED_infermesh/readyz"

BODY_NS="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS}"
BODY_ST="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
for s in "${SUBJECTS[@]}"; do
    wait_for "$s" "$LAT" --port "$(port_of "$s")" --body "$BODY_NS" --n 3 --warmup 0
    "$LAT" --port "$(port_of "$s")" --body "$BODY_ST" --stream --n 3 --warmup 0 >/dev/null
done
nginx_workers=$(pgrep -P "$PID_nginx" | wc -l)
log "ready: infermesh :$PORT_infermesh, infermesh-warn :$PORT_infermesh_warn, nginx :$PORT_nginx ($nginx_workers worker), haproxy :$PORT_haproxy"

for kind in ns st; do
    body=$BODY_NS; [[ $kind == st ]] && body=$BODY_ST
    lua=$TMP/wrk-$kind.lua
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        printf 'wrk.body = [[%s]]\n' "$body"
    } >"$lua"
done

# ---------------------------------------------------------------- measurements
RES=$TMP/results.tsv
: >"$RES"

machine_ticks() { awk '/^cpu /{ print $2+$3+$4+$7+$8 }' /proc/stat; }
children_secs() { # CHILD_SECS = CPU seconds of this script's finished children (wrk, latency, awk...); no subshell
    times >"$TMP/times"
    CHILD_SECS=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] } print t }' "$TMP/times")
}
our_secs() { # OUR_SECS = CPU seconds used so far by everything this script started
    children_secs
    OUR_SECS=$(calc "$(cpu_ticks "${PIDS[@]}" $(pgrep -P "$PID_nginx")) / $HZ + $CHILD_SECS" 3)
}
HZ=$(getconf CLK_TCK)

to_us() { # wrk latency value (e.g. 812.00us, 3.21ms, 1.02s) -> microseconds
    awk -v v="$1" 'BEGIN { u = v; sub(/[0-9.]+/, "", u); x = v + 0;
        if (u == "us") print x; else if (u == "ms") print x * 1000; else if (u == "s") print x * 1e6; else print x }'
}

run_latency() { # run_latency REP TEST SUBJECT ARGS...
    local rep=$1 test=$2 s=$3; shift 3
    local out
    out=$("$LAT" --port "$(port_of "$s")" "$@")
    record "$rep" "$test" "$s" "$out"
}

run_wrk() { # run_wrk REP TEST SUBJECT KIND
    local rep=$1 test=$2 s=$3 kind=$4
    local pids engine_pids t0 t1 p0 p1 e0 e1 m0 m1 out
    pids=$(pids_of "$s")
    [[ $s == direct ]] && engine_pids="" || engine_pids=$PID_engine
    t0=$(date +%s.%N); p0=$(cpu_ticks $pids); e0=$(cpu_ticks $engine_pids); m0=$(machine_ticks)
    children_secs; local c0=$CHILD_SECS
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WRK_SECS}s" --latency -s "$TMP/wrk-$kind.lua" \
        "http://127.0.0.1:$(port_of "$s")/v1/chat/completions")
    t1=$(date +%s.%N); p1=$(cpu_ticks $pids); e1=$(cpu_ticks $engine_pids); m1=$(machine_ticks)
    children_secs; local c1=$CHILD_SECS
    local rps non2xx sockerr p50 p99 reqs
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out"); sockerr=${sockerr:-0}
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    local wall proxy_cores engine_cores machine_cores cpu_us
    wall=$(calc "$t1 - $t0" 3)
    proxy_cores=$(calc "($p1 - $p0) / $HZ / $wall" 2)
    engine_cores=$(calc "($e1 - $e0) / $HZ / $wall" 2)
    machine_cores=$(calc "($m1 - $m0) / $HZ / $wall" 2)
    cpu_us=$(calc "($p1 - $p0) / $HZ * 1e6 / $reqs" 1)
    local wrk_cores other_cores
    wrk_cores=$(calc "($c1 - $c0) / $wall" 2)
    other_cores=$(calc "$machine_cores - $proxy_cores - $engine_cores - $wrk_cores" 2)
    other_cores=$(calc "($other_cores > 0) ? $other_cores : 0" 2) # negative = rounding of the tick counts
    [[ $s == direct ]] && engine_cores=$proxy_cores
    record "$rep" "$test" "$s" "rps=$rps errors=$((non2xx + sockerr)) wrk_p50_us=$p50 wrk_p99_us=$p99 cores=$proxy_cores cpu_us_per_req=$cpu_us engine_cores=$engine_cores wrk_cores=$wrk_cores other_cores=$other_cores machine_cores=$machine_cores"
}

# "one core": client, proxy and engine pinned to the same CPU for the run. At concurrency 1 the request path is a
# serial chain (only one of them is ever runnable), so this costs nothing in parallelism and removes the
# cross-CPU wake-ups and scheduler placement that make unpinned runs on this VM vary by tens of µs.
PIN_CPU=$(($(nproc) - 1))
ALL_CPUS=0-$(($(nproc) - 1))
set_affinity() { # set_affinity CPUS PID...
    local cpus=$1 p; shift
    for p in "$@"; do taskset -a -p -c "$cpus" "$p" >/dev/null; done
}
run_pinned() { # run_pinned REP TEST SUBJECT ARGS...
    local pids
    pids="$PID_engine $(pids_of "$3")"
    set_affinity "$PIN_CPU" $pids
    run_latency "$@"
    set_affinity "$ALL_CPUS" $pids
}

TESTS=(lat_open_ns lat_open_st lat_closed_ns lat_closed_st lat_pinned_ns lat_pinned_st tput_ns tput_st)
run_test() { # run_test REP TEST SUBJECT
    case $2 in
        lat_open_ns) run_latency "$1" "$2" "$3" --body "$BODY_NS" --n "$LAT_N" --warmup 100 --rate "$LAT_RATE" ;;
        lat_open_st) run_latency "$1" "$2" "$3" --body "$BODY_ST" --stream --n "$LAT_N" --warmup 100 --rate "$LAT_RATE" ;;
        lat_closed_ns) run_latency "$1" "$2" "$3" --body "$BODY_NS" --n "$LAT_CLOSED_N" --warmup 300 ;;
        lat_closed_st) run_latency "$1" "$2" "$3" --body "$BODY_ST" --stream --n "$LAT_CLOSED_N" --warmup 300 ;;
        lat_pinned_ns) run_pinned "$1" "$2" "$3" --body "$BODY_NS" --n "$LAT_CLOSED_N" --warmup 300 --pin "$PIN_CPU" ;;
        lat_pinned_st) run_pinned "$1" "$2" "$3" --body "$BODY_ST" --stream --n "$LAT_CLOSED_N" --warmup 300 --pin "$PIN_CPU" ;;
        tput_ns) run_wrk "$1" "$2" "$3" ns ;;
        tput_st) run_wrk "$1" "$2" "$3" st ;;
    esac
}

# frame-by-frame relaying: with the paced engine the first event must arrive long before the stream ends
PACED_SUBJECTS=(direct infermesh nginx haproxy)
log "paced-stream check"
for s in "${PACED_SUBJECTS[@]}"; do
    v="PACED_${s//-/_}"
    wait_for "$s (paced)" "$LAT" --port "${!v}" --body "$BODY_NS" --n 1 --warmup 0
    record 0 paced_st "$s" "$("$LAT" --port "${!v}" --body "$BODY_ST" --stream --n 5 --warmup 1)"
done

# one short unrecorded pass warms every path (connection pools, caches, CPU frequency)
log "warm-up"
for s in "${SUBJECTS[@]}"; do
    "$LAT" --port "$(port_of "$s")" --body "$BODY_NS" --n 500 --warmup 0 >/dev/null
    wrk -t"$WRK_THREADS" -c"$CONNS" -d1s -s "$TMP/wrk-ns.lua" "http://127.0.0.1:$(port_of "$s")/v1/chat/completions" >/dev/null
done

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T_START=$(date +%s)
our_secs; OUR_START=$OUR_SECS; M_START=$(machine_ticks)
NS=${#SUBJECTS[@]}
for ((rep = 1; rep <= REPS; rep++)); do
    order=()
    for ((k = 0; k < NS; k++)); do order+=("${SUBJECTS[$(((k + rep - 1) % NS))]}"); done
    log "rep $rep/$REPS (order: ${order[*]})"
    for test in "${TESTS[@]}"; do
        for s in "${order[@]}"; do run_test "$rep" "$test" "$s"; done
    done
done
T_END=$(date +%s)
our_secs; OTHER_LOAD=$(calc "(($(machine_ticks) - $M_START) / $HZ - ($OUR_SECS - $OUR_START)) / ($T_END - $T_START)" 2)
BUSY_AFTER=$(machine_busy)

# every process must still be alive: a crash mid-run would make the numbers meaningless
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "bench: process $p died during the run" >&2; exit 1; }; done
INFERMESH_LOG_LINES=$(grep -c 'msg="request"' "$TMP/infermesh.err" || true)

# ---------------------------------------------------------------- report
range() { # range TEST SUBJECT KEY -> "min–max" over repetitions
    awk -F'\t' -v t="$1" -v s="$2" -v k="$3" '$2 == t && $3 == s && $4 == k { print $5 }' "$RES" | sort -g |
        awk '{ v[NR] = $1 } END { printf "%s–%s", v[1], v[NR] }'
}
sumk() { awk -F'\t' -v t="$1" -v k="$2" '$2 == t && $4 == k { x += $5 } END { print x + 0 }' "$RES"; }
f1() { calc "$1" 1; }
f0() { calc "$1" 0; }
label() {
    case $1 in
        direct) echo "direct (no proxy)" ;;
        infermesh) echo "**infermesh** (info log → file)" ;;
        infermesh-warn) echo "**infermesh** (--log-level warn)" ;;
        nginx) echo "nginx (1 worker)" ;;
        haproxy) echo "HAProxy (1 thread)" ;;
    esac
}
PROXIES=(infermesh infermesh-warn nginx haproxy)

latency_table() { # latency_table TEST
    local t=$1 s d50 d99 d999
    d50=$(med "$t" direct p50_us); d99=$(med "$t" direct p99_us); d999=$(med "$t" direct p999_us)
    local n50 n99
    n50=$(calc "$(med "$t" nginx p50_us) - $d50"); n99=$(calc "$(med "$t" nginx p99_us) - $d99")
    echo "| path | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p50 vs nginx | added p99 vs nginx | p50 range over reps |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SUBJECTS[@]}"; do
        local p50 p99 p999 a50 a99
        p50=$(med "$t" "$s" p50_us); p99=$(med "$t" "$s" p99_us); p999=$(med "$t" "$s" p999_us)
        if [[ $s == direct ]]; then
            echo "| $(label "$s") | $(f1 "$p50") | $(f1 "$p99") | $(f1 "$p999") | – | – | – | – | $(range "$t" "$s" p50_us) |"
        else
            a50=$(calc "$p50 - $d50"); a99=$(calc "$p99 - $d99")
            echo "| $(label "$s") | $(f1 "$p50") | $(f1 "$p99") | $(f1 "$p999") | $a50 | $a99 | $(ratio "$a50" "$n50") | $(ratio "$a99" "$n99") | $(range "$t" "$s" p50_us) |"
        fi
    done
}

stream_table() { # stream_table TEST
    local t=$1 s
    local d_f50 d_50 d_99 n_50 n_99
    d_f50=$(med "$t" direct first_p50_us); d_50=$(med "$t" direct p50_us); d_99=$(med "$t" direct p99_us)
    n_50=$(calc "$(med "$t" nginx p50_us) - $d_50"); n_99=$(calc "$(med "$t" nginx p99_us) - $d_99")
    echo "| path | first event p50 µs | first event p99 µs | whole stream p50 µs | whole stream p99 µs | added first-event p50 µs | added stream p50 µs | added stream p99 µs | added stream p50 vs nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SUBJECTS[@]}"; do
        local f50 f99 p50 p99
        f50=$(med "$t" "$s" first_p50_us); f99=$(med "$t" "$s" first_p99_us)
        p50=$(med "$t" "$s" p50_us); p99=$(med "$t" "$s" p99_us)
        if [[ $s == direct ]]; then
            echo "| $(label "$s") | $(f1 "$f50") | $(f1 "$f99") | $(f1 "$p50") | $(f1 "$p99") | – | – | – | – |"
        else
            local a50
            a50=$(calc "$p50 - $d_50")
            echo "| $(label "$s") | $(f1 "$f50") | $(f1 "$f99") | $(f1 "$p50") | $(f1 "$p99") | $(calc "$f50 - $d_f50") | $a50 | $(calc "$p99 - $d_99") | $(ratio "$a50" "$n_50") |"
        fi
    done
}

tput_table() { # tput_table TEST
    local t=$1 s nrps ncpu
    nrps=$(med "$t" nginx rps); ncpu=$(med "$t" nginx cpu_us_per_req)
    echo "| path | req/s | vs nginx | req/s range over reps | path CPU µs/request | req/s per path core | per core vs nginx | path CPU, cores | engine, cores | wrk, cores | other load, cores | p50 / p99 at $CONNS conns, ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SUBJECTS[@]}"; do
        local rps cores cpu percore vs
        rps=$(med "$t" "$s" rps)
        if [[ $s == direct ]]; then
            cores="–"; cpu="–"; percore="–"; vs="–"
        else
            cores=$(med "$t" "$s" cores); cpu=$(med "$t" "$s" cpu_us_per_req)
            percore=$(f0 "1e6 / $cpu"); vs=$(ratio "$ncpu" "$cpu"); cpu=$(f1 "$cpu")
        fi
        echo "| $(label "$s") | $(f0 "$rps") | $(ratio "$rps" "$nrps") | $(range "$t" "$s" rps) | $cpu | $percore | $vs | $cores | $(med "$t" "$s" engine_cores) | $(med "$t" "$s" wrk_cores) | $(med "$t" "$s" other_cores) | $(calc "$(med "$t" "$s" wrk_p50_us) / 1000" 2) / $(calc "$(med "$t" "$s" wrk_p99_us) / 1000" 2) | $(awk -F'\t' -v t="$t" -v s="$s" '$2 == t && $3 == s && $4 == "errors" { x += $5 } END { print x + 0 }' "$RES") |"
    done
}

added() { calc "$(med "$1" "$2" "$3") - $(med "$1" direct "$3")"; } # added TEST SUBJECT KEY -> µs over direct
mark() { awk -v ok="$1" 'BEGIN { print ok ? "met" : "**not met**" }'; }
goals() { # the DESIGN §12 goals, one row per goal and measurement
    local t how s n v row
    for t in lat_open_ns lat_closed_ns lat_pinned_ns; do
        case $t in lat_open_ns) how="open loop, $LAT_RATE req/s" ;; lat_closed_ns) how="closed loop" ;; *) how="closed loop, one core" ;; esac
        n=$(added $t nginx p50_us)
        row="| added p50 ≤ nginx's | $how |"
        for s in infermesh infermesh-warn; do
            v=$(added $t "$s" p50_us)
            row+=" $v µs: $(mark "$(awk -v a="$v" -v b="$n" 'BEGIN { print (a <= b) }')") |"
        done
        echo "$row $n µs | $(added $t haproxy p50_us) µs |"
    done
    for t in lat_open_ns lat_closed_ns lat_pinned_ns; do
        case $t in lat_open_ns) how="open loop, $LAT_RATE req/s" ;; lat_closed_ns) how="closed loop" ;; *) how="closed loop, one core" ;; esac
        row="| added p99 ≤ 100 µs | $how |"
        for s in infermesh infermesh-warn; do
            v=$(added $t "$s" p99_us)
            row+=" $v µs: $(mark "$(awk -v a="$v" 'BEGIN { print (a <= 100) }')") |"
        done
        echo "$row $(added $t nginx p99_us) µs | $(added $t haproxy p99_us) µs |"
    done
    for t in tput_ns tput_st; do
        case $t in tput_ns) how="non-streaming" ;; *) how="streaming" ;; esac
        n=$(med $t nginx rps)
        row="| req/s ≥ 1.0× nginx | $how, $CONNS conns, shared cores |"
        for s in infermesh infermesh-warn; do
            v=$(med $t "$s" rps)
            row+=" $(f0 "$v") = $(ratio "$v" "$n"): $(mark "$(awk -v a="$v" -v b="$n" 'BEGIN { print (a >= b) }')") |"
        done
        echo "$row $(f0 "$n") | $(f0 "$(med $t haproxy rps)") = $(ratio "$(med $t haproxy rps)" "$n") |"
    done
    for t in tput_ns tput_st; do
        case $t in tput_ns) how="non-streaming" ;; *) how="streaming" ;; esac
        n=$(med $t nginx cpu_us_per_req)
        row="| req/s per proxy core ≥ 1.0× nginx | $how: CPU µs per request |"
        for s in infermesh infermesh-warn; do
            v=$(med $t "$s" cpu_us_per_req)
            row+=" $(f1 "$v") µs = $(ratio "$n" "$v"): $(mark "$(awk -v a="$v" -v b="$n" 'BEGIN { print (a <= b) }')") |"
        done
        echo "$row $(f1 "$n") µs | $(f1 "$(med $t haproxy cpu_us_per_req)") µs = $(ratio "$n" "$(med $t haproxy cpu_us_per_req)") |"
    done
}

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src 2>/dev/null) ]] && GIT_REV="$GIT_REV (src/ has uncommitted changes)"
NGINX_V=$(nginx -v 2>&1)
HAPROXY_V=$(haproxy -v 2>&1 | sed -n 1p)
WRK_V=$(wrk --version 2>&1 | sed -n 1p | sed 's/ Copyright.*//' || true)
CC_V=$(cc --version | sed -n 1p)

mkdir -p "$(dirname "$BENCH_OUT")"
{
    cat <<EOF
# Proxy benchmark: what infermesh adds on the request path, next to nginx and HAProxy

Produced by \`make bench\` (\`bench/proxy.sh\`); every number below comes from one run, $START_TS, which took
$((T_END - T_START)) s of measurement. Medians of $REPS interleaved repetitions (rep → test → path, the path
order rotated every repetition); ratios are against nginx.

## Machine and versions

| | |
|---|---|
| date | $START_TS |
| machine | $(nproc) vCPU, $CPU_MODEL, $MEM RAM, kernel $(uname -r) |
| sharing | **everything runs on the same $(nproc) cores**: load generator, proxy and engine compete for CPU |
| other load | work on this machine that is not ours: $BUSY_BEFORE cores busy just before, $OTHER_LOAD on average during the measurements, $BUSY_AFTER just after |
| infermesh | $("$BIN" version 2>/dev/null | sed -n 1p), commit $GIT_REV, RelWithDebInfo build |
| nginx | $NGINX_V |
| HAProxy | $HAPROXY_V |
| wrk | $WRK_V |
| latency client | bench/latency.c, $CC_V, -O2 |

## Goals (DESIGN.md §12) at a glance

Latency goals: non-streaming, concurrency 1, added µs over direct (medians). Throughput goals: $CONNS
connections, as measured on the shared cores, and per core of the proxy (requests per CPU-second the proxy
used, shown as CPU µs per request: the "1 core" figure, which the shared cores cannot show directly; ratio =
nginx's CPU per request / this path's).

| goal | measured as | infermesh (info log → file) | infermesh (--log-level warn) | nginx | HAProxy |
|---|---|---|---|---:|---:|
EOF
    goals
    cat <<EOF

## Latency at concurrency 1, non-streaming

One keep-alive connection, one request at a time, $MAX_TOKENS completion tokens (~400-byte JSON response).
**Open loop at $LAT_RATE req/s**: request *i* is due at t0 + i/$LAT_RATE s and its latency counts from that due time,
so a slow response is also charged to the requests it held up (no coordinated omission); $LAT_N requests per
repetition after 100 unmeasured ones. "Added" = path minus direct, per percentile.

EOF
    latency_table lat_open_ns
    cat <<EOF

Closed loop (the next request leaves as soon as the previous response ends; everything stays hot, so this
shows the pure path cost), $LAT_CLOSED_N requests per repetition:

EOF
    latency_table lat_closed_ns
    cat <<EOF

Closed loop on one core (client, proxy and engine pinned to CPU $PIN_CPU during the run; at concurrency 1 only one of
them is runnable at a time, so this gives up no parallelism and removes the cross-CPU wake-ups and scheduler
placement that make the unpinned figures above move by tens of µs between runs on this VM; the steadiest
measure of what each proxy costs per request):

EOF
    latency_table lat_pinned_ns
    cat <<EOF

## Latency at concurrency 1, streaming (SSE)

Same request with \`"stream": true, "stream_options": {"include_usage": true}\` (every path gets the usage
chunk, so the engine does the same work whichever path asks): $MAX_TOKENS content frames, a finish frame, a usage
frame and \`data: [DONE]\`. "First event" = time until the first complete SSE event; "whole stream" = until the
terminal chunk. Open loop at $LAT_RATE req/s:

EOF
    stream_table lat_open_st
    echo
    echo "Closed loop:"
    echo
    stream_table lat_closed_st
    echo
    echo "Closed loop on one core (pinned as above). Here the whole-stream time is the total CPU cost of a stream along"
    echo "the path. A proxy can come out *below* direct: without one the client is woken once per engine frame, through"
    echo "one it is woken once per proxy write, and a proxy that relays several frames per write saves those wake-ups:"
    echo
    stream_table lat_pinned_st
    cat <<EOF

The zero-latency engine writes all frames of a stream back to back within one turn of its event loop (about
10 µs per frame, one write each). A proxy therefore sees either the first frame alone or most of the burst,
depending on when the scheduler runs it next to the engine on these $(nproc) cores; "first event" through a proxy
mostly measures that, and the whole-stream time is the figure to compare. Whether a proxy relays frame by frame
is checked separately with a paced engine (\`sim-engine --speed 1\`, the default profile's real timing: ~7 ms
to the first token, then ~6.7 ms per token), 5 streams per path:

| path | first event p50 µs | whole stream p50 µs | relayed frame by frame |
|---|---:|---:|---|
EOF
    for s in "${PACED_SUBJECTS[@]}"; do
        f=$(med paced_st "$s" first_p50_us); e=$(med paced_st "$s" p50_us)
        ok=$(awk -v f="$f" -v e="$e" 'BEGIN { print (f < e / 2) ? "yes" : "**no: held back until the stream ended**" }')
        echo "| $(label "$s") | $(f0 "$f") | $(f0 "$e") | $ok |"
    done
    cat <<EOF

## Max requests/s at $CONNS connections

\`wrk -t$WRK_THREADS -c$CONNS -d${WRK_SECS}s --latency\`, keep-alive, POST bodies as above. wrk, the proxy and the engine
share the $(nproc) cores and together saturate them, so req/s here is bounded by the sum of their CPU costs and the
differences between proxies are diluted. "Path CPU µs/request" is the CPU time (user + system, from
/proc/PID/stat) the proxy's processes used during the run (nginx: master + worker; direct: the engine) per
completed request; "req/s per path core" = 10⁶ / that, the fairest per-core comparison on a shared machine.
"Cores" columns are CPU time over wall time; "other load" is what the machine did beyond those three (other work
on it, kernel softirq time not charged to a process). nginx has worker_processes 1, HAProxy nbthread 1, the
infermesh agent is one libuv loop on one thread; none can use more than one core.

Non-streaming:

EOF
    tput_table tput_ns
    echo
    echo "Streaming (each request is one whole SSE stream):"
    echo
    tput_table tput_st
    cat <<EOF

## Setup and exact commands

Choices: one sim-engine (\`--speed 0\`, zero-latency mode) behind every path, so every path talks to the same
process. nginx uses one config for both kinds of request with \`proxy_buffering off\` (needed for SSE; for a
~400-byte response it changes nothing but a copy), \`access_log off\`, keep-alive to the engine (\`keepalive 64\`,
\`keepalive_requests\` raised so no connection is recycled mid-run). HAProxy has \`option http-no-delay\`: without
it HAProxy 2.6 held a paced SSE stream back until it ended, so streams would not be comparable; no logging.
infermesh runs twice: as deployed by default (\`--log-level info\`, one logfmt line per request, stderr redirected
to a file; it wrote $INFERMESH_LOG_LINES lines during this run) and with \`--log-level warn\` (no per-request line),
both with \`--scrape-interval-ms 200\` (its /metrics scrape of the engine runs during the measurements, as it would
in production). Every server has its listener on 127.0.0.1 and uses one thread. Temp dir \`$TMP\` (removed
afterwards); ports were picked free at run time.

\`\`\`
EOF
    for c in "${COMMANDS[@]}"; do echo "$c"; done
    echo "wrk -t$WRK_THREADS -c$CONNS -d${WRK_SECS}s --latency -s wrk-ns.lua http://127.0.0.1:PORT/v1/chat/completions"
    echo "wrk -t$WRK_THREADS -c$CONNS -d${WRK_SECS}s --latency -s wrk-st.lua http://127.0.0.1:PORT/v1/chat/completions"
    echo "latency --port PORT --body BODY [--stream] --n $LAT_N --warmup 100 --rate $LAT_RATE   # open loop"
    echo "latency --port PORT --body BODY [--stream] --n $LAT_CLOSED_N --warmup 300              # closed loop"
    echo "taskset -a -p -c $PIN_CPU ENGINE_PID PROXY_PIDS   # then, for the one-core runs:"
    echo "latency --port PORT --body BODY [--stream] --n $LAT_CLOSED_N --warmup 300 --pin $PIN_CPU      # closed loop, one core"
    echo "taskset -a -p -c $ALL_CPUS ENGINE_PID PROXY_PIDS   # afterwards"
    echo '```'
    echo
    echo "Request bodies:"
    echo
    echo '```'
    echo "$BODY_NS"
    echo "$BODY_ST"
    echo '```'
    echo
    echo "wrk script (wrk-ns.lua; wrk-st.lua differs only in the body):"
    echo
    echo '```lua'
    cat "$TMP/wrk-ns.lua"
    echo '```'
    echo
    echo "nginx.conf (from bench/nginx.conf.in):"
    echo
    echo '```nginx'
    grep -v '^#' "$TMP/nginx.conf"
    echo '```'
    echo
    echo "haproxy.cfg (from bench/haproxy.cfg.in):"
    echo
    echo '```'
    grep -v '^#' "$TMP/haproxy.cfg"
    echo '```'
    cat <<EOF

## Every repetition

Raw values, for judging the spread (µs; req/s).

| test | path | metric | $(seq -s ' | ' 1 "$REPS") |
|---|---|---|$(for _ in $(seq "$REPS"); do printf -- '---:|'; done)
EOF
    for t in "${TESTS[@]}"; do
        case $t in
            lat_*_ns) keys="p50_us p99_us" ;;
            lat_*_st) keys="first_p50_us p50_us p99_us" ;;
            tput_*) keys="rps cpu_us_per_req" ;;
        esac
        for s in "${SUBJECTS[@]}"; do
            for k in $keys; do
                [[ $t == tput_* && $s == direct && $k == cpu_us_per_req ]] && continue
                printf '| %s | %s | %s |' "$t" "$s" "$k"
                for ((rep = 1; rep <= REPS; rep++)); do
                    printf ' %s |' "$(awk -F'\t' -v r="$rep" -v t="$t" -v s="$s" -v k="$k" '$1 == r && $2 == t && $3 == s && $4 == k { print $5 }' "$RES")"
                done
                echo
            done
        done
    done
} >"$BENCH_OUT"

[[ ${KEEP_TMP:-0} == 1 ]] && log "raw values: $RES"
log "wrote $BENCH_OUT"
