# bench/lib.sh: process plumbing shared by the bench scripts (source it; it runs nothing on its own).
#
#   bench_setup NAME       make $TMP (/tmp/infermesh-NAME.XXXXXX) and install the exit trap: every process
#                          started with `start` gets SIGTERM, then SIGKILL after 2.5 s; on failure the tails of
#                          the logs are printed and $TMP is kept (KEEP_TMP=1 keeps it always); a caller's
#                          bench_at_exit function, if defined, runs after its processes are gone
#   bench_build_latency    compile bench/latency.c into $LAT (the load client; also hands out free ports)
#   start NAME CMD...      run CMD in the background, output in $TMP/NAME.{out,err}; its pid in PID_NAME
#                          (dashes become underscores) and its command line appended to COMMANDS
#   wait_for WHAT CMD...   retry CMD every 50 ms for WAIT_FOR_SECS (10) seconds; fail naming WHAT
#   pick_port VAR          a free port on 127.0.0.1 into VAR, never one handed out before in this run
#   machine_busy           busy CPU (in cores) of the whole machine over 1 s: load from anything else running
#   cpu_ticks PID...       user + system clock ticks used so far by these processes
#   record REP TEST SUBJECT "k=v ..."   append rows to $RES (tab-separated)
#   median                 the median of the numbers on stdin (one per line or space-separated)
#   ratio A B              A / B as "1.23×" ("–" when B is not positive)
#   med TEST SUBJECT KEY   the median over repetitions of what record wrote
#   log MSG, calc EXPR [DECIMALS]
#
# Callers set ROOT (the repository) and BIN (the infermesh binary) before bench_setup.

bench_setup() {
    TMP=$(mktemp -d "/tmp/infermesh-$1.XXXXXX")
    PIDS=()
    COMMANDS=()
    TAKEN=" "
    LAT=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if declare -F bench_at_exit >/dev/null; then bench_at_exit; fi
    if ((rc != 0)); then
        echo "bench: failed (exit $rc); last lines of the logs in $TMP:" >&2
        for f in "$TMP"/*.err "$TMP"/*.log; do [[ -f $f ]] && { echo "== $f" >&2; tail -n 5 "$f" >&2; }; done
    fi
    if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then echo "bench: temp dir kept: $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

bench_build_latency() {
    cc -O2 -Wall -Wextra -o "$TMP/latency" "$ROOT/bench/latency.c"
    LAT=$TMP/latency
}

pick_port() {
    local p
    while :; do
        if [[ -n $LAT ]]; then
            p=$("$LAT" --free-port)
        else
            p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        fi
        [[ $TAKEN == *" $p "* ]] || break
    done
    TAKEN+="$p "
    printf -v "$1" '%s' "$p"
}

start() {
    local name=$1 c
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=($!)
    printf -v "PID_${name//-/_}" '%s' $!
    c=$(printf '%q ' "$@")
    COMMANDS+=("${c% }")
}

wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < ${WAIT_FOR_SECS:-10} * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench: $what did not come up" >&2
    return 1
}

machine_busy() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { split(a, x); split(b, y); printf "%.2f", n * (y[1]-x[1]) / (y[2]-x[2]) }'
}

cpu_ticks() {
    local t=0 p v
    for p in "$@"; do
        v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo "$t"
}

record() {
    local kv
    for kv in $4; do printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${kv%%=*}" "${kv#*=}" >>"$RES"; done
}

median() {
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "–"; else printf "%.2f×", a / b }'; }

# med TEST SUBJECT KEY: the median over repetitions of the rows record wrote to $RES ("nan" when there are none)
med() {
    awk -F'\t' -v t="$1" -v s="$2" -v k="$3" '$2 == t && $3 == s && $4 == k { print $5 }' "$RES" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
