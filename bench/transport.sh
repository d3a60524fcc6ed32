#!/usr/bin/env bash
# bench/transport.sh: what TLS costs at the agent's listener, HTTP/1.1 vs HTTPS/1.1, next to nginx configured the
# same way, in one run.
#
# One simulated engine in zero-latency mode (sim-engine --speed 0) serves every path:
#   direct           client -> engine (plaintext)
#   infermesh-http   client -> agent (plaintext listener) -> engine
#   infermesh-https  client -> agent (--tls-cert/--tls-key) -> engine
#   nginx-http       client -> nginx (1 worker, keep-alive upstream, proxy_buffering off) -> engine
#   nginx-https      the same nginx server on a `listen ssl` port with the same certificate (bench/nginx-tls.conf.in)
# One P-256 certificate made here with the openssl CLI; TLS 1.3 is what both negotiate with wrk.
# Measured with wrk (it speaks HTTPS), non-streaming and streaming (SSE) chat completions:
#   lat_*   latency at concurrency 1 (wrk -c1, closed loop, one keep-alive connection): p50 and p99; "added" =
#           path minus direct (plaintext; the client's own TLS work is in the HTTPS rows, the same for both)
#   ka_*    CPU per request at CONNS keep-alive connections: the path's CPU ticks over the requests it served
#   conn_ns CPU per request with a new connection per request (Connection: close): for HTTPS, a full
#           handshake each time (wrk does not resume sessions)
# Repetitions are interleaved (rep -> test -> path, path order rotated every rep); the report shows medians.
# Writes its section of bench/results/transport.md (or $BENCH_OUT) between the tls:begin and tls:end markers,
# keeping the rest of the file (bench/h2.sh writes the HTTP/2 section). Every process it starts is stopped on exit.
#
# Knobs (environment): INFERMESH_BIN, BENCH_OUT, REPS (3), SECS (3), CONNS (64), CLOSE_CONNS (16), MAX_TOKENS
# (16), KEEP_TMP (1 = keep the temp dir), AGENT_FLAGS (extra agent flags; the default "--ledger false" leaves
# metering out: it costs the same with and without TLS, and this measures the transport).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/transport.md}
REPS=${REPS:-3}
SECS=${SECS:-3}
CONNS=${CONNS:-64}
CLOSE_CONNS=${CLOSE_CONNS:-16}
MAX_TOKENS=${MAX_TOKENS:-16}
AGENT_FLAGS=${AGENT_FLAGS:---ledger false}
MODEL=meta-llama/Llama-3.1-8B-Instruct

for tool in nginx wrk curl cc awk openssl; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (run make build)" >&2; exit 1; }

source "$ROOT/bench/lib.sh"
bench_setup transport

bench_build_latency # only for --free-port

BUSY_BEFORE=$(machine_busy)


# ---------------------------------------------------------------- certificate, processes
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

start engine "$BIN" sim-engine --port 0 --speed 0 --log-level warn
wait_for "sim-engine" grep -q '^listening on http://127.0.0.1:' "$TMP/engine.out"
ENGINE_PORT=$(sed -n '1s|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/engine.out")
PORT_direct=$ENGINE_PORT
pick_port PORT_infermesh_http
pick_port PORT_infermesh_https
# shellcheck disable=SC2086
start infermesh-http "$BIN" agent --listen "127.0.0.1:$PORT_infermesh_http" --target "http://127.0.0.1:$ENGINE_PORT" \
    --scrape-interval-ms 200 --drain-timeout-ms 1000 --log-level warn --data-dir "$TMP/d-http" $AGENT_FLAGS
# shellcheck disable=SC2086
start infermesh-https "$BIN" agent --listen "127.0.0.1:$PORT_infermesh_https" --target "http://127.0.0.1:$ENGINE_PORT" \
    --scrape-interval-ms 200 --drain-timeout-ms 1000 --log-level warn --data-dir "$TMP/d-https" \
    --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" $AGENT_FLAGS
pick_port PORT_nginx_http
pick_port PORT_nginx_https
sed -e "s|@PREFIX@|$TMP|g" -e "s|@PORT@|$PORT_nginx_http|g" -e "s|@TLS_PORT@|$PORT_nginx_https|g" \
    -e "s|@ENGINE_PORT@|$ENGINE_PORT|g" "$ROOT/bench/nginx-tls.conf.in" >"$TMP/nginx.conf"
start nginx nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" -g 'daemon off;'

SUBJECTS=(direct infermesh-http infermesh-https nginx-http nginx-https)
port_of() { local v="PORT_${1//-/_}"; echo "${!v}"; }
url_of() { [[ $1 == *-https ]] && echo "https://127.0.0.1:$(port_of "$1")" || echo "http://127.0.0.1:$(port_of "$1")"; }
pids_of() {
    case $1 in
        direct) echo "$PID_engine" ;;
        nginx-*) echo "$PID_nginx $(pgrep -P "$PID_nginx" | tr '\n' ' ')" ;;
        *) local v="PID_${1//-/_}"; echo "${!v}" ;;
    esac
}

BODY_NS="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS}"
BODY_ST="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the mesh.\"}],\"max_tokens\":$MAX_TOKENS,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
for s in "${SUBJECTS[@]}"; do
    wait_for "$s" curl -sfk "$(url_of "$s")/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY_NS"
done
for kind in ns st close; do
    body=$BODY_NS; [[ $kind == st ]] && body=$BODY_ST
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [[ $kind == close ]] && echo 'wrk.headers["Connection"] = "close"'
        printf 'wrk.body = [[%s]]\n' "$body"
    } >"$TMP/wrk-$kind.lua"
done
log "ready: engine :$ENGINE_PORT, agent :$PORT_infermesh_http (http) :$PORT_infermesh_https (https), nginx :$PORT_nginx_http / :$PORT_nginx_https"

# ---------------------------------------------------------------- measurements
RES=$TMP/results.tsv
: >"$RES"
HZ=$(getconf CLK_TCK)
to_us() {
    awk -v v="$1" 'BEGIN { u = v; sub(/[0-9.]+/, "", u); x = v + 0;
        if (u == "us") print x; else if (u == "ms") print x * 1000; else if (u == "s") print x * 1e6; else print x }'
}

run_wrk() { # run_wrk REP TEST SUBJECT CONNS LUA
    local rep=$1 test=$2 s=$3 conns=$4 lua=$5 pids p0 p1 out
    pids=$(pids_of "$s")
    p0=$(cpu_ticks $pids)
    out=$(wrk -t1 -c"$conns" -d"${SECS}s" --latency -s "$TMP/wrk-$lua.lua" "$(url_of "$s")/v1/chat/completions")
    p1=$(cpu_ticks $pids)
    local rps reqs non2xx sockerr p50 p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out"); sockerr=${sockerr:-0}
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    record "$rep" "$test" "$s" "rps=$rps errors=$((non2xx + sockerr)) p50_us=$p50 p99_us=$p99 cpu_us=$(calc "($p1 - $p0) / $HZ * 1e6 / $reqs" 1)"
}

TESTS=(lat_ns lat_st ka_ns ka_st conn_ns)
run_test() {
    case $2 in
        lat_ns) run_wrk "$1" "$2" "$3" 1 ns ;;
        lat_st) run_wrk "$1" "$2" "$3" 1 st ;;
        ka_ns) run_wrk "$1" "$2" "$3" "$CONNS" ns ;;
        ka_st) run_wrk "$1" "$2" "$3" "$CONNS" st ;;
        conn_ns) run_wrk "$1" "$2" "$3" "$CLOSE_CONNS" close ;;
    esac
}

log "warm-up"
for s in "${SUBJECTS[@]}"; do
    wrk -t1 -c"$CONNS" -d1s -s "$TMP/wrk-ns.lua" "$(url_of "$s")/v1/chat/completions" >/dev/null
done
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T_START=$(date +%s)
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
BUSY_AFTER=$(machine_busy)
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "bench: process $p died during the run" >&2; exit 1; }; done
TLS_VERSION=$(echo | openssl s_client -brief -connect "127.0.0.1:$PORT_infermesh_https" -alpn http/1.1 2>&1 |
    awk -F': *' '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 } END { print p ", " c }')

# ---------------------------------------------------------------- report
errs() { awk -F'\t' -v s="$1" '$3 == s && $4 == "errors" { x += $5 } END { print x + 0 }' "$RES"; }
f1() { calc "$1" 1; }
added() { calc "$(med "$1" "$2" "$3") - $(med "$1" direct "$3")"; }
peer() { case $1 in infermesh-http) echo nginx-http ;; infermesh-https) echo nginx-https ;; *) echo "" ;; esac; }
label() {
    case $1 in
        direct) echo "direct (no proxy, plaintext)" ;;
        infermesh-http) echo "**infermesh** HTTP/1.1" ;;
        infermesh-https) echo "**infermesh** HTTPS/1.1" ;;
        nginx-http) echo "nginx HTTP/1.1" ;;
        nginx-https) echo "nginx HTTPS/1.1" ;;
    esac
}

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src 2>/dev/null) ]] && GIT_REV="$GIT_REV (src/ has uncommitted changes)"

mkdir -p "$(dirname "$BENCH_OUT")"
SECTION=$TMP/section.md
{
    cat <<EOF
<!-- tls:begin (bench/transport.sh writes this section) -->
## HTTPS/1.1 next to HTTP/1.1 (TLS at the listener)

Produced by \`bench/transport.sh\`; every number below comes from one run, $START_TS, which took
$((T_END - T_START)) s of measurement. Medians of $REPS interleaved repetitions of ${SECS} s each (kept short: the
machine is shared with other work, so absolute numbers swing; compare the rows of one run, and the ratios).

| | |
|---|---|
| machine | $(nproc) vCPU, $CPU_MODEL, kernel $(uname -r); client, proxies and engine share these cores |
| other load | $BUSY_BEFORE cores busy just before the run, $BUSY_AFTER just after |
| infermesh | $("$BIN" version 2>/dev/null | sed -n 1p), commit $GIT_REV, agent flags: \`--log-level warn $AGENT_FLAGS\` |
| nginx | $(nginx -v 2>&1), 1 worker (bench/nginx-tls.conf.in) |
| TLS | $(openssl version), negotiated with wrk: $TLS_VERSION; one self-signed P-256 certificate for both |
| client | $(wrk --version 2>&1 | sed -n 1p | sed 's/ Copyright.*//'), 1 thread |

### Latency at concurrency 1 (one keep-alive connection, closed loop)

Added = path minus direct (plaintext); HTTPS rows include the client's own TLS work (the same for both proxies).

| path | non-streaming p50 µs | p99 µs | added p50 µs | added p99 µs | streaming p50 µs | p99 µs | added p50 µs | added p99 µs |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for s in "${SUBJECTS[@]}"; do
        if [[ $s == direct ]]; then
            echo "| $(label "$s") | $(f1 "$(med lat_ns "$s" p50_us)") | $(f1 "$(med lat_ns "$s" p99_us)") | – | – | $(f1 "$(med lat_st "$s" p50_us)") | $(f1 "$(med lat_st "$s" p99_us)") | – | – |"
        else
            echo "| $(label "$s") | $(f1 "$(med lat_ns "$s" p50_us)") | $(f1 "$(med lat_ns "$s" p99_us)") | $(added lat_ns "$s" p50_us) | $(added lat_ns "$s" p99_us) | $(f1 "$(med lat_st "$s" p50_us)") | $(f1 "$(med lat_st "$s" p99_us)") | $(added lat_st "$s" p50_us) | $(added lat_st "$s" p99_us) |"
        fi
    done
    cat <<EOF

### CPU per request

The path's CPU (user + system, all its processes) over the requests it served; "vs nginx" = nginx's CPU per
request in the same mode / this path's (above 1 = cheaper than nginx). Keep-alive: $CONNS connections;
new connection per request: $CLOSE_CONNS connections, each request on a fresh one (HTTPS: a full handshake).

| path | keep-alive, non-streaming µs | vs nginx | keep-alive, streaming µs | vs nginx | new connection per request µs | vs nginx | keep-alive req/s (shared cores) | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for s in "${SUBJECTS[@]}"; do
        [[ $s == direct ]] && continue
        p=$(peer "$s")
        row="| $(label "$s") |"
        for t in ka_ns ka_st conn_ns; do
            v=$(med $t "$s" cpu_us)
            if [[ -n $p ]]; then row+=" $(f1 "$v") | $(ratio "$(med $t "$p" cpu_us)" "$v") |"; else row+=" $(f1 "$v") | – |"; fi
        done
        echo "$row $(calc "$(med ka_ns "$s" rps)" 0) | $(errs "$s") |"
    done
    cat <<EOF

### What TLS adds

HTTPS minus HTTP of the same server, per request (CPU) and at p50 (latency, non-streaming); "vs nginx" = nginx's
addition / the agent's.

| mode | infermesh adds | nginx adds | vs nginx |
|---|---:|---:|---:|
EOF
    for t in ka_ns ka_st conn_ns; do
        case $t in ka_ns) how="CPU µs, keep-alive, non-streaming" ;; ka_st) how="CPU µs, keep-alive, streaming" ;; *) how="CPU µs, new connection per request" ;; esac
        a=$(calc "$(med $t infermesh-https cpu_us) - $(med $t infermesh-http cpu_us)")
        n=$(calc "$(med $t nginx-https cpu_us) - $(med $t nginx-http cpu_us)")
        echo "| $how | $a | $n | $(ratio "$n" "$a") |"
    done
    a=$(calc "$(med lat_ns infermesh-https p50_us) - $(med lat_ns infermesh-http p50_us)")
    n=$(calc "$(med lat_ns nginx-https p50_us) - $(med lat_ns nginx-http p50_us)")
    echo "| latency p50 µs, concurrency 1, non-streaming | $a | $n | $(ratio "$n" "$a") |"
    cat <<EOF

### Commands

\`\`\`
INFERMESH_BIN=$BIN REPS=$REPS SECS=$SECS CONNS=$CONNS CLOSE_CONNS=$CLOSE_CONNS bench/transport.sh
wrk -t1 -c1 -d${SECS}s --latency -s POST.lua URL/v1/chat/completions           # latency
wrk -t1 -c$CONNS -d${SECS}s --latency -s POST.lua URL/v1/chat/completions          # keep-alive CPU
wrk -t1 -c$CLOSE_CONNS -d${SECS}s --latency -s POST-close.lua URL/v1/chat/completions # new connection per request
\`\`\`
<!-- tls:end -->
EOF
} >"$SECTION"
[[ -f $BENCH_OUT ]] || printf '%s\n\n<!-- tls:begin -->\n<!-- tls:end -->\n' \
    "# Transport benchmark: HTTP/1.1, HTTPS and HTTP/2 at the agent's listener, next to nginx configured the same way" >"$BENCH_OUT"
grep -q '^<!-- tls:begin' "$BENCH_OUT" || printf '\n<!-- tls:begin -->\n<!-- tls:end -->\n' >>"$BENCH_OUT"
awk -v sec="$SECTION" '
    /^<!-- tls:begin/ { while ((getline line < sec) > 0) print line; skip = 1; next }
    /^<!-- tls:end/ { skip = 0; next }
    !skip { print }' "$BENCH_OUT" >"$TMP/out.md"
cp "$TMP/out.md" "$BENCH_OUT"
log "wrote $BENCH_OUT"
