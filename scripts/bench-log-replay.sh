#!/usr/bin/env bash
# Restart figures of the dht change log (issue #18; docs/benchmarks.md, "dht: change log
# replay and restart"):
#
#   1. replay: a node with durability = "interval" and no dumps takes LOG_RECORDS Puts of
#      100-byte values (about 140 bytes of log each: 8M Puts ≈ 1.1 GB), is killed with SIGKILL,
#      and is started again: the whole log is replayed. Reported: the log's size, the replay
#      line of root.log, and spawn-until-serving.
#   2. restart: a node takes RECORDS Puts, stops cleanly (its shutdown dump), starts again,
#      takes AFTER more Puts (the log since the dump), is killed with SIGKILL and started
#      again: it loads its dump and replays the log after it. Reported: spawn-until-serving.
#
# usage: scripts/bench-log-replay.sh [LOG_RECORDS] [RECORDS] [AFTER] [--rt]
#        (defaults: 8000000, 10000000, 1000000)
# Node pinned to core 0, loadgen to core 1 (SCHED_FIFO with --rt); loopback only; the work
# directory (under /tmp) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh # dht_node_env: the node as deploy/systemd runs it
rt=()
args=()
for arg in "$@"; do
    if [ "$arg" = --rt ]; then rt=(chrt -f 10); else args+=("$arg"); fi
done
log_records=${args[0]:-8000000}
records=${args[1]:-10000000}
after=${args[2]:-1000000}
cargo build --release -q -p dhtnode -p benches
work=$(mktemp -d /tmp/bench-log-replay.XXXXXX)
node_pid=""
cleanup() {
    [ -n "$node_pid" ] && kill -9 "$node_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# start_node: starts dhtnode on $work/data with $work/node.toml; sets node_pid, addr and
# startup_s (spawn until the "listening" line, which comes after loading and replaying).
start_node() {
    local lines=0 started
    [ -f "$work/log/root.log" ] && lines=$(wc -l < "$work/log/root.log")
    started=$(date +%s.%N)
    "${dht_node_env[@]}" "${rt[@]}" taskset -c 0 target/release/dhtnode -c "$work/node.toml" --listen 127.0.0.1:0 \
        --data-dir "$work/data" --log-dir "$work/log" 2>>"$work/stderr" &
    node_pid=$!
    addr=""
    for _ in $(seq 1 6000); do
        addr=$(tail -n +"$((lines + 1))" "$work/log/root.log" 2>/dev/null \
            | grep -o 'listening on [0-9.:]*' | head -1 | cut -d' ' -f3 || true)
        if [ -n "$addr" ]; then
            startup_s=$(awk -v now="$(date +%s.%N)" -v then="$started" 'BEGIN { printf "%.2f", now - then }')
            return 0
        fi
        sleep 0.01
    done
    echo "node did not start: $(cat "$work/stderr")" >&2
    exit 1
}

fill() { # count: keys 0..count, 100-byte values
    "${rt[@]}" taskset -c 1 target/release/loadgen --addr "$addr" -c 50 -d 100 \
        --prefill "$1" --count 0 >/dev/null
}

overwrite() { # keyspace count: count Puts of random keys below keyspace
    "${rt[@]}" taskset -c 1 target/release/loadgen --addr "$addr" -c 50 -P 16 -d 100 \
        --keys "uniform:$1" --ops put --count "$2" >/dev/null
}

kill_node() { kill -9 "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""; }

echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '[dht]\ndurability = "interval"\ndump_period_s = 0\nmax_log_bytes = 1099511627776\n' \
    > "$work/node.toml"
start_node
fill "$log_records"
kill_node
log_bytes=$(du -sb "$work/data/wal" | cut -f1)
start_node
echo "- replay: $log_records Puts, log of $log_bytes bytes: serving $startup_s s after spawn"
grep 'change log replayed' "$work/log/root.log" | tail -1 | sed 's/^/  /'
kill_node
rm -rf "$work/data" "$work/log"

start_node
fill "$records"
kill -TERM "$node_pid"; wait "$node_pid" || true; node_pid=""
start_node
echo "- clean restart on the dump of $records records: serving $startup_s s after spawn"
overwrite "$records" "$after"
kill_node
log_bytes=$(du -sb "$work/data/wal" | cut -f1)
start_node
echo "- restart after SIGKILL: dump of $records records + log of $after Puts ($log_bytes bytes in wal/): serving $startup_s s after spawn"
grep -E 'loaded [0-9]+ channels|change log replayed' "$work/log/root.log" | tail -2 | sed 's/^/  /'
kill_node
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
