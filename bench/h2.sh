#!/usr/bin/env bash
# bench/h2.sh: HTTP/2 (h2c with prior knowledge) through the infermesh agent, next to nginx (`listen ... http2`)
# in front of the same simulated engine (sim-engine --speed 0), in one run, with h2load (nghttp2-client).
#
#   direct     h2load -> engine (the engine's listener speaks h2c too)
#   infermesh  h2load -> agent (--log-level warn, AGENT_FLAGS) -> engine over HTTP/1.1 keep-alive
#   nginx      h2load -> nginx (1 worker, http2, keep-alive upstream, proxy_buffering off) -> engine
# Measured for non-streaming and streaming chat completions:
#   latency at concurrency 1 (h2load -c 1 -m 1, per-request times from --log-file): p50/p99, and "added" =
#   path minus direct;
#   throughput at CONNS connections x STREAMS concurrent streams: req/s and the proxy's CPU per request
#   (the time its threads ran on a CPU over the run, from /proc/PID/task/*/schedstat).
# Repetitions are interleaved (rep -> test -> path); medians are reported. Writes the HTTP/2 section of
# bench/results/transport.md (or $BENCH_OUT) between its markers, keeping the rest of the file.
#
# Knobs (environment): INFERMESH_BIN, BENCH_OUT, REPS (3), LAT_N (2000), TPUT_N (30000), CONNS (4),
# STREAMS (16), MAX_TOKENS (16), AGENT_FLAGS.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INFERMESH_BIN:-$ROOT/build/infermesh}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/transport.md}
REPS=${REPS:-3}
LAT_N=${LAT_N:-2000}
TPUT_N=${TPUT_N:-30000}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-16}
MAX_TOKENS=${MAX_TOKENS:-16}
AGENT_FLAGS=${AGENT_FLAGS:-}
MODEL=meta-llama/Llama-3.1-8B-Instruct

for tool in nginx h2load curl awk; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench: $BIN not built (run make build)" >&2; exit 1; }

source "$ROOT/bench/lib.sh"
bench_setup h2bench
wait_up() { wait_for "port $1" curl -sf -o /dev/null "http://127.0.0.1:$1$2"; } # wait_up PORT PATH
BUSY_BEFORE=$(machine_busy)

pick_port ENGINE_PORT
start engine "$BIN" sim-engine --host 127.0.0.1 --port "$ENGINE_PORT" --speed 0 --model "$MODEL"
wait_up "$ENGINE_PORT" /health

pick_port AGENT_PORT
# shellcheck disable=SC2086
start agent "$BIN" agent --listen "127.0.0.1:$AGENT_PORT" --target "http://127.0.0.1:$ENGINE_PORT" \
    --log-level warn $AGENT_FLAGS
wait_up "$AGENT_PORT" /readyz

pick_port NGINX_PORT
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy_temp;
    fastcgi_temp_path $TMP/nginx/fastcgi_temp;
    uwsgi_temp_path $TMP/nginx/uwsgi_temp;
    scgi_temp_path $TMP/nginx/scgi_temp;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    upstream engine {
        server 127.0.0.1:$ENGINE_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT http2;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://engine;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
start nginx nginx -c "$TMP/nginx.conf" -e "$TMP/nginx/error.log"
for _ in $(seq 200); do curl -sf --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$NGINX_PORT/health" && break; sleep 0.05; done

declare -A PORT=([direct]=$ENGINE_PORT [infermesh]=$AGENT_PORT [nginx]=$NGINX_PORT)
# nginx's worker does the work: the master's only child.
declare -A PID=([direct]=$PID_engine [infermesh]=$PID_agent [nginx]=$(pgrep -P "$PID_nginx" | head -1))
PATHS=(direct infermesh nginx)

printf '{"model":"%s","messages":[{"role":"user","content":"Hello, mesh!"}],"max_tokens":%d}' "$MODEL" \
    "$MAX_TOKENS" >"$TMP/plain.json"
printf '{"model":"%s","messages":[{"role":"user","content":"Hello, mesh!"}],"max_tokens":%d,"stream":true}' \
    "$MODEL" "$MAX_TOKENS" >"$TMP/stream.json"

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{t += $1} END {printf "%.0f", t}'; } # all its threads, ns

# h2 PATH KIND N C M [LOG]: run h2load, fail unless every request got a 2xx; prints req/s
h2() {
    local path=$1 kind=$2 n=$3 c=$4 m=$5 logf=${6:-} out
    local args=(-n "$n" -c "$c" -m "$m" -d "$TMP/$kind.json" -H "content-type: application/json")
    [[ -n $logf ]] && args+=(--log-file "$logf")
    out=$(h2load "${args[@]}" "http://127.0.0.1:${PORT[$path]}/v1/chat/completions")
    grep -q "$n succeeded, 0 failed" <<<"$out" && grep -q "status codes: $n 2xx" <<<"$out" ||
        { echo "bench: h2load against $path ($kind) had failures:" >&2; echo "$out" >&2; return 1; }
    awk '/^finished in/ {print $4}' <<<"$out"
}

# pct FILE P: the P-th percentile of h2load's per-request microseconds (third column)
pct() { awk '{print $3}' "$1" | sort -n | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100+0.5); if (i<1) i=1; print a[i]}'; }

declare -A R
for kind in plain stream; do for p in "${PATHS[@]}"; do h2 "$p" "$kind" 300 1 1 >/dev/null; done; done # warm up
for rep in $(seq "$REPS"); do
    log "repetition $rep of $REPS"
    for kind in plain stream; do
        for p in "${PATHS[@]}"; do
            rm -f "$TMP/lat.log"
            h2 "$p" "$kind" "$LAT_N" 1 1 "$TMP/lat.log" >/dev/null
            R[$p,$kind,p50]+="$(pct "$TMP/lat.log" 50) "
            R[$p,$kind,p99]+="$(pct "$TMP/lat.log" 99) "
            t0=$(cpu_ns "${PID[$p]}")
            rps=$(h2 "$p" "$kind" "$TPUT_N" "$CONNS" "$STREAMS")
            t1=$(cpu_ns "${PID[$p]}")
            R[$p,$kind,rps]+="$rps "
            R[$p,$kind,cpu]+="$(awk -v d=$((t1 - t0)) -v n="$TPUT_N" 'BEGIN {printf "%.1f", d / 1e3 / n}') "
        done
    done
done

med_of() { median <<<"${R[$1]}"; } # med_of KIND/PATH -> median over repetitions
row() { # row KIND PATH
    local k=$1 p=$2 p50 p99 d50 d99 cpu ncpu rps
    p50=$(med_of "$p,$k,p50"); p99=$(med_of "$p,$k,p99"); d50=$(med_of "direct,$k,p50"); d99=$(med_of "direct,$k,p99")
    cpu=$(med_of "$p,$k,cpu"); ncpu=$(med_of "nginx,$k,cpu"); rps=$(med_of "$p,$k,rps")
    if [[ $p == direct ]]; then
        printf '| %s | %s | %s µs | %s µs | – | – | %.0f | – | – |\n' "$k" "$p" "$p50" "$p99" "$rps"
    else
        printf '| %s | %s | %s µs | %s µs | %d µs | %d µs | %.0f | %s µs | %s |\n' "$k" "$p" "$p50" "$p99" \
            $((p50 - d50)) $((p99 - d99)) "$rps" "$cpu" \
            "$(awk -v a="$ncpu" -v b="$cpu" 'BEGIN {printf "%.2fx", a / b}')"
    fi
}

SECTION=$TMP/section.md
{
    echo "<!-- h2:begin (bench/h2.sh writes this section) -->"
    echo "## HTTP/2 (h2c, prior knowledge)"
    echo
    echo "\`bench/h2.sh\`, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "$(nproc) cores shared by load generator, proxy and engine (other work on the machine: $BUSY_BEFORE cores"
    echo "busy just before, $(machine_busy) just after); $(h2load --version 2>/dev/null | head -1),"
    echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'); agent flags: \`--log-level warn ${AGENT_FLAGS}\`. Medians of $REPS"
    echo "interleaved repetitions. Latency: concurrency 1 (one connection, one stream at a time), $LAT_N requests;"
    echo "added = path minus direct. Throughput: $TPUT_N requests on $CONNS connections x $STREAMS concurrent"
    echo "streams; CPU per request is the time the proxy's threads ran over the run"
    echo "(/proc/PID/task/*/schedstat; nginx: its one worker); ratio = nginx's CPU per request / this path's"
    echo "(above 1: cheaper than nginx). Streaming: SSE,"
    echo "$MAX_TOKENS tokens per response, zero-latency engine."
    echo
    echo "| request | path | p50 | p99 | added p50 | added p99 | req/s | CPU per request | ratio to nginx |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for k in plain stream; do for p in "${PATHS[@]}"; do row "$k" "$p"; done; done
    echo "<!-- h2:end -->"
} >"$SECTION"

if [[ ! -f $BENCH_OUT ]]; then
    cat >"$BENCH_OUT" <<'EOF'
# Transport benchmark: HTTP/1.1, HTTPS and HTTP/2 at the agent's listener, next to nginx configured the same way

Each section is written by its own script in one run, with nginx in the same run; sections are replaced
whole when their script runs again.

<!-- h2:begin -->
<!-- h2:end -->

## HTTPS/1.1 and h2 over TLS

(written by the TLS benchmark; not measured in this file yet)
EOF
fi
awk -v sec="$SECTION" '
    /^<!-- h2:begin/ { while ((getline line < sec) > 0) print line; skip = 1; next }
    /^<!-- h2:end/ { skip = 0; next }
    !skip { print }' "$BENCH_OUT" >"$TMP/out.md"
cp "$TMP/out.md" "$BENCH_OUT"
log "wrote $BENCH_OUT"
cat "$SECTION"
