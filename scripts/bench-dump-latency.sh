#!/usr/bin/env bash
# Request latency of a dht node while it dumps, against the same node idle, and the node's
# restart time with its data loaded (DESIGN.md §6: p99 during a dump within 2x of idle; restart
# with 1 GB loaded in under 3 s).
#
# usage: scripts/bench-dump-latency.sh [RECORDS] [SECONDS] [COMPRESSION] [LOADED_S]
#        (defaults: 10000000 records, 10 s, dump_compression "lz4", 90 s)
#
# 1. Start dhtnode (dumps off), fill it with RECORDS 100-byte records, measure a 50/50 get/put
#    load (50 connections, unpipelined and pipelined x16) for SECONDS each: "idle".
# 2. SIGTERM it: the shutdown dump (the node logs its duration; reported with GB/s of keys and
#    values, and the time from SIGTERM until the process is gone).
# 3. Start it again on the same data with dump_period_s = 1 and time the restart (spawn until it
#    serves, every record loaded), then measure the same loads while it dumps back to back:
#    "dumping".
# 4. Keep the unpipelined load on for LOADED_S more seconds ("loaded": its p99 over the whole
#    stretch), then report how long each dump since the restart took (the node's
#    "dumped channel ..." log lines) and when the node started pacing its writer.
# Node pinned to core 0, load generator to core 1; loopback only; everything cleaned up on exit.
# BIN_DIR=DIR takes dhtnode and loadgen from DIR instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-10000000}
seconds=${2:-10}
compression=${3:-lz4}
loaded_s=${4:-90}
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "${BIN_DIR:-}" -p dhtnode -p benches
scratch_dir bench-dump-latency

start_node() { # config-text -> sets node_pid and addr (the same data and logs every time)
    launch_node "$work" "$1" "${dht_node_env[@]}" taskset -c 0 "$bin/dhtnode" || exit 1
    addr=$node_addr
}

measure() { # label pipeline [seconds] -> prints one table row
    local json="$work/$1-P$2.json"
    taskset -c 1 "$bin/loadgen" --addr "$addr" -c 50 -P "$2" --ops mixed:0.5 \
        --keys "uniform:$records" --duration-s "${3:-$seconds}" --warmup-s 1 --json "$json" >/dev/null
    python3 - "$json" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get("latency_us", r)
def get(*names):
    for n in names:
        if n in lat: return lat[n]
        if n in r: return r[n]
    return float("nan")
print(f"| {sys.argv[2]:8} | {sys.argv[3]:>2} | {get('ops_per_s','throughput_ops_s','ops_s'):>10.0f} | {get('p50','p50_us'):>7} | {get('p99','p99_us'):>7} | {get('p999','p99_9','p99_9_us'):>7} | {get('max','max_us'):>7} |")
PY
}

start_node $'[dht]\ndump_period_s = 0\ndump_compression = "'"$compression"'"'
echo "filling $records records..." >&2
taskset -c 1 "$bin/loadgen" --addr "$addr" -c 50 --prefill "$records" --count 0 \
    --keys "sequential:$records" >/dev/null
echo "| state    |  P |      ops/s | p50 µs  | p99 µs  | p99.9 µs | max µs |"
echo "|----------|----|------------|---------|---------|----------|--------|"
measure idle 1
measure idle 16
started=$(date +%s.%N)
stop_node TERM
dump_s=$(seconds_since "$started")
dump_bytes=$(du -sb "$work/data" | cut -f1)
shutdown_s=$(grep -o 'shutdown dump done in [0-9.]* s' "$work/log/root.log" | tail -1 | cut -d' ' -f5)
started=$(date +%s.%N)
start_node $'[dht]\ndump_period_s = 1\ndump_compression = "'"$compression"'"'
restart_s=$(seconds_since "$started")
dumps_before=$(grep -c 'dumped channel' "$work/log/root.log" || true)
measure dumping 1
measure dumping 16
dumps_after=$(grep -c 'dumped channel' "$work/log/root.log" || true)
measure loaded 1 "$loaded_s"
echo
echo "dump_compression = \"$compression\""
echo "shutdown dump: ${shutdown_s} s (the node's log) for $records records of 100 bytes:" \
    "$(python3 -c "print(round($records * 108 / 1e9 / $shutdown_s, 2))") GB/s of keys and values;" \
    "${dump_bytes} bytes of dump files; SIGTERM until the process was gone: ${dump_s} s"
echo "restart with $records records loaded: ${restart_s} s (spawn until serving)"
echo "dumps completed during the 'dumping' measurements: $((dumps_after - dumps_before))"
echo "each dump completed since the restart, under the loads above (records, seconds):"
grep -o 'dumped channel [^:]*: [0-9]* records, [0-9]* bytes, [0-9.]* s' "$work/log/root.log" |
    tail -n +"$((dumps_before + 1))" | sed 's/^dumped channel /  /'
grep -o 'dump writer got .*' "$work/log/root.log" | head -3 | sed 's/^/  node: /' || true
