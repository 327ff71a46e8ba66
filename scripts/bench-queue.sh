#!/usr/bin/env bash
# Queue node push/pop/consume throughput against redis-server LPUSH/RPOP (DESIGN.md §6), on
# loopback.
#
#   scripts/bench-queue.sh [--count N] [--repeat R] [--rt] [--out DIR]
#
# The server runs pinned to core 0 and the load generator to core 1 (`taskset`). Redis is driven
# by `redis-benchmark -t lpush` then `-t rpop` (one list, `mylist`), our queuenode by benches'
# `queue_load --mode push` then `--mode pop` (one channel), both with 50 connections, pipeline
# depth 16, 100-byte values and N requests (default 2000000). Then the queue node alone: N more
# pushes and one Consume stream reading them (acknowledging each batch). Each run starts a fresh
# server, which first gets one unmeasured push/pop cycle of N (so both are measured with their
# memory already touched: our ring's pages, Redis's allocator arenas); runs alternate which
# server goes first; a cell is the median of R runs (default 3) by ops/s. Besides ops/s and p99 the table gives each server's CPU time per operation, which a
# busy machine disturbs less than throughput.
#
# Options:
#   --count N   requests per run (default 2000000; the queue node's ring is sized for them)
#   --repeat R  runs per cell (default 3)
#   --rt        run servers and generators SCHED_FIFO (chrt -f 10), for a machine other work
#               shares
#   --out DIR   keep raw results and table.md there (default: a temp directory, printed)
#
# Needs redis-server, redis-benchmark and jq. Uses only 127.0.0.1, bounds every run with
# `timeout`, and kills what it started on exit.
set -euo pipefail

count=2000000
repeat=3
rt=0
out=""

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count="$2"; shift ;;
        --repeat) repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --out) out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
for n in "$count" "$repeat"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $n" >&2; exit 2; }
done
for tool in redis-server redis-benchmark jq taskset timeout ss awk $([ "$rt" -eq 1 ] && echo chrt); do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on 0, load on 1)" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf '== %s\n' "$*" >&2; }

log "building release binaries"
timeout 1800 cargo build --release -q -p queuenode -p benches --bin queuenode --bin queue_load
queuenode="$root/target/release/queuenode"
queue_load="$root/target/release/queue_load"

tmp="$(mktemp -d /tmp/bench-queue.XXXXXX)"
keep_tmp=0
if [ -z "$out" ]; then out="$tmp/results"; keep_tmp=1; fi
mkdir -p "$out"
srv_pid=""
cleanup() {
    if [ -n "$srv_pid" ]; then kill -9 "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    # Server data goes; the results stay (in $tmp/results when no --out was given).
    if [ "$keep_tmp" -eq 1 ]; then rm -rf "$tmp/srv" "$tmp/warm"*; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_run=(taskset -c 0)
client_run=(taskset -c 1)
if [ "$rt" -eq 1 ]; then
    server_run=(chrt -f 10 taskset -c 0)
    client_run=(chrt -f 10 taskset -c 1)
fi

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htln "( sport = :$port )")" ]; then echo "$port"; return; fi
    done
}

# CPU ticks (user + system) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)

stop_server() {
    kill -9 "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
    rm -rf "$tmp/srv"
}

# Ring: every record of a run (100-byte value + 16-byte header, 8-aligned = 120 bytes) twice over.
ring_bytes=$(( (count * 120 * 2 / 4096 + 1) * 4096 ))

start_queuenode() {
    mkdir -p "$tmp/srv"
    printf '[queue]\nchannel_size_bytes = %d\n[log]\nstats_interval_s = 3600\n' "$ring_bytes" \
        > "$tmp/srv/node.toml"
    (cd "$tmp/srv" && exec "${server_run[@]}" "$queuenode" -c node.toml --listen 127.0.0.1:0 \
        >/dev/null 2>&1) &
    srv_pid=$!
    local i
    for i in $(seq 100); do
        srv_addr=$(grep -o 'listening on [0-9.:]*' "$tmp/srv/log/root.log" 2>/dev/null | awk '{print $3}' || true)
        [ -n "$srv_addr" ] && return
        sleep 0.05
    done
    echo "queuenode did not start" >&2; exit 1
}

start_redis() {
    local port
    port="$(free_port)"
    mkdir -p "$tmp/srv"
    "${server_run[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp/srv" >/dev/null 2>&1 &
    srv_pid=$!
    srv_addr="127.0.0.1:$port"
    local i
    for i in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "redis-server did not start" >&2; exit 1
}

# redis_test TEST FILE: one redis-benchmark test; FILE gets "ops_per_s p99_us cpu_us_per_op".
redis_test() {
    local test=$1 file=$2 before after line
    before=$(cpu_ticks "$srv_pid")
    line=$(timeout 600 "${client_run[@]}" redis-benchmark -p "${srv_addr##*:}" -t "$test" -P 16 \
        -c 50 -d 100 -n "$count" --csv | tail -n 1)
    after=$(cpu_ticks "$srv_pid")
    echo "$line" | tr -d '"' | awk -F, -v n="$count" -v t="$((after - before))" -v hz="$ticks_per_s" \
        '{printf "%.0f %.0f %.3f\n", $2, $7 * 1000, t / hz * 1e6 / n}' > "$file"
}

# queue_test MODE FILE: one queue_load run; FILE gets "ops_per_s p99_us cpu_us_per_op".
queue_test() {
    local mode=$1 file=$2
    local json="$out/raw/${file##*/}.json"
    mkdir -p "$out/raw"
    timeout 600 "${client_run[@]}" "$queue_load" --addr "$srv_addr" --mode "$mode" -c 50 -P 16 \
        -d 100 --count "$count" --server-pid "$srv_pid" --json "$json" >&2
    jq -r --argjson n "$count" \
        '"\(.ops_per_s | floor) \(.p99_us // 0) \(.server_cpu * .seconds * 1e6 / $n)"' \
        "$json" | awk '{printf "%s %s %.3f\n", $1, $2, $3}' > "$file"
}

run_redis() {
    start_redis
    # Warm-up: one unmeasured push/pop cycle, so both servers are measured with their memory
    # already touched (our ring pages, Redis's allocator arenas), not on first-touch page faults.
    redis_test lpush "$tmp/warm"; redis_test rpop "$tmp/warm"
    redis_test lpush "$out/redis-push.$1"
    redis_test rpop "$out/redis-pop.$1"
    stop_server
}

run_queue() {
    start_queuenode
    queue_test push "$tmp/warm"; queue_test pop "$tmp/warm"
    queue_test push "$out/queue-push.$1"
    queue_test pop "$out/queue-pop.$1"
    queue_test push "$out/queue-refill.$1"
    queue_test consume "$out/queue-consume.$1"
    stop_server
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$repeat"); do
    if [ $((run % 2)) -eq 1 ]; then
        log "run $run of $repeat: redis-server, then queuenode"
        run_redis "$run"; run_queue "$run"
    else
        log "run $run of $repeat: queuenode, then redis-server"
        run_queue "$run"; run_redis "$run"
    fi
done

# median NAME FIELD: the median line (by ops/s) of NAME's runs; prints field FIELD (1-based).
median() {
    cat "$out/$1".[0-9]* | sort -n -k1,1 | awk -v f="$2" '{v[NR]=$f} END {print v[int((NR+1)/2)]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

{
    echo "- date: $started"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo "- redis-server: $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
    echo "- git: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
    echo "- load average at start: $load_start; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Command: scripts/bench-queue.sh --count $count --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt')"
    echo
    echo "| operation (50 conns, P=16, 100-byte values, $count requests) | Redis ops/s | ours ops/s | ratio | target | Redis p99 µs | our p99 µs | Redis CPU µs/op | our CPU µs/op |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for pair in "push:LPUSH" "pop:RPOP"; do
        op=${pair%%:*}; name=${pair##*:}
        r=$(median "redis-$op" 1); q=$(median "queue-$op" 1)
        echo "| queue $op vs $name | $r | $q | **$(ratio "$q" "$r")×** | ≥ 1.5× | $(median "redis-$op" 2) | $(median "queue-$op" 2) | $(median "redis-$op" 3) | $(median "queue-$op" 3) |"
    done
    echo "| queue consume, 1 stream, acknowledged per batch | | $(median queue-consume 1) records/s | | | | | | $(median queue-consume 3) |"
} | tee "$out/table.md"
log "results in $out"
