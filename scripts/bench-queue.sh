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
# server goes first; a cell is the median of R runs (default 3) by ops/s. Besides ops/s and p99
# the table gives each server's CPU time per operation, which a busy machine disturbs less than
# throughput. scripts/bench-vs-redis.sh runs the same cells (its queue rows).
#
# Options:
#   --count N   requests per run (default 2000000; the queue node's ring is sized for them)
#   --repeat R  runs per cell (default 3)
#   --rt        run servers and generators SCHED_FIFO (chrt -f 10), for a machine other work
#               shares
#   --out DIR   keep raw results and table.md there (default: a temp directory, printed)
#
# Installs redis-server/redis-tools (and jq) with apt-get when missing (needs root). Uses only
# 127.0.0.1, bounds every run with `timeout`, and kills what it started on exit.
set -euo pipefail

count=2000000
repeat=3
rt=0
out=""
connections=50
value_size=100

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --count) need_value "$1" $#; count="$2"; shift ;;
        --repeat) need_value "$1" $#; repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
positive_numbers "$count" "$repeat"
cd "$root"
need_redis

log "building release binaries"
timeout 1800 cargo build --release -q -p queuenode -p benches --bin queuenode --bin queue_load
queuenode="$root/target/release/queuenode"
queue_load="$root/target/release/queue_load"

bench_sched
bench_workdir bench-queue
machine_info > "$out/machine.md"
cat "$out/machine.md" >&2

for run in $(seq "$repeat"); do
    if [ $((run % 2)) -eq 1 ]; then
        log "run $run of $repeat: redis-server, then queuenode"
        queue_cycle_redis "$run" "$count"; queue_cycle_ours "$run" "$count"
    else
        log "run $run of $repeat: queuenode, then redis-server"
        queue_cycle_ours "$run" "$count"; queue_cycle_redis "$run" "$count"
    fi
done

q="$out/queue"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.md"
{
    cat "$out/machine.md"
    echo
    echo "Command: scripts/bench-queue.sh --count $count --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt')"
    echo
    echo "| operation (50 conns, P=16, 100-byte values, $count requests) | Redis ops/s | ours ops/s | ratio | target | Redis p99 µs | our p99 µs | Redis CPU µs/op | our CPU µs/op |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for pair in "push:LPUSH" "pop:RPOP"; do
        op=${pair%%:*}; name=${pair##*:}
        r=$(median_field "$q/redis-$op" 1); o=$(median_field "$q/queue-$op" 1)
        echo "| queue $op vs $name | $r | $o | **$(ratio "$o" "$r")×** | ≥ 1.5× | $(median_field "$q/redis-$op" 2) | $(median_field "$q/queue-$op" 2) | $(median_field "$q/redis-$op" 3) | $(median_field "$q/queue-$op" 3) |"
    done
    echo "| queue consume, 1 stream, acknowledged per batch | | $(median_field "$q/queue-consume" 1) records/s | | | | | | $(median_field "$q/queue-consume" 3) |"
} | tee "$out/table.md"
log "results in $out"
