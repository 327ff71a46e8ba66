#!/usr/bin/env bash
# Instructions the dht node spends per Put or per PutVersion (one member's share of a replicated
# put), counted by valgrind's callgrind: a count that does not depend on what else the machine
# runs, for before/after comparisons of the write path (issue 19's replication row).
#
# usage: scripts/bench-dht-instructions.sh put|put-version [REQUESTS]   (default 200000)
#
# Starts dhtnode under callgrind (`durability = "none"`, as the benchmark rows), prefills keys
# 0..K-1 (K = 100000, not counted; see KEYS and PREFILL below), then with `loadgen -c 50 -P 16 -d 100 --keys uniform:K`
# (the benchmark's shape; every put overwrites, as in the rows' steady state):
# - put: zero the counters, put REQUESTS then 3 x REQUESTS, dumping the counters after each;
# - put-version: the same with `--replica ADDR` of a second, native node, so that the measured
#   node gets each put as a PutVersion (loadgen's replicated mode, the replication row's load).
# The difference of the two dumps over 2 x REQUESTS is the node's instructions per request in
# the steady state (the 50 connections' set-up cancels out). Syscalls and the kernel's work are
# not counted (callgrind sees user space only).
#
# KEYS=K changes the key space (default 100000); PREFILL=0 leaves it empty, so that most of the
# measured puts insert a key (as in the replication row, which is not prefilled) rather than
# overwrite one.
#
# KEEP=1 keeps the dumps (the work directory is printed) for `callgrind_annotate`.
# BIN_DIR=DIR uses the dhtnode and loadgen binaries in DIR instead of building them (a
# before/after comparison: copy the release binaries of the commit before aside first).
#
# Needs valgrind (Debian package). Loopback only; cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
requests=${2:-200000}
case "$mode" in
    put | put-version) ;;
    *) echo "usage: $0 put|put-version [REQUESTS]" >&2; exit 2 ;;
esac
[[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "REQUESTS must be a positive integer" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "${BIN_DIR:-}" -p dhtnode -p benches --bin dhtnode --bin loadgen
scratch_dir bench-dht-instructions
keys=${KEYS:-100000}
[[ "$keys" =~ ^[1-9][0-9]*$ ]] || { echo "KEYS must be a positive integer" >&2; exit 2; }
config=$'[dht]\ndurability = "none"'
replica=()
replica_pid=""
if [ "$mode" = put-version ]; then
    launch_node "$work/replica" "$config" "$bin/dhtnode" || exit 1
    replica_pid=$node_pid
    replica=(--replica "$node_addr")
fi
# A node under valgrind takes long to start.
listen_timeout_s=60
launch_node "$work/node" "$config" valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg.%p" "$bin/dhtnode" || exit 1
addr=$node_addr
load=("$bin/loadgen" --kind dht --addr "$addr" -c 50 -P 16 -d 100 --keys "uniform:$keys"
    --ops put --timeout-s 3600 "${replica[@]}")
if [ "${PREFILL:-1}" != 0 ]; then
    "${load[@]}" --prefill "$keys" --count 0 > "$work/fill.txt"
fi
callgrind_control -z "$node_pid" > /dev/null 2>&1
"${load[@]}" --count "$requests" > "$work/run1.txt"
callgrind_control -d "$node_pid" > /dev/null 2>&1
"${load[@]}" --count $((3 * requests)) > "$work/run2.txt"
callgrind_control -d "$node_pid" > /dev/null 2>&1
stop_node TERM
if [ -n "$replica_pid" ]; then kill "$replica_pid"; wait "$replica_pid" 2>/dev/null || true; fi
first=$(callgrind_summary "$(ls "$work"/cg.*.1)")
second=$(callgrind_summary "$(ls "$work"/cg.*.2)")
echo "$mode: $((first / requests)) instructions per request over the first $requests" \
    "(50 connections' set-up included), $(((second - first) / (2 * requests))) in the steady state"
