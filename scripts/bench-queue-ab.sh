#!/usr/bin/env bash
# A/B runs of the queue node alone: two or more builds (or settings) of our node, alternated, at
# the queue rows of scripts/bench-vs-redis.sh (queue_load, 50 connections, pipeline depth 16,
# 100-byte values, one channel), for changes whose effect is smaller than the run-to-run noise of
# a shared machine. No Redis: the full comparison stays scripts/bench-queue.sh's.
#
#   scripts/bench-queue-ab.sh [--count N] [--rounds R] [--rt] [--out DIR]
#                             LABEL=BIN_DIR[,VAR=VALUE...] LABEL=BIN_DIR[,VAR=VALUE...] ...
#
# Each variant is a directory holding `queuenode` and `queue_load` (copies of a release build),
# with environment variables for the node only if given (BIN_DIR `.` means target/release). Each
# round runs every variant once, the order reversed every other round (A B, B A, ...): for each,
# a fresh node on core 0 (ring sized for the run, as bench-queue.sh), one unmeasured push/pop
# cycle of N (warm ring pages), then one measured push run and one pop run of N requests from
# core 1. The load average is logged before each variant. Prints, per cell, each variant's runs
# as "ops/s (p99 µs, node CPU µs/op)" and their medians.
#
# Options: --count N (default 2000000), --rounds R (default 4), --rt (SCHED_FIFO, as
# bench-vs-redis), --out DIR (keep the raw results; default a temp directory).
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
ab_defaults
rounds=4
count=2000000
own_option() {
    case "$1" in
        --count) need_value "$1" $#; count="$2" ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
}
ab_parse "$@"
if [ "$seconds" != 5 ] || [ "$depths" != "1 16" ]; then
    echo "--seconds and --depths do not apply: a queue run is --count requests at P=16" >&2
    exit 2
fi
positive_numbers "$count"
ab_check_variants queuenode queue_load
need_packages jq:jq
bench_sched
bench_workdir bench-queue-ab
log "results in $out"

# run_variant SPEC: a fresh node of the variant, one warm-up cycle, then one push and one pop run.
run_variant() {
    local op
    ab_variant "$1"
    queuenode="$ab_dir/queuenode"
    queue_load="$ab_dir/queue_load"
    ab_start start_queuenode "$count"
    log "$ab_label: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    queue_load_test push "$tmp/warm" "$count"
    queue_load_test pop "$tmp/warm" "$count"
    for op in push pop; do
        queue_load_test "$op" "$out/$ab_label.$op" "$count"
    done
    stop_srv
}

ab_rounds "$rounds" run_variant

echo "queue node A/B: $count requests per run, $rounds rounds, $connections conns, P=16, ${value_size}-byte values, rt $rt"
echo
echo "| cell | variant | runs: ops/s (p99 µs, node CPU µs/op) | median ops/s | median p99 µs | median CPU µs/op |"
echo "|---|---|---|---:|---:|---:|"
for op in push pop; do
    for label in "${labels[@]}"; do
        file="$out/$label.$op.runs"
        runs=$(awk '{printf "%s%d (%d, %.3f)", (NR > 1 ? ", " : ""), $1, $2, $3}' "$file")
        med=$(sort -n -k1,1 "$file" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
        p99=$(sort -n -k2,2 "$file" | awk '{v[NR] = $2} END {print v[int((NR + 1) / 2)]}')
        cpu=$(sort -n -k3,3 "$file" | awk '{v[NR] = $3} END {print v[int((NR + 1) / 2)]}')
        echo "| $op | $label | $runs | $med | $p99 | $cpu |"
    done
done
