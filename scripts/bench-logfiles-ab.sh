#!/usr/bin/env bash
# A/B runs of the logfiles node alone: two or more builds (or settings) of our node, alternated,
# at the Put cells of scripts/bench-logfiles.sh (50 connections, 100-byte values, keys sequential
# from 0, a fresh node in an empty directory for every run), for changes whose effect is smaller
# than the run-to-run noise of a shared machine. No Redis: the comparison with Redis stays
# scripts/bench-logfiles.sh's and scripts/bench-vs-redis.sh's (whose logfiles rows have no
# `fsync = "always"` cell).
#
#   scripts/bench-logfiles-ab.sh [--seconds S] [--rounds R] [--rt] [--depths "1 16"]
#                                [--fsync none|interval|always] [--out DIR]
#                                LABEL=BIN_DIR[,VAR=VALUE...] LABEL=BIN_DIR[,VAR=VALUE...] ...
#
# Each variant is a directory holding `logfilesnode` and `loadgen` (copies of a release build),
# with environment variables for the node if given (BIN_DIR `.` means target/release). Each
# round runs every variant once, the order reversed every other round (A B, B A, ...): for each
# depth, a fresh node on core 0 (`fsync` as given, default always; every other key at its
# default) and one `loadgen` Put run of S seconds (after 0.5 s of warm-up) from core 1, then a
# clean stop (SIGTERM) for the node's last stats line. Prints, per depth, each variant's runs as
# "ops/s (p99 µs, generator CPU / node CPU, load average before the run)", their median by
# ops/s, and each run's group commits (from the node's stats.log: their count, mean fsync time,
# Puts per commit, and the share of the S + 0.5 s run the sync thread spent in fsyncs: near 1
# means the disk never waited for the node).
#
# Options: --seconds S (default 5), --rounds R (default 3), --rt (SCHED_FIFO, as
# bench-logfiles.sh), --depths (default "1 16"), --fsync (default always), --out DIR (keep the
# raw results; default a temp directory).
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
ab_defaults
fsync=always
own_option() {
    case "$1" in
        --fsync) need_value "$1" $#; fsync="$2" ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
}
ab_parse "$@"
case "$fsync" in none|interval|always) ;; *) echo "--fsync: none, interval or always" >&2; exit 2 ;; esac
ab_check_variants logfilesnode loadgen
need_packages jq:jq
bench_sched
bench_workdir bench-logfiles-ab
log "results in $out"

# run_variant SPEC: per depth, a fresh node of the variant and one Put run.
run_variant() {
    local p load
    ab_variant "$1"
    logfilesnode="$ab_dir/logfilesnode"
    loadgen="$ab_dir/loadgen"
    for p in $depths; do
        ab_start start_logfiles "$fsync" "$tmp/srv/data"
        load=$(cut -d' ' -f1 /proc/loadavg)
        log "$ab_label P=$p: load average $load"
        run_put "$out/$ab_label.p$p" logfiles "$p"
        echo "$load" >> "$out/$ab_label.p$p.load"
        # A clean stop writes the node's last stats line: its group commits.
        kill -TERM "$srv_pid"
        wait "$srv_pid" 2>/dev/null || true
        commit_stats "$tmp/srv/log/stats.log" >> "$out/$ab_label.p$p.commits"
        stop_srv
    done
}

# commit_stats STATS_LOG: "group_commits mean_fsync_us puts" of a node's run: the commits and
# their mean duration from its last stats line (counted since the start), the Puts summed over
# its lines (counted per interval).
commit_stats() {
    tr ' ' '\n' < "$1" | awk -F: '
        $1 == "group_commits" { c = $2 } $1 == "group_commit_mean_us" { m = $2 }
        $1 == "request/Put/handled" { p += $2 }
        END { print c + 0, m + 0, p + 0 }'
}

ab_rounds "$rounds" run_variant

echo "logfiles node A/B: ${seconds} s Put runs, $rounds rounds, $connections conns, ${value_size}-byte values, keys sequential, fsync $fsync, rt $rt"
echo
echo "| cell | variant | runs: ops/s (p99 µs, generator / node CPU, load average before) | median ops/s | median p99 µs | runs: group commits, mean fsync µs, Puts per commit, disk busy share |"
echo "|---|---|---|---:|---:|---|"
for p in $depths; do
    for label in "${labels[@]}"; do
        file="$out/$label.p$p.runs"
        runs=$(paste -d' ' "$file" "$out/$label.p$p.load" |
            awk '{printf "%s%d (%d, %.2f / %.2f, %s)", (NR > 1 ? ", " : ""), $1, $2, $3, $4, $5}')
        commits=$(awk -v s="$seconds" '{
            printf "%s%d, %d, %.1f, %.2f", (NR > 1 ? "; " : ""), $1, $2, ($1 > 0 ? $3 / $1 : 0),
                $1 * $2 / 1e6 / (s + 0.5) }' "$out/$label.p$p.commits")
        echo "| P=$p put | $label | $runs | $(ab_medians "$out/$label.p$p") | $commits |"
    done
done
