#!/usr/bin/env bash
# The dht node's shutdown, timed: a node filled with RECORDS records of 100 bytes by
# `loadgen --prefill`, then SIGTERM; prints the node's own `shutdown dump done in S s` and the
# time from SIGTERM until the process is gone (`wait`), RUNS times.
#
# usage: scripts/bench-shutdown.sh [--bin-dir DIR] [RECORDS] [COMPRESSION] [RUNS]
#        (defaults: target/release after a release build, 10000000 records, "lz4", 1 run)
# --bin-dir DIR takes dhtnode and loadgen from DIR (to compare two builds, alternate them).
# The node is pinned to core 0 and loadgen to core 1, as in bench-dump-latency.sh; the node runs
# with its default durability ("interval"), dump_period_s = 0 and the given dump_compression.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh # dht_node_env: the node as deploy/systemd runs it
bin=""
if [ "${1:-}" = "--bin-dir" ]; then bin=$2; shift 2; fi
records=${1:-10000000}
compression=${2:-lz4}
runs=${3:-1}
if [ -z "$bin" ]; then
    cargo build --release -q -p dhtnode -p benches
    bin=target/release
fi
work=""
node_pid=""
cleanup() {
    if [ -n "$node_pid" ]; then kill -9 "$node_pid" 2>/dev/null || true; fi
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

one_run() {
    work=$(mktemp -d /tmp/bench-shutdown.XXXXXX)
    mkdir "$work/data" "$work/log"
    printf '[dht]\ndump_period_s = 0\ndump_compression = "%s"\n' "$compression" > "$work/node.toml"
    "${dht_node_env[@]}" taskset -c 0 "$bin/dhtnode" -c "$work/node.toml" --listen 127.0.0.1:0 \
        --data-dir "$work/data" --log-dir "$work/log" 2>>"$work/stderr" &
    node_pid=$!
    local addr=""
    for _ in $(seq 1 200); do
        addr=$(grep -o 'listening on [0-9.:]*' "$work/log/root.log" 2>/dev/null | head -1 | cut -d' ' -f3 || true)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "node did not start: $(cat "$work/stderr")" >&2; exit 1; }
    timeout 600 taskset -c 1 "$bin/loadgen" --addr "$addr" -c 50 --prefill "$records" --count 0 \
        --keys "sequential:$records" >/dev/null
    sleep 1
    local started
    started=$(date +%s.%N)
    kill -TERM "$node_pid"
    wait "$node_pid" || true
    local gone
    gone=$(python3 -c "print(round($(date +%s.%N) - $started, 3))")
    node_pid=""
    local dump
    dump=$(grep -o 'shutdown dump done in [0-9.]* s' "$work/log/root.log" | tail -1 || echo "no shutdown dump line")
    echo "$bin, $records records, $compression: $dump; SIGTERM until gone $gone s;" \
        "load $(cut -d' ' -f1 /proc/loadavg)"
    rm -rf "$work"
    work=""
}

for _ in $(seq 1 "$runs"); do one_run; done
