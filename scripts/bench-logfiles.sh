#!/usr/bin/env bash
# logfiles node against Redis streams (DESIGN.md §6), on loopback.
#
#   scripts/bench-logfiles.sh [--seconds S] [--repeat R] [--rt] [--out DIR] [--scan-records N]
#
# Put throughput: benches' `loadgen` (core 1) with 50 connections, 100-byte values, pipeline
# depth 16 and 1, keys `sequential` (0, 1, 2, ...: timestamps), against a server on core 0
# started fresh, in an empty directory, for every run:
#   - redis-server, XADD to one stream (`loadgen --kind redis-xadd`), three ways: no persistence;
#     `appendonly yes` + `appendfsync everysec`; `appendonly yes` + `appendfsync always`
#     (automatic AOF rewrites off, so the rows measure appending, not a background rewrite);
#   - logfilesnode Puts (`loadgen --kind logfiles`), `fsync = "none" | "interval" | "always"`,
#     everything else at the defaults of deploy/config/logfilesnode.toml.
# Each logfiles row is compared with the Redis row of the same durability (none ↔ no
# persistence, interval ↔ everysec, always ↔ always) and with the target: 1.5× Redis XADD
# without persistence, pipelined.
#
# Scans: scripts/bench-logfiles-scan.sh with one data set of N records (20 M × 100 bytes by
# default, ~2.3 GB, 2000 per key) and one run: in-process RangeScan passes and queries, then
# GetRange over loopback (node on core 0, client on core 1). Run that script itself for several
# data sets and runs.
#
# Options:
#   --seconds S        length of each Put run (default 5)
#   --repeat R         runs per Put cell; the table shows the median by ops/s (default 1)
#   --rt               run servers and generators SCHED_FIFO (chrt -f 10), for a machine that
#                      other work shares (as in scripts/bench-vs-redis.sh)
#   --scan-records N   records of the scan data set (default 20000000; 0 skips the scans)
#   --out DIR          keep raw results (JSON) and table.md there (default: a temp directory)
#
# Installs redis-server/redis-tools (and jq) with apt-get when missing (needs root). Uses only
# 127.0.0.1, bounds every step with `timeout`, kills what it started on exit and deletes the
# servers' data. The scan data set needs ~116 bytes per record free in /tmp.
# scripts/bench-vs-redis.sh runs the pipelined Put cells (none, interval) in its one table.
set -euo pipefail

seconds=5
repeat=1
rt=0
out=""
scan_records=20000000
connections=50
value_size=100

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) need_value "$1" $#; seconds="$2"; shift ;;
        --repeat) need_value "$1" $#; repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --scan-records) need_value "$1" $#; scan_records="$2"; shift ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
positive_numbers "$seconds" "$repeat"
[[ "$scan_records" =~ ^[0-9]+$ ]] || { echo "not a number: '$scan_records'" >&2; exit 2; }
cd "$root"
need_redis

log "building release binaries"
timeout 1800 cargo build --release -q -p logfilesnode -p benches
logfilesnode="$root/target/release/logfilesnode"
loadgen="$root/target/release/loadgen"

# ---- processes (scripts/lib/bench-common.sh: start_redis, start_logfiles, run_put, stop_srv)
bench_sched
bench_workdir bench-logfiles
info_file="$out/machine.md"
machine_info > "$info_file"
cat "$info_file" >&2

# ---- Put throughput --------------------------------------------------------------------------
# name:server:durability; the logfiles rows follow the Redis rows they are compared with.
systems=(redis:redis:none redis:redis:everysec redis:redis:always
         logfiles:logfiles:none logfiles:logfiles:interval logfiles:logfiles:always)

run_cell() { # system P run-file
    local server durability
    IFS=: read -r _ server durability <<< "$1"
    if [ "$server" = redis ]; then
        start_redis "$durability"
        run_put "$3" redis-xadd "$2"
    else
        start_logfiles "$durability" "$tmp/srv/data"
        run_put "$3" logfiles "$2"
    fi
    stop_srv
}

for p in 16 1; do
    for r in $(seq "$repeat"); do
        order=("${systems[@]}")
        # Alternate the order, so that drift on a shared machine does not favour one side.
        if [ $((r % 2)) -eq 0 ]; then
            order=(); for ((i = ${#systems[@]} - 1; i >= 0; i--)); do order+=("${systems[$i]}"); done
        fi
        for system in "${order[@]}"; do
            IFS=: read -r _ server durability <<< "$system"
            log "P=$p: $server ($durability), run $r of $repeat"
            run_cell "$system" "$p" "$out/p$p-$server-$durability"
        done
    done
done

durability_name() { # server durability
    case "$1:$2" in
        redis:none) echo "no persistence" ;;
        redis:*) echo "AOF, appendfsync $2" ;;
        *) echo "fsync = $2" ;;
    esac
}
redis_match() { case "$1" in none) echo none ;; interval) echo everysec ;; always) echo always ;; esac; }

table="$out/table.md"
{
    echo "| Put, 50 conns, 100 B | server | durability | ops/s | p99 µs | server CPU | vs Redis, same durability | vs Redis without persistence | target (P=16) | ops/s min–max |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---|---|"
    for p in 16 1; do
        base="$(median "$out/p$p-redis-none" | awk '{print $1}')"
        for system in "${systems[@]}"; do
            IFS=: read -r _ server durability <<< "$system"
            cell="$out/p$p-$server-$durability"
            read -r ops p99 _ srv <<< "$(median "$cell")"
            if [ "$server" = redis ]; then
                echo "| P=$p | Redis XADD | $(durability_name redis "$durability") | $ops | $p99 | $srv | | | | $(spread "$cell") |"
            else
                match="$(median "$out/p$p-redis-$(redis_match "$durability")" | awk '{print $1}')"
                awk -v p="$p" -v d="$(durability_name logfiles "$durability")" -v o="$ops" -v l="$p99" \
                    -v s="$srv" -v m="$match" -v b="$base" -v sp="$(spread "$cell")" 'BEGIN {
                    t = (p > 1) ? sprintf("%s %.2f× of ≥ 1.5×", (o / b >= 1.5 ? "✓" : "✗"), o / b) : "—";
                    printf "| P=%s | logfilesnode | %s | %d | %d | %s | **%.2f×** | %.2f× | %s | %s |\n",
                        p, d, o, l, s, o / m, o / b, t, sp
                }'
            fi
        done
    done
} > "$table"

# ---- scans (scripts/bench-logfiles-scan.sh: every read target, every run) ----------------------
scan_table="$out/scan.md"
: > "$scan_table"
if [ "$scan_records" -gt 0 ]; then
    log "scans: scripts/bench-logfiles-scan.sh --records $scan_records --repeat 1"
    timeout 7200 "$root/scripts/bench-logfiles-scan.sh" --records "$scan_records" --repeat 1 \
        $([ "$rt" -eq 1 ] && echo --rt) --out "$out/scan" > "$out/scan.txt" 2>&1 \
        || { echo "bench-logfiles-scan.sh failed:" >&2; tail -20 "$out/scan.txt" >&2; exit 1; }
    cp "$out/scan/tables.md" "$scan_table"
fi

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$info_file"
echo
cat "$info_file"
echo
echo "Command: scripts/bench-logfiles.sh --seconds $seconds --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt') --scan-records $scan_records"
echo
cat "$table"
if [ -s "$scan_table" ]; then
    echo
    cat "$scan_table"
fi
echo
echo "Put rows: the median run of $repeat by ops/s; loadgen drives both servers (keys sequential"
echo "from 0; Redis: XADD bench * key:N <value>). Raw results: $out"
