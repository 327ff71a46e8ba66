#!/usr/bin/env bash
# A/B runs of the dht node alone: two or more builds (or settings) of our node, alternated, at
# the depths and operations of the dht rows of scripts/bench-vs-redis.sh (50 connections,
# 100-byte values, uniform over K keys, every key prefilled), for changes whose effect is smaller
# than the run-to-run noise of a shared machine. No Redis, no memcached: the full comparison
# stays scripts/bench-vs-redis.sh's.
#
#   scripts/bench-dht-ab.sh [--seconds S] [--rounds R] [--rt] [--keyspace K] [--depths "1 16"]
#                           [--ops "put get"] [--durability none|interval|always] [--out DIR]
#                           LABEL=BIN_DIR[,VAR=VALUE...] LABEL=BIN_DIR[,VAR=VALUE...] ...
#
# Each variant is a directory holding `dhtnode` and `loadgen` (copies of a release build), with
# environment variables for the node if given (BIN_DIR `.` means target/release). Each round
# runs every variant once, the order reversed every other round (A B, B A, ...): for each, a
# fresh node on core 0 (`durability` as given, default none), prefilled with K keys, then one
# `loadgen` run of S seconds (after 0.5 s of warm-up) from core 1 per depth and operation. The
# load average is logged before each variant. Prints, per cell, each variant's runs as
# "ops/s (p99 µs, generator CPU / node CPU)" and their median by ops/s.
#
# Options: --seconds S (default 5), --rounds R (default 3), --rt (SCHED_FIFO, as bench-vs-redis),
# --keyspace K (default 1000000), --depths (default "1 16"), --ops (default "put get"),
# --durability (default none), --out DIR (keep the raw results; default a temp directory).
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
ab_defaults
keyspace=1000000
ops="put get"
durability=none
own_option() {
    case "$1" in
        --keyspace) need_value "$1" $#; keyspace="$2" ;;
        --ops) need_value "$1" $#; ops="$2" ;;
        --durability) need_value "$1" $#; durability="$2" ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
}
ab_parse "$@"
positive_numbers "$keyspace"
case "$durability" in none|interval|always) ;; *) echo "--durability: none, interval or always" >&2; exit 2 ;; esac
for op in $ops; do
    case "$op" in put|get) ;; *) echo "--ops: put and/or get, not '$op'" >&2; exit 2 ;; esac
done
ab_check_variants dhtnode loadgen
need_packages jq:jq
bench_sched
bench_workdir bench-dht-ab
log "results in $out"

# run_variant SPEC: a fresh node of the variant, prefilled, then one run per depth and op.
run_variant() {
    local p op
    ab_variant "$1"
    dhtnode="$ab_dir/dhtnode"
    loadgen="$ab_dir/loadgen"
    ab_start start_dhtnode "$tmp/node" "[dht]
durability = \"$durability\""
    log "$ab_label: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    loadgen_prefill "$tmp/prefill.txt" dht "$srv_addr" "$keyspace"
    for p in $depths; do
        for op in $ops; do
            loadgen_run "$out/$ab_label.p$p-$op" dht "$srv_addr" "$srv_pid" "$op" "$p" \
                "uniform:$keyspace"
        done
    done
    stop_pid "$srv_pid"
}

ab_rounds "$rounds" run_variant

echo "dht node A/B: ${seconds} s runs, $rounds rounds, $connections conns, ${value_size}-byte values, keys uniform over $keyspace, durability $durability, rt $rt"
echo
echo "| cell | variant | runs: ops/s (p99 µs, generator / node CPU) | median ops/s | median p99 µs |"
echo "|---|---|---|---:|---:|"
for p in $depths; do
    for op in $ops; do
        for label in "${labels[@]}"; do
            file="$out/$label.p$p-$op.runs"
            runs=$(awk '{printf "%s%d (%d, %.2f / %.2f)", (NR > 1 ? ", " : ""), $1, $2, $3, $4}' "$file")
            echo "| P=$p $op | $label | $runs | $(ab_medians "$out/$label.p$p-$op") |"
        done
    done
done
