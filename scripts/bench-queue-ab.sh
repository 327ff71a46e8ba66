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

count=2000000
rounds=4
rt=0
out=""
connections=50
value_size=100
variants=()

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --count) need_value "$1" $#; count="$2"; shift ;;
        --rounds) need_value "$1" $#; rounds="$2"; shift ;;
        --rt) rt=1 ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        -h|--help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *=*) variants+=("$1") ;;
        *) echo "a variant is LABEL=BIN_DIR[,VAR=VALUE...]: '$1'" >&2; exit 2 ;;
    esac
    shift
done
positive_numbers "$count" "$rounds"
[ ${#variants[@]} -ge 1 ] || { echo "no variant given" >&2; usage; }
labels=()
for variant in "${variants[@]}"; do
    label=${variant%%=*}
    spec=${variant#*=}
    dir=${spec%%,*}
    [ "$dir" = . ] && dir="$root/target/release"
    [[ "$label" =~ ^[A-Za-z0-9_.+-]+$ ]] || { echo "label '$label': letters, digits, _ . + - only" >&2; exit 2; }
    if [ ! -x "$dir/queuenode" ] || [ ! -x "$dir/queue_load" ]; then
        echo "$dir: no queuenode and queue_load" >&2; exit 1
    fi
    labels+=("$label")
done
need_packages jq:jq
bench_sched
bench_workdir bench-queue-ab
log "results in $out"

# run_variant SPEC: a fresh node of the variant, one warm-up cycle, then one push and one pop run.
run_variant() {
    local label=${1%%=*} spec=${1#*=} dir envs=() op
    dir=${spec%%,*}
    [ "$dir" = . ] && dir="$root/target/release"
    if [[ "$spec" == *,* ]]; then IFS=, read -r -a envs <<< "${spec#*,}"; fi
    queuenode="$dir/queuenode"
    queue_load="$dir/queue_load"
    local base_run=("${server_run[@]}")
    server_run=(env "${envs[@]}" "${base_run[@]}")
    start_queuenode "$count"
    server_run=("${base_run[@]}")
    log "$label: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    queue_load_test push "$tmp/warm" "$count"
    queue_load_test pop "$tmp/warm" "$count"
    for op in push pop; do
        queue_load_test "$op" "$out/$label.$op" "$count"
    done
    stop_srv
}

for ((round = 1; round <= rounds; round++)); do
    order=("${variants[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        order=()
        for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[$i]}"); done
    fi
    log "round $round of $rounds"
    for variant in "${order[@]}"; do run_variant "$variant"; done
done

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
