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
bin=""
if [ "${1:-}" = "--bin-dir" ]; then bin=$2; shift 2; fi
records=${1:-10000000}
compression=${2:-lz4}
runs=${3:-1}
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "$bin" -p dhtnode -p benches
scratch_dir bench-shutdown

one_run() {
    local dir="$work/run$1"
    launch_node "$dir" "$(printf '[dht]\ndump_period_s = 0\ndump_compression = "%s"' "$compression")" \
        "${dht_node_env[@]}" taskset -c 0 "$bin/dhtnode" || exit 1
    timeout 600 taskset -c 1 "$bin/loadgen" --addr "$node_addr" -c 50 --prefill "$records" \
        --count 0 --keys "sequential:$records" >/dev/null
    sleep 1
    local started
    started=$(date +%s.%N)
    stop_node TERM
    local gone
    gone=$(seconds_since "$started")
    local dump
    dump=$(grep -o 'shutdown dump done in [0-9.]* s' "$dir/log/root.log" | tail -1 || echo "no shutdown dump line")
    echo "$bin, $records records, $compression: $dump; SIGTERM until gone $gone s;" \
        "load $(cut -d' ' -f1 /proc/loadavg)"
    rm -rf "$dir"
}

for run in $(seq 1 "$runs"); do one_run "$run"; done
